package llmproxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestCaddyfileModelAliasErrors checks that mistakes in excluded_models and
// model_alias name their line.
func TestCaddyfileModelAliasErrors(t *testing.T) {
	cred := func(lines ...string) string {
		return ":8080 {\n\tllm_proxy {\n\t\tauth a {\n\t\t\tprovider openai\n\t\t\tapi_key secret-k\n\t\t\t" +
			strings.Join(lines, "\n\t\t\t") + "\n\t\t}\n\t}\n}\n"
	}
	for _, tc := range []struct {
		name, cfg, want string
		line            int
	}{
		{"excluded_models without pattern", cred("excluded_models"), `auth "a": excluded_models needs at least one pattern`, 6},
		{"excluded_models bad pattern", cred("models gpt-*", `excluded_models gpt-4 "gpt 5"`), `auth "a": bad excluded_models pattern "gpt 5"`, 7},
		{"excluded_models empty pattern", cred(`excluded_models ""`), `bad excluded_models pattern ""`, 6},
		{"model_alias arity", cred("model_alias fast"), `auth "a": model_alias takes a client model name and an upstream model name`, 6},
		{"model_alias too many", cred("model_alias fast a b"), `model_alias takes a client model name`, 6},
		{"model_alias bad name", cred(`model_alias fast "a b"`), `auth "a": bad model_alias name "a b"`, 6},
		{"gemini model_alias into the path", strings.Replace(cred("model_alias fast gemini-2.5-pro/../x"), "provider openai", "provider gemini", 1), `upstream name for "fast" goes into the request path`, 3},
		{"model_alias twice", cred("model_alias fast gpt-5-mini", "models gpt-*", "model_alias Fast gpt-4o-mini"), `auth "a": model_alias "Fast" is given twice`, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.cfg), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("adapt succeeded; want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-") {
				t.Fatalf("error %q shows a key", err)
			}
			if !strings.HasSuffix(err.Error(), fmt.Sprintf("at Caddyfile:%d", tc.line)) {
				t.Fatalf("error %q does not name line %d", err, tc.line)
			}
		})
	}
}
