// Package access is the extension point for checking client keys: modules
// in the Caddy namespace llm_proxy.access implement AccessProvider, and
// llm_proxy.access.config_api_key (keys listed in the config) is the one
// that comes with the plugin.
package access

import "errors"

// AccessProvider checks the key a client presents. Modules in the Caddy
// namespace llm_proxy.access implement it.
type AccessProvider interface {
	// Authenticate returns the label of the matched key: ErrNoKey when
	// key is empty (the request carries none), ErrBadKey when it is
	// unknown. The label names the client in logs and in
	// {http.auth.user.id}; it is never the key itself.
	Authenticate(key string) (label string, err error)
}

var (
	// ErrNoKey is returned by an AccessProvider when the request carries
	// no client key.
	ErrNoKey = errors.New("no client key")
	// ErrBadKey is returned by an AccessProvider when the request carries
	// a key it does not know.
	ErrBadKey = errors.New("unknown client key")
)
