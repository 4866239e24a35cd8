package session

import (
	"fmt"
	"runtime"
	"testing"
)

// sessionIDs returns n realistic Claude Code session IDs ("cc:" + UUID).
func sessionIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		x := uint64(i)*0x9e3779b97f4a7c15 + 1
		ids[i] = fmt.Sprintf("cc:%08x-%04x-4%03x-8%03x-%012x", uint32(x>>32), uint16(x>>16), x&0xfff, (x>>12)&0xfff, x*31&0xffffffffffff)
	}
	return ids
}

const benchModel = "claude-sonnet-4-5"

var benchAuths = []string{"claude-key-1", "claude-key-2", "claude-key-3", "claude-oauth-1"}

func BenchmarkCacheGetHit(b *testing.B) {
	c := NewCache(Options{})
	ids := sessionIDs(10_000)
	for i, id := range ids {
		c.Bind(id, benchModel, benchAuths[i%len(benchAuths)])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Get(ids[i%len(ids)], benchModel); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkCacheGetHitParallel(b *testing.B) {
	c := NewCache(Options{})
	ids := sessionIDs(10_000)
	for i, id := range ids {
		c.Bind(id, benchModel, benchAuths[i%len(benchAuths)])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Get(ids[i%len(ids)], benchModel); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

func BenchmarkCacheBind(b *testing.B) {
	c := NewCache(Options{MaxEntries: 100_000})
	ids := sessionIDs(200_000) // twice the bound: steady-state inserts with eviction
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Bind(ids[i%len(ids)], benchModel, benchAuths[i%len(benchAuths)])
		i++
	}
}

func TestCacheGetHitNoAlloc(t *testing.T) {
	c := NewCache(Options{})
	c.Bind("cc:x", benchModel, "a")
	if n := testing.AllocsPerRun(1000, func() { _, _ = c.Get("cc:x", benchModel) }); n != 0 {
		t.Fatalf("Get hit allocates %v times", n)
	}
}

// BenchmarkCacheMemory1M measures the heap held by 1,000,000 live bindings
// (SPEC 11: under 200 MB). The session strings are the caller's and are not
// counted: the cache stores hashes only.
func BenchmarkCacheMemory1M(b *testing.B) {
	const n = 1_000_000
	ids := sessionIDs(n)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := NewCache(Options{})
		for i, id := range ids {
			c.Bind(id, benchModel, benchAuths[i%len(benchAuths)])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() != n {
			b.Fatalf("Len = %d", c.Len())
		}
		used := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(used/n, "B/binding")
		b.ReportMetric(used/(1<<20), "MB")
		runtime.KeepAlive(c)
	}
}
