package llmproxy

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// uiCall is adminCall with the status page's CSRF header on every request
// but GET, and the cookies given.
func uiCall(t *testing.T, remote, method, path string, headers map[string]string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	h := map[string]string{}
	if method != http.MethodGet {
		h[uiHeader] = "1"
	}
	for k, v := range headers {
		h[k] = v
	}
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) > 0 {
		h["Cookie"] = strings.Join(parts, "; ")
	}
	return adminCall(t, remote, method, path, "", h)
}

// unlockCookie unlocks pool name with secret and returns the cookie set.
func unlockCookie(t *testing.T, remote, name, secret string) *http.Cookie {
	t.Helper()
	w := uiCall(t, remote, http.MethodPost, "/llm_proxy/ui/unlock/"+name, bearer(secret))
	wantStatus(t, w, http.StatusOK)
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("unlock set %d cookies, want 1", len(cs))
	}
	if strings.Contains(w.Body.String(), secret) || strings.Contains(w.Header().Get("Set-Cookie"), secret) {
		t.Fatalf("unlock echoes the secret: %s %s", w.Header(), w.Body)
	}
	return cs[0]
}

func TestStatusPageServed(t *testing.T) {
	for _, path := range []string{"/llm_proxy/ui", "/llm_proxy/ui/"} {
		w := adminCall(t, testRemote, http.MethodGet, path, "", nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
		if !bytes.Equal(w.Body.Bytes(), statusPage) {
			t.Fatalf("GET %s: not the page", path)
		}
		for k, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Cache-Control":          "no-store",
			"Referrer-Policy":        "same-origin",
		} {
			if got := w.Header().Get(k); got != want {
				t.Fatalf("%s: %q, want %q", k, got, want)
			}
		}
	}
	w := adminCall(t, testRemote, http.MethodPost, "/llm_proxy/ui", "", nil)
	wantStatus(t, w, http.StatusMethodNotAllowed)
}

// The CSP names the page's one script and one style by hash and allows
// no other script: an injected <img onerror> or <script> could not run
// even if the page's escaping failed.
func TestStatusPageCSP(t *testing.T) {
	csp := statusPageCSP
	if strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP allows unsafe sources: %s", csp)
	}
	if n := bytes.Count(statusPage, []byte("<script>")); n != 1 {
		t.Fatalf("page has %d inline scripts, want 1", n)
	}
	if bytes.Contains(statusPage, []byte("<script ")) || bytes.Contains(statusPage, []byte("<style ")) {
		t.Fatal("a <script> or <style> with attributes would not be hashed")
	}
	for _, dir := range []string{"script-src 'sha256-", "style-src 'sha256-", "default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, dir) {
			t.Fatalf("CSP lacks %q: %s", dir, csp)
		}
	}
	// Inline handlers are blocked by the CSP; the page must not use any.
	if m := regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`).Find(statusPage); m != nil {
		t.Fatalf("page uses an inline event handler: %s", m)
	}
	if got := inlineHashes([]byte("<p>no script</p>"), "script"); got != "'none'" {
		t.Fatalf("no script: %q", got)
	}
	// The SHA-256 of "x" (openssl dgst -sha256 -binary | base64) proves the hash is over the element's text.
	if got := inlineHashes([]byte("<style>x</style>"), "style"); got != "'sha256-LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE='" {
		t.Fatalf("hash of x: %s", got)
	}
}

// The UI API serves the same pool routes as the admin API, admitted by
// the pool's cookie.
func TestStatusPageCookieOpensOnePool(t *testing.T) {
	freshLockouts(t)
	newAdminFixture(t, "ui-a", "secret-of-ui-a", &auth.Auth{ID: "a1", Fields: auth.Fields{Provider: "claude", APIKey: "sk-ant-ui-a1"}, Inline: true})
	newAdminFixture(t, "ui-b", "secret-of-ui-b", &auth.Auth{ID: "b1", Fields: auth.Fields{Provider: "claude", APIKey: "sk-ant-ui-b1"}, Inline: true})
	const remote = "203.0.113.20:1000"

	// No cookie, no Bearer: locked.
	wantStatus(t, uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools/ui-a/auths", nil), http.StatusUnauthorized)

	// Unlocking needs the CSRF header, then the right secret.
	w := adminCall(t, remote, http.MethodPost, "/llm_proxy/ui/unlock/ui-a", "", bearer("secret-of-ui-a"))
	wantStatus(t, w, http.StatusForbidden)
	if len(w.Result().Cookies()) != 0 {
		t.Fatal("cookie set without the CSRF header")
	}
	w = uiCall(t, remote, http.MethodPost, "/llm_proxy/ui/unlock/ui-a", bearer("not-the-secret"))
	wantStatus(t, w, http.StatusUnauthorized)
	if len(w.Result().Cookies()) != 0 {
		t.Fatal("cookie set for a wrong secret")
	}
	c := unlockCookie(t, remote, "ui-a", "secret-of-ui-a")
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/llm_proxy/ui" || c.Secure || c.MaxAge != int(uiSessionTTL/time.Second) {
		t.Fatalf("cookie attributes: %+v", c)
	}
	if strings.Contains(c.Value, "secret-of-ui-a") || c.Name == uiCookieName("ui-b") {
		t.Fatalf("cookie %s=%s", c.Name, c.Value)
	}

	// The cookie gives what the Bearer gives on the plain route.
	got := uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools/ui-a/auths", nil, c)
	wantStatus(t, got, http.StatusOK)
	want := adminCall(t, remote, http.MethodGet, "/llm_proxy/pools/ui-a/auths", "", bearer("secret-of-ui-a"))
	if got.Body.String() != want.Body.String() {
		t.Fatalf("UI API and admin API differ:\n%s\n%s", got.Body, want.Body)
	}
	for _, s := range []string{"secret-of-ui-a", "sk-ant-ui-a1"} {
		if strings.Contains(got.Body.String(), s) {
			t.Fatalf("UI API shows %q", s)
		}
	}

	// A change needs the CSRF header even with the cookie.
	w = adminCall(t, remote, http.MethodPost, "/llm_proxy/ui/api/pools/ui-a/auths/a1/reset", "", map[string]string{"Cookie": c.Name + "=" + c.Value})
	wantStatus(t, w, http.StatusForbidden)
	wantStatus(t, uiCall(t, remote, http.MethodPost, "/llm_proxy/ui/api/pools/ui-a/auths/a1/reset", nil, c), http.StatusOK)

	// The cookie does not open pool B, by its own name or by B's.
	wantStatus(t, uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools/ui-b/auths", nil, c), http.StatusUnauthorized)
	asB := &http.Cookie{Name: uiCookieName("ui-b"), Value: c.Value}
	wantStatus(t, uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools/ui-b/auths", nil, asB), http.StatusUnauthorized)
	// Nor the plain admin routes, which keep the Bearer only.
	wantStatus(t, uiCall(t, remote, http.MethodGet, "/llm_proxy/pools/ui-a/auths", nil, c), http.StatusUnauthorized)

	// The UI API takes the Bearer too.
	wantStatus(t, uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools/ui-b/auths", bearer("secret-of-ui-b")), http.StatusOK)

	// The pool list says which pools are protected.
	w = uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools", nil)
	wantStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `"name":"ui-a","total":1,"enabled":1,"available":1,"protected":true`) {
		t.Fatalf("pool list: %s", w.Body)
	}

	// Locking again drops the cookie.
	w = uiCall(t, remote, http.MethodDelete, "/llm_proxy/ui/unlock/ui-a", nil)
	wantStatus(t, w, http.StatusOK)
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 || cs[0].Name != c.Name {
		t.Fatalf("lock cookies: %+v", cs)
	}
}

func TestStatusPageCookieSecureOverTLS(t *testing.T) {
	freshLockouts(t)
	newAdminFixture(t, "ui-tls", "secret-of-ui-tls")
	req := httptest.NewRequest(http.MethodPost, "/llm_proxy/ui/unlock/ui-tls", nil)
	req.RemoteAddr = "203.0.113.21:1000"
	req.TLS = &tls.ConnectionState{}
	req.Header.Set(uiHeader, "1")
	req.Header.Set("Authorization", "Bearer secret-of-ui-tls")
	w := httptest.NewRecorder()
	if err := (AdminAPI{}).Routes()[0].Handler.ServeHTTP(w, req); err != nil {
		t.Fatal(err)
	}
	if cs := w.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("cookies over TLS: %+v", cs)
	}
}

// A bad cookie (forged, for another pool or secret, or moved expiry) is
// refused and deleted, but never counts toward the lock-out: a cookie is
// no guess at the secret, and counting it locked operators out after a
// secret change (one stale cookie per pool sharing the secret). A locked
// out address stays locked out for valid cookies too.
func TestStatusPageBadCookiesRefusedNotCounted(t *testing.T) {
	fake := freshLockouts(t)
	newAdminFixture(t, "ui-lock", "secret-of-ui-lock")
	const attacker = "203.0.113.30:1000"
	path := "/llm_proxy/ui/api/pools/ui-lock/auths"
	name := uiCookieName("ui-lock")
	real := uiKeys.issue("ui-lock", "secret-of-ui-lock", fake.Now().Add(time.Hour))
	forged := []string{
		"garbage",
		real[:len(real)-4] + "AAAA", // signature changed
		uiKeys.issue("ui-lock", "another-secret", fake.Now().Add(time.Hour)),     // secret changed
		uiKeys.issue("ui-other", "secret-of-ui-lock", fake.Now().Add(time.Hour)), // another pool
		moveExpiry(t, real), // expiry moved
	}
	for round := range 3 {
		for i, v := range forged {
			w := uiCall(t, attacker, http.MethodGet, path, nil, &http.Cookie{Name: name, Value: v})
			wantStatus(t, w, http.StatusUnauthorized)
			if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
				t.Fatalf("round %d: bad cookie %d not deleted: %+v", round, i, cs)
			}
		}
	}
	wantStatus(t, uiCall(t, attacker, http.MethodGet, path, nil, &http.Cookie{Name: name, Value: real}), http.StatusOK)
	wantStatus(t, uiCall(t, attacker, http.MethodGet, path, bearer("secret-of-ui-lock")), http.StatusOK)

	// Wrong secrets still lock the address out, valid cookie or not.
	for range adminMaxFailures {
		uiCall(t, attacker, http.MethodPost, "/llm_proxy/ui/unlock/ui-lock", bearer("wrong"))
	}
	wantStatus(t, uiCall(t, attacker, http.MethodGet, path, nil, &http.Cookie{Name: name, Value: real}), http.StatusTooManyRequests)
	wantStatus(t, uiCall(t, attacker, http.MethodPost, "/llm_proxy/ui/unlock/ui-lock", bearer("secret-of-ui-lock")), http.StatusTooManyRequests)
}

// A cookie this process signed that has expired, or one signed by another
// process (before a restart), ends the session without counting as a
// guess.
func TestStatusPageStaleCookiesDoNotCount(t *testing.T) {
	fake := freshLockouts(t)
	newAdminFixture(t, "ui-stale", "secret-of-ui-stale")
	const remote = "203.0.113.31:1000"
	path := "/llm_proxy/ui/api/pools/ui-stale/auths"
	c := unlockCookie(t, remote, "ui-stale", "secret-of-ui-stale")
	wantStatus(t, uiCall(t, remote, http.MethodGet, path, nil, c), http.StatusOK)
	other := newUISigner()
	restarted := &http.Cookie{Name: c.Name, Value: other.issue("ui-stale", "secret-of-ui-stale", fake.Now().Add(time.Hour))}
	fake.Advance(uiSessionTTL)
	for range 2 * adminMaxFailures {
		wantStatus(t, uiCall(t, remote, http.MethodGet, path, nil, c), http.StatusUnauthorized)
		wantStatus(t, uiCall(t, remote, http.MethodGet, path, nil, restarted), http.StatusUnauthorized)
	}
	wantStatus(t, uiCall(t, remote, http.MethodGet, path, bearer("secret-of-ui-stale")), http.StatusOK)
}

// A management_secret that expands to nothing keeps the pool shut to
// cookies as to the Bearer.
func TestStatusPageEmptySecretFailsClosed(t *testing.T) {
	freshLockouts(t)
	newAdminFixture(t, "ui-empty", "{env.LLM_PROXY_UI_TEST_UNSET}")
	c := &http.Cookie{Name: uiCookieName("ui-empty"), Value: uiKeys.issue("ui-empty", "", time.Now().Add(time.Hour))}
	wantStatus(t, uiCall(t, "203.0.113.32:1000", http.MethodGet, "/llm_proxy/ui/api/pools/ui-empty/auths", nil, c), http.StatusForbidden)
}

func TestStatusPageUnprotectedPoolAndRouting(t *testing.T) {
	freshLockouts(t)
	newAdminFixture(t, "ui-open", "", &auth.Auth{ID: "o1", Fields: auth.Fields{Provider: "claude", APIKey: "sk-ant-ui-o1"}, Inline: true})
	const remote = "203.0.113.33:1000"
	wantStatus(t, uiCall(t, remote, http.MethodGet, "/llm_proxy/ui/api/pools/ui-open/auths", nil), http.StatusOK)
	w := uiCall(t, remote, http.MethodPost, "/llm_proxy/ui/unlock/ui-open", nil)
	wantStatus(t, w, http.StatusOK)
	if len(w.Result().Cookies()) != 0 {
		t.Fatal("cookie for an unprotected pool")
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/llm_proxy/ui/api/pools/nope/auths", http.StatusNotFound},
		{http.MethodGet, "/llm_proxy/ui/api/pools/ui-open", http.StatusNotFound},
		{http.MethodGet, "/llm_proxy/ui/api", http.StatusNotFound},
		{http.MethodGet, "/llm_proxy/ui/nothing", http.StatusNotFound},
		{http.MethodPost, "/llm_proxy/ui/api/pools", http.StatusMethodNotAllowed},
		{http.MethodPatch, "/llm_proxy/ui/api/pools/ui-open/auths/o1", http.StatusConflict}, // inline
	} {
		wantStatus(t, uiCall(t, remote, tc.method, tc.path, nil), tc.status)
	}
	// Without the header, PATCH and DELETE are refused before routing.
	for _, m := range []string{http.MethodPatch, http.MethodDelete, http.MethodPost, http.MethodPut} {
		wantStatus(t, adminCall(t, remote, m, "/llm_proxy/ui/api/pools/ui-open/auths/o1", `{"disabled":true}`, nil), http.StatusForbidden)
	}
	// A path that only starts like the page is not the page.
	wantStatus(t, adminCall(t, remote, http.MethodGet, "/llm_proxy/uix", "", nil), http.StatusNotFound)
}

// moveExpiry returns the cookie value with its expiry a year later and its
// signature kept.
func moveExpiry(t *testing.T, value string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) != uiTokenLen {
		t.Fatalf("cookie %q: %v", value, err)
	}
	binary.BigEndian.PutUint64(b[8:16], binary.BigEndian.Uint64(b[8:16])+365*24*3600)
	return base64.RawURLEncoding.EncodeToString(b)
}
