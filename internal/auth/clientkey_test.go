package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		target  string
		headers map[string]string
		want    string
	}{
		{"none", "/v1/messages", nil, ""},
		{"bearer", "/", map[string]string{"Authorization": "Bearer k1"}, "k1"},
		{"bearer any case", "/", map[string]string{"Authorization": "bearer  k1 "}, "k1"},
		{"x-api-key", "/", map[string]string{"x-api-key": "k2"}, "k2"},
		{"x-goog-api-key", "/", map[string]string{"x-goog-api-key": "k3"}, "k3"},
		{"key param", "/v1beta/models/g:generateContent?alt=sse&key=k4", nil, "k4"},
		{"auth_token param", "/?auth_token=k5", nil, "k5"},
		{"encoded param", "/?key=a%2Bb%3D", nil, "a+b="},
		{"bearer first", "/?key=q", map[string]string{"Authorization": "Bearer k1", "x-api-key": "k2", "x-goog-api-key": "k3"}, "k1"},
		{"x-api-key before x-goog-api-key", "/", map[string]string{"x-api-key": "k2", "x-goog-api-key": "k3"}, "k2"},
		{"headers before query", "/?key=q", map[string]string{"x-goog-api-key": "k3"}, "k3"},
		{"key before auth_token", "/?auth_token=t&key=q", nil, "q"},
		{"basic is not a client key", "/", map[string]string{"Authorization": "Basic dTpw", "x-api-key": "k2"}, "k2"},
		{"empty bearer", "/?key=q", map[string]string{"Authorization": "Bearer "}, "q"},
		{"empty header", "/", map[string]string{"x-api-key": " "}, ""},
		{"empty param", "/?key=&auth_token=t", nil, "t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := ClientKey(r); got != tc.want {
				t.Errorf("ClientKey() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStripClientKey(t *testing.T) {
	for _, tc := range []struct {
		query, want string
	}{
		{"", ""},
		{"alt=sse", "alt=sse"},
		{"key=k", ""},
		{"a=1&key=k&b=%20y+z&auth_token=t&key=k2&c", "a=1&b=%20y+z&c"},
		{"%6Bey=k&keys=1&monkey=2&x=key", "keys=1&monkey=2&x=key"},
		{"alt=sse&auth_token", "alt=sse"},
		// A client may not swap in its own Google token or billed project.
		{"alt=sse&access_token=ya29.x&userProject=p&%24userProject=q&quotaUser=u", "alt=sse&quotaUser=u"},
	} {
		h := http.Header{}
		h.Set("Authorization", "Bearer k")
		h.Set("X-Api-Key", "k")
		h.Set("X-Goog-Api-Key", "k")
		h.Set("Anthropic-Version", "2023-06-01")
		h.Set("Content-Type", "application/json")
		u := &url.URL{Scheme: "https", Host: "h", Path: "/v1/x", RawQuery: tc.query}

		StripClientKey(h, u)

		if u.RawQuery != tc.want {
			t.Errorf("query %q: got %q, want %q", tc.query, u.RawQuery, tc.want)
		}
		for _, name := range []string{"Authorization", "X-Api-Key", "X-Goog-Api-Key"} {
			if _, ok := h[name]; ok {
				t.Errorf("header %s kept", name)
			}
		}
		if h.Get("Anthropic-Version") == "" || h.Get("Content-Type") == "" {
			t.Errorf("other headers removed: %v", h)
		}
		r := &http.Request{URL: u, Header: h}
		if k := ClientKey(r); k != "" {
			t.Errorf("query %q: ClientKey() = %q after stripping", tc.query, k)
		}
	}
	StripClientKey(http.Header{}, nil) // no URL: headers only
}
