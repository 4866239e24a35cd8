package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// Refresh of subscription credentials through a real Caddy (SPEC section
// 12), against the mock's fake OAuth server. Caddy's refresh loop sleeps
// on real timers; when a test moves the shared fake clock, an admin rescan
// makes the loop look at the credentials again.

// oauthRecord is a stored Claude login file of the mock account label
// whose access token expires at exp, sending requests to the mock at base,
// with a field llm_proxy does not know.
func oauthRecord(label, base string, exp time.Time) string {
	return fmt.Sprintf(`{"type":"claude","note":"kept","access_token":"mock-at-%[1]s","refresh_token":"mock-rt-%[1]s","expired":%[2]q,"email":"%[1]s@example.com","base_url":%[3]q}`,
		label, oauth.FormatTime(exp), base)
}

// eventually waits until cond holds: Caddy refreshes on its own
// goroutines. It asserts nothing about how long that takes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, 20*time.Second, what, cond)
}

// readJSON reads a JSON document from a file in storage.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v: %s", path, err, b)
	}
	return m
}

func refreshes(up *upstream, label string) int64 { return up.OAuthStats()[label].Refreshes }

// A stored record is refreshed refresh_lead before its access token
// expires and written back with its unknown fields; an inline credential
// keeps its refreshed tokens under llm_proxy/<pool>/oauth/, and a reload
// serves them rather than the config's spent refresh token.
func TestOAuthRefreshAheadOfExpiry(t *testing.T) {
	fake := clock.NewFake(time.Now())
	t.Cleanup(clock.Install(fake.Now))
	up := newUpstream(t, mockllm.Options{Now: fake.Now, OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude}, "bob": {Provider: mockllm.OAuthClaude},
	}})
	storage := t.TempDir()
	path := writeRecord(t, storage, "oauth-ahead", "alice", oauthRecord("alice", up.URL, fake.Now().Add(5*time.Hour)))
	site := func(rescan string) string {
		return fmt.Sprintf(`llm_proxy {
		pool oauth-ahead
		rescan_interval %s
		routing {
			strategy fill_first
		}
		%s
		auth bob {
			provider claude
			access_token mock-at-bob
			refresh_token mock-rt-bob
			base_url %s
			priority 1
		}
	}`, rescan, oauthBlocks(up.URL), up.URL)
	}
	loadConfig(t, storage, site("1h"))

	// bob tells no expiry: refreshed at once, and kept beside the records.
	tokens := filepath.Join(storage, "llm_proxy", "oauth-ahead", "oauth", "bob.json")
	eventually(t, "bob's refreshed tokens in storage", func() bool { _, err := os.Stat(tokens); return err == nil })
	bob, _ := up.OAuthTokens("bob")
	if doc := readJSON(t, tokens); doc["access_token"] != bob.AccessToken || doc["refresh_token"] != bob.RefreshToken {
		t.Fatalf("bob's tokens document %v does not hold the latest tokens", doc)
	}
	// alice is due 4h before her expiry, an hour from now.
	if n := refreshes(up, "alice"); n != 0 {
		t.Fatalf("alice refreshed %d times before she was due", n)
	}

	fake.Advance(time.Hour + time.Minute)
	admin := &adminClient{t: t}
	admin.do(http.MethodPost, "/llm_proxy/pools/oauth-ahead/rescan", "", http.StatusOK)
	eventually(t, "alice's refresh", func() bool { return refreshes(up, "alice") == 1 && readJSON(t, path)["last_refresh"] != nil })
	alice, _ := up.OAuthTokens("alice")
	want := map[string]any{
		"type": "claude", "note": "kept", "access_token": alice.AccessToken, "refresh_token": alice.RefreshToken,
		"expired": oauth.FormatTime(alice.Expiry), "email": "alice@example.com", "base_url": up.URL,
		"account_id": "acct-alice", "last_refresh": oauth.FormatTime(fake.Now()),
	}
	if got := readJSON(t, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("alice's record\n%v\nwant\n%v", got, want)
	}

	// A reload keeps serving bob's refreshed tokens; nothing is refreshed
	// again and no spent refresh token reaches the token endpoint.
	loadConfig(t, storage, site("2h"))
	if resp, body := call(t, http.MethodPost, "/v1/messages", nil, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "bob" {
		t.Fatalf("status %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
	}
	views := authViews(t, admin.do(http.MethodGet, "/llm_proxy/pools/oauth-ahead/auths", "", http.StatusOK))
	if v := views["bob"]; v["masked_secret"] != "…"+bob.AccessToken[len(bob.AccessToken)-4:] || v["state"] != "serving" {
		t.Fatalf("after the reload bob is %v", v)
	}
	for _, label := range []string{"alice", "bob"} {
		if s := up.OAuthStats()[label]; s.Refreshes != 1 || s.Rejected != 0 {
			t.Fatalf("%s: %+v", label, s)
		}
	}
	admin.noSecrets("mock-rt-", "mock-at-", alice.RefreshToken, bob.RefreshToken)
}

// An access token the upstream refuses mid-run (expired earlier than the
// record said, before the background refresh ran) is refreshed and the
// requests are answered on the same credential: no client sees an error,
// concurrent requests share one refresh, nothing is cooled.
func TestOAuth401MidRunIsAbsorbed(t *testing.T) {
	fake := clock.NewFake(time.Now())
	t.Cleanup(clock.Install(fake.Now))
	up := newUpstream(t, mockllm.Options{Now: fake.Now, OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude, AccessExpiry: fake.Now().Add(time.Hour)},
	}})
	storage := t.TempDir()
	// The record claims a day: its refresh is 20 hours away.
	path := writeRecord(t, storage, "oauth-401", "alice", oauthRecord("alice", up.URL, fake.Now().Add(24*time.Hour)))
	loadConfig(t, storage, fmt.Sprintf(`llm_proxy {
		pool oauth-401
		%s
	}`, oauthBlocks(up.URL)))
	const body = `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	if resp, b := call(t, http.MethodPost, "/v1/messages", nil, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("before expiry: %d %s", resp.StatusCode, b)
	}

	fake.Advance(2 * time.Hour) // the mock now refuses the access token
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 6 {
		wg.Go(func() {
			resp, err := http.Post(siteAddr+"/v1/messages", "application/json", strings.NewReader(body))
			if err != nil {
				failed.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "alice" {
				t.Errorf("client saw %d: %s", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatal("requests failed")
	}
	s := up.OAuthStats()["alice"]
	if s.Refreshes != 1 || s.ExpiredAccess == 0 || s.Rejected != 0 {
		t.Fatalf("mock %+v: want one refresh after the refused token", s)
	}
	tok, _ := up.OAuthTokens("alice")
	if doc := readJSON(t, path); doc["access_token"] != tok.AccessToken || doc["refresh_token"] != tok.RefreshToken || doc["note"] != "kept" {
		t.Fatalf("the refresh was not written back: %v", doc)
	}
	admin := &adminClient{t: t}
	v := authViews(t, admin.do(http.MethodGet, "/llm_proxy/pools/oauth-401/auths", "", http.StatusOK))["alice"]
	if v["state"] != "serving" || len(v["cooldowns"].([]any)) != 0 {
		t.Fatalf("alice after the 401s: %v", v)
	}
	wantMetric(t, "caddy_llm_proxy_oauth_refreshes_total", map[string]string{"pool": "oauth-401", "auth": "alice", "result": "refreshed"}, 1)
	if _, ok := scrape(t, "caddy_llm_proxy_failovers_total", map[string]string{"pool": "oauth-401", "auth": "alice"}); ok {
		t.Fatal("an absorbed 401 counted as a failover")
	}
	if v, ok := scrape(t, "caddy_llm_proxy_attempts_total", map[string]string{"pool": "oauth-401", "auth": "alice", "outcome": "token_refresh"}); !ok || v < 1 {
		t.Fatalf("token_refresh attempts %v (present %v)", v, ok)
	}
}

// A refresh token the provider revoked puts its credential in state
// needs_login: out of rotation while the pool serves on the others, shown
// in the admin API and metrics, logged once as an ERROR naming the pool
// and credential and no token. A record with another refresh token (a new
// login) brings it back.
func TestOAuthRevokedRefreshTokenNeedsLogin(t *testing.T) {
	up := newUpstream(t, mockllm.Options{OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude}, "bob": {Provider: mockllm.OAuthClaude}, "carol": {Provider: mockllm.OAuthClaude},
	}})
	up.RevokeOAuth("alice")
	storage := t.TempDir()
	now := time.Now()
	writeRecord(t, storage, "oauth-dead", "alice", oauthRecord("alice", up.URL, now.Add(time.Hour))) // due
	for _, label := range []string{"bob", "carol"} {
		writeRecord(t, storage, "oauth-dead", label, oauthRecord(label, up.URL, now.Add(7*time.Hour)))
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	site := fmt.Sprintf(`llm_proxy {
		pool oauth-dead
		rescan_interval 1h
		%s
	}`, oauthBlocks(up.URL))
	cfg := strings.Replace(caddyfile(storage, site), "{\n\tadmin", fmt.Sprintf("{\n\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}\n\tadmin", logFile), 1)
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")

	admin := &adminClient{t: t}
	views := func() map[string]map[string]any {
		return authViews(t, admin.do(http.MethodGet, "/llm_proxy/pools/oauth-dead/auths", "", http.StatusOK))
	}
	eventually(t, "alice in needs_login", func() bool { return views()["alice"]["state"] == "needs_login" })
	v := views()
	if !strings.Contains(fmt.Sprint(v["alice"]["refresh_error"]), "invalid_grant") || v["bob"]["state"] != "serving" || v["carol"]["state"] != "serving" {
		t.Fatalf("views %v", v)
	}
	served := map[string]int{}
	for range 12 {
		served[ask(t, "")]++
	}
	if served["alice"] != 0 || served["bob"] == 0 || served["carol"] == 0 {
		t.Fatalf("served by %v; want bob and carol only", served)
	}
	var pools []map[string]any
	if err := json.Unmarshal(admin.do(http.MethodGet, "/llm_proxy/pools", "", http.StatusOK), &pools); err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		if p["name"] == "oauth-dead" && (p["available"] != float64(2) || p["enabled"] != float64(3)) {
			t.Fatalf("pool summary %v", p)
		}
	}
	wantMetric(t, "caddy_llm_proxy_credentials", map[string]string{"pool": "oauth-dead", "state": "needs_login"}, 1)
	wantMetric(t, "caddy_llm_proxy_credentials", map[string]string{"pool": "oauth-dead", "state": "available"}, 2)
	wantMetric(t, "caddy_llm_proxy_oauth_refreshes_total", map[string]string{"pool": "oauth-dead", "auth": "alice", "result": "needs_login"}, 1)
	if s := up.OAuthStats()["alice"]; s.Rejected != 1 || s.Refreshes != 0 {
		t.Fatalf("alice at the token endpoint: %+v", s)
	}

	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var errorLines []map[string]any
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, "mock-rt-") || strings.Contains(line, "mock-at-") || strings.Contains(line, "mock-oauth-") {
			t.Fatalf("a log line shows a token: %s", line)
		}
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["level"] == "error" {
			errorLines = append(errorLines, entry)
		}
	}
	if len(errorLines) != 1 || errorLines[0]["pool"] != "oauth-dead" || errorLines[0]["auth"] != "alice" {
		t.Fatalf("ERROR lines %v; want exactly one naming pool oauth-dead and auth alice", errorLines)
	}
	admin.noSecrets("mock-rt-", "mock-at-")

	// A new login wrote another refresh token: alice serves again.
	writeRecord(t, storage, "oauth-dead", "alice",
		strings.Replace(oauthRecord("alice", up.URL, time.Now().Add(7*time.Hour)), `"mock-rt-alice"`, `"rt-of-a-new-login"`, 1))
	admin.do(http.MethodPost, "/llm_proxy/pools/oauth-dead/rescan", "", http.StatusOK)
	if v := views()["alice"]; v["state"] != "serving" || v["refresh_error"] != nil {
		t.Fatalf("alice after a new refresh token: %v", v)
	}
	wantMetric(t, "caddy_llm_proxy_credentials", map[string]string{"pool": "oauth-dead", "state": "needs_login"}, 0)
}

// Token-endpoint traffic goes through the credential's proxy_url.
func TestOAuthRefreshThroughProxyURL(t *testing.T) {
	up := newUpstream(t, mockllm.Options{OAuthAccounts: map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}}})
	var mu sync.Mutex
	proxied := map[string]int{}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		proxied[r.Method+" "+r.URL.Path]++
		mu.Unlock()
		out := r.Clone(r.Context())
		out.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(proxy.Close)
	storage := t.TempDir()
	rec := strings.Replace(oauthRecord("alice", up.URL, time.Now().Add(time.Hour)), `"note"`, fmt.Sprintf(`"proxy_url":%q,"note"`, proxy.URL), 1)
	path := writeRecord(t, storage, "oauth-proxy", "alice", rec)
	loadConfig(t, storage, fmt.Sprintf(`llm_proxy {
		pool oauth-proxy
		%s
	}`, oauthBlocks(up.URL)))
	eventually(t, "the refreshed record in storage", func() bool {
		tok, _ := up.OAuthTokens("alice")
		return refreshes(up, "alice") == 1 && readJSON(t, path)["refresh_token"] == tok.RefreshToken
	})
	mu.Lock()
	defer mu.Unlock()
	if proxied["POST /v1/oauth/token"] != 1 {
		t.Fatalf("requests through the proxy: %v; want the token request", proxied)
	}
}
