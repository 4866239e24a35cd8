package llmproxy

import (
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// transports hands out the configured transport, or a copy of it that goes
// through a credential's proxy_url. Copies are made once per proxy URL and
// closed with the config.
type transports struct {
	base http.RoundTripper

	mu      sync.Mutex
	proxied map[string]*http.Transport
}

func newTransports(base http.RoundTripper) *transports {
	return &transports{base: base, proxied: map[string]*http.Transport{}}
}

// For returns the round tripper for the credential.
func (t *transports) For(a *auth.Auth) http.RoundTripper {
	if a.ProxyURL == "" {
		return t.base
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if rt, ok := t.proxied[a.ProxyURL]; ok {
		return rt
	}
	u, err := url.Parse(a.ProxyURL)
	ht, ok := t.base.(*reverseproxy.HTTPTransport)
	if err != nil || !ok || ht.Transport == nil {
		// Validated at load; a non-HTTP transport has no proxy setting.
		return t.base
	}
	rt := ht.Transport.Clone()
	rt.Proxy = http.ProxyURL(u)
	t.proxied[a.ProxyURL] = rt
	return rt
}

func (t *transports) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rt := range t.proxied {
		rt.CloseIdleConnections()
	}
}

// Client returns an HTTP client for calls made on a credential's behalf
// outside the request path (OAuth token endpoints), through its proxy_url
// when it has one; a nil credential gets the configured transport. Such
// calls never follow redirects, so a token cannot be carried elsewhere.
func (t *transports) Client(a *auth.Auth) *http.Client {
	rt := t.base
	if a != nil {
		rt = t.For(a)
	}
	return &http.Client{
		Transport:     rt,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
