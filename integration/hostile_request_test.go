package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// hostileSite is a pool of one credential per family on the mock, with
// session affinity on (so session extraction runs on every request).
func hostileSite(base, extra string) string {
	return fmt.Sprintf(`	llm_proxy {
		pool hostile
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %[1]s
		}
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %[1]s
			header OpenAI-Organization org-pool
		}
		auth g1 {
			provider gemini
			api_key gm-one
			base_url %[1]s
		}
		routing {
			session_affinity on
		}
%[2]s	}`, base, extra)
}

// rawCall sends a request with the target exactly as given (no client-side
// cleaning or escaping), the way an attacker's socket would, and returns
// the response with its body read.
func rawCall(t *testing.T, method, target string, headers map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(siteAddr, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, strings.TrimPrefix(siteAddr, "http://"), len(body))
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, rb
}

// TestHostileNestedUserIDDoesNotCrash: a metadata.user_id string holding
// JSON nested 30 million levels deep once overflowed the stack while it was
// validated, and the whole Caddy process exited. This test runs Caddy in
// its own process: if it crashed, so would the test binary.
func TestHostileNestedUserIDDoesNotCrash(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), hostileSite(up.URL, ""))

	nested := `{\"a\":` + strings.Repeat("[", 30_000_000)
	for _, body := range []string{
		`{"model":"claude-sonnet-4-5","max_tokens":5,"metadata":{"user_id":"` + nested + `"},"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"claude-sonnet-4-5","max_tokens":5,"metadata":{"user_id":` + strings.Repeat("[", 30_000_000) + `}}`,
	} {
		resp, b := call(t, http.MethodPost, "/v1/messages", nil, body)
		if resp.StatusCode == http.StatusBadGateway || resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("nested user_id: %d %.200s", resp.StatusCode, b)
		}
	}
	resp, b := call(t, http.MethodPost, "/v1/messages", nil, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"still there?"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("Caddy stopped serving after a nested user_id: %d %s", resp.StatusCode, b)
	}
}

// TestHostilePathsNeverReachUpstream: paths that climb out of an endpoint,
// hide '/' in an ID, or add segments are refused before any credential is
// used: the mock upstream receives nothing.
func TestHostilePathsNeverReachUpstream(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), hostileSite(up.URL, ""))

	for _, tc := range []struct {
		method, target string
		status         int
		errorType      string // error.type in the answer's shape
	}{
		{"POST", "/v1/messages/../../admin", 404, "invalid_request_error"},
		{"GET", "/v1/messages/batches/../../../llm_proxy/pools", 404, "invalid_request_error"},
		{"POST", "/v1/messages/..%2F..%2Fadmin", 404, "invalid_request_error"},
		{"GET", "/v1/responses/%2e%2e/x", 404, "invalid_request_error"},
		{"GET", "/v1/responses/%2E%2E", 404, "invalid_request_error"},
		{"GET", "/v1/responses/./cancel", 404, "invalid_request_error"},
		{"POST", "/v1beta/models/gemini-pro:generateContent/extra", 404, "invalid_request_error"},
		{"POST", "/v1beta/models/gemini-pro:generateContent/..", 404, "invalid_request_error"},
		{"POST", "/v1beta/models/gemini-pro:predictLongRunning", 404, "invalid_request_error"},
		{"POST", "/v1beta/models/..%2F..%2Fv1%2Fmessages:generateContent", 404, "invalid_request_error"},
		{"POST", "//v1/messages", 404, "invalid_request_error"},
		{"POST", "/v1//messages", 404, "invalid_request_error"},
		{"POST", "/v1/messages/", 404, "invalid_request_error"},
		{"POST", "/v1/./messages", 404, "invalid_request_error"},
		{"GET", "/v1/models/%2e%2e", 404, "invalid_request_error"},
		{"GET", "/v1/messages/batches/b%00x", 404, "invalid_request_error"},
		{"GET", "/v1/responses/" + strings.Repeat("r", 300), 404, "invalid_request_error"},
		// The decoded path is a served one, but the client wrote '/' as %2F:
		// 400 in the family's shape.
		{"POST", "/v1/responses/resp_1%2Fcancel", 400, "invalid_request_error"},
		{"POST", "/v1/messages%2Fbatches", 400, "invalid_request_error"},
	} {
		resp, b := rawCall(t, tc.method, tc.target, map[string]string{"Content-Type": "application/json", "Anthropic-Version": "2023-06-01"}, `{"model":"claude-sonnet-4-5"}`)
		if resp.StatusCode != tc.status || jsonField(t, b, "error", "type") != tc.errorType {
			t.Errorf("%s %s: %d %s; want %d with error.type %s", tc.method, tc.target, resp.StatusCode, b, tc.status, tc.errorType)
		}
	}
	if reqs := up.Requests(); len(reqs) != 0 {
		for _, r := range reqs {
			t.Errorf("upstream received %s %s with credential %q", r.Method, r.Path, r.Credential)
		}
	}
	// The same connection style reaches served paths.
	resp, b := rawCall(t, "POST", "/v1/messages", map[string]string{"Content-Type": "application/json"},
		`{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || len(up.Requests()) != 1 {
		t.Fatalf("served path: %d %s", resp.StatusCode, b)
	}
}

// TestHostileModelNames: model names over 256 bytes or with control
// characters get 400 in the client's API shape, before any upstream call,
// and leave nothing behind (30 requests with 8 MB names once grew the heap
// to 490 MB through per-model state).
func TestHostileModelNames(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), hostileSite(up.URL, ""))

	long := strings.Repeat("m", 257)
	for _, tc := range []struct {
		name, path, body string
		check            func(b []byte) bool
	}{
		{"anthropic long", "/v1/messages", `{"model":"` + long + `","max_tokens":5,"messages":[]}`,
			func(b []byte) bool {
				return jsonField(t, b, "type") == "error" && jsonField(t, b, "error", "type") == "invalid_request_error"
			}},
		{"anthropic NUL", "/v1/messages", `{"model":"claude\u0000sonnet","max_tokens":5,"messages":[]}`,
			func(b []byte) bool { return jsonField(t, b, "error", "type") == "invalid_request_error" }},
		{"openai long", "/v1/chat/completions", `{"model":"` + long + `","messages":[]}`,
			func(b []byte) bool { return jsonField(t, b, "error", "code") == "invalid_request" }},
		{"openai newline", "/v1/responses", `{"model":"gpt-5\n","input":"x"}`,
			func(b []byte) bool { return jsonField(t, b, "error", "code") == "invalid_request" }},
		{"gemini path", "/v1beta/models/" + long + ":generateContent", `{"contents":[]}`,
			func(b []byte) bool { return jsonField(t, b, "error", "status") == "INVALID_ARGUMENT" }},
	} {
		resp, b := call(t, http.MethodPost, tc.path, nil, tc.body)
		if resp.StatusCode != 400 || !tc.check(b) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, b)
		}
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	huge := strings.Repeat("m", 8<<20)
	for i := 0; i < 30; i++ {
		resp, b := call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"`+huge+fmt.Sprint(i)+`","messages":[]}`)
		if resp.StatusCode != 400 || len(b) > 1024 {
			t.Fatalf("8 MB model name: %d, %d bytes of answer", resp.StatusCode, len(b))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("heap grew by %d MB after 30 requests with 8 MB model names", grew>>20)
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("upstream received %d requests with refused model names", n)
	}
}

// TestHostileHeadersAreNotForwarded: client headers that choose who is
// billed or carry browser cookies never reach the provider; the APIs' own
// headers do, and forward_headers adds more.
func TestHostileHeadersAreNotForwarded(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), hostileSite(up.URL, "\t\tforward_headers X-Team-Id\n"))

	hostile := map[string]string{
		"Cookie":              "sso_session=stolen",
		"OpenAI-Organization": "org-attacker",
		"OpenAI-Project":      "proj-attacker",
		"X-Goog-User-Project": "attacker-project",
		"ChatGPT-Account-Id":  "acct-attacker",
		"X-Forwarded-For":     "10.1.2.3",
		"X-Internal-Debug":    "1",
	}
	wanted := map[string]string{
		"Anthropic-Beta":  "prompt-caching-2024-07-31",
		"X-Stainless-Os":  "Linux",
		"OpenAI-Beta":     "responses=experimental",
		"X-Session-Id":    "sess-1",
		"Idempotency-Key": "idem-1",
		"X-Team-Id":       "blue", // forward_headers
	}
	headers := map[string]string{}
	for k, v := range hostile {
		headers[k] = v
	}
	for k, v := range wanted {
		headers[k] = v
	}
	for _, tc := range []struct{ path, body string }{
		{"/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/chat/completions", `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`},
		{"/v1beta/models/gemini-2.5-pro:generateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`},
	} {
		up.Reset()
		resp, b := call(t, http.MethodPost, tc.path, headers, tc.body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, b)
		}
		got := up.Requests()[0].Header
		for k := range hostile {
			if v := got.Get(k); v != "" && v != "org-pool" {
				t.Errorf("%s: client's %s reached the provider: %q", tc.path, k, v)
			}
		}
		for k, v := range wanted {
			if got.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", tc.path, k, got.Get(k), v)
			}
		}
		if tc.path == "/v1/chat/completions" && got.Get("OpenAI-Organization") != "org-pool" {
			t.Errorf("the credential's own OpenAI-Organization was not applied: %q", got.Get("OpenAI-Organization"))
		}
	}
}

// TestForwardHeadersRefusesClientKey: forward_headers cannot forward the
// client's key, in JSON as in the Caddyfile; the running config keeps
// serving.
func TestForwardHeadersRefusesClientKey(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), hostileSite(up.URL, ""))

	cfg := fmt.Sprintf(`{"admin":{"listen":%q},"apps":{"http":{"http_port":%d,"https_port":%d,"servers":{"s":{"listen":[":%d"],
		"routes":[{"handle":[{"handler":"llm_proxy","pool":"hostile-json","forward_headers":["X-Team","authorization"],
		"auths":[{"id":"c1","provider":"claude","api_key":"sk-ant-one","base_url":%q}]}]}]}}}}}`,
		adminAddr, sitePort, httpsPort, sitePort, up.URL)
	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || !strings.Contains(string(b), "forward_headers: header Authorization is never forwarded upstream") {
		t.Fatalf("config forwarding Authorization: %d %s", resp.StatusCode, b)
	}
	r, body := call(t, http.MethodPost, "/v1/messages", nil, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	if r.StatusCode != 200 {
		t.Fatalf("running config stopped serving: %d %s", r.StatusCode, body)
	}
}
