package failure_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

func ExampleClassify() {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	p := failure.Policy{}.WithDefaults()
	req := failure.Request{Model: "claude-sonnet-4-5", Generation: true}

	h := http.Header{}
	h.Set("Retry-After", "20")
	v := failure.Classify(p, req, failure.Attempt{Status: http.StatusTooManyRequests, Header: h}, now)
	fmt.Println(v.Action, v.Scope, v.Reason, v.Until.Sub(now), v.Hinted)

	// A 429 without a hint: the caller cools the model for Backoff(n),
	// n being the number of consecutive hintless 429s.
	v = failure.Classify(p, req, failure.Attempt{Status: http.StatusTooManyRequests}, now)
	fmt.Println(v.Action, v.Until.IsZero(), p.Backoff(1), p.Backoff(2), p.Backoff(3))

	v = failure.Classify(p, req, failure.Attempt{Status: http.StatusUnauthorized}, now)
	fmt.Println(v.Action, v.Scope, v.Reason, v.Until.Sub(now))

	// A 404 that does not say the model is missing is the client's.
	body := []byte(`{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}`)
	v = failure.Classify(p, req, failure.Attempt{Status: http.StatusNotFound, Body: body}, now)
	fmt.Println(v.Action, v.Reason)

	// A request without a model cools nothing model-scoped.
	v = failure.Classify(p, failure.Request{}, failure.Attempt{Status: http.StatusServiceUnavailable}, now)
	fmt.Println(v.Action, v.Scope, v.Until.IsZero())
	// Output:
	// failover model rate_limited 20s true
	// failover true 1s 2s 4s
	// failover all auth_failed 30m0s
	// return client_error
	// failover none true
}

func ExampleResetHint() {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("x-ratelimit-reset-requests", "6m0s")
	h.Set("x-ratelimit-remaining-requests", "0")
	h.Set("x-ratelimit-reset-tokens", "1h") // tokens left: not why we were limited
	h.Set("x-ratelimit-remaining-tokens", "5000")
	h.Set("Retry-After", "30")
	until, ok := failure.ResetHint(h, nil, now)
	fmt.Println(until.Sub(now), ok)
	// Output:
	// 6m0s true
}
