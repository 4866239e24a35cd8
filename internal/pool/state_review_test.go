package pool

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

// A document from a hostile or broken instance with a cooldown ending in
// year 9999, learnt "in the future": the credential is cooling (its
// deadline does not overflow the nanosecond fast path), the deadline is
// capped, and an admin reset elsewhere still clears it.
func TestStateReviewFarCooldownCappedAndResettable(t *testing.T) {
	fake := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	defer clock.Install(fake.Now)()
	now := fake.Now()
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	c := newCredential(rec("x", "anthropic"))
	c.mergeState([]savedCooldown{
		{Key: allModels, Until: far, Reason: failure.ReasonAuthFailed, Since: far},
		{Key: "m", Until: far, Reason: failure.ReasonRateLimited, Since: far},
	}, time.Time{}, now)
	if s := c.State(now); s != StateCooling {
		t.Fatalf("state %s after a merged credential-wide cooldown to year 9999", s)
	}
	until := c.CoolingUntil("m", now)
	if !until.After(now) || until.After(now.Add(maxMergedCooldown)) {
		t.Fatalf("cooling until %v, want within %v of now", until, maxMergedCooldown)
	}
	for _, cd := range c.Cooldowns(now) {
		if cd.Until.After(now.Add(maxMergedCooldown)) {
			t.Fatalf("cooldown %+v beyond the cap", cd)
		}
	}
	cools, _ := c.exportState(now)
	if len(cools) != 2 {
		t.Fatalf("exported %d cooldowns, want 2", len(cools))
	}
	// Another instance's reset a second later clears it.
	fake.Advance(time.Second)
	c.mergeState(nil, fake.Now(), fake.Now())
	if s := c.State(fake.Now()); s != StateServing {
		t.Fatalf("state %s after a reset merged from another instance", s)
	}
	if cds := c.Cooldowns(fake.Now()); len(cds) != 0 {
		t.Fatalf("cooldowns %+v survived a merged reset", cds)
	}
}

// The bindings decoder sizes its slice by the document's text, not by its
// count of '[': a 3 MB array of empty arrays must not allocate 40 MB
// before failing.
func TestStateReviewBindingsDecoderPresizeBounded(t *testing.T) {
	data := "[" + strings.Repeat("[],", 1_000_000) + "[]]"
	var l bindingList
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := l.UnmarshalJSON([]byte(data))
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("empty arrays decoded as bindings")
	}
	// The []byte conversion copies data once.
	if got := after.TotalAlloc - before.TotalAlloc; got > uint64(4*len(data)) {
		t.Fatalf("decoding %d bytes allocated %d bytes", len(data), got)
	}
}
