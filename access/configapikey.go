package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-proxy/llmproxy/internal/glob"
)

func init() {
	caddy.RegisterModule(ConfigAPIKey{})
}

// ConfigAPIKey admits clients whose key is listed in the config. Keys may be
// Caddy placeholders such as {env.CLIENT_KEY}; they are expanded when the
// config is provisioned, so the secrets never appear in the adapted JSON.
//
// Each key has a label that names the client in logs and in
// {http.auth.user.id}. A key listed in keys is labelled "key-" followed by
// the first 8 hex digits of its SHA-256 digest: stable across reloads and
// instances, and not the key. (For a short, guessable key those digits are
// enough to confirm a guess, so give such keys a label, or better, use
// long random keys.)
//
// A labelled key may be limited to some models (AllowedModels): a request
// of that client naming another model gets 403 before any upstream call.
//
// Keys are compared in constant time against every configured key.
type ConfigAPIKey struct {
	// Keys are the accepted client keys, each labelled by its digest.
	Keys []string `json:"keys,omitempty"`

	// LabeledKeys are more accepted client keys, by label: label → key.
	LabeledKeys map[string]string `json:"labeled_keys,omitempty"`

	// AllowedModels limits labelled keys to some models: label → model
	// globs ('*' matches any run of characters, case is ignored). Each
	// label must be one of LabeledKeys, each list non-empty. A key not
	// listed here may use every model. Requests that name no model (the
	// model list) are always allowed; a generation request of a limited
	// key must name an allowed model.
	AllowedModels map[string][]string `json:"allowed_models,omitempty"`

	entries []keyEntry
}

// keyEntry is one accepted key, kept only as a digest.
type keyEntry struct {
	digest [sha256.Size]byte
	client Client
}

// CaddyModule returns the Caddy module information.
func (ConfigAPIKey) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm_proxy.access.config_api_key",
		New: func() caddy.Module { return new(ConfigAPIKey) },
	}
}

// Provision expands placeholders in the keys and prepares them for
// comparison. At least one key is required; a key that is empty after
// expansion (an unset environment variable, say) and a key listed twice
// are errors.
func (c *ConfigAPIKey) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	c.entries = c.entries[:0]
	where := make(map[[sha256.Size]byte]string) // digest → where the key is configured
	add := func(key, label, at string) error {
		key = repl.ReplaceKnown(key, "")
		if key == "" {
			return fmt.Errorf("%s is empty (after placeholder expansion)", at)
		}
		d := sha256.Sum256([]byte(key))
		if prev, dup := where[d]; dup {
			return fmt.Errorf("%s repeats the key of %s", at, prev)
		}
		where[d] = at
		if label == "" {
			label = DefaultKeyLabel(key)
		}
		c.entries = append(c.entries, keyEntry{digest: d, client: Client{Label: label, Models: c.AllowedModels[label]}})
		return nil
	}

	for i, k := range c.Keys {
		if err := add(k, "", fmt.Sprintf("keys[%d]", i)); err != nil {
			return fmt.Errorf("config_api_key: %w", err)
		}
	}
	labels := make([]string, 0, len(c.LabeledKeys))
	for label := range c.LabeledKeys {
		labels = append(labels, label)
	}
	sort.Strings(labels) // errors and entries in a stable order
	if err := c.checkAllowedModels(); err != nil {
		return fmt.Errorf("config_api_key: %w", err)
	}
	for _, label := range labels {
		if strings.TrimSpace(label) == "" || hasControl(label) {
			return fmt.Errorf("config_api_key: labeled_keys: label %q is blank or has control characters", label)
		}
		if err := add(c.LabeledKeys[label], label, fmt.Sprintf("the key labelled %q", label)); err != nil {
			return fmt.Errorf("config_api_key: %w", err)
		}
	}
	if len(c.entries) == 0 {
		return errors.New("config_api_key: no keys configured")
	}
	return nil
}

// checkAllowedModels reports the first bad entry of AllowedModels, in label
// order.
func (c *ConfigAPIKey) checkAllowedModels() error {
	labels := make([]string, 0, len(c.AllowedModels))
	for label := range c.AllowedModels {
		labels = append(labels, label)
	}
	sort.Strings(labels)
	for _, label := range labels {
		if _, ok := c.LabeledKeys[label]; !ok {
			return fmt.Errorf("allowed_models: %q is not the label of a key in labeled_keys", label)
		}
		models := c.AllowedModels[label]
		if len(models) == 0 {
			return fmt.Errorf("allowed_models: the key labelled %q has an empty list; remove it to allow every model", label)
		}
		for _, m := range models {
			if err := glob.Check(m); err != nil {
				return fmt.Errorf("allowed_models: the key labelled %q: bad model pattern %q: %v", label, m, err)
			}
		}
	}
	return nil
}

// DefaultKeyLabel returns the label of a key configured without one: "key-"
// followed by the first 8 hex digits of the key's SHA-256 digest.
func DefaultKeyLabel(key string) string {
	d := sha256.Sum256([]byte(key))
	return "key-" + hex.EncodeToString(d[:4])
}

// Authenticate implements AccessProvider. It compares the SHA-256 digest
// of key with that of every configured key in constant time, so neither
// the keys' lengths nor which key matched show in the time taken.
func (c *ConfigAPIKey) Authenticate(key string) (string, error) {
	client, err := c.AuthenticateClient(key)
	return client.Label, err
}

// AuthenticateClient implements ClientAuthenticator: Authenticate that also
// returns the models the key may use.
func (c *ConfigAPIKey) AuthenticateClient(key string) (Client, error) {
	if key == "" {
		return Client{}, ErrNoKey
	}
	d := sha256.Sum256([]byte(key))
	match := -1
	for i := range c.entries {
		eq := subtle.ConstantTimeCompare(d[:], c.entries[i].digest[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return Client{}, ErrBadKey
	}
	return c.entries[match].client, nil
}

// UnmarshalCaddyfile sets up the provider from Caddyfile tokens. Syntax:
//
//	provider config_api_key {
//		keys <key...>
//		key <label> <key> [{
//			models <glob...>
//		}]
//	}
//
// keys and key may repeat; models limits the labelled key to the models
// matching one of the globs (AllowedModels). Keys may be placeholders such as
// {env.CLIENT_KEY}, which are expanded at provision time.
func (c *ConfigAPIKey) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume module name
	if d.NextArg() {
		// The argument is likely a key: never repeat it.
		return d.Err("config_api_key takes no arguments: list the keys in its block with keys or key")
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "keys":
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return d.Err("keys needs at least one key")
			}
			c.Keys = append(c.Keys, keys...)
			if d.NextBlock(d.Nesting()) {
				return d.Err("keys takes no block; to limit a key's models, give it a label: key <label> <key> { models <glob...> }")
			}
		case "key":
			if err := c.UnmarshalKey(d); err != nil {
				return err
			}
		default:
			if !looksLikeOption(d.Val()) {
				// A key on a line of its own: do not repeat it.
				return d.Err("unrecognized config_api_key option (not shown, it may be a key; allowed: keys, key)")
			}
			return d.Errf("unrecognized config_api_key option %q (allowed: keys, key)", d.Val())
		}
	}
	return nil
}

// UnmarshalKey reads one labelled key at the dispenser's cursor (on the
// token "key") into LabeledKeys and AllowedModels:
//
//	key <label> <key> [{
//		models <glob...>
//	}]
//
// llm_proxy's inline access block reads its keys with it too.
func (c *ConfigAPIKey) UnmarshalKey(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("key takes a label and a key, got %d arguments", len(args))
	}
	label, key := args[0], args[1]
	if _, dup := c.LabeledKeys[label]; dup {
		return d.Errf("duplicate key label %q", label)
	}
	if c.LabeledKeys == nil {
		c.LabeledKeys = make(map[string]string)
	}
	c.LabeledKeys[label] = key
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "models" {
			if !looksLikeOption(d.Val()) {
				return d.Errf("key %q: unrecognized option (not shown, it may be a key; expected models)", label)
			}
			return d.Errf("key %q: unknown option %q; expected models", label, d.Val())
		}
		if _, dup := c.AllowedModels[label]; dup {
			return d.Errf("key %q: duplicate models option; list every glob on one line", label)
		}
		models := d.RemainingArgs()
		if len(models) == 0 {
			return d.Errf("key %q: models needs at least one glob", label)
		}
		for _, m := range models {
			if err := glob.Check(m); err != nil {
				return d.Errf("key %q: bad model glob %q: %v", label, m, err)
			}
		}
		if c.AllowedModels == nil {
			c.AllowedModels = make(map[string][]string)
		}
		c.AllowedModels[label] = models
	}
	return nil
}

// looksLikeOption reports whether a token has the shape of a subdirective
// name (short, lower case letters and underscores) rather than of a key.
func looksLikeOption(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ ClientAuthenticator   = (*ConfigAPIKey)(nil)
	_ caddy.Provisioner     = (*ConfigAPIKey)(nil)
	_ caddyfile.Unmarshaler = (*ConfigAPIKey)(nil)
)

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
