package llmproxy

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/handler"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("llm_proxy", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("llm_proxy", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	llm_proxy [<matcher>] {
//		pool <name>
//		auth <id> {
//			provider claude|codex|gemini|openai|openai_compatible
//			api_key <key>
//			access_token <token>
//			refresh_token <token>
//			account_id <id>
//			base_url <url>
//			models <pattern...>
//			excluded_models <pattern...>
//			model_alias <client name> <upstream name>
//			priority <int>
//			weight <0..1000000>
//			header <name> <value>
//			proxy_url <url>
//			label <text>
//			disabled
//		}
//		storage_prefix <key>
//		storage <module> { ... }
//		rescan_interval <duration>
//		state_sync <duration>|off
//		routing {
//			strategy round_robin|fill_first|weighted_round_robin|rendezvous
//			session_affinity [on|off]
//			session_affinity_ttl <duration>
//			quota_headroom <fraction>
//			claude_code_session_affinity [on|off]
//		}
//		access {
//			api_keys <key...>
//			key <label> <key> [{
//				models <glob...>
//			}]
//			provider <name> { ... }
//		}
//		retry {
//			max_attempts <n>
//			wait_for_cooldown <duration>
//		}
//		cooldown {
//			rate_limit <duration>
//			rate_limit_max <duration>
//			auth_failure <duration>
//			model_not_found <duration>
//			server_error <duration>
//		}
//		max_request_body <size>
//		forward_headers <name-or-glob...>
//		transport <module> { ... }
//		management_secret <bcrypt-hash|plain>
//	}
//
// Values may be placeholders such as {env.ANTHROPIC_KEY}; they are expanded
// when the config is provisioned, never in the adapted JSON.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if opt != "auth" && opt != "oauth" {
			if seen[opt] {
				return d.Errf("duplicate %s option", opt)
			}
			seen[opt] = true
		}
		var err error
		switch opt {
		case "auth":
			var a *InlineAuth
			if a, err = parseAuth(d, ids); err == nil {
				h.Auths = append(h.Auths, a)
			}
		case "routing":
			h.Routing, err = parseRouting(d)
		case "access":
			h.Access, err = parseAccess(d)
		case "retry":
			h.Retry, err = parseRetry(d)
		case "cooldown":
			h.Cooldown, err = parseCooldown(d)
		case "storage":
			h.StorageRaw, err = parseStorage(d)
		case "transport":
			h.TransportRaw, err = parseTransport(d)
		case "forward_headers":
			h.ForwardHeaders, err = parseForwardHeaders(d)
		case "oauth":
			if h.OAuth == nil {
				h.OAuth = map[string]*OAuthProvider{}
			}
			err = parseOAuth(d, h.OAuth)
		case "pool", "storage_prefix", "rescan_interval", "state_sync", "max_request_body", "management_secret":
			err = h.parseValue(d, opt)
		default:
			err = d.Errf("unknown llm_proxy option %q; expected one of pool, auth, storage_prefix, storage, rescan_interval, state_sync, routing, access, retry, cooldown, max_request_body, forward_headers, transport, management_secret, oauth", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseValue parses an option that takes exactly one value.
func (h *Handler) parseValue(d *caddyfile.Dispenser, opt string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	val := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("%s takes no block", opt)
	}
	switch opt {
	case "pool":
		if !strings.Contains(val, "{") && !validPoolName(val) {
			return d.Errf("bad pool name %q: use letters, digits, '.', '_' and '-'", val)
		}
		h.Pool = val
	case "storage_prefix":
		h.StoragePrefix = val
	case "rescan_interval":
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur < 0 {
			return d.Errf("bad rescan_interval %q: want a duration such as 30s, or 0 to turn rescans off", val)
		}
		cd := caddy.Duration(dur)
		h.RescanInterval = &cd
	case "state_sync":
		if val == "off" {
			h.StateSync = -1
			break
		}
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur <= 0 {
			return d.Errf("bad state_sync %q: want a duration such as 2s, or off", val)
		}
		h.StateSync = caddy.Duration(dur)
	case "max_request_body":
		size, err := humanize.ParseBytes(val)
		if err != nil || size == 0 {
			return d.Errf("bad max_request_body %q: want a size such as 32MB", val)
		}
		h.MaxRequestBody = int64(size)
	case "management_secret":
		h.ManagementSecret = val
	}
	return nil
}

// parseForwardHeaders parses `forward_headers <name-or-glob...>`.
func parseForwardHeaders(d *caddyfile.Dispenser) ([]string, error) {
	names := d.RemainingArgs()
	if len(names) == 0 {
		return nil, d.Errf("forward_headers needs at least one header name or glob, such as X-Team-Id or X-Trace-*")
	}
	for _, name := range names {
		if err := handler.CheckForwardHeader(name); err != nil {
			return nil, d.Errf("forward_headers: %v", err)
		}
	}
	if d.NextBlock(d.Nesting()) {
		return nil, d.Errf("forward_headers takes no block")
	}
	return names, nil
}

// parseStorage parses `storage <module> { ... }` into a caddy.storage
// module.
func parseStorage(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "caddy.storage."+name)
	if err != nil {
		return nil, err
	}
	sc, ok := unm.(caddy.StorageConverter)
	if !ok {
		return nil, d.Errf("module %s is not a storage module", name)
	}
	return caddyconfig.JSONModuleObject(sc, "module", name, nil), nil
}

// parseTransport parses `transport <module> { ... }` into a reverse_proxy
// transport module.
func parseTransport(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "http.reverse_proxy.transport."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "protocol", name, nil), nil
}

// parseAuth parses `auth <id> { ... }`. The credential is checked as a
// whole by the rules every credential follows (auth.Auth.Validate, before
// placeholders are expanded), and errors name the auth line.
func parseAuth(d *caddyfile.Dispenser, ids map[string]bool) (*InlineAuth, error) {
	if !d.NextArg() {
		return nil, d.Errf("auth needs an ID: auth <id> { ... }")
	}
	at := caddyfile.NewDispenser([]caddyfile.Token{d.Token()}) // for errors about the whole block
	at.Next()
	a := &InlineAuth{ID: d.Val()}
	if ids[a.ID] {
		return nil, d.Errf("duplicate auth %q: auth IDs must be unique within a pool", a.ID)
	}
	ids[a.ID] = true
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !repeatable[opt] {
			if seen[opt] {
				return nil, d.Errf("auth %q: duplicate %s", a.ID, opt)
			}
			seen[opt] = true
		}
		if err := parseAuthOption(d, a, opt, d.RemainingArgs()); err != nil {
			return nil, err
		}
	}
	if err := a.auth().ValidateUnexpanded(); err != nil {
		return nil, at.WrapErr(err)
	}
	return a, nil
}

// repeatable are the auth options that may be given on several lines.
var repeatable = map[string]bool{"header": true, "models": true, "excluded_models": true, "model_alias": true}

// parseAuthOption parses one line of an auth block into a.
func parseAuthOption(d *caddyfile.Dispenser, a *InlineAuth, opt string, args []string) error {
	one := func(target *string) error {
		if len(args) != 1 {
			return d.Errf("auth %q: %s takes exactly one value", a.ID, opt)
		}
		*target = args[0]
		return nil
	}
	text := map[string]*string{
		"provider": &a.Provider, "api_key": &a.APIKey, "access_token": &a.AccessToken, "refresh_token": &a.RefreshToken, "account_id": &a.AccountID,
		"base_url": &a.BaseURL, "proxy_url": &a.ProxyURL, "label": &a.Label,
	}
	if target, ok := text[opt]; ok {
		return one(target)
	}
	switch opt {
	case "models":
		if len(args) == 0 {
			return d.Errf("auth %q: models needs at least one pattern", a.ID)
		}
		a.Models = append(a.Models, args...)
	case "excluded_models":
		if len(args) == 0 {
			return d.Errf("auth %q: excluded_models needs at least one pattern", a.ID)
		}
		for _, p := range args {
			if !auth.ValidModelName(p) {
				return d.Errf("auth %q: bad excluded_models pattern %q: patterns are non-empty, without white space or control characters", a.ID, p)
			}
		}
		a.ExcludedModels = append(a.ExcludedModels, args...)
	case "model_alias":
		return parseModelAlias(d, a, args)
	case "priority", "weight":
		var v string
		if err := one(&v); err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return d.Errf("auth %q: bad %s %q: want an integer", a.ID, opt, v)
		}
		if opt == "priority" {
			a.Priority = n
		} else {
			a.Weight = &n
		}
	case "header":
		if len(args) != 2 {
			return d.Errf("auth %q: header takes a name and a value", a.ID)
		}
		if a.Headers == nil {
			a.Headers = map[string]string{}
		}
		a.Headers[args[0]] = args[1]
	case "disabled":
		if len(args) != 0 {
			return d.Errf("auth %q: disabled takes no value", a.ID)
		}
		a.Disabled = true
	default:
		return d.Errf("auth %q: unknown option %q; expected one of provider, api_key, access_token, refresh_token, account_id, base_url, models, excluded_models, model_alias, priority, weight, header, proxy_url, label, disabled", a.ID, opt)
	}
	return nil
}

// parseModelAlias parses `model_alias <client name> <upstream name>`; a
// client name (ignoring case) may be aliased once per credential.
func parseModelAlias(d *caddyfile.Dispenser, a *InlineAuth, args []string) error {
	if len(args) != 2 {
		return d.Errf("auth %q: model_alias takes a client model name and an upstream model name", a.ID)
	}
	for _, name := range args {
		if !auth.ValidModelName(name) {
			return d.Errf("auth %q: bad model_alias name %q: names are non-empty, without white space or control characters", a.ID, name)
		}
	}
	for client := range a.ModelAlias {
		if strings.EqualFold(client, args[0]) {
			return d.Errf("auth %q: model_alias %q is given twice (client names ignore case)", a.ID, args[0])
		}
	}
	if a.ModelAlias == nil {
		a.ModelAlias = map[string]string{}
	}
	a.ModelAlias[args[0]] = args[1]
	return nil
}

// onOff parses an optional on|off argument; no argument means on.
func onOff(d *caddyfile.Dispenser, opt string, args []string) (bool, error) {
	switch {
	case len(args) == 0:
		return true, nil
	case len(args) == 1 && args[0] == "on":
		return true, nil
	case len(args) == 1 && args[0] == "off":
		return false, nil
	}
	return false, d.Errf("%s takes on or off", opt)
}

// blockOptions walks a block of single-line options, rejecting duplicates.
func blockOptions(d *caddyfile.Dispenser, block string, fn func(opt string, args []string) error) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s: duplicate %s", block, opt)
		}
		seen[opt] = true
		if err := fn(opt, d.RemainingArgs()); err != nil {
			return err
		}
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, block, opt string, args []string) (caddy.Duration, error) {
	if len(args) != 1 {
		return 0, d.Errf("%s: %s takes one duration", block, opt)
	}
	dur, err := caddy.ParseDuration(args[0])
	if err != nil || dur < 0 {
		return 0, d.Errf("%s: bad %s %q: want a duration such as 30s or 1h", block, opt, args[0])
	}
	return caddy.Duration(dur), nil
}

// headroomArg parses quota_headroom's fraction: 0 (off) up to but not
// including 1.
func headroomArg(d *caddyfile.Dispenser, args []string) (*float64, error) {
	if len(args) != 1 {
		return nil, d.Errf("routing: quota_headroom takes one fraction")
	}
	f, err := strconv.ParseFloat(args[0], 64)
	if err != nil || !(f >= 0 && f < 1) {
		return nil, d.Errf("routing: bad quota_headroom %q: want a fraction from 0 (off) up to 1, such as 0.1", args[0])
	}
	return &f, nil
}

func parseRouting(d *caddyfile.Dispenser) (*Routing, error) {
	r := new(Routing)
	err := blockOptions(d, "routing", func(opt string, args []string) error {
		var err error
		switch opt {
		case "strategy":
			if len(args) != 1 {
				return d.Errf("routing: strategy takes one name")
			}
			if !slices.Contains(selector.Names, args[0]) {
				return d.Errf("routing: unknown strategy %q; expected one of %s", args[0], strings.Join(selector.Names, ", "))
			}
			r.Strategy = args[0]
		case "session_affinity":
			r.SessionAffinity, err = onOff(d, opt, args)
		case "claude_code_session_affinity":
			r.ClaudeCodeSessionAffinity, err = onOff(d, opt, args)
		case "session_affinity_ttl":
			r.SessionAffinityTTL, err = durationArg(d, "routing", opt, args)
		case "quota_headroom":
			r.QuotaHeadroom, err = headroomArg(d, args)
		default:
			return d.Errf("routing: unknown option %q; expected one of strategy, session_affinity, session_affinity_ttl, quota_headroom, claude_code_session_affinity", opt)
		}
		return err
	})
	return r, err
}

func parseAccess(d *caddyfile.Dispenser) (*Access, error) {
	a := new(Access)
	var labeled access.ConfigAPIKey // the inline key lines, parsed as config_api_key does
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "api_keys":
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return nil, d.Errf("access: api_keys needs at least one key")
			}
			a.APIKeys = append(a.APIKeys, keys...)
			if d.NextBlock(d.Nesting()) {
				return nil, d.Errf("access: api_keys takes no block; to limit a key's models, give it a label: key <label> <key> { models <glob...> }")
			}
		case "key":
			if err := labeled.UnmarshalKey(d); err != nil {
				return nil, err
			}
		case "provider":
			if !d.NextArg() {
				return nil, d.Errf("access: provider needs a module name, such as config_api_key")
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "llm_proxy.access."+name)
			if err != nil {
				return nil, err
			}
			a.ProvidersRaw = append(a.ProvidersRaw, caddyconfig.JSONModuleObject(unm, "provider", name, nil))
		default:
			return nil, d.Errf("access: unknown option %q; expected api_keys, key or provider", d.Val())
		}
	}
	a.LabeledKeys, a.AllowedModels = labeled.LabeledKeys, labeled.AllowedModels
	if len(a.APIKeys) == 0 && len(a.LabeledKeys) == 0 && len(a.ProvidersRaw) == 0 {
		return nil, d.Errf("access: needs api_keys, key or a provider; remove the block to turn client-key checks off")
	}
	return a, nil
}

func parseRetry(d *caddyfile.Dispenser) (*Retry, error) {
	r := new(Retry)
	err := blockOptions(d, "retry", func(opt string, args []string) error {
		var err error
		switch opt {
		case "max_attempts":
			if len(args) != 1 {
				return d.Errf("retry: max_attempts takes one number")
			}
			n, perr := strconv.Atoi(args[0])
			if perr != nil || n < 1 {
				return d.Errf("retry: bad max_attempts %q: want a whole number of at least 1", args[0])
			}
			r.MaxAttempts = n
		case "wait_for_cooldown":
			r.WaitForCooldown, err = durationArg(d, "retry", opt, args)
		default:
			return d.Errf("retry: unknown option %q; expected max_attempts or wait_for_cooldown", opt)
		}
		return err
	})
	return r, err
}

func parseCooldown(d *caddyfile.Dispenser) (*Cooldown, error) {
	c := new(Cooldown)
	err := blockOptions(d, "cooldown", func(opt string, args []string) error {
		var target *caddy.Duration
		switch opt {
		case "rate_limit":
			target = &c.RateLimit
		case "rate_limit_max":
			target = &c.RateLimitMax
		case "auth_failure":
			target = &c.AuthFailure
		case "model_not_found":
			target = &c.ModelNotFound
		case "server_error":
			target = &c.ServerError
		default:
			return d.Errf("cooldown: unknown option %q; expected one of rate_limit, rate_limit_max, auth_failure, model_not_found, server_error", opt)
		}
		v, err := durationArg(d, "cooldown", opt, args)
		*target = v
		return err
	})
	return c, err
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
