package integration

import (
	"fmt"
	"net/http"
	"testing"
)

// TestCodexCredentialsServeResponsesOnly: a Codex (ChatGPT) credential
// answers the Responses API and the model list only. Chat completions and
// embeddings go to the OpenAI key beside it and never reach the Codex
// backend; with only the Codex credential they get 503 without an
// upstream call.
func TestCodexCredentialsServeResponsesOnly(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	both := fmt.Sprintf(`	llm_proxy {
		pool codex-endpoints
		auth cx {
			provider codex
			access_token oat-codex
			account_id acct-42
			base_url %[1]s/backend-api/codex
		}
		auth oa {
			provider openai
			api_key sk-oai-one
			base_url %[1]s
		}
	}`, up.URL)
	loadConfig(t, t.TempDir(), both)

	for i := 0; i < 4; i++ { // round robin would alternate if codex were eligible
		resp, body := call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"gpt-5","messages":[{"role":"user","content":"hi `+fmt.Sprint(i)+`"}]}`)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "openai-1" {
			t.Fatalf("chat completion %d: %d from %q: %s", i, resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
		}
		resp, body = call(t, http.MethodPost, "/v1/embeddings", nil, `{"model":"text-embedding-3-small","input":"hi"}`)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "openai-1" {
			t.Fatalf("embeddings %d: %d from %q: %s", i, resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
		}
	}
	served := map[string]bool{}
	for i := 0; i < 4; i++ {
		resp, body := call(t, http.MethodPost, "/v1/responses", nil, `{"model":"gpt-5","input":"turn `+fmt.Sprint(i)+`"}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("responses %d: %d: %s", i, resp.StatusCode, body)
		}
		served[resp.Header.Get("X-Mock-Credential")] = true
	}
	if !served["codex-oauth"] || !served["openai-1"] {
		t.Fatalf("responses served by %v; want both credentials", served)
	}
	for _, r := range up.Requests() {
		if r.Path == "/backend-api/codex/chat/completions" || r.Path == "/backend-api/codex/embeddings" {
			t.Fatalf("the Codex backend received %s", r.Path)
		}
	}

	codexOnly := fmt.Sprintf(`	llm_proxy {
		pool codex-endpoints
		auth cx {
			provider codex
			access_token oat-codex
			account_id acct-42
			base_url %[1]s/backend-api/codex
		}
	}`, up.URL)
	loadConfig(t, t.TempDir(), codexOnly)
	before := len(up.Requests())
	resp, body := call(t, http.MethodPost, "/v1/chat/completions", nil, `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("chat completion with only a Codex credential: %d: %s", resp.StatusCode, body)
	}
	if msg, _ := jsonField(t, body, "error", "message").(string); msg == "" {
		t.Fatalf("503 not in the OpenAI error shape: %s", body)
	}
	if n := len(up.Requests()); n != before {
		t.Fatalf("%d upstream requests for a request no credential serves", n-before)
	}
	if resp, body := call(t, http.MethodPost, "/v1/responses", nil, `{"model":"gpt-5","input":"x"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("responses with only a Codex credential: %d: %s", resp.StatusCode, body)
	}
}
