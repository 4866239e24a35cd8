//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var geminiPool = []auth{
	{id: "g1", provider: "gemini", key: "gm-key-one"},
	{id: "g2", provider: "gemini", key: "gm-key-two"},
	{id: "g3", provider: "gemini", key: "gm-key-three"},
}

var geminiLabels = map[string]bool{"gemini-1": true, "gemini-2": true, "gemini-3": true}

// geminiModelPath matches the Gemini API paths the CLI may send upstream:
// generation (plain or streamed) and token counting for one model.
var geminiModelPath = regexp.MustCompile(`^/v1beta/models/[^/:]+:(generateContent|streamGenerateContent|countTokens)$`)

// geminiModel is the model the test asks for. Without -m the CLI runs in
// "auto" mode: it first asks a flash-lite model to classify the prompt as
// JSON, which the mock's prose reply is not, and retries that with backoff
// for about 90 seconds before falling back to its default model.
const geminiModel = "gemini-2.5-flash"

// writeGeminiSettings writes $HOME/.gemini/settings.json: API key
// authentication (GEMINI_API_KEY, sent as x-goog-api-key), and no update
// checks, usage statistics or telemetry, so that the CLI talks to
// GOOGLE_GEMINI_BASE_URL only (with the defaults it also makes DNS lookups).
func writeGeminiSettings(t *testing.T, home string) {
	t.Helper()
	dir := filepath.Join(home, ".gemini")
	mkdir(t, dir)
	settings := `{
  "security": {"auth": {"selectedType": "gemini-api-key"}},
  "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
  "privacy": {"usageStatisticsEnabled": false},
  "telemetry": {"enabled": false}
}
`
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
}

// geminiEnv is the environment for `gemini -p` against Caddy: a throwaway
// HOME and the given client key.
func geminiEnv(home, baseURL, key string) []string {
	return append(baseEnv(home),
		"GEMINI_API_KEY="+key,
		"GOOGLE_GEMINI_BASE_URL="+baseURL,
		"GEMINI_CLI_TRUST_WORKSPACE=true",
	)
}

func TestGeminiCLIThroughPool(t *testing.T) {
	gemini := requireCLI(t, "gemini", "GEMINI_BIN")
	m, c, home, work := rig(t, geminiPool)
	writeGeminiSettings(t, home)

	res := runCLI(t, "gemini", geminiEnv(home, c.URL, clientKey), work, gemini, "-m", geminiModel, "-p", "say hi")
	if res.err != nil {
		t.Fatalf("gemini -p failed: %v", res.err)
	}
	if !strings.Contains(res.stdout, mockReplyText) {
		t.Errorf("gemini output does not contain the mock reply %q", mockReplyText)
	}

	reqs := m.requests(t)
	if len(reqs) == 0 {
		t.Fatal("gemini succeeded but the mock recorded no upstream request")
	}
	assertNoClientKey(t, reqs)
	assertUsageMatchesMock(t, c, m, len(reqs), map[string]string{"g1": "gemini-1", "g2": "gemini-2", "g3": "gemini-3"})
	generations := 0
	for i, r := range reqs {
		t.Logf("upstream #%d: %s", i, describe(r, ""))
		if r.Method != "POST" || !geminiModelPath.MatchString(r.Path) {
			t.Errorf("upstream #%d: unexpected request %s %s", i, r.Method, r.Path)
			continue
		}
		if !geminiLabels[r.Credential] {
			t.Errorf("upstream #%d %s was served by %q, not a pool credential", i, r.Path, r.Credential)
		}
		switch r.Path {
		case "/v1beta/models/" + geminiModel + ":generateContent", "/v1beta/models/" + geminiModel + ":streamGenerateContent":
			generations++
		}
	}
	if generations == 0 {
		t.Errorf("no upstream generation request for %s", geminiModel)
	}

	// A wrong client key is refused by Caddy and never reaches the upstream.
	res = runCLI(t, "gemini-wrong-key", geminiEnv(home, c.URL, "not-a-client-key"), work, gemini, "-m", geminiModel, "-p", "say hi")
	if res.err == nil {
		t.Errorf("gemini with a wrong client key succeeded: %q", res.stdout)
	}
	if !strings.Contains(res.stderr, "401") {
		t.Errorf("gemini with a wrong client key does not report Caddy's 401")
	}
	if strings.Contains(res.stdout, mockReplyText) {
		t.Errorf("gemini with a wrong client key printed the mock reply: %q", res.stdout)
	}
	if n := len(m.requests(t)); n != len(reqs) {
		t.Errorf("a request with a wrong client key reached the upstream (%d recorded, want %d)", n, len(reqs))
	}
}
