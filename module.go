// Package llmproxy is a Caddy module that turns a route into an LLM API
// gateway: it holds a pool of upstream credentials (Anthropic, OpenAI, Codex,
// Gemini and OpenAI-compatible keys and OAuth tokens) and sends every client
// request upstream with exactly one of them, keeping conversations on one
// credential, spreading new ones, and skipping credentials that fail.
//
// The request path reads like the package list: access (auth), parse
// (apifamily, session), choose (selector), send and classify (handler,
// failure), with per-pool state that outlives reloads in pool.
package llmproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/handler"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler config.
const (
	DefaultPool           = "default"
	DefaultMaxRequestBody = 32 << 20
	DefaultRescanInterval = 30 * time.Second
	DefaultAffinityTTL    = time.Hour
	DefaultStateSync      = 2 * time.Second
)

// Handler is an LLM API gateway over a pool of upstream credentials.
//
// It serves Anthropic Messages (/v1/messages), OpenAI Chat Completions,
// Completions, Responses, Embeddings and Models (/v1/...), and Gemini
// (/v1beta/models/{model}:{action}) requests, sending each upstream with one
// credential of the pool that serves the requested model.
//
// It sets these placeholders after the request was served:
//
//	{http.llm_proxy.pool}      the pool name
//	{http.llm_proxy.auth}      ID of the credential that answered (or was tried last)
//	{http.llm_proxy.session}   the session ID used for affinity, if any
//	{http.llm_proxy.affinity}  hit, miss, rebind or none
//	{http.llm_proxy.attempts}  number of upstream attempts
//
// With access configured, {http.auth.user.id} is the label of the client's
// key (never the key itself).
type Handler struct {
	// Pool names the credential pool. Session bindings, cooldowns and
	// counters are kept per pool name and survive config reloads as long as
	// the name stays. Names must be unique within one config.
	// Default: "default".
	Pool string `json:"pool,omitempty"`

	// Auths are credentials declared in the config. They join the
	// credentials found in storage to form the pool, and are never written
	// to storage. Values accept placeholders such as {env.ANTHROPIC_KEY_1}.
	Auths []*InlineAuth `json:"auths,omitempty"`

	// StoragePrefix is where credential records live in storage, one JSON
	// document per credential at <prefix>/<id>.json.
	// Default: "llm_proxy/<pool>/auths".
	StoragePrefix string `json:"storage_prefix,omitempty"`

	// StorageRaw is the storage module for credential records. Default:
	// Caddy's global storage (the file system unless configured otherwise).
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`

	// RescanInterval is how often storage is listed again so added, changed,
	// disabled and deleted records take effect without a reload. 0 turns
	// rescans off. Default: 30s.
	RescanInterval *caddy.Duration `json:"rescan_interval,omitempty"`

	// StateSync shares the pool's session bindings and cooldowns through
	// its storage, so that instances sharing the storage, and this one
	// after a restart, keep conversations on their credential and stay
	// off cooling ones. Each instance writes one document,
	// llm_proxy/<pool>/state/<instance>.json (never under
	// storage_prefix), when something changed but at most once per
	// StateSync, and once at shutdown; it looks at the other instances'
	// documents four times per StateSync and reads all of them when it
	// starts. 0 means the default, 2s; a negative value turns it off
	// (state stays in memory).
	StateSync caddy.Duration `json:"state_sync,omitempty"`

	// Routing chooses credentials for requests.
	Routing *Routing `json:"routing,omitempty"`

	// Access checks client keys. Absent: no client-key check (use Caddy's
	// own authentication in front instead).
	Access *Access `json:"access,omitempty"`

	// Retry bounds the attempts per request.
	Retry *Retry `json:"retry,omitempty"`

	// Cooldown sets how long failing credentials rest.
	Cooldown *Cooldown `json:"cooldown,omitempty"`

	// MaxRequestBody is the largest request body accepted, in bytes; larger
	// requests get 413. Default: 32 MiB.
	MaxRequestBody int64 `json:"max_request_body,omitempty"`

	// ForwardHeaders adds client request headers to those sent upstream:
	// names, or globs where * matches any run of characters (case is
	// ignored). By default only the APIs' own request headers and those the
	// official SDKs and the Claude Code, Codex and Gemini CLIs send are
	// forwarded: Accept, Content-Type, Content-Encoding, User-Agent,
	// Idempotency-Key, Anthropic-*, X-Stainless-*, X-App, OpenAI-Beta, the
	// session headers (X-Claude-Code-Session-Id, Session-Id, Session_id,
	// X-Session-Id, Conversation-Id, Thread-Id), Codex's Originator,
	// Version, X-Client-Request-Id and X-Codex-*, and X-Goog-Api-Client.
	// Every other client header is dropped, Cookie, OpenAI-Organization and
	// OpenAI-Project included, so a client cannot choose who is billed on a
	// pooled credential. The client's key, Host, Content-Length, Expect,
	// Accept-Encoding and hop-by-hop headers are never forwarded, whatever
	// this lists. Per-credential headers are applied after these.
	ForwardHeaders []string `json:"forward_headers,omitempty"`

	// TransportRaw configures how upstream requests are sent: a
	// reverse_proxy transport module. Default: the "http" transport with
	// TLS enabled for https base URLs, HTTP/2 and keep-alive.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`

	// ManagementSecret protects this pool's admin API routes
	// (/llm_proxy/pools/<pool>/...): requests need
	// "Authorization: Bearer <secret>", on localhost too. A bcrypt hash
	// ($2a$/$2b$/$2y$) is compared as a hash, anything else as plain text.
	ManagementSecret string `json:"management_secret,omitempty"`

	// OAuth overrides, per provider (claude, codex), where subscription
	// credentials are refreshed and logged in, and how early tokens are
	// refreshed. Default: the providers' own endpoints (see OAuthProvider).
	OAuth map[string]*OAuthProvider `json:"oauth,omitempty"`

	proxy      *handler.Proxy
	attachment *pool.Attachment          // this config's use of the pool
	oauth      map[string]oauth.Settings // per provider with an OAuth login, overrides applied
	pool       *pool.Pool
	transports *transports
	logger     *zap.Logger
	registry   *prometheus.Registry
}

// Routing chooses credentials.
type Routing struct {
	// Strategy spreads new sessions: round_robin, fill_first,
	// weighted_round_robin or rendezvous. Default: round_robin.
	Strategy string `json:"strategy,omitempty"`
	// SessionAffinity keeps each conversation on one credential so the
	// provider's prompt cache keeps hitting. Default: false.
	SessionAffinity bool `json:"session_affinity,omitempty"`
	// SessionAffinityTTL is how long an idle binding lives. Default: 1h.
	SessionAffinityTTL caddy.Duration `json:"session_affinity_ttl,omitempty"`
	// QuotaHeadroom is the share of a credential's usage windows kept free
	// before it takes no new sessions: a credential whose upstream reported
	// (in its quota headers) a window used to at least 1 - QuotaHeadroom
	// gets no new session while another available credential of the same
	// priority has more room. Sessions already bound to it stay; when every
	// credential of the tier is that close, they are picked as usual. A
	// fraction from 0 up to 1; 0 turns steering off. Default: 0.05.
	QuotaHeadroom *float64 `json:"quota_headroom,omitempty"`
	// ClaudeCodeSessionAffinity is a deprecated alias of SessionAffinity.
	ClaudeCodeSessionAffinity bool `json:"claude_code_session_affinity,omitempty"`
}

// DefaultQuotaHeadroom is routing.quota_headroom's default.
const DefaultQuotaHeadroom = 0.05

// quotaHeadroom is the configured quota_headroom or its default.
func (r *Routing) quotaHeadroom() float64 {
	if r.QuotaHeadroom == nil {
		return DefaultQuotaHeadroom
	}
	return *r.QuotaHeadroom
}

// Access checks client keys.
type Access struct {
	// APIKeys is the legacy list of accepted client keys; it is the same as
	// a config_api_key provider with these keys.
	APIKeys []string `json:"api_keys,omitempty"`
	// LabeledKeys are more accepted client keys, by label: label → key.
	// The label names the client in logs and {http.auth.user.id}.
	LabeledKeys map[string]string `json:"labeled_keys,omitempty"`
	// AllowedModels limits labelled keys to some models: label → model
	// globs; a request naming another model gets 403 before any upstream
	// call. Keys not listed may use every model. As in config_api_key.
	AllowedModels map[string][]string `json:"allowed_models,omitempty"`
	// ProvidersRaw are access provider modules (namespace llm_proxy.access),
	// tried in order; the first that accepts the key admits the request.
	ProvidersRaw []json.RawMessage `json:"providers,omitempty" caddy:"namespace=llm_proxy.access inline_key=provider"`
}

// Retry bounds attempts.
type Retry struct {
	// MaxAttempts is the number of distinct credentials tried per request.
	// Default: every eligible credential.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// WaitForCooldown makes a request wait for the soonest recovery when
	// every credential is cooling, if that is within this bound. Default: 0
	// (answer 429 at once).
	WaitForCooldown caddy.Duration `json:"wait_for_cooldown,omitempty"`
}

// Cooldown sets how long failing credentials rest when the provider gives
// no reset hint (hints always win).
type Cooldown struct {
	// RateLimit is the first backoff step after a 429; it doubles on each
	// further 429 up to RateLimitMax and resets on success. Default: 1s.
	RateLimit caddy.Duration `json:"rate_limit,omitempty"`
	// RateLimitMax caps the 429 backoff. Default: 30m.
	RateLimitMax caddy.Duration `json:"rate_limit_max,omitempty"`
	// AuthFailure is the rest after 401, 402 or 403 (and Gemini's 400 for
	// an invalid or expired key), for all models. Default: 30m.
	AuthFailure caddy.Duration `json:"auth_failure,omitempty"`
	// ModelNotFound is the rest for a model the credential does not have:
	// a 404 on a generation endpoint whose body says the requested model
	// does not exist. Other 404s cool nothing. Default: 12h.
	ModelNotFound caddy.Duration `json:"model_not_found,omitempty"`
	// ServerError is the rest after 408, 5xx, 529 and timeouts (for the
	// requested model), and after refused connections, DNS, TLS or proxy
	// failures (for every model). Default: 60s.
	ServerError caddy.Duration `json:"server_error,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_proxy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets up the handler and attaches its config to the pool (see
// package pool): the pool's credentials become this config's at once, and
// its background work (storage rescans, binding sweeps) starts once Caddy
// has started the config.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	if h.Pool == "" {
		h.Pool = DefaultPool
	}
	h.Pool = repl.ReplaceKnown(h.Pool, "")
	if !validPoolName(h.Pool) {
		return fmt.Errorf("bad pool name %q: use letters, digits, '.', '_' and '-' (it names the storage prefix and admin routes)", h.Pool)
	}
	h.registry = ctx.GetMetricsRegistry()

	inline, err := h.inlineAuths(repl)
	if err != nil {
		return err
	}
	access, err := h.provisionAccess(ctx, repl)
	if err != nil {
		return err
	}
	if h.oauth, err = h.oauthSettings(repl); err != nil {
		return err
	}
	strategy, affinity, err := h.provisionRouting()
	if err != nil {
		return err
	}
	forward, err := handler.NewHeaderAllowlist(h.ForwardHeaders)
	if err != nil {
		return fmt.Errorf("forward_headers: %v", err)
	}
	if err := h.provisionTransport(ctx); err != nil {
		return err
	}
	store, err := h.provisionStore(ctx, repl)
	if err != nil {
		return err
	}

	h.attachment, err = pool.Attach(ctx, h.Pool, pool.Config{
		Owner:            h.registry, // unique per config
		Inline:           inline,
		Store:            store,
		ManagementSecret: h.ManagementSecret,
		Logger:           h.logger,
		BindingTTL:       h.bindingTTL(),
		RescanInterval:   h.rescanInterval(),
		StateSync:        h.stateSync(),
		InstanceID:       h.instanceID(),
		OAuth:            h.oauth,
		Client:           h.transports.Client,
	})
	if err != nil {
		return err
	}
	h.pool = h.attachment.Pool()
	if affinity {
		affinitySel := &selector.Affinity{Strategy: strategy, Bindings: h.pool.Sessions}
		h.proxy = h.newProxy(strategy, affinitySel, access)
	} else {
		h.proxy = h.newProxy(strategy, nil, access)
	}
	h.proxy.ForwardHeaders = forward
	h.serveWhenStarted(ctx)
	return nil
}

// serveWhenStarted tells the pool that this config serves once Caddy has
// started it (Caddy's "started" event), so that `caddy validate` and a
// refused reload start no background work. Should the event be
// unavailable, the config counts as serving at once.
func (h *Handler) serveWhenStarted(ctx caddy.Context) {
	app, err := ctx.App("events")
	if err == nil {
		events, ok := app.(*caddyevents.App)
		if !ok {
			err = fmt.Errorf("events app is %T", app)
		} else if err = events.On("started", startedHook(h.attachment.Serve)); err == nil {
			return
		}
	}
	h.logger.Warn("cannot wait for the config to start; starting background work now", zap.Error(err))
	h.attachment.Serve()
}

// startedHook runs a function on Caddy's "started" event.
type startedHook func()

// Handle implements caddyevents.Handler.
func (f startedHook) Handle(context.Context, caddy.Event) error {
	f()
	return nil
}

func (h *Handler) bindingTTL() time.Duration {
	if h.Routing != nil && h.Routing.SessionAffinityTTL > 0 {
		return time.Duration(h.Routing.SessionAffinityTTL)
	}
	return DefaultAffinityTTL
}

func (h *Handler) rescanInterval() time.Duration {
	if h.RescanInterval != nil {
		return time.Duration(*h.RescanInterval)
	}
	return DefaultRescanInterval
}

// stateSync is the configured state_sync, its default, or 0 for off.
func (h *Handler) stateSync() time.Duration {
	switch {
	case h.StateSync < 0:
		return 0
	case h.StateSync == 0:
		return DefaultStateSync
	}
	return time.Duration(h.StateSync)
}

// instanceID is Caddy's instance ID, which names this instance's state
// document; "" (state kept per instance) when Caddy cannot tell it.
func (h *Handler) instanceID() string {
	if h.stateSync() == 0 {
		return ""
	}
	id, err := caddy.InstanceID()
	if err != nil {
		h.logger.Warn("cannot read Caddy's instance ID; session bindings and cooldowns stay in this instance's memory",
			zap.String("pool", h.Pool), zap.Error(err))
		return ""
	}
	return id.String()
}

func (h *Handler) newProxy(strategy selector.Strategy, affinity *selector.Affinity, access []access.AccessProvider) *handler.Proxy {
	maxBody := h.MaxRequestBody
	if maxBody <= 0 {
		maxBody = DefaultMaxRequestBody
	}
	p := &handler.Proxy{
		Pool:       h.pool,
		Strategy:   strategy,
		Policy:     h.cooldownPolicy().WithDefaults(),
		MaxBody:    maxBody,
		Access:     access,
		Transports: h.transports,
		Logger:     h.logger,
		Observer:   newObserver(h.registry, h.logger),
		Refresher:  h.pool,
		Now:        clock.Now,
	}
	if affinity != nil {
		p.Affinity = affinity
	}
	if h.Retry != nil {
		p.MaxAttempts = h.Retry.MaxAttempts
		p.WaitForCooldown = time.Duration(h.Retry.WaitForCooldown)
	}
	return p
}

// cooldownPolicy is the cooldown block as configured, zero fields taking
// their defaults only through WithDefaults.
func (h *Handler) cooldownPolicy() failure.Policy {
	c := h.Cooldown
	if c == nil {
		return failure.Policy{}
	}
	return failure.Policy{
		RateLimit:     time.Duration(c.RateLimit),
		RateLimitMax:  time.Duration(c.RateLimitMax),
		AuthFailure:   time.Duration(c.AuthFailure),
		ModelNotFound: time.Duration(c.ModelNotFound),
		ServerError:   time.Duration(c.ServerError),
	}
}

// provisionAccess loads the access providers; the inline keys (api_keys,
// labeled_keys, allowed_models) become a config_api_key provider in front
// of the others.
func (h *Handler) provisionAccess(ctx caddy.Context, repl *caddy.Replacer) ([]access.AccessProvider, error) {
	if h.Access == nil {
		return nil, nil
	}
	var out []access.AccessProvider
	if len(h.Access.APIKeys) > 0 || len(h.Access.LabeledKeys) > 0 || len(h.Access.AllowedModels) > 0 {
		legacy := &access.ConfigAPIKey{Keys: h.Access.APIKeys, LabeledKeys: h.Access.LabeledKeys, AllowedModels: h.Access.AllowedModels}
		if err := legacy.Provision(ctx); err != nil {
			return nil, fmt.Errorf("access keys: %v", err)
		}
		out = append(out, legacy)
	}
	if h.Access.ProvidersRaw != nil {
		mods, err := ctx.LoadModule(h.Access, "ProvidersRaw")
		if err != nil {
			return nil, fmt.Errorf("loading access providers: %v", err)
		}
		for _, m := range mods.([]any) {
			ap, ok := m.(access.AccessProvider)
			if !ok {
				return nil, fmt.Errorf("access provider %T does not check keys", m)
			}
			out = append(out, ap)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("access: no keys or providers configured; remove the access block to turn client-key checks off")
	}
	return out, nil
}

func (h *Handler) provisionRouting() (selector.Strategy, bool, error) {
	r := h.Routing
	if r == nil {
		r = new(Routing)
	}
	strategy, err := selector.New(r.Strategy)
	if err != nil {
		return nil, false, fmt.Errorf("routing: %v", err)
	}
	if r.ClaudeCodeSessionAffinity {
		h.logger.Warn("routing.claude_code_session_affinity is deprecated; use session_affinity")
	}
	if headroom := r.quotaHeadroom(); headroom > 0 {
		strategy = selector.Steer{Strategy: strategy, Headroom: headroom, Now: clock.Now}
	}
	return strategy, r.SessionAffinity || r.ClaudeCodeSessionAffinity, nil
}

func (h *Handler) provisionTransport(ctx caddy.Context) error {
	if h.TransportRaw == nil {
		h.TransportRaw = caddyconfig.JSONModuleObject(&reverseproxy.HTTPTransport{
			TLS: new(reverseproxy.TLSConfig),
		}, "protocol", "http", nil)
	}
	mod, err := ctx.LoadModule(h, "TransportRaw")
	if err != nil {
		return fmt.Errorf("loading transport: %v", err)
	}
	rt, ok := mod.(http.RoundTripper)
	if !ok {
		return fmt.Errorf("transport %T cannot send requests", mod)
	}
	h.transports = newTransports(rt)
	return nil
}

func (h *Handler) provisionStore(ctx caddy.Context, repl *caddy.Replacer) (auth.Store, error) {
	var storage certmagic.Storage
	if h.StorageRaw != nil {
		mod, err := ctx.LoadModule(h, "StorageRaw")
		if err != nil {
			return nil, fmt.Errorf("loading storage: %v", err)
		}
		sc, ok := mod.(caddy.StorageConverter)
		if !ok {
			return nil, fmt.Errorf("storage module %T is not a Caddy storage", mod)
		}
		storage, err = sc.CertMagicStorage()
		if err != nil {
			return nil, fmt.Errorf("creating storage: %v", err)
		}
	} else {
		storage = ctx.Storage()
	}
	prefix := repl.ReplaceKnown(h.StoragePrefix, "")
	if prefix == "" {
		prefix = "llm_proxy/" + h.Pool + "/auths"
	}
	return auth.NewCaddyStore(storage, prefix), nil
}

// validPoolName reports whether a pool name is safe in storage keys and
// admin paths.
func validPoolName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 128 {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks the config.
func (h *Handler) Validate() error {
	if h.MaxRequestBody < 0 {
		return fmt.Errorf("max_request_body must not be negative")
	}
	if h.Retry != nil && h.Retry.MaxAttempts < 0 {
		return fmt.Errorf("retry.max_attempts must not be negative")
	}
	if h.Retry != nil && h.Retry.WaitForCooldown < 0 {
		return fmt.Errorf("retry.wait_for_cooldown must not be negative")
	}
	if h.RescanInterval != nil && *h.RescanInterval < 0 {
		return fmt.Errorf("rescan_interval must not be negative (0 turns rescans off)")
	}
	if h.Routing != nil && h.Routing.SessionAffinityTTL < 0 {
		return fmt.Errorf("routing.session_affinity_ttl must not be negative")
	}
	if h.Routing != nil && h.Routing.QuotaHeadroom != nil {
		if f := *h.Routing.QuotaHeadroom; !(f >= 0 && f < 1) {
			return fmt.Errorf("routing.quota_headroom %v out of range: want a fraction from 0 (off) up to 1", f)
		}
	}
	return h.cooldownPolicy().Validate()
}

// ServeHTTP serves a request; it never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	return h.proxy.ServeHTTP(w, r)
}

// Cleanup detaches the config from the pool; the pool's state lives on
// while another config uses the same pool name, and when this config was
// refused, the running one's credentials are restored. Requests still
// being served by this config keep working: only background work stops.
func (h *Handler) Cleanup() error {
	if h.attachment != nil {
		h.attachment.Detach()
	}
	if h.transports != nil {
		h.transports.close()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
