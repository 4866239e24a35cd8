package selector

import (
	"cmp"
	"slices"
	"strings"

	"github.com/caddy-llm-proxy/llmproxy/internal/stablehash"
)

// MaxWeight is the largest candidate weight. [NewSet] clamps weights to
// [0, MaxWeight].
const MaxWeight = 1_000_000

// Candidate is a credential eligible for one model, as strategies see it.
type Candidate struct {
	// ID identifies the credential within its pool.
	ID string
	// Priority orders tiers: higher tiers are tried first.
	Priority int
	// Weight is the candidate's share of new sessions, 0..MaxWeight. A
	// candidate with weight 0 is never picked for a new session, though a
	// session already bound to it keeps using it.
	Weight int
	// Usage reports how much of the candidate's usage limits is used, for
	// [Steer]; nil: never near a limit.
	Usage Usage
}

// tier is a run of candidates with the same priority within a Set.
type tier struct {
	start, end int  // candidate indices [start, end)
	positive   int  // how many candidates have weight > 0
	uniform    bool // every positive weight in the tier is the same
}

// Set is an immutable list of the candidates eligible for one pool and
// model, sorted by priority (descending) then ID and grouped into tiers of
// equal priority. It is built once per credential-set change and model and
// then shared by concurrent requests; all its methods are safe for
// concurrent use.
type Set struct {
	key    string
	cands  []Candidate
	index  map[string]int
	tiers  []tier
	idHash []uint64 // mixed FNV-1a hash of each candidate ID, for rendezvous
}

// NewSet returns the Set of cands. The key names the Set's entries in a
// [State] (its round-robin cursor and weighted round-robin weights), so a
// rebuilt Set with the same key continues where the previous one left off;
// callers use e.g. "anthropic|claude-sonnet-4-5". NewSet copies cands, so the
// caller may reuse the slice. Weights are clamped to [0, MaxWeight]; when
// an ID occurs more than once only its first occurrence is kept.
func NewSet(key string, cands []Candidate) *Set {
	s := &Set{
		key:   key,
		cands: make([]Candidate, 0, len(cands)),
		index: make(map[string]int, len(cands)),
	}
	for _, c := range cands {
		if _, dup := s.index[c.ID]; dup {
			continue
		}
		s.index[c.ID] = -1
		c.Weight = min(max(c.Weight, 0), MaxWeight)
		s.cands = append(s.cands, c)
	}
	slices.SortFunc(s.cands, func(a, b Candidate) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})

	s.idHash = make([]uint64, len(s.cands))
	tierWeight := 0 // the first positive weight seen in the current tier
	for i, c := range s.cands {
		s.index[c.ID] = i
		s.idHash[i] = stablehash.Mix(stablehash.String(c.ID))
		if i == 0 || c.Priority != s.cands[i-1].Priority {
			s.tiers = append(s.tiers, tier{start: i, uniform: true})
			tierWeight = 0
		}
		t := &s.tiers[len(s.tiers)-1]
		t.end = i + 1
		if c.Weight > 0 {
			if tierWeight == 0 {
				tierWeight = c.Weight
			} else if c.Weight != tierWeight {
				t.uniform = false
			}
			t.positive++
		}
	}
	return s
}

// Key returns the key the Set was built with.
func (s *Set) Key() string { return s.key }

// Len returns the number of candidates.
func (s *Set) Len() int { return len(s.cands) }

// At returns candidate i, 0 <= i < Len(), in priority-then-ID order.
func (s *Set) At(i int) Candidate { return s.cands[i] }

// Index returns the position of the candidate with the given ID, and
// whether there is one. It takes constant time and does not allocate.
func (s *Set) Index(id string) (int, bool) {
	i, ok := s.index[id]
	return i, ok
}
