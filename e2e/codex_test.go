//go:build unix

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var openaiPool = []auth{
	{id: "o1", provider: "openai", key: "sk-oai-one"},
	{id: "o2", provider: "openai", key: "sk-oai-two"},
	{id: "o3", provider: "openai", key: "sk-oai-three"},
}

var openaiLabels = map[string]bool{"openai-1": true, "openai-2": true, "openai-3": true}

// writeCodexConfig writes $CODEX_HOME/config.toml with a custom provider
// pointing at Caddy. Update checks, analytics, feedback, plugins and apps are
// off: with them on, codex looks up github.com, api.github.com and
// chatgpt.com (it still works offline, but we want loopback only).
func writeCodexConfig(t *testing.T, codexHome, caddyURL string) {
	t.Helper()
	mkdir(t, codexHome)
	cfg := fmt.Sprintf(`model = "gpt-5-codex"
model_provider = "llmproxy"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false

[model_providers.llmproxy]
name = "llm_proxy e2e"
base_url = "%s/v1"
env_key = "LLMPROXY_KEY"
wire_api = "responses"
`, caddyURL)
	if err := os.WriteFile(filepath.Join(codexHome, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// codexThreadID returns the thread_id of the thread.started event in
// `codex exec --json` output.
func codexThreadID(stdout string) string {
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev struct {
			Type     string `json:"type"`
			ThreadID string `json:"thread_id"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "thread.started" {
			return ev.ThreadID
		}
	}
	return ""
}

// codexSession is the session a recorded Codex request carries: header
// Session-Id, else body prompt_cache_key.
func codexSession(r mockRequest) string {
	if s := r.Header.Get("Session-Id"); s != "" {
		return s
	}
	var body struct {
		PromptCacheKey string `json:"prompt_cache_key"`
	}
	_ = json.Unmarshal([]byte(r.Body), &body)
	return body.PromptCacheKey
}

func TestCodexCLIThroughPool(t *testing.T) {
	codex := requireCLI(t, "codex", "CODEX_BIN")
	m, c, home, work := rig(t, openaiPool)
	codexHome := filepath.Join(home, "codex-home")
	writeCodexConfig(t, codexHome, c.URL)
	env := append(baseEnv(home), "CODEX_HOME="+codexHome, "LLMPROXY_KEY="+clientKey)

	res := runCLI(t, "codex-1", env, work, codex, "exec", "--skip-git-repo-check", "--json", "first turn")
	if res.err != nil {
		t.Fatalf("codex exec failed: %v", res.err)
	}
	if !strings.Contains(res.stdout, mockReplyText) {
		t.Errorf("codex output does not contain the mock reply %q", mockReplyText)
	}
	thread := codexThreadID(res.stdout)
	if thread == "" {
		t.Fatal("no thread.started event with a thread_id in codex --json output")
	}

	// An unrelated conversation moves round robin on (with three credentials,
	// a resumed turn without affinity lands on a third one); then resume.
	res = runCLI(t, "codex-2", env, work, codex, "exec", "--skip-git-repo-check", "an unrelated conversation")
	if res.err != nil {
		t.Fatalf("codex exec failed: %v", res.err)
	}
	res = runCLI(t, "codex-3", env, work, codex, "exec", "resume", "--skip-git-repo-check", thread, "second turn")
	if res.err != nil {
		t.Fatalf("codex exec resume failed: %v", res.err)
	}
	if !strings.Contains(res.stdout, mockReplyText) {
		t.Errorf("codex resume output does not contain the mock reply %q", mockReplyText)
	}

	reqs := m.requests(t)
	assertNoClientKey(t, reqs)
	assertUsageMatchesMock(t, c, m, len(reqs), map[string]string{"o1": "openai-1", "o2": "openai-2", "o3": "openai-3"})
	creds := map[string]int{}
	var turns []string
	for i, r := range reqs {
		s := codexSession(r)
		t.Logf("upstream #%d: %s", i, describe(r, s))
		if r.Path != "/v1/responses" {
			t.Errorf("upstream #%d: unexpected path %s %s", i, r.Method, r.Path)
			continue
		}
		if !openaiLabels[r.Credential] {
			t.Errorf("upstream #%d %s was served by %q, not a pool credential", i, r.Path, r.Credential)
		}
		if s == thread {
			creds[r.Credential]++
			turns = append(turns, r.Body)
		}
	}
	if len(turns) < 2 {
		t.Fatalf("thread %s: %d upstream requests, want at least 2 (one per turn)", thread, len(turns))
	}
	if last := turns[len(turns)-1]; !strings.Contains(last, "second turn") || !strings.Contains(last, "first turn") {
		t.Errorf("the resumed turn's request does not carry both turns")
	}
	if len(creds) != 1 {
		t.Errorf("thread %s was served by %d credentials, want 1: %v", thread, len(creds), creds)
	}
	t.Logf("thread %s: %d upstream requests, credentials %v", thread, len(turns), creds)
}
