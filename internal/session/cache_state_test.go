package session

import (
	"fmt"
	"testing"
	"time"
)

// checkInvariants verifies every shard: its LRU list links, index and
// count agree; the list and each client list run from the most to the
// least recently used; no client holds more than its share of a shard;
// and the cache holds at most MaxEntries bindings.
func checkInvariants(t *testing.T, c *Cache) {
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
			if prev >= 0 && s.slab[prev].lastUsed < e.lastUsed {
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
			for i := cl.head; i >= 0 && s.slab[i].cnext >= 0; i = s.slab[i].cnext {
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
}
