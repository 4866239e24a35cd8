package selector

import (
	"testing"
	"time"
)

// used is a fixed Usage.
type used float64

func (u used) QuotaUsed(time.Time) float64 { return float64(u) }

var steerNow = func() time.Time { return time.Unix(1_800_000_000, 0) }

// steered builds a Set of candidates "id=usage@priority".
func steeredSet(cs ...Candidate) *Set { return NewSet("steer|m", cs) }

func cand(id string, prio int, u float64) Candidate {
	return Candidate{ID: id, Priority: prio, Weight: 1, Usage: used(u)}
}

// picks runs n picks of every strategy under Steer and returns which IDs
// were chosen, by strategy.
func steerPicks(t *testing.T, s *Set, avail Availability, headroom float64, n int) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, strat := range allStrategies() {
		st := NewState()
		steer := Steer{Strategy: strat, Headroom: headroom, Now: steerNow}
		got := map[string]int{}
		for k := range n {
			req := &Request{Set: s, Avail: avail, HashKey: string(rune('a'+k%26)) + "session"}
			got[pickID(steer, st, req)]++
		}
		out[strat.Name()] = got
	}
	return out
}

func TestSteer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      *Set
		unavail  []string
		headroom float64
		allowed  []string // every pick is one of these
		reached  []string // and each of these is picked at least once
	}{
		{"near-limit candidates take no new sessions",
			steeredSet(cand("a", 0, 0.2), cand("b", 0, 0.5), cand("c", 0, 0.97), cand("d", 0, 0.99)),
			nil, 0.05, []string{"a", "b"}, []string{"a", "b"}},
		{"headroom 0.1 also leaves out 0.9",
			steeredSet(cand("a", 0, 0.2), cand("b", 0, 0.9), cand("c", 0, 0.89)),
			nil, 0.1, []string{"a", "c"}, []string{"a", "c"}},
		{"headroom 0 turns steering off",
			steeredSet(cand("a", 0, 0.2), cand("d", 0, 0.99)),
			nil, 0, []string{"a", "d"}, []string{"a", "d"}},
		{"all near the limit: picked as usual",
			steeredSet(cand("c", 0, 0.97), cand("d", 0, 1)),
			nil, 0.05, []string{"c", "d"}, []string{"c", "d"}},
		{"all near the limit in the top tier: never a lower tier",
			steeredSet(cand("c", 1, 0.97), cand("d", 1, 0.99), cand("low", 0, 0)),
			nil, 0.05, []string{"c", "d"}, []string{"c", "d"}},
		{"room in the top tier is used before the lower tier",
			steeredSet(cand("c", 1, 0.97), cand("top", 1, 0.3), cand("low", 0, 0)),
			nil, 0.05, []string{"top"}, []string{"top"}},
		{"top tier cooling: steering applies within the lower tier",
			steeredSet(cand("t", 1, 0), cand("c", 0, 0.99), cand("low", 0, 0.1)),
			[]string{"t"}, 0.05, []string{"low"}, []string{"low"}},
		{"the only roomy candidate is cooling: near ones serve",
			steeredSet(cand("a", 0, 0.1), cand("c", 0, 0.99)),
			[]string{"a"}, 0.05, []string{"c"}, []string{"c"}},
		{"unknown usage counts as room",
			steeredSet(Candidate{ID: "x", Weight: 1}, cand("d", 0, 0.99)),
			nil, 0.05, []string{"x"}, []string{"x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			avail := except(tc.set, tc.unavail...)
			for strat, got := range steerPicks(t, tc.set, avail, tc.headroom, 60) {
				for id := range got {
					if !contains(tc.allowed, id) {
						t.Errorf("%s picked %q (%v); allowed %v", strat, id, got, tc.allowed)
					}
				}
				// fill_first and rendezvous need not spread; the others
				// reach every allowed candidate.
				if strat == NameRoundRobin || strat == NameWeightedRoundRobin {
					for _, id := range tc.reached {
						if got[id] == 0 {
							t.Errorf("%s never picked %q (%v)", strat, id, got)
						}
					}
				}
			}
		})
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// TestSteerKeepsBindings: a session bound to a credential that has since
// come near its limit stays on it (an affinity hit is not steered), while
// a new session goes elsewhere; when the binding's credential becomes
// unavailable (a real rejection), the rebind is steered.
func TestSteerKeepsBindings(t *testing.T) {
	s := steeredSet(cand("a", 0, 0.2), cand("d", 0, 0.99))
	bind := newFakeBindings()
	bind.Bind("old", "m", "d")
	aff := &Affinity{Strategy: Steer{Strategy: RoundRobin{}, Headroom: 0.05, Now: steerNow}, Bindings: bind}
	st := NewState()
	for range 5 {
		if i, dec := aff.Pick(st, &Request{Set: s, Avail: allAvail(s), Session: "old", Model: "m"}); s.At(i).ID != "d" || dec != DecisionHit {
			t.Fatalf("bound session: got %q %s, want d hit", s.At(i).ID, dec)
		}
	}
	for k := range 5 {
		sess := string(rune('p' + k))
		if i, dec := aff.Pick(st, &Request{Set: s, Avail: allAvail(s), Session: sess, Model: "m"}); s.At(i).ID != "a" || dec != DecisionMiss {
			t.Fatalf("new session %s: got %q %s, want a miss", sess, s.At(i).ID, dec)
		}
	}
	if i, dec := aff.Pick(st, &Request{Set: s, Avail: except(s, "d"), Session: "old", Model: "m"}); s.At(i).ID != "a" || dec != DecisionRebind {
		t.Fatalf("after d failed: got %q %s, want a rebind", s.At(i).ID, dec)
	}
}

// TestSteerAllocs: a steered pick allocates nothing, with or without
// candidates near their limits.
func TestSteerAllocs(t *testing.T) {
	s := steeredSet(cand("a", 1, 0.99), cand("b", 1, 0.98), cand("c", 0, 0.1), cand("d", 0, 0.5))
	for _, strat := range allStrategies() {
		steer := Steer{Strategy: strat, Headroom: 0.05, Now: steerNow}
		st := NewState()
		req := &Request{Set: s, Avail: allAvail(s), HashKey: "k"}
		steer.Pick(st, req) // creates the State's entries
		if n := testing.AllocsPerRun(100, func() { steer.Pick(st, req) }); n != 0 {
			t.Errorf("%s: steered pick allocates %v times", strat.Name(), n)
		}
		if steer.Name() != strat.Name() {
			t.Errorf("Name = %q", steer.Name())
		}
	}
}

// BenchmarkSteeredRoundRobin10k is BenchmarkRoundRobin10k under Steer with
// every tenth candidate near its limit.
func BenchmarkSteeredRoundRobin10k(b *testing.B) {
	cs := numbered(10000)
	for i := range cs {
		cs[i].Usage = used(float64(i%10) / 9 * 0.99)
	}
	s := NewSet("bench|model", cs)
	steer := Steer{Strategy: RoundRobin{}, Headroom: 0.05, Now: steerNow}
	st := NewState()
	req := &Request{Set: s, Avail: allAvail(s)}
	b.ReportAllocs()
	for b.Loop() {
		if steer.Pick(st, req) < 0 {
			b.Fatal("no pick")
		}
	}
}
