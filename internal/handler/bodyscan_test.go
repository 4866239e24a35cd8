package handler

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// scan runs body through a scanner started for resp, in reads of chunk
// bytes, and returns what it learnt.
func scan(resp *http.Response, resource bool, body string, chunk int) learnt {
	s := new(bodyScanner)
	s.start(resp, resource)
	for b := []byte(body); len(b) > 0; {
		n := min(chunk, len(b))
		s.feed(b[:n])
		b = b[n:]
	}
	return s.finish()
}

func sse(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString(e)
		b.WriteString("\n\n")
	}
	return b.String()
}

// Payloads in each provider's real wire shape.
var (
	anthropicJSON = `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5",` +
		`"content":[{"type":"text","text":"Hello! How can I help? (usage questions welcome)"}],"stop_reason":"end_turn","stop_sequence":null,` +
		`"usage":{"input_tokens":12,"cache_creation_input_tokens":1880,"cache_read_input_tokens":20480,` +
		`"cache_creation":{"ephemeral_5m_input_tokens":1880,"ephemeral_1h_input_tokens":0},"output_tokens":14,"service_tier":"standard"}}`

	anthropicSSE = sse(
		"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"+
			"\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":512,\"cache_read_input_tokens\":9000,\"output_tokens\":1}}}",
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
		"event: ping\ndata: {\"type\": \"ping\"}",
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"the \\\"usage\\\": {field}\"}}",
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}",
		// message_delta repeats the input figures: counted once.
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"+
			"\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":512,\"cache_read_input_tokens\":9000,\"output_tokens\":42}}",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}",
	)

	// Older Anthropic streams: message_delta has output_tokens only.
	anthropicSSEOld = sse(
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":777,\"output_tokens\":1}}}",
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}",
	)

	chatJSON = `{"id":"chatcmpl-abc","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},` +
		`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}`

	chatSSE = sse(
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}`,
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}`,
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1500,"completion_tokens":2,"total_tokens":1502,"prompt_tokens_details":{"cached_tokens":1408}}}`,
		`data: [DONE]`,
	)

	responsesJSON = `{"id":"resp_67cb","object":"response","created_at":1741476542,"status":"completed","model":"gpt-5",` +
		`"output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],` +
		`"usage":{"input_tokens":3000,"input_tokens_details":{"cached_tokens":2944},"output_tokens":10,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":3010}}`

	responsesSSE = sse(
		"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}",
		"event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}",
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}",
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\","+
			"\"usage\":{\"input_tokens\":4096,\"input_tokens_details\":{\"cached_tokens\":3968},\"output_tokens\":5,\"total_tokens\":4101}}}",
	)

	geminiJSON = `{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],` +
		`"usageMetadata":{"promptTokenCount":40000,"candidatesTokenCount":2,"totalTokenCount":40002,"cachedContentTokenCount":32768,` +
		`"promptTokensDetails":[{"modality":"TEXT","tokenCount":40000}],"cacheTokensDetails":[{"modality":"TEXT","tokenCount":32768}]},` +
		`"modelVersion":"gemini-2.5-pro","responseId":"abc"}`

	geminiSSE = sse(
		`data: {"candidates":[{"content":{"parts":[{"text":"H"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":40000,"totalTokenCount":40000,"cachedContentTokenCount":32768},"modelVersion":"gemini-2.5-pro"}`,
		`data: {"candidates":[{"content":{"parts":[{"text":"i"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":40000,"candidatesTokenCount":2,"totalTokenCount":40002,"cachedContentTokenCount":32768},"modelVersion":"gemini-2.5-pro"}`,
	)

	// streamGenerateContent without alt=sse: a JSON array of chunks.
	geminiArray = "[" + `{"candidates":[{"content":{"parts":[{"text":"H"}],"role":"model"},"index":0}]}` + ",\r\n" +
		`{"candidates":[{"content":{"parts":[{"text":"i"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":100,"cachedContentTokenCount":64}}` + "]"
)

func TestUsageScanner(t *testing.T) {
	const ctJSON, ctSSE = "application/json", "text/event-stream"
	cases := []struct {
		name, ct, body string
		status         int
		encoding       string
		want           Usage
		found          bool
	}{
		{"anthropic json", ctJSON, anthropicJSON, 200, "", Usage{12, 14, 20480, 1880}, true},
		{"anthropic sse", ctSSE, anthropicSSE, 200, "", Usage{3, 42, 9000, 512}, true},
		{"anthropic sse, output-only delta", ctSSE, anthropicSSEOld, 200, "", Usage{3, 42, 777, 0}, true},
		{"chat json", "application/json; charset=utf-8", chatJSON, 200, "", Usage{86, 300, 1920, 0}, true},
		{"chat sse", ctSSE + "; charset=utf-8", chatSSE, 200, "", Usage{92, 2, 1408, 0}, true},
		{"responses json", ctJSON, responsesJSON, 200, "", Usage{56, 10, 2944, 0}, true},
		{"responses sse", ctSSE, responsesSSE, 200, "", Usage{128, 5, 3968, 0}, true},
		{"gemini json", ctJSON, geminiJSON, 200, "", Usage{7232, 2, 32768, 0}, true},
		{"gemini sse", ctSSE, geminiSSE, 200, "", Usage{7232, 2, 32768, 0}, true},
		{"gemini json array", ctJSON, geminiArray, 200, "", Usage{36, 0, 64, 0}, true},
		{"gemini thinking", ctJSON, `{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":7,"thoughtsTokenCount":100,"totalTokenCount":117}}`, 200, "", Usage{10, 107, 0, 0}, true},
		{"event stream in upper case", "Text/Event-Stream", chatSSE, 200, "", Usage{92, 2, 1408, 0}, true},
		{"usage without cache", ctJSON, `{"usage":{"input_tokens":5,"output_tokens":1}}`, 200, "", Usage{5, 1, 0, 0}, true},
		// OpenAI's, the Responses API's and Gemini's prompt figures
		// include the cached tokens, which come off Input; Anthropic's do
		// not. A cached figure above the prompt leaves no input, never a
		// negative one.
		{"gemini cache seen after its prompt", ctSSE, sse(
			`data: {"usageMetadata":{"promptTokenCount":500}}`,
			`data: {"usageMetadata":{"promptTokenCount":500,"cachedContentTokenCount":400,"candidatesTokenCount":3}}`), 200, "", Usage{100, 3, 400, 0}, true},
		{"gemini tool-use prompt", ctJSON, `{"usageMetadata":{"promptTokenCount":10,"toolUsePromptTokenCount":5,"cachedContentTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":16}}`, 200, "", Usage{11, 1, 4, 0}, true},
		{"chat cached over prompt", ctJSON, `{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":50}}}`, 200, "", Usage{0, 1, 50, 0}, true},
		{"anthropic read not taken off", ctJSON, `{"usage":{"input_tokens":5,"cache_read_input_tokens":50,"output_tokens":1}}`, 200, "", Usage{5, 1, 50, 0}, true},
		{"no usage", ctJSON, `{"data":[{"embedding":[0.1]}]}`, 200, "", Usage{}, false},
		{"only null usage", ctSSE, sse(`data: {"choices":[],"usage":null}`, `data: [DONE]`), 200, "", Usage{}, false},
		{"error response", ctJSON, anthropicJSON, 400, "", Usage{}, false},
		{"compressed", ctJSON, anthropicJSON, 200, "gzip", Usage{}, false},
		{"other type", "text/plain", anthropicJSON, 200, "", Usage{}, false},
		{"stream without final newline", ctSSE, strings.TrimRight(chatSSE, "\n"), 200, "", Usage{92, 2, 1408, 0}, true},
	}
	for _, tc := range cases {
		for _, chunk := range []int{1, 2, 3, 7, 64, 1 << 20} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tc.name, chunk), func(t *testing.T) {
				resp := &http.Response{StatusCode: tc.status, Header: http.Header{}, ContentLength: -1}
				resp.Header.Set("Content-Type", tc.ct)
				if tc.encoding != "" {
					resp.Header.Set("Content-Encoding", tc.encoding)
				}
				got := scan(resp, false, tc.body, chunk)
				if got.reported != tc.found || got.usage != tc.want {
					t.Fatalf("learnt %+v, want usage %+v (reported %v)", got, tc.want, tc.found)
				}
				if got.resourceID != "" {
					t.Fatalf("resource ID %q read although none was asked for", got.resourceID)
				}
			})
		}
	}
}

func TestUsageScannerBounds(t *testing.T) {
	t.Run("oversized sse line is skipped, later lines still read", func(t *testing.T) {
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, ContentLength: -1}
		big := `data: {"usage":{"cache_read_input_tokens":999999},"pad":"` + strings.Repeat("x", usageLineLimit) + `"}` + "\n\n"
		var s bodyScanner
		s.start(resp, false)
		for b := []byte(big); len(b) > 0; {
			n := min(1000, len(b))
			s.feed(b[:n])
			b = b[n:]
		}
		if cap(s.buf) > usageLineLimit*2 {
			t.Fatalf("carry grew to %d bytes", cap(s.buf))
		}
		s.feed([]byte(`data: {"usage":{"cache_read_input_tokens":5}}` + "\n\n"))
		if got := s.finish(); !got.reported || got.usage.CacheRead != 5 {
			t.Fatalf("learnt %+v, want read 5 only", got)
		}
	})
	t.Run("json body over the limit is not read", func(t *testing.T) {
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: -1}
		var s bodyScanner
		s.start(resp, true)
		s.feed([]byte(`{"pad":"` + strings.Repeat("x", usageJSONLimit) + `",`))
		s.feed([]byte(`"id":"resp_1","object":"response","usage":{"cache_read_input_tokens":5}}`))
		if got := s.finish(); got != (learnt{}) {
			t.Fatalf("learnt %+v, want nothing", got)
		}
		resp.ContentLength = usageJSONLimit + 1
		s.start(resp, true)
		if s.on {
			t.Fatal("scanning a body known to exceed the limit")
		}
	})
	t.Run("zero scanner reads nothing", func(t *testing.T) {
		var s bodyScanner
		s.feed([]byte(responsesJSON))
		if got := s.finish(); got != (learnt{}) {
			t.Fatalf("learnt %+v", got)
		}
	})
}

// TestIsEventStream is the one event-stream test the handler uses.
func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream":                 true,
		"text/event-stream; charset=utf-8":  true,
		" TEXT/Event-Stream ;charset=utf-8": true,
		"application/json":                  false,
		"text/event-streamx":                false,
		"text/plain; text/event-stream":     false,
		"":                                  false,
	} {
		if got := isEventStream(http.Header{"Content-Type": {ct}}); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestCopyResponseReportsUsage runs real mock responses of every family
// through copyResponse with one-byte upstream reads: the client gets the
// body unchanged and the second turn reports the mock's cached tokens once.
func TestCopyResponseReportsUsage(t *testing.T) {
	m := mockllm.New(mockllm.Options{})
	srv := httptest.NewServer(m)
	defer srv.Close()

	conv := `[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more please"}]`
	gem := `{"contents":[{"role":"user","parts":[{"text":"hi"}]},{"role":"model","parts":[{"text":"hello"}]},{"role":"user","parts":[{"text":"more please"}]}]}`
	cases := []struct {
		name, path, body string
		write            bool // the family reports cache writes
	}{
		{"anthropic", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":` + conv + `}`, true},
		{"anthropic stream", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":` + conv + `}`, true},
		{"chat", "/v1/chat/completions", `{"model":"gpt-5","messages":` + conv + `}`, false},
		{"chat stream", "/v1/chat/completions", `{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true},"messages":` + conv + `}`, false},
		{"responses", "/v1/responses", `{"model":"gpt-5","input":` + conv + `}`, false},
		{"responses stream", "/v1/responses", `{"model":"gpt-5","stream":true,"input":` + conv + `}`, false},
		{"gemini", "/v1beta/models/gemini-2.5-pro:generateContent", gem, false},
		{"gemini sse", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", gem, false},
		{"gemini array", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", gem, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "key-" + strconv.Itoa(i)
			send := func() *http.Response {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("X-Api-Key", key)
				req.Header.Set("X-Goog-Api-Key", key)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			var got []Usage
			for turn := 1; turn <= 2; turn++ {
				resp := send()
				whole, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("turn %d: status %d, %v", turn, resp.StatusCode, err)
				}
				resp.Body = io.NopCloser(iotest.OneByteReader(bytes.NewReader(whole)))
				w := httptest.NewRecorder()
				l, err := copyResponse(w, resp, false)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(w.Body.Bytes(), whole) {
					t.Fatal("client body differs from upstream body")
				}
				if !l.reported {
					t.Fatalf("turn %d: no usage learnt", turn)
				}
				got = append(got, l.usage)
			}
			st := m.Stats()[key]
			first, second := got[0], got[1]
			if second.CacheRead <= 0 || first.CacheRead+second.CacheRead != st.CacheReadTokens {
				t.Fatalf("cache reads = %d + %d, mock served %d", first.CacheRead, second.CacheRead, st.CacheReadTokens)
			}
			if tc.write && first.CacheWrite+second.CacheWrite != st.CacheCreationTokens {
				t.Fatalf("cache writes = %d + %d, mock wrote %d", first.CacheWrite, second.CacheWrite, st.CacheCreationTokens)
			}
			// Input + CacheRead + CacheWrite is the whole prompt in every
			// family (OpenAI and Gemini report no cache writes).
			input := first.Input + second.Input + first.CacheRead + second.CacheRead + first.CacheWrite + second.CacheWrite
			if input != st.InputTokens || first.Output+second.Output != st.OutputTokens || st.OutputTokens <= 0 {
				t.Fatalf("input %d, output %d + %d; mock counted %d in, %d out", input, first.Output, second.Output, st.InputTokens, st.OutputTokens)
			}
		})
	}
}

// anthropicStream50 is a realistic Anthropic stream: message_start, 46
// text deltas and the closing events, 50 events in all.
func anthropicStream50() []string {
	events := []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":1250,\"cache_read_input_tokens\":48213,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1250,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
	}
	for i := range 46 {
		events = append(events, fmt.Sprintf("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"word %d of a reasonably long streamed reply, \"}}\n\n", i))
	}
	return append(events,
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":1250,\"cache_read_input_tokens\":48213,\"output_tokens\":512}}\n\n",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	)
}

// BenchmarkUsageScanSSE measures the scanner alone on a 50-event Anthropic
// stream: one read per event (how upstreams flush) and one 32 KiB read
// split at arbitrary points.
func BenchmarkUsageScanSSE(b *testing.B) {
	events := anthropicStream50()
	var all []byte
	perEvent := make([][]byte, len(events))
	for i, e := range events {
		perEvent[i] = []byte(e)
		all = append(all, e...)
	}
	odd := make([][]byte, 0)
	for rest := all; len(rest) > 0; {
		n := min(777, len(rest))
		odd = append(odd, rest[:n])
		rest = rest[n:]
	}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, ContentLength: -1}
	for _, bc := range []struct {
		name   string
		chunks [][]byte
	}{{"per_event", perEvent}, {"777B_reads", odd}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(all)))
			b.ReportAllocs()
			var s bodyScanner
			for b.Loop() {
				s.start(resp, false)
				for _, c := range bc.chunks {
					s.feed(c)
				}
				s.finish()
			}
		})
	}
}

// BenchmarkUsageScanChunk is the common case on its own: one event
// without usage.
func BenchmarkUsageScanChunk(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, ContentLength: -1}
	var s bodyScanner
	s.start(resp, false)
	chunk := []byte(anthropicStream50()[10])
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		s.feed(chunk)
	}
}

func TestScannerReadsResourceIDs(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body, want string
	}{
		{"responses json", "application/json", `{"id":"resp_abc","object":"response","status":"completed","usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":0}}}`, "resp_abc"},
		{"responses sse", "text/event-stream", "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_abc\",\"usage\":null}}\n\n" +
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_abc\",\"object\":\"response\",\"usage\":{\"input_tokens\":3}}}\n\n", "resp_abc"},
		{"message batch", "application/json", `{"id":"msgbatch_01","type":"message_batch","processing_status":"in_progress"}`, "msgbatch_01"},
		{"a message is no resource", "application/json", anthropicJSON, ""},
		{"a non-string id", "application/json", `{"id":7,"object":"response"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {tc.ct}}, ContentLength: -1}
			if got := scan(resp, true, tc.body, 5); got.resourceID != tc.want {
				t.Fatalf("resource ID %q, want %q", got.resourceID, tc.want)
			}
			if got := scan(resp, false, tc.body, 5); got.resourceID != "" {
				t.Fatalf("resource ID %q read although none was asked for", got.resourceID)
			}
		})
	}
}
