package selector

import "time"

// Usage reports how much of a candidate's usage limits its upstream last
// said was used, as a fraction 0..1 (the largest over its windows; 0 when
// unknown). It is read during Pick, so it must be quick, lock free and
// must not allocate.
type Usage interface {
	QuotaUsed(now time.Time) float64
}

// Steer wraps a Strategy with steering by quota headroom (SPEC section
// 13): a candidate whose [Usage] is at least 1 - Headroom takes no new
// session while another available candidate of the same tier has more
// room. When every available candidate of the tier is that close to its
// limit, the Strategy picks among them as usual: steering changes which
// credential a new session gets, never whether it is served, and never
// sends it to a lower tier.
//
// Steer only affects the Strategy's picks, that is new sessions and
// requests without one; [Affinity] keeps a session on its bound credential
// before the Strategy is asked. Before the Strategy picks, Steer looks for
// a candidate with room in the top tier, stopping at the first (O(1) while
// the first candidates are available and have room, O(n) when the whole
// tier is near its limit); the Strategy then picks once, reading the Usage
// of each candidate it looks at. It does not allocate.
type Steer struct {
	// Strategy picks among the candidates steering leaves.
	Strategy Strategy
	// Headroom is the share of a limit kept free, in (0, 1); 0 or less
	// turns steering off.
	Headroom float64
	// Now tells the time, to skip usage windows that have reset.
	Now func() time.Time
}

// Name returns the wrapped Strategy's name.
func (s Steer) Name() string { return s.Strategy.Name() }

// Pick picks as the Strategy does, steering new sessions away from
// candidates near their limits.
func (s Steer) Pick(st *State, req *Request) int {
	if s.Headroom <= 0 || req.Set == nil || req.Avail == &req.steered {
		return s.Strategy.Pick(st, req)
	}
	limit, now := 1-s.Headroom, s.Now()
	if !req.Set.roomInTopTier(req, limit, now) {
		// Everything available in the top tier is near its limit (or
		// nothing is available): pick as if there were no steering.
		return s.Strategy.Pick(st, req)
	}
	inner := req.Avail
	req.steered = steeredAvail{inner: inner, set: req.Set, limit: limit, now: now}
	req.Avail = &req.steered
	i := s.Strategy.Pick(st, req)
	req.Avail = inner
	return i
}

// steeredAvail is a request's Availability while Steer picks: candidates
// that have used at least limit of their quota at now are left out.
type steeredAvail struct {
	inner Availability
	set   *Set
	limit float64
	now   time.Time
}

func (a *steeredAvail) Available(i int) bool {
	if a.set.near(i, a.limit, a.now) {
		return false
	}
	return a.inner == nil || a.inner.Available(i)
}

// near reports whether candidate i has used at least limit of its quota.
func (s *Set) near(i int, limit float64, now time.Time) bool {
	u := s.cands[i].Usage
	return u != nil && u.QuotaUsed(now) >= limit
}

// roomInTopTier reports whether the top tier req may use for a new session
// (the first with an available candidate of positive weight) has such a
// candidate that has used less than limit. It stops at the first one.
func (s *Set) roomInTopTier(req *Request, limit float64, now time.Time) bool {
	for _, t := range s.tiers {
		found := false
		for j := t.start; j < t.end; j++ {
			if s.cands[j].Weight == 0 || !req.available(j) {
				continue
			}
			if !s.near(j, limit, now) {
				return true
			}
			found = true
		}
		if found {
			return false
		}
	}
	return false
}
