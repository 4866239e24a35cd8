package llmproxy

// Credentials declared in the config (inline auth blocks).

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// InlineAuth is an upstream credential declared in the config: an ID and
// the same settings a stored record has. Inline credentials join the
// pool's stored ones and are never written to storage.
//
// Placeholders such as {env.ANTHROPIC_KEY} in api_key, access_token,
// refresh_token, account_id, base_url, proxy_url and header values are
// expanded when the config is provisioned, so secrets stay out of the
// adapted JSON.
type InlineAuth struct {
	// ID names the credential in logs, metrics and the admin API. Required;
	// unique within the pool, and no stored record of the pool may have it.
	// 1 to 200 characters from A-Z, a-z, 0-9 and "._@+-/".
	ID string `json:"id"`

	auth.Fields

	// RefreshToken is the OAuth refresh token of an access_token
	// credential (claude, codex). With it llm_proxy refreshes the access
	// token before it expires and keeps the rotated tokens in the config's
	// storage at llm_proxy/<pool>/oauth/<id>.json; those win over the
	// config's access_token and refresh_token for as long as the config
	// declares this same refresh token. Placeholders are expanded.
	RefreshToken string `json:"refresh_token,omitempty"`
}

// inlineAuths expands placeholders in the inline credentials and validates
// them.
func (h *Handler) inlineAuths(repl *caddy.Replacer) ([]*auth.Auth, error) {
	seen := make(map[string]bool, len(h.Auths))
	out := make([]*auth.Auth, 0, len(h.Auths))
	for i, ia := range h.Auths {
		if ia == nil || ia.ID == "" {
			return nil, fmt.Errorf("auths[%d]: missing id", i)
		}
		if seen[ia.ID] {
			return nil, fmt.Errorf("auth %q is declared twice; auth IDs must be unique", ia.ID)
		}
		seen[ia.ID] = true
		a := ia.auth().Clone()
		a.Expand(func(s string) string { return repl.ReplaceKnown(s, "") })
		a.RefreshToken = repl.ReplaceKnown(a.RefreshToken, "")
		if err := a.Validate(); err != nil {
			if a.APIKey == "" && a.AccessToken == "" && (ia.APIKey != "" || ia.AccessToken != "") {
				return nil, fmt.Errorf("%v (its value %q expanded to nothing; is the environment variable set?)", err, ia.APIKey+ia.AccessToken)
			}
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// auth returns the credential record of ia, sharing its fields.
func (ia *InlineAuth) auth() *auth.Auth {
	return &auth.Auth{ID: ia.ID, Fields: ia.Fields, RefreshToken: ia.RefreshToken, Inline: true}
}
