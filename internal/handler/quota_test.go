package handler

import (
	"net/http"
	"testing"
	"time"
)

// TestAttemptRecordsQuota: every upstream response's quota headers are
// recorded on its credential, an error returned to the client as much as a
// success.
func TestAttemptRecordsQuota(t *testing.T) {
	quota := func(used string) http.Header {
		return http.Header{"Anthropic-Ratelimit-Unified-5h-Utilization": {used}, "Content-Type": {"application/json"}}
	}
	used := func(want float64) func(t *testing.T, p *Proxy) {
		return func(t *testing.T, p *Proxy) {
			t.Helper()
			c, _ := p.Pool.Get("a")
			if got := c.QuotaUsed(time.Now()); got != want {
				t.Fatalf("a's recorded utilization %v, want %v", got, want)
			}
		}
	}
	runLoopCase(t, loopCase{
		name: "quota recorded",
		scripts: map[string][]answer{"a": {
			{status: 400, header: quota("0.9"), body: `{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`},
			{status: 200, header: quota("0.3"), body: claudeOK},
		}},
		steps: []step{
			{method: "POST", path: "/v1/messages", body: claudeBody, status: 400, tried: []string{"a"}, check: used(0.9)},
			{method: "POST", path: "/v1/messages", body: claudeBody, status: 200, tried: []string{"a"}, check: used(0.3)},
		},
	})
}
