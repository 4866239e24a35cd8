package session

import (
	"slices"
	"testing"
	"time"
)

// stateBenchCache returns a cache of n bindings of three clients, used
// one millisecond apart.
func stateBenchCache(n int, clk *fakeClock) *Cache {
	c := NewCache(Options{Now: clk.Now})
	clients := []string{"", "user:a", "ip:192.0.2.1"}
	for i, id := range sessionIDs(n) {
		c.BindFor(clients[i%len(clients)], id, benchModel, benchAuths[i%len(benchAuths)])
		clk.Advance(time.Millisecond)
	}
	return c
}

func BenchmarkCacheSnapshot100k(b *testing.B) {
	c := stateBenchCache(100_000, newFakeClock())
	b.ReportAllocs()
	for b.Loop() {
		if len(c.Snapshot(0)) != 100_000 {
			b.Fatal("short snapshot")
		}
	}
}

// BenchmarkCacheRestore100k restores 100,000 bindings into an empty cache,
// as at start.
func BenchmarkCacheRestore100k(b *testing.B) {
	clk := newFakeClock()
	saved := stateBenchCache(100_000, clk).Snapshot(0)
	b.ReportAllocs()
	for b.Loop() {
		c := NewCache(Options{Now: clk.Now})
		if c.Restore(saved) != len(saved) {
			b.Fatal("not all taken")
		}
	}
}

// BenchmarkCacheRestoreMerge100k merges another instance's 100,000
// bindings into a cache holding the same sessions, half of them used
// earlier here (those are taken), as every state_sync does.
func BenchmarkCacheRestoreMerge100k(b *testing.B) {
	clk := newFakeClock()
	newer := stateBenchCache(100_000, clk).Snapshot(0)
	older := slices.Clone(newer)
	for i := 0; i < len(older); i += 2 {
		older[i].LastUsed = older[i].LastUsed.Add(-time.Second)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c := NewCache(Options{Now: clk.Now})
		c.Restore(older)
		b.StartTimer()
		if c.Restore(newer) != len(newer)/2 {
			b.Fatal("took the wrong bindings")
		}
	}
}
