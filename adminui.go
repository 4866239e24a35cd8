package llmproxy

// The operator's status page (SPEC section 16): one self-contained HTML
// page under /llm_proxy/ui and the same-origin JSON API it calls, which
// serves the pool routes of the admin API with a cookie in place of the
// Bearer secret.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// The status page and its protections.
const (
	// uiHeader must be sent, with the value "1", on every request of the
	// status page that changes something. A cross-site form cannot set a
	// header, and a cross-site script cannot send one without Caddy's
	// origin check refusing it first.
	uiHeader = "X-LLM-Proxy-UI"
	// uiSessionTTL is how long an unlocked pool stays unlocked in one
	// browser.
	uiSessionTTL = 12 * time.Hour
	// uiCookiePrefix starts the name of a pool's session cookie; the rest
	// is derived from the pool name, so each pool has its own cookie.
	uiCookiePrefix = "llm_proxy_ui_"
	// uiCookiePath scopes the cookies to the status page: the plain admin
	// routes under /llm_proxy/pools never see them and need the Bearer.
	uiCookiePath = "/llm_proxy/ui"
)

//go:embed ui/status.html
var statusPage []byte

// statusPageCSP allows exactly the page's inline style and script (by
// hash) and same-origin requests; nothing else loads or runs, so even a
// string that slipped past the page's escaping could not execute.
var statusPageCSP = pageCSP(statusPage)

// pageCSP returns the Content-Security-Policy of page: its <style> and
// <script> elements are allowed by their SHA-256.
func pageCSP(page []byte) string {
	return "default-src 'none'; " +
		"script-src " + inlineHashes(page, "script") + "; " +
		"style-src " + inlineHashes(page, "style") + "; " +
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// inlineHashes returns the CSP hash sources of every <tag>...</tag> of
// page, or 'none' when there is none.
func inlineHashes(page []byte, tag string) string {
	var out []string
	open, end := []byte("<"+tag+">"), []byte("</"+tag+">")
	for rest := page; ; {
		i := bytes.Index(rest, open)
		if i < 0 {
			break
		}
		rest = rest[i+len(open):]
		j := bytes.Index(rest, end)
		if j < 0 {
			break
		}
		sum := sha256.Sum256(rest[:j])
		out = append(out, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		rest = rest[j+len(end):]
	}
	if len(out) == 0 {
		return "'none'"
	}
	return strings.Join(out, " ")
}

// serveUI answers GET /llm_proxy/ui, the operator's status page, and the
// routes below it:
//
//	GET    /llm_proxy/ui                        the page (HTML, no external assets)
//	GET    /llm_proxy/ui/api/pools              as GET /llm_proxy/pools, plus whether each pool is protected
//	*      /llm_proxy/ui/api/pools/<pool>/...   as /llm_proxy/pools/<pool>/... (same handlers)
//	POST   /llm_proxy/ui/unlock/<pool>          check the secret (Bearer) and set the pool's cookie
//	DELETE /llm_proxy/ui/unlock/<pool>          drop the pool's cookie
//
// A pool with a management_secret admits the UI API with its cookie or
// with the Bearer secret; a bad cookie ends the session without counting
// toward the lock-out (see uiAdmit). Every request but GET and HEAD needs the header
// "X-LLM-Proxy-UI: 1" (CSRF).
func (a AdminAPI) serveUI(w http.ResponseWriter, r *http.Request, rest string) error {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if rest == "" || rest == "/" {
		return servePage(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(uiHeader) != "1" {
		return apiError(http.StatusForbidden, "the status page sends %q with every change; requests without it are refused", uiHeader+": 1")
	}
	segs, err := splitPath(rest)
	if err != nil {
		return err
	}
	switch {
	case len(segs) == 2 && segs[0] == "api" && segs[1] == "pools":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, http.MethodGet)
		}
		return writeJSON(w, http.StatusOK, uiPools())
	case len(segs) >= 3 && segs[0] == "api" && segs[1] == "pools":
		p, err := uiAdmit(w, r, segs[2])
		if err != nil {
			return err
		}
		return poolAdmin{p: p}.route(w, r, segs[3:])
	case len(segs) == 2 && segs[0] == "unlock":
		switch r.Method {
		case http.MethodPost:
			return unlock(w, r, segs[1])
		case http.MethodDelete:
			http.SetCookie(w, uiCookie(r, segs[1], "", -1))
			return writeJSON(w, http.StatusOK, map[string]any{"pool": segs[1], "locked": true})
		}
		return methodNotAllowed(w, http.MethodPost, http.MethodDelete)
	}
	return apiError(http.StatusNotFound, "not found: the status page is /llm_proxy/ui, its API /llm_proxy/ui/api/pools/...")
}

// servePage writes the status page. It holds no data: the page loads
// everything through the UI API.
func servePage(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(w, http.MethodGet, http.MethodHead)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusPageCSP)
	h.Set("X-Frame-Options", "DENY")
	// The page's own requests must carry a same-origin Referer: Caddy's
	// admin endpoint refuses browser requests that show no origin.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Length", strconv.Itoa(len(statusPage)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(statusPage)
	return err
}

// splitPath splits an escaped path into unescaped segments.
func splitPath(escaped string) ([]string, error) {
	segs := strings.Split(strings.Trim(escaped, "/"), "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, apiError(http.StatusBadRequest, "bad path: %v", err)
		}
		segs[i] = u
	}
	return segs, nil
}

// uiPool is one pool in GET /llm_proxy/ui/api/pools.
type uiPool struct {
	poolSummary
	// Protected tells whether the pool has a management secret: the page
	// asks for it before showing the pool.
	Protected bool `json:"protected"`
}

func uiPools() []uiPool {
	out := []uiPool{}
	for _, s := range poolSummaries() {
		p, ok := pool.Lookup(s.Name)
		if !ok {
			continue
		}
		secret, ok := p.ManagementSecret()
		if !ok {
			continue
		}
		out = append(out, uiPool{poolSummary: s, Protected: secret != ""})
	}
	return out
}

// lookupPool returns the pool named name and its configured management
// secret (placeholders not expanded).
func lookupPool(name string) (*pool.Pool, string, error) {
	p, ok := pool.Lookup(name)
	if !ok {
		return nil, "", apiError(http.StatusNotFound, "unknown pool %q", name)
	}
	secret, ok := p.ManagementSecret()
	if !ok {
		return nil, "", apiError(http.StatusNotFound, "unknown pool %q", name)
	}
	return p, secret, nil
}

// uiAdmit admits a UI API request to pool name: always when the pool has
// no management secret, else with the Bearer secret (checkManagementSecret)
// or with the pool's cookie. A cookie that is not valid (expired, from
// another process or secret, forged) is dropped without counting toward
// the lock-out: only secrets are guesses.
func uiAdmit(w http.ResponseWriter, r *http.Request, name string) (*pool.Pool, error) {
	p, configured, err := lookupPool(name)
	if err != nil || configured == "" {
		return p, err
	}
	if _, ok := bearerToken(r); ok {
		return p, checkManagementSecret(w, r, name, configured)
	}
	c, err := r.Cookie(uiCookieName(name))
	if err != nil || c.Value == "" {
		return nil, apiError(http.StatusUnauthorized, "pool %q is locked: enter its management secret on the status page", name)
	}
	secret := caddy.NewReplacer().ReplaceKnown(configured, "")
	if secret == "" {
		return nil, apiError(http.StatusForbidden, "the management_secret of pool %q is empty after placeholder expansion; every request is refused until it is set", name)
	}
	addr, now := lockoutKey(r), clock.Now()
	if until, locked := adminLockouts.lockedUntil(addr, now); locked {
		return nil, lockedOut(w, until, now)
	}
	if uiKeys.valid(c.Value, name, secret, now) {
		return p, nil
	}
	// A cookie is no guess at the secret (it carries a signature made
	// with this process's key, which nobody can forge), so a bad one
	// ends the session without counting toward the lock-out: an expired
	// one, one from before a restart or a change of the secret, or a
	// forged one. The browser stops sending it.
	http.SetCookie(w, uiCookie(r, name, "", -1))
	return nil, apiError(http.StatusUnauthorized, "the status page's session for pool %q has ended or is not valid: enter its management secret again", name)
}

// unlock checks the management secret sent as Bearer (lock-out applies)
// and sets the pool's session cookie. The cookie holds a signature, never
// the secret.
func unlock(w http.ResponseWriter, r *http.Request, name string) error {
	_, configured, err := lookupPool(name)
	if err != nil {
		return err
	}
	if configured == "" {
		return writeJSON(w, http.StatusOK, map[string]any{"pool": name, "protected": false})
	}
	if err := checkManagementSecret(w, r, name, configured); err != nil {
		return err
	}
	secret := caddy.NewReplacer().ReplaceKnown(configured, "")
	expires := clock.Now().Add(uiSessionTTL)
	http.SetCookie(w, uiCookie(r, name, uiKeys.issue(name, secret, expires), int(uiSessionTTL/time.Second)))
	adminLogger().Info("status page unlocked", zap.String("pool", name), zap.String("remote_ip", lockoutKey(r)))
	return writeJSON(w, http.StatusOK, map[string]any{"pool": name, "protected": true, "expires_at": expires.UTC().Format(time.RFC3339)})
}

// uiCookieName is the name of pool name's session cookie: cookie names
// allow few characters, so it is derived from a hash of the pool name.
func uiCookieName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return uiCookiePrefix + hex.EncodeToString(sum[:8])
}

// uiCookie returns pool name's session cookie; maxAge < 0 deletes it.
func uiCookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     uiCookieName(name),
		Value:    value,
		Path:     uiCookiePath,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}

// uiSigner signs session cookies with a key made at start; a restart
// ends every session. A cookie is keyID (8 bytes), expiry (unix seconds,
// 8 bytes) and an HMAC-SHA256 over the pool name, the expanded secret and
// the expiry, so a cookie opens one pool only, ends when the secret
// changes, and tells nothing about the secret.
type uiSigner struct {
	id  [8]byte
	key [32]byte
}

var uiKeys = newUISigner()

func newUISigner() *uiSigner {
	s := new(uiSigner)
	// crypto/rand.Read never fails (it panics instead).
	_, _ = rand.Read(s.id[:])
	_, _ = rand.Read(s.key[:])
	return s
}

const uiTokenLen = 8 + 8 + sha256.Size

func (s *uiSigner) mac(name, secret string, expires int64) []byte {
	m := hmac.New(sha256.New, s.key[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	m.Write(n[:])
	m.Write([]byte(name))
	binary.BigEndian.PutUint64(n[:], uint64(expires))
	m.Write(n[:])
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// issue returns a cookie value for pool name valid until expires.
func (s *uiSigner) issue(name, secret string, expires time.Time) string {
	b := make([]byte, 0, uiTokenLen)
	b = append(b, s.id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(expires.Unix()))
	b = append(b, s.mac(name, secret, expires.Unix())...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decode splits a cookie value; ok is false when it is not one at all.
func decode(value string) (id []byte, expires int64, sig []byte, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) != uiTokenLen {
		return nil, 0, nil, false
	}
	return b[:8], int64(binary.BigEndian.Uint64(b[8:16])), b[16:], true
}

// valid reports whether value is a cookie this process signed for pool
// name and secret that has not expired.
func (s *uiSigner) valid(value, name, secret string, now time.Time) bool {
	id, expires, sig, ok := decode(value)
	return ok && hmac.Equal(id, s.id[:]) && now.Unix() < expires && hmac.Equal(sig, s.mac(name, secret, expires))
}
