package session

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// checkInvariants verifies every shard: its LRU list links, index and
// count agree; the list and each client list run from the most to the
// least recently used; no client holds more than its share of a shard;
// and the cache holds at most MaxEntries bindings.
func checkInvariants(t *testing.T, c *Cache) {
	t.Helper()
	checkLinks(t, c, true)
}

// checkLinks is checkInvariants, with the order of last use checked only
// when sorted is set: a clock stepped back leaves it unsorted, and
// nothing else may break.
func checkLinks(t *testing.T, c *Cache, sorted bool) {
	t.Helper()
	checkClientLists(t, c)
	total := 0
	for si := range c.shards {
		s := &c.shards[si]
		s.mu.Lock()
		n, prev := 0, int32(-1)
		for i := s.head; i >= 0; i = s.slab[i].next {
			e := &s.slab[i]
			if e.prev != prev {
				s.mu.Unlock()
				t.Fatalf("shard %d: list broken at slot %d", si, i)
			}
			if sorted && prev >= 0 && s.slab[prev].lastUsed < e.lastUsed {
				s.mu.Unlock()
				t.Fatalf("shard %d: slot %d used after its predecessor", si, i)
			}
			if j, ok := s.index[e.key]; !ok || j != i {
				s.mu.Unlock()
				t.Fatalf("shard %d: slot %d not indexed", si, i)
			}
			if e.auth == "" {
				s.mu.Unlock()
				t.Fatalf("shard %d: slot %d has no credential", si, i)
			}
			if int(e.sessionHash>>c.shift) != si {
				s.mu.Unlock()
				t.Fatalf("shard %d: slot %d belongs to shard %d", si, i, e.sessionHash>>c.shift)
			}
			prev = i
			n++
		}
		if s.tail != prev || n != len(s.index) {
			s.mu.Unlock()
			t.Fatalf("shard %d: list holds %d, index %d", si, n, len(s.index))
		}
		for ch, cl := range s.clients {
			if cl.n > c.clientMax {
				s.mu.Unlock()
				t.Fatalf("shard %d: client %x holds %d, share %d", si, ch, cl.n, c.clientMax)
			}
			for i := cl.head; sorted && i >= 0 && s.slab[i].cnext >= 0; i = s.slab[i].cnext {
				if s.slab[i].lastUsed < s.slab[s.slab[i].cnext].lastUsed {
					s.mu.Unlock()
					t.Fatalf("shard %d: client list out of order at slot %d", si, i)
				}
			}
		}
		total += n
		s.mu.Unlock()
	}
	if total != c.Len() {
		t.Fatalf("lists hold %d bindings, Len %d", total, c.Len())
	}
	if int64(total) > c.max {
		t.Fatalf("%d bindings, MaxEntries %d", total, c.max)
	}
}

// Two caches, as in two processes, share nothing but what Snapshot
// returns and Restore takes: the second serves the first's sessions from
// the same credentials, with the same last uses.
func TestRestoreCarriesBindingsAcrossCaches(t *testing.T) {
	a, clk := newTestCache(time.Hour, 0)
	for i := range 100 {
		a.BindFor(fmt.Sprint("user:", i%3), fmt.Sprint("s", i), "m", fmt.Sprint("k", i%4))
		clk.Advance(time.Second)
	}
	a.Bind("s-none", "m2", "k9")
	saved := a.Snapshot(0)
	if len(saved) != 101 {
		t.Fatalf("Snapshot saved %d bindings, want 101", len(saved))
	}
	for i := 1; i < len(saved); i++ {
		if saved[i].LastUsed.After(saved[i-1].LastUsed) {
			t.Fatalf("Snapshot not most recently used first at %d", i)
		}
	}
	clk.Advance(time.Minute)
	b := NewCache(Options{TTL: time.Hour, Now: clk.Now}) // another process, started later
	if n := b.Restore(saved); n != 101 {
		t.Fatalf("Restore took %d, want 101", n)
	}
	checkInvariants(t, b)
	again := b.Snapshot(0)
	for i := range saved {
		if saved[i] != again[i] {
			t.Fatalf("binding %d: saved %+v, restored and saved again %+v", i, saved[i], again[i])
		}
	}
	for i := range 100 {
		mustGet(t, b, fmt.Sprint("s", i), "m", fmt.Sprint("k", i%4))
	}
	mustGet(t, b, "s-none", "m2", "k9")
	mustGet(t, b, "s-none", "m", "")
	// The session hashes came along: a session is invalidated by name.
	if n := b.InvalidateSession("s7"); n != 1 {
		t.Fatalf("InvalidateSession removed %d restored bindings, want 1", n)
	}
	mustGet(t, b, "s7", "m", "")
	// And the client hashes: a restored client keeps its share.
	if got := checkClientLists(t, b)[hashClient("user:1")]; got != 32 { // 33, less s7
		t.Fatalf("user:1 holds %d restored bindings, want 32", got)
	}
}

// The hashes are part of the saved state: instances running different
// builds must agree on them, so they are pinned here.
func TestStateHashesArePinned(t *testing.T) {
	c := NewCache(Options{})
	if sh, _ := c.hashes("", ""); sh != 0xef46db3751d8e999 { // xxHash64 of no input
		t.Errorf("hash of \"\" = %#x", sh)
	}
	sh, key := c.hashes("cc:0b7e2a6c-2f6d-4c1e-9a3b-5d8f1e2c4a6b", "claude-sonnet-4-5")
	if sh != 0xacece770759b681f || key != 0xb9ae1cfd75ad00de {
		t.Errorf("hashes = %#x, %#x", sh, key)
	}
	if _, key := c.hashes("cc:0b7e2a6c-2f6d-4c1e-9a3b-5d8f1e2c4a6b", ""); key != 0xc4515724c7ea02fa { // pins have no model
		t.Errorf("key without a model = %#x", key)
	}
	if ch := hashClient("user:alice"); ch != 0x84918a738eb5ffd7 {
		t.Errorf("hashClient = %#x", ch)
	}
}

// find returns the saved binding of (session, model), if any.
func find(c *Cache, bs []Binding, session, model string) (Binding, bool) {
	_, key := c.hashes(session, model)
	for _, b := range bs {
		if b.Key == key {
			return b, true
		}
	}
	return Binding{}, false
}

// The most recent binding wins, whichever instance holds it: a
// conversation failover moved to another credential stays moved, and an
// older binding from elsewhere never undoes it.
func TestRestoreNewestWins(t *testing.T) {
	clk := newFakeClock()
	a := NewCache(Options{TTL: time.Hour, Now: clk.Now})
	b := NewCache(Options{TTL: time.Hour, Now: clk.Now})
	a.Bind("s", "m", "k1")
	b.Bind("s", "m", "k1")
	clk.Advance(time.Minute)
	b.BindFor("user:bob", "s", "m", "k2") // failover on b
	clk.Advance(time.Minute)

	if n := b.Restore(a.Snapshot(0)); n != 0 {
		t.Fatalf("b took %d older bindings", n)
	}
	mustGet(t, b, "s", "m", "k2")
	if n := a.Restore(b.Snapshot(0)); n != 1 {
		t.Fatalf("a took %d newer bindings, want 1", n)
	}
	checkInvariants(t, a)
	// a keeps b's last use, not the time of the Restore, and b's client.
	got, ok := find(a, a.Snapshot(0), "s", "m")
	want, _ := find(b, b.Snapshot(0), "s", "m")
	if !ok || got != want {
		t.Fatalf("a holds %+v, b saved %+v", got, want)
	}
	if want.Client != hashClient("user:bob") {
		t.Fatalf("saved client %#x", want.Client)
	}
	mustGet(t, a, "s", "m", "k2")

	// Both now agree; merging again takes nothing either way.
	if n := a.Restore(b.Snapshot(0)); n != 0 {
		t.Fatalf("a took %d bindings again", n)
	}
	if n := b.Restore(a.Snapshot(0)); n != 0 {
		t.Fatalf("b took %d equal bindings", n)
	}

	// Used more recently elsewhere on the same credential: the last use
	// moves forward, so the binding lives as long as on the other instance.
	clk.Advance(time.Minute)
	mustGet(t, b, "s", "m", "k2")
	if n := a.Restore(b.Snapshot(0)); n != 1 {
		t.Fatalf("a took %d refreshed bindings, want 1", n)
	}
	clk.Advance(time.Hour - time.Second)
	mustGet(t, a, "s", "m", "k2")
}

// Bindings past their TTL are never restored, and a restored binding
// expires at its saved last use plus the TTL, never later.
func TestRestoreKeepsExpiry(t *testing.T) {
	a, clk := newTestCache(10*time.Minute, 0)
	a.Bind("old", "m", "k1")
	clk.Advance(5 * time.Minute)
	a.Bind("new", "m", "k2")
	saved := a.Snapshot(0)
	clk.Advance(5 * time.Minute) // "old" is now expired, "new" has 5 min left

	b := NewCache(Options{TTL: 10 * time.Minute, Now: clk.Now})
	if n := b.Restore(saved); n != 1 {
		t.Fatalf("Restore took %d, want 1", n)
	}
	mustGet(t, b, "old", "m", "")
	if got := b.Snapshot(0); len(got) != 1 || got[0] != saved[0] {
		t.Fatalf("restored %+v, want %+v", got, saved[:1])
	}
	clk.Advance(5*time.Minute - time.Nanosecond)
	if got := b.Snapshot(0); len(got) != 1 {
		t.Fatalf("binding expired early: %+v", got)
	}
	clk.Advance(time.Nanosecond)
	if got := b.Snapshot(0); len(got) != 0 {
		t.Fatalf("binding outlived its TTL: %+v", got)
	}
	mustGet(t, b, "new", "m", "")
	// Saved ones seen expired by the restoring cache's TTL are skipped too.
	c := NewCache(Options{TTL: time.Minute, Now: clk.Now})
	clk.Advance(-2 * time.Minute)
	if n := c.Restore(saved); n != 0 {
		t.Fatalf("Restore under a shorter TTL took %d", n)
	}
}

// A binding last used in the future (a clock ahead of ours, or a forged
// document) counts as used now: it cannot live longer than a fresh one.
func TestRestoreClampsFutureLastUse(t *testing.T) {
	c, clk := newTestCache(time.Hour, 0)
	_, key := c.hashes("s", "m")
	sh, _ := c.hashes("s", "")
	future := clk.Now().Add(100 * 365 * 24 * time.Hour)
	if n := c.Restore([]Binding{{Key: key, Session: sh, Auth: "k1", LastUsed: future}}); n != 1 {
		t.Fatalf("Restore took %d, want 1", n)
	}
	got := c.Snapshot(0)
	if len(got) != 1 || !got[0].LastUsed.Equal(clk.Now()) {
		t.Fatalf("restored %+v, want last use %v", got, clk.Now())
	}
	mustGet(t, c, "s", "m", "k1")
	clk.Advance(time.Hour)
	mustGet(t, c, "s", "m", "")
	// A binding made here later is not overridden by the forged one.
	c.Bind("s", "m", "k2")
	if n := c.Restore([]Binding{{Key: key, Session: sh, Auth: "k1", LastUsed: future}}); n != 0 {
		t.Fatalf("a future last use beat a binding used now")
	}
	mustGet(t, c, "s", "m", "k2")
}

// syntheticBindings returns n distinct bindings for clients, last used at
// now minus a random age under ttl.
func syntheticBindings(c *Cache, rng *rand.Rand, n int, clients []string, now time.Time, ttl time.Duration) []Binding {
	bs := make([]Binding, n)
	for i := range bs {
		session := fmt.Sprint("hostile-", i)
		sh, key := c.hashes(session, "m")
		var ch uint64
		if cl := clients[rng.IntN(len(clients))]; cl != "" {
			ch = hashClient(cl)
		}
		bs[i] = Binding{Key: key, Session: sh, Client: ch, Auth: fmt.Sprint("k", rng.IntN(4)),
			LastUsed: now.Add(-time.Duration(rng.Int64N(int64(ttl))))}
	}
	return bs
}

// A document of ten times MaxEntries bindings, mostly of one client, fills
// the cache no further than its bound and the client no further than its
// share; what it keeps is the most recent, and it never displaces
// bindings used more recently here.
func TestRestoreHoldsBounds(t *testing.T) {
	for _, max := range []int{100, 8192} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			clk := newFakeClock()
			c := NewCache(Options{TTL: time.Hour, MaxEntries: max, Now: clk.Now})
			rng := rand.New(rand.NewPCG(3, uint64(max)))
			clk.Advance(time.Hour)
			for i := range max / 2 {
				c.Bind(fmt.Sprint("v", i), "m", "k1")
			}
			clients := []string{"user:mallory", "user:mallory", "user:mallory", "", "ip:192.0.2.1"}
			bs := syntheticBindings(c, rng, 10*max, clients, clk.Now().Add(-time.Second), time.Hour)
			n := c.Restore(bs)
			checkInvariants(t, c)
			if n == 0 || c.Len() > max {
				t.Fatalf("took %d, holds %d, MaxEntries %d", n, c.Len(), max)
			}
			for i := range max / 2 {
				mustGet(t, c, fmt.Sprint("v", i), "m", "k1")
			}
			perClient := checkClientLists(t, c)
			if got, share := perClient[hashClient("user:mallory")], c.clientMax*len(c.shards); got > share {
				t.Fatalf("mallory holds %d, share %d", got, share)
			}
			// Per shard, no restored binding left out is newer than
			// the oldest one taken.
			snap := c.Snapshot(0)
			oldestTaken := make([]time.Time, len(c.shards))
			kept := map[uint64]bool{}
			for _, b := range snap {
				kept[b.Key] = true
				oldestTaken[b.Session>>c.shift] = b.LastUsed
			}
			for _, b := range bs {
				if !kept[b.Key] && b.Client == 0 && b.LastUsed.After(oldestTaken[b.Session>>c.shift]) {
					t.Fatalf("left out %v, kept one from %v", b.LastUsed, oldestTaken[b.Session>>c.shift])
				}
			}
		})
	}
}

// A client over its share keeps its most recently used bindings.
func TestRestoreClientShareKeepsNewest(t *testing.T) {
	c, clk := newTestCache(time.Hour, 40) // share 10
	now := clk.Now()
	var bs []Binding
	for i := range 30 {
		sh, key := c.hashes(fmt.Sprint("s", i), "m")
		bs = append(bs, Binding{Key: key, Session: sh, Client: hashClient("user:a"), Auth: "k", LastUsed: now.Add(-time.Duration(i) * time.Second)})
	}
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
	if n := c.Restore(bs); n != c.clientMax {
		t.Fatalf("took %d, share %d", n, c.clientMax)
	}
	checkInvariants(t, c)
	for i := range 30 {
		want := ""
		if i < c.clientMax {
			want = "k"
		}
		mustGet(t, c, fmt.Sprint("s", i), "m", want)
	}
}

// Changes moves on every change worth saving and on nothing else.
func TestChanges(t *testing.T) {
	c, clk := newTestCache(time.Minute, 0)
	step := func(name string, moves bool, f func()) {
		t.Helper()
		before := c.Changes()
		f()
		if after := c.Changes(); (after != before) != moves || after < before {
			t.Fatalf("%s: Changes %d -> %d, want moved %v", name, before, after, moves)
		}
	}
	step("Get miss", false, func() { c.Get("s", "m") })
	step("Bind", true, func() { c.Bind("s", "m", "k1") })
	step("Bind again", true, func() { c.Bind("s", "m", "k1") })
	step("Get hit", true, func() { c.Get("s", "m") })
	step("BindFor", true, func() { c.BindFor("user:a", "s2", "m", "k1") })
	step("Touch", true, func() { c.Touch("s", "m", "k1") })
	step("Touch other credential", false, func() { c.Touch("s", "m", "k2") })
	step("Unbind other credential", false, func() { c.Unbind("s", "m", "k2") })
	step("Unbind", true, func() { c.Unbind("s", "m", "k1") })
	step("Unbind gone", false, func() { c.Unbind("s", "m", "k1") })
	step("read-only calls", false, func() {
		c.Snapshot(0)
		c.Len()
		c.CountByAuth()
		c.Sweep()
		c.InvalidateSession("nothing")
		c.InvalidateAuth("nothing")
		c.Retain(func(string) bool { return true })
		c.Get("s", "m")
	})
	saved := c.Snapshot(0)
	step("Restore of what is held", false, func() { c.Restore(saved) })
	step("InvalidateAuth", true, func() { c.InvalidateAuth("k1") })
	step("Restore", true, func() { c.Restore(saved) })
	clk.Advance(time.Minute)
	step("expiry alone", false, func() {})
	step("Sweep", true, func() { c.Sweep() })
	step("Sweep again", false, func() { c.Sweep() })
	step("Restore of expired", false, func() { c.Restore(saved) })
	c.Bind("s", "m", "k1")
	clk.Advance(time.Minute)
	step("Get of expired", true, func() { c.Get("s", "m") })
	c.Bind("s", "m", "k1")
	step("Clear", true, func() { c.Clear() })
	step("Clear empty", false, func() { c.Clear() })
}

// The hot paths stay allocation-free on hits and rebinds.
func TestHotPathsDoNotAllocate(t *testing.T) {
	c := NewCache(Options{})
	c.BindFor("user:a", "cc:x", benchModel, "a")
	c.Bind("cc:y", benchModel, "a")
	for name, f := range map[string]func(){
		"Get":     func() { c.Get("cc:x", benchModel) },
		"Bind":    func() { c.Bind("cc:y", benchModel, "a") },
		"BindFor": func() { c.BindFor("user:a", "cc:x", benchModel, "a") },
		"Touch":   func() { c.Touch("cc:x", benchModel, "a") },
		"Changes": func() { c.Changes() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times", name, n)
		}
	}
}

// garbageBinding returns a binding an attacker or a corrupt document might
// hold: zero or colliding keys, sessions from the wrong shard, no
// credential, last uses far in the past or future.
func garbageBinding(c *Cache, rng *rand.Rand, now time.Time) Binding {
	var b Binding
	switch rng.IntN(4) {
	case 0:
		b.Key = 0
	case 1:
		b.Key = rng.Uint64()
	default:
		_, b.Key = c.hashes(fmt.Sprint("s", rng.IntN(300)), "m")
	}
	switch rng.IntN(3) {
	case 0:
		b.Session = rng.Uint64()
	default:
		b.Session, _ = c.hashes(fmt.Sprint("s", rng.IntN(300)), "")
	}
	switch rng.IntN(4) {
	case 0:
		b.Client = rng.Uint64()
	case 1:
		b.Client = hashClient("user:mallory")
	}
	b.Auth = []string{"", "k0", "k1", "k2", "\x00"}[rng.IntN(5)]
	switch rng.IntN(5) {
	case 0:
		b.LastUsed = time.Time{}
	case 1:
		b.LastUsed = now.Add(time.Duration(rng.Int64()))
	case 2:
		b.LastUsed = now.Add(-time.Duration(rng.Int64()))
	default:
		b.LastUsed = now.Add(time.Duration(rng.IntN(240)-180) * time.Second)
	}
	return b
}

// Restore of random and garbage bindings, mixed with every other
// operation, never breaks the cache's invariants, never takes a binding
// without a credential, and never leaves one last used in the future.
func TestRestoreGarbageKeepsInvariants(t *testing.T) {
	for _, tc := range []struct{ max, steps int }{{64, 3000}, {2500, 500}} {
		max := tc.max
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			c, clk := newTestCache(2*time.Minute, max)
			rng := rand.New(rand.NewPCG(7, uint64(max)))
			for step := range tc.steps {
				session := fmt.Sprint("s", rng.IntN(300))
				switch op := rng.IntN(100); {
				case op < 30:
					bs := make([]Binding, rng.IntN(3*max))
					for i := range bs {
						bs[i] = garbageBinding(c, rng, clk.Now())
					}
					c.Restore(bs)
				case op < 40:
					snap := c.Snapshot(rng.IntN(max))
					other := NewCache(Options{TTL: 2 * time.Minute, MaxEntries: max, Now: clk.Now})
					other.Restore(snap)
					c.Restore(other.Snapshot(0))
				case op < 60:
					c.BindFor([]string{"", "user:a", "user:mallory"}[rng.IntN(3)], session, "m", fmt.Sprint("k", rng.IntN(3)))
				case op < 75:
					c.Get(session, "m")
				case op < 80:
					c.Touch(session, "m", fmt.Sprint("k", rng.IntN(3)))
				case op < 85:
					c.InvalidateSession(session)
				case op < 88:
					c.InvalidateAuth(fmt.Sprint("k", rng.IntN(3)))
				case op < 98:
					clk.Advance(time.Duration(rng.IntN(40)) * time.Second)
					c.Sweep()
				default:
					c.Clear()
				}
				if step%100 == 0 {
					checkInvariants(t, c)
					for _, b := range c.Snapshot(0) {
						if b.Auth == "" || b.LastUsed.After(clk.Now()) {
							t.Fatalf("snapshot holds %+v at %v", b, clk.Now())
						}
					}
				}
			}
			checkInvariants(t, c)
		})
	}
}

// Restore holding each shard's lock only briefly is safe against every
// concurrent operation (run with -race).
func TestRestoreConcurrent(t *testing.T) {
	clk := newFakeClock()
	c := NewCache(Options{TTL: time.Hour, MaxEntries: 8192, Now: clk.Now})
	rng := rand.New(rand.NewPCG(9, 9))
	bs := syntheticBindings(c, rng, 20_000, []string{"", "user:a", "user:b"}, clk.Now(), time.Hour)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range 20_000 {
				session := fmt.Sprint("hostile-", (i*7+w)%20_000)
				switch i % 4 {
				case 0:
					c.BindFor("user:a", session, "m", "k9")
				case 1:
					c.Get(session, "m")
				case 2:
					c.InvalidateSession(session)
				default:
					c.Touch(session, "m", "k1")
				}
			}
		})
	}
	for range 3 {
		c.Restore(bs)
		clk.Advance(time.Second)
	}
	wg.Wait()
	checkInvariants(t, c)
}

// Between two holds of a shard's lock, the bindings Restore last took may
// be removed or rebound by other goroutines; it then starts its walks
// afresh instead of from a freed or foreign slot.
func TestRestoreCursorsSurviveInterleaving(t *testing.T) {
	for _, interleave := range []func(c *Cache){
		func(c *Cache) { c.InvalidateSession("s1") }, // the last taken, freed
		func(c *Cache) { c.InvalidateSession("s1"); c.InvalidateSession("s0") },
		func(c *Cache) { c.BindFor("user:b", "s1", "m", "k9") }, // rebound to another client
		func(c *Cache) { c.Unbind("s1", "m", "k"); c.Bind("new", "m", "k") },
		func(c *Cache) { c.Clear() },
	} {
		c, clk := newTestCache(time.Hour, 1000) // one shard
		now := clk.Now()
		binding := func(i int) Binding {
			sh, key := c.hashes(fmt.Sprint("s", i), "m")
			return Binding{Key: key, Session: sh, Client: hashClient("user:a"), Auth: "k", LastUsed: now.Add(-time.Duration(i) * time.Minute)}
		}
		s := &c.shards[0]
		var r restorer
		s.mu.Lock()
		r.begin(s)
		for i := range 2 {
			b := binding(i)
			r.take(c, &b, b.Auth, int64(b.LastUsed.Sub(c.base)))
		}
		s.mu.Unlock()
		interleave(c)
		s.mu.Lock()
		r.begin(s)
		for i := 2; i < 5; i++ {
			b := binding(i)
			r.take(c, &b, b.Auth, int64(b.LastUsed.Sub(c.base)))
		}
		s.mu.Unlock()
		checkInvariants(t, c)
		for i := 2; i < 5; i++ {
			mustGet(t, c, fmt.Sprint("s", i), "m", "k")
		}
	}
}

// A clock stepped back (a test clock installed or removed while the cache
// lives) leaves the lists out of order; Restore must still terminate and
// keep them linked and within bounds.
func TestRestoreWithClockSteppedBack(t *testing.T) {
	c, clk := newTestCache(time.Hour, 64)
	rng := rand.New(rand.NewPCG(11, 12))
	for step := range 3000 {
		session := fmt.Sprint("s", rng.IntN(200))
		switch op := rng.IntN(10); {
		case op < 3:
			bs := make([]Binding, rng.IntN(200))
			for i := range bs {
				bs[i] = garbageBinding(c, rng, clk.Now())
			}
			c.Restore(bs)
		case op < 4:
			c.Restore(c.Snapshot(0))
		case op < 7:
			c.BindFor([]string{"", "user:a"}[rng.IntN(2)], session, "m", "k")
		case op < 8:
			c.Get(session, "m")
		default:
			clk.Advance(time.Duration(rng.IntN(120)-60) * time.Second)
		}
		if step%50 == 0 {
			checkLinks(t, c, false)
		}
	}
	checkLinks(t, c, false)
}

// A binding Restore just took, used between two holds of the lock under a
// clock stepped back, may come again older than a saved copy; Restore must
// not link it behind itself.
func TestRestoreCursorUsedUnderClockSteppedBack(t *testing.T) {
	c, clk := newTestCache(time.Hour, 1000) // one shard
	now := clk.Now()
	sh, key := c.hashes("s", "m")
	at := func(d time.Duration) Binding {
		return Binding{Key: key, Session: sh, Client: hashClient("user:a"), Auth: "k", LastUsed: now.Add(d)}
	}
	s := &c.shards[0]
	var r restorer
	s.mu.Lock()
	r.begin(s)
	b := at(-time.Minute)
	r.take(c, &b, b.Auth, int64(b.LastUsed.Sub(c.base)))
	s.mu.Unlock()
	clk.Advance(-10 * time.Minute)
	mustGet(t, c, "s", "m", "k")
	clk.Advance(10 * time.Minute)
	s.mu.Lock()
	r.begin(s)
	b = at(-2 * time.Minute)
	if !r.take(c, &b, b.Auth, int64(b.LastUsed.Sub(c.base))) {
		t.Error("newer saved copy not taken")
	}
	s.mu.Unlock()
	checkLinks(t, c, false)
	mustGet(t, c, "s", "m", "k")
}

// A last use centuries ago (the zero time of a corrupt document) is
// expired, not so old that its age overflows into a binding that never
// expires.
func TestRestoreSkipsAncientLastUse(t *testing.T) {
	c, clk := newTestCache(time.Hour, 0)
	sh, key := c.hashes("s", "m")
	for _, at := range []time.Time{{}, time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), clk.Now().AddDate(-300, 0, 0)} {
		if n := c.Restore([]Binding{{Key: key, Session: sh, Auth: "k", LastUsed: at}}); n != 0 {
			t.Fatalf("Restore took a binding last used %v", at)
		}
	}
	mustGet(t, c, "s", "m", "")
}
