package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// loginFixture is a pool attached with a file store and OAuth settings
// pointing at the mock's fake OAuth server.
type loginFixture struct {
	// now is the time of the test and of the mock's token endpoint, so
	// that the expiry a record computes from expires_in is exactly the
	// one the mock issued (a real clock crossing a second between the two
	// made the comparison flaky).
	now   time.Time
	mock  *mockllm.Server
	url   string
	pool  *Pool
	store *auth.CaddyStore
	dir   string
}

func newLoginFixture(t *testing.T, name string, inline ...*auth.Auth) *loginFixture {
	t.Helper()
	now := time.Now()
	m := mockllm.New(mockllm.Options{Now: func() time.Time { return now }, OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude},
		"bob":   {Provider: mockllm.OAuthClaude, Email: "bob/ops@example.com"},
		"carol": {Provider: mockllm.OAuthCodex},
	}})
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	store := auth.NewCaddyStore(&certmagic.FileStorage{Path: dir}, "llm_proxy/login/auths")
	claude, codex := oauth.ClaudeDefaults(), oauth.CodexDefaults()
	claude.TokenURL, claude.AuthorizeURL = srv.URL+"/v1/oauth/token", srv.URL+"/v1/oauth/authorize"
	codex.TokenURL, codex.AuthorizeURL = srv.URL+"/oauth/token", srv.URL+"/oauth/authorize"
	att, err := Attach(context.Background(), name, Config{
		Owner:  new(int),
		Inline: inline,
		Store:  store,
		OAuth: map[string]oauth.Settings{
			"claude": {Endpoints: claude, RefreshLead: 4 * time.Hour},
			"codex":  {Endpoints: codex, RefreshLead: 120 * time.Hour},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(att.Detach)
	return &loginFixture{now: now, mock: m, url: srv.URL, pool: att.Pool(), store: store, dir: dir}
}

// authorize opens the login's URL as the user's browser would, as the
// account label, and returns where the provider redirects to.
func (f *loginFixture) authorize(t *testing.T, pl PendingLogin, label string) string {
	t.Helper()
	u := pl.URL
	if label != "" {
		u += "&login_hint=" + url.QueryEscape(label)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func (f *loginFixture) start(t *testing.T, opts LoginOptions, now time.Time) PendingLogin {
	t.Helper()
	pl, err := f.pool.StartLogin(context.Background(), opts, now)
	if err != nil {
		t.Fatalf("StartLogin: %v", err)
	}
	return pl
}

// stored reads the record document id from storage as a JSON object.
func (f *loginFixture) stored(t *testing.T, id string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "llm_proxy", "login", "auths", id+".json"))
	if err != nil {
		t.Fatalf("record %s: %v", id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func wantKind(t *testing.T, err error, kind LoginErrorKind) {
	t.Helper()
	var le *LoginError
	if !errors.As(err, &le) || le.Kind != kind {
		t.Fatalf("error %v (%T), want kind %d", err, err, kind)
	}
}

func TestLoginWritesRecordInEveryPastedForm(t *testing.T) {
	f := newLoginFixture(t, "login-forms")
	now := f.now
	forms := map[string]func(loc string) string{
		"redirect URL": func(loc string) string { return loc },
		"query":        func(loc string) string { _, q, _ := strings.Cut(loc, "?"); return q },
		"code#state": func(loc string) string {
			u, _ := url.Parse(loc)
			return u.Query().Get("code") + "#" + u.Query().Get("state")
		},
		"bare code": func(loc string) string { u, _ := url.Parse(loc); return u.Query().Get("code") },
	}
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			id := "alice-" + strings.NewReplacer(" ", "-", "#", "-").Replace(name)
			pl := f.start(t, LoginOptions{Provider: "claude", AuthID: id}, now)
			if strings.Contains(pl.URL, "code_verifier") || !strings.Contains(pl.URL, "code_challenge=") {
				t.Fatalf("URL %s", pl.URL)
			}
			rec, replaced, err := f.pool.CompleteLogin(context.Background(), pl.ID, "  "+form(f.authorize(t, pl, "alice"))+"\n", now)
			if err != nil || replaced {
				t.Fatalf("CompleteLogin: %v, replaced %v", err, replaced)
			}
			tok, _ := f.mock.OAuthTokens("alice")
			if rec.ID != id || rec.AccessToken != tok.AccessToken || rec.RefreshToken != tok.RefreshToken {
				t.Fatalf("record %s: tokens are not the issued ones", rec.ID)
			}
			c, ok := f.pool.Get(id)
			if !ok || c.Auth().AccessToken != tok.AccessToken {
				t.Fatal("credential not in the pool at once")
			}
			doc := f.stored(t, id)
			if doc["type"] != "claude" || doc["email"] != "alice@example.com" || doc["account_id"] != "acct-alice" ||
				doc["access_token"] != tok.AccessToken || doc["refresh_token"] != tok.RefreshToken ||
				doc["expired"] != oauth.FormatTime(tok.Expiry) || doc["last_refresh"] != oauth.FormatTime(now) {
				t.Fatalf("stored record %v", doc)
			}
			if _, ok := doc["id_token"]; ok {
				t.Fatalf("claude record with an id_token: %v", doc)
			}
			// Used once.
			_, _, err = f.pool.CompleteLogin(context.Background(), pl.ID, form(f.authorize(t, pl, "alice")), now)
			wantKind(t, err, LoginNotFound)
		})
	}
}

func TestLoginNamesRecordAfterAccount(t *testing.T) {
	f := newLoginFixture(t, "login-names")
	now := f.now
	pl := f.start(t, LoginOptions{Provider: "claude"}, now)
	if _, _, err := f.pool.CompleteLogin(context.Background(), pl.ID, f.authorize(t, pl, "bob"), now); err != nil {
		t.Fatal(err)
	}
	// "/" in the address would make a sub-directory: it becomes "-".
	if doc := f.stored(t, "claude-bob-ops@example.com"); doc["email"] != "bob/ops@example.com" {
		t.Fatalf("record %v", doc)
	}

	pl = f.start(t, LoginOptions{Provider: "codex"}, now)
	rec, _, err := f.pool.CompleteLogin(context.Background(), pl.ID, f.authorize(t, pl, ""), now)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.stored(t, "codex-carol@example.com")
	if rec.ID != "codex-carol@example.com" || doc["type"] != "codex" || doc["account_id"] != "acct-carol" ||
		doc["id_token"] == nil || doc["id_token"] == "" {
		t.Fatalf("codex record %s: %v", rec.ID, doc)
	}
}

func TestReloginReplacesOnlyTokens(t *testing.T) {
	f := newLoginFixture(t, "login-relogin")
	now := f.now
	putRecord(t, f.store, "team/alice", `{"type":"claude","note":"kept","access_token":"old-access-token-1234","refresh_token":"dead",
		"expired":"2020-01-01T00:00:00Z","priority":5,"weight":3,"models":["claude-*"],"disabled":true,"base_url":"http://127.0.0.1:1","label":"Alice"}`)
	if _, err := f.pool.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	pl := f.start(t, LoginOptions{Provider: "claude", AuthID: "team/alice", Fields: []byte(`{"label":"Alice again"}`)}, now)
	rec, replaced, err := f.pool.CompleteLogin(context.Background(), pl.ID, f.authorize(t, pl, "alice"), now)
	if err != nil || !replaced {
		t.Fatalf("re-login: %v, replaced %v", err, replaced)
	}
	tok, _ := f.mock.OAuthTokens("alice")
	doc := f.stored(t, "team/alice")
	want := map[string]any{
		"type": "claude", "note": "kept", "access_token": tok.AccessToken, "refresh_token": tok.RefreshToken,
		"expired": oauth.FormatTime(tok.Expiry), "last_refresh": oauth.FormatTime(now), "priority": 5.0, "weight": 3.0,
		"models": []any{"claude-*"}, "disabled": true, "base_url": "http://127.0.0.1:1", "label": "Alice again",
		"email": "alice@example.com", "account_id": "acct-alice",
	}
	if fmt.Sprint(doc) != fmt.Sprint(want) {
		t.Fatalf("re-login record\n got %v\nwant %v", doc, want)
	}
	if c, _ := f.pool.Get("team/alice"); c.Auth() != rec || !rec.Disabled || rec.Priority != 5 {
		t.Fatal("pool does not hold the new record")
	}

	// A stub record without tokens (it does not parse, so it is not in
	// the pool) takes a login too.
	putRecord(t, f.store, "stub", `{"provider":"claude","base_url":"http://127.0.0.1:2","priority":2}`)
	pl = f.start(t, LoginOptions{Provider: "claude", AuthID: "stub"}, now)
	if _, replaced, err = f.pool.CompleteLogin(context.Background(), pl.ID, f.authorize(t, pl, "alice"), now); err != nil || !replaced {
		t.Fatalf("stub: %v, replaced %v", err, replaced)
	}
	if doc := f.stored(t, "stub"); doc["provider"] != "claude" || doc["type"] != nil || doc["priority"] != 2.0 || doc["access_token"] == nil {
		t.Fatalf("stub record %v", doc)
	}
}

func TestLoginRefusals(t *testing.T) {
	inline := &auth.Auth{ID: "claude-alice@example.com", Fields: auth.Fields{Provider: "claude", APIKey: "sk-ant-inline-123456"}, Inline: true}
	f := newLoginFixture(t, "login-refusals", inline)
	now := f.now
	ctx := context.Background()
	putRecord(t, f.store, "keyed", `{"provider":"claude","api_key":"sk-ant-stored-123456"}`)
	putRecord(t, f.store, "codexer", `{"type":"codex","access_token":"x-123456789012"}`)
	putRecord(t, f.store, "broken", `[1,2]`)

	for _, tc := range []struct {
		name string
		opts LoginOptions
		kind LoginErrorKind
	}{
		{"unknown provider", LoginOptions{Provider: "gemini"}, LoginInvalid},
		{"no provider", LoginOptions{}, LoginInvalid},
		{"bad id", LoginOptions{Provider: "claude", AuthID: "../x"}, LoginInvalid},
		{"inline id", LoginOptions{Provider: "claude", AuthID: "claude-alice@example.com"}, LoginConflict},
		{"API key record", LoginOptions{Provider: "claude", AuthID: "keyed"}, LoginConflict},
		{"other provider", LoginOptions{Provider: "claude", AuthID: "codexer"}, LoginConflict},
		{"not an object", LoginOptions{Provider: "claude", AuthID: "broken"}, LoginConflict},
		{"token field", LoginOptions{Provider: "claude", Fields: []byte(`{"refresh_token":"x"}`)}, LoginInvalid},
		{"provider field", LoginOptions{Provider: "claude", Fields: []byte(`{"type":"codex"}`)}, LoginInvalid},
		{"bad base_url", LoginOptions{Provider: "claude", Fields: []byte(`{"base_url":"ftp://x"}`)}, LoginInvalid},
		{"bad weight", LoginOptions{Provider: "claude", Fields: []byte(`{"weight":-1}`)}, LoginInvalid},
		{"fields not an object", LoginOptions{Provider: "claude", Fields: []byte(`"x"`)}, LoginInvalid},
	} {
		_, err := f.pool.StartLogin(ctx, tc.opts, now)
		if err == nil {
			t.Errorf("%s: started", tc.name)
			continue
		}
		var le *LoginError
		if !errors.As(err, &le) || le.Kind != tc.kind {
			t.Errorf("%s: %v, want kind %d", tc.name, err, tc.kind)
		}
	}

	// A state of another login is refused, and the login is used up.
	a := f.start(t, LoginOptions{Provider: "claude", AuthID: "a"}, now)
	b := f.start(t, LoginOptions{Provider: "claude", AuthID: "b"}, now)
	_, _, err := f.pool.CompleteLogin(ctx, a.ID, f.authorize(t, b, "alice"), now)
	wantKind(t, err, LoginInvalid)
	_, _, err = f.pool.CompleteLogin(ctx, a.ID, f.authorize(t, a, "alice"), now)
	wantKind(t, err, LoginNotFound)

	// Nothing like a code leaves the login pending.
	for _, junk := range []string{"", "  ", "http://localhost:54545/callback", "a b c"} {
		_, _, err = f.pool.CompleteLogin(ctx, b.ID, junk, now)
		wantKind(t, err, LoginInvalid)
	}
	// A code the provider does not know is refused and uses the login.
	_, _, err = f.pool.CompleteLogin(ctx, b.ID, "mock-code-unknown#"+stateOf(t, f.authorize(t, b, "alice")), now)
	wantKind(t, err, LoginInvalid)
	_, _, err = f.pool.CompleteLogin(ctx, b.ID, f.authorize(t, b, "alice"), now)
	wantKind(t, err, LoginNotFound)

	// Unknown IDs, IDs of another pool.
	other := newLoginFixture(t, "login-other")
	c := other.start(t, LoginOptions{Provider: "claude"}, now)
	_, _, err = f.pool.CompleteLogin(ctx, c.ID, other.authorize(t, c, "alice"), now)
	wantKind(t, err, LoginNotFound)
	_, _, err = f.pool.CompleteLogin(ctx, "nope", "code", now)
	wantKind(t, err, LoginNotFound)
	if _, ok := f.pool.Get("a"); ok {
		t.Fatal("a refused login wrote a credential")
	}

	// A login named after its account is refused when that name is
	// declared inline.
	d := f.start(t, LoginOptions{Provider: "claude"}, now)
	_, _, err = f.pool.CompleteLogin(ctx, d.ID, f.authorize(t, d, "alice"), now)
	wantKind(t, err, LoginConflict)
	if c, _ := f.pool.Get("claude-alice@example.com"); !c.Auth().Inline || c.Auth().APIKey != "sk-ant-inline-123456" {
		t.Fatal("inline credential changed")
	}
	if f.stored(t, "keyed")["api_key"] != "sk-ant-stored-123456" {
		t.Fatal("API-key record changed")
	}
}

func stateOf(t *testing.T, loc string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("state")
}

func TestPendingLoginsExpireAndAreBounded(t *testing.T) {
	f := newLoginFixture(t, "login-bounded")
	now := f.now
	ctx := context.Background()

	old := f.start(t, LoginOptions{Provider: "claude"}, now)
	loc := f.authorize(t, old, "alice")
	later := now.Add(oauth.LoginTTL + time.Second)
	_, _, err := f.pool.CompleteLogin(ctx, old.ID, loc, later)
	wantKind(t, err, LoginNotFound)
	if !old.Expires.Equal(now.Add(oauth.LoginTTL)) {
		t.Fatalf("expires %v", old.Expires)
	}

	var logins []PendingLogin
	for i := 0; i <= MaxPendingLogins; i++ {
		logins = append(logins, f.start(t, LoginOptions{Provider: "claude"}, now))
	}
	_, _, err = f.pool.CompleteLogin(ctx, logins[0].ID, f.authorize(t, logins[0], "alice"), now)
	wantKind(t, err, LoginNotFound)
	if f.pool.CancelLogin(logins[1].ID, now) != true || f.pool.CancelLogin(logins[1].ID, now) {
		t.Fatal("cancel")
	}
	_, _, err = f.pool.CompleteLogin(ctx, logins[1].ID, f.authorize(t, logins[1], "alice"), now)
	wantKind(t, err, LoginNotFound)
	last := logins[MaxPendingLogins]
	if _, _, err := f.pool.CompleteLogin(ctx, last.ID, f.authorize(t, last, "alice"), now); err != nil {
		t.Fatal(err)
	}
	f.pool.logins.mu.Lock()
	n := len(f.pool.logins.pending)
	f.pool.logins.mu.Unlock()
	if n != MaxPendingLogins-2 {
		t.Fatalf("%d logins pending", n)
	}
}

func TestLoginTokenEndpointDown(t *testing.T) {
	f := newLoginFixture(t, "login-down")
	now := f.now
	pl := f.start(t, LoginOptions{Provider: "claude"}, now)
	loc := f.authorize(t, pl, "alice")
	f.mock.SetOAuthFault("*", mockllm.OAuthFault{Status: http.StatusServiceUnavailable})
	_, _, err := f.pool.CompleteLogin(context.Background(), pl.ID, loc, now)
	wantKind(t, err, LoginUnavailable)
	if strings.Contains(err.Error(), stateOf(t, loc)) {
		t.Fatal("error shows the state")
	}
}

func TestLoginAuthID(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		tok  oauth.Token
		want string
	}{
		{oauth.Token{Email: "a.b+c@example.com", AccountID: "x"}, "claude-a.b+c@example.com"},
		{oauth.Token{AccountID: "acct-1"}, "claude-acct-1"},
		{oauth.Token{}, "claude-20300102T030405Z"},
		{oauth.Token{Email: "we ird/..x@ex.json"}, "claude-we-ird-.x@ex.json_"},
		{oauth.Token{Email: strings.Repeat("a", 300)}, "claude-" + strings.Repeat("a", 183)},
	} {
		got := LoginAuthID("claude", tc.tok, now)
		if got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.tok, got, tc.want)
		}
		if err := auth.ValidateID(got); err != nil {
			t.Errorf("%q: %v", got, err)
		}
	}
}
