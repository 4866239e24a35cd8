package mockllm

import (
	"net/http"
	"testing"
)

// TestFaultRevokedKey: a revoked key is refused in each provider's own way,
// Gemini's being a 400 whose google.rpc.ErrorInfo says API_KEY_INVALID.
func TestFaultRevokedKey(t *testing.T) {
	s, ts := newTest(t, Options{})
	resp := do(t, "POST", ts.URL+"/_mock/faults", `{"key":"*","revoked_key":true}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /_mock/faults: %d", resp.StatusCode)
	}
	if !s.Faults()[AnyKey].RevokedKey {
		t.Fatalf("fault %+v", s.Faults()[AnyKey])
	}

	v := readJSON(t, do(t, "POST", ts.URL+"/v1beta/models/gemini-2.5-pro:generateContent", geminiBody, "x-goog-api-key: k1"), 400)
	if get(v, "error", "status") != "INVALID_ARGUMENT" || get(v, "error", "message") != "API key not valid. Please pass a valid API key." {
		t.Fatalf("gemini revoked key %v", v)
	}
	if get(v, "error", "details", 0, "@type") != "type.googleapis.com/google.rpc.ErrorInfo" || get(v, "error", "details", 0, "reason") != "API_KEY_INVALID" {
		t.Fatalf("gemini revoked key details %v", get(v, "error", "details"))
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: k1"), 401)
	if get(v, "error", "type") != "authentication_error" {
		t.Fatalf("anthropic revoked key %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1"), 401)
	if get(v, "error", "code") != "invalid_api_key" {
		t.Fatalf("openai revoked key %v", v)
	}

	s.ClearFaults()
	readJSON(t, do(t, "POST", ts.URL+"/v1beta/models/gemini-2.5-pro:generateContent", geminiBody, "x-goog-api-key: k1"), 200)
}
