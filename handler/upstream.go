package handler

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/caddy-llm-proxy/llmproxy/auth"
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
// query. The path keeps its API prefix except where the base URL already
// ends in it: a base of https://host/api/v1 with /v1/chat/completions gives
// https://host/api/v1/chat/completions, and the Codex backend (whose base
// has no /v1) gets /responses.
func upstreamURL(base *url.URL, provider, path, rawQuery string) *url.URL {
	if provider == "codex" || strings.HasSuffix(base.Path, "/v1") {
		if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
			path = "/" + rest
		}
	}
	u := &url.URL{
		Scheme:   base.Scheme,
		Host:     base.Host,
		Path:     strings.TrimSuffix(base.Path, "/") + path,
		RawQuery: rawQuery,
	}
	return u
}

// newUpstreamRequest builds the request for one attempt with credential a
// applied: base URL, the client's path and query without client-key
// parameters, client auth and hop-by-hop headers removed.
func newUpstreamRequest(ctx context.Context, r *http.Request, body []byte, a *auth.Auth, base *url.URL) *http.Request {
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL = upstreamURL(base, a.Provider, r.URL.Path, r.URL.RawQuery)
	out.Host = ""
	auth.StripClientKey(out.Header, out.URL)
	stripHopHeaders(out.Header)
	for _, k := range clientAuthHeaders {
		delete(out.Header, k)
	}
	// Let the transport negotiate compression itself, so responses can be
	// read for usage figures and streamed to the client uncompressed.
	delete(out.Header, "Accept-Encoding")
	// The body is already read; there is nothing to wait for upstream.
	delete(out.Header, "Expect")
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		out.Body = http.NoBody
	}
	out.ContentLength = int64(len(body))
	delete(out.Header, "Content-Length")
	applyCredential(out.Header, a)
	return out
}

// applyCredential sets the credential's auth headers as its provider
// expects (SPEC section 6), then its own extra headers.
func applyCredential(h http.Header, a *auth.Auth) {
	switch a.Provider {
	case "claude":
		if a.APIKey != "" {
			h.Set("X-Api-Key", a.APIKey)
		} else {
			h.Set("Authorization", "Bearer "+a.AccessToken)
			addBeta(h, "oauth-2025-04-20")
		}
		if h.Get("Anthropic-Version") == "" {
			h.Set("Anthropic-Version", "2023-06-01")
		}
	case "gemini":
		if a.APIKey != "" {
			h.Set("X-Goog-Api-Key", a.APIKey)
		} else {
			h.Set("Authorization", "Bearer "+a.AccessToken)
		}
	case "codex":
		h.Set("Authorization", "Bearer "+a.Secret())
		if a.AccessToken != "" && a.AccountID != "" {
			h.Set("Chatgpt-Account-Id", a.AccountID)
		}
	default: // openai, openai_compatible
		h.Set("Authorization", "Bearer "+a.Secret())
	}
	for k, v := range a.Headers {
		h.Set(k, v)
	}
}

// addBeta appends a flag to anthropic-beta unless the client already sent it.
func addBeta(h http.Header, flag string) {
	var flags []string
	for _, v := range h.Values("Anthropic-Beta") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if f == flag {
					return
				}
				flags = append(flags, f)
			}
		}
	}
	h.Set("Anthropic-Beta", strings.Join(append(flags, flag), ","))
}
