// Package pool owns the state of each named credential pool: the
// credentials with their cooldowns and counters, the strategies' cursors,
// the session bindings, and the pool's lifecycle. A pool lives in a
// process-wide caddy.UsagePool keyed by its name, so everything in it
// survives config reloads for as long as some loaded config uses the pool.
//
// Lifecycle. Each loaded Caddy config that uses a pool attaches to it
// ([Attach]) with its [Config]: inline credentials, the storage of its
// records, management secret, logger, binding TTL and rescan interval. The
// attached configs form a stack whose newest entry is the active one: its
// credentials (inline and stored) are the pool's members, and its store is
// the one that rescans and admin writes use. Caddy provisions a new config
// before it cleans up the old one, so a reload attaches the new config on
// top, and the old one's [Attachment.Detach] later just leaves the stack.
// When a new config is refused after it attached, its Detach makes the
// running config active again and re-applies that config's members: a
// refused reload changes nothing.
//
// Background work (the session sweeper, one storage rescan loop and one
// OAuth refresh loop per pool) starts only when the active config serves
// ([Attachment.Serve], called once Caddy has started the config), so
// `caddy validate` and a refused reload start nothing. The loops follow
// the active config and stop when it changes or the pool is destroyed.
//
// What outlives a config holds nothing of it: a storage handle, logger or
// secret is kept only in the Attachment of the config that brought it, and
// leaves the pool with Detach. Everything else in a Pool (credentials,
// cooldowns, bindings, the memory of bad records already warned about) is
// plain data that any later config may take over.
//
// Reading a pool: the handler, the admin API and metrics look pools up
// with [Lookup] or keep the *Pool their Attachment gives; they never reach
// into a handler.
package pool

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/provider"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// maxSets bounds the eligible sets (and strategy cursors) kept per pool;
// there is one per API family and model name seen.
const maxSets = 4096

// sweepInterval is how often expired session bindings are swept.
const sweepInterval = time.Minute

// pools holds every pool in use by any loaded config, keyed by name.
var pools = caddy.NewUsagePool()

// Pool is the state of one named pool shared by every config that uses the
// name. Its lifecycle methods live in lifecycle.go and storage.go.
type Pool struct {
	name string

	// Sessions binds conversations to credentials.
	Sessions *session.Cache
	// Strategy is the strategies' memory (round-robin cursors, WRR weights).
	Strategy *selector.State

	// Members: the credentials and the eligible sets built over them.
	mu      sync.RWMutex
	creds   map[string]*Credential
	inline  map[string]bool
	stored  map[string]bool
	version uint64
	sets    map[setKey]*Eligible

	// Lifecycle, guarded by life: the attached configs, newest (active)
	// last, and the background loops of the active one.
	life     sync.Mutex
	attached []*Attachment
	loop     *loops

	// store serialises storage listings and admin writes, so a listing
	// taken before a write never undoes it; it also guards warned. Lock
	// order: store, life, mu.
	store  sync.Mutex
	warned map[string]string // storage key → problem already logged

	// logins are the logins started through the admin API and waiting
	// for their code (login.go).
	logins loginTable

	// state saves bindings and cooldowns to storage and merges other
	// instances' (state.go).
	state stateSync

	// usage counts tokens and requests per client, credential and model
	// over recent minutes (usage.go).
	usage usageLedger
}

type setKey struct {
	family   apifamily.Family
	endpoint apifamily.Endpoint
	model    string
}

// Eligible is the credentials that may serve one API family and model,
// in the order of the selector.Set built over them.
type Eligible struct {
	Set   *selector.Set
	Creds []*Credential
}

// Destruct stops the pool's background work when the last config using it
// is cleaned up.
func (p *Pool) Destruct() error {
	p.life.Lock()
	wait := p.stopLoop()
	p.life.Unlock()
	wait()
	p.Sessions.Stop()
	return nil
}

// Acquire returns the pool named name, creating it when no loaded config uses
// it yet. Every Acquire must be paired with a Release. Configs use [Attach],
// which acquires the pool; Acquire alone gives a pool without a config, whose
// members are set with SetMembers (tests do that).
func Acquire(name string) *Pool {
	v, _, _ := pools.LoadOrNew(name, func() (caddy.Destructor, error) {
		return newPool(name), nil
	})
	return v.(*Pool)
}

// newPool returns an empty pool named name, outside the process-wide
// table (tests make two instances of one pool name with it).
func newPool(name string) *Pool {
	return &Pool{
		name:     name,
		Sessions: session.NewCache(session.Options{Now: clock.Now}),
		Strategy: selector.NewState(),
		creds:    make(map[string]*Credential),
		inline:   make(map[string]bool),
		stored:   make(map[string]bool),
		sets:     make(map[setKey]*Eligible),
	}
}

// Release drops one use of the pool named name.
func Release(name string) {
	_, _ = pools.Delete(name)
}

// Lookup returns the pool named name if a loaded config uses it.
func Lookup(name string) (*Pool, bool) {
	var found *Pool
	pools.Range(func(key, value any) bool {
		if key.(string) == name {
			found = value.(*Pool)
			return false
		}
		return true
	})
	return found, found != nil
}

// Names lists the pools in use, sorted.
func Names() []string {
	var names []string
	pools.Range(func(key, _ any) bool {
		names = append(names, key.(string))
		return true
	})
	sort.Strings(names)
	return names
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// SetMembers makes inline and stored the pool's credentials. Credentials
// that stay keep their cooldowns and counters. Bindings to credentials that
// left are not dropped here: a config that attaches may still be refused,
// so they go once the config serves ([Attachment.Serve]). An attached
// config's members are set by the pool itself; call SetMembers only on a
// pool without configs.
func (p *Pool) SetMembers(inline, stored []*auth.Auth) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inlineIDs := idSet(inline)
	storedIDs := idSet(stored)
	changed := p.replace(inline, inlineIDs, p.inline)
	p.inline = inlineIDs
	if p.replace(stored, storedIDs, p.stored) {
		changed = true
	}
	p.stored = storedIDs
	if changed {
		p.changed()
	}
}

// setStored replaces the pool's stored credentials with auths (none of
// them declared inline) and drops bindings to credentials that left or
// were disabled.
func (p *Pool) setStored(auths []*auth.Auth) {
	p.mu.Lock()
	ids := idSet(auths)
	changed := p.replace(auths, ids, p.stored)
	p.stored = ids
	if changed {
		p.changed()
	}
	p.mu.Unlock()
	if changed {
		p.dropStaleBindings()
	}
}

func idSet(auths []*auth.Auth) map[string]bool {
	ids := make(map[string]bool, len(auths))
	for _, a := range auths {
		ids[a.ID] = true
	}
	return ids
}

// storedAuths returns the records of the pool's stored credentials, sorted
// by ID.
func (p *Pool) storedAuths() []*auth.Auth {
	p.mu.RLock()
	out := make([]*auth.Auth, 0, len(p.stored))
	for id := range p.stored {
		if c, ok := p.creds[id]; ok {
			out = append(out, c.Auth())
		}
	}
	p.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PutStored adds or replaces one stored credential in memory and drops the
// bindings of a credential now disabled. [Pool.Save] writes to storage and
// then calls it; tests use it on pools without configs.
func (p *Pool) PutStored(a *auth.Auth) {
	p.mu.Lock()
	p.stored[a.ID] = true
	p.upsert(a)
	p.changed()
	p.mu.Unlock()
	p.dropStaleBindings()
}

// removeStored removes one stored credential and drops its bindings.
func (p *Pool) removeStored(id string) bool {
	p.mu.Lock()
	if !p.stored[id] {
		p.mu.Unlock()
		return false
	}
	delete(p.stored, id)
	delete(p.creds, id)
	p.changed()
	p.mu.Unlock()
	p.Sessions.InvalidateAuth(id)
	return true
}

// IsInline reports whether the credential id was declared in the config.
func (p *Pool) IsInline(id string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.inline[id]
}

// replace installs auths as the members of one source (inline or stored),
// removing the old members of that source that are gone. It reports whether
// selection changed; the caller then calls p.changed. Must hold p.mu.
func (p *Pool) replace(auths []*auth.Auth, ids, old map[string]bool) bool {
	removed := false
	for id := range old {
		if !ids[id] {
			delete(p.creds, id)
			removed = true
		}
	}
	changed := removed
	for _, a := range auths {
		if p.upsert(a) {
			changed = true
		}
	}
	return changed
}

// dropStaleBindings drops session bindings to credentials that left the
// pool or are disabled. Must not hold p.mu.
func (p *Pool) dropStaleBindings() {
	p.Sessions.Retain(func(id string) bool {
		c, ok := p.Get(id)
		return ok && !c.Auth().Disabled
	})
}

// upsert adds a credential or swaps the record of an existing one, keeping
// its cooldowns and counters. It reports whether anything changed.
func (p *Pool) upsert(a *auth.Auth) bool {
	if c, ok := p.creds[a.ID]; ok {
		old := c.Auth()
		c.setAuth(a)
		return !sameSelection(old, a)
	}
	p.creds[a.ID] = newCredential(a)
	return true
}

// sameSelection reports whether two records of one credential select
// alike: same provider, tier, weight, state and model lists and aliases.
func sameSelection(a, b *auth.Auth) bool {
	return a.Provider == b.Provider && a.Priority == b.Priority && a.EffectiveWeight() == b.EffectiveWeight() &&
		a.Disabled == b.Disabled && slices.Equal(a.Models, b.Models) &&
		slices.Equal(a.ExcludedModels, b.ExcludedModels) && maps.Equal(a.ModelAlias, b.ModelAlias)
}

// changed invalidates the eligible sets. Must hold p.mu.
func (p *Pool) changed() {
	p.version++
	clear(p.sets)
}

// Get returns the credential id.
func (p *Pool) Get(id string) (*Credential, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	c, ok := p.creds[id]
	return c, ok
}

// Credentials returns every credential of the pool, sorted by ID.
func (p *Pool) Credentials() []*Credential {
	p.mu.RLock()
	out := make([]*Credential, 0, len(p.creds))
	for _, c := range p.creds {
		out = append(out, c)
	}
	p.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Eligible returns the enabled credentials that serve the route (its
// family and, for providers that serve only some OpenAI endpoints, its
// endpoint) and model. An empty model (e.g. GET /v1/models) matches every
// credential of the family. The result is cached until the credential set changes.
func (p *Pool) Eligible(route apifamily.Route, model string) *Eligible {
	family := route.Family
	k := setKey{family, route.Endpoint, model}
	p.mu.RLock()
	e := p.sets[k]
	p.mu.RUnlock()
	if e != nil {
		return e
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e = p.sets[k]; e != nil {
		return e
	}
	var cands []selector.Candidate
	byID := make(map[string]*Credential)
	for _, c := range p.creds {
		a := c.Auth()
		if a.Disabled || !provider.Lookup(a.Provider).ServesRoute(route) || (model != "" && !a.ServesModel(model)) {
			continue
		}
		cands = append(cands, selector.Candidate{ID: c.id, Priority: a.Priority, Weight: a.EffectiveWeight(), Usage: c})
		byID[c.id] = c
	}
	name := family.String()
	if route.Endpoint != apifamily.EndpointAny {
		// Providers may serve only some OpenAI endpoints (Codex).
		name += "/" + strconv.Itoa(int(route.Endpoint))
	}
	set := selector.NewSet(name+"|"+model, cands)
	e = &Eligible{Set: set, Creds: make([]*Credential, set.Len())}
	for i := range e.Creds {
		e.Creds[i] = byID[set.At(i).ID]
	}
	if len(p.sets) >= maxSets {
		// Model names come from clients: bound the sets. The strategies'
		// memory of them bounds itself (see selector.State).
		clear(p.sets)
	}
	p.sets[k] = e
	return e
}

// Availability counts the pool's credentials that are enabled and those of
// them available at now: not in state needs_login and not cooling for
// every model.
func (p *Pool) Availability(now time.Time) (total, enabled, available int) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, c := range p.creds {
		total++
		if c.Auth().Disabled {
			continue
		}
		enabled++
		if c.NeedsLogin() {
			continue
		}
		if now.UnixNano() >= c.coolMax.Load() {
			available++
		} else {
			c.mu.Lock()
			if !c.all.until.After(now) {
				available++
			}
			c.mu.Unlock()
		}
	}
	return total, enabled, available
}
