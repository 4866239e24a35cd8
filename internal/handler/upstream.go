package handler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/glob"
	"github.com/caddy-llm-proxy/llmproxy/internal/provider"
)

// hopHeaders are the hop-by-hop headers of RFC 7230 section 6.1, which are
// never forwarded in either direction.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// clientAuthHeaders carry the client's own key; they never reach upstream.
var clientAuthHeaders = []string{"Authorization", "X-Api-Key", "X-Goog-Api-Key"}

// neverForwarded are the client headers no allowlist entry can send
// upstream: hop-by-hop headers, the client's key, and headers the transport
// sets itself (it negotiates compression and frames the replayed body).
var neverForwarded = slices.Concat([]string{"Accept-Encoding", "Content-Length", "Expect", "Host"}, hopHeaders, clientAuthHeaders)

// DefaultForwardHeaders are the client request headers sent upstream; every
// other client header is dropped. They are the APIs' documented request
// headers and those the official SDKs and the Claude Code, Codex and Gemini
// CLIs send. '*' matches any run of characters; case is ignored. Headers
// that choose who is billed or carry the client's own identity (Cookie,
// OpenAI-Organization, OpenAI-Project, X-Goog-User-Project,
// ChatGPT-Account-Id) are not among them: the pool's credential decides.
var DefaultForwardHeaders = []string{
	"Accept",
	"Content-Type",
	"Content-Encoding", // describes the body, which is replayed as received
	"User-Agent",
	"Idempotency-Key",
	// Anthropic API and SDKs, Claude Code.
	"Anthropic-*", // anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access
	"X-Stainless-*",
	"X-App",
	"X-Claude-Code-Session-Id",
	// OpenAI API, Codex CLI.
	"OpenAI-Beta",
	"Session-Id",
	"Session_id",
	"Conversation-Id",
	"Conversation_id",
	"Thread-Id",
	"Originator",
	"Version",
	"X-Client-Request-Id",
	"X-Codex-*",
	// The generic session header (SPEC section 5).
	"X-Session-Id",
	// Gemini SDKs and CLI.
	"X-Goog-Api-Client",
}

// HeaderAllowlist decides which client request headers are sent upstream.
// Build one with NewHeaderAllowlist.
type HeaderAllowlist struct {
	exact    map[string]bool // canonical names
	patterns []string        // lower-case globs
}

// NewHeaderAllowlist returns DefaultForwardHeaders plus extra header names
// or globs ('*' matches any run of characters; case is ignored).
func NewHeaderAllowlist(extra []string) (*HeaderAllowlist, error) {
	for _, name := range extra {
		if err := CheckForwardHeader(name); err != nil {
			return nil, err
		}
	}
	l := &HeaderAllowlist{exact: map[string]bool{}}
	for _, name := range slices.Concat(DefaultForwardHeaders, extra) {
		if strings.Contains(name, "*") {
			l.patterns = append(l.patterns, strings.ToLower(name))
		} else {
			l.exact[textproto.CanonicalMIMEHeaderKey(name)] = true
		}
	}
	return l, nil
}

// defaultAllowlist is DefaultForwardHeaders alone.
var defaultAllowlist, _ = NewHeaderAllowlist(nil)

// CheckForwardHeader returns why a header name or glob cannot be added to
// the forwarded headers: it must be a header name ('*' allowed), and not
// one that is never forwarded (hop-by-hop headers, Authorization, X-Api-Key,
// X-Goog-Api-Key, Accept-Encoding, Content-Length, Expect, Host). Globs may
// match those, but they are still dropped.
func CheckForwardHeader(name string) error {
	if name == "" {
		return fmt.Errorf("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '*' && !isTokenByte(c) {
			return fmt.Errorf("bad header name %q: use letters, digits, '-', '_' and '*' globs", name)
		}
	}
	for _, n := range neverForwarded {
		if strings.EqualFold(n, name) {
			return fmt.Errorf("header %s is never forwarded upstream", n)
		}
	}
	return nil
}

// isTokenByte reports whether c may appear in a header name (an RFC 9110
// token).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'+-.^_`|~", c) >= 0
}

// allows reports whether the client header named key is forwarded.
func (l *HeaderAllowlist) allows(key string) bool {
	if l.exact[key] {
		return true
	}
	for _, p := range l.patterns {
		if glob.Match(p, key) {
			for _, n := range neverForwarded {
				if strings.EqualFold(n, key) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// filter returns the client headers to send upstream. Value slices are
// shared with src: callers replace values (Set), never edit them in place.
func (l *HeaderAllowlist) filter(src http.Header) http.Header {
	dst := make(http.Header, len(src))
	for k, v := range src {
		if l.allows(k) {
			dst[k] = v
		}
	}
	// Headers the client named in Connection are hop-by-hop too.
	for _, f := range src["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				dst.Del(sf)
			}
		}
	}
	return dst
}

// stripHopHeaders removes hop-by-hop headers, including those named by
// Connection.
func stripHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// upstreamURL joins a credential's base URL with the client's path and
// query, by the path rule of the credential's provider (see
// provider.Provider.UpstreamPath).
func upstreamURL(base *url.URL, p *provider.Provider, path, rawQuery string) *url.URL {
	return &url.URL{
		Scheme:   base.Scheme,
		Host:     base.Host,
		Path:     p.UpstreamPath(base.Path, path),
		RawQuery: rawQuery,
	}
}

// newUpstreamRequest builds the request for one attempt with credential a
// applied: base URL, the client's path (Parse has checked it is a served
// endpoint) and query without client-key parameters, and only the client
// headers fwd allows (nil: DefaultForwardHeaders). Per-credential headers
// are applied last.
func newUpstreamRequest(ctx context.Context, r *http.Request, body []byte, a *auth.Auth, base *url.URL, fwd *HeaderAllowlist) *http.Request {
	if fwd == nil {
		fwd = defaultAllowlist
	}
	out := r.WithContext(ctx) // a shallow copy: every field that matters is set here
	out.RequestURI = ""
	p := provider.Lookup(a.Provider)
	out.URL = upstreamURL(base, p, r.URL.Path, r.URL.RawQuery)
	out.Host = ""
	out.Header = fwd.filter(r.Header)
	out.Trailer = nil
	out.TransferEncoding = nil
	out.Close = false
	auth.StripClientKey(out.Header, out.URL)
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		out.Body = http.NoBody
		out.GetBody = nil
	}
	out.ContentLength = int64(len(body))
	applyCredential(out.Header, p, a)
	return out
}

// applyCredential sets the credential's auth headers as its provider takes
// them (SPEC section 6), then its own extra headers.
func applyCredential(h http.Header, p *provider.Provider, a *auth.Auth) {
	p.Apply(h, provider.Credential{APIKey: a.APIKey, AccessToken: a.AccessToken, AccountID: a.AccountID})
	for k, v := range a.Headers {
		h.Set(k, v)
	}
}
