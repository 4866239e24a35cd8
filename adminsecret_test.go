package llmproxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// freshLockouts gives the test its own lock-out table and a fake clock.
func freshLockouts(t *testing.T) *clock.Fake {
	t.Helper()
	prev := adminLockouts
	adminLockouts = newLockouts()
	fake := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	restore := clock.Install(fake.Now)
	t.Cleanup(func() {
		restore()
		adminLockouts = prev
	})
	return fake
}

// A right secret for one pool does not reset the count of wrong secrets
// for another: alternating them locks the address out after 5 wrong ones,
// out of both pools.
func TestLockoutAlternatingPools(t *testing.T) {
	freshLockouts(t)
	newAdminFixture(t, "unit-alt-a", "secret-of-a")
	newAdminFixture(t, "unit-alt-b", "secret-of-b")
	const attacker = "203.0.113.9:1234"
	a, b := "/llm_proxy/pools/unit-alt-a/auths", "/llm_proxy/pools/unit-alt-b/auths"

	for i := 1; i <= adminMaxFailures; i++ {
		wantStatus(t, adminCall(t, attacker, http.MethodGet, a, "", bearer("secret-of-a")), http.StatusOK)
		w := adminCall(t, attacker, http.MethodGet, b, "", bearer(fmt.Sprintf("guess-%d", i)))
		wantStatus(t, w, http.StatusUnauthorized)
		if locked := strings.Contains(w.Body.String(), "locked out"); locked != (i == adminMaxFailures) {
			t.Fatalf("wrong secret %d: locked-out message %v: %s", i, locked, w.Body)
		}
	}
	wantStatus(t, adminCall(t, attacker, http.MethodGet, a, "", bearer("secret-of-a")), http.StatusTooManyRequests)
	wantStatus(t, adminCall(t, attacker, http.MethodGet, b, "", bearer("secret-of-b")), http.StatusTooManyRequests)
}

// Wrong secrets sent all at once are counted exactly: 5 are compared, the
// rest are refused as locked out.
func TestLockoutConcurrentPlainGuesses(t *testing.T) {
	freshLockouts(t)
	newAdminFixture(t, "unit-burst", "plain-secret")
	const n = 50
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, "/llm_proxy/pools/unit-burst/auths", nil)
			req.RemoteAddr = "203.0.113.10:999"
			req.Header.Set("Authorization", fmt.Sprintf("Bearer guess-%d", i))
			err := checkManagementSecret(httptest.NewRecorder(), req, "unit-burst", mustSecret(t, "unit-burst"))
			codes <- statusOf(err)
		}()
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[http.StatusUnauthorized] != adminMaxFailures || got[http.StatusTooManyRequests] != n-adminMaxFailures {
		t.Fatalf("answers %v, want %d compared (401) and the rest locked out (429)", got, adminMaxFailures)
	}
}

// mustSecret returns the configured management secret of pool name.
func mustSecret(t *testing.T, name string) string {
	p, ok := pool.Lookup(name)
	if !ok {
		t.Fatalf("no pool %s", name)
	}
	secret, ok := p.ManagementSecret()
	if !ok {
		t.Fatalf("pool %s has no config", name)
	}
	return secret
}

func statusOf(err error) int {
	var apiErr caddy.APIError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &apiErr):
		return apiErr.HTTPStatus
	}
	return 0
}

// heldBcrypt replaces the bcrypt comparison with one that reports when it
// starts and waits until released, so a test can hold comparisons in
// flight without timing.
type heldBcrypt struct {
	started chan string
	release chan struct{}
}

func holdBcrypt(t *testing.T) *heldBcrypt {
	t.Helper()
	h := &heldBcrypt{started: make(chan string, 16), release: make(chan struct{})}
	prev := bcryptCompare
	bcryptCompare = func(hash, password []byte) error {
		h.started <- string(password)
		<-h.release
		return bcrypt.ErrMismatchedHashAndPassword
	}
	t.Cleanup(func() { bcryptCompare = prev })
	return h
}

// Bcrypt comparisons are bounded per address and in all; requests past the
// bound get 429 at once, without a comparison and without counting as a
// guess.
func TestBcryptComparisonsBounded(t *testing.T) {
	freshLockouts(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	newAdminFixture(t, "unit-bcrypt-bound", string(hash))
	held := holdBcrypt(t)
	path := "/llm_proxy/pools/unit-bcrypt-bound/auths"

	type answer struct {
		code int
		body string
	}
	var wg sync.WaitGroup
	answers := make(chan answer, 16)
	start := func(remote, guess string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := adminCall(t, remote, http.MethodGet, path, "", bearer(guess))
			answers <- answer{w.Code, w.Body.String()}
		}()
		if got := <-held.started; got != guess {
			t.Errorf("comparison of %q started, want %q", got, guess)
		}
	}

	// Two comparisons from one address are in flight; a third is refused.
	start("198.51.100.1:1", "x1")
	start("198.51.100.1:2", "x2")
	w := adminCall(t, "198.51.100.1:3", http.MethodGet, path, "", bearer("x3"))
	wantStatus(t, w, http.StatusTooManyRequests)
	if !strings.Contains(w.Body.String(), "from this address") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("per-address refusal: %v %s", w.Header(), w.Body)
	}
	// Two more addresses fill the global bound; a fourth is refused.
	start("198.51.100.2:1", "y1")
	start("198.51.100.3:1", "z1")
	w = adminCall(t, "198.51.100.4:1", http.MethodGet, path, "", bearer("w1"))
	wantStatus(t, w, http.StatusTooManyRequests)
	if !strings.Contains(w.Body.String(), "in all") {
		t.Fatalf("global refusal: %s", w.Body)
	}
	select {
	case p := <-held.started:
		t.Fatalf("comparison of %q started past the bound", p)
	default:
	}

	close(held.release)
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.code != http.StatusUnauthorized {
			t.Fatalf("held comparison answered %d: %s", a.code, a.body)
		}
	}
	adminLockouts.mu.Lock()
	x := *adminLockouts.addrs["198.51.100.1"]
	inflight := adminLockouts.inflight
	adminLockouts.mu.Unlock()
	if x.failures != 2 || x.inflight != 0 || inflight != 0 {
		t.Fatalf("after release: %d failures (want 2: the refused try is no guess), %d/%d in flight", x.failures, x.inflight, inflight)
	}
}

// An address with one guess left gets only one comparison in flight, so
// concurrent bcrypt guesses cannot exceed the limit either.
func TestBcryptInFlightWithinGuessesLeft(t *testing.T) {
	freshLockouts(t)
	l := adminLockouts
	now := clock.Now()
	const addr = "198.51.100.20"
	for i := 1; i < adminMaxFailures; i++ {
		l.record(addr, false, now)
	}
	if res, busy := l.reserve(addr, now); busy != "" || res.lockedBefore {
		t.Fatalf("first reservation refused: %q %+v", busy, res)
	}
	if _, busy := l.reserve(addr, now); busy != "from this address" {
		t.Fatalf("second reservation with one guess left: busy %q", busy)
	}
	if res := l.settle(addr, false, now); !res.lockedNow {
		t.Fatalf("the 5th wrong secret did not lock out: %+v", res)
	}
	if res, _ := l.reserve(addr, now); !res.lockedBefore {
		t.Fatalf("reservation while locked out: %+v", res)
	}
}

// A flood of addresses cannot grow the table past its bound, nor push out
// an address that is locked out while others are not.
func TestLockoutTableBounded(t *testing.T) {
	fake := freshLockouts(t)
	l := adminLockouts
	now := clock.Now()
	const victim = "192.0.2.200"
	var locked bool
	for i := 0; i < adminMaxFailures; i++ {
		locked = l.record(victim, false, now).lockedNow
	}
	if !locked {
		t.Fatal("not locked out")
	}
	for i := 0; i < 3*lockoutMaxAddrs; i++ {
		fake.Advance(time.Millisecond)
		l.record(fmt.Sprintf("flood-%d", i), false, clock.Now())
		if len(l.addrs) > lockoutMaxAddrs {
			t.Fatalf("%d addresses tracked, bound %d", len(l.addrs), lockoutMaxAddrs)
		}
	}
	if _, ok := l.lockedUntil(victim, clock.Now()); !ok {
		t.Fatal("the flood unlocked a locked-out address")
	}
}

func TestLockoutKey(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.1:1234":                    "192.0.2.1",
		"[::ffff:192.0.2.1]:1234":           "192.0.2.1",
		"[2001:db8:1:2:aaaa::1]:443":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:1]:1": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:1":               "2001:db8:1:3::/64",
		"[fe80::1%eth0]:1":                  "fe80::/64",
		"192.0.2.1":                         "192.0.2.1",
		"@":                                 "@",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if got := lockoutKey(r); got != want {
			t.Errorf("lockoutKey(%q) = %q, want %q", remote, got, want)
		}
	}
}
