// Package access is the extension point for checking client keys: modules
// in the Caddy namespace llm_proxy.access implement AccessProvider, and
// llm_proxy.access.config_api_key (keys listed in the config) is the one
// that comes with the plugin.
package access

import (
	"errors"

	"github.com/caddy-llm-proxy/llmproxy/internal/glob"
)

// AccessProvider checks the key a client presents. Modules in the Caddy
// namespace llm_proxy.access implement it.
type AccessProvider interface {
	// Authenticate returns the label of the matched key: ErrNoKey when
	// key is empty (the request carries none), ErrBadKey when it is
	// unknown. The label names the client in logs and in
	// {http.auth.user.id}; it is never the key itself.
	Authenticate(key string) (label string, err error)
}

// Client is who a client key belongs to.
type Client struct {
	// Label names the client in logs, metrics and {http.auth.user.id};
	// it is never the key itself.
	Label string
	// Models are the model globs the client may use ('*' matches any run
	// of characters, case is ignored); empty: every model.
	Models []string
}

// Allows reports whether the client may use model. A request that names
// no model (model == "") is for the caller to judge.
func (c Client) Allows(model string) bool {
	return len(c.Models) == 0 || glob.MatchAny(c.Models, model)
}

// ClientAuthenticator is an AccessProvider whose keys may carry more than a
// label, such as the models the client may use. Providers that implement
// only AccessProvider admit their clients to every model.
type ClientAuthenticator interface {
	AccessProvider
	// AuthenticateClient is Authenticate returning the whole Client.
	AuthenticateClient(key string) (Client, error)
}

// Authenticate checks key with ap, through AuthenticateClient when ap
// implements ClientAuthenticator.
func Authenticate(ap AccessProvider, key string) (Client, error) {
	if ca, ok := ap.(ClientAuthenticator); ok {
		return ca.AuthenticateClient(key)
	}
	label, err := ap.Authenticate(key)
	return Client{Label: label}, err
}

var (
	// ErrNoKey is returned by an AccessProvider when the request carries
	// no client key.
	ErrNoKey = errors.New("no client key")
	// ErrBadKey is returned by an AccessProvider when the request carries
	// a key it does not know.
	ErrBadKey = errors.New("unknown client key")
)
