package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// clientModelsSite has client keys limited to some models: intern inline
// in access, contractor in the config_api_key provider; lead is labelled
// but unlimited. The label of the matched key is sent back as X-Client.
func clientModelsSite(base, pool string) string {
	return fmt.Sprintf(`	header >X-Client {http.auth.user.id}
	llm_proxy {
		pool %s
%s		access {
			key intern intern-key-1 {
				models claude-haiku-* gpt-4o-mini gemini-2.5-flash
			}
			key lead lead-key-1
			provider config_api_key {
				key contractor contractor-key-1 {
					models gpt-4o-mini
				}
			}
		}
	}`, pool, allProviders(base))
}

// TestClientModelsRefusedBeforeUpstream: a key limited to some models gets
// 403 in its API's own error shape for any other model, with zero upstream
// calls, in the Anthropic, OpenAI and Gemini APIs; the ways an attacker
// would try to slip another model past the check are refused too.
func TestClientModelsRefusedBeforeUpstream(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), clientModelsSite(up.URL, "client-models"))

	intern := map[string]string{"x-api-key": "intern-key-1"}
	bearer := map[string]string{"Authorization": "Bearer intern-key-1"}
	goog := map[string]string{"x-goog-api-key": "intern-key-1"}
	contractor := map[string]string{"Authorization": "Bearer contractor-key-1"}
	for _, tc := range []struct {
		name, path string
		headers    map[string]string
		body       string
		status     int
		field      []string // where the error's kind is, and what it says
		want       string
	}{
		{"anthropic other model", "/v1/messages", intern, `{"model":"claude-opus-4","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"anthropic count_tokens", "/v1/messages/count_tokens", intern, `{"model":"claude-opus-4","messages":[]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"anthropic prefix is not a glob", "/v1/messages", intern, `{"model":"xclaude-haiku-4","max_tokens":8,"messages":[]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"anthropic no model", "/v1/messages", intern, `{"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"anthropic model not a string", "/v1/messages", intern, `{"model":["claude-opus-4"],"messages":[]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"anthropic escaped key", "/v1/messages", intern, `{"mod\u0065l":"claude-opus-4","max_tokens":8,"messages":[]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"anthropic model twice", "/v1/messages", intern, `{"model":"claude-haiku-4-5","model":"claude-opus-4","messages":[]}`,
			400, []string{"error", "type"}, "invalid_request_error"},
		{"anthropic batches", "/v1/messages/batches", intern, `{"requests":[{"custom_id":"a","params":{"model":"claude-opus-4","max_tokens":8,"messages":[]}}]}`,
			403, []string{"error", "type"}, "permission_error"},
		{"openai chat", "/v1/chat/completions", bearer, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			403, []string{"error", "code"}, "model_not_allowed"},
		{"openai responses", "/v1/responses", bearer, `{"model":"gpt-4o-mini-2024-07-18","input":"hi"}`,
			403, []string{"error", "type"}, "permission_error"},
		{"openai embeddings", "/v1/embeddings", bearer, `{"model":"text-embedding-3-small","input":"hi"}`,
			403, []string{"error", "code"}, "model_not_allowed"},
		{"gemini path model", "/v1beta/models/gemini-2.5-pro:generateContent", goog, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`,
			403, []string{"error", "status"}, "PERMISSION_DENIED"},
		{"gemini path model, allowed body model", "/v1beta/models/gemini-2.5-pro:generateContent", goog, `{"model":"gemini-2.5-flash","contents":[]}`,
			403, []string{"error", "status"}, "PERMISSION_DENIED"},
		{"provider key", "/v1/chat/completions", contractor, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			403, []string{"error", "type"}, "permission_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.Requests())
			resp, body := call(t, http.MethodPost, tc.path, tc.headers, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := jsonField(t, body, tc.field...); got != tc.want {
				t.Fatalf("%v = %v, want %q: %s", tc.field, got, tc.want, body)
			}
			if n := len(up.Requests()) - before; n != 0 {
				t.Fatalf("%d upstream calls for a refused request", n)
			}
		})
	}
	resp, body := call(t, http.MethodPost, "/v1/messages", intern, `{"model":"claude-opus-4","messages":[]}`)
	if got := resp.Header.Get("X-Client"); got != "intern" {
		t.Errorf("X-Client of a refused request = %q, want intern: %s", got, body)
	}
	if s := string(body); !strings.Contains(s, `may not use model \"claude-opus-4\"`) {
		t.Errorf("refusal does not name the model: %s", s)
	}
}

// TestClientModelsServed: a limited key is served for its models, with its
// label in {http.auth.user.id}; an unlimited key is unaffected; requests
// that name no model (the model list) are allowed.
func TestClientModelsServed(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), clientModelsSite(up.URL, "client-models"))

	for _, tc := range []struct {
		name, method, path string
		headers            map[string]string
		body               string
		client             string
	}{
		{"intern anthropic", "POST", "/v1/messages", map[string]string{"x-api-key": "intern-key-1"},
			`{"model":"Claude-Haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "intern"},
		{"intern openai", "POST", "/v1/chat/completions", map[string]string{"Authorization": "Bearer intern-key-1"},
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, "intern"},
		{"intern gemini", "POST", "/v1beta/models/gemini-2.5-flash:generateContent", map[string]string{"x-goog-api-key": "intern-key-1"},
			`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, "intern"},
		{"intern model list", "GET", "/v1/models", map[string]string{"Authorization": "Bearer intern-key-1"}, "", "intern"},
		{"contractor", "POST", "/v1/chat/completions", map[string]string{"Authorization": "Bearer contractor-key-1"},
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, "contractor"},
		{"lead any model", "POST", "/v1/messages", map[string]string{"x-api-key": "lead-key-1"},
			`{"model":"claude-opus-4","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "lead"},
		{"lead openai", "POST", "/v1/chat/completions", map[string]string{"Authorization": "Bearer lead-key-1"},
			`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "lead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.Requests())
			resp, body := call(t, tc.method, tc.path, tc.headers, tc.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Client"); got != tc.client {
				t.Errorf("X-Client = %q, want %q", got, tc.client)
			}
			if n := len(up.Requests()) - before; n != 1 {
				t.Errorf("%d upstream calls, want 1", n)
			}
		})
	}
}

// TestClientModelsUnknownKey: a wrong key is still 401, whatever model it
// names, and the keys are never echoed.
func TestClientModelsUnknownKey(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), clientModelsSite(up.URL, "client-models"))
	resp, body := call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": "intern-key-2"},
		`{"model":"claude-haiku-4-5","messages":[]}`)
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "intern-key") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if len(up.Requests()) != 0 {
		t.Fatalf("upstream called for an unknown key")
	}
}

// TestClientModelsJSON: the JSON form (labeled_keys and allowed_models, in
// access and in config_api_key) limits keys as the Caddyfile does, and old
// JSON (api_keys, keys) keeps every model.
func TestClientModelsJSON(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	cfg := fmt.Sprintf(`{
  "admin": {"listen": %q},
  "storage": {"module": "file_system", "root": %q},
  "apps": {"http": {"servers": {"json": {
    "listen": [":%d"],
    "routes": [{"handle": [{
      "handler": "llm_proxy",
      "pool": "client-models-json",
      "auths": [{"id": "c1", "provider": "claude", "api_key": "sk-ant-one", "base_url": %q}],
      "access": {
        "api_keys": ["old-key"],
        "labeled_keys": {"intern": "intern-key-1"},
        "allowed_models": {"intern": ["claude-haiku-*"]},
        "providers": [{"provider": "config_api_key", "keys": ["old-key-2"],
                       "labeled_keys": {"contractor": "contractor-key-1"},
                       "allowed_models": {"contractor": ["claude-sonnet-*"]}}]
      }
    }]}]
  }}}}
}`, adminAddr, t.TempDir(), sitePort, up.URL)
	newTesterJSON(t, cfg)
	for _, tc := range []struct {
		key, model string
		status     int
	}{
		{"intern-key-1", "claude-haiku-4-5", 200},
		{"intern-key-1", "claude-sonnet-4-5", 403},
		{"contractor-key-1", "claude-sonnet-4-5", 200},
		{"contractor-key-1", "claude-haiku-4-5", 403},
		{"old-key", "claude-opus-4", 200},
		{"old-key-2", "claude-opus-4", 200},
	} {
		before := len(up.Requests())
		resp, body := call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": tc.key},
			`{"model":"`+tc.model+`","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s for %s: status %d, want %d: %s", tc.key, tc.model, resp.StatusCode, tc.status, body)
		}
		if calls := len(up.Requests()) - before; (tc.status == 200) != (calls == 1) || calls > 1 {
			t.Fatalf("%s for %s: %d upstream calls", tc.key, tc.model, calls)
		}
	}
}

// TestClientModelsMetrics: requests are counted per client key label, the
// refusals with their 403.
func TestClientModelsMetrics(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), clientModelsSite(up.URL, "client-models-metrics"))
	for i, model := range []string{"claude-opus-4", "claude-opus-4", "claude-haiku-4-5"} {
		for _, key := range []string{"intern-key-1", "lead-key-1"} {
			call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": key},
				fmt.Sprintf(`{"model":%q,"max_tokens":8,"messages":[{"role":"user","content":"hi %d"}]}`, model, i))
		}
	}
	m := "caddy_llm_proxy_client_requests_total"
	wantMetric(t, m, map[string]string{"pool": "client-models-metrics", "client": "intern", "status": "403"}, 2)
	wantMetric(t, m, map[string]string{"pool": "client-models-metrics", "client": "intern", "status": "200"}, 1)
	wantMetric(t, m, map[string]string{"pool": "client-models-metrics", "client": "lead", "status": "200"}, 3)
	if text := metricsText(t); strings.Contains(text, "intern-key-1") || strings.Contains(text, "lead-key-1") {
		t.Error("a client key appears in the metrics")
	}
}
