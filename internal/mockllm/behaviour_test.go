package mockllm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCredentialDetection(t *testing.T) {
	_, ts := newTest(t, Options{})
	cases := []struct {
		name, path, body, header string
		query                    string
	}{
		{"x-api-key", "/v1/messages", anthropicBody, "x-api-key: key-a", ""},
		{"bearer", "/v1/chat/completions", chatBody, "Authorization: Bearer key-b", ""},
		{"bearer lowercase", "/v1/chat/completions", chatBody, "Authorization: bearer key-b2", ""},
		{"x-goog-api-key", "/v1beta/models/gemini-2.5-pro:generateContent", geminiBody, "x-goog-api-key: key-c", ""},
		{"query key", "/v1beta/models/gemini-2.5-pro:generateContent", geminiBody, "", "?key=key-d"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.header != "" {
				headers = append(headers, tc.header)
			}
			resp := do(t, "POST", ts.URL+tc.path+tc.query, tc.body, headers...)
			readJSON(t, resp, 200)
			want := tc.header[strings.LastIndexAny(tc.header, " ")+1:]
			if tc.query != "" {
				want = strings.TrimPrefix(tc.query, "?key=")
			}
			if got := resp.Header.Get("X-Mock-Credential"); got != want {
				t.Fatalf("X-Mock-Credential %q, want %q", got, want)
			}
		})
	}
}

func TestMissingCredential(t *testing.T) {
	s, ts := newTest(t, Options{})
	v := readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody), 401)
	if v["type"] != "error" || get(v, "error", "type") != "authentication_error" {
		t.Fatalf("anthropic 401 %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody), 401)
	if get(v, "error", "message") == nil || get(v, "error", "type") == nil {
		t.Fatalf("openai 401 %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1beta/models/g:generateContent", geminiBody), 401)
	if num(get(v, "error", "code")) != 401 || get(v, "error", "status") != "UNAUTHENTICATED" {
		t.Fatalf("gemini 401 %v", v)
	}
	if len(s.Stats()) != 0 {
		t.Fatalf("stats without credential: %v", s.Stats())
	}
	if n := len(s.Requests()); n != 3 {
		t.Fatalf("%d recorded requests, want 3", n)
	}
}

func TestKnownKeys(t *testing.T) {
	s, ts := newTest(t, Options{Keys: map[string]string{"sk-alpha": "alpha", "sk-beta": "beta"}})
	resp := do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-alpha")
	readJSON(t, resp, 200)
	if got := resp.Header.Get("X-Mock-Credential"); got != "alpha" {
		t.Fatalf("label %q", got)
	}
	resp = do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-wrong")
	v := readJSON(t, resp, 401)
	if get(v, "error", "message") != "invalid x-api-key" || get(v, "error", "type") != "authentication_error" {
		t.Fatalf("unknown key %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer sk-wrong"), 401)
	if get(v, "error", "code") != "invalid_api_key" {
		t.Fatalf("openai unknown key %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1beta/models/g:generateContent?key=sk-wrong", geminiBody), 401)
	if get(v, "error", "status") != "UNAUTHENTICATED" {
		t.Fatalf("gemini unknown key %v", v)
	}
	if st := s.Stats()["alpha"]; st.Requests != 1 {
		t.Fatalf("alpha stats %+v", st)
	}
}

func TestRecording(t *testing.T) {
	s, ts := newTest(t, Options{MaxRecorded: 3})
	for i := range 5 {
		readJSON(t, do(t, "POST", fmt.Sprintf("%s/v1/chat/completions?n=%d", ts.URL, i), chatBody, "Authorization: Bearer k1", "X-Trace: t"), 200)
	}
	reqs := s.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.RawQuery != fmt.Sprintf("n=%d", i+2) || r.Method != "POST" || r.Path != "/v1/chat/completions" ||
			r.Body != chatBody || r.Key != "k1" || r.Credential != "k1" || r.Header.Get("X-Trace") != "t" || r.Time.IsZero() {
			t.Fatalf("request %d: %+v", i, r)
		}
	}

	resp := do(t, "GET", ts.URL+"/_mock/requests", "")
	var viaHTTP []Request
	if err := json.NewDecoder(resp.Body).Decode(&viaHTTP); err != nil || len(viaHTTP) != 3 || viaHTTP[2].Body != chatBody {
		t.Fatalf("GET /_mock/requests: %v %+v", err, viaHTTP)
	}
	resp.Body.Close()

	resp = do(t, "POST", ts.URL+"/_mock/reset", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || len(s.Requests()) != 0 || len(s.Stats()) != 0 {
		t.Fatalf("reset: %d %d %d", resp.StatusCode, len(s.Requests()), len(s.Stats()))
	}
	readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1"), 200)
	s.Reset()
	if len(s.Requests()) != 0 {
		t.Fatal("Reset kept requests")
	}
}

func TestRecordingDisabled(t *testing.T) {
	s, ts := newTest(t, Options{MaxRecorded: -1})
	readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1"), 200)
	if len(s.Requests()) != 0 {
		t.Fatal("recorded with MaxRecorded < 0")
	}
	if s.Stats()["k1"].Requests != 1 {
		t.Fatal("stats not kept")
	}
}

func TestFaultStatusAndHeaders(t *testing.T) {
	s, ts := newTest(t, Options{Keys: map[string]string{"sk-1": "one", "sk-2": "two"}})
	s.SetFault("sk-1", Fault{Status: 429, Headers: map[string]string{"Retry-After": "7", "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z"}})

	resp := do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-1")
	v := readJSON(t, resp, 429)
	if resp.Header.Get("Retry-After") != "7" || resp.Header.Get("Anthropic-Ratelimit-Requests-Reset") == "" || resp.Header.Get("X-Mock-Credential") != "one" {
		t.Fatalf("headers %v", resp.Header)
	}
	if v["type"] != "error" || get(v, "error", "type") != "rate_limit_error" {
		t.Fatalf("anthropic 429 %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer sk-1"), 429)
	if get(v, "error", "code") != "rate_limit_exceeded" || get(v, "error", "message") == nil {
		t.Fatalf("openai 429 %v", v)
	}
	v = readJSON(t, do(t, "POST", ts.URL+"/v1beta/models/g:generateContent", geminiBody, "x-goog-api-key: sk-1"), 429)
	if num(get(v, "error", "code")) != 429 || get(v, "error", "status") != "RESOURCE_EXHAUSTED" {
		t.Fatalf("gemini 429 %v", v)
	}
	// Other credentials are unaffected.
	readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-2"), 200)

	// A custom body, a fault by label, and a fault for any key.
	s.SetFault("two", Fault{Status: 529, Body: `{"custom":true}`})
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-2"), 529)
	if v["custom"] != true {
		t.Fatalf("custom body %v", v)
	}
	s.ClearFaults()
	s.SetFault(AnyKey, Fault{Status: 503})
	v = readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-2"), 503)
	if get(v, "error", "type") != "overloaded_error" {
		t.Fatalf("503 %v", v)
	}
	s.ClearFaults()
	readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: sk-1"), 200)

	st := s.Stats()["one"]
	if st.Requests != 4 || st.Faults != 3 {
		t.Fatalf("stats %+v", st)
	}
	reqs := s.Requests()
	if !reqs[0].Fault || reqs[len(reqs)-1].Fault {
		t.Fatal("Request.Fault not recorded")
	}
}

func TestFaultTimes(t *testing.T) {
	s, ts := newTest(t, Options{})
	s.SetFault("k1", Fault{Status: 500, Times: 2})
	var got []int
	for range 4 {
		resp := do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if fmt.Sprint(got) != "[500 500 200 200]" {
		t.Fatalf("statuses %v", got)
	}
	if f := s.Faults()["k1"]; f.Times != 0 {
		t.Fatalf("remaining %d", f.Times)
	}
}

func TestFaultDropAfterEvents(t *testing.T) {
	s, ts := newTest(t, Options{})
	s.SetFault("k1", Fault{DropAfterEvents: 2, Times: 1})
	resp := do(t, "POST", ts.URL+"/v1/messages", withStream(anthropicBody), "x-api-key: k1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events, err := parseSSE(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("truncated stream read without error")
	}
	if len(events) != 2 || events[0].name != "message_start" || events[1].name != "content_block_start" {
		t.Fatalf("events before the drop: %v", names(events))
	}
	// Times: 1 — the next stream is complete.
	events = readSSE(t, do(t, "POST", ts.URL+"/v1/messages", withStream(anthropicBody), "x-api-key: k1"))
	if events[len(events)-1].name != "message_stop" {
		t.Fatalf("events %v", names(events))
	}

	// Non-streaming responses are cut in the middle.
	s.SetFault("k1", Fault{DropAfterEvents: 1, Times: 1})
	resp = do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1")
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("truncated body read without error")
	}
}

func TestFaultRefuse(t *testing.T) {
	s, ts := newTest(t, Options{})
	s.SetFault("k1", Fault{Refuse: true, Times: 1})
	req, _ := http.NewRequest("POST", ts.URL+"/v1/messages", strings.NewReader(anthropicBody))
	req.Header.Set("x-api-key", "k1")
	resp, err := ts.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("refused request got status %d", resp.StatusCode)
	}
	readJSON(t, do(t, "POST", ts.URL+"/v1/messages", anthropicBody, "x-api-key: k1"), 200)
}

func TestFaultsOverHTTP(t *testing.T) {
	s, ts := newTest(t, Options{})
	resp := do(t, "POST", ts.URL+"/_mock/faults", `{"key":"k1","status":429,"headers":{"Retry-After":"3"},"delay":"1ms","times":1}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /_mock/faults: %d", resp.StatusCode)
	}
	f := s.Faults()["k1"]
	if f.Status != 429 || f.Delay != time.Millisecond || f.Times != 1 || f.Headers["Retry-After"] != "3" {
		t.Fatalf("fault %+v", f)
	}
	resp = do(t, "POST", ts.URL+"/_mock/faults", `{"key":"k2","status":500,"delay":2}`)
	resp.Body.Close()
	if s.Faults()["k2"].Delay != 2*time.Millisecond {
		t.Fatalf("numeric delay %+v", s.Faults()["k2"])
	}
	v := readJSON(t, do(t, "GET", ts.URL+"/_mock/faults", ""), 200)
	if get(v, "k1", "status") != 429.0 || get(v, "k1", "delay") != "1ms" {
		t.Fatalf("GET /_mock/faults %v", v)
	}
	resp = do(t, "POST", ts.URL+"/v1/chat/completions", chatBody, "Authorization: Bearer k1")
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("faulted request %d %v", resp.StatusCode, resp.Header)
	}
	resp = do(t, "DELETE", ts.URL+"/_mock/faults?key=k2", "")
	resp.Body.Close()
	if _, ok := s.Faults()["k2"]; ok {
		t.Fatal("DELETE ?key= kept the fault")
	}
	resp = do(t, "DELETE", ts.URL+"/_mock/faults", "")
	resp.Body.Close()
	if len(s.Faults()) != 0 {
		t.Fatal("DELETE kept faults")
	}
	readJSON(t, do(t, "POST", ts.URL+"/_mock/faults", `{"status":429}`), 400)
	readJSON(t, do(t, "POST", ts.URL+"/_mock/faults", `{"key":"x","delay":"soon"}`), 400)
}

// conversation builds Anthropic request bodies for successive turns.
func anthropicTurn(turns int, cacheControlLast bool) string {
	var msgs []any
	for i := range turns {
		if i > 0 {
			msgs = append(msgs, map[string]any{"role": "assistant", "content": fmt.Sprintf("answer %d", i)})
		}
		part := map[string]any{"type": "text", "text": fmt.Sprintf("question %d with some padding text to count", i)}
		if cacheControlLast && i == turns-1 {
			part["cache_control"] = map[string]any{"type": "ephemeral"}
		}
		msgs = append(msgs, map[string]any{"role": "user", "content": []any{part}})
	}
	b, _ := json.Marshal(map[string]any{
		"model":    "claude-sonnet-4-5",
		"system":   []any{map[string]any{"type": "text", "text": "You are a helpful assistant.", "cache_control": map[string]any{"type": "ephemeral"}}},
		"messages": msgs,
	})
	return string(b)
}

func TestPromptCacheAnthropic(t *testing.T) {
	s, ts := newTest(t, Options{})
	usageOf := func(body, key string) map[string]any {
		return readJSON(t, do(t, "POST", ts.URL+"/v1/messages", body, "x-api-key: "+key), 200)["usage"].(map[string]any)
	}
	u1 := usageOf(anthropicTurn(1, true), "k1")
	if num(u1["cache_read_input_tokens"]) != 0 || num(u1["input_tokens"])+num(u1["cache_creation_input_tokens"]) == 0 {
		t.Fatalf("turn 1 %v", u1)
	}
	// Turn 2 on the same key reads turn 1's prompt from the cache, even
	// though the cache_control marker moved to the new last message.
	u2 := usageOf(anthropicTurn(2, true), "k1")
	if num(u2["cache_read_input_tokens"]) == 0 {
		t.Fatalf("turn 2 on the same key missed: %v", u2)
	}
	// Turn 2 on another key misses.
	u2b := usageOf(anthropicTurn(2, true), "k2")
	if num(u2b["cache_read_input_tokens"]) != 0 {
		t.Fatalf("turn 2 on another key hit: %v", u2b)
	}
	// Turn 3 on k1 reads more than turn 2 did.
	u3 := usageOf(anthropicTurn(3, true), "k1")
	if num(u3["cache_read_input_tokens"]) <= num(u2["cache_read_input_tokens"]) {
		t.Fatalf("turn 3 %v after turn 2 %v", u3, u2)
	}
	// Streamed usage carries the same fields.
	events := readSSE(t, do(t, "POST", ts.URL+"/v1/messages", withStream(anthropicTurn(4, true)), "x-api-key: k1"))
	if num(get(decode(t, events[0].data), "message", "usage", "cache_read_input_tokens")) == 0 ||
		num(get(decode(t, events[len(events)-2].data), "usage", "cache_read_input_tokens")) == 0 {
		t.Fatal("streamed turn 4 missed")
	}

	st := s.Stats()
	k1, k2 := st["k1"], st["k2"]
	if k1.Requests != 4 || k1.EligibleTurns != 3 || k1.CacheHitTurns != 3 || k1.CacheReadTokens == 0 || k1.InputTokens == 0 || k1.CacheHitRate != 1 {
		t.Fatalf("k1 stats %+v", k1)
	}
	if k2.EligibleTurns != 1 || k2.CacheHitTurns != 0 || k2.CacheReadTokens != 0 {
		t.Fatalf("k2 stats %+v", k2)
	}
	v := readJSON(t, do(t, "GET", ts.URL+"/_mock/stats", ""), 200)
	if num(get(v, "k1", "cache_hit_turns")) != 3 {
		t.Fatalf("GET /_mock/stats %v", v)
	}
}

func TestPromptCacheOtherFormats(t *testing.T) {
	_, ts := newTest(t, Options{})
	chat := func(turns int) string {
		msgs := []any{map[string]any{"role": "system", "content": "sys"}}
		for i := range turns {
			if i > 0 {
				msgs = append(msgs, map[string]any{"role": "assistant", "content": "a"})
			}
			msgs = append(msgs, map[string]any{"role": "user", "content": fmt.Sprintf("question number %d", i)})
		}
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
		return string(b)
	}
	responses := func(turns int) string {
		var input []any
		for i := range turns {
			if i > 0 {
				input = append(input, map[string]any{"type": "message", "role": "assistant", "content": []any{map[string]any{"type": "output_text", "text": "a"}}})
			}
			input = append(input, map[string]any{"role": "user", "content": fmt.Sprintf("question number %d", i)})
		}
		b, _ := json.Marshal(map[string]any{"model": "gpt-5", "instructions": "sys", "input": input})
		return string(b)
	}
	gemini := func(turns int) string {
		var contents []any
		for i := range turns {
			if i > 0 {
				contents = append(contents, map[string]any{"role": "model", "parts": []any{map[string]any{"text": "a"}}})
			}
			contents = append(contents, map[string]any{"role": "user", "parts": []any{map[string]any{"text": fmt.Sprintf("question number %d", i)}}})
		}
		b, _ := json.Marshal(map[string]any{"contents": contents})
		return string(b)
	}
	cases := []struct {
		name, path, auth string
		body             func(int) string
		cached           []any
	}{
		{"chat", "/v1/chat/completions", "Authorization: Bearer ", chat, []any{"usage", "prompt_tokens_details", "cached_tokens"}},
		{"responses", "/v1/responses", "Authorization: Bearer ", responses, []any{"usage", "input_tokens_details", "cached_tokens"}},
		{"codex", "/backend-api/codex/responses", "Authorization: Bearer ", responses, []any{"usage", "input_tokens_details", "cached_tokens"}},
		{"gemini", "/v1beta/models/gemini-2.5-pro:generateContent", "x-goog-api-key: ", gemini, []any{"usageMetadata", "cachedContentTokenCount"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "key-" + tc.name
			cached := func(turns int, key string) int {
				return num(get(readJSON(t, do(t, "POST", ts.URL+tc.path, tc.body(turns), tc.auth+key), 200), tc.cached...))
			}
			if c := cached(1, key); c != 0 {
				t.Fatalf("turn 1 cached %d", c)
			}
			if c := cached(2, key); c == 0 {
				t.Fatal("turn 2 on the same key missed")
			}
			if c := cached(2, key+"-other"); c != 0 {
				t.Fatalf("turn 2 on another key cached %d", c)
			}
		})
	}
}

func TestPromptCacheEviction(t *testing.T) {
	s, ts := newTest(t, Options{CacheEntries: 2})
	post := func(body string) {
		readJSON(t, do(t, "POST", ts.URL+"/v1/messages", body, "x-api-key: k1"), 200)
	}
	post(anthropicTurn(1, false))
	post(anthropicTurn(2, false)) // hit
	// Two other conversations push the first one out of a 2-entry cache.
	post(strings.Replace(anthropicTurn(1, false), "question", "other", 1))
	post(strings.Replace(anthropicTurn(1, false), "question", "third", 1))
	post(anthropicTurn(3, false)) // miss
	if st := s.Stats()["k1"]; st.EligibleTurns != 2 || st.CacheHitTurns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientCancelStream(t *testing.T) {
	s, ts := newTest(t, Options{StreamDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := doCtx(t, ctx, "POST", ts.URL+"/v1/chat/completions", withStream(chatBody), "Authorization: Bearer k1")
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data: " {
		t.Fatalf("first event: %q %v", buf, err)
	}
	cancel()
	resp.Body.Close()
	eventually(t, "the cancellation to be recorded", func() bool { return s.Stats()["k1"].Cancelled == 1 })
	if reqs := s.Requests(); !reqs[0].Cancelled {
		t.Fatalf("request not marked cancelled: %+v", reqs[0])
	}
}

func TestClientCancelDuringFaultDelay(t *testing.T) {
	s, ts := newTest(t, Options{})
	s.SetFault("k1", Fault{Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/messages", strings.NewReader(anthropicBody))
		req.Header.Set("x-api-key", "k1")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, "the request to arrive", func() bool { return len(s.Requests()) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v", err)
	}
	eventually(t, "the cancellation to be recorded", func() bool { return s.Stats()["k1"].Cancelled == 1 })
}

func TestConcurrentRequests(t *testing.T) {
	s, ts := newTest(t, Options{MaxRecorded: 10})
	s.SetFault("k3", Fault{Status: 429, Times: 5})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i%4)
			for turn := 1; turn <= 5; turn++ {
				req, _ := http.NewRequest("POST", ts.URL+"/v1/messages", strings.NewReader(withStream(anthropicTurn(turn, true))))
				req.Header.Set("x-api-key", key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err) // not Fatal: this is not the test goroutine
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	total := int64(0)
	for _, st := range s.Stats() {
		total += st.Requests
	}
	if total != 80 || len(s.Requests()) != 10 || s.Stats()["k3"].Faults != 5 {
		t.Fatalf("total %d, recorded %d, stats %+v", total, len(s.Requests()), s.Stats())
	}
}
