package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPKCE: the verifier has RFC 7636's length and alphabet, the challenge
// is base64url(sha256(verifier)) without padding (checked against the RFC's
// own example), and two logins share nothing.
func TestPKCE(t *testing.T) {
	rfc := &Login{CodeVerifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}
	if got := rfc.CodeChallenge(); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("RFC 7636 appendix B challenge %q", got)
	}
	a, err := NewLogin(ClaudeDefaults(), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewLogin(ClaudeDefaults(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{a.CodeVerifier, a.State} {
		if len(v) < 43 || len(v) > 128 || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
			t.Fatalf("value %q is not an RFC 7636 verifier", v)
		}
	}
	sum := sha256.Sum256([]byte(a.CodeVerifier))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); a.CodeChallenge() != want || strings.Contains(want, "=") {
		t.Fatalf("challenge %q, want %q", a.CodeChallenge(), want)
	}
	if a.CodeVerifier == b.CodeVerifier || a.State == b.State || a.State == a.CodeVerifier {
		t.Fatal("two logins share a verifier or state")
	}
	if !a.Created.Equal(t0) || a.Expired(t0.Add(LoginTTL)) || !a.Expired(t0.Add(LoginTTL+time.Second)) {
		t.Fatalf("created %v, expiry wrong", a.Created)
	}
}

// TestLoginURL: every parameter SPEC 12 names is in the authorize URL, with
// each provider's extras; extras cannot replace the standard parameters.
func TestLoginURL(t *testing.T) {
	codex := CodexDefaults()
	codex.AuthorizeParams["state"] = "attacker"
	codex.AuthorizeParams["login_hint"] = "bob"
	cases := []struct {
		ep        Endpoints
		base      string
		wantExtra map[string]string
	}{
		{ClaudeDefaults(), "https://claude.ai/oauth/authorize", map[string]string{
			"code": "true", "redirect_uri": "http://localhost:54545/callback",
			"scope":     "user:profile user:inference user:sessions:claude_code",
			"client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
		}},
		{codex, "https://auth.openai.com/oauth/authorize", map[string]string{
			"id_token_add_organizations": "true", "codex_cli_simplified_flow": "true", "login_hint": "bob",
			"redirect_uri": "http://localhost:1455/auth/callback", "scope": "openid email profile offline_access",
			"client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
		}},
	}
	for _, tc := range cases {
		l, err := NewLogin(tc.ep, t0)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(l.URL())
		if err != nil {
			t.Fatal(err)
		}
		if base := u.Scheme + "://" + u.Host + u.Path; base != tc.base {
			t.Fatalf("base %q", base)
		}
		q := u.Query()
		want := map[string]string{
			"response_type": "code", "code_challenge": l.CodeChallenge(),
			"code_challenge_method": "S256", "state": l.State,
		}
		for k, v := range tc.wantExtra {
			want[k] = v
		}
		if len(q) != len(want) {
			t.Fatalf("query %v, want %v", q, want)
		}
		for k, v := range want {
			if got := q[k]; len(got) != 1 || got[0] != v {
				t.Fatalf("%s = %q, want %q", k, got, v)
			}
		}
	}
}

// TestLoginSerialisable: a Login survives JSON (the admin API keeps it
// between start and complete) and completes the same way afterwards.
func TestLoginSerialisable(t *testing.T) {
	l, err := NewLogin(CodexDefaults(), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var back Login
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*l, back) || back.URL() != l.URL() || back.CodeChallenge() != l.CodeChallenge() {
		t.Fatalf("round trip\n%+v\n%+v", *l, back)
	}
}

func TestNewLoginRejectsBadEndpoints(t *testing.T) {
	for _, mod := range []func(*Endpoints){
		func(ep *Endpoints) { ep.AuthorizeURL = "" },
		func(ep *Endpoints) { ep.AuthorizeURL = "javascript:alert(1)" },
		func(ep *Endpoints) { ep.RedirectURI = "" },
		func(ep *Endpoints) { ep.ClientID = "" },
		func(ep *Endpoints) { ep.TokenURL = "localhost/token" },
	} {
		ep := ClaudeDefaults()
		mod(&ep)
		if _, err := NewLogin(ep, t0); err == nil {
			t.Fatalf("%+v accepted", ep)
		}
	}
}

func TestParseCode(t *testing.T) {
	cases := []struct {
		in, code, state string
	}{
		{"http://localhost:54545/callback?code=abc-123_X&state=st8", "abc-123_X", "st8"},
		{"  http://localhost:1455/auth/callback?code=ac_1%2B2&scope=x&state=s  \n", "ac_1+2", "s"},
		{"localhost:1455/auth/callback?code=c1&state=s1", "c1", "s1"},
		{"https://platform.claude.com/oauth/code/callback?code=c2&state=s2#frag", "c2", "s2"},
		{"http://localhost:54545/callback?code=nostate", "nostate", ""},
		{"?code=c3&state=s3", "c3", "s3"},
		{"code=c4&state=s4", "c4", "s4"},
		{"state=s5&code=c5", "c5", "s5"},
		{"c6#s6", "c6", "s6"},
		{"bare.code~7", "bare.code~7", ""},
		{"code#", "code", ""},
	}
	for _, tc := range cases {
		code, state, err := ParseCode(tc.in)
		if err != nil || code != tc.code || state != tc.state {
			t.Fatalf("ParseCode(%q) = %q %q %v, want %q %q", tc.in, code, state, err, tc.code, tc.state)
		}
	}
	bad := map[string]string{
		"":    "nothing pasted",
		"   ": "nothing pasted",
		"http://localhost:54545/callback?error=access_denied&error_description=User+said+no&state=s": "refused the login: access_denied: User said no",
		"http://localhost:54545/callback":         "no code",
		"http://localhost:54545/callback?state=s": "no code",
		"two words":                      "not a code",
		"#state":                         "not a code",
		"a#b#c":                          "not a code",
		"http://x/cb?code=has%20space":   "malformed",
		"http://x/cb?code=c&state=%zz":   "malformed",
		strings.Repeat("a", maxPasted+1): "too long",
		"http://x/cb?code=c%0A%0Dset-cookie:+x&st=1": "malformed",
	}
	for in, want := range bad {
		code, state, err := ParseCode(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseCode(%q) = %q %q %v, want error with %q", in, code, state, err, want)
		}
	}
}

// exchangeServer is a token endpoint that checks an authorization-code
// grant against login l (PKCE and all) and answers with tokens.
func exchangeServer(t *testing.T, l **Login, json bool) *endpoint {
	return newEndpoint(t, func(s seen) answer {
		var p map[string]string
		if json {
			if s.contentType != "application/json" || decodeInto(s.body, &p) != nil {
				return answer{status: 400, body: `{"error":"invalid_request"}`}
			}
		} else {
			q, err := url.ParseQuery(s.body)
			if err != nil || s.contentType != "application/x-www-form-urlencoded" {
				return answer{status: 400, body: `{"error":"invalid_request"}`}
			}
			p = map[string]string{}
			for k, v := range q {
				p[k] = v[0]
			}
		}
		sum := sha256.Sum256([]byte(p["code_verifier"]))
		if p["grant_type"] != "authorization_code" || p["code"] != "the-code" ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != (*l).CodeChallenge() ||
			p["redirect_uri"] != (*l).Endpoints.RedirectURI || p["client_id"] != (*l).Endpoints.ClientID {
			return answer{status: 400, body: `{"error":"invalid_grant","error_description":"Invalid 'code' in request."}`}
		}
		return answer{body: `{"access_token":"at","refresh_token":"rt","expires_in":60,"account":{"uuid":"u","email_address":"e@x"}}`}
	})
}

func decodeInto(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestExchange: all three paste forms complete a login; Claude's grant is
// the JSON object with state, Codex's the form without it.
func TestExchange(t *testing.T) {
	var l *Login
	claude := exchangeServer(t, &l, true)
	codex := exchangeServer(t, &l, false)
	for _, provider := range []struct {
		name string
		ep   Endpoints
		e    *endpoint
	}{{"claude", claudeAt(claude.URL), claude}, {"codex", codexAt(codex.URL), codex}} {
		for _, form := range []string{"url", "code#state", "bare"} {
			var err error
			l, err = NewLogin(provider.ep, t0)
			if err != nil {
				t.Fatal(err)
			}
			pasted := map[string]string{
				"url":        l.Endpoints.RedirectURI + "?code=the-code&state=" + url.QueryEscape(l.State),
				"code#state": "the-code#" + l.State,
				"bare":       "the-code",
			}[form]
			tok, err := l.Exchange(context.Background(), provider.e.Client(), pasted, t0.Add(time.Minute))
			if err != nil {
				t.Fatalf("%s %s: %v", provider.name, form, err)
			}
			want := Token{AccessToken: "at", RefreshToken: "rt", Expiry: t0.Add(2 * time.Minute), Email: "e@x", AccountID: "u"}
			if tok != want {
				t.Fatalf("%s %s: %+v", provider.name, form, tok)
			}
			reqs := provider.e.requests()
			body := reqs[len(reqs)-1].body
			var wantBody string
			if provider.name == "claude" {
				b, _ := json.Marshal(l.State)
				v, _ := json.Marshal(l.CodeVerifier)
				wantBody = `{"grant_type":"authorization_code","code":"the-code","state":` + string(b) +
					`,"client_id":"9d1c250a-e61b-44d9-88ed-5944d1962f5e","redirect_uri":"http://localhost:54545/callback","code_verifier":` + string(v) + `}`
			} else {
				wantBody = "grant_type=authorization_code&code=the-code&client_id=app_EMoamEEZ73f0CkXaXp7hrann" +
					"&redirect_uri=" + url.QueryEscape("http://localhost:1455/auth/callback") + "&code_verifier=" + l.CodeVerifier
			}
			if body != wantBody {
				t.Fatalf("%s body\n%s\nwant\n%s", provider.name, body, wantBody)
			}
		}
	}
}

// TestExchangeRefusals: a state from another login, an expired login and
// a refused code fail; the first two without contacting the endpoint, and
// no error carries the code or the verifier.
func TestExchangeRefusals(t *testing.T) {
	var l *Login
	e := exchangeServer(t, &l, true)
	var err error
	l, err = NewLogin(claudeAt(e.URL), t0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewLogin(claudeAt(e.URL), t0)
	check := func(name string, err error, wantRequests int, permanent bool) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if IsPermanent(err) != permanent {
			t.Fatalf("%s: permanent=%v: %v", name, IsPermanent(err), err)
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err)} {
			if strings.Contains(s, "the-code") || strings.Contains(s, "wrong-code") || strings.Contains(s, l.CodeVerifier) {
				t.Fatalf("%s: secret in %q", name, s)
			}
		}
		if n := len(e.requests()); n != wantRequests {
			t.Fatalf("%s: %d requests, want %d", name, n, wantRequests)
		}
	}
	_, err = l.Exchange(context.Background(), e.Client(), "the-code#"+other.State, t0)
	check("state of another login", err, 0, true)
	_, err = l.Exchange(context.Background(), e.Client(), "http://localhost:54545/callback?code=the-code&state="+other.State, t0)
	check("state of another login in a URL", err, 0, true)
	_, err = l.Exchange(context.Background(), e.Client(), "the-code#"+l.State, t0.Add(LoginTTL+time.Second))
	check("expired login", err, 0, true)
	_, err = l.Exchange(context.Background(), e.Client(), "wrong-code#"+l.State, t0)
	check("refused code", err, 1, true)
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" || oe.Op != "code exchange" {
		t.Fatalf("refused code: %+v", err)
	}
}
