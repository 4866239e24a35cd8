package pool

// OAuth refresh of subscription credentials (SPEC section 12): one
// background loop per pool keeps access tokens fresh ahead of expiry, and
// the handler asks for a refresh when the upstream refuses a token (401).
// Both share one refresh in flight per credential. A stored record is
// refreshed under the storage lock of its key after re-reading it, so N
// Caddy instances on one storage refresh it once; an inline credential's
// tokens are kept the same way in a document of their own (inlinetokens.go).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

const (
	// refreshSafetyTick is the longest the refresh loop sleeps: it looks
	// at every credential at least this often, whatever the next due
	// time, so a clock jump (a suspended host, a fake clock) is caught.
	refreshSafetyTick = 5 * time.Minute
	// refreshMinWait keeps the loop from spinning on a due time it cannot
	// act on yet.
	refreshMinWait = time.Second
	// refreshTimeout bounds one refresh: waiting for the storage lock,
	// the token endpoint and the write back.
	refreshTimeout = time.Minute
	// refreshConcurrency bounds the background refreshes of one pool
	// running at once.
	refreshConcurrency = 4
	// After a temporary failure the next attempt waits refreshBackoffMin,
	// doubling per failure up to refreshBackoffMax, or the token
	// endpoint's Retry-After (up to retryAfterMax) when that is longer.
	refreshBackoffMin = 30 * time.Second
	refreshBackoffMax = 10 * time.Minute
	retryAfterMax     = time.Hour
)

// Results of a refresh, counted per credential (see RefreshStatus.Counts).
const (
	// RefreshRefreshed: the token endpoint issued new tokens.
	RefreshRefreshed = "refreshed"
	// RefreshAdopted: storage already held newer tokens (another instance
	// refreshed, or a new login was written); they were taken over.
	RefreshAdopted = "adopted"
	// RefreshFailed: a temporary failure (no answer, 5xx, 429, storage);
	// retried with backoff while the current token keeps serving.
	RefreshFailed = "failed"
	// RefreshNeedsLogin: the token endpoint refused the refresh token for
	// good; the credential is in state needs_login.
	RefreshNeedsLogin = "needs_login"
)

// refreshResults are the results in the order of oauthState.counts.
var refreshResults = [...]string{RefreshRefreshed, RefreshAdopted, RefreshFailed, RefreshNeedsLogin}

var (
	// ErrNotRefreshable is returned for a credential that llm_proxy cannot
	// refresh: it sends an API key, has no refresh token, or its provider
	// has no OAuth settings in the pool's config.
	ErrNotRefreshable = errors.New("the credential has no OAuth refresh token llm_proxy can use")
	// ErrNeedsLogin is returned for a credential whose refresh token was
	// refused for good: it needs a new login.
	ErrNeedsLogin = errors.New("the credential's refresh token was refused for good; log in again")
)

// oauthState is a credential's refresh state. It lives in the Credential,
// so it survives reloads and record updates.
type oauthState struct {
	needsLogin atomic.Bool
	counts     [len(refreshResults)]atomic.Uint64

	mu        sync.Mutex
	flight    *refreshFlight // the refresh in flight, nil when none
	dead      string         // the refresh token refused for good
	streak    int            // temporary failures in a row
	retryAt   time.Time      // no attempt before, after a failure
	lastErr   error
	lastErrAt time.Time
}

// refreshFlight is one refresh in flight; everybody who asks for a refresh
// of the credential meanwhile waits for it.
type refreshFlight struct {
	done     chan struct{}
	rejected *auth.Auth // the record the upstream refused; nil for a due refresh
	err      error      // set before done is closed
}

// recordChanged takes the credential out of needs_login when its record
// now has another refresh token than the one refused.
func (s *oauthState) recordChanged(a *auth.Auth) {
	if !s.needsLogin.Load() {
		return
	}
	s.mu.Lock()
	if a.RefreshToken != s.dead {
		s.needsLogin.Store(false)
		s.dead, s.streak, s.retryAt, s.lastErr, s.lastErrAt = "", 0, time.Time{}, nil, time.Time{}
	}
	s.mu.Unlock()
}

func (s *oauthState) count(result string) {
	for i, r := range refreshResults {
		if r == result {
			s.counts[i].Add(1)
		}
	}
}

// markNeedsLogin records that the refresh token dead was refused for good.
// It reports whether the credential just entered the state.
func (s *oauthState) markNeedsLogin(dead string, err error, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead, s.lastErr, s.lastErrAt, s.streak, s.retryAt = dead, err, now, 0, time.Time{}
	return !s.needsLogin.Swap(true)
}

// failed records a temporary failure and returns whether it starts a
// streak and how long until the next attempt.
func (s *oauthState) failed(err error, now time.Time) (first bool, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streak++
	wait = refreshBackoffMax
	if shift := s.streak - 1; shift < 10 {
		wait = min(refreshBackoffMin<<shift, refreshBackoffMax)
	}
	var oe *oauth.Error
	if errors.As(err, &oe) && oe.RetryAfter > wait {
		wait = min(oe.RetryAfter, retryAfterMax)
	}
	s.retryAt, s.lastErr, s.lastErrAt = now.Add(wait), err, now
	return s.streak == 1, wait
}

// succeeded ends a failure streak and reports whether there was one.
func (s *oauthState) succeeded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	had := s.streak > 0
	s.streak, s.retryAt, s.lastErr, s.lastErrAt = 0, time.Time{}, nil, time.Time{}
	return had
}

// backoff returns the time before which no refresh is tried and the
// failure that set it.
func (s *oauthState) backoff() (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retryAt, s.lastErr
}

// NeedsLogin reports whether the credential's refresh token was refused
// for good: it is out of rotation until its record gets another refresh
// token (a new login, an edited record).
func (c *Credential) NeedsLogin() bool { return c.oauth.needsLogin.Load() }

// RefreshStatus is what the pool knows about refreshing a credential's
// OAuth access token.
type RefreshStatus struct {
	// NeedsLogin: the refresh token was refused for good.
	NeedsLogin bool
	// LastError is the failure of the last refresh while failures last,
	// or the refusal that put the credential in needs_login; "" when the
	// last refresh worked. It never holds a token.
	LastError   string
	LastErrorAt time.Time
	// Failures counts temporary failures in a row; RetryAt is when the
	// next attempt may be made after them.
	Failures int
	RetryAt  time.Time
	// Counts are the refreshes by result (RefreshRefreshed, ...).
	Counts map[string]uint64
}

// RefreshStatus returns the credential's refresh state.
func (c *Credential) RefreshStatus() RefreshStatus {
	s := &c.oauth
	st := RefreshStatus{NeedsLogin: s.needsLogin.Load(), Counts: make(map[string]uint64, len(refreshResults))}
	for i, r := range refreshResults {
		st.Counts[r] = s.counts[i].Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr != nil {
		st.LastError, st.LastErrorAt = s.lastErr.Error(), s.lastErrAt
	}
	st.Failures, st.RetryAt = s.streak, s.retryAt
	return st
}

// refreshSettings returns the OAuth settings rec is refreshed with under
// the given per-provider settings, and whether llm_proxy refreshes rec at
// all: it sends an OAuth access token (no API key), has a refresh token,
// is not disabled, and its provider has a token endpoint.
func refreshSettings(rec *auth.Auth, settings map[string]oauth.Settings) (oauth.Settings, bool) {
	s, ok := settings[rec.Provider]
	return s, ok && s.Endpoints.TokenURL != "" && rec.IsOAuth() && rec.RefreshToken != "" && !rec.Disabled
}

// refreshDue returns when rec's access token is due for a refresh:
// refresh_lead before it expires, or refresh_lead after its last refresh
// when the expiry is unknown. A token that lives shorter than the lead is
// refreshed halfway through its life rather than again at once. A record
// that tells neither time is due at once (zero), so its expiry becomes
// known.
func refreshDue(rec *auth.Auth, lead time.Duration) time.Time {
	exp, hasExp := oauth.ParseTime(rec.Expired)
	last, hasLast := oauth.ParseTime(rec.LastRefresh)
	switch {
	case hasExp && hasLast && exp.After(last):
		return later(exp.Add(-lead), last.Add(exp.Sub(last)/2))
	case hasExp:
		return exp.Add(-lead)
	case hasLast:
		return last.Add(lead)
	}
	return time.Time{}
}

// RefreshRejected refreshes c's access token after the upstream refused
// the record rejected with a 401, and returns once the credential has a
// new token: then the request may be tried again on it. A refresh already
// in flight is joined; when storage (or the credential) already holds
// another access token than rejected's, that one is taken over without a
// call to the token endpoint. It fails with ErrNotRefreshable for a
// credential llm_proxy does not refresh, ErrNeedsLogin when its refresh
// token is dead, the last failure while a temporary failure's backoff
// lasts, or ctx's error when the caller gives up waiting (the refresh
// itself goes on).
func (p *Pool) RefreshRejected(ctx context.Context, c *Credential, rejected *auth.Auth) error {
	a, err := p.activeConfig()
	if err != nil {
		return err
	}
	if _, ok := refreshSettings(rejected, a.cfg.OAuth); !ok {
		return ErrNotRefreshable
	}
	if c.NeedsLogin() {
		return ErrNeedsLogin
	}
	for joined := false; ; joined = true {
		if c.Auth().AccessToken != rejected.AccessToken {
			return nil // replaced meanwhile
		}
		if retryAt, lastErr := c.oauth.backoff(); lastErr != nil && clock.Now().Before(retryAt) {
			return lastErr
		}
		f := p.startFlight(a, c, rejected, nil)
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		switch {
		case f.err != nil:
			return f.err
		case c.Auth().AccessToken != rejected.AccessToken:
			return nil
		case f.rejected != nil || joined:
			// The record left storage or stopped being refreshable.
			return errors.New("the refused access token was not replaced")
		}
		// A due refresh was joined and found the token fresh: refresh it
		// once more, for this 401.
	}
}

// startFlight starts a refresh of c for config a, or returns the one in
// flight. A background refresh waits for a slot of sem.
func (p *Pool) startFlight(a *Attachment, c *Credential, rejected *auth.Auth, sem chan struct{}) *refreshFlight {
	s := &c.oauth
	s.mu.Lock()
	if f := s.flight; f != nil {
		s.mu.Unlock()
		return f
	}
	f := &refreshFlight{done: make(chan struct{}), rejected: rejected}
	s.flight = f
	s.mu.Unlock()
	go func() {
		if sem != nil {
			sem <- struct{}{}
			defer func() { <-sem }()
		}
		// The refresh outlives whoever asked for it: once the token
		// endpoint has rotated the refresh token, the new one must reach
		// storage even if the client left or the config was unloaded.
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		err := p.runRefresh(ctx, &refreshJob{p: p, a: a, c: c, rejected: rejected})
		cancel()
		s.mu.Lock()
		f.err = err
		s.flight = nil
		s.mu.Unlock()
		close(f.done)
		p.life.Lock()
		p.wakeRefresh()
		p.life.Unlock()
	}()
	return f
}

// refreshJob is one refresh of one credential for one config.
type refreshJob struct {
	p        *Pool
	a        *Attachment
	c        *Credential
	s        oauth.Settings
	rejected *auth.Auth // the record the upstream refused; nil for a due refresh
	now      time.Time
}

// refreshOutcome is what a refresh came to.
type refreshOutcome struct {
	// rec is the record to install: the refreshed one, or the current one
	// read from storage; nil for none.
	rec *auth.Auth
	// refreshed: rec holds tokens just issued by the token endpoint.
	refreshed bool
	// writeErr: refreshed, but the tokens could not be written back.
	writeErr error
	// err: the refresh failed; dead is the refresh token it used.
	err  error
	dead string
}

// runRefresh refreshes j's credential if it still needs it, installs the
// outcome in the pool and keeps the credential's refresh state.
func (p *Pool) runRefresh(ctx context.Context, j *refreshJob) error {
	rec := j.c.Auth()
	s, ok := refreshSettings(rec, j.a.cfg.OAuth)
	if !ok {
		return ErrNotRefreshable
	}
	j.s, j.now = s, clock.Now()
	var out refreshOutcome
	switch {
	case j.a.configRecord(rec.ID) != nil:
		out = j.inline(ctx)
	case j.a.cfg.Store != nil:
		out = j.stored(ctx)
	default:
		out = j.memory(ctx, rec)
	}
	return p.settle(j, rec, out)
}

// wants reports whether cur, the credential's current record, must be
// refreshed now: it is refreshable and due, or, after a 401, it still
// holds the refused access token.
func (j *refreshJob) wants(cur *auth.Auth) bool {
	if cur == nil {
		return false
	}
	if _, ok := refreshSettings(cur, j.a.cfg.OAuth); !ok {
		return false
	}
	if j.rejected != nil {
		return cur.AccessToken == j.rejected.AccessToken
	}
	return !refreshDue(cur, j.s.RefreshLead).After(j.now)
}

// exchange trades cur's refresh token for new tokens at the token
// endpoint, through cur's proxy_url, and returns cur with them.
func (j *refreshJob) exchange(ctx context.Context, cur *auth.Auth) (*auth.Auth, error) {
	var client *http.Client
	if j.a.cfg.Client != nil {
		client = j.a.cfg.Client(cur)
	}
	tok, err := oauth.Refresh(ctx, client, j.s.Endpoints, cur.RefreshToken, j.now)
	if err != nil {
		return nil, err
	}
	next := cur.Clone()
	next.ApplyToken(tok, j.now)
	return next, nil
}

// stored refreshes a stored record under the storage lock of its key,
// after re-reading it: if another instance refreshed it meanwhile, its
// tokens are taken over instead.
func (j *refreshJob) stored(ctx context.Context) refreshOutcome {
	var out refreshOutcome
	var current *auth.Auth
	_, _, err := j.a.cfg.Store.Update(ctx, j.c.id, func(cur *auth.Auth) (*auth.Auth, error) {
		current = cur
		return j.try(ctx, cur, &out)
	})
	return out.settled(current, err)
}

// memory refreshes a credential that has nowhere to keep its tokens (a
// pool without storage): the new tokens live in memory only.
func (j *refreshJob) memory(ctx context.Context, cur *auth.Auth) refreshOutcome {
	var out refreshOutcome
	if _, err := j.try(ctx, cur, &out); err != nil {
		return out.settled(cur, err)
	}
	return out
}

// try refreshes cur when it still needs it (wants) and returns the
// refreshed record, recording it in out, or nil when cur needs none; a
// failed exchange records the refresh token it spent as out.dead.
func (j *refreshJob) try(ctx context.Context, cur *auth.Auth, out *refreshOutcome) (*auth.Auth, error) {
	if !j.wants(cur) {
		return nil, nil
	}
	next, err := j.exchange(ctx, cur)
	if err != nil {
		out.dead = cur.RefreshToken
		return nil, err
	}
	out.rec, out.refreshed = next, true
	return next, nil
}

// settled completes an outcome once storage was updated (or not) with err:
// without a refreshed record, current is the record to install; an error
// after a refresh is a failed write back.
func (out refreshOutcome) settled(current *auth.Auth, err error) refreshOutcome {
	if !out.refreshed {
		out.rec = current
		out.err = err
		return out
	}
	out.writeErr = err
	return out
}

// settle installs a refresh's outcome, keeps the credential's refresh
// state and logs what an operator must know: a refresh token refused for
// good (once, ERROR), the first temporary failure of a streak (WARN), a
// refresh that could not be written back (ERROR). prev is the record the
// credential had when the refresh started.
func (p *Pool) settle(j *refreshJob, prev *auth.Auth, out refreshOutcome) error {
	log := j.a.cfg.Logger.With(zap.String("pool", p.name), zap.String("auth", j.c.id))
	st := &j.c.oauth
	if out.rec != nil {
		p.installRefreshed(j.a, out.rec)
	}
	switch {
	case out.err != nil && oauth.IsPermanent(out.err):
		st.count(RefreshNeedsLogin)
		if st.markNeedsLogin(out.dead, out.err, j.now) {
			log.Error("OAuth refresh token refused for good; the credential is out of rotation until it is logged in again",
				zap.Error(out.err))
		}
		return fmt.Errorf("%w: %v", ErrNeedsLogin, out.err)
	case out.err != nil:
		st.count(RefreshFailed)
		first, wait := st.failed(out.err, j.now)
		level := zapcore.DebugLevel
		if first {
			level = zapcore.WarnLevel
		}
		if ce := log.Check(level, "refreshing the OAuth access token failed; the current token keeps serving while it is valid"); ce != nil {
			ce.Write(zap.String("expires", prev.Expired), zap.Duration("retry_in", wait), zap.Error(out.err))
		}
		return out.err
	case out.refreshed:
		st.count(RefreshRefreshed)
		if st.succeeded() {
			log.Info("OAuth token refresh works again")
		}
		log.Info("refreshed the OAuth access token", zap.String("expires", out.rec.Expired))
		if out.writeErr != nil {
			log.Error("the refreshed OAuth tokens could not be written to storage: this process keeps them in memory, but the refresh token in storage is spent",
				zap.Error(out.writeErr))
		}
	case out.rec != nil && (out.rec.AccessToken != prev.AccessToken || out.rec.RefreshToken != prev.RefreshToken):
		st.count(RefreshAdopted)
		st.succeeded()
		log.Debug("took over OAuth tokens refreshed elsewhere", zap.String("expires", out.rec.Expired))
	}
	return nil
}

// installRefreshed makes rec the record of its credential in config a,
// and in the pool while a is active and the credential still a member.
// A record that left a meanwhile is not brought back.
func (p *Pool) installRefreshed(a *Attachment, rec *auth.Auth) {
	// p.store orders this after any listing in progress, which may have
	// read the record before it was written.
	p.store.Lock()
	defer p.store.Unlock()
	p.life.Lock()
	defer p.life.Unlock()
	if rec.Inline {
		a.inline = replaceRecord(a.inline, rec)
	} else {
		a.stored = replaceRecord(a.stored, rec)
	}
	if p.active() != a {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	members := p.stored
	if rec.Inline {
		members = p.inline
	}
	if members[rec.ID] && p.upsert(rec) {
		p.changed()
	}
}

// replaceRecord returns recs with the record of rec's ID replaced by rec;
// recs is returned unchanged when it has no such record.
func replaceRecord(recs []*auth.Auth, rec *auth.Auth) []*auth.Auth {
	for i, r := range recs {
		if r.ID == rec.ID {
			out := append([]*auth.Auth(nil), recs...)
			out[i] = rec
			return out
		}
	}
	return recs
}

// newRefreshTimer makes the refresh loop's timer; tests replace it.
var newRefreshTimer = func(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// refreshLoop refreshes a's credentials as they fall due until ctx ends.
// It sleeps until the next due time (at most refreshSafetyTick), or until
// woken (see wakeRefresh): the pool's records changed or a refresh ended.
func (p *Pool) refreshLoop(ctx context.Context, a *Attachment, wake <-chan struct{}) {
	sem := make(chan struct{}, refreshConcurrency)
	for {
		wait := refreshSafetyTick
		if next := p.startDueRefreshes(a, sem); !next.IsZero() {
			wait = min(wait, max(next.Sub(clock.Now()), refreshMinWait))
		}
		tick, stop := newRefreshTimer(wait)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-tick:
		case <-wake:
		}
		stop()
	}
}

// startDueRefreshes starts a refresh of every credential of the pool that
// is due under a's settings and returns the earliest time another one
// falls due (zero for none). Credentials in needs_login, in flight or
// backing off after a failure wait.
func (p *Pool) startDueRefreshes(a *Attachment, sem chan struct{}) time.Time {
	now := clock.Now()
	var next time.Time
	for _, c := range p.Credentials() {
		rec := c.Auth()
		s, ok := refreshSettings(rec, a.cfg.OAuth)
		if !ok || c.NeedsLogin() {
			continue
		}
		due := refreshDue(rec, s.RefreshLead)
		if retryAt, _ := c.oauth.backoff(); retryAt.After(due) {
			due = retryAt
		}
		if due.After(now) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		p.startFlight(a, c, nil, sem)
	}
	return next
}

// wakeRefresh makes the refresh loop look at the pool's credentials again.
// Must hold p.life.
func (p *Pool) wakeRefresh() {
	if l := p.loop; l != nil {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}
