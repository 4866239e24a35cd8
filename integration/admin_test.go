package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// adminClient calls the llm_proxy admin API of the running Caddy and keeps
// every response body, so a test can check that none shows a secret.
type adminClient struct {
	t      *testing.T
	secret string // sent as "Authorization: Bearer" when not empty
	bodies []string
}

// do sends one admin request and fails the test unless the status is want.
func (c *adminClient) do(method, path, body string, want int) []byte {
	c.t.Helper()
	status, b := c.send(method, path, body, c.secret)
	if status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	return b
}

func (c *adminClient) send(method, path, body, secret string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+adminAddr+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Fatalf("%s %s: content type %q: %s", method, path, ct, b)
	}
	c.bodies = append(c.bodies, string(b))
	return resp.StatusCode, b
}

// noSecrets fails the test if any admin response showed one of secrets.
func (c *adminClient) noSecrets(secrets ...string) {
	c.t.Helper()
	for _, b := range c.bodies {
		for _, s := range secrets {
			if strings.Contains(b, s) {
				c.t.Fatalf("admin response shows secret %q: %s", s, b)
			}
		}
	}
}

// mockSecrets are the mock's keys and the management secrets of these
// tests; no admin response may show them.
func mockSecrets(extra ...string) []string {
	out := append([]string{"sk-ant-"}, extra...)
	for k := range mockKeys {
		out = append(out, k)
	}
	return out
}

// ask sends a Claude request with a session ID and returns the label of the
// credential that served it.
func ask(t *testing.T, sessionID string) string {
	t.Helper()
	headers := map[string]string{"anthropic-version": "2023-06-01"}
	if sessionID != "" {
		headers["X-Session-ID"] = sessionID
	}
	resp, body := call(t, http.MethodPost, "/v1/messages", headers,
		`{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return resp.Header.Get("X-Mock-Credential")
}

// authViews decodes GET .../auths by ID.
func authViews(t *testing.T, b []byte) map[string]map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("not a JSON list: %v: %s", err, b)
	}
	out := make(map[string]map[string]any, len(list))
	for _, v := range list {
		out[v["id"].(string)] = v
	}
	return out
}

func sessionCounts(t *testing.T, b []byte) (total int, byAuth map[string]int) {
	t.Helper()
	var v struct {
		Total  int            `json:"total"`
		ByAuth map[string]int `json:"by_auth"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("sessions: %v: %s", err, b)
	}
	return v.Total, v.ByAuth
}

func writeRecord(t *testing.T, storageDir, pool, id, doc string) string {
	t.Helper()
	path := filepath.Join(storageDir, "llm_proxy", pool, "auths", filepath.FromSlash(id)+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAdminChangesCredentialsWithoutReload(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	loadConfig(t, dir, fmt.Sprintf(`	llm_proxy {
		pool adm-live
		rescan_interval 0
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
		routing {
			session_affinity on
		}
	}`, up.URL))
	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/adm-live"

	if got := ask(t, "conv-1"); got != "claude-1" {
		t.Fatalf("conv-1 served by %q", got)
	}

	// Add a higher-priority credential: new conversations use it at once.
	b := admin.do(http.MethodPost, base+"/auths", fmt.Sprintf(
		`{"id":"team/c2","provider":"claude","api_key":"sk-ant-two","base_url":%q,"priority":10,"label":"second"}`, up.URL),
		http.StatusCreated)
	if jsonField(t, b, "id") != "team/c2" || jsonField(t, b, "source") != "storage" || jsonField(t, b, "label") != "second" {
		t.Fatalf("created view: %s", b)
	}
	record := filepath.Join(dir, "llm_proxy", "adm-live", "auths", "team", "c2.json")
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("record not in storage: %v", err)
	}
	if !strings.Contains(string(data), `"api_key": "sk-ant-two"`) || strings.Contains(string(data), `"id"`) {
		t.Fatalf("stored record: %s", data)
	}
	if got := ask(t, "conv-2"); got != "claude-2" {
		t.Fatalf("conv-2 served by %q, want the added credential", got)
	}
	// A bound conversation stays where it is.
	if got := ask(t, "conv-1"); got != "claude-1" {
		t.Fatalf("conv-1 moved to %q", got)
	}
	views := authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK))
	if v := views["team/c2"]; v == nil || v["sessions"] != 1.0 || v["successes"] != 1.0 || v["inline"] != false {
		t.Fatalf("team/c2 view: %v", v)
	}
	if v := views["c1"]; v == nil || v["source"] != "inline" || v["inline"] != true || v["masked_secret"] != "…" {
		t.Fatalf("c1 view: %v", v)
	}

	// Disable it: traffic leaves it at once and its bindings are dropped.
	b = admin.do(http.MethodPatch, base+"/auths/team/c2", `{"disabled":true}`, http.StatusOK)
	if jsonField(t, b, "disabled") != true || jsonField(t, b, "sessions") != 0.0 {
		t.Fatalf("patched view: %s", b)
	}
	if got := ask(t, "conv-2"); got != "claude-1" {
		t.Fatalf("conv-2 served by %q after disabling its credential", got)
	}
	if got := ask(t, "conv-3"); got != "claude-1" {
		t.Fatalf("conv-3 served by %q while the only other credential is disabled", got)
	}
	data, _ = os.ReadFile(record)
	if !strings.Contains(string(data), `"disabled": true`) || !strings.Contains(string(data), `"label": "second"`) {
		t.Fatalf("stored record after PATCH: %s", data)
	}

	// Enable it again; then a dropped binding lets the conversation move.
	admin.do(http.MethodPatch, base+"/auths/team%2Fc2", `{"disabled":false}`, http.StatusOK)
	if got := ask(t, "conv-4"); got != "claude-2" {
		t.Fatalf("conv-4 served by %q after enabling", got)
	}
	_, byAuth := sessionCounts(t, admin.do(http.MethodGet, base+"/sessions", "", http.StatusOK))
	if byAuth["team/c2"] != 1 || byAuth["c1"] != 3 {
		t.Fatalf("bindings %v", byAuth)
	}

	// Delete it: its conversation rebinds to the remaining credential.
	b = admin.do(http.MethodDelete, base+"/auths/team/c2", "", http.StatusOK)
	if jsonField(t, b, "deleted") != true || jsonField(t, b, "sessions_dropped") != 1.0 {
		t.Fatalf("delete answer: %s", b)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("record still in storage: %v", err)
	}
	_, byAuth = sessionCounts(t, admin.do(http.MethodGet, base+"/sessions", "", http.StatusOK))
	if _, ok := byAuth["team/c2"]; ok {
		t.Fatalf("bindings to the deleted credential: %v", byAuth)
	}
	if got := ask(t, "conv-4"); got != "claude-1" {
		t.Fatalf("conv-4 served by %q after deleting its credential", got)
	}
	total, byAuth := sessionCounts(t, admin.do(http.MethodGet, base+"/sessions", "", http.StatusOK))
	if total != 4 || byAuth["c1"] != 4 {
		t.Fatalf("bindings after rebind: %d %v", total, byAuth)
	}
	views = authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK))
	if len(views) != 1 || views["c1"] == nil {
		t.Fatalf("auths after delete: %v", views)
	}

	// Refusals.
	admin.do(http.MethodPatch, base+"/auths/c1", `{"disabled":true}`, http.StatusConflict)
	admin.do(http.MethodDelete, base+"/auths/c1", "", http.StatusConflict)
	admin.do(http.MethodPost, base+"/auths", `{"id":"c1","provider":"claude","api_key":"sk-ant-three"}`, http.StatusConflict)
	admin.do(http.MethodDelete, base+"/auths/team/c2", "", http.StatusNotFound)
	admin.do(http.MethodPatch, base+"/auths/nope", `{"weight":3}`, http.StatusNotFound)
	admin.do(http.MethodPost, base+"/auths", `{"id":"x",`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/auths", `{"id":"x","provider":"claude"}`, http.StatusBadRequest)
	admin.do(http.MethodPut, base+"/auths", `{}`, http.StatusMethodNotAllowed)
	admin.do(http.MethodGet, "/llm_proxy/pools/adm-no-such-pool/auths", "", http.StatusNotFound)
	b = admin.do(http.MethodGet, base+"/auths/nope", "", http.StatusNotFound)
	if msg, _ := jsonField(t, b, "error").(string); !strings.Contains(msg, "nope") {
		t.Fatalf("error body: %s", b)
	}

	// The pool list shows counts only.
	var pools []map[string]any
	if err := json.Unmarshal(admin.do(http.MethodGet, "/llm_proxy/pools", "", http.StatusOK), &pools); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pools {
		if p["name"] == "adm-live" {
			found = true
			if p["total"] != 1.0 || p["enabled"] != 1.0 || p["available"] != 1.0 || len(p) != 4 {
				t.Fatalf("pool summary %v", p)
			}
		}
	}
	if !found {
		t.Fatalf("adm-live not listed: %v", pools)
	}
	admin.noSecrets(mockSecrets()...)
}

func TestAdminManagementSecret(t *testing.T) {
	const secret = "adm-secret-correct-horse"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool adm-secret
		rescan_interval 0
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
		management_secret %s
	}`, up.URL, hash))
	base := "/llm_proxy/pools/adm-secret"
	open := &adminClient{t: t}
	wrong := &adminClient{t: t, secret: "adm-secret-wrong-horse"}
	right := &adminClient{t: t, secret: secret}

	// The pool list stays open; every route of the pool needs the secret.
	if !strings.Contains(string(open.do(http.MethodGet, "/llm_proxy/pools", "", http.StatusOK)), `"adm-secret"`) {
		t.Fatal("pool not listed")
	}
	for _, c := range []*adminClient{open, wrong} {
		c.do(http.MethodGet, base+"/auths", "", http.StatusUnauthorized)
		c.do(http.MethodPost, base+"/auths", `{"id":"x","provider":"claude","api_key":"sk-ant-two"}`, http.StatusUnauthorized)
		c.do(http.MethodPost, base+"/rescan", "", http.StatusUnauthorized)
	}
	right.do(http.MethodGet, base+"/auths", "", http.StatusOK)
	right.do(http.MethodPost, base+"/auths", fmt.Sprintf(`{"id":"c2","provider":"claude","api_key":"sk-ant-two","base_url":%q}`, up.URL), http.StatusCreated)
	right.do(http.MethodGet, base+"/sessions", "", http.StatusOK)
	right.do(http.MethodPost, base+"/rescan", "", http.StatusOK)
	right.do(http.MethodDelete, base+"/auths/c2", "", http.StatusOK)

	// Five wrong secrets lock the address out for 30 minutes, even with
	// the right secret. The clock is faked so nothing sleeps.
	fake := clock.NewFake(time.Now())
	restore := clock.Install(fake.Now)
	defer func() {
		// Whatever happened, leave this address unlocked for later tests.
		fake.Advance(time.Hour)
		right.send(http.MethodGet, base+"/auths", "", secret)
		restore()
	}()
	// The wrong secrets above still count (a right one does not clear
	// them) until their window has passed.
	fake.Advance(30 * time.Minute)
	for i := 1; i < 5; i++ {
		wrong.do(http.MethodGet, base+"/auths", "", http.StatusUnauthorized)
	}
	b := wrong.do(http.MethodGet, base+"/auths", "", http.StatusUnauthorized)
	if msg, _ := jsonField(t, b, "error").(string); !strings.Contains(msg, "locked out") {
		t.Fatalf("lock-out message: %s", b)
	}
	right.do(http.MethodGet, base+"/auths", "", http.StatusTooManyRequests)
	fake.Advance(30 * time.Minute)
	right.do(http.MethodGet, base+"/auths", "", http.StatusOK)

	for _, c := range []*adminClient{open, wrong, right} {
		c.noSecrets(mockSecrets(secret, string(hash), "wrong-horse")...)
	}
}

func TestAdminRescanReadsStorage(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	const pool = "adm-rescan"
	writeRecord(t, dir, pool, "c1", fmt.Sprintf(`{"type":"claude","api_key":"sk-ant-one","base_url":%q}`, up.URL))
	loadConfig(t, dir, `	llm_proxy {
		pool adm-rescan
		rescan_interval 0
	}`)
	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/" + pool

	if got := ask(t, ""); got != "claude-1" {
		t.Fatalf("served by %q", got)
	}

	// Records written by hand, one of them corrupted, appear on rescan.
	writeRecord(t, dir, pool, "c2", fmt.Sprintf(`{"provider":"claude","api_key":"sk-ant-two","base_url":%q,"priority":5}`, up.URL))
	writeRecord(t, dir, pool, "broken", `{"provider":"claude","api_key":"sk-ant-three"`)
	if got := ask(t, ""); got != "claude-1" {
		t.Fatalf("served by %q before the rescan (rescans are off)", got)
	}
	b := admin.do(http.MethodPost, base+"/rescan", "", http.StatusOK)
	var res struct {
		Stored  int `json:"stored"`
		Skipped []struct {
			Key   string `json:"key"`
			Error string `json:"error"`
		} `json:"skipped"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Stored != 2 || len(res.Skipped) != 1 || res.Skipped[0].Key != "llm_proxy/adm-rescan/auths/broken.json" {
		t.Fatalf("rescan answer: %s", b)
	}
	for i := 0; i < 3; i++ {
		if got := ask(t, ""); got != "claude-2" {
			t.Fatalf("served by %q after the rescan, want the new higher-priority credential", got)
		}
	}
	views := authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK))
	if len(views) != 2 || views["c1"]["provider"] != "claude" || views["c2"]["priority"] != 5.0 {
		t.Fatalf("auths: %v", views)
	}

	// Disabled and deleted by hand.
	writeRecord(t, dir, pool, "c2", fmt.Sprintf(`{"provider":"claude","api_key":"sk-ant-two","base_url":%q,"priority":5,"disabled":true}`, up.URL))
	admin.do(http.MethodPost, base+"/rescan", "", http.StatusOK)
	if got := ask(t, ""); got != "claude-1" {
		t.Fatalf("served by %q after disabling c2 by hand", got)
	}
	if err := os.Remove(filepath.Join(dir, "llm_proxy", pool, "auths", "c2.json")); err != nil {
		t.Fatal(err)
	}
	b = admin.do(http.MethodPost, base+"/rescan", "", http.StatusOK)
	if jsonField(t, b, "stored") != 1.0 {
		t.Fatalf("rescan answer: %s", b)
	}

	// The corrupted record can be deleted through the API.
	admin.do(http.MethodDelete, base+"/auths/broken", "", http.StatusOK)
	b = admin.do(http.MethodPost, base+"/rescan", "", http.StatusOK)
	if !strings.Contains(string(b), `"skipped":[]`) {
		t.Fatalf("rescan answer: %s", b)
	}
	admin.noSecrets(mockSecrets()...)
}

func TestAdminResetClearsCooldowns(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool adm-reset
		rescan_interval 0
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %[1]s
			priority 10
		}
		auth c2 {
			provider claude
			api_key sk-ant-two
			base_url %[1]s
		}
	}`, up.URL))
	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/adm-reset"

	up.SetFault("sk-ant-one", mockllm.Fault{Status: http.StatusTooManyRequests, Headers: map[string]string{"Retry-After": "600"}, Times: 1})
	if got := ask(t, ""); got != "claude-2" {
		t.Fatalf("served by %q, want failover to claude-2", got)
	}
	if got := ask(t, ""); got != "claude-2" {
		t.Fatalf("served by %q while c1 cools", got)
	}
	views := authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK))
	cds, _ := views["c1"]["cooldowns"].([]any)
	if len(cds) != 1 || views["c1"]["failures"] != 1.0 || views["c2"]["successes"] != 2.0 {
		t.Fatalf("views after the 429: %v", views)
	}
	b := admin.do(http.MethodPost, base+"/auths/c1/reset", "", http.StatusOK)
	if cds, _ := jsonField(t, b, "cooldowns").([]any); len(cds) != 0 {
		t.Fatalf("cooldowns after reset: %s", b)
	}
	if got := ask(t, ""); got != "claude-1" {
		t.Fatalf("served by %q after reset", got)
	}
	admin.do(http.MethodPost, base+"/auths/nope/reset", "", http.StatusNotFound)
	admin.noSecrets(mockSecrets()...)
}
