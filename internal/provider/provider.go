// Package provider is the table of upstream providers llm_proxy talks to
// (claude, codex, gemini, openai, openai_compatible): for each one, the API
// families it serves, its default base URL, the credentials it accepts, how
// a credential is sent upstream, how client paths map onto its base URL, and
// the facts of its OAuth login (through package oauth's Endpoints) and quota
// headers.
//
// Everything that differs between providers lives in the table (table.go)
// and nowhere else: the rest of llm_proxy asks Lookup and never compares
// provider names. Adding a provider is one entry in table.go plus its tests.
package provider

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// Provider is everything llm_proxy knows about one upstream provider. The
// values in the table are shared: callers must not modify them.
//
// A nil *Provider (what Lookup returns for an unknown name) serves no
// family, sends no credential and maps paths as a generic upstream would.
type Provider struct {
	// Name is the provider's name in the config ("provider") and in stored
	// records ("provider" or "type").
	Name string

	// Families are the API families the provider's upstream speaks. A
	// credential answers only requests of these families.
	Families []apifamily.Family

	// Endpoints, when set, are the only OpenAI endpoints the upstream
	// serves; nil means all of them.
	Endpoints []apifamily.Endpoint

	// DefaultBaseURL is the upstream a credential talks to when it has no
	// base_url. Empty means base_url is required.
	DefaultBaseURL string

	// AccessTokens reports whether an OAuth access_token may stand in for an
	// api_key. When false, every credential needs an api_key.
	AccessTokens bool

	// Auth says how a credential is sent upstream.
	Auth AuthHeaders

	// StripV1 reports that the upstream's paths have no /v1 prefix: a
	// client's /v1/responses is sent to <base_url>/responses.
	StripV1 bool

	// OAuth holds the defaults of the provider's OAuth login and token
	// refresh (SPEC section 12), which a pool may override; zero when the
	// provider has no OAuth login llm_proxy can refresh.
	OAuth oauth.Endpoints

	// RefreshLead is how long before an access token expires it is
	// refreshed; zero without OAuth.
	RefreshLead time.Duration

	// Quota names the response headers that report a credential's usage
	// limits; zero when the provider sends none.
	Quota Quota
}

// AuthHeaders says how a provider takes a credential. An OAuth access token
// is always sent as "Authorization: Bearer <token>".
type AuthHeaders struct {
	// APIKey is the header an API key is sent in, as is. Empty: the key is
	// sent as "Authorization: Bearer <key>".
	APIKey string

	// OAuthFlag is added to a comma-separated header when an access token
	// is sent (Anthropic's oauth beta), keeping the client's own values.
	OAuthFlag ListValue

	// AccountID is the header that carries the credential's account_id
	// along with an access token. Empty: account_id is not sent.
	AccountID string

	// Defaults are headers set when the client sent none of that name.
	Defaults []Header
}

// Header is one header name and value.
type Header struct {
	Name, Value string
}

// ListValue is a value of a comma-separated list header.
type ListValue struct {
	Header, Value string
}

// Quota names the response headers in which a provider reports how much of
// a credential's limits is used (SPEC section 13). Package pool records
// them per credential on every response; the admin API and metrics show
// them and routing's quota_headroom steers new sessions by them. Header
// names are lower case; empty means not sent.
type Quota struct {
	// HeaderPrefixes: every response header whose name starts with one of
	// these (lower case) reports quota.
	HeaderPrefixes []string
	// Windows are the subscription's usage windows.
	Windows []QuotaWindow
	// Status, ResetAt and Claim are the subscription-wide headers: its
	// overall "allowed"/"rejected", when that resets (unix seconds) and
	// which window is the binding one ("five_hour", "seven_day").
	Status, ResetAt, Claim string
	// Limits are an API key's rate limits, one per kind.
	Limits []QuotaLimit

	// canon maps every header name above to its canonical form, so that
	// Value finds it without allocating.
	canon map[string]string
}

// QuotaWindow is one usage window of a subscription, by the headers that
// report it.
type QuotaWindow struct {
	// Name names the window in logs, metrics and the admin API ("5h").
	Name string
	// Used is the header with the share of the window used.
	Used string
	// UsedFull is Used's value when the window is exhausted: 1 for a
	// fraction, 100 for a percentage.
	UsedFull float64
	// Status is the header that says "allowed" or "rejected".
	Status string
	// ResetAt is the header with the time the window resets, in unix
	// seconds.
	ResetAt string
	// ResetAfter is the header with the seconds until the window resets.
	ResetAfter string
	// Minutes is the header with the window's length in minutes.
	Minutes string
}

// QuotaLimit is one rate limit of an API key, by the headers that report
// it: how many requests (or tokens) are left and allowed per period.
type QuotaLimit struct {
	// Kind names the limit in metrics and the admin API ("requests",
	// "tokens").
	Kind string
	// Remaining and Limit are the headers with what is left and what the
	// period allows.
	Remaining, Limit string
}

// Value returns the first value of the quota header name (one of q's lower
// case names) in h, or "" when h has none. It does not allocate.
func (q *Quota) Value(h http.Header, name string) string {
	if name == "" {
		return ""
	}
	key, ok := q.canon[name]
	if !ok {
		key = http.CanonicalHeaderKey(name)
	}
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Empty reports whether the provider reports no quota headers.
func (q *Quota) Empty() bool { return len(q.Windows) == 0 && len(q.Limits) == 0 && q.Status == "" }

// names lists every header name q reads.
func (q *Quota) names() []string {
	out := []string{q.Status, q.ResetAt, q.Claim}
	for _, w := range q.Windows {
		out = append(out, w.Used, w.Status, w.ResetAt, w.ResetAfter, w.Minutes)
	}
	for _, l := range q.Limits {
		out = append(out, l.Remaining, l.Limit)
	}
	return out
}

// compile fills q.canon.
func (q *Quota) compile() {
	q.canon = make(map[string]string)
	for _, n := range q.names() {
		if n != "" {
			q.canon[n] = http.CanonicalHeaderKey(n)
		}
	}
}

// Lookup returns the provider named name, or nil when there is none.
// Names are matched exactly (lower case).
func Lookup(name string) *Provider {
	for _, p := range table {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Names returns the names of all providers, sorted.
func Names() []string {
	names := make([]string, len(table))
	for i, p := range table {
		names[i] = p.Name
	}
	slices.Sort(names)
	return names
}

// Serves reports whether the provider's credentials answer requests of
// family f.
func (p *Provider) Serves(f apifamily.Family) bool {
	return p != nil && slices.Contains(p.Families, f)
}

// ServesRoute reports whether the provider's credentials can answer a
// request on this route: its family, and for OpenAI routes its endpoint.
func (p *Provider) ServesRoute(r apifamily.Route) bool {
	return p.Serves(r.Family) && (len(p.Endpoints) == 0 || r.Endpoint == apifamily.EndpointAny || slices.Contains(p.Endpoints, r.Endpoint))
}

// Credential is what a credential can present upstream.
type Credential struct {
	APIKey      string
	AccessToken string
	AccountID   string
}

// Apply sets c's authentication headers on h as the provider takes them:
// the API key when there is one (in Auth.APIKey, else as a Bearer token),
// else the access token as a Bearer token with Auth.OAuthFlag and the
// account ID; then Auth.Defaults the client did not send. h must be the
// outgoing request's own header, with the client's keys already removed.
func (p *Provider) Apply(h http.Header, c Credential) {
	if p == nil {
		return
	}
	switch {
	case c.APIKey != "" && p.Auth.APIKey != "":
		h.Set(p.Auth.APIKey, c.APIKey)
	case c.APIKey != "":
		h.Set("Authorization", "Bearer "+c.APIKey)
	case c.AccessToken != "":
		h.Set("Authorization", "Bearer "+c.AccessToken)
		if f := p.Auth.OAuthFlag; f.Header != "" {
			addListValue(h, f.Header, f.Value)
		}
		if p.Auth.AccountID != "" && c.AccountID != "" {
			h.Set(p.Auth.AccountID, c.AccountID)
		}
	}
	for _, d := range p.Auth.Defaults {
		if h.Get(d.Name) == "" {
			h.Set(d.Name, d.Value)
		}
	}
}

// addListValue adds value to the comma-separated header name, unless it is
// there already. The header's values are joined into one.
func addListValue(h http.Header, name, value string) {
	var values []string
	for _, v := range h.Values(name) {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if f == value {
					return
				}
				values = append(values, f)
			}
		}
	}
	h.Set(name, strings.Join(append(values, value), ","))
}

// UpstreamPath joins the path of a credential's base URL with a client
// request's path, which starts with its API version (/v1/..., /v1beta/...).
// The client's /v1 is dropped where the provider's paths have none
// (StripV1) and where the base path already ends in /v1: a base of
// https://host/api/v1 with /v1/chat/completions gives
// /api/v1/chat/completions.
func (p *Provider) UpstreamPath(basePath, path string) string {
	basePath = strings.TrimRight(basePath, "/")
	if p != nil && p.StripV1 || strings.HasSuffix(basePath, "/v1") {
		if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
			path = "/" + rest
		}
	}
	return basePath + path
}
