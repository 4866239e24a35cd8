package handler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// trickle sends one byte of a body, then blocks until released.
type trickle struct {
	sent    bool
	waiting chan struct{} // closed when the reader asks for more
	release chan struct{}
}

func (t *trickle) Read(p []byte) (int, error) {
	if !t.sent {
		t.sent = true
		p[0] = '{'
		return 1, nil
	}
	close(t.waiting)
	<-t.release
	return 0, io.ErrUnexpectedEOF
}

// TestReadBodyAllocatesAsDataArrives: a client that declares 32 MiB and
// sends one byte must not make the gateway allocate 32 MiB.
func TestReadBodyAllocatesAsDataArrives(t *testing.T) {
	const declared = 32 << 20
	body := &trickle{waiting: make(chan struct{}), release: make(chan struct{})}
	r := httptest.NewRequest(http.MethodPost, "/v1/messages", io.NopCloser(body))
	r.ContentLength = declared

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan error, 1)
	go func() {
		_, err := readBody(r, declared)
		done <- err
	}()
	<-body.waiting // the first byte is in; readBody waits for more
	runtime.ReadMemStats(&after)
	close(body.release)
	if err := <-done; err == nil {
		t.Fatal("a body cut short was accepted")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("allocated %d bytes for a 1-byte body declared as %d", grew, declared)
	}
}

func TestReadBodyDeclaredLengths(t *testing.T) {
	for _, n := range []int{1, 100, initialBodyBuffer - 1, initialBodyBuffer, initialBodyBuffer + 1, 3*initialBodyBuffer + 7, 5 << 20} {
		data := strings.Repeat("y", n)
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(data))
		got, err := readBody(r, 8<<20)
		if err != nil || string(got) != data {
			t.Errorf("%d bytes: got %d bytes, %v", n, len(got), err)
		}
		if n <= initialBodyBuffer && cap(got) != n {
			t.Errorf("%d bytes: buffer of %d, want one buffer of exactly the body", n, cap(got))
		}
	}
	// A body shorter than declared is an error, not a short body.
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("short"))
	r.ContentLength = 100
	if _, err := readBody(r, 1000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short body: %v", err)
	}
	// Declaring more than the limit is refused before reading.
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	r.ContentLength = 1001
	if _, err := readBody(r, 1000); err != errTooLarge {
		t.Errorf("declared over the limit: %v", err)
	}
}

// newRequest builds a request as net/http's server does: Path decoded,
// RawPath kept when the client's escaping differs from the default.
func newRequest(t *testing.T, method, target, body string) *http.Request {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(method, "/", strings.NewReader(body))
	r.URL = u
	r.RequestURI = target
	return r
}

func TestParseRefusesBeforeUpstream(t *testing.T) {
	for _, tc := range []struct {
		name, target, body, want string
	}{
		{"encoded slash in a response ID", "/v1/responses/resp_1%2Fcancel", "", "encoded '/'"},
		{"encoded slash, lower case", "/v1/messages%2fbatches", "", "encoded '/'"},
		{"model over 256 bytes", "/v1/messages", `{"model":"` + strings.Repeat("m", 257) + `"}`, "at most 256"},
		{"8 MB model", "/v1/chat/completions", `{"model":"` + strings.Repeat("m", 8<<20) + `"}`, "at most 256"},
		{"model with a NUL", "/v1/messages", `{"model":"claude\u0000x"}`, "control character"},
		{"model with an escape sequence", "/v1/responses", `{"model":"gpt\u001b[31m"}`, "control character"},
		{"gemini path model over 256 bytes", "/v1beta/models/" + strings.Repeat("g", 300) + ":generateContent", `{}`, "at most 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(t, http.MethodPost, tc.target, tc.body)
			route, ok := apifamily.ParseRequest(r.URL.Path, r.Header)
			if !ok {
				t.Fatalf("route %q refused; this case is about what comes after", r.URL.Path)
			}
			_, err := parse(r, route, 32<<20, true)
			var re *requestError
			if !errors.As(err, &re) || !strings.Contains(re.msg, tc.want) {
				t.Fatalf("parse: %v; want a request error saying %q", err, tc.want)
			}
			if len(re.msg) > 200 {
				t.Errorf("the error message echoes the input: %d bytes", len(re.msg))
			}
		})
	}
	// Other escapes decode to what the route check sees and are served.
	r := newRequest(t, http.MethodGet, "/v1/responses/resp%5F1", "")
	route, ok := apifamily.ParseRequest(r.URL.Path, r.Header)
	if !ok {
		t.Fatal("escaped underscore refused")
	}
	p, err := parse(r, route, 1<<20, false)
	if err != nil || p.resource != "resp_1" {
		t.Fatalf("parse: %+v %v", p, err)
	}
}

func TestStoredResourceIDs(t *testing.T) {
	for _, tc := range []struct {
		method, path, body string
		creates            bool
		id                 string
	}{
		{"POST", "/v1/responses", `{"previous_response_id":"resp_1"}`, true, "resp_1"},
		{"POST", "/v1/responses", `{"previous_response_id":"` + strings.Repeat("r", 300) + `"}`, true, ""},
		{"POST", "/v1/responses/compact", `{"previous_response_id":"resp_2"}`, false, "resp_2"},
		{"POST", "/v1/responses/input_tokens", `{"previous_response_id":"resp_3"}`, false, "resp_3"},
		{"GET", "/v1/responses/resp_4", "", false, "resp_4"},
		{"POST", "/v1/responses/resp_5/cancel", "", false, "resp_5"},
		{"POST", "/v1/messages/batches", "{}", true, ""},
		{"GET", "/v1/messages/batches/b_6/results", "", false, "b_6"},
	} {
		r := newRequest(t, tc.method, tc.path, tc.body)
		route, ok := apifamily.Parse(tc.path)
		if !ok {
			t.Fatalf("%s refused", tc.path)
		}
		creates, id := storedResource(r, route, []byte(tc.body))
		if creates != tc.creates || id != tc.id {
			t.Errorf("%s %s: creates %v id %q; want %v %q", tc.method, tc.path, creates, id, tc.creates, tc.id)
		}
	}
}

// TestUpstreamGetsTheCheckedPath: the upstream URL carries the decoded,
// checked path, re-encoded, never the client's own escaping.
func TestUpstreamGetsTheCheckedPath(t *testing.T) {
	base, _ := url.Parse("https://up.example/api")
	for target, want := range map[string]string{
		"/v1/responses/resp%5F1/cancel":                   "https://up.example/api/v1/responses/resp_1/cancel",
		"/v1beta/models/gemini%2D2.5:generateContent?x=1": "https://up.example/api/v1beta/models/gemini-2.5:generateContent?x=1",
	} {
		r := newRequest(t, http.MethodPost, target, "{}")
		if _, ok := apifamily.Parse(r.URL.Path); !ok {
			t.Fatalf("%s refused", target)
		}
		out := newUpstreamRequest(context.Background(), r, nil, &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "gemini", APIKey: "k"}}, base, nil)
		if got := out.URL.String(); got != want {
			t.Errorf("%s went to %s, want %s", target, got, want)
		}
	}
}

func TestForwardHeadersAllowlist(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://proxy/v1/responses", strings.NewReader("{}"))
	sent := map[string]string{
		// Forwarded by default.
		"Content-Type":             "application/json",
		"Accept":                   "text/event-stream",
		"User-Agent":               "codex_exec/0.171.0",
		"Anthropic-Version":        "2023-06-01",
		"Anthropic-Beta":           "prompt-caching-2024-07-31",
		"X-Stainless-Os":           "Linux",
		"X-App":                    "cli",
		"X-Claude-Code-Session-Id": "cc-1",
		"Openai-Beta":              "responses=experimental",
		"Originator":               "codex_exec",
		"Session-Id":               "s-1",
		"Thread-Id":                "t-1",
		"X-Client-Request-Id":      "r-1",
		"X-Codex-Turn-Metadata":    "{}",
		"X-Session-Id":             "x-1",
		"X-Goog-Api-Client":        "genai-js/1.0",
		"Idempotency-Key":          "idem-1",
		"X-Team":                   "blue", // added by the extra list below
		"X-Trace-Me":               "yes",  // added by the extra glob below
		// Dropped.
		"Cookie":              "sso=secret",
		"Openai-Organization": "org-attacker",
		"Openai-Project":      "proj-attacker",
		"X-Goog-User-Project": "attacker-project",
		"Chatgpt-Account-Id":  "acct-attacker",
		"X-Forwarded-For":     "10.0.0.1",
		"X-Internal":          "1",
		"Authorization":       "Bearer client-key",
		"X-Api-Key":           "client-key",
		"Proxy-Authorization": "Basic x",
		"Accept-Encoding":     "br",
		"Expect":              "100-continue",
	}
	for k, v := range sent {
		r.Header.Set(k, v)
	}
	r.Header["Session_id"] = []string{"s-2"} // not canonical, as Codex sends it
	r.Header.Set("Connection", "X-Team")     // named in Connection: hop-by-hop

	fwd, err := NewHeaderAllowlist([]string{"x-team", "X-Trace-*"})
	if err != nil {
		t.Fatal(err)
	}
	out := newUpstreamRequest(context.Background(), r, []byte("{}"), &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "codex", AccessToken: "tok", AccountID: "acct-pool"}}, &url.URL{Scheme: "https", Host: "up"}, fwd)
	h := out.Header
	for _, k := range []string{"Content-Type", "Accept", "User-Agent", "Anthropic-Version", "Anthropic-Beta", "X-Stainless-Os", "X-App",
		"X-Claude-Code-Session-Id", "Openai-Beta", "Originator", "Session-Id", "Thread-Id", "X-Client-Request-Id", "X-Codex-Turn-Metadata",
		"X-Session-Id", "X-Goog-Api-Client", "Idempotency-Key", "X-Trace-Me"} {
		if h.Get(k) != sent[k] {
			t.Errorf("%s: got %q, want %q forwarded", k, h.Get(k), sent[k])
		}
	}
	if h["Session_id"] == nil {
		t.Errorf("Session_id not forwarded")
	}
	for _, k := range []string{"Cookie", "Openai-Organization", "Openai-Project", "X-Goog-User-Project", "X-Forwarded-For", "X-Internal",
		"X-Api-Key", "Proxy-Authorization", "Accept-Encoding", "Expect", "Connection", "X-Team"} {
		if v, ok := h[k]; ok {
			t.Errorf("%s forwarded: %q", k, v)
		}
	}
	if h.Get("Authorization") != "Bearer tok" || h.Get("Chatgpt-Account-Id") != "acct-pool" {
		t.Errorf("credential not applied: authorization %q account %q", h.Get("Authorization"), h.Get("Chatgpt-Account-Id"))
	}
	// The default list drops the extra names.
	out = newUpstreamRequest(context.Background(), r, nil, &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "openai", APIKey: "k"}}, &url.URL{Scheme: "https", Host: "up"}, nil)
	if out.Header.Get("X-Trace-Me") != "" || out.Header.Get("Chatgpt-Account-Id") != "" {
		t.Errorf("default allowlist forwarded %v", out.Header)
	}
	// Per-credential headers still come last.
	out = newUpstreamRequest(context.Background(), r, nil, &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "openai", APIKey: "k", Headers: map[string]string{"OpenAI-Organization": "org-pool"}}}, &url.URL{Scheme: "https", Host: "up"}, nil)
	if got := out.Header.Values("Openai-Organization"); len(got) != 1 || got[0] != "org-pool" {
		t.Errorf("OpenAI-Organization %q, want the credential's", got)
	}
}

func TestCheckForwardHeader(t *testing.T) {
	for _, ok := range []string{"X-Team", "x-trace-*", "*", "OpenAI-Organization", "Cookie"} {
		if err := CheckForwardHeader(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Authorization", "x-api-key", "X-Goog-Api-Key", "Connection", "Host", "Content-Length", "bad name", "a:b", "x\n"} {
		if err := CheckForwardHeader(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A glob that matches everything still never forwards the client's key.
	all, err := NewHeaderAllowlist([]string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Authorization", "X-Api-Key", "x-goog-api-key", "Transfer-Encoding", "Host"} {
		if all.allows(k) {
			t.Errorf("* forwards %s", k)
		}
	}
	if !all.allows("Cookie") {
		t.Errorf("* does not forward Cookie")
	}
}
