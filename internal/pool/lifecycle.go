package pool

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// Config is what one loaded Caddy config says about a pool: the settings
// of the llm_proxy handler that uses it. The pool keeps it, with the
// storage handle and logger in it, only while the config is attached.
type Config struct {
	// Owner identifies the Caddy config: any comparable value that is the
	// same for every handler of one config and differs between configs
	// (llm_proxy uses the config's metrics registry). A config attaches a
	// pool at most once, so two handlers of one config cannot share a
	// pool name.
	Owner any
	// Inline are the credentials declared in the config.
	Inline []*auth.Auth
	// Store holds the stored credential records; nil means none.
	Store auth.Store
	// ManagementSecret protects the pool's admin routes, as configured
	// (placeholders not yet expanded); "" for none.
	ManagementSecret string
	// Logger gets the pool's warnings while the config is active.
	// Default: no logging.
	Logger *zap.Logger
	// BindingTTL is how long an idle session binding lives; zero or less
	// is the session cache's default.
	BindingTTL time.Duration
	// RescanInterval is how often Store is listed again while the config
	// is active and serving; zero or less turns rescans off.
	RescanInterval time.Duration
	// StateSync is how often the pool's bindings and cooldowns are saved
	// to the storage of Store (an auth.CaddyStore) and the other
	// instances' are merged (state.go); zero or less, no InstanceID or
	// no such store keeps them in memory only.
	StateSync time.Duration
	// InstanceID names this instance's state document: Caddy's instance
	// ID. It must be the same across restarts of one instance and differ
	// between instances sharing the storage.
	InstanceID string
	// OAuth are the config's OAuth settings per provider name (token
	// endpoints, authorize pages, refresh lead), for refreshing and
	// logging in subscription credentials; nil for none.
	OAuth map[string]oauth.Settings
	// Client returns the HTTP client for calls made on a credential's
	// behalf outside the request path (token endpoints): it honours the
	// credential's proxy_url, and a nil credential gets the config's
	// default transport. Nil: http.DefaultClient.
	Client func(a *auth.Auth) *http.Client
}

// Attachment is one config's use of a pool, from [Attach] to
// [Attachment.Detach].
type Attachment struct {
	pool *Pool
	cfg  Config

	// Guarded by pool.life.
	stored   []*auth.Auth // the config's stored records as last listed or written, sorted by ID
	inline   []*auth.Auth // cfg.Inline with the tokens refreshed for them (inlinetokens.go)
	serving  bool
	detached bool
}

// Attach attaches a config to the pool named name, creating the pool when
// no loaded config uses it yet, and makes the config the pool's active
// one: its inline credentials and the records listed from its store (see
// [Pool.Rescan] for how a failed listing is handled) become the pool's
// members, credentials that stay keeping their state. It fails when the
// config already attached the pool, or when a stored record has the ID of
// an inline credential. Background work waits for [Attachment.Serve].
// Every Attachment must be detached.
func Attach(ctx context.Context, name string, cfg Config) (*Attachment, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	p := Acquire(name)
	a, err := p.attach(ctx, cfg)
	if err != nil {
		Release(name)
		return nil, err
	}
	return a, nil
}

func (p *Pool) attach(ctx context.Context, cfg Config) (*Attachment, error) {
	// Holding p.store makes attaches of one pool, listings and admin
	// writes happen one at a time.
	p.store.Lock()
	a, stop, err := p.attachStored(ctx, cfg)
	p.store.Unlock()
	if err != nil {
		return nil, err
	}
	stop() // after unlocking: the stopped loop may be waiting for p.store
	// A pool new to this process resumes the state saved by this instance
	// and the others before the config serves (state.go).
	p.loadState(ctx, a)
	return a, nil
}

// attachStored lists cfg's store and pushes the config; stop waits for the
// background loops of the previous active config to exit. Must hold p.store.
func (p *Pool) attachStored(ctx context.Context, cfg Config) (a *Attachment, stop func(), err error) {
	if p.attachedBy(cfg.Owner) {
		return nil, nil, fmt.Errorf("pool %q is used by more than one llm_proxy handler in this config; give each handler its own pool name", p.name)
	}
	a = &Attachment{pool: p, cfg: cfg}
	a.inline = p.inlineWithTokens(ctx, a)
	listed, bad, _ := p.list(ctx, a, p.storedAuths())
	p.warn(cfg.Logger, bad, nil)
	stored, conflicts := withoutInline(listed, cfg.Inline)
	if len(conflicts) > 0 {
		return nil, nil, fmt.Errorf("auth %q is declared inline and also exists in storage%s; remove one of them",
			conflicts[0], whereStored(cfg.Store, conflicts[0]))
	}
	p.life.Lock()
	defer p.life.Unlock()
	a.stored = stored
	p.attached = append(p.attached, a)
	// The active config changed: the previous one's rescans stop, and this
	// one's start when it serves.
	stop = p.stopLoop()
	p.apply(a)
	return a, stop, nil
}

// attachedBy reports whether the config owner has attached p.
func (p *Pool) attachedBy(owner any) bool {
	p.life.Lock()
	defer p.life.Unlock()
	return slices.ContainsFunc(p.attached, func(a *Attachment) bool { return a.cfg.Owner == owner })
}

// Pool returns the pool a is attached to.
func (a *Attachment) Pool() *Pool { return a.pool }

// Serve reports that a's config serves requests: Caddy has started it.
// When a is the active config, the pool drops the bindings to credentials
// that left it and starts its background work. Calling Serve again does
// nothing.
func (a *Attachment) Serve() {
	p := a.pool
	p.life.Lock()
	defer p.life.Unlock()
	if a.serving || a.detached {
		return
	}
	a.serving = true
	if p.active() == a {
		p.startBackground(a)
	}
}

// Detach removes a's config from the pool, releasing the pool. When a was
// the active config, its background work stops and the previous config
// becomes active again: its members and binding TTL are applied, and its
// background work restarts if it serves. When a was the last config
// using the pool and its state loop ran, the pool's state document is
// written once more (state.go). Requests still being served through the
// pool keep working. Calling Detach again does nothing.
func (a *Attachment) Detach() {
	p := a.pool
	p.life.Lock()
	if a.detached {
		p.life.Unlock()
		return
	}
	a.detached = true
	wasActive := p.active() == a
	p.attached = slices.DeleteFunc(p.attached, func(o *Attachment) bool { return o == a })
	last := len(p.attached) == 0
	wait := func() {}
	if wasActive {
		wait = p.stopLoop()
		if next := p.active(); next != nil {
			next.cfg.Logger.Info("restoring the credentials and settings of the running config", zap.String("pool", p.name))
			p.apply(next)
			if next.serving {
				p.startBackground(next)
			}
		}
	}
	p.life.Unlock()
	wait()
	if last {
		// Shutdown, or a config without the pool: save its state while
		// a's storage is still there.
		p.saveStateOnExit(a)
	}
	Release(p.name)
}

// active returns the active config, nil when none is attached. Must hold
// p.life.
func (p *Pool) active() *Attachment {
	if len(p.attached) == 0 {
		return nil
	}
	return p.attached[len(p.attached)-1]
}

// activeConfig returns the active config. Must not hold p.life.
func (p *Pool) activeConfig() (*Attachment, error) {
	p.life.Lock()
	defer p.life.Unlock()
	a := p.active()
	if a == nil {
		return nil, fmt.Errorf("pool %q has no loaded config", p.name)
	}
	return a, nil
}

// apply makes a's credentials and binding TTL the pool's. Must hold
// p.life.
func (p *Pool) apply(a *Attachment) {
	p.SetMembers(a.inline, a.stored)
	p.Sessions.SetTTL(a.cfg.BindingTTL)
}

// startBackground starts the pool's background work for a, the active
// config, which serves: bindings to credentials that left the pool are
// dropped, expired bindings are swept, a's store is rescanned and OAuth
// access tokens are refreshed as they fall due (refresh.go). Must hold
// p.life.
func (p *Pool) startBackground(a *Attachment) {
	p.dropStaleBindings()
	p.Sessions.Start(sweepInterval)
	p.startLoop(a)
}

// ManagementSecret returns the management secret of the active config as
// configured, "" when it has none; ok is false when no config is attached.
func (p *Pool) ManagementSecret() (secret string, ok bool) {
	p.life.Lock()
	defer p.life.Unlock()
	a := p.active()
	if a == nil {
		return "", false
	}
	return a.cfg.ManagementSecret, true
}

// newTicker makes the ticker of a rescan loop; tests replace it.
var newTicker = func(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// loops are the running background loops of a pool's active config:
// storage rescans and OAuth refreshes.
type loops struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when every loop has exited
	wake   chan struct{} // see Pool.wakeRefresh
}

// startLoop starts a's background loops: a listing of its store every
// RescanInterval, the refresh loop when a has OAuth settings, and the
// state loop every StateSync when a shares state through storage. Must
// hold p.life.
func (p *Pool) startLoop(a *Attachment) {
	rescan := a.cfg.Store != nil && a.cfg.RescanInterval > 0
	refresh := len(a.cfg.OAuth) > 0
	storage, _ := p.stateStorage(a)
	state := storage != nil
	if p.loop != nil || !rescan && !refresh && !state {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &loops{cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	p.loop = l
	var wg sync.WaitGroup
	if rescan {
		tick, stopTicker := newTicker(a.cfg.RescanInterval)
		wg.Go(func() {
			defer stopTicker()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick:
					_, _ = p.rescan(ctx, a)
				}
			}
		})
	}
	if refresh {
		wg.Go(func() { p.refreshLoop(ctx, a, l.wake) })
	}
	if state {
		p.state.synced.Store(true)
		tick, stopTicker := newStateTicker(stateTick(a.cfg.StateSync))
		wg.Go(func() { p.stateLoop(ctx, a, tick, stopTicker) })
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
}

// stopLoop stops the background loops. The returned function waits until
// they have exited (refreshes they started finish on their own); call it
// after releasing p.life and p.store, which a rescan in progress may be
// waiting for. Must hold p.life.
func (p *Pool) stopLoop() (wait func()) {
	l := p.loop
	if l == nil {
		return func() {}
	}
	p.loop = nil
	l.cancel()
	return func() { <-l.done }
}
