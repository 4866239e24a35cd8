package failure

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Action is what the caller does with the request after one upstream attempt.
type Action int

const (
	// Success means the response is passed through to the client as is:
	// 1xx, 2xx and 3xx statuses, and any status outside the ranges listed
	// for the other actions.
	Success Action = iota
	// Return means the response goes back to the client untouched and the
	// credential is not cooled: 400, 409, 413, 422, a 404 that is not about
	// the model, and every other 4xx not listed under Failover: answers
	// about the request, which another credential would give too.
	Return
	// Failover means the credential is cooled (see Verdict.Scope and
	// Verdict.Until; ScopeNone cools nothing) and the request moves to the
	// next credential.
	Failover
	// Stop means the client went away: nothing is cooled and no further
	// attempt is made.
	Stop
)

// String returns the lower-case name of a, such as "failover".
func (a Action) String() string { return enumName(actionNames[:], "action", int(a)) }

var actionNames = [...]string{Success: "success", Return: "return", Failover: "failover", Stop: "stop"}

// Scope says what a Failover cools.
type Scope int

const (
	// ScopeModel cools only the requested model on the credential.
	ScopeModel Scope = iota
	// ScopeAll cools the credential for every model.
	ScopeAll
	// ScopeEndpoint cools the requested model on the credential for the
	// endpoint the request addressed only (the model and method pair). It
	// answers a 404 that cannot tell a model the credential lacks from a
	// model that does not support the method, as Gemini words both
	// ("models/x is not found for API version v1beta, or is not supported
	// for embedContent"): cooling the whole model would let one request for
	// a method the model lacks shut the model off for everybody.
	ScopeEndpoint
	// ScopeNone cools nothing: the request moves on to the next credential
	// and this one stays available. It is the scope of a rate limit, server
	// error or timeout met by a request that names no model (GET
	// /v1/models, reading a stored response): a model-scoped cooldown needs
	// a model, and cooling the empty name would shut the credential to
	// every such request, for everybody, because of one.
	ScopeNone
	// ScopeFamily cools every model of Verdict.Family on the credential
	// (see [InFamily]): the answer to a subscription window that limits
	// one model family only, such as Claude's 7d_sonnet.
	ScopeFamily
)

// String returns "model", "all", "endpoint", "none" or "family".
func (s Scope) String() string { return enumName(scopeNames[:], "scope", int(s)) }

var scopeNames = [...]string{ScopeModel: "model", ScopeAll: "all", ScopeEndpoint: "endpoint", ScopeNone: "none", ScopeFamily: "family"}

// enumName is names[i], or kind(i) for a value without a name.
func enumName(names []string, kind string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return kind + "(" + strconv.Itoa(i) + ")"
}

// Reasons reported in Verdict.Reason. They are stable, machine-readable
// strings suitable for logs and metrics labels.
const (
	ReasonSuccess         = "success"
	ReasonRateLimited     = "rate_limited"
	ReasonAuthFailed      = "auth_failed"
	ReasonModelNotFound   = "model_not_found"
	ReasonServerError     = "server_error"
	ReasonConnectionError = "connection_error"
	ReasonTimeout         = "timeout"
	ReasonClientError     = "client_error"
	ReasonClientCanceled  = "client_canceled"
)

// Verdict says what one upstream outcome means for the credential and the
// request.
type Verdict struct {
	// Action is what to do with the request.
	Action Action
	// Scope is what to cool when Action is Failover.
	Scope Scope
	// Reason is a short machine-readable reason, one of the Reason*
	// constants.
	Reason string
	// Until is the absolute end of the cooldown when Action is Failover. It
	// is zero for a 429 without a reset hint (whose deadline depends on the
	// credential's streak of such 429s: see [Policy.Cooldown]) and when
	// Scope is ScopeNone.
	Until time.Time
	// Hinted reports that Until came from a provider reset hint.
	Hinted bool
	// Family is the model family (lower case, such as "sonnet") that
	// ScopeFamily cools; "" for every other scope.
	Family string
}

// Request is what classification needs to know about the client request
// an attempt served.
type Request struct {
	// Model is the model the request names, in its path or its body; ""
	// when it names none.
	Model string
	// Generation reports that the endpoint runs Model (messages, chat and
	// text completions, embeddings, creating a response, a Gemini model
	// action). Only there can a 404 mean that the credential does not serve
	// the model.
	Generation bool
}

// Attempt is what one upstream attempt came to.
type Attempt struct {
	// Status is the response status, 0 when no response arrived.
	Status int
	// Header is the response header.
	Header http.Header
	// Body is at most a bounded prefix of the body of an error response
	// (status 400 and above); nil otherwise.
	Body []byte
	// Err is the transport error, nil when a response arrived.
	Err error
	// Connected reports that a connection to the upstream was made (or an
	// idle one reused) before Err: dialled, through any proxy, with its TLS
	// handshake done. A failure after that (no response headers in time, a
	// reset, a write that broke off) concerns what the request asked for;
	// one before it (refused, DNS, TLS, proxy) concerns the credential's
	// endpoint.
	Connected bool
	// ClientErr is the client request context's Err(): non-nil means the
	// client went away.
	ClientErr error
}

// Classify decides about one upstream attempt for req. Zero fields of p
// take their defaults.
//
// Its rule: a client request cools a credential only through an upstream
// answer about the credential (authentication, quota, rate limit, overload,
// outage), never through one about the request itself (an unknown path, a
// resource that does not exist, malformed or oversized input). "Model" in
// the scopes below means ScopeModel when req names a model and ScopeNone
// (nothing cooled) when it does not.
//
// Outcomes, in order of precedence:
//
//   - client gone (ClientErr != nil): Stop, "client_canceled".
//   - transport error, or no status: Failover for ServerError. A context
//     cancellation or deadline, or any error reporting Timeout(), is
//     "timeout"; everything else is "connection_error". Before a connection
//     was made (refused, DNS, TLS, proxy) it cools the credential for all
//     models; after (no response headers in time, a reset) only the model.
//   - 429 whose body says the request alone exceeds the tokens-per-minute
//     limit (OpenAI's "Request too large for ..."): Return, "client_error";
//     a credential of the same tier would refuse it too.
//   - 429 of a subscription's usage window: Failover, "quota_exhausted".
//     A Codex body whose error.type (error.code, or top-level type) is
//     usage_limit_reached cools every model (ScopeAll) until
//     error.resets_at (unix seconds) or now + error.resets_in_seconds.
//     Claude unified-window headers: a rejected 5h or 7d window (any
//     window without an underscore), or a rejected
//     anthropic-ratelimit-unified-status with no window rejected, cool
//     every model until that window's -reset; a rejected model-specific
//     window (7d_sonnet, 7d_opus...) cools the family it names
//     (ScopeFamily) when the requested model is of it, and otherwise the
//     requested model only. A missing reset falls back to [ResetHint].
//   - other 429: Failover, model, "rate_limited", Until from [ResetHint],
//     or zero without a hint.
//   - 401, 402: Failover, ScopeAll, "auth_failed", now + AuthFailure.
//   - 403: the same, unless it is Gemini's PERMISSION_DENIED about a
//     resource the request referred to that may not exist (a file, cached
//     content, a tuned model), without a google.rpc.ErrorInfo: Return.
//   - 400 of a revoked or expired Gemini key (google.rpc.ErrorInfo reason
//     API_KEY_INVALID, or a message starting "API key not valid" or "API
//     key expired"): as 401.
//   - 404 of a generation request for a named model whose body says that
//     model does not exist, in its provider's words (OpenAI code
//     model_not_found; Anthropic not_found_error "model: ..."; Gemini
//     NOT_FOUND naming models/<model>; a JSON or plain-text message from
//     an OpenAI-compatible server saying the named model is not found or
//     does not exist): Failover, "model_not_found", now + ModelNotFound,
//     ScopeEndpoint when the message also says "not supported" (Gemini's
//     wording covers a method the model lacks) and ScopeModel otherwise.
//     Every other 404 (unknown path or action, missing response, file or
//     batch, any 404 of a request without a model): Return.
//   - 408, 5xx (529 included): Failover, model, "server_error",
//     now + ServerError.
//   - any other 4xx: Return, "client_error".
//   - anything else (1xx, 2xx, 3xx, nonstandard codes of 600 and above):
//     Success.
//
// For 401-404 and server errors a reset hint later than the policy
// duration wins, and Hinted is set.
func Classify(p Policy, req Request, a Attempt, now time.Time) Verdict {
	p = p.WithDefaults()
	if a.ClientErr != nil {
		return Verdict{Action: Stop, Reason: ReasonClientCanceled}
	}
	model := ScopeModel
	if req.Model == "" {
		model = ScopeNone
	}
	ret := Verdict{Action: Return, Reason: ReasonClientError}
	status := a.Status
	if a.Err != nil || status < 100 {
		reason := ReasonConnectionError
		if a.Err != nil && isTimeout(a.Err) {
			reason = ReasonTimeout
		}
		scope := ScopeAll
		if a.Connected {
			scope = model
		}
		return failover(scope, reason, now.Add(p.ServerError))
	}
	switch {
	case status == http.StatusTooManyRequests:
		if parseErrorBody(a.Body).requestTooLarge() {
			return ret
		}
		if v, ok := quotaVerdict(req, a, now); ok {
			return v
		}
		v := failover(model, ReasonRateLimited, time.Time{})
		if v.Scope != ScopeNone {
			v.Until, v.Hinted = ResetHint(a.Header, a.Body, now)
		}
		return v
	case status == http.StatusForbidden && parseErrorBody(a.Body).resourceDenied():
		return ret
	case status == http.StatusUnauthorized, status == http.StatusPaymentRequired, status == http.StatusForbidden,
		status == http.StatusBadRequest && parseErrorBody(a.Body).keyInvalid():
		return withHint(failover(ScopeAll, ReasonAuthFailed, now.Add(p.AuthFailure)), a, now)
	case status == http.StatusNotFound:
		if !req.Generation || req.Model == "" {
			return ret
		}
		e := parseErrorBody(a.Body)
		if !e.modelMissing(req.Model) {
			return ret
		}
		scope := ScopeModel
		if e.says("not supported") {
			scope = ScopeEndpoint
		}
		return withHint(failover(scope, ReasonModelNotFound, now.Add(p.ModelNotFound)), a, now)
	case status == http.StatusRequestTimeout, status >= 500 && status <= 599:
		return withHint(failover(model, ReasonServerError, now.Add(p.ServerError)), a, now)
	case status >= 400 && status <= 499:
		return ret
	}
	return Verdict{Action: Success, Reason: ReasonSuccess}
}

// failover is a Failover verdict; with ScopeNone nothing is cooled, so
// until is dropped.
func failover(scope Scope, reason string, until time.Time) Verdict {
	if scope == ScopeNone {
		until = time.Time{}
	}
	return Verdict{Action: Failover, Scope: scope, Reason: reason, Until: until}
}

// withHint moves v.Until to the reset hint of the attempt when that is
// later, unless v cools nothing.
func withHint(v Verdict, a Attempt, now time.Time) Verdict {
	if v.Scope == ScopeNone {
		return v
	}
	if t, ok := ResetHint(a.Header, a.Body, now); ok && t.After(v.Until) {
		v.Until, v.Hinted = t, true
	}
	return v
}

// isTimeout reports whether a transport error is a cancellation or a
// timeout rather than a failure to connect or talk to the host.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
