package integration

// Hostile clients and operators' mistakes against llm_proxy's per-credential
// state, storage listing and admin lock-out, through a real Caddy.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/filestorage"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
)

func init() {
	caddy.RegisterModule(outageStorage{})
}

// storageOutage makes every listing under llm_proxy/ of outageStorage fail,
// as a remote storage backend's outage does.
var storageOutage atomic.Bool

// outageStorage is Caddy's file_system storage whose listings can be made
// to fail (caddy.storage.llm_proxy_test_outage, Caddyfile:
// "storage llm_proxy_test_outage <root>").
type outageStorage struct {
	filestorage.FileStorage
}

func (outageStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.llm_proxy_test_outage",
		New: func() caddy.Module { return new(outageStorage) },
	}
}

func (s *outageStorage) CertMagicStorage() (certmagic.Storage, error) {
	fs, err := s.FileStorage.CertMagicStorage()
	if err != nil {
		return nil, err
	}
	return outageLister{fs}, nil
}

type outageLister struct{ certmagic.Storage }

func (o outageLister) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if storageOutage.Load() && strings.HasPrefix(prefix, "llm_proxy/") {
		return nil, errors.New("storage backend unavailable")
	}
	return o.Storage.List(ctx, prefix, recursive)
}

// loadOutageConfig loads a Caddyfile like loadConfig's, with outageStorage
// rooted at storageDir.
func loadOutageConfig(t *testing.T, storageDir, site string) {
	t.Helper()
	cfg := fmt.Sprintf(`{
	admin %s
	http_port %d
	https_port %d
	grace_period 1m
	storage llm_proxy_test_outage %s
}

%s {
%s
}
`, adminAddr, sitePort, httpsPort, storageDir, siteAddr, site)
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{TestRequestTimeout: 20 * time.Second})
	tester.InitServer(cfg, "caddyfile")
}

// storedPool is a pool whose credentials all live in storage; strategy
// varies so that every load is a real reload.
func storedPool(pool, strategy string) string {
	return fmt.Sprintf(`	llm_proxy {
		pool %s
		rescan_interval 0
		routing {
			strategy %s
		}
	}`, pool, strategy)
}

// servedBy asks a few times and fails unless exactly the credentials
// labelled want served.
func servedBy(t *testing.T, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; i < 4*len(want); i++ {
		seen[ask(t, "")] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("served by %v, want %v", seen, want)
	}
	for _, w := range want {
		if !seen[w] {
			t.Fatalf("served by %v, want %v", seen, want)
		}
	}
}

// A directory named like a record, made through an old admin API or by
// hand, and a storage outage must never empty the pool: rescans and
// reloads keep the stored credentials serving.
func TestHostileStorageKeepsCredentials(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	const pool = "hostile-store"
	for id, key := range map[string]string{"c1": "sk-ant-one", "team/c2": "sk-ant-two"} {
		writeRecord(t, dir, pool, id, fmt.Sprintf(`{"provider":"claude","api_key":%q,"base_url":%q}`, key, up.URL))
	}
	t.Cleanup(func() { storageOutage.Store(false) })
	loadOutageConfig(t, dir, storedPool(pool, "round_robin"))
	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/" + pool
	servedBy(t, "claude-1", "claude-2")

	// The admin API refuses an ID that would make such a directory.
	b := admin.do(http.MethodPost, base+"/auths", fmt.Sprintf(`{"id":"a.json/b","provider":"claude","api_key":"sk-ant-three","base_url":%q}`, up.URL), http.StatusBadRequest)
	if msg, _ := jsonField(t, b, "error").(string); !strings.Contains(msg, ".json") {
		t.Fatalf("refusal: %s", b)
	}
	prefixDir := filepath.Join(dir, "llm_proxy", pool, "auths")
	if _, err := os.Stat(filepath.Join(prefixDir, "a.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a.json was created: %v", err)
	}

	// Made by hand: a directory named like a record, holding one.
	writeRecord(t, dir, pool, "evil.json/inner", fmt.Sprintf(`{"provider":"claude","api_key":"sk-ant-three","base_url":%q}`, up.URL))
	b = admin.do(http.MethodPost, base+"/rescan", "", http.StatusOK)
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
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.Key] = s.Error
	}
	if res.Stored != 2 || !strings.Contains(skipped["llm_proxy/"+pool+"/auths/evil.json"], "directory") ||
		!strings.Contains(skipped["llm_proxy/"+pool+"/auths/evil.json/inner.json"], ".json") {
		t.Fatalf("rescan answer: %s", b)
	}
	servedBy(t, "claude-1", "claude-2")

	// A reload lists storage again with the directory still there.
	loadOutageConfig(t, dir, storedPool(pool, "fill_first"))
	servedBy(t, "claude-1")
	if views := authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK)); len(views) != 2 {
		t.Fatalf("after the reload: %v", views)
	}

	// The directory cannot be deleted through the API by its record name.
	admin.do(http.MethodDelete, base+"/auths/evil", "", http.StatusInternalServerError)
	if _, err := os.Stat(filepath.Join(prefixDir, "evil.json", "inner.json")); err != nil {
		t.Fatalf("DELETE removed the directory's content: %v", err)
	}

	// Storage goes away: a rescan fails and keeps the credentials, and so
	// does a reload, which lists storage while provisioning.
	storageOutage.Store(true)
	admin.do(http.MethodPost, base+"/rescan", "", http.StatusInternalServerError)
	servedBy(t, "claude-1")
	loadOutageConfig(t, dir, storedPool(pool, "round_robin"))
	servedBy(t, "claude-1", "claude-2")
	if views := authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK)); len(views) != 2 ||
		views["team/c2"]["source"] != "storage" {
		t.Fatalf("after a reload during the outage: %v", views)
	}

	// Storage is back: records written meanwhile are picked up.
	storageOutage.Store(false)
	writeRecord(t, dir, pool, "c3", fmt.Sprintf(`{"provider":"claude","api_key":"sk-ant-three","base_url":%q,"priority":5}`, up.URL))
	if got := jsonField(t, admin.do(http.MethodPost, base+"/rescan", "", http.StatusOK), "stored"); got != 3.0 {
		t.Fatalf("stored after the outage: %v", got)
	}
	servedBy(t, "claude-3")
	admin.noSecrets(mockSecrets()...)
}

// notFoundUpstream answers 404 (Anthropic's shape) for models named
// "bogus-*" and a minimal message otherwise.
func notFoundUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(req.Model, "bogus-") {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"type":"error","error":{"type":"not_found_error","message":"model: %s"}}`, req.Model)
			return
		}
		fmt.Fprintf(w, `{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`, req.Model)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A client naming a new model on every request (each a 404 that cools
// that model on the credential for 12h) cannot grow the credential's state
// or the admin API's answer without bound, and real models keep working.
func TestHostileModelFloodIsBounded(t *testing.T) {
	upURL := notFoundUpstream(t)
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool hostile-models
		rescan_interval 0
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
	}`, upURL))
	headers := map[string]string{"anthropic-version": "2023-06-01"}
	const flood = 400
	for i := 0; i < flood; i++ {
		resp, body := call(t, http.MethodPost, "/v1/messages", headers,
			fmt.Sprintf(`{"model":"bogus-%04d","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, i))
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("bogus model %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	resp, body := call(t, http.MethodPost, "/v1/messages", headers,
		`{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("real model after the flood: status %d: %s", resp.StatusCode, body)
	}

	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/hostile-models"
	v := authViews(t, admin.do(http.MethodGet, base+"/auths", "", http.StatusOK))["c1"]
	cds, _ := v["cooldowns"].([]any)
	if len(cds) != 16 || v["cooldowns_omitted"] != 256.0-16 {
		t.Fatalf("list shows %d cooldowns, omitted %v; want 16 and %d", len(cds), v["cooldowns_omitted"], 256-16)
	}
	one := admin.do(http.MethodGet, base+"/auths/c1", "", http.StatusOK)
	if cds, _ := jsonField(t, one, "cooldowns").([]any); len(cds) != 256 {
		t.Fatalf("the credential's view shows %d cooldowns, want the bound 256", len(cds))
	}
	// The newest bogus model is among those kept.
	if !strings.Contains(string(one), fmt.Sprintf(`"bogus-%04d"`, flood-1)) {
		t.Fatal("the newest cooldown was evicted")
	}
}

// A right secret for one pool does not clear the wrong ones sent to
// another: alternating them locks the address out of both after 5 wrong
// secrets.
func TestHostileAlternatingPoolsLockOut(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	handle /a/* {
		llm_proxy {
			pool hostile-lock-a
			rescan_interval 0
			management_secret secret-of-pool-a
			auth c1 {
				provider claude
				api_key sk-ant-one
				base_url %[1]s
			}
		}
	}
	handle /b/* {
		llm_proxy {
			pool hostile-lock-b
			rescan_interval 0
			management_secret secret-of-pool-b
			auth c1 {
				provider claude
				api_key sk-ant-two
				base_url %[1]s
			}
		}
	}`, up.URL))
	fake := clock.NewFake(time.Now())
	restore := clock.Install(fake.Now)
	a := &adminClient{t: t, secret: "secret-of-pool-a"}
	b := &adminClient{t: t, secret: "secret-of-pool-b"}
	guess := &adminClient{t: t, secret: "guessing-pool-b"}
	t.Cleanup(func() {
		// Leave this address unlocked, with no count, for later tests.
		fake.Advance(2 * time.Hour)
		a.send(http.MethodGet, "/llm_proxy/pools/hostile-lock-a/auths", "", a.secret)
		restore()
	})

	for i := 1; i <= 5; i++ {
		a.do(http.MethodGet, "/llm_proxy/pools/hostile-lock-a/auths", "", http.StatusOK)
		body := guess.do(http.MethodGet, "/llm_proxy/pools/hostile-lock-b/auths", "", http.StatusUnauthorized)
		msg, _ := jsonField(t, body, "error").(string)
		if locked := strings.Contains(msg, "locked out"); locked != (i == 5) {
			t.Fatalf("wrong secret %d: %s", i, body)
		}
	}
	a.do(http.MethodGet, "/llm_proxy/pools/hostile-lock-a/auths", "", http.StatusTooManyRequests)
	b.do(http.MethodGet, "/llm_proxy/pools/hostile-lock-b/auths", "", http.StatusTooManyRequests)
	fake.Advance(30 * time.Minute)
	a.do(http.MethodGet, "/llm_proxy/pools/hostile-lock-a/auths", "", http.StatusOK)
	b.do(http.MethodGet, "/llm_proxy/pools/hostile-lock-b/auths", "", http.StatusOK)
	for _, c := range []*adminClient{a, b, guess} {
		c.noSecrets(mockSecrets("secret-of-pool-a", "secret-of-pool-b", "guessing-pool-b")...)
	}
}
