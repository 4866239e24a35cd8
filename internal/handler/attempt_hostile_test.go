package handler

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

// oneTransport serves every credential through the same round tripper.
type oneTransport struct{ rt http.RoundTripper }

func (t oneTransport) For(*auth.Auth) http.RoundTripper { return t.rt }

// hostileProxy is a Proxy over Claude credentials "a" and "b" (tried in
// that order) with the given keys and base URLs.
func hostileProxy(t *testing.T, rt http.RoundTripper, keyA, baseA, keyB, baseB string) *Proxy {
	t.Helper()
	name := "attempt-test-" + t.Name()
	p := pool.Acquire(name)
	t.Cleanup(func() { pool.Release(name) })
	p.SetMembers([]*auth.Auth{
		{ID: "a", Fields: auth.Fields{Provider: "claude", APIKey: keyA, BaseURL: baseA}},
		{ID: "b", Fields: auth.Fields{Provider: "claude", APIKey: keyB, BaseURL: baseB}},
	}, nil)
	return &Proxy{
		Pool:       p,
		Strategy:   selector.FillFirst{},
		MaxBody:    1 << 20,
		Transports: oneTransport{rt},
		Logger:     zap.NewNop(),
		Now:        time.Now,
	}
}

// serve sends one request through p and returns the recorded answer.
func serve(t *testing.T, p *Proxy, method, path, body string, h http.Header) *httptest.ResponseRecorder {
	t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	}
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	if err := p.ServeHTTP(w, r); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

func cooldowns(t *testing.T, p *Proxy, id string) []pool.Cooldown {
	t.Helper()
	c, ok := p.Pool.Get(id)
	if !ok {
		t.Fatalf("no credential %q", id)
	}
	return c.Cooldowns(time.Now())
}

const messagesBody = `{"model":"claude-x","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`

// TestAttemptErrorBodiesRedacted: an upstream error body that quotes the
// key, longer than the error body bound and with the key split by the cut,
// reaches the client bounded, with its own Content-Length and no part of
// the key, whether it is returned (400) or the last answer after every
// credential failed (500).
func TestAttemptErrorBodiesRedacted(t *testing.T) {
	const keyA, keyB = "sk-ant-secret-key-aaaaaaaaaaaaaaaa", "sk-ant-secret-key-bbbbbbbbbbbbbbbb"
	// body quotes the key at the start, straddling the bound, and at the
	// end, inside JSON, as an upstream echoing a bad request would.
	body := func(key string) []byte {
		var b bytes.Buffer
		b.WriteString(`{"error":{"message":"key ` + key + ` refused: `)
		b.WriteString(strings.Repeat("x", errorBodyLimit-b.Len()-len(key)/2))
		b.WriteString(key) // split by the cut
		b.WriteString(strings.Repeat("y", 40<<10))
		b.WriteString(key + `"}}`)
		return b.Bytes()
	}
	status := http.StatusBadRequest
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := body(r.Header.Get("X-Api-Key"))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}))
	defer up.Close()
	p := hostileProxy(t, http.DefaultTransport, keyA, up.URL, keyB, up.URL)

	check := func(w *httptest.ResponseRecorder, want int) {
		t.Helper()
		got := w.Body.Bytes()
		if w.Code != want {
			t.Fatalf("status %d, want %d", w.Code, want)
		}
		if len(got) > errorBodyLimit {
			t.Fatalf("error body of %d bytes, bound %d", len(got), errorBodyLimit)
		}
		if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(len(got)) {
			t.Fatalf("Content-Length %q for %d bytes", cl, len(got))
		}
		for _, key := range []string{keyA, keyB} {
			if bytes.Contains(got, []byte(key)) {
				t.Fatalf("key leaked in the error body")
			}
			for n := 1; n < len(key); n++ {
				if bytes.HasSuffix(got, []byte(key[:n])) {
					t.Fatalf("error body ends with the first %d bytes of the key: %q", n, got[len(got)-n:])
				}
			}
		}
		if !bytes.HasPrefix(got, []byte(`{"error":{"message":"key [redacted] refused: xxx`)) {
			t.Fatalf("body does not start as the upstream's, redacted: %.60q", got)
		}
	}

	check(serve(t, p, http.MethodPost, "/v1/messages", messagesBody, nil), http.StatusBadRequest)
	status = http.StatusInternalServerError
	check(serve(t, p, http.MethodPost, "/v1/messages", messagesBody, nil), http.StatusInternalServerError)
}

func TestTrimSecretPrefix(t *testing.T) {
	a := &auth.Auth{Fields: auth.Fields{APIKey: "sk-0123456789", AccessToken: "tok"}, RefreshToken: "rt-abcdefgh"}
	tests := []struct{ in, want string }{
		{"hello sk-0123", "hello "},
		{"hello s", "hello "},
		{"hello sk-012345678", "hello "},
		{"hello rt-abcdefg", "hello "},
		{"hello sk-0123456789", "hello sk-0123456789"}, // whole: redactSecrets's job
		{"hello to", "hello to"},                       // too short to be a secret
		{"hello x", "hello x"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(trimSecretPrefix([]byte(tt.in), a)); got != tt.want {
			t.Errorf("trimSecretPrefix(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestAttemptSmallErrorBodyPassedThrough: a short client error is returned
// whole, headers kept, with a Content-Length of its own.
func TestAttemptSmallErrorBodyPassedThrough(t *testing.T) {
	const want = `{"type":"error","error":{"type":"invalid_request_error","message":"messages: Field required"}}`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "kept")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(want))
	}))
	defer up.Close()
	p := hostileProxy(t, http.DefaultTransport, "sk-ant-aaaaaaaaaa", up.URL, "sk-ant-bbbbbbbbbb", up.URL)
	w := serve(t, p, http.MethodPost, "/v1/messages", messagesBody, nil)
	if w.Code != http.StatusUnprocessableEntity || w.Body.String() != want || w.Header().Get("X-Upstream") != "kept" ||
		w.Header().Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Fatalf("got %d %v %s", w.Code, w.Header(), w.Body)
	}
	if cd := cooldowns(t, p, "a"); len(cd) != 0 {
		t.Fatalf("client error cooled the credential: %v", cd)
	}
}

// TestAttemptTimeoutAfterSendCoolsTheModel: an upstream that takes the
// request and sends no response headers in time (response_header_timeout)
// cools that model on the credential, not every model; an endpoint that
// refuses connections cools the credential for all; and a request without a
// model cools nothing.
func TestAttemptTimeoutAfterSendCoolsTheModel(t *testing.T) {
	const slowKey, okKey = "sk-ant-slow-0000000", "sk-ant-fine-0000000"
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") == slowKey {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"type":"message","content":[]}`))
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	// The bound is only how long the slow credential is waited for (long
	// enough that the fast one never meets it on a loaded machine);
	// nothing is asserted about time.
	rt := &http.Transport{ResponseHeaderTimeout: time.Second}
	t.Cleanup(rt.CloseIdleConnections)

	t.Run("response header timeout", func(t *testing.T) {
		p := hostileProxy(t, rt, slowKey, up.URL, okKey, up.URL)
		if w := serve(t, p, http.MethodPost, "/v1/messages", messagesBody, nil); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		cd := cooldowns(t, p, "a")
		if len(cd) != 1 || cd[0].Model != "claude-x" || cd[0].Reason != failure.ReasonTimeout {
			t.Fatalf("cooldowns %+v, want claude-x only, for a timeout", cd)
		}
	})

	t.Run("refused connection", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		p := hostileProxy(t, rt, slowKey, dead.URL, okKey, up.URL)
		if w := serve(t, p, http.MethodPost, "/v1/messages", messagesBody, nil); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		cd := cooldowns(t, p, "a")
		if len(cd) != 1 || cd[0].Model != "*" {
			t.Fatalf("cooldowns %+v, want the credential for all models", cd)
		}
	})

	t.Run("no model", func(t *testing.T) {
		p := hostileProxy(t, rt, slowKey, up.URL, okKey, up.URL)
		h := http.Header{"Anthropic-Version": {"2023-06-01"}}
		if w := serve(t, p, http.MethodGet, "/v1/models", "", h); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if cd := cooldowns(t, p, "a"); len(cd) != 0 {
			t.Fatalf("a request without a model cooled %+v", cd)
		}
	})
}

func TestRequestKeys(t *testing.T) {
	gen := &parsed{model: "gemini-2.5-pro"}
	gen.route.Generation = true
	k := requestKeys(gen, "/v1beta/models/gemini-2.5-pro:embedContent")
	if k.scoped(failure.Verdict{Scope: failure.ScopeModel}) != "gemini-2.5-pro" || k.scoped(failure.Verdict{Scope: failure.ScopeEndpoint}) != "gemini-2.5-pro@/v1beta/models/gemini-2.5-pro:embedContent" {
		t.Fatalf("keys %+v", k)
	}
	if k := requestKeys(&parsed{model: "gpt-5"}, "/v1/responses/resp_1"); k.endpoint != "" {
		t.Fatalf("a request that runs no model has an endpoint key: %+v", k)
	}
	empty := &parsed{}
	empty.route.Generation = true
	if k := requestKeys(empty, "/v1/messages"); k.model != "" || k.endpoint != "" || k.families != nil {
		t.Fatalf("a request without a model has keys %+v", k)
	}
}
