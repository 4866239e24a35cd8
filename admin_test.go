package llmproxy

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
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// adminFixture is a pool with one attached config whose records live in
// file storage in a temp dir, as the admin API sees it once Caddy serves
// the config.
type adminFixture struct {
	name string
	p    *pool.Pool
	root string
}

func newAdminFixture(t *testing.T, name, secret string, inline ...*auth.Auth) *adminFixture {
	t.Helper()
	root := t.TempDir()
	return attachFixture(t, name, secret, &certmagic.FileStorage{Path: root}, root, inline...)
}

// attachFixture attaches a config of pool name with its records in
// storage s (a file storage rooted at root).
func attachFixture(t *testing.T, name, secret string, s certmagic.Storage, root string, inline ...*auth.Auth) *adminFixture {
	t.Helper()
	a, err := pool.Attach(context.Background(), name, pool.Config{
		Owner:            t.Name(),
		Inline:           inline,
		Store:            auth.NewCaddyStore(s, "llm_proxy/"+name+"/auths"),
		ManagementSecret: secret,
		Logger:           zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Serve()
	t.Cleanup(a.Detach)
	return &adminFixture{name: name, p: a.Pool(), root: root}
}

func (f *adminFixture) recordPath(id string) string {
	return filepath.Join(f.root, "llm_proxy", f.name, "auths", filepath.FromSlash(id)+".json")
}

// adminCall sends one request to the admin API as Caddy's admin server
// would, rendering a returned error the way it does.
func adminCall(t *testing.T, remote, method, path, body string, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	err := AdminAPI{}.Routes()[0].Handler.ServeHTTP(w, req)
	if err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s %s: error %v is not a caddy.APIError", method, path, err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(apiErr.HTTPStatus)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": apiErr.Error()})
	}
	return w
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
}

func bearer(secret string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + secret}
}

const testRemote = "192.0.2.10:40000"

func TestSecretMatches(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, secret, presented string
		want                    bool
	}{
		{"plain right", "s3cret-value", "s3cret-value", true},
		{"plain wrong", "s3cret-value", "s3cret-valuE", false},
		{"plain prefix", "s3cret-value", "s3cret", false},
		{"plain longer", "s3cret-value", "s3cret-value-x", false},
		{"plain empty presented", "s3cret-value", "", false},
		{"bcrypt right", string(hash), "correct horse", true},
		{"bcrypt right again (cached)", string(hash), "correct horse", true},
		{"bcrypt wrong", string(hash), "correct horsf", false},
		{"bcrypt hash itself", string(hash), string(hash), false},
		{"2y prefix is bcrypt", "$2y$" + string(hash)[4:], "correct horse", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := secretMatches(tc.secret, tc.presented); got != tc.want {
				t.Fatalf("secretMatches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestManagementSecretGuardsPoolRoutesOnly(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("admin-pass-1"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("LLM_PROXY_ADMIN_TEST_SECRET", "plain-pass-2")
	for _, tc := range []struct {
		name, configured, right string
	}{
		{"bcrypt", string(hash), "admin-pass-1"},
		{"plain from env placeholder", "{env.LLM_PROXY_ADMIN_TEST_SECRET}", "plain-pass-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "unit-secret-" + strings.ReplaceAll(tc.name, " ", "-")
			newAdminFixture(t, name, tc.configured)
			base := "/llm_proxy/pools/" + name

			// The pool list needs no secret.
			w := adminCall(t, testRemote, http.MethodGet, "/llm_proxy/pools", "", nil)
			wantStatus(t, w, http.StatusOK)
			if !strings.Contains(w.Body.String(), `"name":"`+name+`"`) {
				t.Fatalf("pool missing from list: %s", w.Body)
			}

			for _, route := range []struct{ method, path string }{
				{http.MethodGet, base + "/auths"},
				{http.MethodPost, base + "/auths"},
				{http.MethodPatch, base + "/auths/x"},
				{http.MethodDelete, base + "/auths/x"},
				{http.MethodPost, base + "/auths/x/reset"},
				{http.MethodGet, base + "/sessions"},
				{http.MethodDelete, base + "/sessions"},
				{http.MethodPost, base + "/rescan"},
			} {
				w := adminCall(t, testRemote, route.method, route.path, "{}", nil)
				wantStatus(t, w, http.StatusUnauthorized)
				if w.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s: no WWW-Authenticate", route.method, route.path)
				}
			}
			w = adminCall(t, testRemote, http.MethodGet, base+"/auths", "", map[string]string{"Authorization": "Basic " + tc.right})
			wantStatus(t, w, http.StatusUnauthorized)
			w = adminCall(t, testRemote, http.MethodGet, base+"/auths", "", bearer("wrong-"+tc.right))
			wantStatus(t, w, http.StatusUnauthorized)
			if strings.Contains(w.Body.String(), tc.right) {
				t.Fatalf("error echoes the presented secret: %s", w.Body)
			}
			w = adminCall(t, testRemote, http.MethodGet, base+"/auths", "", bearer(tc.right))
			wantStatus(t, w, http.StatusOK)
			w = adminCall(t, testRemote, http.MethodGet, base+"/sessions", "", bearer(tc.right))
			wantStatus(t, w, http.StatusOK)
		})
	}
}

func TestManagementSecretEmptyAfterExpansionFailsClosed(t *testing.T) {
	newAdminFixture(t, "unit-secret-unset", "{env.LLM_PROXY_ADMIN_TEST_NEVER_SET}")
	w := adminCall(t, testRemote, http.MethodGet, "/llm_proxy/pools/unit-secret-unset/auths", "", nil)
	wantStatus(t, w, http.StatusForbidden)
	w = adminCall(t, testRemote, http.MethodGet, "/llm_proxy/pools/unit-secret-unset/auths", "", bearer(""))
	wantStatus(t, w, http.StatusForbidden)
}

func TestLockoutAfterFiveWrongSecrets(t *testing.T) {
	fake := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	t.Cleanup(clock.Install(fake.Now))
	newAdminFixture(t, "unit-lockout", "the-right-secret")
	path := "/llm_proxy/pools/unit-lockout/auths"
	const attacker, other = "198.51.100.7:5555", "198.51.100.8:6666"

	for i := 1; i < adminMaxFailures; i++ {
		w := adminCall(t, attacker, http.MethodGet, path, "", bearer("guess"))
		wantStatus(t, w, http.StatusUnauthorized)
	}
	// The fifth wrong secret is still a 401, and says the address is now
	// locked out.
	w := adminCall(t, attacker, http.MethodGet, path, "", bearer("guess"))
	wantStatus(t, w, http.StatusUnauthorized)
	if got := w.Header().Get("Retry-After"); got != "1800" {
		t.Fatalf("Retry-After %q, want 1800", got)
	}
	if !strings.Contains(w.Body.String(), "locked out") {
		t.Fatalf("no clear message: %s", w.Body)
	}

	// Locked out even with the right secret, from another port too.
	w = adminCall(t, "198.51.100.7:5556", http.MethodGet, path, "", bearer("the-right-secret"))
	wantStatus(t, w, http.StatusTooManyRequests)
	// Another address is not affected.
	w = adminCall(t, other, http.MethodGet, path, "", bearer("the-right-secret"))
	wantStatus(t, w, http.StatusOK)
	// The open pool list is not affected.
	w = adminCall(t, attacker, http.MethodGet, "/llm_proxy/pools", "", nil)
	wantStatus(t, w, http.StatusOK)

	fake.Advance(adminLockout - time.Second)
	w = adminCall(t, attacker, http.MethodGet, path, "", bearer("the-right-secret"))
	wantStatus(t, w, http.StatusTooManyRequests)
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want 1", got)
	}
	fake.Advance(time.Second)
	w = adminCall(t, attacker, http.MethodGet, path, "", bearer("the-right-secret"))
	wantStatus(t, w, http.StatusOK)

	// A right secret does not forget earlier failures: guesses between
	// right secrets still add up.
	for i := 1; i < adminMaxFailures; i++ {
		wantStatus(t, adminCall(t, attacker, http.MethodGet, path, "", bearer("guess")), http.StatusUnauthorized)
	}
	wantStatus(t, adminCall(t, attacker, http.MethodGet, path, "", bearer("the-right-secret")), http.StatusOK)
	w = adminCall(t, attacker, http.MethodGet, path, "", bearer("guess"))
	wantStatus(t, w, http.StatusUnauthorized)
	if !strings.Contains(w.Body.String(), "locked out") {
		t.Fatalf("the 5th wrong secret after a right one did not lock out: %s", w.Body)
	}
	wantStatus(t, adminCall(t, attacker, http.MethodGet, path, "", bearer("the-right-secret")), http.StatusTooManyRequests)
	fake.Advance(adminLockout)

	// Failures spread wider than the window do not add up.
	for i := 1; i < adminMaxFailures; i++ {
		wantStatus(t, adminCall(t, attacker, http.MethodGet, path, "", bearer("guess")), http.StatusUnauthorized)
	}
	fake.Advance(adminLockout)
	w = adminCall(t, attacker, http.MethodGet, path, "", bearer("guess"))
	wantStatus(t, w, http.StatusUnauthorized)
	if strings.Contains(w.Body.String(), "locked out") {
		t.Fatalf("failures older than the window counted: %s", w.Body)
	}
	// A missing secret is refused but is not a guess.
	for i := 0; i < 2*adminMaxFailures; i++ {
		wantStatus(t, adminCall(t, attacker, http.MethodGet, path, "", nil), http.StatusUnauthorized)
	}
	wantStatus(t, adminCall(t, attacker, http.MethodGet, path, "", bearer("the-right-secret")), http.StatusOK)
}

func TestLockoutsForgetStaleAddresses(t *testing.T) {
	l := newLockouts()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < lockoutMaxAddrs; i++ {
		l.record(fmt.Sprintf("addr-%d", i), false, now)
	}
	later := now.Add(adminLockout)
	l.record("fresh", false, later)
	if len(l.addrs) != 1 {
		t.Fatalf("%d addresses tracked after the sweep, want 1", len(l.addrs))
	}
}

// secrets used by TestAdminNeverShowsSecrets; none may appear in any
// response.
var adminTestSecrets = []string{
	"sk-ant-inline-SECRET-0001",
	"sk-ant-stored-SECRET-0002",
	"oat-access-SECRET-0003",
	"ort-refresh-SECRET-0004",
	"hdr-value-SECRET-0005",
	"urlpass-SECRET-0006",
	"querykey-SECRET-0007",
	"proxypass-SECRET-0008",
}

func TestAdminNeverShowsSecrets(t *testing.T) {
	f := newAdminFixture(t, "unit-mask", "", &auth.Auth{ID: "inline-1", Fields: auth.Fields{Provider: "claude", APIKey: adminTestSecrets[0], Headers: map[string]string{"X-Extra": adminTestSecrets[4]}}, Inline: true})
	base := "/llm_proxy/pools/unit-mask"
	var bodies []string
	call := func(method, path, body string, status int) *httptest.ResponseRecorder {
		t.Helper()
		w := adminCall(t, testRemote, method, path, body, nil)
		wantStatus(t, w, status)
		bodies = append(bodies, w.Body.String())
		return w
	}

	oauth := `{"id":"oauth-1","type":"claude","access_token":"` + adminTestSecrets[2] + `","refresh_token":"` + adminTestSecrets[3] +
		`","email":"me@example.com","expired":"2030-01-01T00:00:00Z","id_token":"kept-unknown-field"}`
	w := call(http.MethodPost, base+"/auths", oauth, http.StatusCreated)
	var v authView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.ID != "oauth-1" || v.Kind != "access_token" || v.MaskedSecret != "…0003" || v.Email != "me@example.com" || v.Source != "storage" || v.Inline {
		t.Fatalf("view %+v", v)
	}

	key := `{"id":"key-1","provider":"openai","api_key":"` + adminTestSecrets[1] + `","base_url":"https://user:` + adminTestSecrets[5] +
		`@llm.example.com/v1?key=` + adminTestSecrets[6] + `","proxy_url":"http://u:` + adminTestSecrets[7] + `@proxy.example.com:3128","headers":{"X-Tenant":"` + adminTestSecrets[4] + `"}}`
	w = call(http.MethodPost, base+"/auths", key, http.StatusCreated)
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.BaseURL != "https://llm.example.com/v1" || v.ProxyURL != "http://proxy.example.com:3128" || v.MaskedSecret != "…0002" ||
		len(v.HeaderNames) != 1 || v.HeaderNames[0] != "X-Tenant" {
		t.Fatalf("view %+v", v)
	}

	w = call(http.MethodGet, base+"/auths", "", http.StatusOK)
	var list []authView
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != "inline-1" || list[0].Source != "inline" || !list[0].Inline || list[0].MaskedSecret != "…0001" {
		t.Fatalf("list %+v", list)
	}

	call(http.MethodGet, base+"/auths/key-1", "", http.StatusOK)
	call(http.MethodPatch, base+"/auths/key-1", `{"disabled":true,"weight":5}`, http.StatusOK)
	call(http.MethodPost, base+"/auths/oauth-1/reset", "", http.StatusOK)
	call(http.MethodGet, base+"/sessions", "", http.StatusOK)
	call(http.MethodPost, base+"/rescan", "", http.StatusOK)
	// Errors do not echo the record either.
	call(http.MethodPost, base+"/auths", `{"id":"bad-1","provider":"nope","api_key":"`+adminTestSecrets[1]+`"}`, http.StatusBadRequest)
	call(http.MethodPost, base+"/auths", `{"id":"bad-2","provider":"claude","api_key":"`+adminTestSecrets[1]+`","weight":"`+adminTestSecrets[1]+`"}`, http.StatusBadRequest)
	call(http.MethodPost, base+"/auths", `{"id":"bad-3","provider":"claude","api_key":`+adminTestSecrets[1]+`}`, http.StatusBadRequest)
	call(http.MethodPost, base+"/auths", key, http.StatusConflict)
	call(http.MethodDelete, base+"/auths/key-1", "", http.StatusOK)
	call(http.MethodGet, "/llm_proxy/pools", "", http.StatusOK)

	for _, b := range bodies {
		for _, s := range adminTestSecrets {
			if strings.Contains(b, s) || strings.Contains(b, s[len(s)-8:]) {
				t.Fatalf("response shows secret %q: %s", s, b)
			}
		}
	}

	// The record in storage keeps the fields the API does not know.
	data, err := os.ReadFile(f.recordPath("oauth-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"id_token": "kept-unknown-field"`) || !strings.Contains(string(data), `"type": "claude"`) ||
		strings.Contains(string(data), `"id": "oauth-1"`) {
		t.Fatalf("stored record: %s", data)
	}
}

func TestAdminStoredCredentialLifecycle(t *testing.T) {
	f := newAdminFixture(t, "unit-crud", "", &auth.Auth{ID: "inline-1", Fields: auth.Fields{Provider: "claude", APIKey: "sk-ant-inline-key"}, Inline: true})
	p := f.p
	base := "/llm_proxy/pools/unit-crud"
	call := func(method, path, body string, status int) *httptest.ResponseRecorder {
		t.Helper()
		w := adminCall(t, testRemote, method, path, body, nil)
		wantStatus(t, w, status)
		return w
	}

	call(http.MethodPost, base+"/auths", `{"id":"team/a","provider":"claude","api_key":"sk-ant-team-a-key","priority":3,"note":"kept"}`, http.StatusCreated)
	c, ok := p.Get("team/a")
	if !ok || c.Auth().Priority != 3 || c.Auth().Inline {
		t.Fatalf("not in the pool at once: %v", ok)
	}
	if _, err := os.Stat(f.recordPath("team/a")); err != nil {
		t.Fatalf("not written to storage: %v", err)
	}

	// Conflicts and validation.
	call(http.MethodPost, base+"/auths", `{"id":"team/a","provider":"claude","api_key":"sk-ant-other"}`, http.StatusConflict)
	call(http.MethodPost, base+"/auths", `{"id":"inline-1","provider":"claude","api_key":"sk-ant-other"}`, http.StatusConflict)
	call(http.MethodPost, base+"/auths", `{"provider":"claude","api_key":"sk-ant-other"}`, http.StatusBadRequest)
	call(http.MethodPost, base+"/auths", `{"id":"../x","provider":"claude","api_key":"sk-ant-other"}`, http.StatusBadRequest)
	call(http.MethodPost, base+"/auths", `[1]`, http.StatusBadRequest)
	call(http.MethodPost, base+"/auths", `{"id":"w","provider":"claude","api_key":"k","weight":2000000}`, http.StatusBadRequest)
	call(http.MethodPatch, base+"/auths/inline-1", `{"disabled":true}`, http.StatusConflict)
	call(http.MethodDelete, base+"/auths/inline-1", "", http.StatusConflict)
	call(http.MethodPatch, base+"/auths/nope", `{"disabled":true}`, http.StatusNotFound)
	call(http.MethodDelete, base+"/auths/nope", "", http.StatusNotFound)
	call(http.MethodPost, base+"/auths/nope/reset", "", http.StatusNotFound)
	call(http.MethodPatch, base+"/auths/team/a", `{"disable":true}`, http.StatusBadRequest)
	call(http.MethodPatch, base+"/auths/team/a", `{}`, http.StatusBadRequest)
	call(http.MethodPatch, base+"/auths/team/a", `{"weight":-1}`, http.StatusBadRequest)
	call(http.MethodPatch, base+"/auths/team/a", `{"disabled":`, http.StatusBadRequest)

	// Disabling drops the credential's bindings and keeps unknown fields.
	p.Sessions.Bind("s1", "m", "team/a")
	p.Sessions.Bind("s2", "m", "inline-1")
	w := call(http.MethodGet, base+"/sessions", "", http.StatusOK)
	if got := w.Body.String(); !strings.Contains(got, `"total":2`) || !strings.Contains(got, `"team/a":1`) {
		t.Fatalf("sessions %s", got)
	}
	call(http.MethodPatch, base+"/auths/team%2Fa", `{"disabled":true,"priority":7,"weight":0}`, http.StatusOK)
	c, _ = p.Get("team/a")
	if a := c.Auth(); !a.Disabled || a.Priority != 7 || a.EffectiveWeight() != 0 {
		t.Fatalf("record %+v", a)
	}
	if n := p.Sessions.CountByAuth()["team/a"]; n != 0 {
		t.Fatalf("%d bindings left on a disabled credential", n)
	}
	data, _ := os.ReadFile(f.recordPath("team/a"))
	if !strings.Contains(string(data), `"note": "kept"`) || !strings.Contains(string(data), `"disabled": true`) {
		t.Fatalf("stored record: %s", data)
	}

	// Reset clears cooldowns, of inline credentials too.
	inl, _ := p.Get("inline-1")
	inl.RecordFailure("m", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll}, failure.Policy{}.WithDefaults(), clock.Now())
	if len(inl.Cooldowns(clock.Now())) == 0 {
		t.Fatal("no cooldown recorded")
	}
	call(http.MethodPost, base+"/auths/inline-1/reset", "", http.StatusOK)
	if cd := inl.Cooldowns(clock.Now()); len(cd) != 0 {
		t.Fatalf("cooldowns after reset: %v", cd)
	}

	// Sessions: drop one credential's, then all.
	p.Sessions.Bind("s3", "m", "inline-1")
	w = call(http.MethodDelete, base+"/sessions?auth=inline-1", "", http.StatusOK)
	if w.Body.String() != "{\"removed\":2}\n" {
		t.Fatalf("removed %s", w.Body)
	}
	p.Sessions.Bind("s4", "m", "inline-1")
	w = call(http.MethodDelete, base+"/sessions", "", http.StatusOK)
	if w.Body.String() != "{\"removed\":1}\n" {
		t.Fatalf("removed %s", w.Body)
	}

	// Delete removes the record and the credential.
	call(http.MethodDelete, base+"/auths/team/a", "", http.StatusOK)
	if _, ok := p.Get("team/a"); ok {
		t.Fatal("still in the pool")
	}
	if _, err := os.Stat(f.recordPath("team/a")); !os.IsNotExist(err) {
		t.Fatalf("still in storage: %v", err)
	}

	// A record that does not parse is skipped by rescan and can be deleted.
	if err := os.MkdirAll(filepath.Dir(f.recordPath("broken")), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.recordPath("broken"), []byte(`{"provider":"claude",`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.recordPath("fine"), []byte(`{"provider":"claude","api_key":"sk-ant-fine-key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	w = call(http.MethodPost, base+"/rescan", "", http.StatusOK)
	var res rescanResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Stored != 1 || len(res.Skipped) != 1 || !strings.HasSuffix(res.Skipped[0].Key, "/broken.json") {
		t.Fatalf("rescan %s", w.Body)
	}
	call(http.MethodPost, base+"/auths", `{"id":"broken","provider":"claude","api_key":"sk-ant-other"}`, http.StatusConflict)
	call(http.MethodDelete, base+"/auths/broken", "", http.StatusOK)
	if _, err := os.Stat(f.recordPath("broken")); !os.IsNotExist(err) {
		t.Fatalf("broken record still in storage: %v", err)
	}
}

func TestAdminRoutingErrors(t *testing.T) {
	newAdminFixture(t, "unit-routes", "")
	base := "/llm_proxy/pools/unit-routes"
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/llm_proxy/", http.StatusNotFound},
		{http.MethodGet, "/llm_proxy/poolsx", http.StatusNotFound},
		{http.MethodPost, "/llm_proxy/pools", http.StatusMethodNotAllowed},
		{http.MethodGet, "/llm_proxy/pools/", http.StatusOK},
		{http.MethodGet, "/llm_proxy/pools/no-such-pool/auths", http.StatusNotFound},
		{http.MethodGet, base, http.StatusNotFound},
		{http.MethodGet, base + "/other", http.StatusNotFound},
		{http.MethodPut, base + "/auths", http.StatusMethodNotAllowed},
		{http.MethodPost, base + "/auths/x", http.StatusMethodNotAllowed},
		{http.MethodPost, base + "/sessions", http.StatusMethodNotAllowed},
		{http.MethodGet, base + "/rescan", http.StatusMethodNotAllowed},
		{http.MethodGet, base + "/auths/", http.StatusOK},
		{http.MethodGet, base + "/auths/missing", http.StatusNotFound},
	} {
		w := adminCall(t, testRemote, tc.method, tc.path, "", nil)
		if w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d: %s", tc.method, tc.path, w.Code, tc.status, w.Body)
		}
		if w.Code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

func TestSplitID(t *testing.T) {
	id, doc, err := splitID([]byte(`{"provider":"claude","id":"a/b","api_key":"k","x":{"id":1}}`))
	if err != nil || id != "a/b" || string(doc) != `{"provider":"claude","api_key":"k","x":{"id":1}}` {
		t.Fatalf("id %q doc %s err %v", id, doc, err)
	}
	for _, bad := range []string{``, `[]`, `{"provider":"claude"}`, `{"id":1}`, `{"id":"a"} {}`, `{"id":"a",}`} {
		if _, _, err := splitID([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A client that named hundreds of models cannot blow up the credential
// list: it shows at most adminListCooldowns per-model cooldowns per
// credential and counts the rest; the credential's own view shows all.
func TestAdminListBoundsCooldowns(t *testing.T) {
	fake := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	t.Cleanup(clock.Install(fake.Now))
	f := newAdminFixture(t, "unit-cooldown-list", "", &auth.Auth{ID: "c1", Fields: auth.Fields{Provider: "claude", APIKey: "sk-ant-c1-0123456789"}, Inline: true})
	c, _ := f.p.Get("c1")
	now := clock.Now()
	policy := failure.Policy{}.WithDefaults()
	c.RecordFailure("", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll, Until: now.Add(time.Minute)}, policy, now)
	for i := 0; i < 1000; i++ {
		c.RecordFailure(fmt.Sprintf("bogus-%04d", i), failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel,
			Until: now.Add(12 * time.Hour), Reason: "model_not_found"}, policy, now)
	}

	w := adminCall(t, testRemote, http.MethodGet, "/llm_proxy/pools/unit-cooldown-list/auths", "", nil)
	wantStatus(t, w, http.StatusOK)
	var list []authView
	decodeJSON(t, w.Body.Bytes(), &list)
	if len(list) != 1 {
		t.Fatalf("list: %s", w.Body)
	}
	v := list[0]
	if len(v.Cooldowns) != adminListCooldowns+1 || v.Cooldowns[0].Model != "*" {
		t.Fatalf("%d cooldowns listed, want \"*\" and %d per-model", len(v.Cooldowns), adminListCooldowns)
	}
	if kept := 256; v.CooldownsOmitted != kept-adminListCooldowns {
		t.Fatalf("cooldowns_omitted %d, want %d", v.CooldownsOmitted, kept-adminListCooldowns)
	}
	if w.Body.Len() > 8<<10 {
		t.Fatalf("list of one credential is %d bytes", w.Body.Len())
	}

	w = adminCall(t, testRemote, http.MethodGet, "/llm_proxy/pools/unit-cooldown-list/auths/c1", "", nil)
	wantStatus(t, w, http.StatusOK)
	v = authView{}
	decodeJSON(t, w.Body.Bytes(), &v)
	if len(v.Cooldowns) != 257 || v.CooldownsOmitted != 0 {
		t.Fatalf("single view: %d cooldowns, %d omitted", len(v.Cooldowns), v.CooldownsOmitted)
	}
}

// POST with an ID that would make a directory named like a record is
// refused before anything is written; DELETE never removes a directory
// named like a record.
func TestAdminRefusesRecordLikeIDs(t *testing.T) {
	f := newAdminFixture(t, "unit-json-id", "")
	base := "/llm_proxy/pools/unit-json-id/auths"
	for _, id := range []string{"a.json/b", "team/a.JSON/b", "a.json"} {
		w := adminCall(t, testRemote, http.MethodPost, base, `{"id":"`+id+`","provider":"claude","api_key":"sk-ant-0123456789"}`, nil)
		wantStatus(t, w, http.StatusBadRequest)
		if !strings.Contains(w.Body.String(), ".json") {
			t.Fatalf("POST %s: %s", id, w.Body)
		}
	}
	if entries, err := os.ReadDir(filepath.Join(f.root, "llm_proxy", "unit-json-id", "auths")); err == nil && len(entries) > 0 {
		t.Fatalf("refused IDs wrote to storage: %v", entries)
	}

	inside := filepath.Join(f.root, "llm_proxy", "unit-json-id", "auths", "x.json", "kept.json")
	if err := os.MkdirAll(filepath.Dir(inside), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inside, []byte(`{"provider":"claude","api_key":"sk-ant-0123456789"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	w := adminCall(t, testRemote, http.MethodDelete, base+"/x", "", nil)
	if w.Code == http.StatusOK {
		t.Fatalf("DELETE of a directory: %s", w.Body)
	}
	if _, err := os.Stat(inside); err != nil {
		t.Fatalf("DELETE removed the directory's content: %v", err)
	}
	// The rest of storage still lists.
	wantStatus(t, adminCall(t, testRemote, http.MethodPost, base, `{"id":"ok","provider":"claude","api_key":"sk-ant-0123456789"}`, nil), http.StatusCreated)
	w = adminCall(t, testRemote, http.MethodPost, "/llm_proxy/pools/unit-json-id/rescan", "", nil)
	wantStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `"stored":1`) {
		t.Fatalf("rescan: %s", w.Body)
	}
}
