package provider

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

func TestNames(t *testing.T) {
	want := []string{"claude", "codex", "gemini", "openai", "openai_compatible"}
	if got := Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	for _, name := range want {
		if p := Lookup(name); p == nil || p.Name != name {
			t.Errorf("Lookup(%q) = %v", name, p)
		}
	}
	for _, name := range []string{"", "Claude", "CLAUDE", "anthropic", "openai ", "openai_compatible\x00", "azure"} {
		if p := Lookup(name); p != nil {
			t.Errorf("Lookup(%q) = %s, want nil", name, p.Name)
		}
	}
}

// TestTable checks every entry against the rules the rest of llm_proxy
// relies on, so that a new provider cannot be half declared.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range table {
		if p.Name == "" || strings.ToLower(p.Name) != p.Name || strings.ContainsAny(p.Name, " \t{}") {
			t.Errorf("bad provider name %q", p.Name)
		}
		if seen[p.Name] {
			t.Errorf("provider %q listed twice", p.Name)
		}
		seen[p.Name] = true
		if len(p.Families) == 0 || slices.Contains(p.Families, apifamily.Unknown) {
			t.Errorf("%s: families %v", p.Name, p.Families)
		}
		if p.DefaultBaseURL != "" {
			u, err := url.Parse(p.DefaultBaseURL)
			if err != nil || u.Scheme != "https" || u.Host == "" || strings.HasSuffix(p.DefaultBaseURL, "/") {
				t.Errorf("%s: default base URL %q is not an https URL without a trailing slash", p.Name, p.DefaultBaseURL)
			}
		}
		for _, h := range append([]string{p.Auth.APIKey, p.Auth.AccountID, p.Auth.OAuthFlag.Header}, headerNames(p.Auth.Defaults)...) {
			if h != "" && http.CanonicalHeaderKey(h) != h {
				t.Errorf("%s: header %q is not in canonical form", p.Name, h)
			}
		}
		if o := p.OAuth; o.TokenURL != "" {
			if !p.AccessTokens {
				t.Errorf("%s: an OAuth login but no access tokens", p.Name)
			}
			if err := o.Validate(); err != nil || p.RefreshLead <= 0 {
				t.Errorf("%s: OAuth %+v (%v), refresh lead %v", p.Name, o, err, p.RefreshLead)
			}
		} else if !reflect.DeepEqual(o, oauth.Endpoints{}) || p.RefreshLead != 0 {
			t.Errorf("%s: OAuth half declared: %+v, refresh lead %v", p.Name, o, p.RefreshLead)
		}
		for _, h := range p.Quota.names() {
			if h != "" && (strings.ToLower(h) != h || !hasAnyPrefix(h, p.Quota.HeaderPrefixes)) {
				t.Errorf("%s: quota header %q is not lower case under one of %q", p.Name, h, p.Quota.HeaderPrefixes)
			}
		}
		for _, w := range p.Quota.Windows {
			if w.Name == "" || w.Used == "" || w.UsedFull <= 0 {
				t.Errorf("%s: quota window half declared: %+v", p.Name, w)
			}
		}
	}
}

func headerNames(hs []Header) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// TestFacts pins the per-provider facts of the SPEC (sections 5, 6, 12).
func TestFacts(t *testing.T) {
	for _, tc := range []struct {
		name         string
		families     []apifamily.Family
		base         string
		accessTokens bool
		stripV1      bool
	}{
		{"claude", []apifamily.Family{apifamily.Anthropic}, "https://api.anthropic.com", true, false},
		{"codex", []apifamily.Family{apifamily.OpenAI}, "https://chatgpt.com/backend-api/codex", true, true},
		{"gemini", []apifamily.Family{apifamily.Gemini}, "https://generativelanguage.googleapis.com", false, false},
		{"openai", []apifamily.Family{apifamily.OpenAI}, "https://api.openai.com", true, false},
		{"openai_compatible", []apifamily.Family{apifamily.OpenAI}, "", true, false},
	} {
		p := Lookup(tc.name)
		if !reflect.DeepEqual(p.Families, tc.families) || p.DefaultBaseURL != tc.base || p.AccessTokens != tc.accessTokens || p.StripV1 != tc.stripV1 {
			t.Errorf("%s: families %v, base %q, access tokens %v, strip /v1 %v", tc.name, p.Families, p.DefaultBaseURL, p.AccessTokens, p.StripV1)
		}
	}

	// The OAuth defaults are the OAuth client's (SPEC section 12).
	for _, tc := range []struct {
		name string
		ep   oauth.Endpoints
		lead time.Duration
	}{
		{"claude", oauth.ClaudeDefaults(), 4 * time.Hour},
		{"codex", oauth.CodexDefaults(), 5 * 24 * time.Hour},
		{"gemini", oauth.Endpoints{}, 0},
		{"openai", oauth.Endpoints{}, 0},
		{"openai_compatible", oauth.Endpoints{}, 0},
	} {
		if p := Lookup(tc.name); !reflect.DeepEqual(p.OAuth, tc.ep) || p.RefreshLead != tc.lead {
			t.Errorf("%s: OAuth %+v, refresh lead %v", tc.name, p.OAuth, p.RefreshLead)
		}
	}
	if w := Lookup("claude").Quota.Windows; len(w) != 2 || w[0].Used != "anthropic-ratelimit-unified-5h-utilization" || w[1].ResetAt != "anthropic-ratelimit-unified-7d-reset" {
		t.Errorf("claude quota windows %+v", w)
	}
	if w := Lookup("codex").Quota.Windows; len(w) != 2 || w[0].Used != "x-codex-primary-used-percent" || w[0].UsedFull != 100 || w[1].Minutes != "x-codex-secondary-window-minutes" {
		t.Errorf("codex quota windows %+v", w)
	}
}

func TestServes(t *testing.T) {
	for _, tc := range []struct {
		provider string
		fam      apifamily.Family
		want     bool
	}{
		{"claude", apifamily.Anthropic, true}, {"openai", apifamily.Anthropic, false},
		{"openai", apifamily.OpenAI, true}, {"codex", apifamily.OpenAI, true}, {"openai_compatible", apifamily.OpenAI, true},
		{"claude", apifamily.OpenAI, false}, {"gemini", apifamily.OpenAI, false},
		{"gemini", apifamily.Gemini, true}, {"openai", apifamily.Gemini, false},
		{"claude", apifamily.Unknown, false}, {"azure", apifamily.OpenAI, false}, {"", apifamily.Unknown, false},
	} {
		if got := Lookup(tc.provider).Serves(tc.fam); got != tc.want {
			t.Errorf("Lookup(%q).Serves(%v) = %v", tc.provider, tc.fam, got)
		}
	}
}

// TestApply checks the credential headers of SPEC section 6.
func TestApply(t *testing.T) {
	key := Credential{APIKey: "key-1"}
	token := Credential{AccessToken: "tok-1", AccountID: "acct-1"}
	both := Credential{APIKey: "key-1", AccessToken: "tok-1", AccountID: "acct-1"}
	for _, tc := range []struct {
		name, provider string
		c              Credential
		client         http.Header
		want           http.Header
	}{
		{"claude key", "claude", key, nil,
			http.Header{"X-Api-Key": {"key-1"}, "Anthropic-Version": {"2023-06-01"}}},
		{"claude key keeps betas and version", "claude", key,
			http.Header{"Anthropic-Beta": {"prompt-caching-2024-07-31"}, "Anthropic-Version": {"2024-01-01"}},
			http.Header{"X-Api-Key": {"key-1"}, "Anthropic-Beta": {"prompt-caching-2024-07-31"}, "Anthropic-Version": {"2024-01-01"}}},
		{"claude oauth", "claude", token,
			http.Header{"Anthropic-Beta": {"a, b", "c"}},
			http.Header{"Authorization": {"Bearer tok-1"}, "Anthropic-Beta": {"a,b,c,oauth-2025-04-20"}, "Anthropic-Version": {"2023-06-01"}}},
		{"claude oauth flag sent once", "claude", token,
			http.Header{"Anthropic-Beta": {"oauth-2025-04-20,x"}},
			http.Header{"Authorization": {"Bearer tok-1"}, "Anthropic-Beta": {"oauth-2025-04-20,x"}, "Anthropic-Version": {"2023-06-01"}}},
		{"claude key wins over token", "claude", both, nil,
			http.Header{"X-Api-Key": {"key-1"}, "Anthropic-Version": {"2023-06-01"}}},
		{"codex oauth", "codex", token, nil,
			http.Header{"Authorization": {"Bearer tok-1"}, "Chatgpt-Account-Id": {"acct-1"}}},
		{"codex oauth without account", "codex", Credential{AccessToken: "tok-1"}, nil,
			http.Header{"Authorization": {"Bearer tok-1"}}},
		{"codex key: no account header", "codex", both, nil,
			http.Header{"Authorization": {"Bearer key-1"}}},
		{"openai key", "openai", key, nil, http.Header{"Authorization": {"Bearer key-1"}}},
		{"openai token", "openai", token, nil, http.Header{"Authorization": {"Bearer tok-1"}}},
		{"compatible", "openai_compatible", key, nil, http.Header{"Authorization": {"Bearer key-1"}}},
		{"gemini", "gemini", key, nil, http.Header{"X-Goog-Api-Key": {"key-1"}}},
		{"unknown provider sends nothing", "azure", both, nil, http.Header{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.client.Clone()
			if h == nil {
				h = http.Header{}
			}
			Lookup(tc.provider).Apply(h, tc.c)
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("headers %v, want %v", h, tc.want)
			}
		})
	}
}

func TestUpstreamPath(t *testing.T) {
	for _, tc := range []struct {
		provider, base, path, want string
	}{
		{"claude", "", "/v1/messages", "/v1/messages"},
		{"openai", "/", "/v1/chat/completions", "/v1/chat/completions"},
		{"openai_compatible", "/api/v1", "/v1/chat/completions", "/api/v1/chat/completions"},
		{"openai_compatible", "/api/v1/", "/v1/chat/completions", "/api/v1/chat/completions"},
		{"openai_compatible", "/api", "/v1/models", "/api/v1/models"},
		{"codex", "/backend-api/codex", "/v1/responses", "/backend-api/codex/responses"},
		{"codex", "/backend-api/codex", "/v1/responses/resp_1/cancel", "/backend-api/codex/responses/resp_1/cancel"},
		{"gemini", "", "/v1beta/models/g:generateContent", "/v1beta/models/g:generateContent"},
		{"gemini", "/v1", "/v1/models/g:generateContent", "/v1/models/g:generateContent"},
		{"codex", "", "/v1beta/models/g:generateContent", "/v1beta/models/g:generateContent"},
		{"azure", "/v1", "/v1/chat/completions", "/v1/chat/completions"},
	} {
		if got := Lookup(tc.provider).UpstreamPath(tc.base, tc.path); got != tc.want {
			t.Errorf("%s: %q + %q = %q, want %q", tc.provider, tc.base, tc.path, got, tc.want)
		}
	}
}

// TestQuotaValue: Value finds a quota header whatever case the upstream
// sent it in, and does not allocate.
func TestQuotaValue(t *testing.T) {
	q := &Lookup("claude").Quota
	h := http.Header{}
	h.Set("ANTHROPIC-RATELIMIT-UNIFIED-5H-UTILIZATION", "0.42")
	if got := q.Value(h, "anthropic-ratelimit-unified-5h-utilization"); got != "0.42" {
		t.Errorf("Value = %q", got)
	}
	if got := q.Value(h, "anthropic-ratelimit-unified-7d-utilization"); got != "" {
		t.Errorf("absent header: Value = %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { q.Value(h, "anthropic-ratelimit-unified-5h-utilization") }); n != 0 {
		t.Errorf("Value allocates %v times", n)
	}
	if got := Lookup("openai").Quota.Limits; len(got) != 2 || got[0].Remaining != "x-ratelimit-remaining-requests" || got[1].Limit != "x-ratelimit-limit-tokens" {
		t.Errorf("openai limits %+v", got)
	}
}
