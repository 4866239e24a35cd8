package mockllm

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestQuotaHeaders: a credential given a quota through /_mock/quota gets
// Claude's unified headers on Anthropic responses and Codex's on OpenAI
// ones, errors included; other credentials get none.
func TestQuotaHeaders(t *testing.T) {
	s := New(Options{Keys: map[string]string{"k1": "one", "k2": "two"}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	post := func(path, key, body string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("/_mock/quota", "", `{"key":"one","primary":0.97,"secondary":0.5,"limit_requests":50,"remaining_requests":7}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /_mock/quota: %d", resp.StatusCode)
	}
	if resp := post("/_mock/quota", "", `{"primary":1}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST /_mock/quota without key: %d", resp.StatusCode)
	}
	msg := `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	h := post("/v1/messages", "k1", msg, "Anthropic-Version", "2023-06-01").Header
	if h.Get("Anthropic-Ratelimit-Unified-5h-Utilization") != "0.97" || h.Get("Anthropic-Ratelimit-Unified-7d-Utilization") != "0.5" ||
		h.Get("Anthropic-Ratelimit-Unified-5h-Status") != "allowed" || h.Get("Anthropic-Ratelimit-Unified-Representative-Claim") != "five_hour" ||
		h.Get("Anthropic-Ratelimit-Requests-Remaining") != "7" || h.Get("Anthropic-Ratelimit-Unified-5h-Reset") == "" {
		t.Errorf("anthropic quota headers: %v", h)
	}
	h = post("/v1/chat/completions", "k1", `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}`).Header
	if h.Get("X-Codex-Primary-Used-Percent") != "97" || h.Get("X-Codex-Secondary-Used-Percent") != "50" ||
		h.Get("X-Codex-Primary-Window-Minutes") != "300" || h.Get("X-Ratelimit-Limit-Requests") != "50" {
		t.Errorf("codex quota headers: %v", h)
	}
	// An error response carries them too.
	if h := post("/v1/chat/completions", "k1", `not json`).Header; h.Get("X-Codex-Primary-Used-Percent") != "97" {
		t.Errorf("error response lacks quota headers: %v", h)
	}
	if h := post("/v1/messages", "k2", msg, "Anthropic-Version", "2023-06-01").Header; h.Get("Anthropic-Ratelimit-Unified-5h-Utilization") != "" {
		t.Errorf("credential without a quota got headers: %v", h)
	}
	s.ClearQuota("")
	if h := post("/v1/messages", "k1", msg, "Anthropic-Version", "2023-06-01").Header; h.Get("Anthropic-Ratelimit-Unified-5h-Utilization") != "" {
		t.Errorf("cleared quota still sent: %v", h)
	}
}
