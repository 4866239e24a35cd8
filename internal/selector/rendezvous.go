package selector

import (
	"math"

	"github.com/caddy-llm-proxy/llmproxy/internal/stablehash"
)

// Rendezvous is the rendezvous strategy: weighted highest-random-weight
// hashing of the request's HashKey (the session ID). Each usable candidate i
// of the chosen tier scores -weight_i / ln(u_i), where u_i in (0, 1) is
// derived from a 64-bit hash of HashKey and the candidate's ID, and the
// highest score wins. Every process computes the same hash (FNV-1a and
// fixed-constant mixing, no per-process seed), so every Caddy instance picks
// the same credential for the same session without shared state; removing a
// credential moves only the sessions it held; and each candidate's share of
// sessions is proportional to its weight.
//
// A request with an empty HashKey falls back to round robin, sharing the
// Set key's round-robin cursor. A pick costs O(n), n being the size of the
// chosen tier: one hash mix per candidate (about 6 ns), without locks or
// allocation. A tier whose positive weights are all equal compares hashes
// only; otherwise a cheap bound rules out all but about ln(n) candidates
// before the logarithm is needed.
type Rendezvous struct{}

// Name returns "rendezvous".
func (Rendezvous) Name() string { return NameRendezvous }

// Pick implements [Strategy].
func (Rendezvous) Pick(st *State, req *Request) int {
	if req.HashKey == "" {
		return pickRoundRobin(st, req)
	}
	s := req.Set
	if s == nil {
		return -1
	}
	key := stablehash.String(req.HashKey)
	for _, t := range s.tiers {
		if t.positive == 0 {
			continue
		}
		var i int
		if t.uniform {
			i = s.rendezvousUniform(req, t, key)
		} else {
			i = s.rendezvousWeighted(req, t, key)
		}
		if i >= 0 {
			return i
		}
	}
	return -1
}

// rendezvousHash returns the 52-bit hash of key and candidate i; u_i is
// (h + 0.5) / 2^52, which is exact in a float64 and lies strictly in (0, 1).
func (s *Set) rendezvousHash(key uint64, i int) uint64 {
	return stablehash.Mix(key^s.idHash[i]) >> 12
}

// rendezvousUniform picks in a tier whose positive weights are equal: the
// score then never decreases as u grows, so the largest hash wins (the
// lowest index on a tie), exactly the candidate rendezvousWeighted would
// pick.
func (s *Set) rendezvousUniform(req *Request, t tier, key uint64) int {
	best, bestHash := -1, uint64(0)
	for i := t.start; i < t.end; i++ {
		if s.cands[i].Weight == 0 || !req.available(i) {
			continue
		}
		if h := s.rendezvousHash(key, i); best < 0 || h > bestHash {
			best, bestHash = i, h
		}
	}
	return best
}

// rendezvousWeighted picks the candidate with the highest score
// -weight / ln(u) in the tier, computed as the lowest key -ln(u) / weight
// (the same order); equal keys go to the larger hash, then the lower index.
//
// Since -ln(u) >= 1 - u, a candidate whose 1 - u already exceeds
// best * weight cannot win and is skipped without the logarithm; the margin
// covers rounding. With n candidates only about ln(n) of them need one.
func (s *Set) rendezvousWeighted(req *Request, t tier, key uint64) int {
	best, bestHash, bestKey := -1, uint64(0), math.Inf(1)
	for i := t.start; i < t.end; i++ {
		weight := float64(s.cands[i].Weight)
		if weight == 0 || !req.available(i) {
			continue
		}
		h := s.rendezvousHash(key, i)
		oneMinusU := (float64(1<<52-h) - 0.5) * 0x1p-52 // exact
		if oneMinusU > bestKey*weight*(1+1e-9) {
			continue
		}
		u := (float64(h) + 0.5) * 0x1p-52
		k := -math.Log(u) / weight
		if k < bestKey || (k == bestKey && h > bestHash) {
			best, bestHash, bestKey = i, h, k
		}
	}
	return best
}
