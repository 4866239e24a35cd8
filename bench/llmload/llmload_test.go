package llmload

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

func TestConversationBodies(t *testing.T) {
	for _, api := range []string{APIAnthropic, APIOpenAI} {
		t.Run(api, func(t *testing.T) {
			w := Workload{API: api, Seed: 7, Stream: true}.withDefaults()
			sys := w.systemPrompt()
			c := w.NewConversation(3, sys)
			var prev []byte
			for turn := 1; turn <= 4; turn++ {
				b := c.NextBody()
				var v struct {
					Model    string            `json:"model"`
					Stream   bool              `json:"stream"`
					Messages []json.RawMessage `json:"messages"`
					Metadata struct {
						UserID string `json:"user_id"`
					} `json:"metadata"`
					PromptCacheKey string `json:"prompt_cache_key"`
				}
				if err := json.Unmarshal(b, &v); err != nil {
					t.Fatalf("turn %d: invalid JSON: %v", turn, err)
				}
				want := 2*turn - 1
				if api == APIOpenAI {
					want++ // the system message
				}
				if len(v.Messages) != want || !v.Stream || v.Model == "" {
					t.Fatalf("turn %d: %d messages (want %d), stream %v, model %q", turn, len(v.Messages), want, v.Stream, v.Model)
				}
				if api == APIAnthropic && !strings.Contains(v.Metadata.UserID, `"session_id":"`+c.SessionID()+`"`) {
					t.Fatalf("metadata.user_id %q lacks the session", v.Metadata.UserID)
				}
				if api == APIOpenAI && v.PromptCacheKey != c.SessionID() {
					t.Fatalf("prompt_cache_key %q", v.PromptCacheKey)
				}
				// Earlier turns stay byte-identical (what a prompt cache keys on),
				// apart from the moving cache_control marker.
				if prev != nil {
					stripped := bytes.ReplaceAll(prev, []byte(`,"cache_control":{"type":"ephemeral"}`), nil)
					head := stripped[:len(stripped)-2] // without "]}"
					if !bytes.HasPrefix(bytes.ReplaceAll(b, []byte(`,"cache_control":{"type":"ephemeral"}`), nil), head) {
						t.Fatalf("turn %d does not extend turn %d", turn, turn-1)
					}
				}
				prev = b
				c.Advance()
			}
		})
	}
}

func TestWorkloadDeterministic(t *testing.T) {
	w := Workload{Seed: 42}.withDefaults()
	a := w.NewConversation(1, w.systemPrompt()).NextBody()
	b := w.NewConversation(1, w.systemPrompt()).NextBody()
	c := w.NewConversation(2, w.systemPrompt()).NextBody()
	if !bytes.Equal(a, b) {
		t.Fatal("same seed and index gave different bodies")
	}
	if bytes.Equal(a, c) {
		t.Fatal("different conversations gave the same body")
	}
	if n := len(w.systemPrompt()); n < w.SystemBytes || n > w.SystemBytes+32 {
		t.Fatalf("system prompt is %d bytes, want about %d", n, w.SystemBytes)
	}
}

func TestSessionNoneOmitsSignals(t *testing.T) {
	w := Workload{Seed: 1, Session: SessionNone}.withDefaults()
	b := w.NewConversation(0, w.systemPrompt()).NextBody()
	if bytes.Contains(b, []byte("metadata")) || bytes.Contains(b, []byte("session_id")) {
		t.Fatalf("body carries a session signal: %.200s", b)
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	p := NewPercentiles(ds)
	if p.N != 100 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 || p.Mean != 50.5 {
		t.Fatalf("got %+v", p)
	}
	if (NewPercentiles(nil) != Percentiles{}) {
		t.Fatal("empty input")
	}
}

func TestParseStatTicks(t *testing.T) {
	stat := "1234 (caddy (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 99 1000 20 0"
	got, err := parseStatTicks(stat)
	if err != nil || got != 325 {
		t.Fatalf("got %d, %v; want 325", got, err)
	}
	if _, err := parseStatTicks("garbage"); err == nil {
		t.Fatal("no error for garbage")
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"} {
		if err := CheckLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://example.com", "http://10.0.0.1:80", "ftp://127.0.0.1", "::"} {
		if err := CheckLoopback(u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := ParseTarget("llm=http://127.0.0.1:9@12+34")
	if err != nil || tg.Name != "llm" || tg.URL != "http://127.0.0.1:9" || len(tg.PIDs) != 2 || tg.PIDs[1] != 34 {
		t.Fatalf("got %+v, %v", tg, err)
	}
	if _, err := ParseTarget("http://127.0.0.1:9"); err == nil {
		t.Fatal("accepted a target without a name")
	}
}

func TestCacheDelta(t *testing.T) {
	before := MockStats{}
	after := MockStats{}
	set := func(m MockStats, label string, el, hit, in, read int64) {
		v := m[label]
		v.EligibleTurns, v.CacheHitTurns, v.InputTokens, v.CacheReadTokens = el, hit, in, read
		m[label] = v
	}
	set(before, "a", 10, 5, 100, 50)
	set(after, "a", 20, 14, 300, 200)
	set(after, "b", 10, 10, 100, 100)
	c := CacheDelta(before, after)
	if c.EligibleTurns != 20 || c.HitTurns != 19 || c.HitRate != 0.95 || c.TokenHitRate != 250.0/300 {
		t.Fatalf("got %+v", c)
	}
}

// TestRunAgainstMock drives the mock upstream directly: one credential, so
// every later turn must hit the simulated prompt cache, streaming or not.
func TestRunAgainstMock(t *testing.T) {
	srv := httptest.NewServer(mockllm.New(mockllm.Options{Keys: map[string]string{"sk-test": "only"}, MaxRecorded: -1}))
	defer srv.Close()
	ctx := context.Background()
	for _, stream := range []bool{false, true} {
		for _, api := range []string{APIAnthropic, APIOpenAI} {
			if err := ResetMock(ctx, srv.URL); err != nil {
				t.Fatal(err)
			}
			cfg := Config{URL: srv.URL, Key: "sk-test", Conversations: 6, Turns: 4, Concurrency: 3,
				Think: time.Millisecond, Workload: Workload{API: api, Stream: stream, Seed: 9}}
			before, err := FetchMockStats(ctx, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			after, err := FetchMockStats(ctx, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			c := CacheDelta(before, after)
			if r.Requests != 24 || r.OK != 24 || r.Errors != 0 {
				t.Fatalf("%s stream=%v: %+v", api, stream, r)
			}
			if r.Credentials["only"] != 24 || r.Stickiness.SameAsPreviousRate != 1 || r.Stickiness.NeverMoved != 6 {
				t.Fatalf("%s stream=%v: credentials %v, stickiness %+v", api, stream, r.Credentials, r.Stickiness)
			}
			if c.EligibleTurns != 18 || c.HitRate != 1 {
				t.Fatalf("%s stream=%v: cache %+v", api, stream, c)
			}
			if r.TTFB.P50 <= 0 || r.TTFB.P50 > r.Latency.P50 || r.Latency.N != 24 {
				t.Fatalf("%s stream=%v: ttfb %+v latency %+v", api, stream, r.TTFB, r.Latency)
			}
		}
	}
}

func TestRunBounds(t *testing.T) {
	srv := httptest.NewServer(mockllm.New(mockllm.Options{MaxRecorded: -1}))
	defer srv.Close()
	r, err := Run(context.Background(), Config{URL: srv.URL, Key: "k", Conversations: 50, Turns: 5, Concurrency: 4, Requests: 17}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 17 {
		t.Fatalf("sent %d requests, want 17", r.Requests)
	}
	if _, err := Run(context.Background(), Config{URL: "http://192.0.2.1:80"}, nil); err == nil {
		t.Fatal("a non-loopback target was accepted")
	}
}

func TestRunCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"nope"}`, http.StatusTooManyRequests)
	}))
	defer srv.Close()
	r, err := Run(context.Background(), Config{URL: srv.URL, Conversations: 3, Turns: 3, Concurrency: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A failed turn ends its conversation.
	if r.Requests != 3 || r.Errors != 3 || r.ErrorsByKind["429"] != 3 || len(r.ErrorNotes) == 0 {
		t.Fatalf("got %+v", r)
	}
}

func TestCompare(t *testing.T) {
	a := httptest.NewServer(mockllm.New(mockllm.Options{MaxRecorded: -1}))
	defer a.Close()
	b := httptest.NewServer(mockllm.New(mockllm.Options{MaxRecorded: -1}))
	defer b.Close()
	cfg := CompareConfig{
		Label:    "test",
		Targets:  []Target{{Name: "a", URL: a.URL}, {Name: "b", URL: b.URL}},
		Baseline: "b",
		Rounds:   2,
		Streams:  []bool{false, true},
		Warmup:   4,
		Load:     Config{Key: "k", Conversations: 3, Turns: 2, Concurrency: 2},
	}
	var out bytes.Buffer
	res, err := Compare(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 8 || len(res.Rows) != 4 || len(res.Comparisons) != 2 {
		t.Fatalf("%d runs, %d rows, %d comparisons", len(res.Runs), len(res.Rows), len(res.Comparisons))
	}
	for _, r := range res.Rows {
		if r.Runs != 2 || r.OK != 12 || r.Latency.N != 12 {
			t.Fatalf("row %+v", r)
		}
	}
	for _, c := range res.Comparisons {
		if c.Target != "a" || c.PairedThroughputRatio <= 0 || c.ThroughputRatio <= 0 {
			t.Fatalf("comparison %+v", c)
		}
	}
	res.WriteText(&out)
	if !strings.Contains(out.String(), "paired vs baseline") {
		t.Fatalf("output:\n%s", out.String())
	}
	if _, err := Compare(context.Background(), CompareConfig{Targets: cfg.Targets, Baseline: "zz"}, nil); err == nil {
		t.Fatal("unknown baseline accepted")
	}
}
