package llmproxy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestCaddyfileAdapt adapts every testdata/adapt/*.caddyfiletest (a
// Caddyfile, a line of dashes, the expected JSON) and compares.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatalf("%s: missing separator line", f)
			}
			if !caddytest.CompareAdapt(t, f, in+"\n", "caddyfile", strings.TrimRight(want, "\n")) {
				t.Errorf("%s: adapted JSON differs from the golden file", f)
			}
		})
	}
}

// TestCaddyfileAdaptKeepsPlaceholders makes sure secrets given as
// placeholders are not expanded into the adapted JSON.
func TestCaddyfileAdaptKeepsPlaceholders(t *testing.T) {
	t.Setenv("SECRET_KEY_FOR_TEST", "sk-should-not-appear")
	cfg := ":8080 {\n\tllm_proxy {\n\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key {env.SECRET_KEY_FOR_TEST}\n\t\t}\n\t}\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "sk-should-not-appear") {
		t.Fatalf("secret expanded into adapted JSON: %s", out)
	}
	if !strings.Contains(string(out), "{env.SECRET_KEY_FOR_TEST}") {
		t.Fatalf("placeholder missing from adapted JSON: %s", out)
	}
}

// TestCaddyfileAdaptPlaceholderURLs makes sure URLs given as placeholders
// pass at adapt time: they are checked once expanded, at provision.
func TestCaddyfileAdaptPlaceholderURLs(t *testing.T) {
	cfg := ":8080 {\n\tllm_proxy {\n\t\tauth a {\n\t\t\tprovider openai_compatible\n\t\t\tapi_key {env.KEY}\n" +
		"\t\t\tbase_url {env.BASE_URL}\n\t\t\tproxy_url socks5://{env.PROXY_HOST}:1080\n\t\t}\n\t}\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"base_url":"{env.BASE_URL}"`) {
		t.Fatalf("placeholder base_url missing from adapted JSON: %s", out)
	}
}

// TestCaddyfileAdaptErrors checks that bad Caddyfiles fail at adapt time
// with an error naming the line and the problem.
func TestCaddyfileAdaptErrors(t *testing.T) {
	auth := "\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t}\n"
	wrap := func(body string) string { return ":8080 {\n\tllm_proxy {\n" + body + "\t}\n}\n" }
	for _, tc := range []struct {
		name, cfg, want string
		line            int
	}{
		{"unknown option", wrap(auth + "\t\tbogus 1\n"), `unknown llm_proxy option "bogus"`, 7},
		{"unknown strategy", wrap(auth + "\t\trouting {\n\t\t\tstrategy random\n\t\t}\n"), `routing: unknown strategy "random"; expected one of round_robin, fill_first, weighted_round_robin, rendezvous`, 8},
		{"unknown provider", wrap("\t\tauth a {\n\t\t\tprovider azure\n\t\t\tapi_key k\n\t\t}\n"), `auth "a": unknown provider "azure" (allowed: claude, codex, gemini, openai, openai_compatible)`, 3},
		{"provider names are lower case", wrap("\t\tauth a {\n\t\t\tprovider Claude\n\t\t\tapi_key k\n\t\t}\n"), `auth "a": unknown provider "Claude"`, 3},
		{"duplicate auth", wrap(auth + auth), `duplicate auth "a"`, 7},
		{"weight out of range", wrap("\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t\tweight 1000001\n\t\t}\n"), `auth "a": weight 1000001 out of range 0..1000000`, 3},
		{"negative weight", wrap("\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t\tweight -1\n\t\t}\n"), `auth "a": weight -1 out of range 0..1000000`, 3},
		{"weight not a number", wrap("\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t\tweight heavy\n\t\t}\n"), `auth "a": bad weight "heavy": want an integer`, 6},
		{"priority not a number", wrap("\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t\tpriority 1.5\n\t\t}\n"), `auth "a": bad priority "1.5": want an integer`, 6},
		{"bad quota_headroom", wrap(auth + "\t\trouting {\n\t\t\tquota_headroom 1.5\n\t\t}\n"), `routing: bad quota_headroom "1.5": want a fraction from 0 (off) up to 1`, 8},
		{"quota_headroom not a number", wrap(auth + "\t\trouting {\n\t\t\tquota_headroom lots\n\t\t}\n"), `routing: bad quota_headroom "lots"`, 8},
		{"quota_headroom arity", wrap(auth + "\t\trouting {\n\t\t\tquota_headroom\n\t\t}\n"), `routing: quota_headroom takes one fraction`, 8},
		{"bad duration", wrap(auth + "\t\trouting {\n\t\t\tsession_affinity_ttl soon\n\t\t}\n"), `routing: bad session_affinity_ttl "soon"`, 8},
		{"bad cooldown duration", wrap(auth + "\t\tcooldown {\n\t\t\trate_limit 5parsecs\n\t\t}\n"), `cooldown: bad rate_limit "5parsecs"`, 0},
		{"bad rescan", wrap(auth + "\t\trescan_interval often\n"), `bad rescan_interval "often"`, 7},
		{"bad size", wrap(auth + "\t\tmax_request_body lots\n"), `bad max_request_body "lots"`, 0},
		{"missing provider", wrap("\t\tauth a {\n\t\t\tapi_key k\n\t\t}\n"), `auth "a": missing provider (allowed: claude, codex, gemini, openai, openai_compatible)`, 3},
		{"missing key", wrap("\t\tauth a {\n\t\t\tprovider openai\n\t\t}\n"), `auth "a": missing credential: set api_key or access_token`, 3},
		{"gemini access token", wrap("\t\tauth a {\n\t\t\tprovider gemini\n\t\t\taccess_token {env.GEMINI_TOKEN}\n\t\t}\n"), `auth "a": gemini credential has no api_key`, 3},
		{"bad base_url", wrap("\t\tauth a {\n\t\t\tprovider openai\n\t\t\tapi_key k\n\t\t\tbase_url api.example.com/v1\n\t\t}\n"), `auth "a": base_url: scheme "" not supported (allowed: http, https)`, 3},
		{"bad proxy_url", wrap("\t\tauth a {\n\t\t\tprovider openai\n\t\t\tapi_key k\n\t\t\tproxy_url ftp://p:21\n\t\t}\n"), `auth "a": proxy_url: scheme "ftp" not supported`, 3},
		{"bad header name", wrap("\t\tauth a {\n\t\t\tprovider openai\n\t\t\tapi_key k\n\t\t\theader \"X Team\" v\n\t\t}\n"), `auth "a": headers: invalid header name "X Team"`, 3},
		{"bad model pattern", wrap("\t\tauth a {\n\t\t\tprovider openai\n\t\t\tapi_key k\n\t\t\tmodels \"gpt 5\"\n\t\t}\n"), `auth "a": models[0]: empty or contains white space`, 3},
		{"blank key", wrap("\t\tauth a {\n\t\t\tprovider openai\n\t\t\tapi_key \" \"\n\t\t}\n"), `auth "a": api_key contains white space only`, 3},
		{"bad auth id", wrap("\t\tauth ../x {\n\t\t\tprovider openai\n\t\t\tapi_key k\n\t\t}\n"), `auth "../x": credential ID "../x": path segment ".." not allowed`, 3},
		{"compatible without base", wrap("\t\tauth a {\n\t\t\tprovider openai_compatible\n\t\t\tapi_key k\n\t\t}\n"), `auth "a": openai_compatible credential needs a base_url`, 3},
		{"unknown auth option", wrap("\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t\tsecret x\n\t\t}\n"), `auth "a": unknown option "secret"`, 6},
		{"duplicate pool", wrap(auth + "\t\tpool a\n\t\tpool b\n"), `duplicate pool option`, 8},
		{"bad on/off", wrap(auth + "\t\trouting {\n\t\t\tsession_affinity maybe\n\t\t}\n"), `session_affinity takes on or off`, 8},
		{"empty access", wrap(auth + "\t\taccess {\n\t\t}\n"), `access: needs api_keys, key or a provider`, 0},
		{"access bad model glob", wrap(auth + "\t\taccess {\n\t\t\tkey intern secret-k {\n\t\t\t\tmodels \"claude haiku\"\n\t\t\t}\n\t\t}\n"), `key "intern": bad model glob "claude haiku"`, 9},
		{"access models without glob", wrap(auth + "\t\taccess {\n\t\t\tkey intern secret-k {\n\t\t\t\tmodels\n\t\t\t}\n\t\t}\n"), `key "intern": models needs at least one glob`, 9},
		{"access models on an unlabelled key", wrap(auth + "\t\taccess {\n\t\t\tapi_keys secret-k {\n\t\t\t\tmodels m\n\t\t\t}\n\t\t}\n"), `access: api_keys takes no block; to limit a key's models, give it a label`, 9},
		{"provider models on an unlabelled key", wrap(auth + "\t\taccess {\n\t\t\tprovider config_api_key {\n\t\t\t\tkeys secret-k {\n\t\t\t\t\tmodels m\n\t\t\t\t}\n\t\t\t}\n\t\t}\n"), `keys takes no block`, 10},
		{"provider bad model glob", wrap(auth + "\t\taccess {\n\t\t\tprovider config_api_key {\n\t\t\t\tkey intern secret-k {\n\t\t\t\t\tmodels \"a\tb\"\n\t\t\t\t}\n\t\t\t}\n\t\t}\n"), `bad model glob`, 10},
		{"access key label twice", wrap(auth + "\t\taccess {\n\t\t\tkey intern secret-k\n\t\t\tkey intern secret-l\n\t\t}\n"), `duplicate key label "intern"`, 9},
		{"unknown access provider", wrap(auth + "\t\taccess {\n\t\t\tprovider ldap\n\t\t}\n"), `llm_proxy.access.ldap`, 0},
		{"bad max_attempts", wrap(auth + "\t\tretry {\n\t\t\tmax_attempts 0\n\t\t}\n"), `retry: bad max_attempts "0"`, 0},
		{"unknown retry option", wrap(auth + "\t\tretry {\n\t\t\tbackoff 1s\n\t\t}\n"), `retry: unknown option "backoff"`, 0},
		{"pool arity", wrap(auth + "\t\tpool a b\n"), `wrong argument count`, 7},
		{"bad pool name", wrap(auth + "\t\tpool ../../etc\n"), `bad pool name "../../etc"`, 7},
		{"auth without id", wrap("\t\tauth {\n\t\t}\n"), `auth needs an ID`, 0},
		{"forward_headers without names", wrap(auth + "\t\tforward_headers\n"), `forward_headers needs at least one header name`, 7},
		{"forward_headers client key", wrap(auth + "\t\tforward_headers X-Team Authorization\n"), `forward_headers: header Authorization is never forwarded upstream`, 7},
		{"forward_headers bad name", wrap(auth + "\t\tforward_headers \"X Team\"\n"), `forward_headers: bad header name "X Team"`, 7},
		{"forward_headers twice", wrap(auth + "\t\tforward_headers A\n\t\tforward_headers B\n"), `duplicate forward_headers option`, 8},
		{"oauth without provider", wrap(auth + "\t\toauth {\n\t\t}\n"), `oauth takes a provider name (claude, codex)`, 7},
		{"oauth for an API-key provider", wrap(auth + "\t\toauth gemini {\n\t\t}\n"), `oauth: unknown provider "gemini"; expected one of claude, codex`, 7},
		{"oauth twice", wrap(auth + "\t\toauth claude {\n\t\t}\n\t\toauth claude {\n\t\t}\n"), `duplicate oauth claude block`, 9},
		{"oauth bad url", wrap(auth + "\t\toauth codex {\n\t\t\ttoken_url auth.example.com/token\n\t\t}\n"), `oauth codex: token_url: "auth.example.com/token" is not an absolute http or https URL`, 8},
		{"oauth bad lead", wrap(auth + "\t\toauth claude {\n\t\t\trefresh_lead early\n\t\t}\n"), `oauth claude: bad refresh_lead "early"`, 8},
		{"oauth unknown option", wrap(auth + "\t\toauth claude {\n\t\t\tclient_secret x\n\t\t}\n"), `oauth claude: unknown option "client_secret"`, 8},
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
				t.Fatalf("error %q shows a client key", err)
			}
			if tc.line > 0 && !strings.HasSuffix(err.Error(), fmt.Sprintf("at Caddyfile:%d", tc.line)) {
				t.Fatalf("error %q does not name line %d", err, tc.line)
			}
		})
	}
}
