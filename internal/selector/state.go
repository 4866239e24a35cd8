package selector

import (
	"sync"
	"sync/atomic"

	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// State holds what the selector remembers across requests and config
// reloads for one pool: a round-robin cursor per Set key, smooth weighted
// round-robin current weights per Set key (carried over by candidate ID
// when a Set is rebuilt), and the resource pins (see [State.Pin]). Fill
// first and rendezvous keep nothing. Keep one State per pool for as long as
// the pool lives, across reloads.
//
// Set keys usually name a model, and model names come from clients, so a
// State remembers at most [MaxStateKeys] Set keys per strategy; past that,
// an arbitrary one is forgotten to make room, and that Set starts afresh
// (its round robin resumes from its first candidate).
//
// A State is safe for concurrent use. The zero value is ready to use.
type State struct {
	mu   sync.RWMutex
	rr   map[string]*atomic.Uint64
	wrr  map[string]*wrrState
	pins *session.Cache // nil until the first pin
}

// MaxStateKeys is the number of Set keys a [State] remembers per strategy.
const MaxStateKeys = 4096

// NewState returns an empty State.
func NewState() *State { return &State{} }

// Forget drops what is remembered for every Set key for which keep returns
// false, e.g. models or providers no longer configured. A Set whose key was
// forgotten starts afresh on its next pick. keep is called with the State
// locked and must not use it.
func (st *State) Forget(keep func(setKey string) bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := range st.rr {
		if !keep(k) {
			delete(st.rr, k)
		}
	}
	for k := range st.wrr {
		if !keep(k) {
			delete(st.wrr, k)
		}
	}
}

// cursor returns the round-robin cursor of the Set key, creating it on
// first use. Once created, looking it up does not allocate.
func (st *State) cursor(key string) *atomic.Uint64 {
	return lookup(st, &st.rr, key)
}

// weights returns the smooth weighted round-robin state of the Set key,
// creating it on first use.
func (st *State) weights(key string) *wrrState {
	return lookup(st, &st.wrr, key)
}

// lookup returns the value of key in *m, one of st's per-Set-key maps,
// creating the map and a zero value on first use. Once created, looking a
// value up does not allocate.
func lookup[V any](st *State, m *map[string]*V, key string) *V {
	st.mu.RLock()
	v := (*m)[key]
	st.mu.RUnlock()
	if v != nil {
		return v
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if v = (*m)[key]; v == nil {
		if *m == nil {
			*m = make(map[string]*V)
		}
		makeRoom(*m)
		v = new(V)
		(*m)[key] = v
	}
	return v
}

// makeRoom forgets an arbitrary key of m when m holds MaxStateKeys keys.
// Go's map iteration starts at a random position, so which key goes
// cannot be steered by the order keys were added in. The caller holds the
// State's lock.
func makeRoom[V any](m map[string]V) {
	if len(m) < MaxStateKeys {
		return
	}
	for k := range m {
		delete(m, k)
		return
	}
}
