package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// modelOf returns the top-level "model" of a request body the mock
// received.
func modelOf(body string) string { return gjson.Get(body, "model").String() }

// TestModelAliasSendsUpstreamName: a request for an alias reaches the
// upstream with the credential's upstream name, the rest of the body
// byte for byte, and the client gets the upstream's answer. Two
// credentials aliasing one client name to different upstream names each
// send their own; affinity keeps a conversation on one credential.
func TestModelAliasSendsUpstreamName(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool model-alias
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %[1]s
			models gpt-5*
			model_alias fast gpt-5-mini
		}
		auth o2 {
			provider openai
			api_key sk-oai-two
			base_url %[1]s
			model_alias Fast local/fast-v2
		}
		auth g1 {
			provider gemini
			api_key gm-one
			base_url %[1]s
			model_alias gem-fast gemini-2.5-flash
		}
		routing {
			strategy round_robin
			session_affinity on
		}
	}`, up.URL))
	want := map[string]string{"openai-1": "gpt-5-mini", "openai-2": "local/fast-v2"}

	// Affinity: each conversation stays on one credential across turns,
	// and every turn goes upstream with that credential's name.
	convCred := map[string]string{}
	for turn := 1; turn <= 3; turn++ {
		for c := 0; c < 6; c++ {
			sid := fmt.Sprintf("alias-conv-%d", c)
			body := fmt.Sprintf(` {"messages":[{"role":"user","content":"turn %d","model":"nested-stays"}], "model" : "fast","temperature":0.5}`, turn)
			before := len(up.Requests())
			resp, out := call(t, http.MethodPost, "/v1/chat/completions", map[string]string{"X-Session-Id": sid}, body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("turn %d of %s: %d: %s", turn, sid, resp.StatusCode, out)
			}
			reqs := up.Requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d upstream requests for one turn", len(reqs))
			}
			got := reqs[0]
			if got.Body != strings.Replace(body, `"fast"`, `"`+want[got.Credential]+`"`, 1) {
				t.Fatalf("%s received %s; want only the model renamed to %q", got.Credential, got.Body, want[got.Credential])
			}
			if m := gjson.GetBytes(out, "model").String(); m != want[got.Credential] {
				t.Fatalf("client got model %q; want the upstream's answer %q", m, want[got.Credential])
			}
			if prev, ok := convCred[sid]; ok && prev != got.Credential {
				t.Fatalf("%s moved from %s to %s at turn %d", sid, prev, got.Credential, turn)
			}
			convCred[sid] = got.Credential
		}
	}
	used := map[string]bool{}
	for _, c := range convCred {
		used[c] = true
	}
	if !used["openai-1"] || !used["openai-2"] {
		t.Fatalf("conversations served by %v; want both aliasing credentials", used)
	}

	// A model without alias goes as sent; the upstream name of an alias
	// is not itself a client name on o2 (o1 does not serve it either).
	before := len(up.Requests())
	if resp, out := call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"gpt-5","messages":[]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("gpt-5: %d: %s", resp.StatusCode, out)
	}
	if r := up.Requests()[before]; r.Credential != "openai-1" || modelOf(r.Body) != "gpt-5" {
		t.Fatalf("gpt-5 went to %s as %q", r.Credential, modelOf(r.Body))
	}

	// Gemini names the model in the path.
	before = len(up.Requests())
	resp, out := call(t, http.MethodPost, "/v1beta/models/gem-fast:generateContent", nil, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("gemini alias: %d: %s", resp.StatusCode, out)
	}
	if r := up.Requests()[before]; r.Path != "/v1beta/models/gemini-2.5-flash:generateContent" {
		t.Fatalf("gemini alias sent to %s", r.Path)
	}

	// The admin API shows the aliases.
	admin := &adminClient{t: t}
	b := admin.do(http.MethodGet, "/llm_proxy/pools/model-alias/auths/o2", "", http.StatusOK)
	if gjson.GetBytes(b, "model_alias.Fast").String() != "local/fast-v2" {
		t.Fatalf("admin view: %s", b)
	}
}

// TestExcludedModelNeverReachesCredential: a model a credential excludes
// goes to the other credential; with only the excluding credential it gets
// 503 without an upstream call. A body naming "model" twice (which an
// upstream might read as the excluded one) is refused before any upstream
// call.
func TestExcludedModelNeverReachesCredential(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	cred := func(id, key string, extra string) string {
		return fmt.Sprintf("\t\tauth %s {\n\t\t\tprovider claude\n\t\t\tapi_key %s\n\t\t\tbase_url %s\n%s\t\t}\n", id, key, up.URL, extra)
	}
	loadConfig(t, t.TempDir(), "\tllm_proxy {\n\t\tpool model-excluded\n"+
		cred("c1", "sk-ant-one", "\t\t\texcluded_models *opus*\n")+cred("c2", "sk-ant-two", "")+"\t}")
	hdr := map[string]string{"anthropic-version": "2023-06-01"}
	for i := 0; i < 6; i++ {
		resp, out := call(t, http.MethodPost, "/v1/messages", hdr, fmt.Sprintf(`{"model":"claude-OPUS-4-1","max_tokens":8,"messages":[{"role":"user","content":"q%d"}]}`, i))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "claude-2" {
			t.Fatalf("opus %d: %d from %q: %s", i, resp.StatusCode, resp.Header.Get("X-Mock-Credential"), out)
		}
	}
	served := map[string]bool{}
	for i := 0; i < 4; i++ {
		resp, out := call(t, http.MethodPost, "/v1/messages", hdr, fmt.Sprintf(`{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"s%d"}]}`, i))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sonnet %d: %d: %s", i, resp.StatusCode, out)
		}
		served[resp.Header.Get("X-Mock-Credential")] = true
	}
	if !served["claude-1"] || !served["claude-2"] {
		t.Fatalf("sonnet served by %v; want both", served)
	}

	for _, body := range []string{
		`{"model":"claude-sonnet-4-5","model":"claude-opus-4-1","max_tokens":8,"messages":[]}`,
		`{"model":"claude-sonnet-4-5","mod\u0065l":"claude-opus-4-1","max_tokens":8,"messages":[]}`,
		`{"Model":"claude-opus-4-1","model":"claude-sonnet-4-5","max_tokens":8,"messages":[]}`,
	} {
		before := len(up.Requests())
		resp, out := call(t, http.MethodPost, "/v1/messages", hdr, body)
		if resp.StatusCode != http.StatusBadRequest || gjson.GetBytes(out, "type").String() != "error" {
			t.Fatalf("%s: %d: %s", body, resp.StatusCode, out)
		}
		if n := len(up.Requests()) - before; n != 0 {
			t.Fatalf("%s: %d upstream requests", body, n)
		}
	}
	for _, r := range up.Requests() {
		if r.Credential == "claude-1" && strings.Contains(strings.ToLower(r.Body), "opus") {
			t.Fatalf("c1 received %s", r.Body)
		}
	}

	loadConfig(t, t.TempDir(), "\tllm_proxy {\n\t\tpool model-excluded\n"+cred("c1", "sk-ant-one", "\t\t\texcluded_models *opus*\n")+"\t}")
	before := len(up.Requests())
	resp, out := call(t, http.MethodPost, "/v1/messages", hdr, `{"model":"claude-opus-4-1","max_tokens":8,"messages":[]}`)
	if resp.StatusCode != http.StatusServiceUnavailable || gjson.GetBytes(out, "type").String() != "error" {
		t.Fatalf("opus with only the excluding credential: %d: %s", resp.StatusCode, out)
	}
	if n := len(up.Requests()) - before; n != 0 {
		t.Fatalf("%d upstream requests for a model no credential serves", n)
	}
}

// TestModelListShowsClientNames: GET /v1/models through the plugin lists
// the client-visible models of the pool, in the client's family's shape:
// the upstream's models the pool's credentials serve, without the excluded
// ones, and every alias.
func TestModelListShowsClientNames(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool model-list
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %[1]s
			excluded_models gpt-4* o3
			model_alias fast gpt-5-mini
		}
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %[1]s
			excluded_models *opus*
			model_alias sonnet claude-sonnet-4-5-20250929
		}
	}`, up.URL))
	ids := func(b []byte) []string {
		var out []string
		for _, r := range gjson.GetBytes(b, "data.#.id").Array() {
			out = append(out, r.String())
		}
		return out
	}
	resp, b := call(t, http.MethodGet, "/v1/models", nil, "")
	if resp.StatusCode != http.StatusOK || gjson.GetBytes(b, "object").String() != "list" {
		t.Fatalf("openai list: %d: %s", resp.StatusCode, b)
	}
	if got, want := strings.Join(ids(b), ","), "gpt-5,gpt-5-codex,o4-mini,text-embedding-3-small,fast"; got != want {
		t.Fatalf("openai list %s, want %s", got, want)
	}
	if gjson.GetBytes(b, `data.#(id=="fast").object`).String() != "model" {
		t.Fatalf("alias entry not in OpenAI's shape: %s", b)
	}

	resp, b = call(t, http.MethodGet, "/v1/models", map[string]string{"anthropic-version": "2023-06-01"}, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "claude-1" {
		t.Fatalf("anthropic list: %d: %s", resp.StatusCode, b)
	}
	if got, want := strings.Join(ids(b), ","), "claude-sonnet-4-5-20250929,claude-haiku-4-5-20251001,claude-3-5-haiku-20241022,sonnet"; got != want {
		t.Fatalf("anthropic list %s, want %s", got, want)
	}
	if gjson.GetBytes(b, `data.#(id=="sonnet").type`).String() != "model" || resp.Header.Get("Content-Length") != fmt.Sprint(len(b)) {
		t.Fatalf("alias entry not in Anthropic's shape or bad length: %s", b)
	}
}
