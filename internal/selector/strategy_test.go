package selector

import (
	"slices"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", NameRoundRobin},
		{"round_robin", NameRoundRobin},
		{"fill_first", NameFillFirst},
		{"weighted_round_robin", NameWeightedRoundRobin},
		{"rendezvous", NameRendezvous},
	} {
		s, err := New(tc.in)
		if err != nil {
			t.Fatalf("New(%q): %v", tc.in, err)
		}
		if s.Name() != tc.want {
			t.Errorf("New(%q).Name() = %q, want %q", tc.in, s.Name(), tc.want)
		}
	}
	_, err := New("random")
	if err == nil {
		t.Fatal("New(random) succeeded")
	}
	for _, n := range append([]string{`"random"`}, Names...) {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not mention %s", err, n)
		}
	}
}

// tieredSet has tier 10 {h1, h2}, tier 5 {m0 (weight 0), m1}, tier 0 {l1, l2}.
func tieredSet() *Set {
	return NewSet("tiered", []Candidate{
		{ID: "l1", Priority: 0, Weight: 1},
		{ID: "h2", Priority: 10, Weight: 1},
		{ID: "m1", Priority: 5, Weight: 1},
		{ID: "l2", Priority: 0, Weight: 1},
		{ID: "h1", Priority: 10, Weight: 1},
		{ID: "m0", Priority: 5, Weight: 0},
	})
}

// TestStrategiesTiers checks, for every strategy and with and without a
// hash key, that picks come from the highest tier with a usable candidate.
func TestStrategiesTiers(t *testing.T) {
	s := tieredSet()
	tests := []struct {
		name        string
		unavailable []string
		want        []string // acceptable picks; empty means -1
	}{
		{"all available", nil, []string{"h1", "h2"}},
		{"one high down", []string{"h1"}, []string{"h2"}},
		{"high tier down", []string{"h1", "h2"}, []string{"m1"}},
		{"weight 0 is skipped", []string{"h1", "h2", "m1"}, []string{"l1", "l2"}},
		{"only weight 0 left", []string{"h1", "h2", "m1", "l1", "l2"}, nil},
		{"all down", []string{"h1", "h2", "m0", "m1", "l1", "l2"}, nil},
	}
	for _, strat := range allStrategies() {
		for _, hashKey := range []string{"", "session-1"} {
			for _, tc := range tests {
				t.Run(strat.Name()+"/"+hashKey+"/"+tc.name, func(t *testing.T) {
					st := NewState()
					req := &Request{Set: s, Avail: except(s, tc.unavailable...), HashKey: hashKey}
					for range 20 {
						got := pickID(strat, st, req)
						if len(tc.want) == 0 {
							if got != "" {
								t.Fatalf("picked %q, want none", got)
							}
							continue
						}
						if !slices.Contains(tc.want, got) {
							t.Fatalf("picked %q, want one of %v", got, tc.want)
						}
					}
				})
			}
		}
	}
}

func TestStrategiesEmpty(t *testing.T) {
	for _, strat := range allStrategies() {
		for _, s := range []*Set{nil, NewSet("empty", nil), NewSet("zero", []Candidate{{ID: "a"}})} {
			if i := strat.Pick(NewState(), &Request{Set: s, HashKey: "k"}); i != -1 {
				t.Errorf("%s: Pick on %v = %d, want -1", strat.Name(), s, i)
			}
		}
	}
}

func TestAvailableFunc(t *testing.T) {
	s := NewSet("k", cands("a", "b", "c"))
	odd := AvailableFunc(func(i int) bool { return i%2 == 1 })
	for _, strat := range allStrategies() {
		if got := pickID(strat, NewState(), &Request{Set: s, Avail: odd, HashKey: "x"}); got != "b" {
			t.Errorf("%s picked %q, want b (the only available)", strat.Name(), got)
		}
	}
}

func TestStrategiesNilAvailMeansAll(t *testing.T) {
	s := NewSet("k", cands("a", "b"))
	for _, strat := range allStrategies() {
		if i := strat.Pick(NewState(), &Request{Set: s, HashKey: "x"}); i < 0 {
			t.Errorf("%s: Pick with nil Avail = -1", strat.Name())
		}
	}
}

func TestRoundRobinEvenSpread(t *testing.T) {
	s := NewSet("k", cands("a", "b", "c", "d"))
	tests := []struct {
		name        string
		unavailable []string
		picks       int
		want        map[string]int
	}{
		{"all available", nil, 400, map[string]int{"a": 100, "b": 100, "c": 100, "d": 100}},
		// The cursor still moves over b, so b's turns go to its successor.
		{"b down", []string{"b"}, 400, map[string]int{"a": 100, "c": 200, "d": 100}},
		{"only d", []string{"a", "b", "c"}, 10, map[string]int{"d": 10}},
		{"only a (wraps around)", []string{"b", "c", "d"}, 10, map[string]int{"a": 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			req := &Request{Set: s, Avail: except(s, tc.unavailable...)}
			got := map[string]int{}
			for range tc.picks {
				got[pickID(RoundRobin{}, st, req)]++
			}
			for id, n := range tc.want {
				if got[id] != n {
					t.Errorf("%s picked %d times, want %d (all: %v)", id, got[id], n, got)
				}
			}
		})
	}
}

func TestRoundRobinSequence(t *testing.T) {
	s := NewSet("k", cands("c", "a", "b"))
	st := NewState()
	req := &Request{Set: s}
	var got []string
	for range 6 {
		got = append(got, pickID(RoundRobin{}, st, req))
	}
	if want := []string{"a", "b", "c", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("sequence %v, want %v", got, want)
	}
}

func TestRoundRobinCursorPerSetKey(t *testing.T) {
	st := NewState()
	x := &Request{Set: NewSet("x", cands("a", "b"))}
	y := &Request{Set: NewSet("y", cands("a", "b"))}
	var got []string
	for range 2 {
		got = append(got, pickID(RoundRobin{}, st, x), pickID(RoundRobin{}, st, y))
	}
	if want := []string{"a", "a", "b", "b"}; !slices.Equal(got, want) {
		t.Errorf("interleaved picks %v, want %v (independent cursors)", got, want)
	}

	// A rebuilt Set with the same key continues the cursor.
	pickID(RoundRobin{}, st, x) // a
	x2 := &Request{Set: NewSet("x", cands("a", "b"))}
	if got := pickID(RoundRobin{}, st, x2); got != "b" {
		t.Errorf("rebuilt set picked %q, want b (cursor kept)", got)
	}

	// Forget drops the cursor: the next pick starts from the beginning.
	pickID(RoundRobin{}, st, x) // a
	st.Forget(func(k string) bool { return k != "x" })
	if got := pickID(RoundRobin{}, st, x); got != "a" {
		t.Errorf("after Forget picked %q, want a", got)
	}
	if got := pickID(RoundRobin{}, st, y); got != "a" {
		t.Errorf("kept key y picked %q, want a (its cursor was at 2)", got)
	}
}

func TestZeroStateUsable(t *testing.T) {
	var st State
	s := NewSet("k", cands("a", "b"))
	for _, strat := range allStrategies() {
		if i := strat.Pick(&st, &Request{Set: s}); i < 0 {
			t.Errorf("%s on zero State = -1", strat.Name())
		}
	}
}

func TestRoundRobinDoesNotAllocate(t *testing.T) {
	s := NewSet("k", numbered(100))
	st := NewState()
	req := &Request{Set: s, Avail: allAvail(s)}
	RoundRobin{}.Pick(st, req) // create the cursor
	if n := testing.AllocsPerRun(100, func() { RoundRobin{}.Pick(st, req) }); n != 0 {
		t.Errorf("round robin allocates %v times per pick", n)
	}
}

func TestFillFirstSticks(t *testing.T) {
	s := NewSet("k", []Candidate{
		{ID: "b", Priority: 1, Weight: 1},
		{ID: "a", Priority: 1, Weight: 0},
		{ID: "c", Priority: 1, Weight: 1},
		{ID: "low", Priority: 0, Weight: 1},
	})
	st := NewState()
	steps := []struct {
		unavailable []string
		want        string
	}{
		{nil, "b"},
		{nil, "b"},
		{[]string{"b"}, "c"},
		{[]string{"b"}, "c"},
		{nil, "b"}, // b recovered: back to it
		{[]string{"b", "c"}, "low"},
		{[]string{"b", "c", "low"}, ""},
	}
	for n, step := range steps {
		req := &Request{Set: s, Avail: except(s, step.unavailable...)}
		if got := pickID(FillFirst{}, st, req); got != step.want {
			t.Errorf("step %d (down %v): picked %q, want %q", n, step.unavailable, got, step.want)
		}
	}
}
