package pool

import (
	"strconv"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

// TestCredentialMergeLatestDeadlineWins: a merged cooldown lengthens a
// shorter local one with its reason and never shortens a longer one; an
// expired or keyless one is ignored; merging is not local news.
func TestCredentialMergeLatestDeadlineWins(t *testing.T) {
	now := time.Unix(2_000_000, 0)
	p := failure.Policy{}.WithDefaults()
	c := newCredential(rec("a", "anthropic"))
	c.RecordFailure("m", failure.Verdict{Scope: failure.ScopeModel, Reason: failure.ReasonServerError, Until: now.Add(time.Minute)}, p, now)
	c.RecordFailure("long", failure.Verdict{Scope: failure.ScopeModel, Reason: failure.ReasonServerError, Until: now.Add(time.Hour)}, p, now)
	before := c.changes.Load()

	changed := c.mergeState([]savedCooldown{
		{Key: "m", Until: now.Add(10 * time.Minute), Reason: failure.ReasonRateLimited, Since: now},
		{Key: "long", Until: now.Add(time.Minute), Reason: failure.ReasonRateLimited, Since: now},
		{Key: "gone", Until: now.Add(-time.Second), Reason: failure.ReasonRateLimited, Since: now.Add(-time.Hour)},
		{Key: "", Until: now.Add(time.Hour), Since: now},
		{Key: allModels, Until: now.Add(30 * time.Minute), Reason: failure.ReasonAuthFailed, Since: now},
	}, time.Time{}, now)
	if !changed {
		t.Fatal("merge reported no change")
	}
	if got := c.CoolingUntil("m", now); !got.Equal(now.Add(30 * time.Minute)) {
		t.Fatalf("m cooling until now+%v, want the merged credential-wide 30m", got.Sub(now))
	}
	want := map[string]Cooldown{
		"*":    {Model: "*", Until: now.Add(30 * time.Minute), Reason: failure.ReasonAuthFailed},
		"m":    {Model: "m", Until: now.Add(10 * time.Minute), Reason: failure.ReasonRateLimited},
		"long": {Model: "long", Until: now.Add(time.Hour), Reason: failure.ReasonServerError},
	}
	got := c.Cooldowns(now)
	if len(got) != len(want) {
		t.Fatalf("cooldowns %+v, want %+v", got, want)
	}
	for _, cd := range got {
		if w := want[cd.Model]; !w.Until.Equal(cd.Until) || w.Reason != cd.Reason {
			t.Fatalf("cooldown %+v, want %+v", cd, w)
		}
	}
	if c.State(now) != StateCooling {
		t.Fatalf("state %s after a merged credential-wide cooldown", c.State(now))
	}
	if c.changes.Load() != before {
		t.Fatal("a merge counted as news of this instance")
	}
	// The same document again changes nothing.
	if c.mergeState([]savedCooldown{{Key: "m", Until: now.Add(10 * time.Minute), Since: now}}, time.Time{}, now) {
		t.Fatal("merging a deadline already held reported a change")
	}
}

// TestCredentialMergeReset: a reset clears the cooldowns learnt before it,
// here and, merged, elsewhere; cooldowns learnt before the latest reset
// are never merged back; the reset time merges as the later one.
func TestCredentialMergeReset(t *testing.T) {
	fake := clock.NewFake(time.Unix(3_000_000, 0))
	defer clock.Install(fake.Now)()
	p := failure.Policy{}.WithDefaults()
	t0 := fake.Now()
	a, b := newCredential(rec("x", "anthropic")), newCredential(rec("x", "anthropic"))
	limited := failure.Verdict{Scope: failure.ScopeModel, Reason: failure.ReasonRateLimited, Until: t0.Add(time.Hour)}
	a.RecordFailure("m", limited, p, t0)
	cools, reset := a.exportState(t0)
	b.mergeState(cools, reset, t0)
	if !b.CoolingUntil("m", t0).Equal(t0.Add(time.Hour)) {
		t.Fatal("b did not take a's cooldown")
	}

	fake.Advance(time.Second)
	a.Reset()
	t1 := fake.Now()
	if a.CoolingUntil("m", t1).After(t1) {
		t.Fatal("reset left a cooling")
	}
	// b still holds the old cooldown in its own export: a must not take
	// it back.
	bc, br := b.exportState(t1)
	if a.mergeState(bc, br, t1) || a.CoolingUntil("m", t1).After(t1) {
		t.Fatal("a merged back a cooldown learnt before its reset")
	}
	// b learns a's reset: its cooldown from before goes, a newer one stays.
	b.RecordFailure("later", failure.Verdict{Scope: failure.ScopeModel, Reason: failure.ReasonRateLimited, Until: t1.Add(time.Hour)}, p, t1.Add(time.Millisecond))
	ac, ar := a.exportState(t1)
	if !ar.Equal(t1) {
		t.Fatalf("exported reset %v, want %v", ar, t1)
	}
	if !b.mergeState(ac, ar, t1) {
		t.Fatal("merging a reset reported no change")
	}
	if b.CoolingUntil("m", t1).After(t1) {
		t.Fatal("b kept a cooldown learnt before a's reset")
	}
	if !b.CoolingUntil("later", t1).Equal(t1.Add(time.Hour)) {
		t.Fatal("b lost a cooldown learnt after a's reset")
	}
	// An older reset never moves the time back.
	b.mergeState(nil, t0, t1)
	if _, r := b.exportState(t1); !r.Equal(t1) {
		t.Fatalf("reset time %v after merging an older one, want %v", r, t1)
	}
	// coolMax follows what is left: with nothing left the fast path is free.
	b.mergeState(nil, t1.Add(time.Second), t1.Add(time.Second))
	if b.coolMax.Load() != 0 {
		t.Fatalf("coolMax %d with no cooldown left", b.coolMax.Load())
	}
}

// TestCredentialMergeBound: a hostile document with thousands of
// per-model cooldowns keeps the per-credential bound and takes the latest
// deadlines; the credential-wide entry is not counted against it.
func TestCredentialMergeBound(t *testing.T) {
	now := time.Unix(4_000_000, 0)
	c := newCredential(rec("a", "anthropic"))
	var cools []savedCooldown
	for i := range 10 * maxModelCooldowns {
		cools = append(cools, savedCooldown{Key: "m" + strconv.Itoa(i), Until: now.Add(time.Duration(i+1) * time.Second), Since: now})
	}
	cools = append(cools, savedCooldown{Key: allModels, Until: now.Add(time.Second), Since: now})
	c.mergeState(cools, time.Time{}, now)
	c.mu.Lock()
	n := len(c.models)
	_, kept := c.models["m"+strconv.Itoa(10*maxModelCooldowns-1)]
	allUntil := c.all.until
	c.mu.Unlock()
	if n > maxModelCooldowns {
		t.Fatalf("%d per-model entries after a hostile merge, bound %d", n, maxModelCooldowns)
	}
	if !kept {
		t.Fatal("the latest deadline was not kept")
	}
	if !allUntil.Equal(now.Add(time.Second)) {
		t.Fatal("the credential-wide cooldown was dropped by the bound")
	}
	if got := c.coolMax.Load(); got != now.Add(time.Duration(10*maxModelCooldowns)*time.Second).UnixNano() {
		t.Fatalf("coolMax %d is not the latest deadline", got)
	}
}
