package handler

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/provider"
)

func TestUpstreamURL(t *testing.T) {
	for _, tc := range []struct {
		base, provider, path, query, want string
	}{
		{"https://api.anthropic.com", "claude", "/v1/messages", "beta=true", "https://api.anthropic.com/v1/messages?beta=true"},
		{"https://api.openai.com", "openai", "/v1/chat/completions", "", "https://api.openai.com/v1/chat/completions"},
		{"https://openrouter.ai/api/v1", "openai_compatible", "/v1/chat/completions", "", "https://openrouter.ai/api/v1/chat/completions"},
		{"https://chatgpt.com/backend-api/codex", "codex", "/v1/responses", "", "https://chatgpt.com/backend-api/codex/responses"},
		{"http://127.0.0.1:8080/", "gemini", "/v1beta/models/g:streamGenerateContent", "alt=sse", "http://127.0.0.1:8080/v1beta/models/g:streamGenerateContent?alt=sse"},
	} {
		base, _ := url.Parse(tc.base)
		if got := upstreamURL(base, provider.Lookup(tc.provider), tc.path, tc.query).String(); got != tc.want {
			t.Errorf("%s + %s = %s, want %s", tc.base, tc.path, got, tc.want)
		}
	}
}

func TestNewUpstreamRequestAppliesCredentialAndStripsClientKeys(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://proxy/v1/messages?key=client-secret&beta=true", strings.NewReader("{}"))
	r.Header.Set("Authorization", "Bearer client-secret")
	r.Header.Set("X-Api-Key", "client-secret")
	r.Header.Set("X-Goog-Api-Key", "client-secret")
	r.Header.Set("Connection", "keep-alive, X-Hop")
	r.Header.Set("X-Hop", "1")
	r.Header.Set("Keep-Alive", "timeout=5")
	r.Header.Set("Anthropic-Beta", "prompt-caching-2024-07-31")
	r.Header.Set("Idempotency-Key", "idem-1")
	r.Header.Set("Accept-Encoding", "br")
	r.Header.Set("Expect", "100-continue")
	body := []byte(`{"model":"claude-x"}`)

	for _, tc := range []struct {
		name  string
		a     *auth.Auth
		check func(t *testing.T, h http.Header)
	}{
		{"claude api key", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "claude", APIKey: "sk-up"}}, func(t *testing.T, h http.Header) {
			if h.Get("X-Api-Key") != "sk-up" || h.Get("Authorization") != "" {
				t.Errorf("x-api-key %q authorization %q", h.Get("X-Api-Key"), h.Get("Authorization"))
			}
			if h.Get("Anthropic-Beta") != "prompt-caching-2024-07-31" {
				t.Errorf("betas changed for an API key: %q", h.Get("Anthropic-Beta"))
			}
			if h.Get("Anthropic-Version") != "2023-06-01" {
				t.Errorf("anthropic-version %q", h.Get("Anthropic-Version"))
			}
		}},
		{"claude oauth", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "claude", AccessToken: "oat"}}, func(t *testing.T, h http.Header) {
			if h.Get("Authorization") != "Bearer oat" || h.Get("X-Api-Key") != "" {
				t.Errorf("authorization %q x-api-key %q", h.Get("Authorization"), h.Get("X-Api-Key"))
			}
			if h.Get("Anthropic-Beta") != "prompt-caching-2024-07-31,oauth-2025-04-20" {
				t.Errorf("betas %q", h.Get("Anthropic-Beta"))
			}
		}},
		{"openai", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "openai", APIKey: "sk-o", Headers: map[string]string{"OpenAI-Organization": "org-1"}}}, func(t *testing.T, h http.Header) {
			if h.Get("Authorization") != "Bearer sk-o" || h.Get("Openai-Organization") != "org-1" {
				t.Errorf("headers %v", h)
			}
		}},
		{"codex oauth", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "codex", AccessToken: "tok", AccountID: "acct"}}, func(t *testing.T, h http.Header) {
			if h.Get("Authorization") != "Bearer tok" || h.Get("Chatgpt-Account-Id") != "acct" {
				t.Errorf("headers %v", h)
			}
		}},
		{"gemini", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "gemini", APIKey: "gk"}}, func(t *testing.T, h http.Header) {
			if h.Get("X-Goog-Api-Key") != "gk" || h.Get("Authorization") != "" {
				t.Errorf("headers %v", h)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := url.Parse("https://up.example")
			out := newUpstreamRequest(context.Background(), r, body, tc.a, base, nil)
			for k, vv := range out.Header {
				for _, v := range vv {
					if strings.Contains(v, "client-secret") {
						t.Errorf("client key forwarded in %s", k)
					}
				}
			}
			if strings.Contains(out.URL.RawQuery, "client-secret") || !strings.Contains(out.URL.RawQuery, "beta=true") {
				t.Errorf("query %q", out.URL.RawQuery)
			}
			for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Accept-Encoding", "Expect"} {
				if out.Header.Get(k) != "" {
					t.Errorf("%s forwarded", k)
				}
			}
			if out.Header.Get("Idempotency-Key") != "idem-1" {
				t.Errorf("client's Idempotency-Key not forwarded")
			}
			got, _ := io.ReadAll(out.Body)
			if string(got) != string(body) || out.ContentLength != int64(len(body)) {
				t.Errorf("body %q length %d", got, out.ContentLength)
			}
			// The body can be replayed for the next credential.
			again, _ := out.GetBody()
			if b, _ := io.ReadAll(again); string(b) != string(body) {
				t.Errorf("replayed body %q", b)
			}
			tc.check(t, out.Header)
		})
	}
	// Never generated when the client did not send one.
	r.Header.Del("Idempotency-Key")
	out := newUpstreamRequest(context.Background(), r, body, &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "openai", APIKey: "k"}}, &url.URL{Scheme: "https", Host: "x"}, nil)
	if _, ok := out.Header["Idempotency-Key"]; ok {
		t.Errorf("Idempotency-Key generated")
	}
}

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 11)))
	if _, err := readBody(r, 10); err != errTooLarge {
		t.Errorf("11 bytes over a 10 byte limit: %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 10)))
	if b, err := readBody(r, 10); err != nil || len(b) != 10 {
		t.Errorf("10 bytes: %d %v", len(b), err)
	}
	// A body without Content-Length is limited too.
	r = httptest.NewRequest(http.MethodPost, "/", io.NopCloser(strings.NewReader(strings.Repeat("x", 11))))
	r.ContentLength = -1
	if _, err := readBody(r, 10); err != errTooLarge {
		t.Errorf("chunked body over the limit: %v", err)
	}
}

func TestRedactSecrets(t *testing.T) {
	a := &auth.Auth{Fields: auth.Fields{APIKey: "sk-upstream-secret-1234", AccessToken: "short"}}
	got := string(redactSecrets([]byte(`{"error":{"message":"Incorrect API key provided: sk-upstream-secret-1234."}}`), a))
	if strings.Contains(got, "sk-upstream-secret-1234") || !strings.Contains(got, "[redacted]") {
		t.Fatalf("secret not redacted: %s", got)
	}
	// Very short values are not treated as secrets to hunt for.
	if got := string(redactSecrets([]byte("a short answer"), a)); got != "a short answer" {
		t.Fatalf("short value redacted: %s", got)
	}
}

// TestNewUpstreamRequestCredentialWins: a client cannot choose the account
// or the credential sent upstream, and per-credential headers come last.
func TestNewUpstreamRequestCredentialWins(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://proxy/v1/responses", strings.NewReader("{}"))
	r.Header.Set("Chatgpt-Account-Id", "client-account")
	r.Header.Set("Authorization", "Bearer client-token")
	r.Header.Set("Anthropic-Version", "2023-01-01")
	fwd, err := NewHeaderAllowlist([]string{"Chatgpt-*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		a       *auth.Auth
		account string
	}{
		{"codex oauth", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "codex", AccessToken: "tok", AccountID: "acct"}}, "acct"},
		{"codex key", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "codex", APIKey: "key", AccountID: "acct"}}, ""},
		{"credential header", &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "codex", AccessToken: "tok", AccountID: "acct",
			Headers: map[string]string{"Chatgpt-Account-Id": "configured"}}}, "configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := url.Parse("https://chatgpt.example/backend-api/codex")
			out := newUpstreamRequest(context.Background(), r, []byte("{}"), tc.a, base, nil)
			if got := out.Header.Get("Chatgpt-Account-Id"); got != tc.account {
				t.Errorf("chatgpt-account-id %q, want %q", got, tc.account)
			}
			// Forwarding the header on purpose does not let a client
			// override the account of an OAuth credential.
			out = newUpstreamRequest(context.Background(), r, []byte("{}"), tc.a, base, fwd)
			if got := out.Header.Get("Chatgpt-Account-Id"); tc.account != "" && got != tc.account {
				t.Errorf("with chatgpt-* forwarded: chatgpt-account-id %q, want %q", got, tc.account)
			}
			if got := out.Header.Get("Authorization"); got != "Bearer "+tc.a.Secret() {
				t.Errorf("authorization %q", got)
			}
			if out.URL.String() != "https://chatgpt.example/backend-api/codex/responses" {
				t.Errorf("url %s", out.URL)
			}
		})
	}

	// A claude credential keeps the client's anthropic-version unless its
	// own headers set one.
	a := &auth.Auth{ID: "c", Fields: auth.Fields{Provider: "claude", APIKey: "k"}}
	if out := newUpstreamRequest(context.Background(), r, nil, a, &url.URL{Scheme: "https", Host: "x"}, nil); out.Header.Get("Anthropic-Version") != "2023-01-01" {
		t.Errorf("anthropic-version %q", out.Header.Get("Anthropic-Version"))
	}
	a.Headers = map[string]string{"Anthropic-Version": "2099-01-01"}
	if out := newUpstreamRequest(context.Background(), r, nil, a, &url.URL{Scheme: "https", Host: "x"}, nil); out.Header.Get("Anthropic-Version") != "2099-01-01" {
		t.Errorf("anthropic-version %q with a credential header", out.Header.Get("Anthropic-Version"))
	}
}
