package selector

// RoundRobin is the round_robin strategy: each pick advances the Set key's
// cursor in the [State] by one and takes, within the chosen tier, the first
// usable candidate at or after the cursor position, wrapping around.
// Unavailable and weight-0 candidates are skipped. A pick is amortised O(1)
// while most candidates are available, and allocates nothing once the
// Set key's cursor exists.
type RoundRobin struct{}

// Name returns "round_robin".
func (RoundRobin) Name() string { return NameRoundRobin }

// Pick implements [Strategy].
func (RoundRobin) Pick(st *State, req *Request) int {
	return pickRoundRobin(st, req)
}

// pickRoundRobin is round robin as RoundRobin and Rendezvous (without a
// hash key) use it; both share the Set key's cursor.
func pickRoundRobin(st *State, req *Request) int {
	s := req.Set
	if s == nil || len(s.cands) == 0 {
		return -1
	}
	n := st.cursor(s.key).Add(1) - 1
	for _, t := range s.tiers {
		if t.positive == 0 {
			continue
		}
		size := t.end - t.start
		from := t.start + int(n%uint64(size))
		if i := scanUsable(s, req, from, t.end); i >= 0 {
			return i
		}
		if i := scanUsable(s, req, t.start, from); i >= 0 {
			return i
		}
	}
	return -1
}

// scanUsable returns the first index in [from, to) whose candidate has a
// positive weight and is available, or -1.
func scanUsable(s *Set, req *Request, from, to int) int {
	for i := from; i < to; i++ {
		if s.cands[i].Weight > 0 && req.available(i) {
			return i
		}
	}
	return -1
}

// FillFirst is the fill_first strategy: it always picks the first usable
// candidate in tier order (priority, then ID), so one credential takes all
// new sessions until it becomes unavailable. It keeps no state. A pick costs
// O(k), k being the number of candidates skipped.
type FillFirst struct{}

// Name returns "fill_first".
func (FillFirst) Name() string { return NameFillFirst }

// Pick implements [Strategy].
func (FillFirst) Pick(_ *State, req *Request) int {
	s := req.Set
	if s == nil {
		return -1
	}
	return scanUsable(s, req, 0, len(s.cands))
}
