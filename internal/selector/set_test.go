package selector

import (
	"slices"
	"testing"
)

func TestNewSetSortsAndGroups(t *testing.T) {
	in := []Candidate{
		{ID: "b", Priority: 0, Weight: 1},
		{ID: "z", Priority: 5, Weight: 2},
		{ID: "a", Priority: 0, Weight: 3},
		{ID: "m", Priority: 5, Weight: 4},
		{ID: "low", Priority: -1, Weight: 5},
	}
	s := NewSet("k", in)
	in[0].ID = "mutated" // NewSet must have copied

	if s.Key() != "k" {
		t.Errorf("Key() = %q, want k", s.Key())
	}
	var got []string
	for i := range s.Len() {
		got = append(got, s.At(i).ID)
	}
	if want := []string{"m", "z", "a", "b", "low"}; !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	for i, id := range got {
		if j, ok := s.Index(id); !ok || j != i {
			t.Errorf("Index(%q) = %d, %v; want %d, true", id, j, ok, i)
		}
	}
	if _, ok := s.Index("mutated"); ok {
		t.Error("Index found an ID changed in the caller's slice after NewSet")
	}
	wantTiers := []tier{
		{start: 0, end: 2, positive: 2, uniform: false},
		{start: 2, end: 4, positive: 2, uniform: false},
		{start: 4, end: 5, positive: 1, uniform: true},
	}
	if !slices.Equal(s.tiers, wantTiers) {
		t.Errorf("tiers = %+v, want %+v", s.tiers, wantTiers)
	}
}

func TestNewSetNormalises(t *testing.T) {
	s := NewSet("k", []Candidate{
		{ID: "neg", Weight: -3},
		{ID: "big", Weight: MaxWeight + 1},
		{ID: "dup", Weight: 7},
		{ID: "dup", Weight: 9},
		{ID: "zero", Weight: 0},
		{ID: "two", Weight: 2},
	})
	if s.Len() != 5 {
		t.Fatalf("Len() = %d, want 5 (duplicate dropped)", s.Len())
	}
	weight := func(id string) int {
		i, ok := s.Index(id)
		if !ok {
			t.Fatalf("Index(%q) not found", id)
		}
		return s.At(i).Weight
	}
	for id, want := range map[string]int{"neg": 0, "big": MaxWeight, "dup": 7, "zero": 0, "two": 2} {
		if got := weight(id); got != want {
			t.Errorf("weight of %s = %d, want %d", id, got, want)
		}
	}
	if tr := s.tiers[0]; tr.positive != 3 || tr.uniform {
		t.Errorf("tier = %+v, want 3 positive, not uniform", tr)
	}
}

func TestNewSetEmpty(t *testing.T) {
	s := NewSet("k", nil)
	if s.Len() != 0 || len(s.tiers) != 0 {
		t.Errorf("empty set: Len %d, tiers %v", s.Len(), s.tiers)
	}
	if _, ok := s.Index("x"); ok {
		t.Error("Index on an empty set found something")
	}
}

func TestSetIndexDoesNotAllocate(t *testing.T) {
	s := NewSet("k", numbered(100))
	id := s.At(42).ID
	if n := testing.AllocsPerRun(100, func() { s.Index(id) }); n != 0 {
		t.Errorf("Index allocates %v times per call", n)
	}
}
