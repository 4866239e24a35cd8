package session

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"testing"
)

const ccUUID = "5f0c2d4e-8b1a-4c3e-9f7d-2a6b8c0e1f34"

// claudeCodeBody is the shape Claude Code sends, with its session in
// metadata.user_id as JSON text.
var claudeCodeBody = `{"model":"claude-sonnet-4-5","metadata":{"user_id":"{\"device_id\":\"abc\",\"account_uuid\":\"\",\"session_id\":\"` + ccUUID + `\"}"},` +
	`"system":[{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{"type":"ephemeral"}}],` +
	`"messages":[{"role":"user","content":[{"type":"text","text":"fix the bug"}]}],"stream":true}`

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1]) // verbatim, like a raw map
	}
	return h
}

func TestExtractExplicit(t *testing.T) {
	long := strings.Repeat("a", 257)
	max := strings.Repeat("b", 256)
	tests := []struct {
		name   string
		h      http.Header
		body   string
		want   string
		source Source
	}{
		{"claude code header", hdr("X-Claude-Code-Session-Id", ccUUID), "", "cc:" + ccUUID, SourceClaudeCode},
		{"claude code metadata json", nil, claudeCodeBody, "cc:" + ccUUID, SourceClaudeCode},
		{"claude code header and body agree", hdr("X-Claude-Code-Session-Id", ccUUID), claudeCodeBody, "cc:" + ccUUID, SourceClaudeCode},
		{"claude code header beats body", hdr("X-Claude-Code-Session-Id", "h1"), claudeCodeBody, "cc:h1", SourceClaudeCode},
		{"legacy user_id with account", nil,
			`{"metadata":{"user_id":"user_0a1b2c3d4e5f_account_11111111-2222-3333-4444-555555555555_session_` + ccUUID + `"}}`,
			"cc:" + ccUUID, SourceClaudeCode},
		{"legacy user_id without account", nil,
			`{"metadata":{"user_id":"user_0a1b2c_session_` + ccUUID + `"}}`, "cc:" + ccUUID, SourceClaudeCode},
		{"metadata claude code beats codex header", hdr("Session-Id", "cx"), claudeCodeBody, "cc:" + ccUUID, SourceClaudeCode},
		{"codex canonical", hdr("Session-Id", "cx-1"), `{"prompt_cache_key":"p"}`, "codex:cx-1", SourceCodex},
		{"codex underscore", hdr("Session_id", "cx-2"), "", "codex:cx-2", SourceCodex},
		{"codex lower-case raw", hdr("session_id", "cx-3"), "", "codex:cx-3", SourceCodex},
		{"codex beats x-session-id", hdr("Session-Id", "cx", "X-Session-Id", "xs"), "", "codex:cx", SourceCodex},
		{"x-session-id", hdr("X-Session-Id", "xs-1"), `{"metadata":{"user_id":"u1"}}`, "sid:xs-1", SourceHeader},
		{"x-session-id trimmed", hdr("X-Session-Id", "  xs-2 "), "", "sid:xs-2", SourceHeader},
		{"user_id any form", nil, `{"metadata":{"user_id":"alice@example.com"},"prompt_cache_key":"p"}`, "user:alice@example.com", SourceUserID},
		{"user_id json without session", nil, `{"metadata":{"user_id":"{\"device_id\":\"d\"}"}}`, `user:{"device_id":"d"}`, SourceUserID},
		{"prompt_cache_key", nil, `{"prompt_cache_key":"pk-1","conversation_id":"c"}`, "pck:pk-1", SourcePromptCacheKey},
		{"conversation_id", nil, `{"conversation_id":"c-1","conversation":"c-2"}`, "conv:c-1", SourceConversation},
		{"conversation object", nil, `{"conversation":{"id":"c-3"}}`, "conv:c-3", SourceConversation},
		{"conversation string", nil, `{"conversation":"c-4"}`, "conv:c-4", SourceConversation},
		{"escaped value", nil, `{"prompt_cache_key":"a\u00e9\"b"}`, `pck:aé"b`, SourcePromptCacheKey},
		{"max length", hdr("X-Session-Id", max), "", "sid:" + max, SourceHeader},

		// Invalid explicit IDs fall through to the next signal.
		{"control char header", hdr("X-Claude-Code-Session-Id", "a\x01b"), claudeCodeBody, "cc:" + ccUUID, SourceClaudeCode},
		{"blank header", hdr("X-Claude-Code-Session-Id", "   ", "Session-Id", "cx"), "", "codex:cx", SourceCodex},
		{"too long header", hdr("Session-Id", long, "X-Session-Id", "xs"), "", "sid:xs", SourceHeader},
		{"C1 control", hdr("X-Session-Id", "a\u0085b"), `{"prompt_cache_key":"p"}`, "pck:p", SourcePromptCacheKey},
		{"invalid utf-8", hdr("X-Session-Id", "a\xffb"), `{"prompt_cache_key":"p"}`, "pck:p", SourcePromptCacheKey},
		{"legacy with bad session", nil, `{"metadata":{"user_id":"user_abc_session_   "}}`, "user:user_abc_session_", SourceUserID},
		{"json session too long", nil, `{"metadata":{"user_id":"{\"session_id\":\"` + long + `\"}"},"prompt_cache_key":"p"}`, "pck:p", SourcePromptCacheKey},
		{"empty prompt_cache_key", nil, `{"prompt_cache_key":"","conversation":{"id":"c"}}`, "conv:c", SourceConversation},
		{"newline in conversation_id", nil, `{"conversation_id":"a\nb","conversation":"c"}`, "conv:c", SourceConversation},
		{"non-string user_id", nil, `{"metadata":{"user_id":42},"prompt_cache_key":"p"}`, "pck:p", SourcePromptCacheKey},

		// Malformed bodies: header signals only.
		{"invalid json with header", hdr("X-Session-Id", "xs"), `{"metadata":`, "sid:xs", SourceHeader},
		{"invalid json", nil, `{"prompt_cache_key":"p"`, "", SourceNone},
		{"trailing garbage", nil, `{"prompt_cache_key":"p"} x`, "", SourceNone},
		{"mismatched brackets", nil, `{"prompt_cache_key":"p","x":[}]}`, "", SourceNone},
		{"array body", nil, `["prompt_cache_key"]`, "", SourceNone},
		{"empty", nil, "", "", SourceNone},
		{"no signal", nil, `{"model":"m"}`, "", SourceNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Extract(tt.h, []byte(tt.body))
			if got.Primary != tt.want || got.Source != tt.source || got.Stable != tt.want || got.Fallback != "" {
				t.Fatalf("Extract = %+v, want Primary=Stable=%q Source=%q", got, tt.want, tt.source)
			}
		})
	}
}

// fnvOf returns the expected message-hash ID of the given tagged pieces.
func fnvOf(pieces ...string) string {
	h := fnv.New64a()
	for _, p := range pieces {
		h.Write([]byte(p))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("msg:%016x", h.Sum64())
}

func TestMessageHashFormat(t *testing.T) {
	got := Extract(nil, []byte(`{"messages":[{"role":"system","content":"S"},{"role":"user","content":"U"},{"role":"assistant","content":"A"}]}`))
	want := IDs{Primary: fnvOf("sS", "uU", "aA"), Fallback: fnvOf("sS", "uU"), Stable: fnvOf("sS", "uU"), Source: SourceMessageHash}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// turns holds the bodies of turns 1, 2 and 3 of one conversation.
type turns [3]string

func TestMessageHashTurns(t *testing.T) {
	families := map[string]turns{
		"openai chat": {
			`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
			`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`,
			`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"},{"role":"assistant","content":"x"},{"role":"user","content":"y"}]}`,
		},
		"claude": {
			`{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"image","source":{}}]}]}`,
			`{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"image","source":{}}]},{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"n","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]}]}`,
			`{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"image","source":{}}]},{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"n","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]},{"role":"assistant","content":"done"}]}`,
		},
		"gemini": {
			`{"systemInstruction":{"parts":[{"text":"sys"}]},"contents":[{"role":"user","parts":[{"text":"q"}]}]}`,
			`{"systemInstruction":{"parts":[{"text":"sys"}]},"contents":[{"role":"user","parts":[{"text":"q"}]},{"role":"model","parts":[{"text":"a"}]},{"role":"user","parts":[{"text":"q2"}]}]}`,
			`{"systemInstruction":{"parts":[{"text":"sys"}]},"contents":[{"role":"user","parts":[{"text":"q"}]},{"role":"model","parts":[{"text":"a"}]},{"role":"user","parts":[{"text":"q2"}]},{"role":"model","parts":[{"text":"a2"}]}]}`,
		},
		"responses": {
			`{"instructions":"sys","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"q"}]}]}`,
			`{"instructions":"sys","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"q"}]},{"type":"reasoning","summary":[]},{"type":"function_call","name":"f","arguments":"{}"},{"type":"function_call_output","output":"o"},{"role":"assistant","content":[{"type":"output_text","text":"a"}]},{"role":"user","content":"q2"}]}`,
			`{"instructions":"sys","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"q"}]},{"type":"reasoning","summary":[]},{"type":"function_call","name":"f","arguments":"{}"},{"type":"function_call_output","output":"o"},{"role":"assistant","content":[{"type":"output_text","text":"a"}]},{"role":"user","content":"q2"},{"type":"message","role":"assistant","content":"a2"}]}`,
		},
		"openai greeting first": {
			`{"messages":[{"role":"assistant","content":"welcome"},{"role":"user","content":"hi"}]}`,
			`{"messages":[{"role":"assistant","content":"welcome"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`,
			`{"messages":[{"role":"assistant","content":"welcome"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"},{"role":"developer","content":"late"}]}`,
		},
	}
	for name, tr := range families {
		t.Run(name, func(t *testing.T) {
			t1 := Extract(nil, []byte(tr[0]))
			t2 := Extract(nil, []byte(tr[1]))
			t3 := Extract(nil, []byte(tr[2]))
			for i, ids := range []IDs{t1, t2, t3} {
				if ids.Source != SourceMessageHash || !strings.HasPrefix(ids.Primary, "msg:") || len(ids.Primary) != 20 {
					t.Fatalf("turn %d: %+v", i+1, ids)
				}
			}
			if t1.Fallback != "" || t1.Stable != t1.Primary {
				t.Errorf("turn 1: %+v", t1)
			}
			if t2.Fallback != t1.Primary || t2.Stable != t1.Stable || t2.Primary == t1.Primary {
				t.Errorf("turn 2 %+v does not follow turn 1 %+v", t2, t1)
			}
			if t3 != t2 {
				t.Errorf("turn 3 %+v differs from turn 2 %+v", t3, t2)
			}
		})
	}
}

func TestMessageHashEquivalences(t *testing.T) {
	same := [][2]string{
		{ // string content and a single text block
			`{"system":"S","messages":[{"role":"user","content":"U"}]}`,
			`{"system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"U"}]}]}`,
		},
		{ // escapes are decoded
			`{"messages":[{"role":"user","content":"é\n"}]}`,
			`{"messages":[{"role":"user","content":"\u00e9\n"}]}`,
		},
		{ // Responses string input and a user message item
			`{"instructions":"S","input":"U"}`,
			`{"instructions":"S","input":[{"role":"user","content":"U"}]}`,
		},
		{ // fields other than the first messages do not matter
			`{"model":"a","messages":[{"role":"user","content":"U"}],"tools":[1]}`,
			`{"messages":[{"role":"user","content":"U"}],"model":"b","stream":true}`,
		},
	}
	for i, p := range same {
		a, b := Extract(nil, []byte(p[0])), Extract(nil, []byte(p[1]))
		if a.Primary == "" || a != b {
			t.Errorf("case %d: %+v != %+v", i, a, b)
		}
	}
	different := [][2]string{
		{`{"system":"S1","messages":[{"role":"user","content":"U"}]}`, `{"system":"S2","messages":[{"role":"user","content":"U"}]}`},
		{`{"messages":[{"role":"user","content":"U1"}]}`, `{"messages":[{"role":"user","content":"U2"}]}`},
		{`{"system":"SU","messages":[{"role":"user","content":""}]}`, `{"system":"S","messages":[{"role":"user","content":"U"}]}`},
	}
	for i, p := range different {
		a, b := Extract(nil, []byte(p[0])), Extract(nil, []byte(p[1]))
		if a.Primary == "" || a.Primary == b.Primary {
			t.Errorf("case %d: both %+v", i, a)
		}
	}
	none := []string{
		`{"system":"S","messages":[]}`,
		`{"system":"S","messages":[{"role":"assistant","content":"A"}]}`,
		`{"contents":[{"role":"model","parts":[{"text":"A"}]}]}`,
		`{"input":[{"type":"function_call_output","output":"o"}]}`,
		`{"messages":"nope"}`,
	}
	for _, body := range none {
		if got := Extract(nil, []byte(body)); got != (IDs{}) {
			t.Errorf("%s: got %+v, want none", body, got)
		}
	}
}

func TestExtractHeaderSkipsBody(t *testing.T) {
	// With the Claude Code header present the body is not needed at all.
	got := Extract(hdr("X-Claude-Code-Session-Id", ccUUID), []byte("not json"))
	if got.Primary != "cc:"+ccUUID {
		t.Fatalf("got %+v", got)
	}
}

func TestBindingModel(t *testing.T) {
	tests := map[string]string{
		"claude-sonnet-4-5":            "claude-sonnet-4-5",
		"gpt-5(high)":                  "gpt-5",
		"gpt-5 (low)":                  "gpt-5",
		"gpt-5-codex(medium)":          "gpt-5-codex",
		"gemini-2.5-pro(8192)":         "gemini-2.5-pro",
		"claude-3-7-sonnet-thinking":   "claude-3-7-sonnet",
		"claude-opus-4-THINKING":       "claude-opus-4",
		"claude-opus-4-thinking(high)": "claude-opus-4",
		"claude-opus-4(high)-thinking": "claude-opus-4",
		"(high)":                       "(high)",
		"-thinking":                    "-thinking",
		"model(a b)":                   "model(a b)",
		"model()":                      "model()",
		"":                             "",
	}
	for in, want := range tests {
		if got := BindingModel(in); got != want {
			t.Errorf("BindingModel(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = BindingModel("claude-opus-4-thinking(high)") }); n != 0 {
		t.Errorf("BindingModel allocates %v times", n)
	}
}

func FuzzExtract(f *testing.F) {
	seeds := []string{
		claudeCodeBody,
		`{"metadata":{"user_id":"user_a_account_b_session_c"}}`,
		`{"metadata":{"user_id":"{\"session_id\":1}"}}`,
		`{"prompt_cache_key":"p","conversation":{"id":"c"}}`,
		`{"messages":[{"role":"system","content":"S"},{"role":"user","content":[{"type":"text","text":"U"}]},{"role":"assistant","content":"A"}]}`,
		`{"systemInstruction":{"parts":[{"text":"s"}]},"contents":[{"parts":[{"text":"q"}]},{"role":"model","parts":[{"text":"a"}]}]}`,
		`{"instructions":"i","input":[{"role":"user","content":"u"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"o"}]}]}`,
		`{"input":"hello"}`,
		`{"a":[[[[{"b":"\\\"}"}]]]]}`,
		`{"messages":[{"role":"user","content":"\ud83d\ude00"}]}`,
		`{"x":tru`, `[`, `"`, `{"a":"\`, `{}`, ``,
	}
	for _, s := range seeds {
		f.Add("", s)
		f.Add("sess", s)
	}
	f.Fuzz(func(t *testing.T, hv string, body string) {
		h := http.Header{}
		if hv != "" {
			h.Set("X-Session-Id", hv)
		}
		ids := Extract(h, []byte(body))
		switch {
		case ids.Primary == "":
			if ids != (IDs{}) {
				t.Fatalf("no primary but %+v", ids)
			}
		case ids.Source == SourceNone || ids.Stable == "":
			t.Fatalf("incomplete %+v", ids)
		case ids.Source != SourceMessageHash && (ids.Fallback != "" || ids.Stable != ids.Primary):
			t.Fatalf("explicit ID with hash fields %+v", ids)
		}
		// A valid JSON body must walk the same way gjson sees it.
		if json.Valid([]byte(body)) && strings.Count(body, "[")+strings.Count(body, "{") < maxDepth {
			var tmp bodyFields
			if isObj := strings.HasPrefix(strings.TrimLeft(body, " \t\r\n"), "{"); isObj != scanBody([]byte(body), &tmp) {
				t.Fatalf("scanBody disagrees with json.Valid on %q", body)
			}
		}
	})
}
