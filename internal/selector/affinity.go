package selector

// Bindings is the session cache as affinity sees it: session and model to
// credential ID, with a TTL. It is implemented by the session package's
// cache and must be safe for concurrent use.
type Bindings interface {
	// Get returns the credential the session is bound to for the model;
	// a hit refreshes the binding's TTL.
	Get(session, model string) (authID string, ok bool)
	// BindFor binds the session to authID for the model, replacing any
	// binding. The binding belongs to client ("" for none), so that one
	// client's sessions cannot crowd out everyone else's.
	BindFor(client, session, model, authID string)
	// Touch refreshes the binding's TTL only if it still points at authID,
	// and reports whether it did.
	Touch(session, model, authID string) bool
	// Unbind removes the binding only if it still points at authID, and
	// reports whether it did.
	Unbind(session, model, authID string) bool
}

// Decision says how [Affinity.Pick] chose; it is logged as
// llm_proxy.affinity and counted in metrics.
type Decision string

// The affinity decisions.
const (
	// DecisionHit: the session's binding (or the one it inherited from its
	// Fallback) was usable and reused.
	DecisionHit Decision = "hit"
	// DecisionMiss: the session had no binding; the strategy picked and
	// the session is now bound to the pick.
	DecisionMiss Decision = "miss"
	// DecisionRebind: the session's bound credential was unavailable or
	// no longer in the Set; the strategy picked and the session was rebound.
	DecisionRebind Decision = "rebind"
	// DecisionNone: affinity is off or the request has no session ID; the
	// strategy picked and nothing was bound.
	DecisionNone Decision = "none"
	// DecisionPin: the request refers to a stored resource and went to the
	// credential that created it (see [State.Pin]); no binding changed.
	DecisionPin Decision = "pin"
)

// Affinity wraps a Strategy with what ties a request to one credential. A
// request that refers to a stored resource goes to the credential that
// created it (its pin, kept in the State). A session keeps the credential
// it is bound to for as long as that credential is in the Set and
// available, even if a higher-priority tier has recovered or its weight
// has dropped to 0, so the provider's prompt cache keeps hitting. Only
// requests with neither go to the Strategy. Without Bindings only pins
// apply.
//
// Affinity is safe for concurrent use when its Bindings are. Two concurrent
// first requests of one session may both miss; the later Bind wins.
type Affinity struct {
	// Strategy picks for requests without a usable binding.
	Strategy Strategy
	// Bindings holds the session bindings; nil disables affinity.
	Bindings Bindings
}

// Pick returns the index in req.Set of the candidate to use and how it was
// chosen:
//
//   - the credential pinned to req.Pin, when it is in the Set and
//     available, is DecisionPin (no binding changes);
//   - without req.Session (or without Bindings) the Strategy picks and the
//     decision is DecisionNone;
//   - a binding whose credential is in the Set and available is a hit;
//   - otherwise a usable binding of req.Fallback is inherited: the session
//     is bound to it and the decision is a hit;
//   - otherwise the Strategy picks, the session is bound to the pick (so is
//     req.Fallback when it had no binding), and the decision is
//     DecisionRebind if the session had a binding, else DecisionMiss.
//
// When no candidate is available Pick returns -1 with the decision it would
// have made (DecisionNone, DecisionMiss or DecisionRebind) and changes no
// binding. A hit does not allocate beyond what Bindings.Get does.
func (a *Affinity) Pick(st *State, req *Request) (idx int, d Decision) {
	if i, ok := pinnedCandidate(st, req); ok {
		return i, DecisionPin
	}
	if req.Session == "" || a.Bindings == nil {
		return a.Strategy.Pick(st, req), DecisionNone
	}
	bound, had := a.Bindings.Get(req.Session, req.Model)
	if had {
		if i, ok := usableBinding(req, bound); ok {
			return i, DecisionHit
		}
	}
	fallbackBound := false
	if req.Fallback != "" && req.Fallback != req.Session {
		var inherited string
		inherited, fallbackBound = a.Bindings.Get(req.Fallback, req.Model)
		if fallbackBound {
			if i, ok := usableBinding(req, inherited); ok {
				a.Bindings.BindFor(req.Client, req.Session, req.Model, inherited)
				return i, DecisionHit
			}
		}
	}

	d = DecisionMiss
	if had {
		d = DecisionRebind
	}
	idx = a.Strategy.Pick(st, req)
	if idx < 0 {
		return -1, d
	}
	id := req.Set.cands[idx].ID
	a.Bindings.BindFor(req.Client, req.Session, req.Model, id)
	if req.Fallback != "" && req.Fallback != req.Session && !fallbackBound {
		a.Bindings.BindFor(req.Client, req.Fallback, req.Model, id)
	}
	return idx, d
}

// usableBinding returns the index of the bound credential id when it is in
// the request's Set and available. Its weight does not matter: weight 0
// only keeps new sessions away.
func usableBinding(req *Request, id string) (int, bool) {
	if req.Set == nil {
		return -1, false
	}
	i, ok := req.Set.index[id]
	if !ok || !req.available(i) {
		return -1, false
	}
	return i, true
}

// Success records that authID served the request: it refreshes the
// session's binding TTL if the binding still points at authID.
func (a *Affinity) Success(req *Request, authID string) {
	if req.Session == "" || a.Bindings == nil {
		return
	}
	a.Bindings.Touch(req.Session, req.Model, authID)
}

// Failure records that authID failed the request: the session's binding is
// removed, but only if it still points at authID, so a binding another
// request has meanwhile moved elsewhere survives. A Fallback binding that
// points at authID is removed too, so later turns do not inherit it.
func (a *Affinity) Failure(req *Request, authID string) {
	if req.Session == "" || a.Bindings == nil {
		return
	}
	a.Bindings.Unbind(req.Session, req.Model, authID)
	if req.Fallback != "" && req.Fallback != req.Session {
		a.Bindings.Unbind(req.Fallback, req.Model, authID)
	}
}
