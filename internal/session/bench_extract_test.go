package session

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// bigClaudeCodeBody builds a realistic Claude Code request of about size
// bytes: a large system prompt, a tools array with JSON schemas, and many
// turns with long text, tool_use and tool_result blocks full of code (so
// plenty of escaped quotes and newlines). withMetadata adds the session.
func bigClaudeCodeBody(size int, withMetadata bool) []byte {
	code := strings.Repeat("func main() {\n\tfmt.Println(\"hello, \\\"world\\\"\")\n\tif err != nil { return fmt.Errorf(\"x: %w\", err) }\n}\n", 20)
	prose := strings.Repeat("The quick brown fox jumps over the lazy dog while reviewing the diff. ", 40)
	type block = map[string]any
	var tools []block
	for i := 0; i < 20; i++ {
		tools = append(tools, block{
			"name":        fmt.Sprintf("Tool%d", i),
			"description": prose[:800],
			"input_schema": block{
				"type": "object",
				"properties": block{
					"path":    block{"type": "string", "description": "absolute path"},
					"content": block{"type": "string"},
					"limit":   block{"type": "integer", "minimum": 1},
				},
				"required": []string{"path"},
			},
		})
	}
	req := block{
		"model":      "claude-sonnet-4-5",
		"max_tokens": 32000,
		"system": []block{
			{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
			{"type": "text", "text": strings.Repeat(prose, 8), "cache_control": block{"type": "ephemeral"}},
		},
		"tools":  tools,
		"stream": true,
	}
	if withMetadata {
		req["metadata"] = block{"user_id": `{"device_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","account_uuid":"","session_id":"` + ccUUID + `"}`}
	}
	turn := func(i int) []block {
		return []block{
			{"role": "user", "content": []block{{"type": "text", "text": fmt.Sprintf("step %d: %s", i, prose)}}},
			{"role": "assistant", "content": []block{
				{"type": "text", "text": prose[:500]},
				{"type": "tool_use", "id": fmt.Sprintf("toolu_%04d", i), "name": "Read", "input": block{"path": "/src/main.go"}},
			}},
			{"role": "user", "content": []block{
				{"type": "tool_result", "tool_use_id": fmt.Sprintf("toolu_%04d", i), "content": code},
			}},
			{"role": "assistant", "content": []block{{"type": "text", "text": prose}}},
		}
	}
	head, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	one, err := json.Marshal(turn(0))
	if err != nil {
		panic(err)
	}
	var msgs []block
	for i := 0; i <= (size-len(head))/len(one); i++ {
		msgs = append(msgs, turn(i)...)
	}
	req["messages"] = append(msgs, block{"role": "user", "content": "continue"})
	body, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	return body
}

func TestBigBody(t *testing.T) {
	body := bigClaudeCodeBody(1<<20, true)
	if got := Extract(nil, body); got.Primary != "cc:"+ccUUID {
		t.Fatalf("with metadata: %+v", got)
	}
	got := Extract(nil, bigClaudeCodeBody(1<<20, false))
	if got.Source != SourceMessageHash || got.Fallback == "" {
		t.Fatalf("without metadata: %+v", got)
	}
}

func BenchmarkExtractClaudeCode1MB(b *testing.B) {
	body := bigClaudeCodeBody(1<<20, true)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if Extract(nil, body).Source != SourceClaudeCode {
			b.Fatal("no session")
		}
	}
}

func BenchmarkExtractMessageHash1MB(b *testing.B) {
	body := bigClaudeCodeBody(1<<20, false)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if Extract(nil, body).Source != SourceMessageHash {
			b.Fatal("no hash")
		}
	}
}
