package integration

import (
	"fmt"
	"net/http"
	"testing"
)

// TestPlaceholdersAndProvisionTimeExpansion checks that {env.*} values are
// expanded when the config is provisioned (the upstream receives the key
// from the environment) and that the plugin's placeholders, including the
// client key's label as {http.auth.user.id}, are usable by other
// directives.
func TestPlaceholdersAndProvisionTimeExpansion(t *testing.T) {
	t.Setenv("LLM_TEST_UPSTREAM_KEY", "sk-ant-two")
	t.Setenv("LLM_TEST_CLIENT_KEY", "client-from-env")
	up := newUpstream(t, mockllmOpts())
	site := fmt.Sprintf(`	header >X-Served-By {http.llm_proxy.auth}
	header >X-Client {http.auth.user.id}
	header >X-Affinity {http.llm_proxy.affinity}
	header >X-Attempts {http.llm_proxy.attempts}
	llm_proxy {
		pool placeholders
		auth env-key {
			provider claude
			api_key {env.LLM_TEST_UPSTREAM_KEY}
			base_url %s
		}
		routing {
			session_affinity on
		}
		access {
			provider config_api_key {
				key team-a {env.LLM_TEST_CLIENT_KEY}
			}
		}
	}`, up.URL)
	loadConfig(t, t.TempDir(), site)

	resp, body := call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": "client-from-env"},
		conversation("placeholders", "", 1))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Mock-Credential"); got != "claude-2" {
		t.Fatalf("upstream got credential %q, want the key from the environment (claude-2)", got)
	}
	for h, want := range map[string]string{
		"X-Served-By": "env-key",
		"X-Client":    "team-a",
		"X-Affinity":  "miss",
		"X-Attempts":  "1",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
}
