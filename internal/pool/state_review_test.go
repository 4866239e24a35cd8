package pool

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
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

// An instance whose clock runs a minute ahead dropped all bindings and
// reset a credential "in the future". This instance applies that once, as
// of now; the same drop and reset in that instance's later documents (it
// writes one whenever it has news) must not drop the bindings and clear
// the cooldowns this instance made since, at every merge until its own
// clock catches up.
func TestStateReviewFutureDropAppliedOnce(t *testing.T) {
	e := newStateEnv(t, "state-future-drop")
	a := e.start("inst-a", true)
	ahead := e.fake.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	writeB := func() {
		e.writeDoc("inst-b", `{"kind":"llm_proxy.state","version":1,"instance":"inst-b","pool":"state-future-drop",`+
			`"written":"`+e.fake.Now().UTC().Format(time.RFC3339Nano)+`","sessions_dropped":"`+ahead+`",`+
			`"credentials":{"a1":{"reset":"`+ahead+`","sessions_dropped":"`+ahead+`"}},"auths":[]}`)
	}
	a.pool.Sessions.Bind("before", "m", "a2")
	writeB()
	a.sync()
	if _, ok := a.pool.Sessions.Get("before", "m"); ok {
		t.Fatal("the other instance's drop of all bindings was not applied")
	}

	e.fake.Advance(time.Second)
	a.pool.Sessions.Bind("conv", "m", "a2")
	a.pool.Sessions.Bind("conv1", "m", "a1")
	c1 := cred(t, a.pool, "a1")
	hour := limited
	hour.Until = e.fake.Now().Add(time.Hour)
	c1.RecordFailure("m", hour, failure.Policy{}.WithDefaults(), e.fake.Now())
	for range 3 {
		e.fake.Advance(time.Second)
		writeB() // news of B's: the same drop and reset
		a.sync()
		if _, ok := a.pool.Sessions.Get("conv", "m"); !ok {
			t.Fatal("a binding made after the drop was dropped again by the same drop")
		}
		if _, ok := a.pool.Sessions.Get("conv1", "m"); !ok {
			t.Fatal("a binding to a1 made after its drop was dropped again by the same drop")
		}
		if c1.CoolingUntil("m", e.fake.Now()).IsZero() {
			t.Fatal("a cooldown learnt after the reset was cleared again by the same reset")
		}
	}
}

// FuzzStateReviewDocument: whatever a document holds, parsing and merging
// it never panics, and the cache keeps its bound.
func FuzzStateReviewDocument(f *testing.F) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ts := now.Format(time.RFC3339Nano)
	f.Add([]byte(`{"kind":"llm_proxy.state","version":1,"instance":"x","pool":"fz","written":"` + ts + `","sessions_dropped":"` + ts + `",` +
		`"credentials":{"a1":{"reset":"9999-12-31T23:59:59Z","sessions_dropped":"0001-01-01T00:00:00Z","cooldowns":[{"key":"*","until":"9999-12-31T23:59:59Z","since":"9999-12-31T23:59:59Z"},{"key":"m","until":"` + ts + `"}]}},` +
		`"auths":["a1","a2","nope"],"bindings":[["1","2","3",0,1],["ffffffffffffffff","0","0",2,-999999999999999999],["a","b","c",1,999999999999999999]]}`))
	f.Add([]byte(`{"kind":"llm_proxy.state","version":1,"instance":"x","pool":"fz","written":"` + ts + `","auths":[],"bindings":[[]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseState(data, "llm_proxy/fz/state/x.json", "fz")
		if err != nil {
			return
		}
		p := newPool("fz")
		p.Sessions = session.NewCache(session.Options{Now: func() time.Time { return now }, MaxEntries: 64})
		p.SetMembers([]*auth.Auth{rec("a1", "claude"), rec("a2", "claude")}, nil)
		doc.key = "llm_proxy/fz/state/x.json"
		p.mergeDrops(doc, now)
		p.mergeDoc(doc, now)
		p.mergeDoc(doc, now.Add(time.Second))
		if n := p.Sessions.Len(); n > 64+16 {
			t.Fatalf("%d bindings, bound 64", n)
		}
		for _, c := range p.Credentials() {
			c.State(now)
			c.Cooldowns(now)
			c.exportState(now)
		}
		if _, err := p.encodeState("x", now); err != nil {
			t.Fatal(err)
		}
	})
}
