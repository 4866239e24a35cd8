package auth

// Client keys: where a request carries one, and removing it (and other
// credential overrides) from what goes upstream.

import (
	"net/http"
	"net/url"
	"strings"
)

// Headers and query parameters a client key is read from; see ClientKey.
var (
	clientKeyHeaders = []string{"X-Api-Key", "X-Goog-Api-Key"}
	clientKeyParams  = []string{"key", "auth_token"}
)

// ClientKey returns the client key of r, from the first of these that is
// set: the Authorization header with the Bearer scheme, the x-api-key
// header, the x-goog-api-key header, the "key" query parameter, the
// "auth_token" query parameter. It returns "" when there is none.
func ClientKey(r *http.Request) string {
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if token = strings.TrimSpace(token); token != "" {
			return token
		}
	}
	for _, h := range clientKeyHeaders {
		if v := strings.TrimSpace(r.Header.Get(h)); v != "" {
			return v
		}
	}
	if r.URL == nil || r.URL.RawQuery == "" {
		return ""
	}
	q := r.URL.Query()
	for _, p := range clientKeyParams {
		if v := q.Get(p); v != "" {
			return v
		}
	}
	return ""
}

// StripClientKey removes every place a client key can come from (see
// ClientKey) from an outgoing upstream request: the Authorization,
// x-api-key and x-goog-api-key headers of h, and the "key" and
// "auth_token" parameters of u's query. It also removes the query
// parameters by which a client could replace or redirect the pool's
// credential upstream: Google's "access_token" (an OAuth token used in
// place of the key) and "userProject" / "$userProject" (the project billed). Other parameters are kept as
// written, in their order. h must be the outgoing request's own header
// (a clone), not the client's.
func StripClientKey(h http.Header, u *url.URL) {
	h.Del("Authorization")
	for _, name := range clientKeyHeaders {
		h.Del(name)
	}
	if u == nil || u.RawQuery == "" {
		return
	}
	var kept []string
	removed := false
	for part := range strings.SplitSeq(u.RawQuery, "&") {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil && isClientKeyParam(n) {
			removed = true
			continue
		}
		kept = append(kept, part)
	}
	if removed {
		u.RawQuery = strings.Join(kept, "&")
	}
}

// credentialParams are query parameters that would override the pool's
// credential or billing upstream; they are never forwarded.
var credentialParams = []string{"access_token", "userProject", "$userProject"}

func isClientKeyParam(name string) bool {
	for _, p := range clientKeyParams {
		if name == p {
			return true
		}
	}
	for _, p := range credentialParams {
		if name == p {
			return true
		}
	}
	return false
}
