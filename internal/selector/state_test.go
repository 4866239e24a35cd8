package selector

import (
	"strconv"
	"testing"
)

// A client naming a new model on every request must not grow a State
// without bound, whatever the pool does with its Sets.
func TestStateBoundsClientChosenKeys(t *testing.T) {
	st := NewState()
	cands := []Candidate{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}}
	for i := 0; i < 3*MaxStateKeys; i++ {
		req := &Request{Set: NewSet("anthropic|model-"+strconv.Itoa(i), cands)}
		if (RoundRobin{}).Pick(st, req) < 0 || (WeightedRoundRobin{}).Pick(st, req) < 0 {
			t.Fatalf("pick %d found nothing", i)
		}
	}
	st.mu.RLock()
	rr, wrr := len(st.rr), len(st.wrr)
	st.mu.RUnlock()
	if rr > MaxStateKeys || wrr > MaxStateKeys {
		t.Fatalf("state remembers %d round-robin and %d weighted keys, bound %d", rr, wrr, MaxStateKeys)
	}
}

// A key that survives the flood keeps its cursor; a forgotten one starts
// afresh and still picks.
func TestStateEvictionKeepsPicking(t *testing.T) {
	st := NewState()
	cands := []Candidate{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}}
	popular := &Request{Set: NewSet("anthropic|popular", cands)}
	counts := map[int]int{}
	for i := 0; i < 2*MaxStateKeys; i++ {
		RoundRobin{}.Pick(st, &Request{Set: NewSet("flood-"+strconv.Itoa(i), cands)})
		counts[RoundRobin{}.Pick(st, popular)]++
	}
	if len(counts) != 3 || counts[-1] != 0 {
		t.Fatalf("popular key picks: %v", counts)
	}
}
