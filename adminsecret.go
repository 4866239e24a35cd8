package llmproxy

// The management secret of the admin API and the lock-out after repeated
// wrong secrets.

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
)

// Limits of the management-secret check, beyond adminMaxFailures and
// adminLockout.
const (
	// bcryptPerAddr bounds the bcrypt comparisons running at once for one
	// address; more are refused with 429 at once.
	bcryptPerAddr = 2
	// bcryptGlobal bounds the bcrypt comparisons running at once for all
	// addresses, so a flood cannot take every CPU.
	bcryptGlobal = 4
	// lockoutMaxAddrs bounds the addresses the lock-out table tracks.
	lockoutMaxAddrs = 4096
)

// bcryptCompare is bcrypt.CompareHashAndPassword; tests replace it to hold
// comparisons in flight.
var bcryptCompare = bcrypt.CompareHashAndPassword

// checkManagementSecret admits a request to the routes of pool poolName,
// whose management secret is configured (placeholders not yet expanded):
// always when it is "", else only with the right secret and from an
// address that is not locked out.
//
// Every wrong secret counts against the client's address (see
// lockoutKey), whichever pool it was for, and a right one does not clear
// the count: adminMaxFailures wrong secrets within adminLockout lock the
// address out of every protected pool for adminLockout. The lock-out is
// checked before any comparison, and a guess is admitted only while the
// address has guesses left that are not already being compared, so
// concurrent requests cannot slip extra guesses in.
func checkManagementSecret(w http.ResponseWriter, r *http.Request, poolName, configured string) error {
	if configured == "" {
		return nil
	}
	secret := caddy.NewReplacer().ReplaceKnown(configured, "")
	if secret == "" {
		// Fail closed: an unset {env.*} must not open the pool.
		return apiError(http.StatusForbidden, "the management_secret of pool %q is empty after placeholder expansion; every request is refused until it is set", poolName)
	}
	addr := lockoutKey(r)
	now := clock.Now()
	if until, locked := adminLockouts.lockedUntil(addr, now); locked {
		return lockedOut(w, until, now)
	}
	presented, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="llm_proxy"`)
		return apiError(http.StatusUnauthorized, "pool %q needs its management secret: send \"Authorization: Bearer <secret>\"", poolName)
	}

	var res outcome
	switch {
	case !isBcrypt(secret):
		res = adminLockouts.attempt(addr, now, func() bool { return plainMatches(secret, presented) })
	case bcryptKnown(secret, presented):
		// The secret the hash last accepted: no bcrypt needed.
		res = adminLockouts.attempt(addr, now, func() bool { return true })
	default:
		var refused error
		if res, refused = compareBcrypt(w, addr, now, secret, presented); refused != nil {
			return refused
		}
	}

	switch {
	case res.lockedBefore:
		return lockedOut(w, res.until, now)
	case res.ok:
		return nil
	case res.lockedNow:
		// This try is still answered as a wrong secret (401); from now on
		// the address gets 429 until the lock-out ends.
		adminLogger().Warn("too many wrong management secrets; address locked out",
			zap.String("remote_ip", addr), zap.Time("until", res.until))
		w.Header().Set("Retry-After", strconv.Itoa(lockoutSeconds(res.until, now)))
		w.Header().Set("WWW-Authenticate", `Bearer realm="llm_proxy", error="invalid_token"`)
		return apiError(http.StatusUnauthorized,
			"wrong management secret for pool %q; too many wrong secrets from this address: locked out until %s, even with the right secret",
			poolName, res.until.UTC().Format(time.RFC3339))
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="llm_proxy", error="invalid_token"`)
	return apiError(http.StatusUnauthorized, "wrong management secret for pool %q", poolName)
}

// compareBcrypt runs one bcrypt comparison in a reserved slot. refused is
// the answer when no slot is free (429 at once, not counted as a guess).
func compareBcrypt(w http.ResponseWriter, addr string, now time.Time, secret, presented string) (res outcome, refused error) {
	res, busy := adminLockouts.reserve(addr, now)
	if res.lockedBefore {
		return res, nil
	}
	if busy != "" {
		w.Header().Set("Retry-After", "1")
		return res, apiError(http.StatusTooManyRequests,
			"too many management secret checks in progress %s; try again in a moment", busy)
	}
	ok := bcryptCompare([]byte(secret), []byte(presented)) == nil
	if ok {
		rememberBcrypt(secret, presented)
	}
	return adminLockouts.settle(addr, ok, clock.Now()), nil
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

// lockoutKey is the unit of lock-outs: the IPv4 address of the request's
// remote address, or its IPv6 /64 (one host usually holds a whole /64, so
// counting single IPv6 addresses would give it endless guesses).
func lockoutKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip.String()
	}
	return p.String()
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

// bcryptKnown reports whether presented is the secret the bcrypt hash
// last accepted.
func bcryptKnown(hash, presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	bcryptAcceptedMu.Lock()
	known, ok := bcryptAccepted[hash]
	bcryptAcceptedMu.Unlock()
	return ok && subtle.ConstantTimeCompare(sum[:], known[:]) == 1
}

func rememberBcrypt(hash, presented string) {
	sum := sha256.Sum256([]byte(presented))
	bcryptAcceptedMu.Lock()
	if len(bcryptAccepted) >= 64 {
		clear(bcryptAccepted)
	}
	bcryptAccepted[hash] = sum
	bcryptAcceptedMu.Unlock()
}

// plainMatches compares presented with a plain-text secret in constant
// time.
func plainMatches(secret, presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	want := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// secretMatches compares presented with the configured secret: as a
// bcrypt hash when it is one, else in constant time. It applies no
// lock-out; checkManagementSecret does.
func secretMatches(secret, presented string) bool {
	switch {
	case !isBcrypt(secret):
		return plainMatches(secret, presented)
	case bcryptKnown(secret, presented):
		return true
	case bcryptCompare([]byte(secret), []byte(presented)) != nil:
		return false
	}
	rememberBcrypt(secret, presented)
	return true
}

// lockouts counts wrong management secrets per address (see lockoutKey)
// and the bcrypt comparisons in flight.
type lockouts struct {
	mu       sync.Mutex
	addrs    map[string]*addrState
	inflight int // bcrypt comparisons running, all addresses
}

type addrState struct {
	failures int       // wrong secrets in the window starting at first
	first    time.Time // first wrong secret of the window
	until    time.Time // locked out until
	inflight int       // bcrypt comparisons running for the address
}

// outcome is the result of one guess.
type outcome struct {
	ok           bool      // the secret was right
	lockedBefore bool      // refused: the address was already locked out
	lockedNow    bool      // this wrong secret locked the address out
	until        time.Time // end of the lock-out
}

var adminLockouts = newLockouts()

func newLockouts() *lockouts { return &lockouts{addrs: make(map[string]*addrState)} }

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

// attempt checks the lock-out, runs a cheap comparison (a plain secret)
// and counts its result, all at once so that concurrent guesses are counted exactly.
func (l *lockouts) attempt(addr string, now time.Time, match func() bool) outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.addrs[addr]; f != nil && f.until.After(now) {
		return outcome{lockedBefore: true, until: f.until}
	}
	return l.record(addr, match(), now)
}

// reserve admits one bcrypt comparison for addr. It refuses when addr is
// locked out (res.lockedBefore) or when busy says why no slot is free:
// addr already has bcryptPerAddr comparisons running, or as many as it
// has guesses left before a lock-out, or all addresses have bcryptGlobal
// running. A reservation must be settled.
func (l *lockouts) reserve(addr string, now time.Time) (res outcome, busy string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[addr]
	if f != nil && f.until.After(now) {
		return outcome{lockedBefore: true, until: f.until}, ""
	}
	if f != nil && f.inflight >= min(bcryptPerAddr, f.guessesLeft(now)) {
		return outcome{}, "from this address"
	}
	if l.inflight >= bcryptGlobal {
		return outcome{}, "in all"
	}
	if f == nil {
		f = l.add(addr, now)
	}
	f.inflight++
	l.inflight++
	return outcome{}, ""
}

// settle ends a reservation and counts its result.
func (l *lockouts) settle(addr string, ok bool, now time.Time) outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if f := l.addrs[addr]; f != nil {
		f.inflight--
	}
	return l.record(addr, ok, now)
}

// guessesLeft is how many wrong secrets addr may still send before it is
// locked out.
func (f *addrState) guessesLeft(now time.Time) int {
	if f.failures == 0 || now.Sub(f.first) >= adminLockout {
		return adminMaxFailures
	}
	return adminMaxFailures - f.failures
}

// stale reports whether f no longer matters at now: not locked out, its
// failures out of the window and no comparison running.
func (f *addrState) stale(now time.Time) bool {
	return !f.until.After(now) && f.guessesLeft(now) == adminMaxFailures && f.inflight == 0
}

// record counts the result of one guess. A right secret changes nothing
// (the count stands until its window ends) except that a stale entry is
// dropped; the adminMaxFailures-th wrong one within the window locks addr
// out. Must hold l.mu.
func (l *lockouts) record(addr string, ok bool, now time.Time) outcome {
	f := l.addrs[addr]
	if ok {
		if f != nil && f.stale(now) {
			delete(l.addrs, addr)
		}
		return outcome{ok: true}
	}
	if f == nil {
		f = l.add(addr, now)
	}
	if f.guessesLeft(now) == adminMaxFailures {
		f.failures, f.first = 0, now
	}
	f.failures++
	if f.failures >= adminMaxFailures {
		f.failures = 0
		f.until = now.Add(adminLockout)
		return outcome{lockedNow: true, until: f.until}
	}
	return outcome{}
}

// add starts tracking addr, making room first when lockoutMaxAddrs are
// tracked: stale entries go, and when there are none, the entry that
// matters least (not locked out with the oldest window, else the lock-out
// ending soonest). Must hold l.mu.
func (l *lockouts) add(addr string, now time.Time) *addrState {
	if len(l.addrs) >= lockoutMaxAddrs {
		victim, vf := "", (*addrState)(nil)
		for a, f := range l.addrs {
			if f.stale(now) {
				delete(l.addrs, a)
				continue
			}
			if f.inflight == 0 && (vf == nil || mattersLess(f, vf, now)) {
				victim, vf = a, f
			}
		}
		if len(l.addrs) >= lockoutMaxAddrs && vf != nil {
			delete(l.addrs, victim)
		}
	}
	f := &addrState{}
	l.addrs[addr] = f
	return f
}

// mattersLess reports whether dropping a loses less than dropping b.
func mattersLess(a, b *addrState, now time.Time) bool {
	aLocked, bLocked := a.until.After(now), b.until.After(now)
	switch {
	case aLocked != bLocked:
		return !aLocked
	case aLocked:
		return a.until.Before(b.until)
	}
	return a.first.Before(b.first)
}
