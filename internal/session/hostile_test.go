package session

import (
	"net/http"
	"strings"
	"testing"
)

// deepNesting is more '[' than the Go stack can recurse through: validating
// it recursively (as gjson.Valid does) kills the process with "fatal
// error: stack overflow", which no recover catches. It stays under the
// default max_request_body of 32 MiB.
const deepNesting = 30_000_000

// TestExtractSurvivesDeepNesting feeds millions of '[' wherever session
// extraction looks. Each case must return (a crash takes the whole test
// binary down) with the signal the spec says wins.
func TestExtractSurvivesDeepNesting(t *testing.T) {
	brackets := strings.Repeat("[", deepNesting)
	for _, tc := range []struct {
		name string
		h    http.Header
		body string
		want string
	}{
		// metadata.user_id is a string holding what looks like JSON.
		{"user_id json text", hdr("X-Session-Id", "xs"), `{"metadata":{"user_id":"{\"a\":` + brackets + `"}}`, "sid:xs"},
		{"user_id json text with session_id first", nil,
			`{"metadata":{"user_id":"{\"session_id\":\"s\",\"a\":` + brackets + `"},"prompt_cache_key":"pk"}`, "pck:pk"},
		{"user_id brackets", nil, `{"metadata":{"user_id":"` + brackets + `"},"prompt_cache_key":"pk"}`, "pck:pk"},
		{"conversation json text", nil, `{"conversation":"{` + brackets + `","prompt_cache_key":"pk"}`, "pck:pk"},
		// The body itself nests too deep: no body signal, headers still work.
		{"nested body", hdr("Session-Id", "cx"), `{"messages":` + brackets, "codex:cx"},
		{"nested metadata", hdr("Session-Id", "cx"), `{"metadata":{"user_id":` + brackets + `}}`, "codex:cx"},
		{"nested top level", hdr("Session-Id", "cx"), brackets, "codex:cx"},
		{"nested objects", hdr("Session-Id", "cx"), strings.Repeat(`{"a":`, deepNesting/5), "codex:cx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Extract(tc.h, []byte(tc.body)); got.Primary != tc.want {
				t.Errorf("Primary = %q, want %q", got.Primary, tc.want)
			}
		})
	}
}

// TestClaudeCodeUserIDIsBounded: the JSON form of metadata.user_id is read
// only up to maxUserIDLen bytes, where Claude Code's ~150 bytes fit.
func TestClaudeCodeUserIDIsBounded(t *testing.T) {
	userID := func(pad int) string {
		return `{"metadata":{"user_id":"{\"device_id\":\"` + strings.Repeat("d", pad) + `\",\"session_id\":\"` + ccUUID + `\"}"},"prompt_cache_key":"pk"}`
	}
	if got := Extract(nil, []byte(userID(64))); got.Primary != "cc:"+ccUUID {
		t.Errorf("Claude Code user_id: %q", got.Primary)
	}
	if got := Extract(nil, []byte(userID(maxUserIDLen))); got.Primary != "pck:pk" {
		t.Errorf("user_id over %d bytes was used: %q", maxUserIDLen, got.Primary)
	}
}

// TestHugeExplicitValuesAreIgnored: explicit IDs over 256 bytes are ignored
// (SPEC 5.5) without being decoded; extraction falls through to the next
// signal.
func TestHugeExplicitValuesAreIgnored(t *testing.T) {
	huge := strings.Repeat("x", 8<<20)
	escaped := strings.Repeat(`\u0041`, 1<<20)
	body := `{"metadata":{"user_id":"` + huge + `"},"prompt_cache_key":"` + escaped + `","conversation_id":"` + huge +
		`","conversation":{"id":"` + huge + `"},"messages":[{"role":"user","content":"hi"}]}`
	got := Extract(nil, []byte(body))
	if got.Source != SourceMessageHash {
		t.Fatalf("got %+v, want the message hash", got)
	}
	if got := Extract(nil, []byte(`{"conversation":{"id":"c-1"},"prompt_cache_key":"`+escaped+`"}`)); got.Primary != "conv:c-1" {
		t.Errorf("conversation.id after a huge prompt_cache_key: %q", got.Primary)
	}
}

// TestNestedPartsAreNotDescended: a Gemini content's parts are an array; an
// object in their place is not walked again, level after level (that made
// the work grow with nesting depth times body size).
func TestNestedPartsAreNotDescended(t *testing.T) {
	contents := `"contents":[{"role":"user","parts":[{"text":"hi"}]}]`
	plain := Extract(nil, []byte(`{`+contents+`}`))
	nested := Extract(nil, []byte(`{"systemInstruction":`+strings.Repeat(`{"parts":`, 1000)+`[{"text":"sys"}]`+strings.Repeat("}", 1000)+`,`+contents+`}`))
	if nested.Primary != plain.Primary {
		t.Errorf("nested parts objects were hashed: %q vs %q", nested.Primary, plain.Primary)
	}
	one := Extract(nil, []byte(`{"systemInstruction":{"parts":[{"text":"sys"}]},`+contents+`}`))
	if one.Primary == plain.Primary {
		t.Errorf("a Gemini systemInstruction was not hashed")
	}
}
