package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// threeClaude declares the three mock Claude keys plus OpenAI, Codex and
// Gemini credentials against the mock upstream.
func allProviders(base string) string {
	return fmt.Sprintf(`	auth c1 {
		provider claude
		api_key sk-ant-one
		base_url %[1]s
	}
	auth c2 {
		provider claude
		api_key sk-ant-two
		base_url %[1]s
	}
	auth c3 {
		provider claude
		api_key sk-ant-three
		base_url %[1]s
	}
	auth o1 {
		provider openai
		api_key sk-oai-one
		base_url %[1]s
	}
	auth g1 {
		provider gemini
		api_key gm-one
		base_url %[1]s
	}
`, base)
}

const clientKey = "client-key-123"

func TestEveryFamilyReachesProviderWithPoolCredential(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), "\tllm_proxy {\n"+allProviders(up.URL)+"\t\taccess {\n\t\t\tapi_keys "+clientKey+"\n\t\t}\n\t}")

	cases := []struct {
		name, path, body string
		headers          map[string]string
		creds            []string
		stream           bool
	}{
		{"anthropic", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"x-api-key": clientKey, "anthropic-version": "2023-06-01"}, []string{"claude-1", "claude-2", "claude-3"}, false},
		{"anthropic stream", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"x-api-key": clientKey}, []string{"claude-1", "claude-2", "claude-3"}, true},
		{"chat", "/v1/chat/completions", `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"Authorization": "Bearer " + clientKey}, []string{"openai-1"}, false},
		{"chat stream", "/v1/chat/completions", `{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"Authorization": "Bearer " + clientKey}, []string{"openai-1"}, true},
		{"responses", "/v1/responses", `{"model":"gpt-5","input":"hi"}`,
			map[string]string{"Authorization": "Bearer " + clientKey}, []string{"openai-1"}, false},
		{"responses stream", "/v1/responses", `{"model":"gpt-5","input":"hi","stream":true}`,
			map[string]string{"Authorization": "Bearer " + clientKey}, []string{"openai-1"}, true},
		{"gemini", "/v1beta/models/gemini-2.5-pro:generateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`,
			map[string]string{"x-goog-api-key": clientKey}, []string{"gemini-1"}, false},
		{"gemini stream", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=" + clientKey, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`,
			nil, []string{"gemini-1"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up.Reset()
			resp, body := call(t, http.MethodPost, tc.path, tc.headers, tc.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			cred := resp.Header.Get("X-Mock-Credential")
			if !contains(tc.creds, cred) {
				t.Fatalf("served by %q, want one of %v", cred, tc.creds)
			}
			if tc.stream {
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
					t.Fatalf("content type %q", ct)
				}
				if n := len(sseEvents(body)); n < 3 {
					t.Fatalf("only %d SSE events: %s", n, body)
				}
			}
			reqs := up.Requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream saw %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			wantPath, _, _ := strings.Cut(tc.path, "?")
			if got.Path != wantPath {
				t.Errorf("upstream path %q, want %q", got.Path, wantPath)
			}
			if strings.Contains(got.RawQuery, "key=") {
				t.Errorf("client key left in upstream query %q", got.RawQuery)
			}
			if tc.stream && strings.Contains(tc.path, "alt=sse") && !strings.Contains(got.RawQuery, "alt=sse") {
				t.Errorf("query not kept: %q", got.RawQuery)
			}
			for k, vv := range got.Header {
				for _, v := range vv {
					if strings.Contains(v, clientKey) {
						t.Errorf("client key reached upstream in header %s", k)
					}
				}
			}
			if got.Body != tc.body {
				t.Errorf("body changed on the way: %q", got.Body)
			}
		})
	}
}

func TestCredentialHeadersPerProvider(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	site := fmt.Sprintf(`	llm_proxy {
		auth oauth {
			provider claude
			access_token oat-claude
			base_url %[1]s
			header X-Extra team-a
		}
		auth cx {
			provider codex
			access_token oat-codex
			account_id acct-42
			base_url %[1]s/backend-api/codex
		}
	}`, up.URL)
	loadConfig(t, t.TempDir(), site)

	resp, body := call(t, http.MethodPost, "/v1/messages", map[string]string{"anthropic-beta": "prompt-caching-2024-07-31"},
		`{"model":"claude-opus-4","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	r := up.Requests()[0]
	if got := r.Header.Get("Authorization"); got != "Bearer oat-claude" {
		t.Errorf("Authorization %q", got)
	}
	if got := r.Header.Get("Anthropic-Beta"); got != "prompt-caching-2024-07-31,oauth-2025-04-20" {
		t.Errorf("anthropic-beta %q", got)
	}
	if got := r.Header.Get("Anthropic-Version"); got != "2023-06-01" {
		t.Errorf("anthropic-version %q", got)
	}
	if got := r.Header.Get("X-Extra"); got != "team-a" {
		t.Errorf("extra header %q", got)
	}
	if r.Header.Get("X-Api-Key") != "" {
		t.Errorf("x-api-key sent with an OAuth token")
	}

	up.Reset()
	resp, body = call(t, http.MethodPost, "/v1/responses", nil, `{"model":"gpt-5-codex","input":"x","stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("codex status %d: %s", resp.StatusCode, body)
	}
	r = up.Requests()[0]
	if r.Path != "/backend-api/codex/responses" {
		t.Errorf("codex path %q", r.Path)
	}
	if got := r.Header.Get("Chatgpt-Account-Id"); got != "acct-42" {
		t.Errorf("chatgpt-account-id %q", got)
	}
}

func TestRoundRobinSpreadsOverThreeCredentials(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), "\tllm_proxy {\n"+allProviders(up.URL)+"\t}")
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		resp, body := call(t, http.MethodPost, "/v1/messages", nil, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		counts[resp.Header.Get("X-Mock-Credential")]++
	}
	for _, c := range []string{"claude-1", "claude-2", "claude-3"} {
		if counts[c] != 10 {
			t.Fatalf("round robin uneven: %v", counts)
		}
	}
}

func TestAccessChecksClientKeys(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), "\tllm_proxy {\n"+allProviders(up.URL)+"\t\taccess {\n\t\t\tapi_keys "+clientKey+" second-key\n\t\t}\n\t}")
	msg := `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name    string
		path    string
		headers map[string]string
		status  int
	}{
		{"missing", "/v1/messages", nil, 401},
		{"wrong", "/v1/messages", map[string]string{"x-api-key": "nope"}, 401},
		{"x-api-key", "/v1/messages", map[string]string{"x-api-key": clientKey}, 200},
		{"bearer", "/v1/messages", map[string]string{"Authorization": "Bearer second-key"}, 200},
		{"goog", "/v1/messages", map[string]string{"x-goog-api-key": clientKey}, 200},
		{"query key", "/v1/messages?key=" + clientKey, nil, 200},
		{"query auth_token", "/v1/messages?auth_token=" + clientKey, nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, http.MethodPost, tc.path, tc.headers, msg)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 401 {
				if jsonField(t, body, "type") != "error" || jsonField(t, body, "error", "type") != "authentication_error" {
					t.Fatalf("401 not in Anthropic shape: %s", body)
				}
				if strings.Contains(string(body), clientKey) {
					t.Fatalf("401 leaks a key: %s", body)
				}
			}
		})
	}
	// The error shape follows the API family.
	resp, body := call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"gpt-5","messages":[]}`)
	if resp.StatusCode != 401 || jsonField(t, body, "error", "code") != "invalid_api_key" {
		t.Fatalf("OpenAI 401: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, http.MethodPost, "/v1beta/models/gemini-2.5-pro:generateContent", nil, `{}`)
	if resp.StatusCode != 401 || jsonField(t, body, "error", "status") != "UNAUTHENTICATED" {
		t.Fatalf("Gemini 401: %d %s", resp.StatusCode, body)
	}
}

func TestPluginErrors(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	// A closed port: connections are refused.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	site := fmt.Sprintf(`	llm_proxy {
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
			models claude-*
		}
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %s
		}
		max_request_body 1KB
	}`, up.URL, deadURL)
	loadConfig(t, t.TempDir(), site)

	resp, body := call(t, http.MethodPost, "/v1/messages", nil, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 503 || jsonField(t, body, "error", "type") != "overloaded_error" {
		t.Errorf("no credential for model: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, http.MethodGet, "/v2/whatever", nil, "")
	if resp.StatusCode != 404 || jsonField(t, body, "error", "message") == nil {
		t.Errorf("unknown path: %d %s", resp.StatusCode, body)
	}
	big := `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`
	resp, body = call(t, http.MethodPost, "/v1/messages", nil, big)
	if resp.StatusCode != 413 || jsonField(t, body, "error", "type") != "request_too_large" {
		t.Errorf("too large: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 502 || jsonField(t, body, "error", "type") != "server_error" {
		t.Errorf("unreachable: %d %s", resp.StatusCode, body)
	}
	// Malformed JSON bodies are forwarded (the upstream judges them) and
	// never crash the handler.
	resp, _ = call(t, http.MethodPost, "/v1/messages", nil, `{"model":"claude-x","messages":[{"role":`)
	if resp.StatusCode >= 500 && resp.StatusCode != 503 {
		t.Errorf("malformed body: %d", resp.StatusCode)
	}
}

// gatedUpstream streams one SSE event, then waits for the test to release
// it before sending the rest; it records when its request context ends.
type gatedUpstream struct {
	release   chan struct{}
	cancelled chan struct{}
	started   chan struct{}
	once      sync.Once
}

func newGated() *gatedUpstream {
	return &gatedUpstream{release: make(chan struct{}), cancelled: make(chan struct{}), started: make(chan struct{}, 10)}
}

func (g *gatedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\"}\n\n")
	w.(http.Flusher).Flush()
	g.started <- struct{}{}
	select {
	case <-g.release:
		fmt.Fprint(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	case <-r.Context().Done():
		g.once.Do(func() { close(g.cancelled) })
	}
}

func gatedSite(url string) string {
	return fmt.Sprintf(`	llm_proxy {
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
	}`, url)
}

// openStream starts a streaming request and returns the reader positioned
// after the first event.
func openStream(t *testing.T, ctx context.Context) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, siteAddr+"/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		var sb strings.Builder
		for {
			line, err := br.ReadString('\n')
			sb.WriteString(line)
			if err != nil || line == "\n" {
				break
			}
		}
		first <- sb.String()
	}()
	select {
	case ev := <-first:
		if !strings.Contains(ev, "message_start") {
			t.Fatalf("first event %q", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first SSE event did not arrive while the upstream held the rest: the response is buffered")
	}
	return resp, br
}

func TestStreamArrivesEventByEventAndClientCancelStopsUpstream(t *testing.T) {
	g := newGated()
	srv := httptest.NewServer(g)
	defer srv.Close()
	loadConfig(t, t.TempDir(), gatedSite(srv.URL))

	ctx, cancel := context.WithCancel(context.Background())
	resp, _ := openStream(t, ctx)
	cancel()
	resp.Body.Close()
	select {
	case <-g.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream call was not cancelled after the client left")
	}
}

func TestReloadDoesNotCutRunningStream(t *testing.T) {
	g := newGated()
	srv := httptest.NewServer(g)
	defer srv.Close()
	dir := t.TempDir()
	loadConfig(t, dir, gatedSite(srv.URL))

	resp, br := openStream(t, context.Background())
	defer resp.Body.Close()

	// Reload with a changed config while the stream is open.
	if code, body := postLoad(t, caddyfile(dir, gatedSite(srv.URL)+"\n\tlog")); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	close(g.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream cut by reload: %v", err)
	}
	if !strings.Contains(string(rest), "message_stop") {
		t.Fatalf("stream incomplete after reload: %q", rest)
	}
	select {
	case <-g.cancelled:
		t.Fatal("upstream call was cancelled by the reload")
	default:
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
