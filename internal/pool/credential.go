package pool

import (
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

// Credential is one upstream credential of a pool together with the runtime
// state that must outlive config reloads and record updates: cooldown
// deadlines, the 429 streaks and counters. The record itself is
// swapped atomically when storage or the config changes it.
type Credential struct {
	id     string
	record atomic.Pointer[target]

	// coolMax is the latest cooldown deadline of any scope in unix nanos;
	// when now is past it the credential is available for every model and
	// the mutex is never touched (the common case).
	coolMax atomic.Int64

	mu     sync.Mutex
	all    modelCool             // cooldown for every model (no ladder)
	models map[string]*modelCool // per-model cooldowns and 429 ladders
	// resetAt is the latest admin reset known here, made by this
	// instance or merged from another: cooldowns learnt before it are
	// cleared and never merged back.
	resetAt time.Time

	// changes grows whenever this instance learns a cooldown or resets
	// the credential (not when it merges another instance's), so the
	// pool's state document is written only when it has news (state.go).
	changes atomic.Uint64

	// sessionsDropped is when this instance last dropped the
	// credential's session bindings (Pool.DropSessions), in unix nanos.
	sessionsDropped atomic.Int64

	successes atomic.Uint64
	failures  atomic.Uint64

	// quota is what the upstream last reported about the credential's
	// usage limits (quota.go).
	quota quotaState

	// oauth is the state of refreshing the credential's OAuth access
	// token (refresh.go).
	oauth oauthState
}

// modelCool is the cooldown of one model (or model on one endpoint).
type modelCool struct {
	until  time.Time
	reason string
	since  time.Time // when the deadline was learnt (wall clock)
	streak int       // consecutive 429s without a hint; see failure.Policy.Cooldown
}

// target is a record with its base URL parsed once.
type target struct {
	auth *auth.Auth
	base *url.URL
}

func newTarget(a *auth.Auth) *target {
	base, err := url.Parse(a.BaseURLOrDefault())
	if err != nil {
		// Records are validated before they reach a pool; an empty URL
		// fails at send time like an unreachable upstream.
		base = &url.URL{}
	}
	return &target{auth: a, base: base}
}

func newCredential(a *auth.Auth) *Credential {
	c := &Credential{id: a.ID}
	c.record.Store(newTarget(a))
	return c
}

// setAuth swaps the record, keeping the runtime state. A record with
// another refresh token than the one refused for good (a new login, an
// edited file) takes the credential out of state needs_login.
func (c *Credential) setAuth(a *auth.Auth) {
	c.record.Store(newTarget(a))
	c.oauth.recordChanged(a)
}

// ID returns the credential's ID.
func (c *Credential) ID() string { return c.id }

// Auth returns the current record. Callers must not modify it.
func (c *Credential) Auth() *auth.Auth { return c.record.Load().auth }

// Target returns the current record and its parsed base URL. Callers must
// not modify either.
func (c *Credential) Target() (*auth.Auth, *url.URL) {
	t := c.record.Load()
	return t.auth, t.base
}

// Available reports whether the credential may serve model at now: it is
// not disabled, does not need a new login and is not cooling down for that
// model or for all models.
func (c *Credential) Available(model string, now time.Time) bool {
	if c.Auth().Disabled || c.NeedsLogin() {
		return false
	}
	if now.UnixNano() >= c.coolMax.Load() {
		return true
	}
	return !c.CoolingUntil(model, now).After(now)
}

// Credential states, as State names them.
const (
	StateServing    = "serving"
	StateCooling    = "cooling"
	StateDisabled   = "disabled"
	StateNeedsLogin = "needs_login"
)

// State names what the credential does at now: StateDisabled,
// StateNeedsLogin (its refresh token was refused for good), StateCooling
// (cooling down for every model) or StateServing (possibly cooling down
// for some models: see Cooldowns).
func (c *Credential) State(now time.Time) string {
	switch {
	case c.Auth().Disabled:
		return StateDisabled
	case c.NeedsLogin():
		return StateNeedsLogin
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.all.until.After(now) {
		return StateCooling
	}
	return StateServing
}

// CoolingUntil returns when the credential becomes available for model
// again; a time not after now means it is available.
func (c *Credential) CoolingUntil(model string, now time.Time) time.Time {
	if now.UnixNano() >= c.coolMax.Load() {
		return time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	until := c.all.until
	if m := c.models[model]; m != nil && m.until.After(until) {
		until = m.until
	}
	return until
}

// Cooldown is one active cooldown, as reported by the admin API.
type Cooldown struct {
	Model  string    `json:"model"` // "*" for all models
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
}

// Cooldowns lists the cooldowns still active at now.
func (c *Credential) Cooldowns(now time.Time) []Cooldown {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Cooldown
	if c.all.until.After(now) {
		out = append(out, Cooldown{Model: "*", Until: c.all.until, Reason: c.all.reason})
	}
	for model, m := range c.models {
		if m.until.After(now) {
			out = append(out, Cooldown{Model: model, Until: m.until, Reason: m.reason})
		}
	}
	return out
}

// Counts returns the credential's success and failure counts.
func (c *Credential) Counts() (successes, failures uint64) {
	return c.successes.Load(), c.failures.Load()
}

// RecordFailure counts a failed attempt and stores the cooldown of its
// failover verdict under key: the credential's own cooldown for
// failure.ScopeAll, otherwise the entry of key (a model, or a model on one
// endpoint). failure.ScopeNone cools nothing. The deadline and the 429
// streak come from p.Cooldown; a deadline only ever moves later. It
// returns the deadline the verdict set (zero for ScopeNone).
func (c *Credential) RecordFailure(key string, v failure.Verdict, p failure.Policy, now time.Time) time.Time {
	c.failures.Add(1)
	if v.Scope == failure.ScopeNone {
		return time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var until time.Time
	m := &c.all
	if v.Scope == failure.ScopeAll {
		until, _ = p.Cooldown(v, 0, now)
	} else {
		m = c.modelEntry(key, now)
		until, m.streak = p.Cooldown(v, m.streak, now)
	}
	if until.After(m.until) {
		m.until, m.since = until, now
	}
	m.reason = v.Reason
	if n := until.UnixNano(); n > c.coolMax.Load() {
		c.coolMax.Store(n)
	}
	c.changes.Add(1)
	return until
}

// modelEntry returns the cooldown entry of key, making room for it when
// it is new. Must hold c.mu.
func (c *Credential) modelEntry(key string, now time.Time) *modelCool {
	if m := c.models[key]; m != nil {
		return m
	}
	if c.models == nil {
		c.models = make(map[string]*modelCool)
	}
	if len(c.models) >= maxModelCooldowns {
		c.evictModel(now)
	}
	m := &modelCool{}
	c.models[key] = m
	return m
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// maxModelCooldowns bounds the per-model entries (cooldowns and 429
// ladders) of one credential: model names come from clients. The
// credential-wide cooldown is kept apart and never evicted.
const maxModelCooldowns = 256

// evictModel makes room for one more per-model entry: it drops every entry
// no longer cooling at now and, when none was, the one whose cooldown ends
// soonest (the least cooling time lost). Must hold c.mu.
func (c *Credential) evictModel(now time.Time) {
	soonest, found := "", false
	var soonestUntil time.Time
	for model, m := range c.models {
		if !m.until.After(now) {
			delete(c.models, model)
			continue
		}
		if !found || m.until.Before(soonestUntil) {
			soonest, soonestUntil, found = model, m.until, true
		}
	}
	if len(c.models) >= maxModelCooldowns && found {
		delete(c.models, soonest)
	}
}

// RecordSuccess counts a success and resets the 429 backoff ladder of model.
func (c *Credential) RecordSuccess(model string) {
	c.successes.Add(1)
	if c.coolMax.Load() == 0 {
		return
	}
	c.mu.Lock()
	if m := c.models[model]; m != nil {
		m.streak = 0
	}
	c.mu.Unlock()
}

// Reset clears every cooldown and backoff ladder. Other instances sharing
// the pool's state clear the cooldowns they learnt before it too, once
// they merge this instance's state document.
func (c *Credential) Reset() {
	now := clock.Now()
	c.mu.Lock()
	c.all = modelCool{}
	c.models = nil
	c.coolMax.Store(0)
	c.resetAt = later(c.resetAt, now)
	c.mu.Unlock()
	c.changes.Add(1)
}

// savedCooldown is one cooldown as the pool's state document keeps it.
type savedCooldown struct {
	Key    string    // "*" for every model, else a model (or model on one endpoint)
	Until  time.Time // the deadline
	Reason string    // the failure reason, as in Cooldown
	Since  time.Time // when it was learnt
}

// allModels is the key of the credential-wide cooldown in saved state.
const allModels = "*"

// maxMergedCooldown caps the deadline of a cooldown merged from another
// instance's state document: far beyond any configured cooldown, and well
// within the nanosecond times a credential compares (a deadline after year
// 2262 would overflow them and leave the credential half cooling).
const maxMergedCooldown = 365 * 24 * time.Hour

// exportState returns the cooldowns still active at now and the time of
// the latest reset known here.
func (c *Credential) exportState(now time.Time) (cools []savedCooldown, resetAt time.Time) {
	if now.UnixNano() >= c.coolMax.Load() {
		c.mu.Lock()
		resetAt = c.resetAt
		c.mu.Unlock()
		return nil, resetAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.all.until.After(now) {
		cools = append(cools, savedCooldown{Key: allModels, Until: c.all.until, Reason: c.all.reason, Since: c.all.since})
	}
	for key, m := range c.models {
		if m.until.After(now) {
			cools = append(cools, savedCooldown{Key: key, Until: m.until, Reason: m.reason, Since: m.since})
		}
	}
	return cools, c.resetAt
}

// mergeState merges what another instance knows about the credential: its
// latest reset (the later one wins; cooldowns learnt here before it are
// cleared) and its cooldowns. A saved cooldown learnt before the latest
// reset, or over at now, is ignored; one that ends later than this
// instance's for its key replaces it (reason and learning time included),
// and none ever shortens one. A saved learning time after now counts as
// now, and a deadline is capped at now + maxMergedCooldown. At most maxModelCooldowns per-model entries
// are taken, the latest deadlines first, and the bound of the per-model
// entries holds as for local failures. It reports whether anything
// changed. Merging is not news of this instance's: changes does not grow.
func (c *Credential) mergeState(cools []savedCooldown, resetAt, now time.Time) bool {
	// The saved cooldowns are filtered and bounded before c.mu is taken
	// for the merge: a document may hold a million, and requests wait for
	// c.mu.
	c.mu.Lock()
	floor := later(c.resetAt, resetAt)
	c.mu.Unlock()
	live := make([]savedCooldown, 0, len(cools))
	for _, s := range cools {
		// Another instance's clock may run ahead, or its document be
		// hostile: a learning time after now counts as now (so a reset
		// here still clears it), a deadline is capped.
		s.Since = notAfter(s.Since, now)
		s.Until = notAfter(s.Until, now.Add(maxMergedCooldown))
		if s.Until.After(now) && !s.Since.Before(floor) && s.Key != "" {
			live = append(live, s)
		}
	}
	if len(live) > maxModelCooldowns+1 {
		slices.SortFunc(live, func(a, b savedCooldown) int { return b.Until.Compare(a.Until) })
		// The credential-wide entry is not a per-model one: keep it.
		kept := live[:0:0]
		n := 0
		for _, s := range live {
			if s.Key == allModels || n < maxModelCooldowns {
				kept = append(kept, s)
				if s.Key != allModels {
					n++
				}
			}
		}
		live = kept
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	if resetAt.After(c.resetAt) {
		c.resetAt = resetAt
		if c.clearBefore(resetAt) {
			changed = true
		}
	}
	for _, s := range live {
		if s.Since.Before(c.resetAt) {
			continue // reset here meanwhile
		}
		var m *modelCool
		if s.Key == allModels {
			m = &c.all
		} else {
			m = c.modelEntry(s.Key, now)
		}
		if !s.Until.After(m.until) {
			continue
		}
		m.until, m.reason, m.since = s.Until, s.Reason, s.Since
		if n := s.Until.UnixNano(); n > c.coolMax.Load() {
			c.coolMax.Store(n)
		}
		changed = true
	}
	return changed
}

// clearBefore drops the cooldowns (and 429 ladders) learnt before t, as
// a reset at t would have, and lowers coolMax to what is left. It reports
// whether a cooldown was dropped. Must hold c.mu.
func (c *Credential) clearBefore(t time.Time) bool {
	dropped := false
	if !c.all.until.IsZero() && c.all.since.Before(t) {
		c.all = modelCool{}
		dropped = true
	}
	latest := c.all.until
	for key, m := range c.models {
		if !m.until.IsZero() && m.since.Before(t) {
			delete(c.models, key)
			dropped = true
			continue
		}
		latest = later(latest, m.until)
	}
	if dropped {
		c.coolMax.Store(coolNanos(latest))
	}
	return dropped
}

// coolNanos is t in unix nanos for coolMax, 0 for the zero time.
func coolNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
