package handler

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// errClientLeft scripts a client that goes away while its request waits
// for a refresh.
var errClientLeft = errors.New("client left during the refresh")

// scriptedRefresher answers RefreshRejected from a script per credential:
// nil installs the token "<old token>+" in the pool (the scripted upstream
// then names the credential "<id>+"), an error is returned as is.
type scriptedRefresher struct {
	t       *testing.T
	pool    *pool.Pool
	up      http.RoundTripper
	mu      sync.Mutex
	results map[string][]error
}

func (s *scriptedRefresher) RefreshRejected(ctx context.Context, c *pool.Credential, rejected *auth.Auth) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	script := s.results[c.ID()]
	if len(script) == 0 {
		s.t.Errorf("unexpected refresh of %s", c.ID())
		return errors.New("no scripted refresh")
	}
	err := script[0]
	s.results[c.ID()] = script[1:]
	if errors.Is(err, errClientLeft) {
		s.up.(*scriptedUpstream).cancel()
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	if c.Auth().AccessToken != rejected.AccessToken {
		s.t.Errorf("refresh of %s asked for a token it no longer holds", c.ID())
	}
	var inline []*auth.Auth
	for _, other := range s.pool.Credentials() {
		a := other.Auth()
		if other == c {
			a = a.Clone()
			a.AccessToken += "+"
		}
		inline = append(inline, a)
	}
	s.pool.SetMembers(inline, nil)
	return nil
}

// Refresh-on-401 (SPEC section 12): a 401 of an OAuth access token gets
// one refresh and one more attempt on the same credential before the
// credential is cooled and the request fails over.
func TestAttemptLoopRefreshOn401(t *testing.T) {
	const minute = time.Minute
	ok := answer{status: 200, body: claudeOK}
	expired := answer{status: 401, body: `{"type":"error","error":{"type":"authentication_error","message":"OAuth token has expired."}}`}
	cases := []loopCase{
		{
			name:      "401: refreshed, retried on the same credential, nothing cooled",
			oauth:     true,
			scripts:   map[string][]answer{"a": {expired}, "a+": {ok}},
			refreshes: map[string][]error{"a": {nil}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "a+"}, outcomes: []string{ReasonTokenRefresh, "success"}, bodyIs: ptr(claudeOK)}},
		},
		{
			name:      "a second 401 after the refresh cools the credential and fails over",
			oauth:     true,
			scripts:   map[string][]answer{"a": {expired}, "a+": {expired}, "b": {ok}},
			refreshes: map[string][]error{"a": {nil}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "a+", "b"}, outcomes: []string{ReasonTokenRefresh, "auth_failed", "success"},
				cooled: map[string][]cool{"a": {{"*", 30 * minute}}}}},
		},
		{
			name:      "a failed refresh cools the credential at once and fails over",
			oauth:     true,
			scripts:   map[string][]answer{"a": {expired}, "b": {ok}},
			refreshes: map[string][]error{"a": {pool.ErrNeedsLogin}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b"}, outcomes: []string{"auth_failed", "success"},
				cooled: map[string][]cool{"a": {{"*", 30 * minute}}}}},
		},
		{
			name:      "every credential refused after its refresh: the last 401 goes back to the client",
			oauth:     true,
			scripts:   map[string][]answer{"a": {expired}, "a+": {expired}, "b": {expired}, "b+": {expired}},
			refreshes: map[string][]error{"a": {nil}, "b": {nil}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 401, tried: []string{"a", "a+", "b", "b+"}, bodyHas: "OAuth token has expired",
				cooled: map[string][]cool{"a": {{"*", 30 * minute}}, "b": {{"*", 30 * minute}}}}},
		},
		{
			name:        "max_attempts counts credentials: the retry after a refresh is not one more",
			oauth:       true,
			maxAttempts: 1,
			scripts:     map[string][]answer{"a": {expired}, "a+": {ok}},
			refreshes:   map[string][]error{"a": {nil}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "a+"}}},
		},
		{
			name:      "the client leaves while the token is refreshed: stop, nothing cooled",
			oauth:     true,
			scripts:   map[string][]answer{"a": {expired}},
			refreshes: map[string][]error{"a": {errClientLeft}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 499, tried: []string{"a"}, outcomes: []string{"client_canceled"}}},
		},
		{
			name:    "403 of an OAuth credential is not refreshed",
			oauth:   true,
			scripts: map[string][]answer{"a": {{status: 403, body: `{"type":"error","error":{"type":"permission_error","message":"no"}}`}}, "b": {ok}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b"}, cooled: map[string][]cool{"a": {{"*", 30 * minute}}}}},
		},
		{
			name:    "401 of an API key is not refreshed",
			scripts: map[string][]answer{"a": {expired}, "b": {ok}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b"}, cooled: map[string][]cool{"a": {{"*", 30 * minute}}}}},
		},
		{
			name:      "the refreshed credential keeps the session it served",
			oauth:     true,
			affinity:  true,
			scripts:   map[string][]answer{"a": {expired}, "a+": {ok, ok}},
			refreshes: map[string][]error{"a": {nil}},
			steps: []step{
				{method: "POST", path: "/v1/messages", body: claudeBody, header: http.Header{"X-Session-Id": {"s1"}},
					status: 200, tried: []string{"a", "a+"}},
				{method: "POST", path: "/v1/messages", body: claudeBody, header: http.Header{"X-Session-Id": {"s1"}},
					status: 200, tried: []string{"a+"}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runLoopCase(t, tc) })
	}
}
