package selector

import (
	"fmt"
	"testing"
)

// bench10k returns a 10,000-candidate Set (one tier, weights 1..7 unless
// uniform) and an Availability with every candidate available.
func bench10k(uniform bool) (*Set, boolAvail) {
	cs := numbered(10000)
	if !uniform {
		for i := range cs {
			cs[i].Weight = i%7 + 1
		}
	}
	s := NewSet("bench|model", cs)
	return s, allAvail(s)
}

func benchStrategy(b *testing.B, strat Strategy, uniform bool) {
	s, avail := bench10k(uniform)
	st := NewState()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("session-%d", i)
	}
	req := &Request{Set: s, Avail: avail}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req.HashKey = keys[i%len(keys)]
		if strat.Pick(st, req) < 0 {
			b.Fatal("no pick")
		}
	}
}

// BenchmarkAffinityHit10k measures a pick for a bound session among 10,000
// candidates: the path almost every request of a conversation takes.
func BenchmarkAffinityHit10k(b *testing.B) {
	s, avail := bench10k(false)
	bind := newFakeBindings()
	bind.Bind("session", "model", s.At(7777).ID)
	a := &Affinity{Strategy: RoundRobin{}, Bindings: bind}
	st := NewState()
	req := &Request{Set: s, Avail: avail, Session: "session", Fallback: "short", HashKey: "session", Model: "model"}
	b.ReportAllocs()
	for b.Loop() {
		if _, d := a.Pick(st, req); d != DecisionHit {
			b.Fatal(d)
		}
	}
}

// BenchmarkRoundRobin10k measures a round-robin pick among 10,000
// candidates, all available.
func BenchmarkRoundRobin10k(b *testing.B) { benchStrategy(b, RoundRobin{}, false) }

// BenchmarkRoundRobin10kParallel is BenchmarkRoundRobin10k from all CPUs at
// once, sharing the cursor.
func BenchmarkRoundRobin10kParallel(b *testing.B) {
	s, avail := bench10k(false)
	st := NewState()
	req := &Request{Set: s, Avail: avail}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			RoundRobin{}.Pick(st, req)
		}
	})
}

// BenchmarkFillFirst10k measures a fill-first pick among 10,000
// candidates, all available.
func BenchmarkFillFirst10k(b *testing.B) { benchStrategy(b, FillFirst{}, false) }

// BenchmarkWeightedRoundRobin10k measures a smooth weighted round-robin
// pick among 10,000 candidates: O(n).
func BenchmarkWeightedRoundRobin10k(b *testing.B) { benchStrategy(b, WeightedRoundRobin{}, false) }

// BenchmarkRendezvous10k measures a rendezvous pick among 10,000
// candidates with unequal weights: O(n) with a logarithm per candidate.
func BenchmarkRendezvous10k(b *testing.B) { benchStrategy(b, Rendezvous{}, false) }

// BenchmarkRendezvous10kUniform is BenchmarkRendezvous10k with equal
// weights, where picks compare hashes only.
func BenchmarkRendezvous10kUniform(b *testing.B) { benchStrategy(b, Rendezvous{}, true) }
