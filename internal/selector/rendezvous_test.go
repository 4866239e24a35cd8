package selector

import (
	"fmt"
	"math"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/stablehash"
)

// sessionKeys holds the hash keys "session-<k>" the rendezvous tests use.
var sessionKeys = func() []string {
	keys := make([]string, 100000)
	for k := range keys {
		keys[k] = fmt.Sprintf("session-%d", k)
	}
	return keys
}()

// rendezvousPicks returns the ID picked for each of the first n
// sessionKeys.
func rendezvousPicks(s *Set, avail Availability, n int) []string {
	st := NewState()
	req := &Request{Set: s, Avail: avail}
	out := make([]string, n)
	for k := range out {
		req.HashKey = sessionKeys[k]
		out[k] = pickID(Rendezvous{}, st, req)
	}
	return out
}

// tenCandidates returns ten candidates with the given weight function.
func tenCandidates(weight func(i int) int) []Candidate {
	cs := make([]Candidate, 10)
	for i := range cs {
		cs[i] = Candidate{ID: fmt.Sprintf("auth-%d", i), Weight: weight(i)}
	}
	return cs
}

func TestRendezvousDeterministic(t *testing.T) {
	cs := tenCandidates(func(i int) int { return i + 1 })
	a := rendezvousPicks(NewSet("k1", cs), nil, 1000)

	// A different key, a reversed input order and a fresh State change nothing.
	rev := make([]Candidate, len(cs))
	for i, c := range cs {
		rev[len(cs)-1-i] = c
	}
	b := rendezvousPicks(NewSet("k2", rev), nil, 1000)
	for k := range a {
		if a[k] != b[k] {
			t.Fatalf("key %d: %s then %s", k, a[k], b[k])
		}
	}
	// Pinned picks: every process, of every build, must pick these, or
	// instances would disagree about sessions during a rolling upgrade.
	golden := []struct {
		weight func(int) int
		key    string
		want   string
	}{
		{func(i int) int { return i + 1 }, "session-0", "auth-8"},
		{func(i int) int { return i + 1 }, "session-1", "auth-7"},
		{func(i int) int { return i + 1 }, "0b6c5a2e-5c2f-4b1e-9c59-5f7b8f0f1d23", "auth-9"},
		{func(int) int { return 1 }, "session-0", "auth-1"},
		{func(int) int { return 1 }, "session-42", "auth-2"},
		{func(int) int { return 1 }, "0b6c5a2e-5c2f-4b1e-9c59-5f7b8f0f1d23", "auth-0"},
	}
	for _, g := range golden {
		s := NewSet("k", tenCandidates(g.weight))
		if got := pickID(Rendezvous{}, NewState(), &Request{Set: s, HashKey: g.key}); got != g.want {
			t.Errorf("HashKey %q picked %s, want %s", g.key, got, g.want)
		}
	}
}

// TestRendezvousMinimalMovement removes (or marks unavailable) one of ten
// credentials and checks that exactly the sessions it held move.
func TestRendezvousMinimalMovement(t *testing.T) {
	const keys = 10000
	weights := map[string]func(int) int{
		"uniform":  func(int) int { return 1 },
		"weighted": func(i int) int { return 100 * (i + 1) },
		"mixed":    func(i int) int { return []int{1, 1, 1, 2, 5}[i%5] },
		// Removing auth-9 makes the weights equal, switching to hash-only
		// comparison; no key may move but auth-9's.
		"one heavier": func(i int) int { return 1 + i/9 },
	}
	for name, weight := range weights {
		t.Run(name, func(t *testing.T) {
			cs := tenCandidates(weight)
			before := rendezvousPicks(NewSet("k", cs), nil, keys)
			for removed := range cs {
				rest := append(append([]Candidate(nil), cs[:removed]...), cs[removed+1:]...)
				after := rendezvousPicks(NewSet("k", rest), nil, keys)
				if removed%4 == 0 {
					// Unavailable is the same as removed.
					s := NewSet("k", cs)
					down := rendezvousPicks(s, except(s, cs[removed].ID), keys)
					for k := range after {
						if after[k] != down[k] {
							t.Fatalf("key %d: %s after removal, %s when unavailable", k, after[k], down[k])
						}
					}
				}
				gone, moved := cs[removed].ID, 0
				for k := range before {
					switch {
					case before[k] == gone:
						moved++
						if after[k] == gone {
							t.Fatalf("key %d still on removed %s", k, gone)
						}
					case after[k] != before[k]:
						t.Fatalf("key %d moved from %s to %s though %s was removed", k, before[k], after[k], gone)
					}
				}
				if moved == 0 {
					t.Errorf("no key was on %s", gone)
				}
			}
		})
	}
}

func TestRendezvousWeights(t *testing.T) {
	tests := []struct {
		name   string
		keys   int
		weight func(int) int
		tol    float64 // allowed |share - expected| / expected
	}{
		{"uniform 10k", 10000, func(int) int { return 1 }, 0.08},
		{"linear 10k", 10000, func(i int) int { return i + 1 }, 0.15},
		{"linear 100k", 100000, func(i int) int { return i + 1 }, 0.04},
		{"large weights 100k", 100000, func(i int) int { return 100000 * (i%3 + 1) }, 0.03},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := tenCandidates(tc.weight)
			total := 0
			for _, c := range cs {
				total += c.Weight
			}
			counts := map[string]int{}
			for _, id := range rendezvousPicks(NewSet("k", cs), nil, tc.keys) {
				counts[id]++
			}
			for _, c := range cs {
				want := float64(tc.keys) * float64(c.Weight) / float64(total)
				if dev := math.Abs(float64(counts[c.ID])-want) / want; dev > tc.tol {
					t.Errorf("%s (weight %d): %d keys, want %.0f (off by %.1f%%)", c.ID, c.Weight, counts[c.ID], want, 100*dev)
				}
			}
		})
	}
}

// TestRendezvousUniformMatchesWeighted checks that the hash-only path used
// for equal weights picks exactly what the logarithmic scoring picks.
func TestRendezvousUniformMatchesWeighted(t *testing.T) {
	s := NewSet("k", numbered(50))
	for k := range 5000 {
		key := stablehash.String(fmt.Sprintf("session-%d", k))
		req := &Request{Set: s}
		if u, w := s.rendezvousUniform(req, s.tiers[0], key), s.rendezvousWeighted(req, s.tiers[0], key); u != w {
			t.Fatalf("key %d: uniform path %d, weighted path %d", k, u, w)
		}
	}
}

func TestRendezvousWithoutHashKeyIsRoundRobin(t *testing.T) {
	s := NewSet("k", cands("a", "b", "c"))
	st := NewState()
	counts := map[string]int{}
	for range 300 {
		counts[pickID(Rendezvous{}, st, &Request{Set: s})]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if counts[id] != 100 {
			t.Errorf("%s picked %d times of 300, want 100", id, counts[id])
		}
	}
	// It shares round robin's cursor for the Set key.
	if got := pickID(RoundRobin{}, st, &Request{Set: s}); got != "a" {
		t.Errorf("round robin after 300 rendezvous picks: %q, want a", got)
	}
}

func TestRendezvousDoesNotAllocate(t *testing.T) {
	s := NewSet("k", tenCandidates(func(i int) int { return i + 1 }))
	req := &Request{Set: s, Avail: allAvail(s), HashKey: "session"}
	st := NewState()
	if n := testing.AllocsPerRun(100, func() { Rendezvous{}.Pick(st, req) }); n != 0 {
		t.Errorf("rendezvous allocates %v times per pick", n)
	}
}

// TestRendezvousMatchesReference checks the pruned scoring against the
// textbook definition: the highest -weight / ln(u) over every usable
// candidate, u from the same hash.
func TestRendezvousMatchesReference(t *testing.T) {
	weights := []func(int) int{
		func(i int) int { return i%7 + 1 },
		func(i int) int { return (i * 7919) % 1000 },
		func(i int) int { return []int{1, MaxWeight}[i%2] },
	}
	for w, weight := range weights {
		cs := numbered(200)
		for i := range cs {
			cs[i].Weight = weight(i)
		}
		s := NewSet("k", cs)
		avail := allAvail(s)
		for i := range avail {
			avail[i] = i%5 != 0
		}
		req := &Request{Set: s, Avail: avail}
		for k := range 2000 {
			key := stablehash.String(fmt.Sprintf("session-%d", k))
			want, wantScore := -1, 0.0
			for i := range s.Len() {
				if s.At(i).Weight == 0 || !avail[i] {
					continue
				}
				u := (float64(s.rendezvousHash(key, i)) + 0.5) / (1 << 52)
				if score := -float64(s.At(i).Weight) / math.Log(u); want < 0 || score > wantScore {
					want, wantScore = i, score
				}
			}
			if got := s.rendezvousWeighted(req, s.tiers[0], key); got != want {
				t.Fatalf("weights %d, key %d: picked %d, reference %d", w, k, got, want)
			}
		}
	}
}
