package selector

import (
	"fmt"
	"sync"
	"testing"
)

// affinityReq builds a request for session s (and fallback fb) on model "m".
func affinityReq(set *Set, avail Availability, s, fb string) *Request {
	return &Request{Set: set, Avail: avail, Session: s, Fallback: fb, HashKey: s, Model: "m"}
}

func TestAffinityNoSession(t *testing.T) {
	b := newFakeBindings()
	a := &Affinity{Strategy: RoundRobin{}, Bindings: b}
	s := NewSet("k", cands("a", "b"))
	st := NewState()
	var got []string
	for range 2 {
		i, d := a.Pick(st, affinityReq(s, nil, "", ""))
		if d != DecisionNone {
			t.Errorf("decision %q, want none", d)
		}
		got = append(got, s.At(i).ID)
	}
	if got[0] == got[1] {
		t.Errorf("picks %v: round robin not applied", got)
	}
	if b.binds != 0 {
		t.Errorf("%d binds without a session", b.binds)
	}

	// Nil Bindings turns affinity off.
	off := &Affinity{Strategy: FillFirst{}}
	if i, d := off.Pick(st, affinityReq(s, nil, "sess", "")); i != 0 || d != DecisionNone {
		t.Errorf("nil Bindings: %d, %q; want 0, none", i, d)
	}
	off.Success(affinityReq(s, nil, "sess", ""), "a")

	// No Set: nothing to pick, nothing bound.
	b.Bind("sess", "m", "a")
	if i, d := a.Pick(st, affinityReq(nil, nil, "sess", "")); i != -1 || d != DecisionRebind {
		t.Errorf("nil Set: %d, %q; want -1, rebind", i, d)
	}
	off.Failure(affinityReq(s, nil, "sess", ""), "a")
}

// TestAffinityScenarios runs sequences of picks for one session "s" (with
// fallback "f" where given) against the tiered set h1,h2 (10) / m0,m1 (5) /
// l1,l2 (0), m0 having weight 0.
func TestAffinityScenarios(t *testing.T) {
	type step struct {
		down     []string // unavailable candidates
		fallback string
		want     string // picked ID, "" for -1
		decision Decision
		bound    string // the session's binding afterwards
	}
	tests := []struct {
		name     string
		strategy Strategy
		preset   map[string]string // bindings before the first step
		set      *Set              // default tieredSet()
		steps    []step
		fallback string // the fallback binding at the end, if checked
	}{
		{
			name:     "miss then hit",
			strategy: RoundRobin{},
			steps: []step{
				{want: "h1", decision: DecisionMiss, bound: "h1"},
				{want: "h1", decision: DecisionHit, bound: "h1"},
				{want: "h1", decision: DecisionHit, bound: "h1"},
			},
		},
		{
			name:     "rebind when bound credential unavailable",
			strategy: FillFirst{},
			preset:   map[string]string{"s": "h1"},
			steps: []step{
				{want: "h1", decision: DecisionHit, bound: "h1"},
				{down: []string{"h1"}, want: "h2", decision: DecisionRebind, bound: "h2"},
				{want: "h2", decision: DecisionHit, bound: "h2"}, // h1 back: stays on h2
			},
		},
		{
			name:     "rebind when bound credential left the set",
			strategy: FillFirst{},
			preset:   map[string]string{"s": "deleted"},
			steps: []step{
				{want: "h1", decision: DecisionRebind, bound: "h1"},
			},
		},
		{
			name:     "keep bound over recovered higher tier",
			strategy: RoundRobin{},
			steps: []step{
				{down: []string{"h1", "h2"}, want: "m1", decision: DecisionMiss, bound: "m1"},
				{want: "m1", decision: DecisionHit, bound: "m1"},
			},
		},
		{
			name:     "bound to weight 0 is kept",
			strategy: RoundRobin{},
			preset:   map[string]string{"s": "m0"},
			steps: []step{
				{want: "m0", decision: DecisionHit, bound: "m0"},
				{down: []string{"m0"}, want: "h1", decision: DecisionRebind, bound: "h1"},
			},
		},
		{
			name:     "nothing available leaves bindings alone",
			strategy: RoundRobin{},
			preset:   map[string]string{"s": "h1"},
			steps: []step{
				{down: []string{"h1", "h2", "m0", "m1", "l1", "l2"}, want: "", decision: DecisionRebind, bound: "h1"},
				{want: "h1", decision: DecisionHit, bound: "h1"},
			},
		},
		{
			name:     "nothing available on a miss",
			strategy: RoundRobin{},
			steps: []step{
				{down: []string{"h1", "h2", "m1", "l1", "l2"}, want: "", decision: DecisionMiss, bound: ""},
			},
		},
		{
			name:     "inherit fallback binding",
			strategy: FillFirst{},
			preset:   map[string]string{"f": "l2"},
			steps: []step{
				{fallback: "f", want: "l2", decision: DecisionHit, bound: "l2"},
				{want: "l2", decision: DecisionHit, bound: "l2"},
			},
			fallback: "l2",
		},
		{
			name:     "own binding wins over fallback",
			strategy: FillFirst{},
			preset:   map[string]string{"s": "m1", "f": "l2"},
			steps: []step{
				{fallback: "f", want: "m1", decision: DecisionHit, bound: "m1"},
			},
			fallback: "l2",
		},
		{
			name:     "own binding down, fallback usable",
			strategy: FillFirst{},
			preset:   map[string]string{"s": "m1", "f": "l2"},
			steps: []step{
				{down: []string{"m1"}, fallback: "f", want: "l2", decision: DecisionHit, bound: "l2"},
			},
			fallback: "l2",
		},
		{
			name:     "fallback down: strategy picks, fallback binding kept",
			strategy: FillFirst{},
			preset:   map[string]string{"f": "l2"},
			steps: []step{
				{down: []string{"l2"}, fallback: "f", want: "h1", decision: DecisionMiss, bound: "h1"},
			},
			fallback: "l2",
		},
		{
			name:     "unbound fallback is bound with the session",
			strategy: FillFirst{},
			steps: []step{
				{fallback: "f", want: "h1", decision: DecisionMiss, bound: "h1"},
			},
			fallback: "h1",
		},
		{
			name:     "rendezvous rebinds to the hash pick",
			strategy: Rendezvous{},
			set:      NewSet("r", tenCandidates(func(int) int { return 1 })),
			preset:   map[string]string{"s": "auth-7"},
			steps: []step{
				{want: "auth-7", decision: DecisionHit, bound: "auth-7"},
				// Rendezvous's own choice for "s" is what rebinding lands on.
				{down: []string{"auth-7"}, want: rendezvousPickFor("s", "auth-7"), decision: DecisionRebind, bound: rendezvousPickFor("s", "auth-7")},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := tc.set
			if set == nil {
				set = tieredSet()
			}
			b := newFakeBindings()
			for sess, id := range tc.preset {
				b.Bind(sess, "m", id)
			}
			a := &Affinity{Strategy: tc.strategy, Bindings: b}
			st := NewState()
			for n, step := range tc.steps {
				i, d := a.Pick(st, affinityReq(set, except(set, step.down...), "s", step.fallback))
				got := ""
				if i >= 0 {
					got = set.At(i).ID
				}
				if got != step.want || d != step.decision {
					t.Errorf("step %d: picked %q (%s), want %q (%s)", n, got, d, step.want, step.decision)
				}
				if bound := b.bound("s"); bound != step.bound {
					t.Errorf("step %d: session bound to %q, want %q", n, bound, step.bound)
				}
			}
			if tc.fallback != "" {
				if got := b.bound("f"); got != tc.fallback {
					t.Errorf("fallback bound to %q, want %q", got, tc.fallback)
				}
			}
		})
	}
}

// rendezvousPickFor returns rendezvous's pick for key among the
// uniform-weight tenCandidates with the given ones unavailable.
func rendezvousPickFor(key string, down ...string) string {
	s := NewSet("r", tenCandidates(func(int) int { return 1 }))
	return pickID(Rendezvous{}, NewState(), &Request{Set: s, Avail: except(s, down...), HashKey: key})
}

func TestAffinityBindingsPerModel(t *testing.T) {
	b := newFakeBindings()
	a := &Affinity{Strategy: RoundRobin{}, Bindings: b}
	s := NewSet("k", cands("a", "b"))
	st := NewState()
	req := affinityReq(s, nil, "s", "")
	i, _ := a.Pick(st, req)
	other := *req
	other.Model = "other"
	j, d := a.Pick(st, &other)
	if d != DecisionMiss || i == j {
		t.Errorf("second model: %d (%s), first %d; want a miss spreading to the other credential", j, d, i)
	}
}

func TestAffinitySuccessAndFailure(t *testing.T) {
	s := NewSet("k", cands("a", "b"))
	b := newFakeBindings()
	a := &Affinity{Strategy: FillFirst{}, Bindings: b}
	req := affinityReq(s, nil, "s", "f")
	b.Bind("s", "m", "a")
	b.Bind("f", "m", "a")

	a.Success(req, "b") // not bound to b: no refresh
	if b.touches != 0 {
		t.Errorf("Success for an unbound credential touched %d times", b.touches)
	}
	a.Success(req, "a")
	if b.touches != 1 {
		t.Errorf("Success touched %d times, want 1", b.touches)
	}

	// The binding moved to b meanwhile (another request rebound it): a's
	// failure must not remove it.
	b.Bind("s", "m", "b")
	a.Failure(req, "a")
	if got := b.bound("s"); got != "b" {
		t.Errorf("after Failure(a) with binding on b: bound to %q, want b", got)
	}
	if got := b.bound("f"); got != "" {
		t.Errorf("fallback still bound to failed a: %q", got)
	}
	a.Failure(req, "b")
	if got := b.bound("s"); got != "" {
		t.Errorf("after Failure(b): still bound to %q", got)
	}

	// No session: nothing to do.
	none := affinityReq(s, nil, "", "")
	a.Success(none, "a")
	a.Failure(none, "a")
}

func TestAffinityHitDoesNotAllocate(t *testing.T) {
	s := NewSet("k", numbered(1000))
	b := newFakeBindings()
	b.Bind("s", "m", s.At(500).ID)
	a := &Affinity{Strategy: WeightedRoundRobin{}, Bindings: b}
	st := NewState()
	req := affinityReq(s, allAvail(s), "s", "f")
	if n := testing.AllocsPerRun(100, func() {
		if _, d := a.Pick(st, req); d != DecisionHit {
			t.Fatalf("decision %q, want hit", d)
		}
	}); n != 0 {
		t.Errorf("affinity hit allocates %v times per pick", n)
	}
}

// TestAffinityConcurrent runs every strategy from many goroutines over
// shared sessions, Sets rebuilt concurrently and State housekeeping, for
// the race detector, and checks that every binding ends up on a candidate
// of the Set and that each session is counted once as a miss.
func TestAffinityConcurrent(t *testing.T) {
	const (
		workers  = 8
		sessions = 64
		rounds   = 200
	)
	cs := numbered(16)
	for i := range cs {
		cs[i].Priority = i % 2
		cs[i].Weight = i%4 + 1
	}
	for _, strat := range allStrategies() {
		t.Run(strat.Name(), func(t *testing.T) {
			b := newFakeBindings()
			a := &Affinity{Strategy: strat, Bindings: b}
			st := NewState()
			var mu sync.Mutex
			decisions := map[Decision]int{}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					local := map[Decision]int{}
					for r := range rounds {
						s := NewSet("k", cs) // as if a reload rebuilt it
						sess := fmt.Sprintf("s%d", (w*rounds+r)%sessions)
						req := affinityReq(s, nil, sess, "")
						if r%10 == 0 {
							req.Session = "" // some requests without a session
						}
						i, d := a.Pick(st, req)
						if i < 0 {
							t.Error("no pick with everything available")
							return
						}
						local[d]++
						if r%7 == 0 {
							a.Failure(req, s.At(i).ID)
						} else {
							a.Success(req, s.At(i).ID)
						}
						if r%50 == 0 {
							st.Forget(func(string) bool { return true })
						}
					}
					mu.Lock()
					for d, n := range local {
						decisions[d] += n
					}
					mu.Unlock()
				})
			}
			wg.Wait()
			if decisions[DecisionRebind] != 0 {
				t.Errorf("%d rebinds with every credential available", decisions[DecisionRebind])
			}
			if total := decisions[DecisionHit] + decisions[DecisionMiss] + decisions[DecisionNone]; total != workers*rounds {
				t.Errorf("decisions %v add up to %d, want %d", decisions, total, workers*rounds)
			}
			s := NewSet("k", cs)
			for k, id := range b.m {
				if _, ok := s.Index(id); !ok {
					t.Errorf("session %v bound to unknown %q", k, id)
				}
			}
		})
	}
}
