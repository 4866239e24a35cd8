package mockllm

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

var oauthStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newOAuthTest starts a mock with two subscription accounts, alice
// (claude) and bob (codex), on a fake clock.
func newOAuthTest(t *testing.T, keys map[string]string) (*Server, string, *clock.Fake) {
	t.Helper()
	fake := clock.NewFake(oauthStart)
	s, ts := newTest(t, Options{Keys: keys, Now: fake.Now, OAuthAccounts: map[string]OAuthAccount{
		"alice": {Provider: OAuthClaude, Email: "alice@example.com", AccountID: "uuid-alice"},
		"bob":   {Provider: OAuthCodex, Lifetime: time.Hour, AccountID: "chatgpt-bob"},
	}})
	return s, ts.URL, fake
}

// endpointsAt points a provider's defaults at the mock.
func endpointsAt(base, provider string) oauth.Endpoints {
	if provider == OAuthClaude {
		ep := oauth.ClaudeDefaults()
		ep.TokenURL, ep.AuthorizeURL = base+"/v1/oauth/token", base+"/v1/oauth/authorize"
		return ep
	}
	ep := oauth.CodexDefaults()
	ep.TokenURL, ep.AuthorizeURL = base+"/oauth/token", base+"/oauth/authorize"
	return ep
}

// llmCall sends a minimal request of the provider's API with an OAuth
// access token, as llm_proxy applies it (SPEC 6).
func llmCall(t *testing.T, base, provider, token string, extra ...string) *http.Response {
	t.Helper()
	if provider == OAuthClaude {
		h := append([]string{"Authorization: Bearer " + token, "anthropic-beta: tools-2024-04-04, oauth-2025-04-20"}, extra...)
		return do(t, "POST", base+"/v1/messages", anthropicBody, h...)
	}
	h := append([]string{"Authorization: Bearer " + token, "chatgpt-account-id: chatgpt-bob"}, extra...)
	return do(t, "POST", base+"/backend-api/codex/responses", `{"model":"gpt-5-codex","input":"hi"}`, h...)
}

func expectStatus(t *testing.T, resp *http.Response, status int, label string) map[string]any {
	t.Helper()
	v := readJSON(t, resp, status)
	if got := resp.Header.Get("X-Mock-Credential"); got != label {
		t.Fatalf("X-Mock-Credential %q, want %q", got, label)
	}
	return v
}

// TestOAuthRefreshRotates drives both token endpoints with the oauth
// client: each refresh rotates the refresh token and issues an access token
// the LLM endpoints accept; the spent refresh token is refused as a dead
// grant in the provider's words.
func TestOAuthRefreshRotates(t *testing.T) {
	s, base, _ := newOAuthTest(t, nil)
	cases := []struct {
		label, provider, reusedCode string
		reusedStatus                int
		lifetime                    time.Duration
		email, account              string
	}{
		{"alice", OAuthClaude, "invalid_grant", 400, DefaultClaudeTokenLifetime, "alice@example.com", "uuid-alice"},
		{"bob", OAuthCodex, "refresh_token_reused", 401, time.Hour, "bob@example.com", "chatgpt-bob"},
	}
	for _, tc := range cases {
		ep := endpointsAt(base, tc.provider)
		first := "mock-rt-" + tc.label
		tok, err := oauth.Refresh(context.Background(), nil, ep, first, oauthStart)
		if err != nil {
			t.Fatalf("%s: %v", tc.label, err)
		}
		latest, _ := s.OAuthTokens(tc.label)
		if tok.RefreshToken == first || tok.RefreshToken != latest.RefreshToken || tok.AccessToken != latest.AccessToken {
			t.Fatalf("%s: not rotated: %+v, server %+v", tc.label, tok, latest)
		}
		if !tok.Expiry.Equal(oauthStart.Add(tc.lifetime)) || !latest.Expiry.Equal(tok.Expiry) {
			t.Fatalf("%s: expiry %v", tc.label, tok.Expiry)
		}
		if tok.Email != tc.email || tok.AccountID != tc.account {
			t.Fatalf("%s: account %q %q", tc.label, tok.Email, tok.AccountID)
		}
		if tc.provider == OAuthCodex && (tok.IDToken == "" || strings.Count(tok.AccessToken, ".") != 2) {
			t.Fatalf("%s: codex tokens are JWTs: %+v", tc.label, tok)
		}
		expectStatus(t, llmCall(t, base, tc.provider, tok.AccessToken), 200, tc.label)

		_, err = oauth.Refresh(context.Background(), nil, ep, first, oauthStart)
		var oe *oauth.Error
		if !errors.As(err, &oe) || !oe.Permanent || oe.Status != tc.reusedStatus || oe.Code != tc.reusedCode {
			t.Fatalf("%s: reused refresh token: %v", tc.label, err)
		}
		tok2, err := oauth.Refresh(context.Background(), nil, ep, tok.RefreshToken, oauthStart)
		if err != nil || tok2.RefreshToken == tok.RefreshToken {
			t.Fatalf("%s: second refresh %+v %v", tc.label, tok2, err)
		}
		// The other provider's endpoint does not know the token.
		other := endpointsAt(base, map[string]string{OAuthClaude: OAuthCodex, OAuthCodex: OAuthClaude}[tc.provider])
		if _, err := oauth.Refresh(context.Background(), nil, other, tok2.RefreshToken, oauthStart); !oauth.IsPermanent(err) {
			t.Fatalf("%s: token accepted by the other provider: %v", tc.label, err)
		}
		if st := s.OAuthStats()[tc.label]; st.Refreshes != 2 || st.Rejected != 1 {
			t.Fatalf("%s: stats %+v", tc.label, st)
		}
	}
}

// TestOAuthConcurrentRefresh: of many simultaneous refreshes with one
// refresh token exactly one succeeds; this is what makes N instances that
// do not coordinate lose their credential.
func TestOAuthConcurrentRefresh(t *testing.T) {
	s, base, _ := newOAuthTest(t, nil)
	ep := endpointsAt(base, OAuthCodex)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, dead := 0, 0
	for range 16 {
		wg.Go(func() {
			_, err := oauth.Refresh(context.Background(), nil, ep, "mock-rt-bob", oauthStart)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case oauth.IsPermanent(err):
				dead++
			default:
				t.Errorf("unexpected %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || dead != 15 || s.OAuthStats()["bob"].Refreshes != 1 {
		t.Fatalf("%d succeeded, %d refused; stats %+v", ok, dead, s.OAuthStats()["bob"])
	}
}

// TestOAuthAccessTokens: access tokens are credentials of their account
// until the controlled clock passes their expiry; then each provider says
// so in its own 401. Claude tokens need Bearer and the OAuth beta flag, and
// static keys keep working beside them.
func TestOAuthAccessTokens(t *testing.T) {
	s, base, fake := newOAuthTest(t, map[string]string{"sk-static": "static"})
	expectStatus(t, do(t, "POST", base+"/v1/messages", anthropicBody, "x-api-key: sk-static"), 200, "static")
	expectStatus(t, do(t, "POST", base+"/v1/messages", anthropicBody, "x-api-key: sk-other"), 401, "sk-other")
	expectStatus(t, llmCall(t, base, OAuthClaude, "mock-at-alice"), 200, "alice")
	expectStatus(t, llmCall(t, base, OAuthCodex, "mock-at-bob"), 200, "bob")
	// A refresh token is not an access token.
	expectStatus(t, llmCall(t, base, OAuthClaude, "mock-rt-alice"), 401, "mock-rt-alice")

	v := expectStatus(t, do(t, "POST", base+"/v1/messages", anthropicBody, "Authorization: Bearer mock-at-alice"), 401, "alice")
	if get(v, "error", "type") != "authentication_error" || get(v, "error", "message") != "OAuth authentication is currently not supported." {
		t.Fatalf("no beta flag: %v", v)
	}
	v = expectStatus(t, do(t, "POST", base+"/v1/messages", anthropicBody, "x-api-key: mock-at-alice", "anthropic-beta: oauth-2025-04-20"), 401, "alice")
	if get(v, "error", "type") != "authentication_error" {
		t.Fatalf("oauth token as x-api-key: %v", v)
	}

	fake.Advance(time.Hour) // bob's tokens last an hour
	v = expectStatus(t, llmCall(t, base, OAuthCodex, "mock-at-bob"), 401, "bob")
	if get(v, "error", "code") != "token_expired" {
		t.Fatalf("codex expired: %v", v)
	}
	expectStatus(t, llmCall(t, base, OAuthClaude, "mock-at-alice"), 200, "alice")
	s.AdvanceClock(DefaultClaudeTokenLifetime)
	v = expectStatus(t, llmCall(t, base, OAuthClaude, "mock-at-alice"), 401, "alice")
	if get(v, "type") != "error" || get(v, "error", "type") != "authentication_error" ||
		get(v, "error", "message") != "OAuth token has expired. Please obtain a new token or refresh your existing token." {
		t.Fatalf("claude expired: %v", v)
	}

	now := s.OAuthNow()
	tok, err := oauth.Refresh(context.Background(), nil, endpointsAt(base, OAuthClaude), "mock-rt-alice", now)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, llmCall(t, base, OAuthClaude, tok.AccessToken), 200, "alice")
	expectStatus(t, llmCall(t, base, OAuthClaude, "mock-at-alice"), 401, "alice")
	if st := s.OAuthStats(); st["alice"].ExpiredAccess != 2 || st["bob"].ExpiredAccess != 1 {
		t.Fatalf("stats %+v", st)
	}
	if st := s.Stats(); st["alice"].Requests != 7 {
		t.Fatalf("LLM stats for alice %+v", st["alice"])
	}
}

// login runs a login against the mock as a user would: open the authorize
// URL (the mock logs in at once and redirects), and paste something back.
func login(t *testing.T, base, provider, hint string, paste func(redirect *url.URL) string) (*oauth.Login, oauth.Token, error) {
	t.Helper()
	ep := endpointsAt(base, provider)
	if hint != "" {
		ep.AuthorizeParams["login_hint"] = hint
	}
	l, err := oauth.NewLogin(ep, oauthStart)
	if err != nil {
		t.Fatal(err)
	}
	redirect := authorize(t, l.URL())
	if got := redirect.Scheme + "://" + redirect.Host + redirect.Path; got != ep.RedirectURI || redirect.Query().Get("state") != l.State {
		t.Fatalf("redirected to %s", redirect)
	}
	tok, err := l.Exchange(context.Background(), nil, paste(redirect), oauthStart.Add(time.Minute))
	return l, tok, err
}

// authorize opens an authorize URL and returns where it redirects.
func authorize(t *testing.T, u string) *url.URL {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestOAuthLogin: the login flow of both providers works end to end with
// each form a user may paste back, and the new tokens are the account's.
func TestOAuthLogin(t *testing.T) {
	s, base, _ := newOAuthTest(t, nil)
	pastes := map[string]func(*url.URL) string{
		"redirect URL": func(u *url.URL) string { return u.String() },
		"code#state":   func(u *url.URL) string { return u.Query().Get("code") + "#" + u.Query().Get("state") },
		"bare code":    func(u *url.URL) string { return u.Query().Get("code") },
	}
	for _, provider := range []string{OAuthClaude, OAuthCodex} {
		label := map[string]string{OAuthClaude: "alice", OAuthCodex: "bob"}[provider]
		for name, paste := range pastes {
			_, tok, err := login(t, base, provider, "", paste)
			if err != nil {
				t.Fatalf("%s %s: %v", provider, name, err)
			}
			latest, _ := s.OAuthTokens(label)
			if tok.AccessToken != latest.AccessToken || tok.RefreshToken != latest.RefreshToken || tok.AccountID == "" {
				t.Fatalf("%s %s: %+v", provider, name, tok)
			}
			expectStatus(t, llmCall(t, base, provider, tok.AccessToken), 200, label)
		}
		if st := s.OAuthStats()[label]; st.Logins != 3 || st.Authorizations != 3 {
			t.Fatalf("%s: stats %+v", label, st)
		}
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestOAuthLoginChecks: the code grant is bound to its authorize request:
// the PKCE verifier, the redirect_uri, single use, a 10-minute life and,
// for Claude, the state.
func TestOAuthLoginChecks(t *testing.T) {
	s, base, _ := newOAuthTest(t, nil)
	ctx := context.Background()
	start := func(provider string, mod func(*oauth.Endpoints)) (*oauth.Login, string) {
		ep := endpointsAt(base, provider)
		if mod != nil {
			mod(&ep)
		}
		l, err := oauth.NewLogin(ep, oauthStart)
		if err != nil {
			t.Fatal(err)
		}
		return l, authorize(t, l.URL()).String()
	}
	refused := func(name string, err error) {
		t.Helper()
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Status != 400 || oe.Code != "invalid_grant" || !oe.Permanent {
			t.Fatalf("%s: %v", name, err)
		}
	}

	l, pasted := start(OAuthCodex, nil)
	other, _ := oauth.NewLogin(l.Endpoints, oauthStart)
	other.State = l.State // same state, another verifier: only PKCE stops it
	_, err := other.Exchange(ctx, nil, pasted, oauthStart)
	refused("another login's verifier", err)
	if _, err := l.Exchange(ctx, nil, pasted, oauthStart); err != nil {
		t.Fatalf("the right verifier after a refused one: %v", err)
	}
	_, err = l.Exchange(ctx, nil, pasted, oauthStart)
	refused("code used twice", err)

	l, pasted = start(OAuthClaude, nil)
	l.Endpoints.RedirectURI = "http://localhost:9999/callback"
	_, err = l.Exchange(ctx, nil, pasted, oauthStart)
	refused("another redirect_uri", err)

	l, pasted = start(OAuthClaude, func(ep *oauth.Endpoints) { ep.StateInExchange = false })
	_, err = l.Exchange(ctx, nil, pasted, oauthStart)
	refused("claude without state", err)

	l, pasted = start(OAuthClaude, nil)
	s.AdvanceClock(OAuthCodeLifetime + time.Second)
	_, err = l.Exchange(ctx, nil, pasted, oauthStart)
	refused("expired code", err)

	if st := s.OAuthStats(); st["alice"].Rejected != 3 || st["bob"].Rejected != 2 || st["bob"].Logins != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOAuthAuthorizeRequest: the authorize page refuses what a PKCE client
// never sends, and logs in the account login_hint names.
func TestOAuthAuthorizeRequest(t *testing.T) {
	_, base, _ := newOAuthTest(t, nil)
	l, err := oauth.NewLogin(endpointsAt(base, OAuthClaude), oauthStart)
	if err != nil {
		t.Fatal(err)
	}
	good := mustParse(t, l.URL()).Query()
	for _, mod := range []func(url.Values){
		func(q url.Values) { q.Set("code_challenge_method", "plain") },
		func(q url.Values) { q.Del("code_challenge") },
		func(q url.Values) { q.Del("state") },
		func(q url.Values) { q.Set("response_type", "token") },
		func(q url.Values) { q.Set("redirect_uri", "javascript:alert(1)") },
		func(q url.Values) { q.Del("client_id") },
		func(q url.Values) { q.Set("login_hint", "bob") }, // a codex account
		func(q url.Values) { q.Set("login_hint", "nobody") },
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = v
		}
		mod(q)
		resp := do(t, "GET", base+"/v1/oauth/authorize?"+q.Encode(), "")
		v := readJSON(t, resp, 400)
		if v["error"] != "invalid_request" {
			t.Fatalf("%v: %v", q, v)
		}
	}
	_, tok, err := login(t, base, OAuthCodex, "bob", func(u *url.URL) string { return u.String() })
	if err != nil || tok.AccountID != "chatgpt-bob" {
		t.Fatalf("login_hint: %+v %v", tok, err)
	}
}

// TestOAuthWrongBodyFormat: each token endpoint takes only its provider's
// body format, so a client with the formats swapped fails (temporarily:
// the refresh token is not at fault).
func TestOAuthWrongBodyFormat(t *testing.T) {
	s, base, _ := newOAuthTest(t, nil)
	claude := endpointsAt(base, OAuthClaude)
	claude.Format = oauth.FormBody
	codex := endpointsAt(base, OAuthCodex)
	codex.Format = oauth.JSONBody
	for _, ep := range []oauth.Endpoints{claude, codex} {
		_, err := oauth.Refresh(context.Background(), nil, ep, "mock-rt-alice", oauthStart)
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Status != 400 || oe.Code != "invalid_request" || oe.Permanent {
			t.Fatalf("%s: %v", ep.TokenURL, err)
		}
	}
	if st := s.OAuthStats()["alice"]; st.Refreshes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOAuthFaults: injected token-endpoint failures from Go and over the
// control API are temporary for the client, with Retry-After; revoking an
// account makes its refresh tokens dead grants until the next login.
func TestOAuthFaults(t *testing.T) {
	s, base, _ := newOAuthTest(t, nil)
	ctx := context.Background()
	claude := endpointsAt(base, OAuthClaude)

	s.SetOAuthFault("alice", OAuthFault{Status: 429, RetryAfter: 30 * time.Second, Times: 2})
	for range 2 {
		_, err := oauth.Refresh(ctx, nil, claude, "mock-rt-alice", oauthStart)
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Status != 429 || oe.Permanent || oe.RetryAfter != 30*time.Second || oe.Code != "rate_limit_error" {
			t.Fatalf("429: %v", err)
		}
	}
	tok, err := oauth.Refresh(ctx, nil, claude, "mock-rt-alice", oauthStart)
	if err != nil {
		t.Fatalf("after the fault: %v", err)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Path != "/v1/oauth/token" || last.Credential != "alice" || last.Key != "" || !reqs[0].Fault || last.Fault {
		t.Fatalf("recorded %+v", last)
	}

	resp := do(t, "POST", base+"/_mock/oauth/faults", `{"account":"*","status":503,"times":1}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || s.OAuthFaults()[AnyKey].Times != 1 {
		t.Fatalf("POST faults: %d %+v", resp.StatusCode, s.OAuthFaults())
	}
	_, err = oauth.Refresh(ctx, nil, endpointsAt(base, OAuthCodex), "mock-rt-bob", oauthStart)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Status != 503 || oe.Permanent {
		t.Fatalf("503: %v", err)
	}
	s.SetOAuthFault("bob", OAuthFault{Refuse: true})
	if _, err = oauth.Refresh(ctx, nil, endpointsAt(base, OAuthCodex), "mock-rt-bob", oauthStart); !errors.As(err, &oe) || oe.Status != 0 || oe.Permanent {
		t.Fatalf("refused connection: %v", err)
	}
	resp = do(t, "DELETE", base+"/_mock/oauth/faults?account=bob", "")
	resp.Body.Close()
	if len(s.OAuthFaults()) != 0 {
		t.Fatalf("faults left %+v", s.OAuthFaults())
	}

	for _, c := range []struct {
		label, provider, rt, code string
		status                    int
	}{
		{"alice", OAuthClaude, tok.RefreshToken, "invalid_grant", 400},
		{"bob", OAuthCodex, "mock-rt-bob", "refresh_token_invalidated", 401},
	} {
		resp = do(t, "POST", base+"/_mock/oauth/revoke", `{"account":"`+c.label+`"}`)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d", resp.StatusCode)
		}
		_, err = oauth.Refresh(ctx, nil, endpointsAt(base, c.provider), c.rt, oauthStart)
		if !errors.As(err, &oe) || !oe.Permanent || oe.Code != c.code || oe.Status != c.status {
			t.Fatalf("%s revoked: %v", c.label, err)
		}
		if latest, _ := s.OAuthTokens(c.label); !latest.Revoked {
			t.Fatalf("%s not shown revoked", c.label)
		}
		_, tok, err := login(t, base, c.provider, c.label, func(u *url.URL) string { return u.String() })
		if err != nil {
			t.Fatalf("%s: login after revocation: %v", c.label, err)
		}
		if _, err := oauth.Refresh(ctx, nil, endpointsAt(base, c.provider), tok.RefreshToken, oauthStart); err != nil {
			t.Fatalf("%s: refresh after a new login: %v", c.label, err)
		}
	}

	v := readJSON(t, do(t, "GET", base+"/_mock/oauth/stats", ""), 200)
	if num(get(v, "alice", "faults")) != 2 || num(get(v, "alice", "refreshes")) != 2 || num(get(v, "bob", "faults")) != 2 ||
		num(get(v, "bob", "rejected")) != 1 || num(get(v, "bob", "logins")) != 1 {
		t.Fatalf("stats %v", v)
	}
	s.Reset()
	if st := s.OAuthStats()["alice"]; st != (OAuthStats{}) {
		t.Fatalf("after Reset %+v", st)
	}
}

// TestOAuthControl: the clock and the accounts over HTTP, and refusals of
// malformed control requests.
func TestOAuthControl(t *testing.T) {
	_, base, _ := newOAuthTest(t, nil)
	v := readJSON(t, do(t, "GET", base+"/_mock/oauth/accounts", ""), 200)
	if get(v, "accounts", "alice", "refresh_token") != "mock-rt-alice" || get(v, "accounts", "bob", "provider") != "codex" ||
		get(v, "accounts", "bob", "account_id") != "chatgpt-bob" || get(v, "now") != oauthStart.Format(time.RFC3339) {
		t.Fatalf("accounts %v", v)
	}
	v = readJSON(t, do(t, "POST", base+"/_mock/oauth/advance", `{"by":"2h"}`), 200)
	if get(v, "now") != oauthStart.Add(2*time.Hour).Format(time.RFC3339) {
		t.Fatalf("advance %v", v)
	}
	v = readJSON(t, do(t, "POST", base+"/_mock/oauth/advance", `{"by":60}`), 200)
	if get(v, "now") != oauthStart.Add(2*time.Hour+time.Minute).Format(time.RFC3339) {
		t.Fatalf("advance seconds %v", v)
	}
	resp := do(t, "POST", base+"/_mock/oauth/faults", `{"account":"alice","retry_after":"30s","status":429}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST faults: %d", resp.StatusCode)
	}
	v = readJSON(t, do(t, "GET", base+"/_mock/oauth/faults", ""), 200)
	if num(get(v, "alice", "status")) != 429 || get(v, "alice", "retry_after") != "30s" {
		t.Fatalf("GET faults %v", v)
	}
	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/_mock/oauth/advance", `{"by":"-1h"}`},
		{"POST", "/_mock/oauth/advance", `{"by":"soon"}`},
		{"POST", "/_mock/oauth/faults", `{"status":429}`},
		{"POST", "/_mock/oauth/faults", `{"account":"a","retry_after":"x"}`},
		{"POST", "/_mock/oauth/revoke", `{"account":"nobody"}`},
		{"GET", "/_mock/oauth/nothing", ``},
	} {
		resp := do(t, bad.method, base+bad.path, bad.body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("%s %s %s: %d", bad.method, bad.path, bad.body, resp.StatusCode)
		}
	}
}

// TestOAuthDisabled: without OAuthAccounts the OAuth paths are unknown
// URLs, as before.
func TestOAuthDisabled(t *testing.T) {
	s, ts := newTest(t, Options{})
	readJSON(t, do(t, "POST", ts.URL+"/v1/oauth/token", `{"grant_type":"refresh_token"}`, "x-api-key: k"), 404)
	readJSON(t, do(t, "GET", ts.URL+"/_mock/oauth/stats", ""), 404)
	if len(s.OAuthStats()) != 0 || s.RevokeOAuth("x") {
		t.Fatal("OAuth state without accounts")
	}
}
