package selector

import (
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// Bounds of a State's resource pins.
const (
	// MaxPins is how many resource pins a State keeps. Past it, the least
	// recently used pin goes first, and a client holding a quarter of
	// them loses its own oldest pin to a new one, so one client creating
	// resources in bulk cannot push out everybody else's pins.
	MaxPins = 1 << 16
	// PinTTL is how long a pin lives after its last use: as long as
	// OpenAI keeps a stored response (30 days; Anthropic keeps a batch's
	// results 29 days).
	PinTTL = 30 * 24 * time.Hour
)

// Pin remembers that the credential authID created the stored resource
// named resource (an OpenAI response, an Anthropic message batch) for
// client ("" for none; see [Request.Client]). Resources live with the
// account that made them, so [Affinity.Pick] sends a request whose
// [Request.Pin] names the resource to authID first. Pins are not session
// bindings: they are kept apart, bounded by [MaxPins], and live for
// [PinTTL] after their last use.
func (st *State) Pin(client, resource, authID string) {
	if resource == "" {
		return
	}
	st.pinCache().BindFor(client, resource, "", authID)
}

// pinned returns the credential that created resource, if known.
func (st *State) pinned(resource string) (authID string, ok bool) {
	st.mu.RLock()
	pins := st.pins
	st.mu.RUnlock()
	if pins == nil {
		return "", false
	}
	return pins.Get(resource, "")
}

// pinCache returns the pins, creating them on first use.
func (st *State) pinCache() *session.Cache {
	st.mu.RLock()
	pins := st.pins
	st.mu.RUnlock()
	if pins != nil {
		return pins
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pins == nil {
		// Expired pins need no sweeping: lookups drop them, and the
		// bound holds either way.
		st.pins = session.NewCache(session.Options{TTL: PinTTL, MaxEntries: MaxPins, Now: clock.Now})
	}
	return st.pins
}

// pinnedCandidate returns the index of the credential pinned to req.Pin
// when it is in the request's Set and available.
func pinnedCandidate(st *State, req *Request) (int, bool) {
	if req.Pin == "" {
		return -1, false
	}
	id, ok := st.pinned(req.Pin)
	if !ok {
		return -1, false
	}
	return usableBinding(req, id)
}
