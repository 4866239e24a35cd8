package selector

import (
	"fmt"
	"sync"
)

// bindingKey is the fake cache's key; building it does not allocate.
type bindingKey struct{ session, model string }

// fakeBindings is a map-backed Bindings that counts its calls.
type fakeBindings struct {
	mu      sync.Mutex
	m       map[bindingKey]string
	binds   int
	touches int
	owner   map[bindingKey]string // the client of each BindFor
}

func newFakeBindings() *fakeBindings {
	return &fakeBindings{m: make(map[bindingKey]string)}
}

func (f *fakeBindings) Get(session, model string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.m[bindingKey{session, model}]
	return id, ok
}

func (f *fakeBindings) Bind(session, model, authID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.binds++
	f.m[bindingKey{session, model}] = authID
}

func (f *fakeBindings) BindFor(client, session, model, authID string) {
	f.Bind(session, model, authID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner == nil {
		f.owner = make(map[bindingKey]string)
	}
	f.owner[bindingKey{session, model}] = client
}

func (f *fakeBindings) Touch(session, model, authID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[bindingKey{session, model}] != authID {
		return false
	}
	f.touches++
	return true
}

func (f *fakeBindings) Unbind(session, model, authID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := bindingKey{session, model}
	if id, ok := f.m[k]; !ok || id != authID {
		return false
	}
	delete(f.m, k)
	return true
}

// bound returns the binding of session for model "m", "" when none.
func (f *fakeBindings) bound(session string) string {
	id, _ := f.Get(session, "m")
	return id
}

// boolAvail is an Availability backed by a slice: true means available.
type boolAvail []bool

func (b boolAvail) Available(i int) bool { return b[i] }

// allAvail returns an Availability under which every candidate of s is
// available.
func allAvail(s *Set) boolAvail {
	b := make(boolAvail, s.Len())
	for i := range b {
		b[i] = true
	}
	return b
}

// except returns an Availability under which the candidates of s with the
// given IDs are unavailable and all others are available.
func except(s *Set, ids ...string) boolAvail {
	b := allAvail(s)
	for _, id := range ids {
		if i, ok := s.Index(id); ok {
			b[i] = false
		}
	}
	return b
}

// cands builds candidates of priority 0 and weight 1 with the given IDs.
func cands(ids ...string) []Candidate {
	out := make([]Candidate, len(ids))
	for i, id := range ids {
		out[i] = Candidate{ID: id, Weight: 1}
	}
	return out
}

// numbered builds n candidates "c00000".. of priority 0 and weight 1.
func numbered(n int) []Candidate {
	out := make([]Candidate, n)
	for i := range out {
		out[i] = Candidate{ID: fmt.Sprintf("c%05d", i), Weight: 1}
	}
	return out
}

// pickID runs one pick and returns the chosen ID, "" for -1.
func pickID(s Strategy, st *State, req *Request) string {
	i := s.Pick(st, req)
	if i < 0 {
		return ""
	}
	return req.Set.At(i).ID
}

// allStrategies returns one of each strategy, in Names order.
func allStrategies() []Strategy {
	out := make([]Strategy, 0, len(Names))
	for _, n := range Names {
		s, err := New(n)
		if err != nil {
			panic(err)
		}
		out = append(out, s)
	}
	return out
}
