package mockllm

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
)

const (
	anthropicBody = `{"model":"claude-sonnet-4-5","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"hi"}]}`
	chatBody      = `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`
	responsesBody = `{"model":"gpt-5-codex","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}`
	geminiBody    = `{"systemInstruction":{"parts":[{"text":"be brief"}]},"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
)

func withStream(body string) string {
	return strings.Replace(body, "{", `{"stream":true,`, 1)
}

func TestAnthropicMessages(t *testing.T) {
	_, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: k1"), 200)
	if !strings.HasPrefix(get(v, "id").(string), "msg_") || get(v, "type") != "message" || get(v, "role") != "assistant" {
		t.Fatalf("bad message envelope: %v", v)
	}
	text, _ := get(v, "content", 0, "text").(string)
	if get(v, "content", 0, "type") != "text" || !strings.Contains(text, "claude-sonnet-4-5") {
		t.Fatalf("content %v", get(v, "content"))
	}
	if get(v, "stop_reason") != "end_turn" {
		t.Fatalf("stop_reason %v", get(v, "stop_reason"))
	}
	for _, k := range []string{"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} {
		if _, ok := get(v, "usage", k).(float64); !ok {
			t.Fatalf("usage.%s missing: %v", k, get(v, "usage"))
		}
	}
	if num(get(v, "usage", "output_tokens")) == 0 || num(get(v, "usage", "input_tokens")) == 0 {
		t.Fatalf("usage %v", get(v, "usage"))
	}

	events := readSSE(t, do(t, "POST", ts.URL+"/v1/messages", withStream(anthropicBody), "x-api-key: k1"))
	want := []string{"message_start", "content_block_start"}
	for range DefaultDeltas {
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "message_delta", "message_stop")
	if got := names(events); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	var streamed strings.Builder
	for _, e := range events {
		d := decode(t, e.data)
		if d["type"] != e.name {
			t.Fatalf("event %s has type %v", e.name, d["type"])
		}
		if e.name == "content_block_delta" {
			streamed.WriteString(get(d, "delta", "text").(string))
		}
	}
	if streamed.String() != text {
		t.Fatalf("streamed %q, non-streamed %q", streamed.String(), text)
	}
	start := decode(t, events[0].data)
	if !strings.HasPrefix(get(start, "message", "id").(string), "msg_") || get(start, "message", "usage", "input_tokens") == nil {
		t.Fatalf("message_start %v", start)
	}
	delta := decode(t, events[len(events)-2].data)
	if get(delta, "delta", "stop_reason") != "end_turn" || num(get(delta, "usage", "output_tokens")) == 0 {
		t.Fatalf("message_delta %v", delta)
	}

	v = readJSON(t, do(t, "POST", ts.URL+"/v1/messages/count_tokens", anthropicBody, "x-api-key: k1"), 200)
	if num(v["input_tokens"]) <= 0 {
		t.Fatalf("count_tokens %v", v)
	}

	v = readJSON(t, do(t, "POST", ts.URL+"/v1/messages", `{"messages":[]}`, "x-api-key: k1"), 400)
	if v["type"] != "error" || get(v, "error", "type") != "invalid_request_error" {
		t.Fatalf("missing model: %v", v)
	}
}

func TestDeltasOption(t *testing.T) {
	_, ts := newTest(t, Options{Deltas: 12})
	events := readSSE(t, do(t, "POST", ts.URL+"/v1/messages", withStream(anthropicBody), "x-api-key: k1"))
	n := 0
	var text strings.Builder
	for _, e := range events {
		if e.name == "content_block_delta" {
			n++
			text.WriteString(get(decode(t, e.data), "delta", "text").(string))
		}
	}
	if n != 12 || !strings.Contains(text.String(), "claude-sonnet-4-5") {
		t.Fatalf("%d deltas, text %q", n, text.String())
	}
}

func TestChatCompletions(t *testing.T) {
	_, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1"), 200)
	if !strings.HasPrefix(v["id"].(string), "chatcmpl-") || v["object"] != "chat.completion" || v["model"] != "gpt-4o" {
		t.Fatalf("envelope %v", v)
	}
	text, _ := get(v, "choices", 0, "message", "content").(string)
	if !strings.Contains(text, "gpt-4o") || get(v, "choices", 0, "finish_reason") != "stop" || get(v, "choices", 0, "message", "role") != "assistant" {
		t.Fatalf("choices %v", v["choices"])
	}
	u := v["usage"]
	if num(get(u, "prompt_tokens")) == 0 || num(get(u, "total_tokens")) != num(get(u, "prompt_tokens"))+num(get(u, "completion_tokens")) {
		t.Fatalf("usage %v", u)
	}
	if _, ok := get(u, "prompt_tokens_details", "cached_tokens").(float64); !ok {
		t.Fatalf("usage.prompt_tokens_details.cached_tokens missing: %v", u)
	}

	for _, includeUsage := range []bool{false, true} {
		body := withStream(chatBody)
		if includeUsage {
			body = strings.Replace(body, "{", `{"stream_options":{"include_usage":true},`, 1)
		}
		events := readSSE(t, do(t, "POST", ts.URL+"/v1/chat/completions", body, "Authorization: Bearer k1"))
		if last := events[len(events)-1]; last.data != "[DONE]" || last.name != "" {
			t.Fatalf("last event %+v", last)
		}
		chunks := events[:len(events)-1]
		var streamed strings.Builder
		sawUsage, sawStop := false, false
		for i, e := range chunks {
			d := decode(t, e.data)
			if d["object"] != "chat.completion.chunk" || d["id"] != get(decode(t, chunks[0].data), "id") {
				t.Fatalf("chunk %v", d)
			}
			if c, ok := get(d, "choices", 0, "delta", "content").(string); ok {
				streamed.WriteString(c)
			}
			if get(d, "choices", 0, "finish_reason") == "stop" {
				sawStop = true
			}
			if u, ok := d["usage"].(map[string]any); ok {
				if i != len(chunks)-1 || len(d["choices"].([]any)) != 0 {
					t.Fatalf("usage chunk must be the last, with no choices: %v", d)
				}
				if _, ok := get(u, "prompt_tokens_details", "cached_tokens").(float64); !ok {
					t.Fatalf("usage %v", u)
				}
				sawUsage = true
			}
		}
		if get(decode(t, chunks[0].data), "choices", 0, "delta", "role") != "assistant" {
			t.Fatalf("first chunk %s", chunks[0].data)
		}
		if sawUsage != includeUsage || !sawStop || streamed.String() != text {
			t.Fatalf("include_usage=%v: usage %v stop %v text %q", includeUsage, sawUsage, sawStop, streamed.String())
		}
	}
}

func TestCompletions(t *testing.T) {
	_, ts := newTest(t, Options{})
	body := `{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi"}`
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/completions", body, "Authorization: Bearer k1"), 200)
	if v["object"] != "text_completion" || !strings.Contains(get(v, "choices", 0, "text").(string), "gpt-3.5-turbo-instruct") || num(get(v, "usage", "prompt_tokens")) == 0 {
		t.Fatalf("completion %v", v)
	}
	events := readSSE(t, do(t, "POST", ts.URL+"/v1/completions", withStream(body), "Authorization: Bearer k1"))
	if len(events) != DefaultDeltas+1 || events[len(events)-1].data != "[DONE]" {
		t.Fatalf("events %v", events)
	}
	if get(decode(t, events[DefaultDeltas-1].data), "choices", 0, "finish_reason") != "stop" {
		t.Fatalf("last chunk %s", events[DefaultDeltas-1].data)
	}
}

func TestEmbeddings(t *testing.T) {
	_, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/embeddings", `{"model":"text-embedding-3-small","input":["a","b"],"dimensions":8}`, "Authorization: Bearer k1"), 200)
	data := v["data"].([]any)
	if v["object"] != "list" || len(data) != 2 || get(data, 1, "index") != 1.0 || len(get(data, 0, "embedding").([]any)) != 8 {
		t.Fatalf("embeddings %v", v)
	}
	if num(get(v, "usage", "prompt_tokens")) == 0 {
		t.Fatalf("usage %v", v["usage"])
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/embeddings", `{"model":"m","input":"a","encoding_format":"base64"}`, "Authorization: Bearer k1"), 200)
	raw, err := base64.StdEncoding.DecodeString(get(v, "data", 0, "embedding").(string))
	if err != nil || len(raw) != 4*defaultEmbeddingDims {
		t.Fatalf("base64 embedding: %v %d", err, len(raw))
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/embeddings", `{"model":"m","input":[1,2,3]}`, "Authorization: Bearer k1"), 200)
	if len(v["data"].([]any)) != 1 {
		t.Fatalf("token array input gives one embedding: %v", v)
	}
}

func TestModels(t *testing.T) {
	_, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "GET", ts.URL+"/v1/models", "", "Authorization: Bearer k1"), 200)
	if v["object"] != "list" || get(v, "data", 0, "object") != "model" {
		t.Fatalf("openai models %v", v)
	}
	v = readJSON(t, do(t, "GET", ts.URL+"/v1/models", "", "x-api-key: k1", "anthropic-version: 2023-06-01"), 200)
	if get(v, "data", 0, "type") != "model" || v["has_more"] != false {
		t.Fatalf("anthropic models %v", v)
	}
	v = readJSON(t, do(t, "GET", ts.URL+"/v1/models/gpt-4o", "", "Authorization: Bearer k1"), 200)
	if v["id"] != "gpt-4o" {
		t.Fatalf("model %v", v)
	}
	v = readJSON(t, do(t, "GET", ts.URL+"/v1beta/models", "", "x-goog-api-key: k1"), 200)
	if get(v, "models", 0, "name") != "models/gemini-2.5-pro" {
		t.Fatalf("gemini models %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/models", "{}", "Authorization: Bearer k1"), 405)
	if get(v, "error", "message") == nil {
		t.Fatalf("405 %v", v)
	}
}

func TestResponses(t *testing.T) {
	_, ts := newTest(t, Options{})
	for _, path := range []string{"/v1/responses", "/backend-api/codex/responses"} {
		v := readJSON(t, do(t, "POST", ts.URL+path, responsesBody, "Authorization: Bearer k1"), 200)
		text, _ := get(v, "output", 0, "content", 0, "text").(string)
		if !strings.HasPrefix(v["id"].(string), "resp_") || v["object"] != "response" || v["status"] != "completed" ||
			get(v, "output", 0, "type") != "message" || get(v, "output", 0, "content", 0, "type") != "output_text" || !strings.Contains(text, "gpt-5-codex") {
			t.Fatalf("%s: response %v", path, v)
		}
		if _, ok := get(v, "usage", "input_tokens_details", "cached_tokens").(float64); !ok || num(get(v, "usage", "input_tokens")) == 0 {
			t.Fatalf("%s: usage %v", path, v["usage"])
		}

		events := readSSE(t, do(t, "POST", ts.URL+path, withStream(responsesBody), "Authorization: Bearer k1"))
		want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
		for range DefaultDeltas {
			want = append(want, "response.output_text.delta")
		}
		want = append(want, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
		if got := names(events); !slices.Equal(got, want) {
			t.Fatalf("%s: events %v, want %v", path, got, want)
		}
		var streamed strings.Builder
		for i, e := range events {
			d := decode(t, e.data)
			if d["type"] != e.name || num(d["sequence_number"]) != i {
				t.Fatalf("%s: event %d %s: %v", path, i, e.name, d)
			}
			if e.name == "response.output_text.delta" {
				streamed.WriteString(d["delta"].(string))
			}
		}
		done := decode(t, events[len(events)-1].data)
		if streamed.String() != text || get(done, "response", "status") != "completed" || num(get(done, "response", "usage", "output_tokens")) == 0 {
			t.Fatalf("%s: streamed %q, completed %v", path, streamed.String(), done)
		}
		if get(done, "response", "id") != get(decode(t, events[0].data), "response", "id") {
			t.Fatalf("%s: response id changed", path)
		}
	}
}

func TestGemini(t *testing.T) {
	_, ts := newTest(t, Options{})
	for _, prefix := range []string{"/v1beta/models/", "/v1/models/"} {
		base := ts.URL + prefix + "gemini-2.5-flash"
		v := readJSON(t, do(t, "POST", base+":generateContent", geminiBody, "x-goog-api-key: k1"), 200)
		text, _ := get(v, "candidates", 0, "content", "parts", 0, "text").(string)
		if get(v, "candidates", 0, "content", "role") != "model" || get(v, "candidates", 0, "finishReason") != "STOP" || !strings.Contains(text, "gemini-2.5-flash") {
			t.Fatalf("%s: %v", prefix, v)
		}
		if um := get(v, "usageMetadata"); num(get(um, "promptTokenCount")) == 0 || num(get(um, "totalTokenCount")) == 0 {
			t.Fatalf("%s: usageMetadata %v", prefix, um)
		}

		events := readSSE(t, do(t, "POST", base+":streamGenerateContent?alt=sse", geminiBody, "x-goog-api-key: k1"))
		if len(events) != DefaultDeltas {
			t.Fatalf("%s: %d events", prefix, len(events))
		}
		var streamed strings.Builder
		for i, e := range events {
			d := decode(t, e.data)
			streamed.WriteString(get(d, "candidates", 0, "content", "parts", 0, "text").(string))
			last := i == len(events)-1
			if (get(d, "usageMetadata") != nil) != last || (get(d, "candidates", 0, "finishReason") == "STOP") != last {
				t.Fatalf("%s: chunk %d: %v", prefix, i, d)
			}
		}
		if streamed.String() != text {
			t.Fatalf("%s: streamed %q", prefix, streamed.String())
		}

		resp := do(t, "POST", base+":streamGenerateContent", geminiBody, "x-goog-api-key: k1")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var arr []map[string]any
		if err := json.Unmarshal(b, &arr); err != nil || len(arr) != DefaultDeltas || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: JSON array stream %q: %v", prefix, b, err)
		}
		if get(arr[len(arr)-1], "usageMetadata", "promptTokenCount") == nil {
			t.Fatalf("%s: last chunk %v", prefix, arr[len(arr)-1])
		}

		v = readJSON(t, do(t, "POST", base+":countTokens", geminiBody, "x-goog-api-key: k1"), 200)
		if num(v["totalTokens"]) == 0 {
			t.Fatalf("%s: countTokens %v", prefix, v)
		}
	}
	v := readJSON(t, do(t, "POST", ts.URL+"/v1beta/models/gemini-2.5-flash:generateContent", `{"contents":[]}`, "x-goog-api-key: k1"), 400)
	if get(v, "error", "status") != "INVALID_ARGUMENT" {
		t.Fatalf("400 %v", v)
	}
}

func TestUnknownPath(t *testing.T) {
	_, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "POST", ts.URL+"/v2/nothing", "{}", "Authorization: Bearer k1"), 404)
	if get(v, "error", "message") == nil {
		t.Fatalf("404 %v", v)
	}
}

func TestInvalidBody(t *testing.T) {
	_, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", "not json", "Authorization: Bearer k1"), 400)
	if get(v, "error", "type") != "invalid_request_error" {
		t.Fatalf("400 %v", v)
	}
}

func TestJSONEscaping(t *testing.T) {
	_, ts := newTest(t, Options{})
	model := "we\"ird\\mo\ndel\x01\xff"
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []any{map[string]any{"role": "user", "content": "x"}}})
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", string(body), "Authorization: Bearer k1"), 200)
	if !strings.HasPrefix(v["model"].(string), "we\"ird\\mo\ndel\x01") {
		t.Fatalf("model %q", v["model"])
	}
	if got := get(v, "choices", 0, "message", "content").(string); !strings.Contains(got, "we\"ird") {
		t.Fatalf("content %q", got)
	}
}
