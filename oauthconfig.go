package llmproxy

// Per-pool OAuth settings of subscription credentials (SPEC section 12):
// token endpoints, authorize pages and how early tokens are refreshed.

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
	"github.com/caddy-llm-proxy/llmproxy/internal/provider"
)

// OAuthProvider overrides one provider's OAuth settings for this pool.
// Every field is optional: an empty one keeps the provider's own value
// (claude: token endpoint https://platform.claude.com/v1/oauth/token,
// authorize page https://claude.ai/oauth/authorize, refresh 4h before
// expiry; codex: https://auth.openai.com/oauth/token,
// https://auth.openai.com/oauth/authorize, 5 days before expiry). Overrides
// are meant for tests and private deployments; values accept placeholders.
type OAuthProvider struct {
	// TokenURL receives refresh and login (authorization code) grants.
	TokenURL string `json:"token_url,omitempty"`
	// AuthorizeURL is the login page a user opens in a browser.
	AuthorizeURL string `json:"authorize_url,omitempty"`
	// ClientID is the provider's public OAuth client ID.
	ClientID string `json:"client_id,omitempty"`
	// RedirectURI is where the login page sends the browser with the code.
	RedirectURI string `json:"redirect_uri,omitempty"`
	// RefreshLead is how long before an access token expires it is
	// refreshed; when a record has no expiry, how long after its last
	// refresh. Default: claude 4h, codex 120h (5 days).
	RefreshLead caddy.Duration `json:"refresh_lead,omitempty"`
}

// oauthProviders lists the providers whose credentials llm_proxy can
// refresh and log in, sorted.
func oauthProviders() []string {
	var out []string
	for _, name := range provider.Names() {
		if p := provider.Lookup(name); p != nil && p.OAuth.TokenURL != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// oauthSettings resolves the pool's OAuth settings for every provider that
// has an OAuth login, expanding placeholders in the overrides.
func (h *Handler) oauthSettings(repl *caddy.Replacer) (map[string]oauth.Settings, error) {
	for name := range h.OAuth {
		if p := provider.Lookup(name); p == nil || p.OAuth.TokenURL == "" {
			return nil, fmt.Errorf("oauth %q: no OAuth login for this provider; expected one of %s", name, strings.Join(oauthProviders(), ", "))
		}
	}
	out := make(map[string]oauth.Settings)
	for _, name := range oauthProviders() {
		p := provider.Lookup(name)
		s := oauth.Settings{Endpoints: p.OAuth, RefreshLead: p.RefreshLead}
		if o := h.OAuth[name]; o != nil {
			x := func(v string) string { return repl.ReplaceKnown(v, "") }
			for _, f := range []struct {
				opt, val string
				dst      *string
			}{
				{"token_url", x(o.TokenURL), &s.Endpoints.TokenURL},
				{"authorize_url", x(o.AuthorizeURL), &s.Endpoints.AuthorizeURL},
				{"redirect_uri", x(o.RedirectURI), &s.Endpoints.RedirectURI},
				{"client_id", x(o.ClientID), &s.Endpoints.ClientID},
			} {
				if f.val == "" {
					continue
				}
				if f.opt != "client_id" {
					if err := checkHTTPURL(f.val); err != nil {
						return nil, fmt.Errorf("oauth %s: %s: %v", name, f.opt, err)
					}
				}
				*f.dst = f.val
			}
			if o.RefreshLead < 0 {
				return nil, fmt.Errorf("oauth %s: refresh_lead must not be negative", name)
			}
			if o.RefreshLead > 0 {
				s.RefreshLead = time.Duration(o.RefreshLead)
			}
		}
		out[name] = s
	}
	return out, nil
}

// checkHTTPURL accepts an absolute http or https URL.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", raw)
	}
	return nil
}

// parseOAuth parses one `oauth <provider> { ... }` block.
func parseOAuth(d *caddyfile.Dispenser, into map[string]*OAuthProvider) error {
	if !d.NextArg() {
		return d.Errf("oauth takes a provider name (%s) and a block", strings.Join(oauthProviders(), ", "))
	}
	name := d.Val()
	if p := provider.Lookup(name); p == nil || p.OAuth.TokenURL == "" {
		return d.Errf("oauth: unknown provider %q; expected one of %s", name, strings.Join(oauthProviders(), ", "))
	}
	if into[name] != nil {
		return d.Errf("duplicate oauth %s block", name)
	}
	o := new(OAuthProvider)
	values := map[string]*string{
		"token_url":     &o.TokenURL,
		"authorize_url": &o.AuthorizeURL,
		"client_id":     &o.ClientID,
		"redirect_uri":  &o.RedirectURI,
	}
	block := "oauth " + name
	err := blockOptions(d, block, func(opt string, args []string) error {
		if opt == "refresh_lead" {
			v, err := durationArg(d, block, opt, args)
			o.RefreshLead = v
			return err
		}
		target, ok := values[opt]
		if !ok {
			return d.Errf("%s: unknown option %q; expected one of token_url, authorize_url, client_id, redirect_uri, refresh_lead", block, opt)
		}
		if len(args) != 1 {
			return d.Errf("%s: %s takes one value", block, opt)
		}
		if opt != "client_id" && !strings.Contains(args[0], "{") {
			if err := checkHTTPURL(args[0]); err != nil {
				return d.Errf("%s: %s: %v", block, opt, err)
			}
		}
		*target = args[0]
		return nil
	})
	into[name] = o
	return err
}
