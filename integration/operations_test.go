package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// TestRescanPicksUpStorageChanges writes, disables and deletes records in the
// storage directory by hand and sees traffic follow within rescan_interval,
// with no reload and no admin call.
func TestRescanPicksUpStorageChanges(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	const pool = "rescan-periodic"
	loadConfig(t, dir, fmt.Sprintf(`	llm_proxy {
		pool %s
		rescan_interval 100ms
		routing {
			strategy fill_first
		}
	}`, pool))
	prefix := filepath.Join(dir, "llm_proxy", pool, "auths")
	if err := os.MkdirAll(prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(id, doc string) {
		if err := os.WriteFile(filepath.Join(prefix, id+".json"), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// eventually polls until the next request is served by want ("" = 503).
	eventually := func(want string) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation("rescan", "", 1))
			got = resp.Header.Get("X-Mock-Credential")
			if got == want && (want != "" || resp.StatusCode == 503) {
				return
			}
		}
		t.Fatalf("served by %q, want %q after the rescan", got, want)
	}
	eventually("")

	// A CLIProxyAPI-style API-key record, copied in as is.
	write("a", fmt.Sprintf(`{"type":"claude","api_key":"sk-ant-one","base_url":%q,"email":"a@example.com"}`, up.URL))
	write("b", fmt.Sprintf(`{"provider":"claude","api_key":"sk-ant-two","base_url":%q}`, up.URL))
	write("broken", `{"provider":`)
	eventually("claude-1")

	write("a", fmt.Sprintf(`{"type":"claude","api_key":"sk-ant-one","base_url":%q,"disabled":true}`, up.URL))
	eventually("claude-2")

	if err := os.Remove(filepath.Join(prefix, "b.json")); err != nil {
		t.Fatal(err)
	}
	eventually("")
}

// TestBehindCaddyBasicAuth puts Caddy's own basic_auth in front of
// llm_proxy without an access block: the client's Authorization header
// never reaches the upstream, and the user is known to later handlers.
func TestBehindCaddyBasicAuth(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	// bcrypt of "hunter2"
	const hash = "$2a$14$kwQGdbFDgrI5B0rtJlwPb.t1ZN6TTtbFUHU1.qBiV1wwyFoZNuQkC"
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	basic_auth {
		alice %s
	}
	header >X-User {http.auth.user.id}
	llm_proxy {
		pool behind-basic-auth
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
	}`, hash, up.URL))

	resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation("basic", "", 1))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: status %d", resp.StatusCode)
	}
	up.Reset()
	req, _ := http.NewRequest(http.MethodPost, siteAddr+"/v1/messages", strings.NewReader(conversation("basic", "", 1)))
	req.SetBasicAuth("alice", "hunter2")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 || r.Header.Get("X-User") != "alice" {
		t.Fatalf("status %d user %q", r.StatusCode, r.Header.Get("X-User"))
	}
	got := up.Requests()[0].Header
	if got.Get("Authorization") != "" || got.Get("X-Api-Key") != "sk-ant-one" {
		t.Fatalf("upstream headers: Authorization %q x-api-key %q", got.Get("Authorization"), got.Get("X-Api-Key"))
	}
}

// TestAccessLogFieldsAndKeyFilter checks the llm_proxy fields in Caddy's
// access log and that the README's log filter keeps client keys out of it.
func TestAccessLogFieldsAndKeyFilter(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	logFile := filepath.Join(t.TempDir(), "access.log")
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	log {
		output file %s
		format filter {
			request>headers>X-Api-Key delete
			request>headers>X-Goog-Api-Key delete
			request>headers>Authorization delete
			request>uri query {
				delete key
				delete auth_token
			}
			wrap json
		}
	}
	llm_proxy {
		pool access-log
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
		routing {
			session_affinity on
		}
		access {
			api_keys secret-client-key
		}
	}`, logFile, up.URL))

	resp, body := call(t, http.MethodPost, "/v1/messages?key=secret-client-key", map[string]string{"x-api-key": "secret-client-key"},
		conversation("logs", "3f0e9d52-6c0e-4a8e-9d7e-2b1f5e8c9a10", 1))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var entry map[string]any
	for deadline := time.Now().Add(10 * time.Second); entry == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		f, err := os.Open(logFile)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "secret-client-key") || strings.Contains(line, "sk-ant-one") {
				t.Fatalf("a key reached the access log: %s", line)
			}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["llm_proxy.pool"] == "access-log" {
				entry = m
			}
		}
		f.Close()
	}
	if entry == nil {
		t.Fatal("no access log entry with llm_proxy fields")
	}
	for k, want := range map[string]any{"llm_proxy.auth": "c1", "llm_proxy.attempts": float64(1), "llm_proxy.affinity": "miss"} {
		if entry[k] != want {
			t.Errorf("%s = %v, want %v", k, entry[k], want)
		}
	}
}

// TestClientDisconnectCoolsNothing: a client that leaves while the upstream
// is still working charges no credential.
func TestClientDisconnectCoolsNothing(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool disconnect
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %[1]s
		}
		auth c2 {
			provider claude
			api_key sk-ant-two
			base_url %[1]s
		}
		routing {
			strategy fill_first
		}
	}`, up.URL))
	up.SetFault("sk-ant-one", mockllm.Fault{Delay: time.Minute, Times: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Leave once the upstream holds the request.
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if len(up.Requests()) > 0 {
				break
			}
		}
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, siteAddr+"/v1/messages", strings.NewReader(conversation("gone", "", 1)))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request finished although the upstream was held")
	}
	// Wait until the mock saw the cancellation, then check c1 still serves.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st := up.Stats()["claude-1"]; st.Cancelled > 0 {
			break
		}
	}
	resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation("gone", "", 1))
	if got := resp.Header.Get("X-Mock-Credential"); got != "claude-1" {
		t.Fatalf("after a client disconnect the next request went to %q; the first credential was cooled", got)
	}
	if n := len(up.Requests()); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2 (no failover for a client that left)", n)
	}
}

// TestUpstreamErrorNeverLeaksTheCredential: an upstream error that quotes
// the key it was given reaches the client with the key redacted.
func TestUpstreamErrorNeverLeaksTheCredential(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool redact
		auth c1 {
			provider openai
			api_key sk-oai-one
			base_url %s
		}
	}`, up.URL))
	up.SetFault("sk-oai-one", mockllm.Fault{Status: 401,
		Body: `{"error":{"message":"Incorrect API key provided: sk-oai-one. See your settings.","type":"invalid_request_error","code":"invalid_api_key"}}`})
	resp, body := call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 401 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "sk-oai-one") || !strings.Contains(string(body), "[redacted]") {
		t.Fatalf("upstream key in the client's answer: %s", body)
	}
}

// TestJSONConfig loads a hand-written JSON config shaped like the README's
// example (string durations, providers list) through the admin API.
func TestJSONConfig(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	cfg := fmt.Sprintf(`{
  "admin": {"listen": %q},
  "storage": {"module": "file_system", "root": %q},
  "apps": {"http": {"servers": {"json": {
    "listen": [":%d"],
    "routes": [{"handle": [{
      "handler": "llm_proxy",
      "pool": "json-config",
      "auths": [
        {"id": "c1", "provider": "claude", "api_key": "sk-ant-one", "base_url": %q},
        {"id": "c2", "provider": "claude", "api_key": "sk-ant-two", "base_url": %q, "weight": 0}
      ],
      "rescan_interval": "1h",
      "routing": {"strategy": "weighted_round_robin", "session_affinity": true, "session_affinity_ttl": "2h"},
      "access": {"api_keys": ["k1"], "providers": [{"provider": "config_api_key", "keys": ["k2"]}]},
      "retry": {"max_attempts": 2, "wait_for_cooldown": "1s"},
      "cooldown": {"rate_limit": "2s", "rate_limit_max": "1m"},
      "max_request_body": 1048576
    }]}]
  }}}}
}`, adminAddr, t.TempDir(), sitePort, up.URL, up.URL)
	newTesterJSON(t, cfg)
	for _, key := range []string{"k1", "k2"} {
		resp, body := call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": key}, conversation("json", "", 1))
		if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Credential") != "claude-1" {
			t.Fatalf("key %s: status %d from %q: %s", key, resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
		}
	}
}

// TestTLSUpstreamThroughCaddyTransport sends requests to an HTTPS upstream
// through the configured reverse_proxy HTTP transport (here with
// tls_insecure_skip_verify for the test's self-signed certificate) and
// checks that HTTP/2 is negotiated, as it would be with a real provider.
func TestTLSUpstreamThroughCaddyTransport(t *testing.T) {
	m := mockllm.New(mockllm.Options{Keys: mockKeys})
	protos := make(chan string, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case protos <- r.Proto:
		default:
		}
		m.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	site := fmt.Sprintf(`	llm_proxy {
		pool tls-upstream
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
		transport http {
			tls_insecure_skip_verify
		}
	}`, srv.URL)
	loadConfig(t, t.TempDir(), site)
	resp, body := call(t, http.MethodPost, "/v1/messages", nil, conversation("tls", "", 1))
	if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Credential") != "claude-1" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if p := <-protos; p != "HTTP/2.0" {
		t.Fatalf("upstream spoke %s, want HTTP/2.0", p)
	}

	// Without the transport option the self-signed certificate is refused:
	// the default transport verifies upstream certificates.
	loadConfig(t, t.TempDir(), strings.Replace(site, "\t\ttransport http {\n\t\t\ttls_insecure_skip_verify\n\t\t}\n", "", 1))
	resp, body = call(t, http.MethodPost, "/v1/messages", nil, conversation("tls", "", 1))
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("unverified upstream certificate accepted: %d %s", resp.StatusCode, body)
	}
}

// TestLogsNameCredentialsNeverKeys runs a failover with Caddy's logs at
// DEBUG and checks the attempt lines, the failover warning, and that no
// key or token appears in any log line.
func TestLogsNameCredentialsNeverKeys(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	site := fmt.Sprintf(`	llm_proxy {
		pool log-secrets
		auth first {
			provider claude
			api_key sk-ant-one
			base_url %[1]s
		}
		auth second {
			provider claude
			access_token oat-claude
			base_url %[1]s
		}
		routing {
			strategy fill_first
		}
		access {
			api_keys client-log-key
		}
	}`, up.URL)
	cfg := strings.Replace(caddyfile(t.TempDir(), site), "{\n\tadmin", fmt.Sprintf("{\n\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}\n\tadmin", logFile), 1)
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")
	up.SetFault("sk-ant-one", mockllm.Fault{Status: 429, Headers: map[string]string{"retry-after": "30"}, Times: 1})
	resp, body := call(t, http.MethodPost, "/v1/messages?key=client-log-key", nil, conversation("logs", "", 1))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var attempts, warns int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && (attempts < 2 || warns < 1); time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(logFile)
		if err != nil {
			continue
		}
		attempts, warns = 0, 0
		for _, line := range strings.Split(string(b), "\n") {
			for _, secret := range []string{"sk-ant-one", "oat-claude", "client-log-key"} {
				if strings.Contains(line, secret) {
					t.Fatalf("a key reached Caddy's log: %s", line)
				}
			}
			if !strings.Contains(line, `"logger":"http.handlers.llm_proxy"`) || !strings.Contains(line, `"pool":"log-secrets"`) {
				continue
			}
			if strings.Contains(line, `"msg":"upstream attempt"`) {
				attempts++
			}
			if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"auth":"first"`) {
				warns++
			}
		}
	}
	if attempts < 2 || warns < 1 {
		t.Fatalf("want 2 DEBUG attempt lines and a WARN for the failover, got %d and %d", attempts, warns)
	}
}

// TestModelListingFollowsTheClientsAPI: GET /v1/models is the OpenAI model
// list, or Anthropic's when the client sends anthropic-version.
func TestModelListingFollowsTheClientsAPI(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), "\tllm_proxy {\n\t\tpool model-listing\n"+allProviders(up.URL)+"\t}")
	resp, body := call(t, http.MethodGet, "/v1/models", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Credential") != "openai-1" {
		t.Fatalf("OpenAI listing: %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
	}
	resp, body = call(t, http.MethodGet, "/v1/models", map[string]string{"anthropic-version": "2023-06-01"}, "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("X-Mock-Credential"), "claude-") {
		t.Fatalf("Anthropic listing: %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
	}
	resp, body = call(t, http.MethodGet, "/v1/models/gpt-5", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Credential") != "openai-1" {
		t.Fatalf("one OpenAI model: %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
	}
}

// TestPreviousResponseGoesToItsCredential: an OpenAI Responses follow-up
// that names previous_response_id reaches the credential that produced
// that response (stored responses live with the account that made them),
// streamed or not, with or without session affinity.
func TestPreviousResponseGoesToItsCredential(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool previous-response
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %[1]s
		}
		auth o2 {
			provider openai
			api_key sk-oai-two
			base_url %[1]s
		}
	}`, up.URL))

	first := func(stream bool) (id, cred string) {
		t.Helper()
		resp, body := call(t, http.MethodPost, "/v1/responses", nil, fmt.Sprintf(`{"model":"gpt-5","input":"hello","stream":%v}`, stream))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if stream {
			for _, ev := range sseEvents(body) {
				var e struct {
					Type     string `json:"type"`
					Response struct {
						ID string `json:"id"`
					} `json:"response"`
				}
				if json.Unmarshal([]byte(ev), &e) == nil && e.Type == "response.completed" {
					id = e.Response.ID
				}
			}
		} else {
			id, _ = jsonField(t, body, "id").(string)
		}
		if id == "" {
			t.Fatalf("no response id in %s", body)
		}
		return id, resp.Header.Get("X-Mock-Credential")
	}
	for _, stream := range []bool{false, true} {
		id, cred := first(stream)
		// Round robin would move on; the follow-ups stay with the response.
		for i := 0; i < 3; i++ {
			resp, body := call(t, http.MethodPost, "/v1/responses", nil,
				fmt.Sprintf(`{"model":"gpt-5","previous_response_id":%q,"input":"and then?"}`, id))
			if got := resp.Header.Get("X-Mock-Credential"); resp.StatusCode != 200 || got != cred {
				t.Fatalf("stream=%v follow-up %d went to %q (status %d), want %q: %s", stream, i, got, resp.StatusCode, cred, body)
			}
		}
		// Reading the stored response goes to the same credential (the
		// mock has no such route and answers 404, but the credential shows).
		for i := 0; i < 2; i++ {
			resp, _ := call(t, http.MethodGet, "/v1/responses/"+id, nil, "")
			if got := resp.Header.Get("X-Mock-Credential"); got != cred {
				t.Fatalf("GET of the stored response went to %q, want %q", got, cred)
			}
		}
	}
}

// TestUnderAPrefix mounts llm_proxy under /llm/ with handle_path, as the
// README shows.
func TestUnderAPrefix(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	handle_path /llm/* {
		llm_proxy {
			pool prefixed
			auth c1 {
				provider claude
				api_key sk-ant-one
				base_url %s
			}
		}
	}
	handle {
		respond "other" 200
	}`, up.URL))
	resp, body := call(t, http.MethodPost, "/llm/v1/messages", nil, conversation("prefix", "", 1))
	if resp.StatusCode != 200 || up.Requests()[len(up.Requests())-1].Path != "/v1/messages" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, body := call(t, http.MethodGet, "/elsewhere", nil, ""); string(body) != "other" {
		t.Fatalf("other routes: %s", body)
	}
}

// batchUpstream keeps Anthropic message batches per API key, as the real
// API does: a batch is only visible to the key (account) that created it.
type batchUpstream struct {
	mu      sync.Mutex
	batches map[string]string // batch ID → key
	n       int
}

func (b *batchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	w.Header().Set("X-Mock-Credential", key)
	w.Header().Set("Content-Type", "application/json")
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.Method == http.MethodPost && r.URL.Path == "/v1/messages/batches" {
		b.n++
		id := fmt.Sprintf("msgbatch_%03d", b.n)
		b.batches[id] = key
		fmt.Fprintf(w, `{"id":%q,"type":"message_batch","processing_status":"in_progress"}`, id)
		return
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/messages/batches/"), "/")
	if owner, ok := b.batches[id]; ok && owner == key {
		fmt.Fprintf(w, `{"id":%q,"type":"message_batch","processing_status":"ended"}`, id)
		return
	}
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprint(w, `{"type":"error","error":{"type":"not_found_error","message":"Batch not found."}}`)
}

// TestMessageBatchesStayWithTheirCredential: Anthropic message batches are
// read back (status, results) through the credential that created them.
func TestMessageBatchesStayWithTheirCredential(t *testing.T) {
	srv := httptest.NewServer(&batchUpstream{batches: map[string]string{}})
	defer srv.Close()
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool batches
		auth b1 {
			provider claude
			api_key key-one
			base_url %[1]s
		}
		auth b2 {
			provider claude
			api_key key-two
			base_url %[1]s
		}
	}`, srv.URL))
	for i := 0; i < 4; i++ {
		resp, body := call(t, http.MethodPost, "/v1/messages/batches", nil, `{"requests":[{"custom_id":"a","params":{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("create: %d %s", resp.StatusCode, body)
		}
		id, _ := jsonField(t, body, "id").(string)
		owner := resp.Header.Get("X-Mock-Credential")
		for _, suffix := range []string{"", "/results", ""} {
			resp, body := call(t, http.MethodGet, "/v1/messages/batches/"+id+suffix, nil, "")
			if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Credential") != owner {
				t.Fatalf("batch %s%s: %d via %q, created via %q: %s", id, suffix, resp.StatusCode, resp.Header.Get("X-Mock-Credential"), owner, body)
			}
		}
	}
}
