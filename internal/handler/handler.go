// Package handler serves client requests: it admits the client, parses the
// request, asks the selector for a credential, sends the request upstream and
// classifies the outcome, moving to the next credential until one answers or
// the pool is exhausted. Everything here is per config; what outlives a
// reload lives in package pool.
package handler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// Transports gives the round tripper for a credential (its proxy_url, if any,
// selects a dedicated one).
type Transports interface {
	For(a *auth.Auth) http.RoundTripper
}

// Observer receives what metrics are made of. All methods must be cheap and
// safe for concurrent use.
type Observer interface {
	// Attempt is called once per upstream attempt that got a response or
	// failed to; ttfb is the time to the response headers.
	Attempt(pool, authID string, status int, ttfb time.Duration, v failure.Verdict)
	// Request is called once per client request that reached selection.
	Request(pool, authID string, status, attempts int, affinity selector.Decision)
	// Usage is called once per response that reported token counts.
	Usage(pool, authID string, u Usage)
}

// Refresher renews a credential's OAuth access token after the upstream
// refused it (see pool.Pool.RefreshRejected).
type Refresher interface {
	// RefreshRejected returns nil once the credential holds another access
	// token than rejected's; the request may then be sent again with it.
	RefreshRejected(ctx context.Context, c *pool.Credential, rejected *auth.Auth) error
}

// ReasonTokenRefresh is the outcome reported to the Observer for a 401 of
// an OAuth credential that was answered by refreshing its access token and
// sending the request again on it: no failover and no cooldown.
const ReasonTokenRefresh = "token_refresh"

// Proxy is the compiled form of one llm_proxy handler config.
type Proxy struct {
	Pool *pool.Pool
	// Strategy picks credentials; resource pins (kept in the pool's
	// selector.State) go first.
	Strategy selector.Strategy
	// Affinity wraps Strategy with session bindings; nil when session
	// affinity is off.
	Affinity        *selector.Affinity
	Policy          failure.Policy
	MaxAttempts     int // 0: every eligible credential
	WaitForCooldown time.Duration
	MaxBody         int64
	Access          []access.AccessProvider // empty: no client-key check
	ForwardHeaders  *HeaderAllowlist        // client headers sent upstream; nil: DefaultForwardHeaders
	Transports      Transports
	Logger          *zap.Logger
	Observer        Observer
	// Refresher, when set, turns on refresh-on-401: a 401 of a credential
	// sending an OAuth access token gets one refresh and one more attempt
	// on the same credential before it is cooled and the request fails
	// over.
	Refresher Refresher
	Now       func() time.Time

	// wait, when set, replaces the timer of wait_for_cooldown: tests move
	// a fake clock instead of sleeping. See sleep.
	wait func(ctx context.Context, d time.Duration) bool
}

// result is what one request's attempts came to, for logs and metrics.
type result struct {
	authID   string
	attempts int
	decision selector.Decision
	status   int
	// aborted: a non-streaming upstream body broke off after the response
	// started; the client connection is aborted so the truncation is not
	// mistaken for a complete response. (Event streams end with an error
	// event instead.)
	aborted bool
	// usage is what the answering response reported (zero when none).
	usage Usage
}

// ServeHTTP serves one client request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	route, served := apifamily.ParseRequest(r.URL.Path, r.Header)
	fam := route.Family
	client, ok := p.admit(w, r, fam)
	if !ok {
		return nil
	}
	if !served {
		apifamily.WriteError(w, apifamily.OpenAI, http.StatusNotFound, apifamily.KindNotFound,
			fmt.Sprintf("llm_proxy does not serve %s %s", r.Method, r.URL.Path), 0)
		return nil
	}
	req, err := parse(r, route, p.MaxBody, p.Affinity != nil)
	if err != nil {
		var bad *requestError
		if errors.As(err, &bad) {
			apifamily.WriteError(w, fam, http.StatusBadRequest, apifamily.KindInvalidRequest, bad.msg, 0)
			return nil
		}
		if errors.Is(err, errTooLarge) {
			apifamily.WriteError(w, fam, http.StatusRequestEntityTooLarge, apifamily.KindTooLarge,
				fmt.Sprintf("request body exceeds max_request_body (%d bytes)", p.MaxBody), 0)
			return nil
		}
		if r.Context().Err() != nil {
			return nil
		}
		apifamily.WriteError(w, fam, http.StatusBadRequest, apifamily.KindInvalidRequest, "could not read request body", 0)
		return nil
	}
	req.client = client
	if !permitted(w, r, req, client) {
		p.observeClient(client, http.StatusForbidden)
		return nil
	}
	if p.serveModelLookup(w, r, route, client) {
		return nil
	}
	res := p.serve(w, r, req)
	if res.attempts == 0 {
		// Attempts set the placeholders themselves, before writing.
		p.annotate(r, req, res)
	}
	if p.Observer != nil {
		p.Observer.Request(p.Pool.Name(), res.authID, res.status, res.attempts, res.decision)
	}
	p.observeClient(client, res.status)
	if res.authID != "" {
		p.Pool.RecordRequest(ledgerKey(req, res.authID), res.usage.tokens(), p.Now())
	}
	if res.aborted {
		// As reverse_proxy does: flush what arrived, then abort the
		// connection (HTTP/1.1 without the final chunk, HTTP/2 with
		// RST_STREAM) so the client sees an error, not a clean end.
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	return nil
}

// availability answers the selector for one request: a credential is usable
// when it is not cooling for the model (nor for the model on this endpoint)
// and was not tried yet.
type availability struct {
	creds []*pool.Credential
	keys  cooldownKeys
	now   time.Time
	tried []bool
}

func (a *availability) Available(i int) bool {
	return !a.tried[i] && a.keys.available(a.creds[i], a.now)
}

// cooldownKeys are the per-model cooldown keys a request is subject to:
// its model and, for a generation request, the model on the endpoint it
// addresses ("gemini-2.5-pro@/v1beta/models/gemini-2.5-pro:embedContent"),
// which failure.ScopeEndpoint cools. A request without a model has the
// empty key, which nothing cools (failure.ScopeNone): it only meets
// credential-wide cooldowns.
//
// A model also meets the cooldowns of the model families its name belongs
// to (failure.ScopeFamily: a subscription window of one family, such as
// Claude's 7d_sonnet): one key per word of its name, see familyKey.
type cooldownKeys struct {
	model    string
	endpoint string   // "" unless a generation request names a model
	families []string // familyKey of each word of the model's name
}

func requestKeys(req *parsed, path string) cooldownKeys {
	k := cooldownKeys{model: req.model}
	if req.route.Generation && req.model != "" {
		k.endpoint = req.model + "@" + path
	}
	for _, f := range failure.Families(req.model) {
		k.families = append(k.families, familyKey(f))
	}
	return k
}

// familyKey is the cooldown key of a model family. It starts with a
// control character, which no model name may hold (apifamily.CheckModel),
// so no client can name it as a model and cool a whole family through a
// model-scoped failure.
func familyKey(family string) string { return "\x1ffamily:" + family }

// available reports whether c may serve the request at now.
func (k cooldownKeys) available(c *pool.Credential, now time.Time) bool {
	if !c.Available(k.model, now) || k.endpoint != "" && !c.Available(k.endpoint, now) {
		return false
	}
	for _, f := range k.families {
		if !c.Available(f, now) {
			return false
		}
	}
	return true
}

// coolingUntil is when c becomes available to the request again.
func (k cooldownKeys) coolingUntil(c *pool.Credential, now time.Time) time.Time {
	until := c.CoolingUntil(k.model, now)
	others := k.families
	if k.endpoint != "" {
		others = append([]string{k.endpoint}, others...)
	}
	for _, key := range others {
		if u := c.CoolingUntil(key, now); u.After(until) {
			until = u
		}
	}
	return until
}

// scoped is the key a failover verdict v cools.
func (k cooldownKeys) scoped(v failure.Verdict) string {
	switch v.Scope {
	case failure.ScopeEndpoint:
		return k.endpoint
	case failure.ScopeFamily:
		return familyKey(v.Family)
	}
	return k.model
}

// lastFailure is the most recent upstream failure, returned to the client
// when every attempt failed.
type lastFailure struct {
	status int
	header http.Header
	body   []byte
	err    error
	// aborted: a response that had started broke off (see result.aborted).
	aborted bool
	// refreshed: the upstream refused the credential's OAuth access token
	// and the credential now holds a new one; the attempt is repeated.
	refreshed bool
	// usage is what a response that reached the client reported.
	usage Usage
}

// serve runs the attempt loop.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, req *parsed) result {
	fam := req.route.Family
	res := result{decision: selector.DecisionNone}
	var last *lastFailure
	var waited bool
	picked := 0 // distinct credentials tried, which max_attempts bounds
	keys := requestKeys(req, r.URL.Path)
	for {
		e := p.Pool.Eligible(req.route, req.model)
		if e.Set.Len() == 0 {
			res.status = http.StatusServiceUnavailable
			apifamily.WriteError(w, fam, res.status, apifamily.KindUnavailable, noCredentialMessage(fam, req.model), 0)
			return res
		}
		av := &availability{creds: e.Creds, keys: keys, now: p.Now(), tried: make([]bool, e.Set.Len())}
		sel := &selector.Request{
			Set:      e.Set,
			Avail:    av,
			Session:  req.ids.Primary,
			Fallback: req.ids.Fallback,
			HashKey:  req.ids.Stable,
			Model:    req.bind,
			Pin:      req.resource,
		}
		if p.Affinity != nil {
			// One client's new bindings may not push out everybody else's.
			sel.Client = session.ClientOf(r)
		}
		for p.MaxAttempts <= 0 || picked < p.MaxAttempts {
			idx, decision := p.pick(sel)
			if idx < 0 {
				break
			}
			if res.attempts == 0 {
				res.decision = decision
			} else if decision != selector.DecisionNone {
				res.decision = selector.DecisionRebind
			}
			av.tried[idx] = true
			picked++
			cred := e.Creds[idx]
			res.authID = cred.ID()
			var done bool
			var lf *lastFailure
			// A refreshed OAuth token is tried once more on the same
			// credential.
			for refresh := p.Refresher != nil; ; refresh = false {
				res.attempts++
				// Placeholders are set before the response is written,
				// so response header directives and logs can use them.
				p.annotate(r, req, res)
				done, lf = p.attempt(w, r, req, keys, sel, cred, res.attempts, refresh)
				if !lf.refreshed {
					break
				}
			}
			if done {
				res.status = lf.status
				res.aborted = lf.aborted
				res.usage = lf.usage
				return res
			}
			last = lf
			av.now = p.Now()
		}
		// No credential is left to try. With wait_for_cooldown, wait once
		// for the soonest recovery if it is near enough, then try again.
		soonest := soonestRecovery(e, keys, av.now)
		budgetLeft := p.MaxAttempts <= 0 || picked < p.MaxAttempts
		if !waited && budgetLeft && p.WaitForCooldown > 0 && !soonest.IsZero() && soonest.Sub(av.now) <= p.WaitForCooldown {
			waited = true
			if p.sleep(r.Context(), soonest.Sub(av.now)) {
				continue
			}
			res.status = 499
			return res
		}
		if last != nil {
			res.status = p.writeLast(w, fam, last, e, keys)
			return res
		}
		// Nothing was tried: every eligible credential is cooling, or none
		// may take a new session (weight 0).
		if soonest.IsZero() {
			res.status = http.StatusServiceUnavailable
			apifamily.WriteError(w, fam, res.status, apifamily.KindUnavailable, noCredentialMessage(fam, req.model), 0)
			return res
		}
		res.status = http.StatusTooManyRequests
		retry := retryAfterSeconds(soonest, av.now)
		apifamily.WriteError(w, fam, res.status, apifamily.KindRateLimit,
			fmt.Sprintf("all credentials for %s are cooling down; retry in %ds", modelOrFamily(fam, req.model), retry), retry)
		return res
	}
}

// sleep waits for d, or until ctx is done; it reports whether the wait ran
// its course.
func (p *Proxy) sleep(ctx context.Context, d time.Duration) bool {
	if p.wait != nil {
		return p.wait(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pick chooses the credential for the next attempt: the one that created
// the resource the request refers to, then (with affinity) the session's,
// then the strategy's pick.
func (p *Proxy) pick(sel *selector.Request) (int, selector.Decision) {
	if p.Affinity != nil {
		return p.Affinity.Pick(p.Pool.Strategy, sel)
	}
	pinsOnly := selector.Affinity{Strategy: p.Strategy}
	return pinsOnly.Pick(p.Pool.Strategy, sel)
}

// modelListCreds returns the records of the credentials that serve the
// model list route.
func (p *Proxy) modelListCreds(route apifamily.Route) []*auth.Auth {
	creds := p.Pool.Eligible(route, "").Creds
	out := make([]*auth.Auth, len(creds))
	for i, c := range creds {
		out[i] = c.Auth()
	}
	return out
}

// attempt sends the request upstream with one credential. done reports that
// the client got its answer (or left); otherwise the returned failure says
// why this credential failed over, or that its refreshed token is to be
// tried (lastFailure.refreshed). With refresh, a 401 of an OAuth access
// token is answered by a refresh.
func (p *Proxy) attempt(w http.ResponseWriter, r *http.Request, req *parsed, keys cooldownKeys, sel *selector.Request, cred *pool.Credential, n int, refresh bool) (done bool, lf *lastFailure) {
	a, base := cred.Target()
	ctx := r.Context()
	// Whether a connection was made tells a failure of the credential's
	// endpoint (refused, DNS, TLS) from one of the model asked for (no
	// answer in time): see failure.Attempt.Connected.
	var connected atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }}
	body, upstreamModel := aliased(req, a)
	out := newUpstreamRequest(httptrace.WithClientTrace(ctx, trace), r, body, a, base, p.ForwardHeaders)
	if upstreamModel != "" {
		// Gemini names the model in the path.
		out.URL.Path = withPathModel(out.URL.Path, req.route.Model, upstreamModel)
	}
	start := p.Now()
	resp, err := p.Transports.For(a).RoundTrip(out)
	ttfb := p.Now().Sub(start)

	at := failure.Attempt{Err: err, ClientErr: ctx.Err(), Connected: connected.Load()}
	if err == nil {
		at.Status, at.Header = resp.StatusCode, resp.Header
		// Every response reports the credential's quota, success or not.
		cred.RecordQuota(resp.Header, start.Add(ttfb))
		if at.Status >= 400 {
			// Error bodies are read whole, up to a bound, so that the
			// credential's secrets they may quote are redacted everywhere
			// and never stream through; the rest is dropped.
			at.Body = readErrorBody(resp, a)
		}
	}
	freq := failure.Request{Model: req.model, Generation: req.route.Generation}
	now := p.Now()
	v := failure.Classify(p.Policy, freq, at, now)
	if v.Action == failure.Success && holdsBack(resp) {
		// A rejection inside the stream before any output counts as the
		// status it stands for, and a stream that broke off before any as
		// the transport error; nothing reached the client yet.
		if held, ok := holdBackResponse(resp, a, holdBackWait); ok {
			at, err = held, held.Err
			at.ClientErr = ctx.Err()
			now = p.Now()
			v = failure.Classify(p.Policy, freq, at, now)
		}
	}
	// The attempt's fields are only built when a line is written.
	logf := func(level zapcore.Level, msg string, fields ...zap.Field) {
		if ce := p.Logger.Check(level, msg); ce != nil {
			ce.Write(append([]zap.Field{zap.String("pool", p.Pool.Name()), zap.String("auth", cred.ID()),
				zap.String("model", req.model), zap.Int("attempt", n)}, fields...)...)
		}
	}
	var refreshErr error
	if refresh && v.Action == failure.Failover && at.Status == http.StatusUnauthorized && a.IsOAuth() {
		resp.Body.Close()
		if refreshErr = p.Refresher.RefreshRejected(ctx, cred, a); refreshErr == nil {
			if p.Observer != nil {
				p.Observer.Attempt(p.Pool.Name(), cred.ID(), at.Status, ttfb, failure.Verdict{Action: failure.Return, Reason: ReasonTokenRefresh})
			}
			logf(zap.DebugLevel, "upstream attempt", zap.Int("status", at.Status), zap.String("outcome", ReasonTokenRefresh),
				zap.Duration("ttfb", ttfb))
			logf(zap.InfoLevel, "upstream refused the OAuth access token; refreshed it, trying the credential again")
			return false, &lastFailure{status: at.Status, header: at.Header, body: at.Body, refreshed: true}
		}
		if ctx.Err() != nil {
			v = failure.Verdict{Action: failure.Stop, Reason: failure.ReasonClientCanceled}
		}
	}
	if p.Observer != nil {
		p.Observer.Attempt(p.Pool.Name(), cred.ID(), at.Status, ttfb, v)
	}
	logf(zap.DebugLevel, "upstream attempt", zap.Int("status", at.Status), zap.String("outcome", v.Reason),
		zap.Duration("ttfb", ttfb), zap.Error(err))

	switch v.Action {
	case failure.Stop:
		if resp != nil {
			resp.Body.Close()
		}
		return true, &lastFailure{status: 499}
	case failure.Failover:
		if resp != nil {
			resp.Body.Close()
		}
		if p.Affinity != nil {
			p.Affinity.Failure(sel, cred.ID())
		}
		until := cred.RecordFailure(keys.scoped(v), v, p.Policy, now)
		p.Pool.RecordFailover(ledgerKey(req, cred.ID()), now)
		if v.Scope == failure.ScopeNone {
			logf(zap.WarnLevel, "credential failed; failing over without a cooldown (the request names no model)",
				zap.Int("status", at.Status), zap.String("reason", v.Reason), zap.Error(err))
		} else {
			fields := []zap.Field{zap.Int("status", at.Status), zap.String("reason", v.Reason), zap.Stringer("scope", v.Scope),
				zap.Time("cooldown_until", until), zap.Bool("hinted", v.Hinted), zap.Error(err)}
			if refreshErr != nil {
				fields = append(fields, zap.NamedError("refresh_error", refreshErr))
			}
			logf(zap.WarnLevel, "credential failed; cooling down and failing over", fields...)
		}
		return false, &lastFailure{status: at.Status, header: at.Header, body: at.Body, err: err}
	}

	// Success or a client error returned as is.
	status := at.Status
	if v.Action == failure.Success {
		cred.RecordSuccess(req.model)
		if p.Affinity != nil {
			p.Affinity.Success(sel, cred.ID())
		}
	}
	if at.Body != nil || status >= 400 {
		// The upstream body is closed; what is left of it is at.Body.
		writeBody(w, status, at.Header, at.Body)
		return true, &lastFailure{status: status}
	}
	if status == http.StatusOK && isModelList(r, req.route) {
		if body, ok := readModelList(resp); ok {
			body, _ = poolModelList(body, req.route.Family, p.modelListCreds(req.route), req.client)
			writeBody(w, status, resp.Header, body)
			return true, &lastFailure{status: status}
		}
	}
	got, err := copyResponse(w, resp, req.createsResource)
	if !req.route.Generation {
		// Usage counts where the model ran: a stored response read back
		// (GET /v1/responses/{id}) repeats figures already counted.
		got.usage, got.reported = Usage{}, false
	}
	p.record(r, cred, got)
	answered := &lastFailure{status: status, usage: got.usage}
	if err != nil && !errors.Is(err, errClientWrite) && ctx.Err() == nil {
		// The upstream broke off mid-stream: nothing can be retried once
		// bytes reached the client, but the credential is charged, as
		// for any failure once connected.
		now := p.Now()
		cv := failure.Classify(p.Policy, freq, failure.Attempt{Err: err, Connected: true}, now)
		cred.RecordFailure(keys.scoped(cv), cv, p.Policy, now)
		logf(zap.WarnLevel, "upstream stream broke off after the response started", zap.Error(err))
		if isEventStream(resp.Header) {
			// End the event stream cleanly with an error event in the
			// API's own shape, which SDKs raise as an error.
			_, _ = w.Write(apifamily.StreamErrorEvent(req.route.Family, r.URL.Path,
				"the upstream connection broke off mid-stream; the response is incomplete"))
			_ = http.NewResponseController(w).Flush()
			return true, answered
		}
		answered.aborted = true
		return true, answered
	}
	return true, answered
}

// record keeps what a response body told: its token counts go to the
// observer, and the stored resource it created is pinned to the credential
// that created it, for the client that asked.
func (p *Proxy) record(r *http.Request, cred *pool.Credential, got learnt) {
	if got.reported && p.Observer != nil {
		p.Observer.Usage(p.Pool.Name(), cred.ID(), got.usage)
	}
	if got.resourceID != "" {
		p.Pool.Strategy.Pin(session.ClientOf(r), got.resourceID, cred.ID())
	}
}

// ledgerKey is the usage ledger series of a request on credential authID:
// the client's label and the model as the client named it.
func ledgerKey(req *parsed, authID string) pool.UsageKey {
	return pool.UsageKey{Client: req.client.Label, Auth: authID, Model: req.model}
}

// tokens converts u to the ledger's counts (a negative figure is none).
func (u Usage) tokens() pool.Tokens {
	return pool.Tokens{Input: uint64(max(u.Input, 0)), Output: uint64(max(u.Output, 0)),
		CacheRead: uint64(max(u.CacheRead, 0)), CacheWrite: uint64(max(u.CacheWrite, 0))}
}

// writeLast answers with the last upstream failure when every attempt
// failed: its status and body, or 502 when the upstream was unreachable.
func (p *Proxy) writeLast(w http.ResponseWriter, fam apifamily.Family, last *lastFailure, e *pool.Eligible, keys cooldownKeys) int {
	if last.status == 0 {
		apifamily.WriteError(w, fam, http.StatusBadGateway, apifamily.KindUpstream,
			"upstream unreachable: "+transportErrorText(last.err), 0)
		return http.StatusBadGateway
	}
	h := last.header
	if last.status == http.StatusTooManyRequests {
		// The client may retry as soon as any credential of the pool
		// recovers, which can be sooner than the last upstream's own hint;
		// its retry-after-ms (read before Retry-After by SDKs) would
		// contradict that, so it is dropped.
		now := p.Now()
		h = h.Clone()
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(soonestRecovery(e, keys, now), now)))
		h.Del("Retry-After-Ms")
	}
	writeBody(w, last.status, h, last.body)
	return last.status
}

// soonestRecovery is the earliest time any eligible credential recovers for
// the request's cooldown keys; zero when none is cooling.
func soonestRecovery(e *pool.Eligible, keys cooldownKeys, now time.Time) time.Time {
	var soonest time.Time
	for _, c := range e.Creds {
		until := keys.coolingUntil(c, now)
		if !until.After(now) {
			continue
		}
		if soonest.IsZero() || until.Before(soonest) {
			soonest = until
		}
	}
	return soonest
}

// retryAfterSeconds rounds the wait up to whole seconds, at least 1.
func retryAfterSeconds(until, now time.Time) int {
	d := until.Sub(now)
	if d <= 0 {
		return 1
	}
	return int(math.Ceil(d.Seconds()))
}

func noCredentialMessage(fam apifamily.Family, model string) string {
	return "no enabled credential in this pool serves " + modelOrFamily(fam, model)
}

func modelOrFamily(fam apifamily.Family, model string) string {
	if model == "" {
		return fam.String() + " requests"
	}
	return "model " + strconv.Quote(model)
}

// transportErrorText describes a transport error without leaking URLs with
// credentials in them.
func transportErrorText(err error) string {
	if err == nil {
		return "no response"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// annotate exposes the outcome as placeholders and access-log fields.
func (p *Proxy) annotate(r *http.Request, req *parsed, res result) {
	ctx := r.Context()
	if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.llm_proxy.auth", res.authID)
		repl.Set("http.llm_proxy.session", req.ids.Primary)
		repl.Set("http.llm_proxy.affinity", string(res.decision))
		repl.Set("http.llm_proxy.attempts", res.attempts)
		repl.Set("http.llm_proxy.pool", p.Pool.Name())
	}
	if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Set(zap.String("llm_proxy.pool", p.Pool.Name()))
		extra.Set(zap.String("llm_proxy.auth", res.authID))
		extra.Set(zap.Int("llm_proxy.attempts", res.attempts))
		extra.Set(zap.String("llm_proxy.affinity", string(res.decision)))
	}
}
