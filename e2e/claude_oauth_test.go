//go:build unix

package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// oauthStats is one account's entry of GET /_mock/oauth/stats.
type oauthStats struct {
	Refreshes     int64 `json:"refreshes"`
	Rejected      int64 `json:"rejected"`
	ExpiredAccess int64 `json:"expired_access"`
}

func (m *mock) oauthStats(t *testing.T) map[string]oauthStats {
	t.Helper()
	resp, err := http.Get(m.URL + "/_mock/oauth/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]oauthStats{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode /_mock/oauth/stats: %v", err)
	}
	return out
}

// advanceOAuthClock moves the mock's token clock, expiring the access
// tokens it issued.
func (m *mock) advanceOAuthClock(t *testing.T, by string) {
	t.Helper()
	resp, err := http.Post(m.URL+"/_mock/oauth/advance", "application/json", strings.NewReader(`{"by":"`+by+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("advance the mock's OAuth clock: %d", resp.StatusCode)
	}
}

// TestClaudeCodeThroughRefreshedOAuthPool runs the real Claude Code CLI
// through a pool of two Claude subscription logins (OAuth access and refresh
// tokens from the mock's fake OAuth server). Caddy refreshes both at start
// (their expiry is unknown); then every access token expires mid-run and
// the next turn's 401 is absorbed by a refresh and a retry on the same
// credential: Claude Code never sees an error, and the conversation stays
// on its credential.
func TestClaudeCodeThroughRefreshedOAuthPool(t *testing.T) {
	claude := requireCLI(t, "claude", "CLAUDE_BIN")
	caddyBin, mockBin := binaries(t)
	m := startMock(t, mockBin, "-oauth", "max-1=claude:1h,max-2=claude:1h")
	pool := []auth{
		{id: "max-1", provider: "claude", key: "mock-at-max-1", refresh: "mock-rt-max-1"},
		{id: "max-2", provider: "claude", key: "mock-at-max-2", refresh: "mock-rt-max-2"},
	}
	c := startCaddy(t, caddyBin, m, pool, "oauth claude {\n\ttoken_url "+m.URL+"/v1/oauth/token\n}")
	home := newHome(t)
	work := home + "/work"
	mkdir(t, work)
	env := claudeEnv(home, c.URL, clientKey)
	session := newUUID(t)

	run := func(label string, args ...string) {
		t.Helper()
		res := runCLI(t, label, env, work, claude, args...)
		if res.err != nil {
			t.Fatalf("claude %v failed: %v\nstdout: %s", args, res.err, res.stdout)
		}
		if !strings.Contains(res.stdout, mockReplyText) {
			t.Fatalf("claude %v output %q does not contain the mock reply", args, res.stdout)
		}
	}

	run("claude-oauth-1", "-p", "--session-id", session, "first turn")
	before := m.oauthStats(t)
	for _, acct := range []string{"max-1", "max-2"} {
		if before[acct].Refreshes < 1 {
			t.Fatalf("account %s was not refreshed at start: %+v", acct, before)
		}
	}

	// Every access token the mock issued expires now; Caddy still thinks
	// they are good for about an hour, so the next turn meets a 401.
	m.advanceOAuthClock(t, "2h")
	run("claude-oauth-2", "-p", "--resume", session, "second turn")
	run("claude-oauth-3", "-p", "--resume", session, "third turn")

	after := m.oauthStats(t)
	var expired, refreshedMidRun int64
	for _, acct := range []string{"max-1", "max-2"} {
		expired += after[acct].ExpiredAccess
		refreshedMidRun += after[acct].Refreshes - before[acct].Refreshes
		if after[acct].Rejected != 0 {
			t.Errorf("account %s: %d refresh grants rejected (a spent refresh token was sent)", acct, after[acct].Rejected)
		}
	}
	if expired == 0 || refreshedMidRun == 0 {
		t.Fatalf("no 401 was absorbed by a refresh mid-run: expired access %d, refreshes %d (%+v)", expired, refreshedMidRun, after)
	}

	reqs := m.requests(t)
	logRequests(t, reqs)
	assertNoClientKey(t, reqs)
	creds := map[string]bool{}
	for i, r := range reqs {
		if !isMessages(r) || sessionOf(r) != session {
			continue
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") || !strings.Contains(r.Header.Get("Anthropic-Beta"), "oauth-2025-04-20") {
			t.Errorf("upstream #%d was not sent as an OAuth credential: %v", i, r.Header)
		}
		if r.Credential == "max-1" || r.Credential == "max-2" {
			creds[r.Credential] = true
		}
	}
	if len(creds) != 1 {
		t.Errorf("the session's turns were served by %v; want one OAuth credential throughout", creds)
	}
}
