package session

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestCache(ttl time.Duration, maxEntries int) (*Cache, *fakeClock) {
	clk := newFakeClock()
	return NewCache(Options{TTL: ttl, MaxEntries: maxEntries, Now: clk.Now}), clk
}

func mustGet(t *testing.T, c *Cache, session, model, want string) {
	t.Helper()
	got, ok := c.Get(session, model)
	if want == "" {
		if ok {
			t.Fatalf("Get(%q, %q) = %q, want miss", session, model, got)
		}
		return
	}
	if !ok || got != want {
		t.Fatalf("Get(%q, %q) = %q, %v, want %q", session, model, got, ok, want)
	}
}

func TestCacheHitMiss(t *testing.T) {
	c, _ := newTestCache(time.Minute, 0)
	mustGet(t, c, "s1", "m", "")
	c.Bind("s1", "m", "a1")
	mustGet(t, c, "s1", "m", "a1")
	mustGet(t, c, "s1", "other", "")
	mustGet(t, c, "s2", "m", "")
	c.Bind("s1", "m", "a2") // overwrite
	mustGet(t, c, "s1", "m", "a2")
	// The separator keeps ("ab", "c") and ("a", "bc") apart.
	c.Bind("ab", "c", "x")
	mustGet(t, c, "a", "bc", "")
	if n := c.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
}

func TestCacheTTL(t *testing.T) {
	c, clk := newTestCache(10*time.Minute, 0)
	c.Bind("s", "m", "a")
	clk.Advance(9 * time.Minute)
	mustGet(t, c, "s", "m", "a") // refreshes
	clk.Advance(9 * time.Minute)
	if !c.Touch("s", "m", "a") { // refreshes
		t.Fatal("Touch failed on a live binding")
	}
	clk.Advance(9 * time.Minute)
	mustGet(t, c, "s", "m", "a")
	clk.Advance(10 * time.Minute)
	mustGet(t, c, "s", "m", "") // expired and removed
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after expired Get, want 0", n)
	}

	c.Bind("s", "m", "a")
	clk.Advance(10 * time.Minute)
	if c.Touch("s", "m", "a") {
		t.Fatal("Touch refreshed an expired binding")
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after expired Touch, want 0", n)
	}
}

func TestCacheSetTTL(t *testing.T) {
	c, clk := newTestCache(time.Hour, 0)
	c.Bind("s", "m", "a")
	clk.Advance(30 * time.Minute)
	c.SetTTL(20 * time.Minute) // applies to the existing binding
	mustGet(t, c, "s", "m", "")
	c.Bind("s", "m", "a")
	clk.Advance(19 * time.Minute)
	mustGet(t, c, "s", "m", "a")
	c.SetTTL(0) // back to the default
	clk.Advance(59 * time.Minute)
	mustGet(t, c, "s", "m", "a")
}

func TestCacheTouchUnbind(t *testing.T) {
	c, _ := newTestCache(time.Minute, 0)
	c.Bind("s", "m", "a")
	if c.Touch("s", "m", "b") {
		t.Fatal("Touch with another auth succeeded")
	}
	if c.Touch("x", "m", "a") {
		t.Fatal("Touch of an unbound session succeeded")
	}
	if c.Unbind("s", "m", "b") {
		t.Fatal("Unbind with another auth succeeded")
	}
	mustGet(t, c, "s", "m", "a")
	if !c.Unbind("s", "m", "a") {
		t.Fatal("Unbind failed")
	}
	mustGet(t, c, "s", "m", "")
	if c.Unbind("s", "m", "a") {
		t.Fatal("second Unbind succeeded")
	}
}

func TestCacheInvalidate(t *testing.T) {
	// Large enough to have many shards, so cross-shard paths are covered.
	c, _ := newTestCache(time.Minute, 1_000_000)
	if len(c.shards) != maxShards {
		t.Fatalf("%d shards, want %d", len(c.shards), maxShards)
	}
	for i := 0; i < 1000; i++ {
		s := fmt.Sprintf("s%d", i)
		auth := []string{"a", "b", "c"}[i%3]
		c.Bind(s, "m1", auth)
		c.Bind(s, "m2", auth)
	}
	if n := c.Len(); n != 2000 {
		t.Fatalf("Len = %d, want 2000", n)
	}
	if n := c.InvalidateSession("s7"); n != 2 {
		t.Fatalf("InvalidateSession = %d, want 2", n)
	}
	mustGet(t, c, "s7", "m1", "")
	mustGet(t, c, "s8", "m1", "c")
	if n := c.InvalidateSession("nope"); n != 0 {
		t.Fatalf("InvalidateSession(nope) = %d", n)
	}

	counts := c.CountByAuth()
	if counts["a"] != 668 || counts["b"] != 664 || counts["c"] != 666 {
		t.Fatalf("CountByAuth = %v", counts)
	}
	if n := c.InvalidateAuth("b"); n != 664 {
		t.Fatalf("InvalidateAuth = %d, want 664", n)
	}
	mustGet(t, c, "s1", "m1", "")
	mustGet(t, c, "s0", "m2", "a")

	if n := c.Retain(func(id string) bool { return id == "a" }); n != 666 {
		t.Fatalf("Retain = %d, want 666", n)
	}
	mustGet(t, c, "s2", "m1", "")
	if counts := c.CountByAuth(); len(counts) != 1 || counts["a"] != 668 {
		t.Fatalf("CountByAuth = %v", counts)
	}
	if n := c.Clear(); n != 668 {
		t.Fatalf("Clear = %d, want 668", n)
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after Clear", n)
	}
	c.Bind("s", "m", "a") // usable after Clear
	mustGet(t, c, "s", "m", "a")
}

func TestCacheEviction(t *testing.T) {
	c, clk := newTestCache(time.Hour, 3)
	c.Bind("s1", "m", "a")
	clk.Advance(time.Second)
	c.Bind("s2", "m", "a")
	clk.Advance(time.Second)
	c.Bind("s3", "m", "a")
	clk.Advance(time.Second)
	mustGet(t, c, "s1", "m", "a") // s1 recently used; s2 is now the oldest
	c.Bind("s4", "m", "a")
	mustGet(t, c, "s2", "m", "")
	c.Bind("s3", "m", "b") // overwrite refreshes s3; s1 is the oldest
	c.Bind("s5", "m", "a")
	mustGet(t, c, "s1", "m", "")
	for _, s := range []string{"s3", "s4", "s5"} {
		if _, ok := c.Get(s, "m"); !ok {
			t.Fatalf("%s evicted", s)
		}
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

func TestCacheBound(t *testing.T) {
	for _, max := range []int{1, 2047, 4096, 100_000} {
		c, _ := newTestCache(time.Hour, max)
		for i := 0; i < 2*max+100; i++ {
			c.Bind(fmt.Sprintf("s%d", i), "m", "a")
		}
		if n := c.Len(); n != max {
			t.Fatalf("MaxEntries %d: Len = %d", max, n)
		}
		// The newest bindings survive.
		mustGet(t, c, fmt.Sprintf("s%d", 2*max+99), "m", "a")
	}
}

func TestCacheSweep(t *testing.T) {
	c, clk := newTestCache(10*time.Minute, 100_000)
	for i := 0; i < 100; i++ {
		c.Bind(fmt.Sprintf("old%d", i), "m", "a")
	}
	clk.Advance(6 * time.Minute)
	for i := 0; i < 50; i++ {
		c.Bind(fmt.Sprintf("new%d", i), "m", "a")
	}
	mustGet(t, c, "old0", "m", "a") // refreshed, survives
	clk.Advance(5 * time.Minute)
	if counts := c.CountByAuth(); counts["a"] != 51 {
		t.Fatalf("CountByAuth = %v, want 51 live", counts)
	}
	if n := c.Sweep(); n != 99 {
		t.Fatalf("Sweep = %d, want 99", n)
	}
	if n := c.Len(); n != 51 {
		t.Fatalf("Len = %d, want 51", n)
	}
	mustGet(t, c, "old0", "m", "a")
	mustGet(t, c, "old1", "m", "")
	if n := c.Sweep(); n != 0 {
		t.Fatalf("second Sweep = %d", n)
	}
}

// sweepers counts the goroutines running a Cache's sweep loop, waiting
// (yielding, not sleeping) for exiting ones to finish. Counting by stack
// keeps unrelated runtime or test goroutines out of the check.
func sweepers() int {
	buf := make([]byte, 1<<20)
	n := 0
	for i := 0; i < 1000; i++ {
		stacks := string(buf[:runtime.Stack(buf, true)])
		n = strings.Count(stacks, "session.(*Cache).Start.func")
		if n == 0 {
			return 0
		}
		runtime.Gosched()
	}
	return n
}

func TestCacheStartStop(t *testing.T) {
	c, clk := newTestCache(time.Minute, 0)
	ticks := make(chan time.Time)
	stopped := 0
	c.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		if d != DefaultSweepInterval {
			t.Errorf("interval %v, want default", d)
		}
		return ticks, func() { stopped++ }
	}
	c.Stop() // never started: no-op

	c.Bind("s", "m", "a")
	c.Start(0)
	c.Start(0) // idempotent
	if n := sweepers(); n != 1 {
		t.Fatalf("%d sweep goroutines running, want 1", n)
	}
	clk.Advance(2 * time.Minute)
	ticks <- time.Time{} // received by the loop, which then sweeps
	c.Stop()             // waits for the loop, so the sweep is done
	c.Stop()
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after a sweep tick, want 0", n)
	}
	if stopped != 1 {
		t.Fatalf("ticker stopped %d times, want 1", stopped)
	}
	if n := sweepers(); n != 0 {
		t.Fatalf("%d sweep goroutines left after Stop", n)
	}
}

func TestCacheStartStopNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		c := NewCache(Options{})
		c.Start(time.Hour)
		c.Stop()
		c.Start(time.Hour) // restartable
		c.Stop()
	}
	if n := sweepers(); n != 0 {
		t.Fatalf("%d sweep goroutines left after Stop", n)
	}
	// Nothing else of ours lingers either (slack for runtime helpers).
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Fatalf("goroutines: %d before, %d after", before, after)
	}
}

func TestCacheConcurrent(t *testing.T) {
	c, clk := newTestCache(time.Minute, 5000)
	c.Start(time.Millisecond) // real sweeper running alongside
	defer c.Stop()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			auth := fmt.Sprintf("a%d", g%4)
			for i := 0; i < 2000; i++ {
				s := fmt.Sprintf("s%d", (g*7919+i)%3000)
				switch i % 10 {
				case 0:
					c.Unbind(s, "m", auth)
				case 1:
					c.Touch(s, "m", auth)
				case 2:
					clk.Advance(time.Millisecond)
				case 3:
					if g == 0 && i%500 == 3 {
						c.InvalidateAuth("a1")
						c.CountByAuth()
						c.Sweep()
						c.Len()
					}
				}
				if _, ok := c.Get(s, "m"); !ok {
					c.Bind(s, "m", auth)
				}
			}
		}(g)
	}
	wg.Wait()
	if n := c.Len(); n > 5000 {
		t.Fatalf("Len = %d over the bound", n)
	}
}
