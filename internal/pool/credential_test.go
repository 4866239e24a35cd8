package pool

import (
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

// TestRecordFailureStoresWhatPolicySays: the credential stores the
// deadline and streak failure.Policy.Cooldown computes, per key, and only
// ever moves a deadline later.
func TestRecordFailureStoresWhatPolicySays(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	p := failure.Policy{RateLimit: time.Second, RateLimitMax: 4 * time.Second}.WithDefaults()
	limited := failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Reason: failure.ReasonRateLimited}
	c := newCredential(rec("a", "gemini"))

	// The ladder climbs per key: the endpoint key has its own streak.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if got := c.RecordFailure("m", limited, p, now); !got.Equal(now.Add(want)) {
			t.Fatalf("429 #%d on m: until now+%v, want now+%v", i+1, got.Sub(now), want)
		}
	}
	ep := limited
	ep.Scope = failure.ScopeEndpoint
	if got := c.RecordFailure("m@/v1beta/models/m:embedContent", ep, p, now); !got.Equal(now.Add(time.Second)) {
		t.Fatalf("first 429 on the endpoint key: now+%v", got.Sub(now))
	}

	// An earlier deadline never shortens a cooldown.
	short := failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Reason: failure.ReasonServerError, Until: now.Add(time.Millisecond)}
	c.RecordFailure("m", short, p, now)
	if got := c.CoolingUntil("m", now); !got.Equal(now.Add(4 * time.Second)) {
		t.Fatalf("m cooling until now+%v after a shorter verdict", got.Sub(now))
	}

	// ScopeNone counts the failure and cools nothing, under any key.
	_, before := c.Counts()
	none := failure.Verdict{Action: failure.Failover, Scope: failure.ScopeNone, Reason: failure.ReasonRateLimited}
	if got := c.RecordFailure("", none, p, now); !got.IsZero() {
		t.Fatalf("ScopeNone set a deadline: %v", got)
	}
	if _, after := c.Counts(); after != before+1 {
		t.Fatalf("failures %d -> %d", before, after)
	}
	if !c.Available("", now) || !c.Available("other", now) {
		t.Fatal("ScopeNone cooled something")
	}
	for _, cd := range c.Cooldowns(now) {
		if cd.Model == "" || cd.Model == "*" {
			t.Fatalf("ScopeNone left a cooldown %+v", cd)
		}
	}

	// A success resets the streak of its model only.
	c.RecordSuccess("m")
	if got := c.RecordFailure("m", limited, p, now); !got.Equal(now.Add(time.Second)) {
		t.Fatalf("ladder after a success: now+%v", got.Sub(now))
	}
	if got := c.RecordFailure("m@/v1beta/models/m:embedContent", ep, p, now); !got.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("the endpoint key's ladder was reset by another key's success: now+%v", got.Sub(now))
	}

	// ScopeAll without a deadline cools the credential for server_error.
	all := failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll, Reason: failure.ReasonConnectionError}
	if got := c.RecordFailure("ignored", all, p, now); !got.Equal(now.Add(p.ServerError)) {
		t.Fatalf("ScopeAll: now+%v", got.Sub(now))
	}
	if c.Available("any-model", now.Add(p.ServerError-time.Nanosecond)) {
		t.Fatal("ScopeAll did not cool every model")
	}
}
