package failure

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
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
	// the model, and every other 4xx not listed under Failover.
	Return
	// Failover means the credential is cooled (see Verdict.Scope and
	// Verdict.Until) and the request moves to the next credential.
	Failover
	// Stop means the client went away: nothing is cooled and no further
	// attempt is made.
	Stop
)

// String returns the lower-case name of a, such as "failover".
func (a Action) String() string {
	switch a {
	case Success:
		return "success"
	case Return:
		return "return"
	case Failover:
		return "failover"
	case Stop:
		return "stop"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Scope says what a Failover cools.
type Scope int

const (
	// ScopeModel cools only the requested model on the credential.
	ScopeModel Scope = iota
	// ScopeAll cools the credential for every model.
	ScopeAll
)

// String returns "model" or "all".
func (s Scope) String() string {
	switch s {
	case ScopeModel:
		return "model"
	case ScopeAll:
		return "all"
	}
	return "scope(" + strconv.Itoa(int(s)) + ")"
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
	// is zero for a 429 without a reset hint: the caller then applies the
	// backoff ladder through Policy.Backoff.
	Until time.Time
	// Hinted reports that Until came from a provider reset hint.
	Hinted bool
}

// Classify decides about one upstream attempt.
//
// err is the transport error (nil when a response arrived); clientCtxErr is
// the client request context's Err(), and a non-nil value means the client
// left: the verdict is Stop, whatever err and status say. body is at most a
// small prefix of an error response body, nil for 2xx. Zero fields of p take
// their defaults.
//
// Outcomes, in order of precedence:
//
//   - client gone (clientCtxErr != nil): Stop, "client_canceled".
//   - transport error: Failover, ScopeAll, cooled for ServerError. A context
//     cancellation or deadline, or any error reporting Timeout(), is
//     "timeout"; everything else (refused, reset, DNS, TLS, proxy) is
//     "connection_error".
//   - 429: Failover, ScopeModel, "rate_limited", Until from [ResetHint], or
//     zero without a hint.
//   - 401, 402, 403: Failover, ScopeAll, "auth_failed", now + AuthFailure.
//   - 404 whose body says the model does not exist: Failover, ScopeModel,
//     "model_not_found", now + ModelNotFound. Any other 404: Return.
//   - 408, 5xx (529 included): Failover, ScopeModel, "server_error",
//     now + ServerError.
//   - any other 4xx: Return, "client_error".
//   - anything else (1xx, 2xx, 3xx, nonstandard codes of 600 and above):
//     Success.
//   - status below 100 with a nil err (no response and no error): treated
//     as a connection error.
//
// For 401-404 and server errors a reset hint later than the policy duration
// wins, and Hinted is set.
func Classify(p Policy, status int, h http.Header, body []byte, err error, clientCtxErr error, now time.Time) Verdict {
	p = p.WithDefaults()
	if clientCtxErr != nil {
		return Verdict{Action: Stop, Reason: ReasonClientCanceled}
	}
	if err != nil {
		reason := ReasonConnectionError
		if isTimeout(err) {
			reason = ReasonTimeout
		}
		return Verdict{Action: Failover, Scope: ScopeAll, Reason: reason, Until: now.Add(p.ServerError)}
	}
	switch {
	case status < 100:
		return Verdict{Action: Failover, Scope: ScopeAll, Reason: ReasonConnectionError, Until: now.Add(p.ServerError)}
	case status == http.StatusTooManyRequests:
		v := Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonRateLimited}
		v.Until, v.Hinted = ResetHint(h, body, now)
		return v
	case status == http.StatusUnauthorized, status == http.StatusPaymentRequired, status == http.StatusForbidden:
		return withHint(Verdict{Action: Failover, Scope: ScopeAll, Reason: ReasonAuthFailed}, now.Add(p.AuthFailure), h, body, now)
	case status == http.StatusNotFound:
		if !modelNotFound(body) {
			return Verdict{Action: Return, Reason: ReasonClientError}
		}
		return withHint(Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonModelNotFound}, now.Add(p.ModelNotFound), h, body, now)
	case status == http.StatusRequestTimeout, status >= 500 && status <= 599:
		return withHint(Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonServerError}, now.Add(p.ServerError), h, body, now)
	case status >= 400 && status <= 499:
		return Verdict{Action: Return, Reason: ReasonClientError}
	}
	return Verdict{Action: Success, Reason: ReasonSuccess}
}

// withHint sets v.Until to the later of base and the reset hint, if any.
func withHint(v Verdict, base time.Time, h http.Header, body []byte, now time.Time) Verdict {
	v.Until = base
	if t, ok := ResetHint(h, body, now); ok && t.After(base) {
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

// modelNotFound reports whether a 404 body says that the requested model
// does not exist, as opposed to a wrong path or a missing resource.
func modelNotFound(body []byte) bool {
	root := jsonRoot(body)
	if !root.Exists() {
		// Plain text bodies from OpenAI-compatible servers.
		return mentionsMissingModel(string(body))
	}
	if root.IsArray() {
		// Gemini streaming errors come wrapped in an array.
		root = root.Get("0")
	}
	if !root.IsObject() {
		return false
	}
	e := root.Get("error")
	msg := e.Get("message").String()
	if e.Type == gjson.String {
		// {"error": "model 'x' not found"} (Ollama and similar).
		msg = e.Str
	}
	if msg == "" {
		msg = root.Get("message").String()
	}
	if msg == "" {
		msg = root.Get("detail").String()
	}
	lowerMsg := strings.ToLower(msg)
	switch {
	case e.Get("code").String() == "model_not_found", root.Get("code").String() == "model_not_found":
		// OpenAI.
		return true
	case e.Get("type").String() == "not_found_error" && strings.Contains(lowerMsg, "model"):
		// Anthropic: {"type":"error","error":{"type":"not_found_error","message":"model: x"}}.
		return true
	case e.Get("status").String() == "NOT_FOUND" && strings.Contains(lowerMsg, "model"):
		// Gemini: "models/x is not found for API version v1beta".
		return true
	}
	return mentionsMissingModel(msg)
}

// mentionsMissingModel reports whether a free-text message says that a
// model was not found or does not exist.
func mentionsMissingModel(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "model") &&
		(strings.Contains(m, "not found") || strings.Contains(m, "does not exist"))
}

// ClassifyModelRequest is Classify for a request that names a model, such as
// a generation request: there a 404 means the credential does not serve the
// model (or deployment), however the upstream words it (providers and
// OpenAI-compatible servers all phrase it differently), so every 404 cools
// that model on the credential for ModelNotFound and fails over. Requests
// without a model (GET /v1/models, a response or batch by ID) use Classify,
// where only a 404 that says so is about the model. A 404 that names another
// missing resource the request referred to (a previous response, a
// conversation, a file, a vector store, a batch) is the client's to see:
// another credential would not have it either, and this one is not at fault.
func ClassifyModelRequest(p Policy, status int, h http.Header, body []byte, err error, clientCtxErr error, now time.Time) Verdict {
	v := Classify(p, status, h, body, err, clientCtxErr, now)
	if status == http.StatusNotFound && err == nil && v.Action == Return && !otherResourceMissing(body) {
		p = p.WithDefaults()
		v = withHint(Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonModelNotFound}, now.Add(p.ModelNotFound), h, body, now)
	}
	return v
}

// otherResources are the words of a 404 about something the request
// referred to other than the model.
var otherResources = []string{
	"previous_response", "previous response", "conversation", "vector_store", "vector store",
	"file_id", "file with id", "batch",
}

// otherResourceMissing reports whether a 404 body names a missing resource
// other than the model.
func otherResourceMissing(body []byte) bool {
	lower := strings.ToLower(string(body))
	for _, w := range otherResources {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}
