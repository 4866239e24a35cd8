// Package oauth is the OAuth 2.0 client llm_proxy uses to keep subscription
// credentials alive (Claude through Claude Code's OAuth, ChatGPT through
// Codex's OAuth): refreshing an access token with a refresh token, and the
// authorization-code login with PKCE that produces the first pair.
//
// The package knows nothing about pools, storage or providers' tables: the
// caller passes the provider's Endpoints (ClaudeDefaults and CodexDefaults
// hold the providers' public values, which a pool may override), an
// *http.Client (which carries the credential's proxy) and the current time.
// Errors from the token endpoint are *Error values; IsPermanent tells a dead
// refresh token (log in again) from a failure worth retrying.
package oauth

import (
	"errors"
	"net/url"
	"time"
)

// BodyFormat is how a token request's parameters are encoded.
type BodyFormat string

const (
	// FormBody sends application/x-www-form-urlencoded parameters, as
	// RFC 6749 specifies (Codex). It is the default.
	FormBody BodyFormat = "form"
	// JSONBody sends the same parameters as a JSON object (Claude).
	JSONBody BodyFormat = "json"
)

// Endpoints are one provider's OAuth settings. The zero values of the
// optional fields leave the corresponding parameter out.
type Endpoints struct {
	// TokenURL receives refresh and authorization-code grants.
	TokenURL string `json:"token_url"`
	// AuthorizeURL is the page a user opens in a browser to log in.
	AuthorizeURL string `json:"authorize_url"`
	// ClientID is the provider's public client (no secret: PKCE binds the
	// login instead).
	ClientID string `json:"client_id"`
	// RedirectURI is where the provider sends the browser with the code.
	RedirectURI string `json:"redirect_uri"`
	// Scope is requested on the authorize page.
	Scope string `json:"scope,omitempty"`
	// RefreshScope, when set, is sent as scope with refresh grants.
	RefreshScope string `json:"refresh_scope,omitempty"`
	// Format encodes token requests. Default: FormBody.
	Format BodyFormat `json:"format,omitempty"`
	// StateInExchange also sends the login's state with the
	// authorization-code grant (Claude expects it).
	StateInExchange bool `json:"state_in_exchange,omitempty"`
	// AuthorizeParams are extra query parameters of the authorize URL.
	AuthorizeParams map[string]string `json:"authorize_params,omitempty"`
}

// ClaudeDefaults returns the values Claude Code's own OAuth client uses
// (Claude Pro and Max subscriptions): JSON token requests to
// platform.claude.com, the authorize page on claude.ai with code=true, and a
// state echoed in the code exchange.
func ClaudeDefaults() Endpoints {
	return Endpoints{
		TokenURL:        "https://platform.claude.com/v1/oauth/token",
		AuthorizeURL:    "https://claude.ai/oauth/authorize",
		ClientID:        "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
		RedirectURI:     "http://localhost:54545/callback",
		Scope:           "user:profile user:inference user:sessions:claude_code",
		Format:          JSONBody,
		StateInExchange: true,
		AuthorizeParams: map[string]string{"code": "true"},
	}
}

// CodexDefaults returns the values the Codex CLI's OAuth client uses
// (ChatGPT subscriptions): form-encoded token requests to auth.openai.com,
// refresh grants asking for "openid profile email", and the authorize
// parameters that make the id_token carry the ChatGPT account.
func CodexDefaults() Endpoints {
	return Endpoints{
		TokenURL:     "https://auth.openai.com/oauth/token",
		AuthorizeURL: "https://auth.openai.com/oauth/authorize",
		ClientID:     "app_EMoamEEZ73f0CkXaXp7hrann",
		RedirectURI:  "http://localhost:1455/auth/callback",
		Scope:        "openid email profile offline_access",
		RefreshScope: "openid profile email",
		Format:       FormBody,
		AuthorizeParams: map[string]string{
			"id_token_add_organizations": "true",
			"codex_cli_simplified_flow":  "true",
		},
	}
}

// Validate reports a setting the token requests cannot do without: an
// absolute http(s) TokenURL and a ClientID, and a known Format.
func (ep Endpoints) Validate() error {
	if err := checkURL("token_url", ep.TokenURL); err != nil {
		return err
	}
	if ep.ClientID == "" {
		return errors.New("client_id is required")
	}
	switch ep.Format {
	case "", FormBody, JSONBody:
	default:
		return errors.New(`format must be "form" or "json"`)
	}
	return nil
}

// validateLogin also requires what a login needs: AuthorizeURL and
// RedirectURI.
func (ep Endpoints) validateLogin() error {
	if err := ep.Validate(); err != nil {
		return err
	}
	if err := checkURL("authorize_url", ep.AuthorizeURL); err != nil {
		return err
	}
	return checkURL("redirect_uri", ep.RedirectURI)
}

func checkURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New(name + " must be an absolute http or https URL")
	}
	return nil
}

// Settings are one provider's effective OAuth settings in a pool: the
// provider's defaults with the pool's overrides applied.
type Settings struct {
	Endpoints Endpoints
	// RefreshLead is how long before an access token expires it is
	// refreshed (after its last refresh, when the expiry is unknown).
	RefreshLead time.Duration
}
