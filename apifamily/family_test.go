package apifamily

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		path  string
		ok    bool
		fam   Family
		model string
	}{
		{"/v1/messages", true, Anthropic, ""},
		{"/v1/messages/count_tokens", true, Anthropic, ""},
		{"/v1/messagesx", false, Unknown, ""},
		{"/v1/chat/completions", true, OpenAI, ""},
		{"/v1/completions", true, OpenAI, ""},
		{"/v1/responses", true, OpenAI, ""},
		{"/v1/responses/resp_123/cancel", true, OpenAI, ""},
		{"/v1/embeddings", true, OpenAI, ""},
		{"/v1/models", true, OpenAI, ""},
		{"/v1/models/gpt-5", true, OpenAI, ""},
		{"/v1beta/models/gemini-2.5-pro:generateContent", true, Gemini, "gemini-2.5-pro"},
		{"/v1beta/models/gemini-2.5-flash:streamGenerateContent", true, Gemini, "gemini-2.5-flash"},
		{"/v1/models/gemini-2.5-pro:countTokens", true, Gemini, "gemini-2.5-pro"},
		{"/v1beta/models/:generateContent", false, Unknown, ""},
		{"/v1beta/models/a/b:generateContent", false, Unknown, ""},
		{"/v1beta/models/gemini", false, Unknown, ""},
		{"/v2/anything", false, Unknown, ""},
		{"/", false, Unknown, ""},
	} {
		r, ok := Parse(tc.path)
		if ok != tc.ok || r.Family != tc.fam || r.Model != tc.model {
			t.Errorf("Parse(%q) = %+v, %v; want family %v model %q ok %v", tc.path, r, ok, tc.fam, tc.model, tc.ok)
		}
	}
}

func TestParseRequestModelListing(t *testing.T) {
	h := http.Header{}
	if r, _ := ParseRequest("/v1/models", h); r.Family != OpenAI {
		t.Fatalf("plain /v1/models: %v", r.Family)
	}
	h.Set("anthropic-version", "2023-06-01")
	for _, p := range []string{"/v1/models", "/v1/models/claude-sonnet-4-5"} {
		if r, _ := ParseRequest(p, h); r.Family != Anthropic {
			t.Fatalf("%s with anthropic-version: %v", p, r.Family)
		}
	}
	if r, _ := ParseRequest("/v1/chat/completions", h); r.Family != OpenAI {
		t.Fatalf("chat with anthropic-version: %v", r.Family)
	}
}

func TestServes(t *testing.T) {
	for _, tc := range []struct {
		fam      Family
		provider string
		want     bool
	}{
		{Anthropic, "claude", true}, {Anthropic, "openai", false},
		{OpenAI, "openai", true}, {OpenAI, "codex", true}, {OpenAI, "openai_compatible", true}, {OpenAI, "claude", false},
		{Gemini, "gemini", true}, {Gemini, "openai", false}, {Unknown, "claude", false},
	} {
		if got := tc.fam.Serves(tc.provider); got != tc.want {
			t.Errorf("%v.Serves(%q) = %v", tc.fam, tc.provider, got)
		}
	}
}

func TestErrorShapes(t *testing.T) {
	decode := func(b []byte) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("not JSON: %s", b)
		}
		return m
	}
	a := decode(ErrorBody(Anthropic, 429, KindRateLimit, "slow down"))
	if a["type"] != "error" || a["error"].(map[string]any)["type"] != "rate_limit_error" || a["error"].(map[string]any)["message"] != "slow down" {
		t.Errorf("anthropic shape: %v", a)
	}
	o := decode(ErrorBody(OpenAI, 429, KindRateLimit, "slow down"))["error"].(map[string]any)
	if o["type"] != "rate_limit_error" || o["code"] != "rate_limit_exceeded" || o["message"] != "slow down" {
		t.Errorf("openai shape: %v", o)
	}
	g := decode(ErrorBody(Gemini, 429, KindRateLimit, "slow down"))["error"].(map[string]any)
	if g["code"] != float64(429) || g["status"] != "RESOURCE_EXHAUSTED" {
		t.Errorf("gemini shape: %v", g)
	}

	w := httptest.NewRecorder()
	WriteError(w, Anthropic, 429, KindRateLimit, "wait", 7)
	if w.Code != 429 || w.Header().Get("Retry-After") != "7" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("WriteError headers: %d %v", w.Code, w.Header())
	}
	w = httptest.NewRecorder()
	WriteError(w, OpenAI, 503, KindUnavailable, "none", 0)
	if w.Header().Get("Retry-After") != "" {
		t.Errorf("Retry-After sent without a wait")
	}
}

func TestStreamErrorEvent(t *testing.T) {
	for _, tc := range []struct {
		fam  Family
		path string
		want string
	}{
		{Anthropic, "/v1/messages", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""},
		{OpenAI, "/v1/responses", "event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_error\""},
		{OpenAI, "/v1/chat/completions", "data: {\"error\":{"},
		{Gemini, "/v1beta/models/g:streamGenerateContent", "data: {\"error\":{\"code\":502"},
	} {
		got := string(StreamErrorEvent(tc.fam, tc.path, "broke"))
		if !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "\n\n") {
			t.Errorf("%v %s: %q", tc.fam, tc.path, got)
		}
	}
}
