package llmproxy

// The management secret of the admin API and the lock-out after repeated
// wrong secrets.

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
)

// checkManagementSecret admits a request to a pool's routes: always when
// the pool has no management secret, else only with the right one and
// from an address that is not locked out.
func checkManagementSecret(w http.ResponseWriter, r *http.Request, h *Handler) error {
	if h.ManagementSecret == "" {
		return nil
	}
	secret := caddy.NewReplacer().ReplaceKnown(h.ManagementSecret, "")
	if secret == "" {
		// Fail closed: an unset {env.*} must not open the pool.
		return apiError(http.StatusForbidden, "the management_secret of pool %q is empty after placeholder expansion; every request is refused until it is set", h.Pool)
	}
	addr := remoteHost(r)
	now := clock.Now()
	if until, locked := adminLockouts.lockedUntil(addr, now); locked {
		return lockedOut(w, until, now)
	}
	presented, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="llm_proxy"`)
		return apiError(http.StatusUnauthorized, "pool %q needs its management secret: send \"Authorization: Bearer <secret>\"", h.Pool)
	}
	if !secretMatches(secret, presented) {
		if until, locked := adminLockouts.fail(addr, now); locked {
			// This try is still answered as a wrong secret (401); from now
			// on the address gets 429 until the lock-out ends.
			adminLogger().Warn("too many wrong management secrets; address locked out",
				zap.String("remote_ip", addr), zap.Time("until", until))
			w.Header().Set("Retry-After", strconv.Itoa(lockoutSeconds(until, now)))
			w.Header().Set("WWW-Authenticate", `Bearer realm="llm_proxy", error="invalid_token"`)
			return apiError(http.StatusUnauthorized,
				"wrong management secret for pool %q; too many wrong secrets from this address: locked out until %s, even with the right secret",
				h.Pool, until.UTC().Format(time.RFC3339))
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="llm_proxy", error="invalid_token"`)
		return apiError(http.StatusUnauthorized, "wrong management secret for pool %q", h.Pool)
	}
	adminLockouts.succeed(addr)
	return nil
}

func lockoutSeconds(until, now time.Time) int {
	return max(1, int(until.Sub(now).Round(time.Second)/time.Second))
}

func lockedOut(w http.ResponseWriter, until, now time.Time) error {
	secs := lockoutSeconds(until, now)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return apiError(http.StatusTooManyRequests,
		"too many wrong management secrets from this address: locked out until %s (%d seconds); even the right secret is refused until then",
		until.UTC().Format(time.RFC3339), secs)
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// remoteHost is the host part of the request's remote address, the unit of
// lock-outs.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// isBcrypt reports whether secret is a bcrypt hash.
func isBcrypt(secret string) bool {
	for _, p := range []string{"$2a$", "$2b$", "$2y$"} {
		if strings.HasPrefix(secret, p) {
			return true
		}
	}
	return false
}

// bcryptAccepted remembers, per bcrypt hash, the SHA-256 of the last
// secret it accepted, so a script calling the API repeatedly does not pay
// a full bcrypt comparison (about a second at caddy hash-password's cost)
// on every call.
var (
	bcryptAcceptedMu sync.Mutex
	bcryptAccepted   = map[string][sha256.Size]byte{}
)

// secretMatches compares presented with the configured secret: as a
// bcrypt hash when it is one, else in constant time.
func secretMatches(secret, presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	if !isBcrypt(secret) {
		want := sha256.Sum256([]byte(secret))
		return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	}
	bcryptAcceptedMu.Lock()
	known, ok := bcryptAccepted[secret]
	bcryptAcceptedMu.Unlock()
	if ok && subtle.ConstantTimeCompare(sum[:], known[:]) == 1 {
		return true
	}
	if bcrypt.CompareHashAndPassword([]byte(secret), []byte(presented)) != nil {
		return false
	}
	bcryptAcceptedMu.Lock()
	if len(bcryptAccepted) >= 64 {
		clear(bcryptAccepted)
	}
	bcryptAccepted[secret] = sum
	bcryptAcceptedMu.Unlock()
	return true
}

// lockouts counts wrong management secrets per remote address.
type lockouts struct {
	mu    sync.Mutex
	addrs map[string]*addrFailures
}

type addrFailures struct {
	count int       // wrong secrets since first
	first time.Time // first counted wrong secret
	until time.Time // locked out until
}

// lockoutSweepSize is the number of tracked addresses above which stale
// entries are dropped.
const lockoutSweepSize = 1024

var adminLockouts = &lockouts{addrs: make(map[string]*addrFailures)}

// lockedUntil reports whether addr is locked out at now, and until when.
func (l *lockouts) lockedUntil(addr string, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[addr]
	if f == nil || !f.until.After(now) {
		return time.Time{}, false
	}
	return f.until, true
}

// fail counts a wrong secret from addr. Failures older than the lock-out
// window are forgotten; the adminMaxFailures-th within the window locks the
// address out, which fail reports.
func (l *lockouts) fail(addr string, now time.Time) (until time.Time, locked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.addrs) >= lockoutSweepSize {
		for a, f := range l.addrs {
			if !f.until.After(now) && now.Sub(f.first) >= adminLockout {
				delete(l.addrs, a)
			}
		}
	}
	f := l.addrs[addr]
	if f == nil {
		f = &addrFailures{}
		l.addrs[addr] = f
	}
	if f.count == 0 || now.Sub(f.first) >= adminLockout {
		f.count, f.first = 0, now
	}
	f.count++
	if f.count >= adminMaxFailures {
		f.count = 0
		f.until = now.Add(adminLockout)
		return f.until, true
	}
	return time.Time{}, false
}

// succeed forgets the failures of addr.
func (l *lockouts) succeed(addr string) {
	l.mu.Lock()
	delete(l.addrs, addr)
	l.mu.Unlock()
}
