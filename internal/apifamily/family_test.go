package apifamily

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen)
	for _, tc := range []struct {
		path  string
		ok    bool
		fam   Family
		model string
		gen   bool
	}{
		{"/v1/messages", true, Anthropic, "", true},
		{"/v1/messages/count_tokens", true, Anthropic, "", true},
		{"/v1/messages/batches", true, Anthropic, "", false},
		{"/v1/messages/batches/msgbatch_01abc", true, Anthropic, "", false},
		{"/v1/messages/batches/msgbatch_01abc/results", true, Anthropic, "", false},
		{"/v1/messages/batches/msgbatch_01abc/cancel", true, Anthropic, "", false},
		{"/v1/chat/completions", true, OpenAI, "", true},
		{"/v1/completions", true, OpenAI, "", true},
		{"/v1/responses", true, OpenAI, "", true},
		{"/v1/responses/compact", true, OpenAI, "", true},
		{"/v1/responses/input_tokens", true, OpenAI, "", true},
		{"/v1/responses/resp_123", true, OpenAI, "", false},
		{"/v1/responses/resp_123/cancel", true, OpenAI, "", false},
		{"/v1/responses/resp_123/input_items", true, OpenAI, "", false},
		{"/v1/responses/" + long, true, OpenAI, "", false},
		{"/v1/embeddings", true, OpenAI, "", true},
		{"/v1/models", true, OpenAI, "", false},
		{"/v1/models/gpt-5", true, OpenAI, "", false},
		{"/v1/models/ft:gpt-4o-mini-2024-07-18:org:custom:abc123", true, OpenAI, "", false},
		{"/v1/models/llama3:8b", true, OpenAI, "", false},
		{"/v1beta/models/gemini-2.5-pro:generateContent", true, Gemini, "gemini-2.5-pro", true},
		{"/v1beta/models/gemini-2.5-flash:streamGenerateContent", true, Gemini, "gemini-2.5-flash", true},
		{"/v1beta/models/text-embedding-004:embedContent", true, Gemini, "text-embedding-004", true},
		{"/v1beta/models/text-embedding-004:batchEmbedContents", true, Gemini, "text-embedding-004", true},
		{"/v1/models/gemini-2.5-pro:countTokens", true, Gemini, "gemini-2.5-pro", true},
		{"/v1beta/models", true, Gemini, "", false},
		{"/v1beta/models/gemini", true, Gemini, "", false},
		{"/v1beta/models/" + long, true, Gemini, "", false},

		// Not served: unknown endpoints and actions.
		{"/v1/messagesx", false, Unknown, "", false},
		{"/v1/messages/other", false, Unknown, "", false},
		{"/v1/chat", false, Unknown, "", false},
		{"/v1/chat/completions/chatcmpl-1", false, Unknown, "", false},
		{"/v1/files", false, Unknown, "", false},
		{"/v1beta/models/gemini-pro:predictLongRunning", false, Unknown, "", false},
		{"/v1beta/models/gemini-pro:batchGenerateContent", false, Unknown, "", false},
		{"/v1beta/models/:generateContent", false, Unknown, "", false},
		{"/v1beta/models/a:b:generateContent", false, Unknown, "", false},
		{"/v1beta/cachedContents", false, Unknown, "", false},
		{"/v2/anything", false, Unknown, "", false},
		{"/", false, Unknown, "", false},
		{"", false, Unknown, "", false},
		{"v1/messages", false, Unknown, "", false},

		// Not served: segments that could climb out of the endpoint, or
		// extra segments.
		{"/v1/messages/../../admin", false, Unknown, "", false},
		{"/v1/messages/batches/..", false, Unknown, "", false},
		{"/v1/messages/batches/../../admin", false, Unknown, "", false},
		{"/v1/messages/batches/./results", false, Unknown, "", false},
		{"/v1/messages/batches/b/results/x", false, Unknown, "", false},
		{"/v1/responses/..", false, Unknown, "", false},
		{"/v1/responses/../x", false, Unknown, "", false},
		{"/v1/responses/r/cancel/extra", false, Unknown, "", false},
		{"/v1/responses/r/other", false, Unknown, "", false},
		{"/v1/responses/" + long + "a", false, Unknown, "", false},
		{"/v1/responses/a b", false, Unknown, "", false},
		{"/v1/responses/a%2Fb", false, Unknown, "", false},
		{"/v1/responses/a\\b", false, Unknown, "", false},
		{"/v1/responses/a\x00", false, Unknown, "", false},
		{"/v1/models/..", false, Unknown, "", false},
		{"/v1beta/models/..", false, Unknown, "", false},
		{"/v1beta/models/gemini:", false, Unknown, "", false},
		{"/v1beta/models/" + long + "a", false, Unknown, "", false},
		{"/v1beta/models/a/b", false, Unknown, "", false},
		{"/v1beta/models/a%2Fb", false, Unknown, "", false},
		{"/v1beta/models/", false, Unknown, "", false},
		{"/v1/models/a/b", false, Unknown, "", false},
		{"/v1beta/models/a/b:generateContent", false, Unknown, "", false},
		{"/v1beta/models/..:generateContent", false, Unknown, "", false},
		{"/v1beta/models/gemini-pro:generateContent/extra", false, Unknown, "", false},
		{"/v1beta/models/gemini-pro:generateContent/..", false, Unknown, "", false},
		{"/v1/models/gemini-pro:generateContent/extra", false, Unknown, "", false},
		{"//v1/messages", false, Unknown, "", false},
		{"/v1//messages", false, Unknown, "", false},
		{"/v1/messages/", false, Unknown, "", false},
		{"/./v1/messages", false, Unknown, "", false},
		{"/v1/./messages", false, Unknown, "", false},
		{"/v1/chat/../messages", false, Unknown, "", false},
	} {
		r, ok := Parse(tc.path)
		if ok != tc.ok || r.Family != tc.fam || r.Model != tc.model || r.Generation != tc.gen {
			t.Errorf("Parse(%q) = %+v, %v; want family %v model %q generation %v ok %v", tc.path, r, ok, tc.fam, tc.model, tc.gen, tc.ok)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	paths := []string{"/v1/messages", "/v1/responses/resp_1/cancel", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "/v1/x/../y"}
	if n := testing.AllocsPerRun(100, func() {
		for _, p := range paths {
			Parse(p)
		}
	}); n != 0 {
		t.Errorf("Parse allocates %v times per run", n)
	}
}

func TestBodyModel(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"claude-x"}`:          "claude-x",
		`{"model":"a\u0000b"}`:          "a\x00b",
		`{"model":123}`:                 "",
		`{"model":{"name":"x"}}`:        "",
		`{"model":null}`:                "",
		`{"messages":[],"model":"m"}`:   "m",
		`not json`:                      "",
		`[{"model":"inside an array"}]`: "",
	} {
		if got := BodyModel([]byte(body)); got != want {
			t.Errorf("BodyModel(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestCheckModel(t *testing.T) {
	for _, ok := range []string{"", "claude-sonnet-4-5", "gpt-5(high)", "models/gemini-2.5-pro", "模型", strings.Repeat("m", MaxModelLen)} {
		if err := CheckModel(ok); err != nil {
			t.Errorf("CheckModel(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{strings.Repeat("m", MaxModelLen+1), strings.Repeat("m", 8<<20), "a\x00b", "a\nb", "a\x7fb", "a\u0085b", "a\xffb", "\x1b[31mred"} {
		if err := CheckModel(bad); err == nil {
			t.Errorf("CheckModel(%.40q) accepted", bad)
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
