package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// refreshStart is the fake time refresh tests begin at.
var refreshStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// refreshEnv is a fake clock shared by llm_proxy and the mock's fake
// OAuth server, the mock on real HTTP, the refresh loops' timers under the
// test's control, and the pools' logs.
type refreshEnv struct {
	t      *testing.T
	clock  *clock.Fake
	mock   *mockllm.Server
	url    string
	timers *fakeRefreshTimers
	logger *zap.Logger
	logs   *observer.ObservedLogs
}

func newRefreshEnv(t *testing.T, accounts map[string]mockllm.OAuthAccount) *refreshEnv {
	t.Helper()
	e := &refreshEnv{t: t, clock: clock.NewFake(refreshStart)}
	t.Cleanup(clock.Install(e.clock.Now))
	e.mock = mockllm.New(mockllm.Options{OAuthAccounts: accounts, Now: e.clock.Now})
	srv := httptest.NewServer(e.mock)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.timers = useFakeRefreshTimers(t)
	core, logs := observer.New(zapcore.DebugLevel)
	e.logger, e.logs = zap.New(core), logs
	return e
}

// settings are OAuth settings pointing at the mock, with lead.
func (e *refreshEnv) settings(lead time.Duration) map[string]oauth.Settings {
	claude, codex := oauth.ClaudeDefaults(), oauth.CodexDefaults()
	claude.TokenURL, codex.TokenURL = e.url+"/v1/oauth/token", e.url+"/oauth/token"
	return map[string]oauth.Settings{"claude": {Endpoints: claude, RefreshLead: lead}, "codex": {Endpoints: codex, RefreshLead: lead}}
}

func (e *refreshEnv) stats(label string) mockllm.OAuthStats { return e.mock.OAuthStats()[label] }

func (e *refreshEnv) latest(label string) mockllm.OAuthTokens {
	tok, ok := e.mock.OAuthTokens(label)
	if !ok {
		e.t.Fatalf("no mock account %s", label)
	}
	return tok
}

// fakeRefreshTimers replaces the refresh loops' timers: every loop fires
// on one channel the test drives, and the waits asked for are noted.
type fakeRefreshTimers struct {
	fire  chan time.Time
	mu    sync.Mutex
	waits []time.Duration
}

func useFakeRefreshTimers(t *testing.T) *fakeRefreshTimers {
	f := &fakeRefreshTimers{fire: make(chan time.Time)}
	prev := newRefreshTimer
	newRefreshTimer = func(d time.Duration) (<-chan time.Time, func() bool) {
		f.mu.Lock()
		f.waits = append(f.waits, d)
		f.mu.Unlock()
		return f.fire, func() bool { return true }
	}
	t.Cleanup(func() { newRefreshTimer = prev })
	return f
}

// armed returns the number of timers asked for and the last wait.
func (f *fakeRefreshTimers) armed() (int, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waits) == 0 {
		return 0, 0
	}
	return len(f.waits), f.waits[len(f.waits)-1]
}

// waitFor waits until cond holds: the refreshes run on their own
// goroutines. It asserts nothing about how long that takes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// oauthRecord is a stored Claude login file of the mock account label,
// expiring at exp, with a field llm_proxy does not know.
func oauthRecord(label string, exp time.Time) string {
	return fmt.Sprintf(`{"type":"claude","note":{"kept":true},"access_token":"mock-at-%s","refresh_token":"mock-rt-%s","expired":%q,"email":"%s@example.com"}`,
		label, label, oauth.FormatTime(exp), label)
}

func credOf(t *testing.T, p *Pool, id string) *Credential {
	t.Helper()
	c, ok := p.Get(id)
	if !ok {
		t.Fatalf("no credential %s in pool %s", id, p.Name())
	}
	return c
}

func readDoc(t *testing.T, st *certmagic.FileStorage, key string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(st.Path, filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v: %s", key, err, b)
	}
	return m
}

func TestRefreshDue(t *testing.T) {
	at := func(h float64) string {
		return oauth.FormatTime(refreshStart.Add(time.Duration(h * float64(time.Hour))))
	}
	for _, tc := range []struct {
		name, expired, last string
		want                time.Time // zero: due at once
	}{
		{"expiry known: lead before it", at(10), "", refreshStart.Add(6 * time.Hour)},
		{"expiry and last refresh: lead before expiry", at(10), at(2), refreshStart.Add(6 * time.Hour)},
		{"token lives shorter than the lead: halfway", at(3), at(1), refreshStart.Add(2 * time.Hour)},
		{"no expiry: lead after the last refresh", "", at(1), refreshStart.Add(5 * time.Hour)},
		{"malformed expiry counts as none", "tomorrow", at(1), refreshStart.Add(5 * time.Hour)},
		{"neither: at once", "", "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &auth.Auth{Expired: tc.expired, LastRefresh: tc.last}
			if got := refreshDue(a, 4*time.Hour); !got.Equal(tc.want) {
				t.Fatalf("due %v, want %v", got, tc.want)
			}
		})
	}
}

// A stored record is refreshed refresh_lead before it expires, the loop
// sleeping until then: the rotated tokens, expired and last_refresh are
// written back with every other field kept in its place.
func TestStoredRecordRefreshedAheadOfExpiry(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}})
	store, bs := newStore(t)
	due := refreshStart.Add(4*time.Hour + 2*time.Minute)
	putRecord(t, store, "alice", oauthRecord("alice", due))
	a := attach(t, "refresh-ahead", Config{Owner: "A", Store: store, Logger: e.logger, OAuth: e.settings(4 * time.Hour)})
	p := a.Pool()
	a.Serve()

	// Not due yet: the loop sleeps until it is.
	waitFor(t, "the refresh loop to sleep", func() bool { n, _ := e.timers.armed(); return n == 1 })
	if _, wait := e.timers.armed(); wait != 2*time.Minute {
		t.Fatalf("loop sleeps %v, want 2m until the record is due", wait)
	}
	if s := e.stats("alice"); s.Refreshes != 0 {
		t.Fatalf("refreshed before due: %+v", s)
	}

	e.clock.Advance(2 * time.Minute)
	e.timers.fire <- time.Time{}
	waitFor(t, "the refresh", func() bool { return credOf(t, p, "alice").RefreshStatus().Counts[RefreshRefreshed] == 1 })
	tok := e.latest("alice")
	if tok.RefreshToken == "mock-rt-alice" || e.stats("alice").Refreshes != 1 {
		t.Fatalf("refresh token not rotated: %+v, %+v", tok, e.stats("alice"))
	}
	doc := readDoc(t, bs.FileStorage, store.Key("alice"))
	want := map[string]any{
		"type": "claude", "note": map[string]any{"kept": true}, "access_token": tok.AccessToken, "refresh_token": tok.RefreshToken,
		"expired": oauth.FormatTime(tok.Expiry), "email": "alice@example.com", "account_id": "acct-alice",
		"last_refresh": oauth.FormatTime(e.clock.Now()),
	}
	if fmt.Sprint(doc) != fmt.Sprint(want) {
		t.Fatalf("stored record\n%v\nwant\n%v", doc, want)
	}
	if !tok.Expiry.Equal(e.clock.Now().Add(mockllm.DefaultClaudeTokenLifetime)) {
		t.Fatalf("mock issued a token expiring %v", tok.Expiry)
	}
	data, _ := os.ReadFile(filepath.Join(bs.Path, filepath.FromSlash(store.Key("alice"))))
	if got := fieldOrder(t, data); strings.Join(got, ",") != "type,note,access_token,refresh_token,expired,email,account_id,last_refresh" {
		t.Fatalf("field order %v", got)
	}
	if rec := credOf(t, p, "alice").Auth(); rec.AccessToken != tok.AccessToken || rec.RefreshToken != tok.RefreshToken {
		t.Fatal("the pool does not serve the refreshed token")
	}
	// The next refresh is hours away: the loop sleeps its longest. (It
	// slept once while the refresh ran, and again when it ended.)
	waitFor(t, "the loop to sleep again", func() bool { n, _ := e.timers.armed(); return n >= 3 })
	if _, wait := e.timers.armed(); wait != refreshSafetyTick {
		t.Fatalf("loop sleeps %v after the refresh, want %v", wait, refreshSafetyTick)
	}
}

func fieldOrder(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for dec.More() {
		k, _ := dec.Token()
		names = append(names, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// Three instances (pools with their own storage handles, as three Caddy
// processes have) on one storage refresh a due record once: the others
// take the lock after it, re-read the record and take its tokens over.
func TestInstancesOnOneStorageRefreshOnce(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}, "bob": {Provider: mockllm.OAuthClaude}})
	dir := t.TempDir()
	var pools []*Pool
	var atts []*Attachment
	for i := range 3 {
		store := auth.NewCaddyStore(&certmagic.FileStorage{Path: dir}, "llm_proxy/shared/auths")
		if i == 0 {
			for _, label := range []string{"alice", "bob"} {
				putRecord(t, store, label, oauthRecord(label, refreshStart.Add(time.Hour)))
			}
		}
		a := attach(t, fmt.Sprintf("refresh-once-%d", i), Config{Owner: i, Store: store, Logger: e.logger, OAuth: e.settings(4 * time.Hour)})
		atts = append(atts, a)
		pools = append(pools, a.Pool())
	}
	for _, a := range atts {
		a.Serve()
	}
	for _, label := range []string{"alice", "bob"} {
		waitFor(t, label+" settled everywhere", func() bool {
			outcomes := 0
			for _, p := range pools {
				counts := credOf(t, p, label).RefreshStatus().Counts
				outcomes += int(counts[RefreshRefreshed] + counts[RefreshAdopted])
			}
			return outcomes == len(pools)
		})
		refreshed := 0
		tok := e.latest(label)
		for _, p := range pools {
			c := credOf(t, p, label)
			refreshed += int(c.RefreshStatus().Counts[RefreshRefreshed])
			if c.Auth().RefreshToken != tok.RefreshToken {
				t.Errorf("%s: %s holds another refresh token than the latest", p.Name(), label)
			}
		}
		if s := e.stats(label); s.Refreshes != 1 || s.Rejected != 0 || refreshed != 1 {
			t.Fatalf("%s: mock %+v, %d instances refreshed; want exactly one refresh", label, s, refreshed)
		}
	}
}

// A 401 asks for a refresh: concurrent requests share one, a request that
// comes after it is served with its token at once, and storage is
// re-read so a token another instance stored is taken over.
func TestRefreshRejected(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}})
	store, _ := newStore(t)
	putRecord(t, store, "alice", oauthRecord("alice", refreshStart.Add(10*time.Hour)))
	putRecord(t, store, "key", `{"provider":"claude","api_key":"sk-ant-key-0123456789"}`)
	a := attach(t, "refresh-rejected", Config{Owner: "A", Store: store, Logger: e.logger, OAuth: e.settings(4 * time.Hour)})
	p := a.Pool()
	c := credOf(t, p, "alice")
	rejected := c.Auth()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- p.RefreshRejected(context.Background(), c, rejected) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := e.stats("alice"); s.Refreshes != 1 {
		t.Fatalf("%d refreshes for 8 concurrent 401s, want 1", s.Refreshes)
	}
	if c.Auth().AccessToken != e.latest("alice").AccessToken {
		t.Fatal("the credential does not hold the new token")
	}
	// A late 401 for the old token: already replaced, nothing fetched.
	if err := p.RefreshRejected(context.Background(), c, rejected); err != nil || e.stats("alice").Refreshes != 1 {
		t.Fatalf("late 401: %v, %+v", err, e.stats("alice"))
	}

	// Another instance refreshed and stored new tokens: a 401 for the
	// token this instance holds takes them over without a refresh.
	other := auth.NewCaddyStore(store.Storage, store.Prefix)
	if _, _, err := other.Update(context.Background(), "alice", func(cur *auth.Auth) (*auth.Auth, error) {
		next := cur.Clone()
		tok, err := oauth.Refresh(context.Background(), nil, e.settings(0)["claude"].Endpoints, cur.RefreshToken, e.clock.Now())
		next.ApplyToken(tok, e.clock.Now())
		return next, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.RefreshRejected(context.Background(), c, c.Auth()); err != nil {
		t.Fatal(err)
	}
	if s := e.stats("alice"); s.Refreshes != 2 || s.Rejected != 0 || c.Auth().AccessToken != e.latest("alice").AccessToken {
		t.Fatalf("mock %+v; the stored token was not taken over", s)
	}
	if n := c.RefreshStatus().Counts[RefreshAdopted]; n != 1 {
		t.Fatalf("adopted %d, want 1", n)
	}

	if err := p.RefreshRejected(context.Background(), credOf(t, p, "key"), credOf(t, p, "key").Auth()); !errors.Is(err, ErrNotRefreshable) {
		t.Fatalf("API key credential: %v, want ErrNotRefreshable", err)
	}
}

// noSecrets fails when a log line carries a token of the mock.
func noSecrets(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, entry := range logs.All() {
		line := entry.Message + fmt.Sprint(entry.ContextMap())
		if strings.Contains(line, "mock-rt-") || strings.Contains(line, "mock-at-") || strings.Contains(line, "mock-oauth-") {
			t.Fatalf("a log line carries a token: %s", line)
		}
	}
}

// A refresh token refused for good takes the credential out of rotation
// (needs_login) with one ERROR line and no further token requests, until
// its record gets another refresh token.
func TestNeedsLogin(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}, "bob": {Provider: mockllm.OAuthClaude}})
	e.mock.RevokeOAuth("alice")
	store, _ := newStore(t)
	putRecord(t, store, "alice", oauthRecord("alice", refreshStart.Add(time.Hour)))
	putRecord(t, store, "bob", oauthRecord("bob", refreshStart.Add(10*time.Hour)))
	a := attach(t, "refresh-needs-login", Config{Owner: "A", Store: store, Logger: e.logger, OAuth: e.settings(4 * time.Hour)})
	p := a.Pool()
	a.Serve()
	c := credOf(t, p, "alice")
	waitFor(t, "needs_login", c.NeedsLogin)

	now := e.clock.Now()
	if c.Available("m", now) || c.State(now) != StateNeedsLogin || credOf(t, p, "bob").State(now) != StateServing {
		t.Fatalf("alice available %v in state %s", c.Available("m", now), c.State(now))
	}
	if total, enabled, available := p.Availability(now); total != 2 || enabled != 2 || available != 1 {
		t.Fatalf("availability %d/%d/%d, want 2/2/1", total, enabled, available)
	}
	st := c.RefreshStatus()
	if !st.NeedsLogin || !strings.Contains(st.LastError, "invalid_grant") || st.Counts[RefreshNeedsLogin] != 1 {
		t.Fatalf("status %+v", st)
	}
	if err := p.RefreshRejected(context.Background(), c, c.Auth()); !errors.Is(err, ErrNeedsLogin) {
		t.Fatalf("RefreshRejected: %v, want ErrNeedsLogin", err)
	}
	// The loop looks again and again; the dead token is not sent again.
	for range 3 {
		e.clock.Advance(time.Hour)
		e.timers.fire <- time.Time{}
	}
	waitFor(t, "the loop to sleep", func() bool { n, _ := e.timers.armed(); return n >= 4 })
	if s := e.stats("alice"); s.Rejected != 1 {
		t.Fatalf("the dead refresh token was sent %d times", s.Rejected)
	}
	errorsLogged := e.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errorsLogged) != 1 {
		t.Fatalf("%d ERROR lines, want 1: %v", len(errorsLogged), errorsLogged)
	}
	if f := errorsLogged[0].ContextMap(); f["pool"] != "refresh-needs-login" || f["auth"] != "alice" {
		t.Fatalf("ERROR line does not name the pool and credential: %v", f)
	}
	noSecrets(t, e.logs)

	// A new login writes another refresh token: back in rotation.
	rec := c.Auth().Clone()
	rec.RefreshToken, rec.Expired = "rt-from-a-new-login", oauth.FormatTime(now.Add(10*time.Hour))
	if err := p.Save(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if c.NeedsLogin() || !c.Available("m", e.clock.Now()) || c.RefreshStatus().LastError != "" {
		t.Fatalf("still needs login after a new refresh token: %+v", c.RefreshStatus())
	}
}

// A token endpoint that fails for a while is retried with backoff (30s
// doubling, or its Retry-After), one WARN per streak, the credential
// serving all along; the next success ends the streak.
func TestTemporaryRefreshFailures(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}})
	e.mock.SetOAuthFault("alice", mockllm.OAuthFault{Status: 503})
	store, _ := newStore(t)
	putRecord(t, store, "alice", oauthRecord("alice", refreshStart.Add(time.Hour)))
	a := attach(t, "refresh-backoff", Config{Owner: "A", Store: store, Logger: e.logger, OAuth: e.settings(4 * time.Hour)})
	p := a.Pool()
	a.Serve()
	c := credOf(t, p, "alice")

	failures := func(n uint64) func() bool {
		return func() bool { return c.RefreshStatus().Counts[RefreshFailed] == n }
	}
	armed := func() int { n, _ := e.timers.armed(); return n }
	waitFor(t, "the first failure", failures(1))
	waitFor(t, "the loop to sleep", func() bool { return armed() >= 2 })
	steps := []struct {
		retryIn time.Duration // from the failure
		fault   mockllm.OAuthFault
	}{
		{30 * time.Second, mockllm.OAuthFault{Status: 503}},
		{time.Minute, mockllm.OAuthFault{Status: 429, RetryAfter: 5 * time.Minute}},
		{5 * time.Minute, mockllm.OAuthFault{}},
	}
	for i, step := range steps {
		st := c.RefreshStatus()
		if st.Failures != i+1 || !st.RetryAt.Equal(e.clock.Now().Add(step.retryIn)) || !c.Available("m", e.clock.Now()) {
			t.Fatalf("failure %d: %+v; want a retry in %v and the credential serving", i+1, st, step.retryIn)
		}
		if _, wait := e.timers.armed(); wait != step.retryIn {
			t.Fatalf("failure %d: loop sleeps %v, want %v", i+1, wait, step.retryIn)
		}
		// While backing off, a 401 gets the failure without a request.
		faults := e.stats("alice").Faults
		if err := p.RefreshRejected(context.Background(), c, c.Auth()); err == nil || e.stats("alice").Faults != faults {
			t.Fatalf("RefreshRejected during backoff: %v, %d token requests", err, e.stats("alice").Faults-faults)
		}
		if step.fault.Status == 0 {
			e.mock.ClearOAuthFaults("")
		} else {
			e.mock.SetOAuthFault("alice", step.fault)
		}
		n := armed()
		e.clock.Advance(step.retryIn)
		e.timers.fire <- time.Time{}
		if i < len(steps)-1 {
			waitFor(t, "the next failure", failures(uint64(i+2)))
		} else {
			waitFor(t, "the refresh", func() bool { return c.RefreshStatus().Counts[RefreshRefreshed] == 1 })
		}
		// The loop sleeps while the refresh runs, and again after it.
		waitFor(t, "the loop to sleep", func() bool { return armed() >= n+2 })
	}
	if st := c.RefreshStatus(); st.Failures != 0 || st.LastError != "" || !st.RetryAt.IsZero() {
		t.Fatalf("streak not ended: %+v", st)
	}
	if warns := e.logs.FilterLevelExact(zapcore.WarnLevel).All(); len(warns) != 1 {
		t.Fatalf("%d WARN lines for one streak, want 1: %v", len(warns), warns)
	}
	if e.logs.FilterMessage("OAuth token refresh works again").Len() != 1 {
		t.Fatal("the end of the streak is not logged")
	}
	noSecrets(t, e.logs)
}

// An inline credential keeps its refreshed tokens in the config's storage,
// beside the records and never under storage_prefix; a restart takes them
// from there instead of the config's spent refresh token, until the
// config declares another refresh token.
func TestInlineTokensPersisted(t *testing.T) {
	for _, tc := range []struct {
		prefix, tokens string
	}{
		{"llm_proxy/refresh-inline/auths", "llm_proxy/refresh-inline/oauth/bob.json"},
		{"llm_proxy/refresh-inline", "llm_proxy/refresh-inline.oauth/bob.json"},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"bob": {Provider: mockllm.OAuthCodex}})
			fs := &certmagic.FileStorage{Path: t.TempDir()}
			store := auth.NewCaddyStore(fs, tc.prefix)
			inline := func(rt string) []*auth.Auth {
				a := &auth.Auth{ID: "bob", Inline: true, RefreshToken: rt}
				a.Provider, a.AccessToken = "codex", "mock-at-bob"
				return []*auth.Auth{a}
			}
			cfg := Config{Owner: 1, Store: store, Inline: inline("mock-rt-bob"), Logger: e.logger, OAuth: e.settings(24 * time.Hour)}
			a := attach(t, "refresh-inline", cfg)
			a.Serve() // no expiry known: refreshed at once
			c := credOf(t, a.Pool(), "bob")
			waitFor(t, "the refresh", func() bool { return c.RefreshStatus().Counts[RefreshRefreshed] == 1 })
			tok := e.latest("bob")
			doc := readDoc(t, fs, tc.tokens)
			if doc["access_token"] != tok.AccessToken || doc["refresh_token"] != tok.RefreshToken ||
				doc["config_refresh_token_sha256"] != configToken("mock-rt-bob") || doc["expired"] != oauth.FormatTime(tok.Expiry) {
				t.Fatalf("tokens document %v", doc)
			}
			if rescan, err := a.Pool().Rescan(context.Background()); err != nil || len(rescan.Skipped) != 0 {
				t.Fatalf("the tokens document shows up among the records: %+v, %v", rescan, err)
			}

			// Restart: the config still says mock-rt-bob, which is spent.
			a.Detach()
			cfg.Owner = 2
			b := attach(t, "refresh-inline", cfg)
			rec := credOf(t, b.Pool(), "bob").Auth()
			if rec.RefreshToken != tok.RefreshToken || rec.AccessToken != tok.AccessToken || !rec.Inline {
				t.Fatal("a restart fell back to the config's spent tokens")
			}
			b.Serve()
			// A refresh would have started before the loop slept.
			waitFor(t, "the loop to sleep", func() bool { n, _ := e.timers.armed(); return n >= 3 })
			c = credOf(t, b.Pool(), "bob")
			c.oauth.mu.Lock()
			inFlight := c.oauth.flight != nil
			c.oauth.mu.Unlock()
			if s := e.stats("bob"); inFlight || s.Refreshes != 1 || s.Rejected != 0 {
				t.Fatalf("mock %+v after the restart (a refresh in flight: %v)", s, inFlight)
			}

			// The user logged in again and put the new refresh token into
			// the config: the config wins.
			b.Detach()
			cfg.Owner, cfg.Inline = 3, inline("rt-of-a-new-login")
			if rec := credOf(t, attach(t, "refresh-inline", cfg).Pool(), "bob").Auth(); rec.RefreshToken != "rt-of-a-new-login" {
				t.Fatal("tokens kept for the config's old refresh token override its new one")
			}
			noSecrets(t, e.logs)
		})
	}
}

// The token endpoint is reached through the client the config gives for
// the credential (the one that honours its proxy_url).
func TestRefreshUsesCredentialClient(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}})
	store, _ := newStore(t)
	putRecord(t, store, "alice", strings.Replace(oauthRecord("alice", refreshStart), `"note"`, `"proxy_url":"http://proxy.test:3128","note"`, 1))
	var mu sync.Mutex
	var asked []string
	cfg := Config{Owner: "A", Store: store, Logger: e.logger, OAuth: e.settings(time.Hour),
		Client: func(a *auth.Auth) *http.Client {
			mu.Lock()
			asked = append(asked, a.ID+" via "+a.ProxyURL)
			mu.Unlock()
			return http.DefaultClient
		}}
	a := attach(t, "refresh-client", cfg)
	a.Serve()
	waitFor(t, "the refresh", func() bool { return credOf(t, a.Pool(), "alice").RefreshStatus().Counts[RefreshRefreshed] == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 1 || asked[0] != "alice via http://proxy.test:3128" {
		t.Fatalf("clients asked for %v", asked)
	}
}

// A change made on the pool's copy of a record (the admin API's PATCH)
// while storage holds newer tokens (a refresh here or in another instance)
// keeps storage's tokens: a spent refresh token is never written back. A
// record with tokens of its own (a new login) replaces them.
func TestSaveKeepsTokensRefreshedMeanwhile(t *testing.T) {
	store, bs := newStore(t)
	putRecord(t, store, "alice", `{"type":"claude","access_token":"at-0","refresh_token":"rt-0","expired":"2030-01-01T00:00:00Z"}`)
	a := attach(t, "refresh-save", Config{Owner: "A", Store: store})
	p := a.Pool()
	patched := credOf(t, p, "alice").Auth().Clone()
	patched.Disabled = true

	putRecord(t, store, "alice", `{"type":"claude","access_token":"at-1","refresh_token":"rt-1","expired":"2030-01-01T08:00:00Z","last_refresh":"2030-01-01T00:00:00Z"}`)
	if err := p.Save(context.Background(), patched); err != nil {
		t.Fatal(err)
	}
	doc := readDoc(t, bs.FileStorage, store.Key("alice"))
	if doc["refresh_token"] != "rt-1" || doc["access_token"] != "at-1" || doc["expired"] != "2030-01-01T08:00:00Z" || doc["disabled"] != true {
		t.Fatalf("stored %v; want the refreshed tokens and the change", doc)
	}
	if rec := credOf(t, p, "alice").Auth(); rec.RefreshToken != "rt-1" || !rec.Disabled {
		t.Fatalf("pool holds %+v", rec)
	}

	login := credOf(t, p, "alice").Auth().Clone()
	login.AccessToken, login.RefreshToken = "at-login", "rt-login"
	if err := p.Save(context.Background(), login); err != nil {
		t.Fatal(err)
	}
	if doc := readDoc(t, bs.FileStorage, store.Key("alice")); doc["refresh_token"] != "rt-login" || doc["access_token"] != "at-login" {
		t.Fatalf("a new login's tokens were not written: %v", doc)
	}
}
