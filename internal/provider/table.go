package provider

import (
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// table holds every provider, one entry each (SPEC sections 6, 12, 13).
var table = []*Provider{
	{
		Name:           "claude",
		Families:       []apifamily.Family{apifamily.Anthropic},
		DefaultBaseURL: "https://api.anthropic.com",
		AccessTokens:   true, // Claude Pro/Max login (Claude Code)
		Auth: AuthHeaders{
			APIKey:    "X-Api-Key",
			OAuthFlag: ListValue{Header: "Anthropic-Beta", Value: "oauth-2025-04-20"},
			Defaults:  []Header{{Name: "Anthropic-Version", Value: "2023-06-01"}},
		},
		OAuth:       oauth.ClaudeDefaults(),
		RefreshLead: 4 * time.Hour,
		Quota: Quota{
			HeaderPrefixes: []string{"anthropic-ratelimit-"},
			Windows: []QuotaWindow{
				unified.window("5h"),
				unified.window("7d"),
			},
			Status:  "anthropic-ratelimit-unified-status",
			ResetAt: "anthropic-ratelimit-unified-reset",
			Claim:   "anthropic-ratelimit-unified-representative-claim",
			Limits:  anthropicLimits,
		},
	},
	{
		Name:     "codex",
		Families: []apifamily.Family{apifamily.OpenAI},
		// The ChatGPT backend serves the Responses API and the model
		// list only: no chat or text completions, no embeddings.
		Endpoints:      []apifamily.Endpoint{apifamily.EndpointResponses, apifamily.EndpointModels},
		DefaultBaseURL: "https://chatgpt.com/backend-api/codex",
		AccessTokens:   true, // ChatGPT login (Codex CLI)
		Auth: AuthHeaders{
			AccountID: "Chatgpt-Account-Id",
		},
		StripV1:     true,
		OAuth:       oauth.CodexDefaults(),
		RefreshLead: 5 * 24 * time.Hour,
		Quota: Quota{
			HeaderPrefixes: []string{"x-codex-", "x-ratelimit-"},
			Windows: []QuotaWindow{
				codexUsage.window("primary"),
				codexUsage.window("secondary"),
			},
			Limits: openAILimits,
		},
	},
	{
		Name:           "gemini",
		Families:       []apifamily.Family{apifamily.Gemini},
		DefaultBaseURL: "https://generativelanguage.googleapis.com",
		// Gemini CLI's Google OAuth files are not supported: API keys only.
		AccessTokens: false,
		Auth:         AuthHeaders{APIKey: "X-Goog-Api-Key"},
	},
	{
		Name:           "openai",
		Families:       []apifamily.Family{apifamily.OpenAI},
		DefaultBaseURL: "https://api.openai.com",
		AccessTokens:   true,
		Quota:          Quota{HeaderPrefixes: []string{"x-ratelimit-"}, Limits: openAILimits},
	},
	{
		// Any server with an OpenAI-style API (OpenRouter, vLLM, Ollama...).
		Name:         "openai_compatible",
		Families:     []apifamily.Family{apifamily.OpenAI},
		AccessTokens: true,
		Quota:        Quota{HeaderPrefixes: []string{"x-ratelimit-"}, Limits: openAILimits},
	},
}

func init() {
	for _, p := range table {
		p.Quota.compile()
	}
}

// The API-key rate limits of Anthropic and of OpenAI-style upstreams.
var (
	anthropicLimits = []QuotaLimit{
		{Kind: "requests", Remaining: "anthropic-ratelimit-requests-remaining", Limit: "anthropic-ratelimit-requests-limit"},
		{Kind: "tokens", Remaining: "anthropic-ratelimit-tokens-remaining", Limit: "anthropic-ratelimit-tokens-limit"},
		{Kind: "input_tokens", Remaining: "anthropic-ratelimit-input-tokens-remaining", Limit: "anthropic-ratelimit-input-tokens-limit"},
		{Kind: "output_tokens", Remaining: "anthropic-ratelimit-output-tokens-remaining", Limit: "anthropic-ratelimit-output-tokens-limit"},
	}
	openAILimits = []QuotaLimit{
		{Kind: "requests", Remaining: "x-ratelimit-remaining-requests", Limit: "x-ratelimit-limit-requests"},
		{Kind: "tokens", Remaining: "x-ratelimit-remaining-tokens", Limit: "x-ratelimit-limit-tokens"},
	}
)

// windowHeaders says how a provider names the headers of its quota
// windows: <prefix><window name><suffix>, one suffix per header ("" when
// the provider does not send that header).
type windowHeaders struct {
	prefix                                     string
	usedFull                                   float64
	used, status, resetAt, resetAfter, minutes string
}

// Anthropic's unified subscription limits and ChatGPT's Codex usage limits.
var (
	unified = windowHeaders{prefix: "anthropic-ratelimit-unified-", usedFull: 1,
		used: "-utilization", status: "-status", resetAt: "-reset"}
	codexUsage = windowHeaders{prefix: "x-codex-", usedFull: 100,
		used: "-used-percent", resetAt: "-reset-at", resetAfter: "-reset-after-seconds", minutes: "-window-minutes"}
)

// window returns the headers of the window called name.
func (h windowHeaders) window(name string) QuotaWindow {
	header := func(suffix string) string {
		if suffix == "" {
			return ""
		}
		return h.prefix + name + suffix
	}
	return QuotaWindow{
		Name:       name,
		Used:       header(h.used),
		UsedFull:   h.usedFull,
		Status:     header(h.status),
		ResetAt:    header(h.resetAt),
		ResetAfter: header(h.resetAfter),
		Minutes:    header(h.minutes),
	}
}
