package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestRefreshClaudeBody: Claude's refresh is the JSON object SPEC 12 names,
// byte for byte, and its answer's account fills Email and AccountID.
func TestRefreshClaudeBody(t *testing.T) {
	e := newEndpoint(t, func(seen) answer {
		return answer{body: `{"token_type":"Bearer","access_token":"sk-ant-oat01-new","expires_in":28800,` +
			`"refresh_token":"sk-ant-ort01-next","scope":"user:inference user:profile",` +
			`"organization":{"uuid":"org-1","name":"Org"},"account":{"uuid":"acct-1","email_address":"a@example.com"}}`}
	})
	tok, err := Refresh(context.Background(), e.Client(), claudeAt(e.URL), "sk-ant-ort01-old", t0)
	if err != nil {
		t.Fatal(err)
	}
	reqs := e.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	want := `{"grant_type":"refresh_token","refresh_token":"sk-ant-ort01-old","client_id":"9d1c250a-e61b-44d9-88ed-5944d1962f5e"}`
	if r := reqs[0]; r.method != "POST" || r.contentType != "application/json" || r.body != want {
		t.Fatalf("request %s %q %s\nwant body %s", r.method, r.contentType, r.body, want)
	}
	wantTok := Token{
		AccessToken: "sk-ant-oat01-new", RefreshToken: "sk-ant-ort01-next",
		Expiry: t0.Add(8 * time.Hour), Email: "a@example.com", AccountID: "acct-1",
	}
	if tok != wantTok {
		t.Fatalf("token %+v\nwant %+v", tok, wantTok)
	}
}

// TestRefreshCodexBody: Codex's refresh is the form SPEC 12 names, byte for
// byte; the account comes from the id_token, and a refresh token the answer
// does not rotate is kept.
func TestRefreshCodexBody(t *testing.T) {
	idToken := jwt(t, map[string]any{
		"email":                       "b@example.com",
		"https://api.openai.com/auth": map[string]any{"chatgpt_account_id": "acc-42", "chatgpt_plan_type": "pro"},
	})
	e := newEndpoint(t, func(seen) answer {
		return answer{body: `{"id_token":"` + idToken + `","access_token":"at-new","expires_in":864000,"token_type":"Bearer"}`}
	})
	tok, err := Refresh(context.Background(), e.Client(), codexAt(e.URL), "rt/old+1", t0)
	if err != nil {
		t.Fatal(err)
	}
	r := e.requests()[0]
	want := "grant_type=refresh_token&refresh_token=rt%2Fold%2B1&client_id=app_EMoamEEZ73f0CkXaXp7hrann&scope=openid+profile+email"
	if r.method != "POST" || r.contentType != "application/x-www-form-urlencoded" || r.body != want {
		t.Fatalf("request %s %q %s\nwant body %s", r.method, r.contentType, r.body, want)
	}
	form, err := url.ParseQuery(r.body)
	if err != nil || form.Get("refresh_token") != "rt/old+1" || form.Get("scope") != "openid profile email" {
		t.Fatalf("form %v %v", form, err)
	}
	wantTok := Token{
		AccessToken: "at-new", RefreshToken: "rt/old+1", IDToken: idToken,
		Expiry: t0.Add(10 * 24 * time.Hour), Email: "b@example.com", AccountID: "acc-42",
	}
	if tok != wantTok {
		t.Fatalf("token %+v\nwant %+v", tok, wantTok)
	}
}

// TestRefreshExpiry: expires_in (a number or a numeric string) gives an
// absolute expiry; without it a JWT access token's exp does; otherwise the
// expiry is unknown (zero). Absurd values cannot overflow.
func TestRefreshExpiry(t *testing.T) {
	jwtExp := jwt(t, map[string]any{"exp": t0.Add(3 * time.Hour).Unix()})
	cases := []struct {
		name, body string
		want       time.Time
	}{
		{"seconds", `{"access_token":"a","expires_in":3600}`, t0.Add(time.Hour)},
		{"string seconds", `{"access_token":"a","expires_in":"120"}`, t0.Add(2 * time.Minute)},
		{"jwt exp", `{"access_token":"` + jwtExp + `"}`, t0.Add(3 * time.Hour)},
		{"expires_in wins over exp", `{"access_token":"` + jwtExp + `","expires_in":60}`, t0.Add(time.Minute)},
		{"unknown", `{"access_token":"opaque"}`, time.Time{}},
		{"zero", `{"access_token":"opaque","expires_in":0}`, time.Time{}},
		{"negative", `{"access_token":"opaque","expires_in":-5}`, time.Time{}},
		{"absurd", `{"access_token":"a","expires_in":1e300}`, t0.Add(maxLifetime)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, func(seen) answer { return answer{body: tc.body} })
			tok, err := Refresh(context.Background(), e.Client(), codexAt(e.URL), "rt", t0)
			if err != nil {
				t.Fatal(err)
			}
			if !tok.Expiry.Equal(tc.want) {
				t.Fatalf("expiry %v, want %v", tok.Expiry, tc.want)
			}
		})
	}
}

// TestRefreshErrors: each kind of answer is classified; only a dead grant
// is permanent.
func TestRefreshErrors(t *testing.T) {
	openAI := func(code, msg string) string {
		return `{"error":{"message":"` + msg + `","type":"invalid_request_error","param":null,"code":"` + code + `"}}`
	}
	date := t0.Add(90 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name       string
		a          answer
		permanent  bool
		code       string
		retryAfter time.Duration
	}{
		{"claude invalid_grant", answer{status: 400, body: `{"error": "invalid_grant", "error_description": "Refresh token not found or invalid"}`}, true, "invalid_grant", 0},
		{"codex reused 401", answer{status: 401, body: openAI("refresh_token_reused", "Your refresh token has already been used to generate a new access token. Please try signing in again.")}, true, "refresh_token_reused", 0},
		{"codex reused 400", answer{status: 400, body: openAI("refresh_token_reused", "used")}, true, "refresh_token_reused", 0},
		{"codex expired", answer{status: 401, body: openAI("refresh_token_expired", "expired")}, true, "refresh_token_expired", 0},
		{"codex invalidated", answer{status: 401, body: openAI("refresh_token_invalidated", "revoked")}, true, "refresh_token_invalidated", 0},
		{"malformed refresh token", answer{status: 400, body: `{"error":"invalid_request","error_description":"Invalid refresh token format"}`}, true, "invalid_request", 0},
		{"invalid_request about something else", answer{status: 400, body: `{"error":"invalid_request","error_description":"Missing client_id"}`}, false, "invalid_request", 0},
		{"invalid_client", answer{status: 401, body: `{"error":"invalid_client"}`}, false, "invalid_client", 0},
		{"bare 401", answer{status: 401, body: ``}, false, "", 0},
		{"anthropic-shaped 429", answer{status: 429, headers: map[string]string{"Retry-After": "30"}, body: `{"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}`}, false, "rate_limit_error", 30 * time.Second},
		{"429 http date", answer{status: 429, headers: map[string]string{"Retry-After": date}, body: `{}`}, false, "", 90 * time.Second},
		{"429 invalid_grant is still a rate limit", answer{status: 429, body: `{"error":"invalid_grant"}`}, false, "invalid_grant", 0},
		{"500 invalid_grant is still a server error", answer{status: 500, body: `{"error":"invalid_grant"}`}, false, "invalid_grant", 0},
		{"503 html", answer{status: 503, headers: map[string]string{"Content-Type": "text/html", "Retry-After": "5"}, body: `<html>down</html>`}, false, "", 5 * time.Second},
		{"200 not json", answer{status: 200, body: `<html>captive portal</html>`}, false, "", 0},
		{"200 without access_token", answer{status: 200, body: `{"refresh_token":"x"}`}, false, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, func(seen) answer { return tc.a })
			_, err := Refresh(context.Background(), e.Client(), claudeAt(e.URL), "rt-secret-value", t0)
			var oe *Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if oe.Status != tc.a.status || oe.Permanent != tc.permanent || IsPermanent(err) != tc.permanent ||
				oe.Code != tc.code || oe.RetryAfter != tc.retryAfter {
				t.Fatalf("got %+v (%v)", *oe, err)
			}
			if oe.Op != "refresh" || !strings.HasPrefix(err.Error(), "oauth refresh: token endpoint answered ") {
				t.Fatalf("message %q", err)
			}
		})
	}
}

// TestRefreshNoAnswer: a refused connection and a cancelled context are
// temporary, with no status.
func TestRefreshNoAnswer(t *testing.T) {
	e := newEndpoint(t, func(seen) answer { return answer{body: `{"access_token":"a"}`} })
	ep := claudeAt(e.URL)
	e.Close()
	_, err := Refresh(context.Background(), nil, ep, "rt", t0)
	var oe *Error
	if !errors.As(err, &oe) || oe.Status != 0 || oe.Permanent || oe.Err == nil {
		t.Fatalf("closed server: %#v", err)
	}

	e2 := newEndpoint(t, func(seen) answer { return answer{body: `{"access_token":"a"}`} })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Refresh(ctx, e2.Client(), claudeAt(e2.URL), "rt", t0)
	if !errors.Is(err, context.Canceled) || IsPermanent(err) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestRefreshNoRedirect: a token endpoint that redirects cannot make the
// client re-send the refresh token to another server.
func TestRefreshNoRedirect(t *testing.T) {
	thief := newEndpoint(t, func(seen) answer { return answer{body: `{"access_token":"stolen"}`} })
	e := newEndpoint(t, func(seen) answer {
		return answer{status: http.StatusTemporaryRedirect, headers: map[string]string{"Location": thief.URL + "/steal"}}
	})
	_, err := Refresh(context.Background(), http.DefaultClient, claudeAt(e.URL), "rt-secret", t0)
	var oe *Error
	if !errors.As(err, &oe) || oe.Status != http.StatusTemporaryRedirect || oe.Permanent {
		t.Fatalf("redirect: %v", err)
	}
	if n := len(thief.requests()); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
	if http.DefaultClient.CheckRedirect != nil {
		t.Fatal("the caller's client was modified")
	}
}

// TestRefreshErrorsHideSecrets: a hostile or careless endpoint that echoes
// the request into its error (code, description, headers) never gets the
// refresh token into the error's message or fields.
func TestRefreshErrorsHideSecrets(t *testing.T) {
	const secret = "rt/VERY+secret<0123456789>&"
	echo := []func(s seen) answer{
		func(s seen) answer {
			return answer{status: 400, body: `{"error":"invalid_grant","error_description":"token ` + secret + ` is dead; body was ` + strings.ReplaceAll(s.body, `"`, `'`) + `"}`}
		},
		func(seen) answer {
			return answer{status: 401, body: `{"error":{"code":"` + secret + `","message":"` + secret + `"}}`}
		},
		func(seen) answer { return answer{status: 500, body: secret} },
		func(seen) answer { return answer{status: 200, body: `{"oops":"` + secret + `"`} },
		func(seen) answer {
			return answer{status: 429, headers: map[string]string{"Retry-After": secret}, body: secret}
		},
	}
	for i, reply := range echo {
		for _, ep := range []func(string) Endpoints{claudeAt, codexAt} {
			e := newEndpoint(t, reply)
			_, err := Refresh(context.Background(), e.Client(), ep(e.URL), secret, t0)
			if err == nil {
				t.Fatalf("case %d: no error", i)
			}
			for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
				if strings.Contains(s, secret) || strings.Contains(s, url.QueryEscape(secret)) {
					t.Fatalf("case %d: the refresh token leaked: %s", i, s)
				}
			}
		}
	}
}

// TestRefreshRejectsBadInput: a missing refresh token or unusable
// endpoints fail before any request, permanently.
func TestRefreshRejectsBadInput(t *testing.T) {
	e := newEndpoint(t, func(seen) answer { return answer{body: `{"access_token":"a"}`} })
	bad := []Endpoints{
		{},
		{TokenURL: e.URL, ClientID: ""},
		{TokenURL: "ftp://x/token", ClientID: "c"},
		{TokenURL: "/relative", ClientID: "c"},
		{TokenURL: e.URL, ClientID: "c", Format: "xml"},
	}
	for _, ep := range bad {
		if _, err := Refresh(context.Background(), e.Client(), ep, "rt", t0); !IsPermanent(err) {
			t.Fatalf("%+v: %v", ep, err)
		}
	}
	if _, err := Refresh(context.Background(), e.Client(), claudeAt(e.URL), "", t0); !IsPermanent(err) {
		t.Fatalf("empty refresh token: %v", err)
	}
	if n := len(e.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

// TestIsPermanentWrapped: IsPermanent sees through wrapping and is false
// for foreign errors.
func TestIsPermanentWrapped(t *testing.T) {
	err := fmt.Errorf("refreshing %q: %w", "claude-1", &Error{Op: "refresh", Status: 400, Code: "invalid_grant", Permanent: true})
	if !IsPermanent(err) {
		t.Fatal("wrapped permanent error not seen")
	}
	if IsPermanent(errors.New("invalid_grant")) || IsPermanent(nil) {
		t.Fatal("foreign error reported permanent")
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2030-05-06T07:08:09Z":           t0,
		"2030-05-06T15:08:09+08:00":      t0,
		" 2030-05-06T07:08:09.5Z ":       t0.Add(500 * time.Millisecond),
		"2030-05-06T07:08:09.123456789Z": t0.Add(123456789),
	} {
		got, ok := ParseTime(in)
		if !ok || !got.Equal(want) {
			t.Fatalf("ParseTime(%q) = %v %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "tomorrow", "2030-05-06", "1788761576"} {
		if _, ok := ParseTime(in); ok {
			t.Fatalf("ParseTime(%q) accepted", in)
		}
	}
	if got := FormatTime(t0.Add(700 * time.Millisecond).In(time.FixedZone("x", 3600))); got != "2030-05-06T07:08:09Z" {
		t.Fatalf("FormatTime %q", got)
	}
}
