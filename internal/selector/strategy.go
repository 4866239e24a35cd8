package selector

import (
	"fmt"
	"strings"
)

// Strategy names, as written in the Caddyfile's routing block.
const (
	NameRoundRobin         = "round_robin"
	NameFillFirst          = "fill_first"
	NameWeightedRoundRobin = "weighted_round_robin"
	NameRendezvous         = "rendezvous"
)

// Names lists the strategy names [New] accepts, the default first.
var Names = []string{NameRoundRobin, NameFillFirst, NameWeightedRoundRobin, NameRendezvous}

// Availability reports, per request, whether candidate i (an index into the
// request's Set) can be used now: not cooling for this model and not already
// tried in this request. It is called during Pick, possibly under a lock
// held by the strategy, so it must be quick and must not call back into
// this package.
type Availability interface {
	Available(i int) bool
}

// AvailableFunc adapts a function to [Availability].
type AvailableFunc func(i int) bool

// Available calls f(i).
func (f AvailableFunc) Available(i int) bool { return f(i) }

// Request is one selection.
type Request struct {
	// Set holds the candidates eligible for the request's model.
	Set *Set
	// Avail reports which candidates can be used now; nil means all of them.
	Avail Availability
	// Session is the bound session ID; "" when affinity is off or the
	// request has no session.
	Session string
	// Fallback is an optional second session ID whose binding the session
	// inherits when it has none of its own (turn 2 of a conversation
	// inherits turn 1's binding).
	Fallback string
	// HashKey is the ID rendezvous hashes; "" means no session, and
	// rendezvous falls back to round robin.
	HashKey string
	// Model is the model bindings are kept for, without thinking suffixes.
	Model string
	// Client identifies who sent the request (the authenticated user, or
	// the client's address when there is none), so that the bindings it
	// makes count against its own share of the cache; "" for none.
	Client string
	// Pin names the stored resource the request refers to (an OpenAI
	// response, an Anthropic message batch); "" for none. The credential
	// that created it (see [State.Pin]) goes first, with or without
	// session affinity.
	Pin string

	// steered is the Availability Steer puts in Avail while its Strategy
	// picks (kept here so that a steered pick does not allocate).
	steered steeredAvail
}

// available reports whether candidate i may be used by this request,
// whatever its weight.
func (r *Request) available(i int) bool {
	return r.Avail == nil || r.Avail.Available(i)
}

// Strategy picks a candidate for a request without a usable binding.
// Implementations are stateless; what they remember lives in a [State].
type Strategy interface {
	// Name returns the strategy's name as listed in [Names].
	Name() string
	// Pick returns the index in req.Set of the chosen candidate, or -1 when
	// none is available. Only candidates with weight > 0 that req.Avail
	// reports available are considered. The highest-priority tier with any
	// such candidate is used; lower tiers only when every higher one has
	// none. st must not be nil.
	Pick(st *State, req *Request) int
}

// New returns the strategy with the given name; "" means round_robin.
// An unknown name is an error that lists the allowed names.
func New(name string) (Strategy, error) {
	switch name {
	case "", NameRoundRobin:
		return RoundRobin{}, nil
	case NameFillFirst:
		return FillFirst{}, nil
	case NameWeightedRoundRobin:
		return WeightedRoundRobin{}, nil
	case NameRendezvous:
		return Rendezvous{}, nil
	}
	return nil, fmt.Errorf("unknown strategy %q (allowed: %s)", name, strings.Join(Names, ", "))
}
