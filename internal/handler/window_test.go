package handler

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rtFunc is a RoundTripper from a function.
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestFamilyWindowCoolsTheFamily: a rejected 7d_sonnet window of
// credential a cools a for every sonnet model and for nothing else; a
// client cannot reach the family's cooldown by naming its key as a model.
func TestFamilyWindowCoolsTheFamily(t *testing.T) {
	var mu sync.Mutex
	var tried []string
	reset := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	rt := rtFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		key := r.Header.Get("X-Api-Key")
		mu.Lock()
		tried = append(tried, key)
		first := len(tried) == 1
		mu.Unlock()
		h := http.Header{"Content-Type": {"application/json"}}
		status, body := 200, `{"id":"msg_1","type":"message"}`
		if first {
			status, body = 429, `{"type":"error","error":{"type":"rate_limit_error","message":"limited"}}`
			h.Set("Anthropic-Ratelimit-Unified-Status", "rejected")
			h.Set("Anthropic-Ratelimit-Unified-5h-Status", "allowed")
			h.Set("Anthropic-Ratelimit-Unified-7d-Status", "allowed")
			h.Set("Anthropic-Ratelimit-Unified-7d_sonnet-Status", "rejected")
			h.Set("Anthropic-Ratelimit-Unified-7d_sonnet-Reset", reset)
		}
		return &http.Response{StatusCode: status, Header: h, Request: r, ContentLength: int64(len(body)),
			Body: io.NopCloser(strings.NewReader(body))}, nil
	})
	p := hostileProxy(t, rt, holdKeyA, "https://a.example", holdKeyB, "https://b.example")
	send := func(model string, want int) {
		t.Helper()
		body := `{"model":"` + model + `","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
		if w := serve(t, p, http.MethodPost, "/v1/messages", body, http.Header{"Anthropic-Version": {"2023-06-01"}}); w.Code != want {
			t.Fatalf("%s: status %d: %s", model, w.Code, w.Body)
		}
	}
	send("claude-sonnet-4-5", 200)        // a rejects, b serves
	send("claude-3-5-sonnet-latest", 200) // a skipped: same family
	send("claude-opus-4-1", 200)          // a serves
	send("\u001ffamily:sonnet", 400)      // refused before any attempt
	want := []string{holdKeyA, holdKeyB, holdKeyB, holdKeyA}
	if strings.Join(tried, ",") != strings.Join(want[:len(tried)], ",") || len(tried) != 4 {
		t.Fatalf("attempts %v, want %v", tried, want)
	}
}
