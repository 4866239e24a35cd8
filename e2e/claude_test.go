//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// mockReplyText is part of every mock reply ("Hello! This is a mock reply
// from <model>.").
const mockReplyText = "This is a mock reply from"

var claudePool = []auth{
	{id: "c1", provider: "claude", key: "sk-ant-one"},
	{id: "c2", provider: "claude", key: "sk-ant-two"},
	{id: "c3", provider: "claude", key: "sk-ant-three"},
}

var claudeLabels = map[string]bool{"claude-1": true, "claude-2": true, "claude-3": true}

// claudeEnv is the environment for `claude -p` against Caddy: a throwaway
// HOME, the client key, and no traffic beyond ANTHROPIC_BASE_URL.
func claudeEnv(home, baseURL, key string) []string {
	return append(baseEnv(home),
		"ANTHROPIC_BASE_URL="+baseURL,
		"ANTHROPIC_API_KEY="+key,
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_AUTOUPDATER=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_ERROR_REPORTING=1",
		"CLAUDE_CODE_MAX_RETRIES=1",
		"API_TIMEOUT_MS=30000",
	)
}

// claudeSession returns the Claude Code session of a recorded request: the
// X-Claude-Code-Session-Id header and the session_id inside the JSON text of
// body metadata.user_id.
func claudeSession(r mockRequest) (header, metadata string) {
	header = r.Header.Get("X-Claude-Code-Session-Id")
	var body struct {
		Metadata struct {
			UserID string `json:"user_id"`
		} `json:"metadata"`
	}
	if json.Unmarshal([]byte(r.Body), &body) == nil && body.Metadata.UserID != "" {
		var uid struct {
			SessionID string `json:"session_id"`
		}
		if json.Unmarshal([]byte(body.Metadata.UserID), &uid) == nil {
			metadata = uid.SessionID
		}
	}
	return header, metadata
}

func sessionOf(r mockRequest) string {
	h, m := claudeSession(r)
	if h != "" {
		return h
	}
	return m
}

func isMessages(r mockRequest) bool {
	return r.Path == "/v1/messages" || strings.HasPrefix(r.Path, "/v1/messages/")
}

func logRequests(t *testing.T, reqs []mockRequest) {
	t.Helper()
	for i, r := range reqs {
		t.Logf("upstream #%d: %s", i, describe(r, sessionOf(r)))
	}
}

func TestClaudeCodeThroughPool(t *testing.T) {
	claude := requireCLI(t, "claude", "CLAUDE_BIN")
	m, c, home, work := rig(t, claudePool)

	res := runCLI(t, "claude", claudeEnv(home, c.URL, clientKey), work, claude, "-p", "say hi")
	if res.err != nil {
		t.Fatalf("claude -p failed: %v", res.err)
	}
	if !strings.Contains(res.stdout, mockReplyText) {
		t.Errorf("claude output %q does not contain the mock reply %q", res.stdout, mockReplyText)
	}

	reqs := m.requests(t)
	logRequests(t, reqs)
	messages := 0
	for i, r := range reqs {
		if !isMessages(r) {
			t.Errorf("upstream #%d: unexpected path %s %s", i, r.Method, r.Path)
			continue
		}
		messages++
		if !claudeLabels[r.Credential] {
			t.Errorf("upstream #%d %s was served by %q, not a pool credential", i, r.Path, r.Credential)
		}
	}
	if messages == 0 {
		t.Fatal("the mock saw no /v1/messages request")
	}
	assertNoClientKey(t, reqs)
	assertUsageMatchesMock(t, c, m, len(reqs), map[string]string{"c1": "claude-1", "c2": "claude-2", "c3": "claude-3"})

	// A wrong client key is refused by Caddy and never reaches the upstream.
	res = runCLI(t, "claude-wrong-key", claudeEnv(home, c.URL, "not-a-client-key"), work, claude, "-p", "say hi")
	if res.err == nil {
		t.Errorf("claude with a wrong client key succeeded: %q", res.stdout)
	}
	if n := len(m.requests(t)); n != len(reqs) {
		t.Errorf("a request with a wrong client key reached the upstream (%d recorded, want %d)", n, len(reqs))
	}
}

func TestClaudeCodeSessionStaysOnOneCredential(t *testing.T) {
	claude := requireCLI(t, "claude", "CLAUDE_BIN")
	m, c, home, work := rig(t, claudePool)
	env := claudeEnv(home, c.URL, clientKey)
	session := newUUID(t)

	// Turn 1 of the session, an unrelated conversation in between (it moves
	// round robin on, so without affinity the next turns land elsewhere),
	// then turns 2 and 3 of the session.
	steps := [][]string{
		{"-p", "--session-id", session, "first turn"},
		{"-p", "an unrelated conversation"},
		{"-p", "--resume", session, "second turn"},
		{"-p", "--resume", session, "third turn"},
	}
	for i, args := range steps {
		res := runCLI(t, "claude-step-"+string(rune('1'+i)), env, work, claude, args...)
		if res.err != nil {
			t.Fatalf("claude %v failed: %v", args, res.err)
		}
		if !strings.Contains(res.stdout, mockReplyText) {
			t.Errorf("claude %v output %q does not contain the mock reply", args, res.stdout)
		}
	}

	reqs := m.requests(t)
	logRequests(t, reqs)
	assertNoClientKey(t, reqs)

	var sessionReqs []mockRequest
	others := map[string]bool{}
	for i, r := range reqs {
		if !isMessages(r) {
			continue
		}
		if !claudeLabels[r.Credential] {
			t.Errorf("upstream #%d %s was served by %q, not a pool credential", i, r.Path, r.Credential)
		}
		h, md := claudeSession(r)
		if h != "" && md != "" && h != md {
			t.Errorf("upstream #%d: X-Claude-Code-Session-Id %q differs from metadata.user_id session_id %q", i, h, md)
		}
		switch s := sessionOf(r); s {
		case session:
			sessionReqs = append(sessionReqs, r)
		case "":
		default:
			others[s] = true
		}
	}
	if len(others) == 0 {
		t.Errorf("the unrelated conversation sent no request with its own session ID")
	}

	// Every turn of the session reached the upstream, resumed turns with
	// the earlier turns as history.
	for _, turn := range []struct{ prompt, history string }{
		{"first turn", ""},
		{"second turn", "first turn"},
		{"third turn", "second turn"},
	} {
		found := false
		for _, r := range sessionReqs {
			if strings.Contains(r.Body, turn.prompt) && strings.Contains(r.Body, turn.history) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no upstream request of session %s carries %q (with history %q)", session, turn.prompt, turn.history)
		}
	}

	creds := map[string]int{}
	for _, r := range sessionReqs {
		creds[r.Credential]++
	}
	if len(creds) != 1 {
		t.Errorf("session %s was served by %d credentials, want 1: %v", session, len(creds), creds)
	}
	t.Logf("session %s: %d upstream requests, credentials %v", session, len(sessionReqs), creds)
}

// TestClaudeCodeSessionsSurviveCaddyRestart: three Claude Code sessions
// start on the three credentials, Caddy is restarted (SIGTERM, started
// again as the same instance), and each resumed session is served by the
// credential of its first turn, from the state Caddy saved at shutdown
// (SPEC 14). The sessions are resumed in another order than they started,
// so a fresh round robin would not put them back by chance.
func TestClaudeCodeSessionsSurviveCaddyRestart(t *testing.T) {
	claude := requireCLI(t, "claude", "CLAUDE_BIN")
	m, c, home, work := rig(t, claudePool)
	env := claudeEnv(home, c.URL, clientKey)
	sessions := []string{newUUID(t), newUUID(t), newUUID(t)}
	for i, s := range sessions {
		if res := runCLI(t, fmt.Sprintf("claude-start-%d", i+1), env, work, claude, "-p", "--session-id", s, "first turn"); res.err != nil {
			t.Fatalf("claude --session-id failed: %v", res.err)
		}
	}
	before := credentialsBySession(t, m.requests(t))
	c.restart(t)
	for _, i := range []int{2, 0, 1} {
		if res := runCLI(t, fmt.Sprintf("claude-resume-%d", i+1), env, work, claude, "-p", "--resume", sessions[i], "second turn"); res.err != nil {
			t.Fatalf("claude --resume failed: %v", res.err)
		}
	}
	after := credentialsBySession(t, m.requests(t))
	distinct := map[string]bool{}
	for i, s := range sessions {
		if len(before[s]) != 1 {
			t.Fatalf("session %d's first turn was served by %v, want one credential", i+1, before[s])
		}
		for cred := range before[s] {
			distinct[cred] = true
			if len(after[s]) != 1 || !after[s][cred] {
				t.Errorf("session %d: first turn on %s, after the restart on %v", i+1, cred, after[s])
			}
		}
	}
	if len(distinct) < 2 {
		t.Errorf("the three sessions started on %v: round robin should have spread them", distinct)
	}
}

// credentialsBySession returns, per Claude Code session, the credentials
// its /v1/messages requests were served by.
func credentialsBySession(t *testing.T, reqs []mockRequest) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for _, r := range reqs {
		s := sessionOf(r)
		if !isMessages(r) || s == "" {
			continue
		}
		if out[s] == nil {
			out[s] = map[string]bool{}
		}
		out[s][r.Credential] = true
	}
	return out
}

// TestClaudeCodeFailsOverOnRateLimit rate-limits two of the three
// credentials at the upstream: Claude Code still gets its answer at once,
// from the third, without seeing an error or retrying itself.
func TestClaudeCodeFailsOverOnRateLimit(t *testing.T) {
	claude := requireCLI(t, "claude", "CLAUDE_BIN")
	m, c, home, work := rig(t, claudePool)
	for _, key := range []string{"sk-ant-one", "sk-ant-two"} {
		fault := `{"key":"` + key + `","status":429,"headers":{"retry-after":"120"}}`
		resp, err := http.Post(m.URL+"/_mock/faults", "application/json", strings.NewReader(fault))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("setting a fault: %d", resp.StatusCode)
		}
	}

	res := runCLI(t, "claude", claudeEnv(home, c.URL, clientKey), work, claude, "-p", "say hi")
	if res.err != nil {
		t.Fatalf("claude -p failed although one credential was healthy: %v", res.err)
	}
	if !strings.Contains(res.stdout, mockReplyText) {
		t.Errorf("claude output %q does not contain the mock reply", res.stdout)
	}
	reqs := m.requests(t)
	logRequests(t, reqs)
	per := map[string]int{}
	for _, r := range reqs {
		if isMessages(r) {
			per[r.Credential]++
		}
	}
	if per["claude-3"] == 0 {
		t.Fatalf("no request reached the healthy credential: %v", per)
	}
	// Each rate-limited credential is tried at most once: it then cools
	// for the hinted 120s, so later turns go straight to claude-3.
	if per["claude-1"] > 1 || per["claude-2"] > 1 {
		t.Errorf("a rate-limited credential was tried more than once: %v", per)
	}
	assertNoClientKey(t, reqs)
}
