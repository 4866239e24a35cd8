package selector

import "sync"

// WeightedRoundRobin is the weighted_round_robin strategy: smooth weighted
// round robin as nginx does it. On each pick, within the chosen tier, every
// usable candidate's current weight grows by its weight, the candidate with
// the largest current weight (the first one on a tie) is chosen, and its
// current weight drops by the sum of the usable weights. Over a full cycle
// each candidate is picked exactly in proportion to its weight, interleaved
// rather than in bursts: weights 5, 1, 1 give a a b a c a a.
//
// Current weights live in the [State] per Set key and are carried over by
// candidate ID when the Set is rebuilt. A pick costs O(n), n being the size
// of the chosen tier, and holds a per-Set-key mutex meanwhile.
type WeightedRoundRobin struct{}

// Name returns "weighted_round_robin".
func (WeightedRoundRobin) Name() string { return NameWeightedRoundRobin }

// Pick implements [Strategy].
func (WeightedRoundRobin) Pick(st *State, req *Request) int {
	s := req.Set
	if s == nil || len(s.cands) == 0 {
		return -1
	}
	w := st.weights(s.key)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.adopt(s)
	for _, t := range s.tiers {
		if t.positive == 0 {
			continue
		}
		best := -1
		var total int64
		for i := t.start; i < t.end; i++ {
			weight := int64(s.cands[i].Weight)
			if weight == 0 || !req.available(i) {
				continue
			}
			w.cur[i] += weight
			total += weight
			if best < 0 || w.cur[i] > w.cur[best] {
				best = i
			}
		}
		if best >= 0 {
			w.cur[best] -= total
			return best
		}
	}
	return -1
}

// wrrState is the smooth weighted round-robin memory of one Set key.
type wrrState struct {
	mu  sync.Mutex
	set *Set    // the Set cur is indexed by
	cur []int64 // current weight per candidate of set
}

// adopt re-indexes the current weights for s when s is not the Set they
// were kept for, carrying them over by candidate ID; new candidates start
// at zero. The caller holds w.mu.
func (w *wrrState) adopt(s *Set) {
	if w.set == s {
		return
	}
	cur := make([]int64, len(s.cands))
	if w.set != nil {
		for i, c := range s.cands {
			if j, ok := w.set.index[c.ID]; ok {
				cur[i] = w.cur[j]
			}
		}
	}
	w.set, w.cur = s, cur
}
