package selector

import (
	"slices"
	"strings"
	"testing"
)

func TestWeightedRoundRobinSequence(t *testing.T) {
	tests := []struct {
		name  string
		cands []Candidate
		picks int
		want  string // concatenated single-letter IDs
	}{
		{"nginx 5 1 1", []Candidate{{ID: "a", Weight: 5}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}}, 14, "aabacaaaabacaa"},
		{"equal weights", []Candidate{{ID: "a", Weight: 2}, {ID: "b", Weight: 2}}, 4, "abab"},
		{"weight 0 never", []Candidate{{ID: "a", Weight: 1}, {ID: "z", Weight: 0}, {ID: "b", Weight: 1}}, 4, "abab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSet("k", tc.cands)
			st := NewState()
			var b strings.Builder
			for range tc.picks {
				b.WriteString(pickID(WeightedRoundRobin{}, st, &Request{Set: s}))
			}
			if b.String() != tc.want {
				t.Errorf("sequence %s, want %s", b.String(), tc.want)
			}
		})
	}
}

func TestWeightedRoundRobinExactProportions(t *testing.T) {
	tests := [][]int{
		{3, 2, 1},
		{7, 3, 11, 1},
		{10000, 1, 9999},
		{4, 4, 4, 4, 4},
		{13, 0, 5, 8},
	}
	for _, weights := range tests {
		var cs []Candidate
		total := 0
		for i, w := range weights {
			cs = append(cs, Candidate{ID: string(rune('a' + i)), Weight: w})
			total += w
		}
		s := NewSet("k", cs)
		st := NewState()
		counts := make([]int, s.Len())
		const cycles = 3
		for c := 1; c <= cycles; c++ {
			for range total {
				counts[WeightedRoundRobin{}.Pick(st, &Request{Set: s})]++
			}
			for i, w := range weights {
				if counts[i] != c*w {
					t.Errorf("weights %v, after %d cycles: %s picked %d times, want %d", weights, c, cs[i].ID, counts[i], c*w)
				}
			}
		}
	}
}

func TestWeightedRoundRobinUnavailable(t *testing.T) {
	s := NewSet("k", []Candidate{{ID: "a", Weight: 2}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}})
	st := NewState()
	down := &Request{Set: s, Avail: except(s, "a")}
	var b strings.Builder
	for range 4 {
		b.WriteString(pickID(WeightedRoundRobin{}, st, down))
	}
	if b.String() != "bcbc" {
		t.Errorf("with a down: %s, want bcbc", b.String())
	}
	// a did not accumulate weight while down, so it does not burst now:
	// a full cycle is still exact and a is never picked three times running.
	up := &Request{Set: s}
	b.Reset()
	for range 8 {
		b.WriteString(pickID(WeightedRoundRobin{}, st, up))
	}
	seq := b.String()
	if n := strings.Count(seq[:4], "a"); n != 2 {
		t.Errorf("after recovery: %s, want a exactly twice in the first cycle", seq)
	}
	if strings.Contains(seq, "aaa") {
		t.Errorf("after recovery: %s bursts a", seq)
	}
}

func TestWeightedRoundRobinTiers(t *testing.T) {
	s := NewSet("k", []Candidate{
		{ID: "h", Priority: 1, Weight: 1},
		{ID: "l1", Priority: 0, Weight: 3},
		{ID: "l2", Priority: 0, Weight: 1},
	})
	st := NewState()
	var got []string
	for range 4 {
		got = append(got, pickID(WeightedRoundRobin{}, st, &Request{Set: s, Avail: except(s, "h")}))
	}
	if want := []string{"l1", "l1", "l2", "l1"}; !slices.Equal(got, want) {
		t.Errorf("lower tier sequence %v, want %v", got, want)
	}
	if got := pickID(WeightedRoundRobin{}, st, &Request{Set: s}); got != "h" {
		t.Errorf("higher tier back: picked %q, want h", got)
	}
}

// TestWeightedRoundRobinSurvivesRebuild checks that current weights are
// kept by candidate ID across Set rebuilds with the same key, including one
// that adds a candidate.
func TestWeightedRoundRobinSurvivesRebuild(t *testing.T) {
	cs := []Candidate{{ID: "a", Weight: 5}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}}
	st := NewState()
	var b strings.Builder
	for range 7 {
		s := NewSet("k", cs) // a fresh Set every pick, as after reloads
		b.WriteString(pickID(WeightedRoundRobin{}, st, &Request{Set: s}))
	}
	if b.String() != "aabacaa" {
		t.Errorf("across rebuilds: %s, want aabacaa", b.String())
	}

	// Mid-cycle, rebuild with an extra zero-history candidate sorted first.
	st = NewState()
	s := NewSet("k", cs)
	b.Reset()
	for range 3 {
		b.WriteString(pickID(WeightedRoundRobin{}, st, &Request{Set: s}))
	}
	s2 := NewSet("k", append([]Candidate{{ID: "0", Weight: 0}}, cs...))
	for range 4 {
		b.WriteString(pickID(WeightedRoundRobin{}, st, &Request{Set: s2}))
	}
	if b.String() != "aabacaa" {
		t.Errorf("rebuild mid-cycle: %s, want aabacaa", b.String())
	}

	// A different key has its own weights.
	other := NewSet("other", cs)
	if got := pickID(WeightedRoundRobin{}, st, &Request{Set: other}); got != "a" {
		t.Errorf("other key first pick %q, want a", got)
	}
}

func TestWeightedRoundRobinForget(t *testing.T) {
	s := NewSet("k", []Candidate{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}})
	st := NewState()
	pickID(WeightedRoundRobin{}, st, &Request{Set: s}) // a
	st.Forget(func(string) bool { return false })
	if got := pickID(WeightedRoundRobin{}, st, &Request{Set: s}); got != "a" {
		t.Errorf("after Forget picked %q, want a", got)
	}
}
