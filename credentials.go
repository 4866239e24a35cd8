package llmproxy

// Credentials declared in the config (inline auth blocks).

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// InlineAuth is a credential declared in the config. Fields mean what they
// mean in a stored record (see the README).
type InlineAuth struct {
	// ID names the credential; unique within the pool.
	ID string `json:"id"`
	// Provider is claude, openai, codex, gemini or openai_compatible.
	Provider string `json:"provider"`
	// APIKey is the provider API key.
	APIKey string `json:"api_key,omitempty"`
	// AccessToken is an OAuth bearer token (Claude or Codex subscriptions).
	AccessToken string `json:"access_token,omitempty"`
	// AccountID is the ChatGPT account for Codex OAuth tokens.
	AccountID string `json:"account_id,omitempty"`
	// BaseURL overrides the provider's default API address; required for
	// openai_compatible.
	BaseURL string `json:"base_url,omitempty"`
	// Models lists the served models; * globs. Default: all.
	Models []string `json:"models,omitempty"`
	// Priority orders tiers: higher tiers are used first. Default: 0.
	Priority int `json:"priority,omitempty"`
	// Weight is the share of new sessions, 0..1000000; 0 takes no new
	// sessions. Default: 1.
	Weight *int `json:"weight,omitempty"`
	// Headers are extra upstream headers, applied last.
	Headers map[string]string `json:"headers,omitempty"`
	// ProxyURL sends this credential's requests through an egress proxy.
	ProxyURL string `json:"proxy_url,omitempty"`
	// Disabled keeps the credential out of selection.
	Disabled bool `json:"disabled,omitempty"`
	// Label is a human-readable name shown in the admin API.
	Label string `json:"label,omitempty"`
}

// inlineAuths expands placeholders in the inline credentials and validates
// them.
func (h *Handler) inlineAuths(repl *caddy.Replacer) ([]*auth.Auth, error) {
	seen := make(map[string]bool, len(h.Auths))
	out := make([]*auth.Auth, 0, len(h.Auths))
	for i, ia := range h.Auths {
		if ia == nil || ia.ID == "" {
			return nil, fmt.Errorf("auths[%d]: missing id", i)
		}
		if seen[ia.ID] {
			return nil, fmt.Errorf("auth %q is declared twice; auth IDs must be unique", ia.ID)
		}
		seen[ia.ID] = true
		x := func(s string) string { return repl.ReplaceKnown(s, "") }
		a := &auth.Auth{
			ID:          ia.ID,
			Provider:    ia.Provider,
			APIKey:      x(ia.APIKey),
			AccessToken: x(ia.AccessToken),
			AccountID:   x(ia.AccountID),
			BaseURL:     x(ia.BaseURL),
			Models:      ia.Models,
			Priority:    ia.Priority,
			Weight:      ia.Weight,
			ProxyURL:    x(ia.ProxyURL),
			Disabled:    ia.Disabled,
			Label:       ia.Label,
			Inline:      true,
		}
		if len(ia.Headers) > 0 {
			a.Headers = make(map[string]string, len(ia.Headers))
			for k, v := range ia.Headers {
				a.Headers[k] = x(v)
			}
		}
		if err := a.Validate(); err != nil {
			if a.APIKey == "" && a.AccessToken == "" && (ia.APIKey != "" || ia.AccessToken != "") {
				return nil, fmt.Errorf("%v (its value %q expanded to nothing; is the environment variable set?)", err, ia.APIKey+ia.AccessToken)
			}
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
