package pool

import (
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
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
	all    time.Time             // cooldown for every model
	models map[string]*modelCool // per-model cooldowns and 429 ladders

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
	streak int // consecutive 429s without a hint; see failure.Policy.Cooldown
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
	if c.all.After(now) {
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
	until := c.all
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
	if c.all.After(now) {
		out = append(out, Cooldown{Model: "*", Until: c.all})
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
	if v.Scope == failure.ScopeAll {
		until, _ = p.Cooldown(v, 0, now)
		c.all = later(c.all, until)
	} else {
		m := c.modelEntry(key, now)
		until, m.streak = p.Cooldown(v, m.streak, now)
		m.until = later(m.until, until)
		m.reason = v.Reason
	}
	if n := until.UnixNano(); n > c.coolMax.Load() {
		c.coolMax.Store(n)
	}
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

// Reset clears every cooldown and backoff ladder.
func (c *Credential) Reset() {
	c.mu.Lock()
	c.all = time.Time{}
	c.models = nil
	c.coolMax.Store(0)
	c.mu.Unlock()
}
