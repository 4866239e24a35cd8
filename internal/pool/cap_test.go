package pool

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

// notFound is the verdict of a 404 for a model: that model on that
// credential, 12h.
func notFound(now time.Time) failure.Verdict {
	return failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Until: now.Add(12 * time.Hour), Reason: "model_not_found"}
}

func modelEntries(c *Credential) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.models)
}

// A client naming a new model on every request, each answered 404 (a
// cooldown of 12h), cannot grow a credential's state past the bound, and
// cannot push out the credential-wide cooldown.
func TestModelCooldownFloodIsBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newCredential(rec("a", "claude"))
	p := failure.Policy{}.WithDefaults()
	all := now.Add(30 * time.Minute)
	c.RecordFailure("", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll, Until: all, Reason: "auth_failed"}, p, now)

	for i := 0; i < 10*maxModelCooldowns; i++ {
		c.RecordFailure("bogus-"+strconv.Itoa(i), notFound(now), p, now)
		if n := modelEntries(c); n > maxModelCooldowns {
			t.Fatalf("after %d models: %d per-model entries", i+1, n)
		}
	}
	if got := c.CoolingUntil("claude-sonnet-4-5", now); !got.Equal(all) {
		t.Fatalf("credential-wide cooldown lost: cooling until %v, want %v", got, all)
	}
	cds := c.Cooldowns(now)
	if len(cds) != maxModelCooldowns+1 || !hasAll(cds) {
		t.Fatalf("%d cooldowns listed, want %d with \"*\"", len(cds), maxModelCooldowns+1)
	}
	// The newest entry is kept: its model is really cooling.
	last := "bogus-" + strconv.Itoa(10*maxModelCooldowns-1)
	if c.Available(last, all) {
		t.Fatalf("model %s available although it was just cooled", last)
	}
}

func hasAll(cds []Cooldown) bool {
	for _, cd := range cds {
		if cd.Model == "*" {
			return true
		}
	}
	return false
}

// When the per-model entries are full, those no longer cooling go first,
// then the one whose cooldown ends soonest.
func TestModelCooldownEvictionOrder(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newCredential(rec("a", "claude"))
	p := failure.Policy{}.WithDefaults()
	rateLimited := failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Reason: "rate_limited"}

	c.RecordFailure("expired", rateLimited, p, now) // 1s
	c.RecordFailure("soon", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Until: now.Add(time.Minute)}, p, now)
	for i := 2; i < maxModelCooldowns; i++ {
		c.RecordFailure("long-"+strconv.Itoa(i), notFound(now), p, now)
	}
	if n := modelEntries(c); n != maxModelCooldowns {
		t.Fatalf("%d entries, want the table full (%d)", n, maxModelCooldowns)
	}
	now = now.Add(2 * time.Second)

	c.RecordFailure("new-1", notFound(now), p, now)
	if c.Available("soon", now) {
		t.Fatal("a cooling model was dropped while an expired entry was there")
	}
	c.mu.Lock()
	_, expiredKept := c.models["expired"]
	c.mu.Unlock()
	if expiredKept {
		t.Fatal("the expired entry was kept")
	}

	c.RecordFailure("new-2", notFound(now), p, now)
	if !c.Available("soon", now) {
		t.Fatal("the entry ending soonest was kept over 12h ones")
	}
	for _, m := range []string{"long-2", "long-" + strconv.Itoa(maxModelCooldowns-1), "new-1", "new-2"} {
		if c.Available(m, now) {
			t.Fatalf("model %s no longer cooling", m)
		}
	}
	if n := modelEntries(c); n != maxModelCooldowns {
		t.Fatalf("%d entries, want %d", n, maxModelCooldowns)
	}
}

// Concurrent floods from many clients keep the bound (run with -race).
func TestModelCooldownFloodConcurrent(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newCredential(rec("a", "claude"))
	p := failure.Policy{}.WithDefaults()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < maxModelCooldowns; i++ {
				m := "g" + strconv.Itoa(g) + "-" + strconv.Itoa(i)
				c.RecordFailure(m, notFound(now), p, now)
				c.Available(m, now)
				c.RecordSuccess(m)
				_ = c.Cooldowns(now)
			}
		}()
	}
	wg.Wait()
	if n := modelEntries(c); n > maxModelCooldowns {
		t.Fatalf("%d per-model entries", n)
	}
}
