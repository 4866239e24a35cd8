package pool

import (
	"slices"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

func rec(id, provider string, opts ...func(*auth.Auth)) *auth.Auth {
	a := &auth.Auth{ID: id}
	a.Provider, a.APIKey = provider, "k-"+id
	for _, o := range opts {
		o(a)
	}
	return a
}

func TestCooldownsPerModelAndAll(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newCredential(rec("a", "claude"))
	p := failure.Policy{}.WithDefaults()
	if !c.Available("m1", now) {
		t.Fatal("fresh credential unavailable")
	}
	// A 429 without a hint climbs the ladder for that model only.
	until := c.RecordFailure("m1", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Reason: "rate_limited"}, p, now)
	if until != now.Add(time.Second) {
		t.Fatalf("first 429 cools until %v", until)
	}
	if c.Available("m1", now) || !c.Available("m2", now) {
		t.Fatal("per-model cooldown wrong")
	}
	until = c.RecordFailure("m1", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel}, p, now)
	if until != now.Add(2*time.Second) {
		t.Fatalf("second 429 cools until %v", until)
	}
	if !c.Available("m1", now.Add(2*time.Second)) {
		t.Fatal("still cooling at the deadline")
	}
	c.RecordSuccess("m1")
	if until = c.RecordFailure("m1", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel}, p, now); until != now.Add(time.Second) {
		t.Fatalf("ladder not reset by success: %v", until)
	}
	// A hinted deadline is used as is; scope all cools every model.
	hint := now.Add(30 * time.Minute)
	c.RecordFailure("m1", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll, Until: hint}, p, now)
	if c.Available("m2", hint.Add(-time.Nanosecond)) || !c.Available("m2", hint) {
		t.Fatal("all-model cooldown wrong")
	}
	if got := c.CoolingUntil("m3", now); got != hint {
		t.Fatalf("CoolingUntil %v", got)
	}
	if n := len(c.Cooldowns(now)); n != 2 {
		t.Fatalf("%d cooldowns listed", n)
	}
	_, failures := c.Counts()
	if failures != 4 {
		t.Fatalf("%d failures counted", failures)
	}
	c.Reset()
	if !c.Available("m1", now) || !c.Available("m2", now) {
		t.Fatal("Reset left a cooldown")
	}
}

func TestMembershipKeepsStateAndEligibleSets(t *testing.T) {
	p := Acquire("pool-test-membership")
	defer Release("pool-test-membership")

	p.SetMembers([]*auth.Auth{rec("c1", "claude"), rec("o1", "openai", func(a *auth.Auth) { a.Models = []string{"gpt-5*"} })},
		[]*auth.Auth{rec("c2", "claude")})
	e := p.Eligible(apifamily.Route{Family: apifamily.Anthropic}, "claude-sonnet-4-5")
	if e.Set.Len() != 2 {
		t.Fatalf("%d eligible claude credentials", e.Set.Len())
	}
	for i, c := range e.Creds {
		if c.ID() != e.Set.At(i).ID {
			t.Fatalf("Creds and Set out of step at %d", i)
		}
	}
	if p.Eligible(apifamily.Route{Family: apifamily.OpenAI}, "gpt-4o").Set.Len() != 0 || p.Eligible(apifamily.Route{Family: apifamily.OpenAI}, "gpt-5-mini").Set.Len() != 1 {
		t.Fatal("model patterns not applied")
	}
	if p.Eligible(apifamily.Route{Family: apifamily.OpenAI}, "").Set.Len() != 1 {
		t.Fatal("a request without a model should see every credential of the family")
	}

	c1, _ := p.Get("c1")
	now := time.Now()
	c1.RecordFailure("m", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll, Until: now.Add(time.Hour)}, failure.Policy{}.WithDefaults(), now)
	p.Sessions.Bind("s1", "m", "c2")
	p.Sessions.Bind("s2", "m", "c1")

	// A new config: c1 stays (with its cooldown), c2 leaves storage and is
	// replaced by c3; disabled credentials are not eligible.
	p.SetMembers([]*auth.Auth{rec("c1", "claude")}, []*auth.Auth{rec("c3", "claude", func(a *auth.Auth) { a.Disabled = true })})
	if c, _ := p.Get("c1"); c != c1 || c.Available("m", now) {
		t.Fatal("a staying credential lost its state")
	}
	if _, ok := p.Get("c2"); ok {
		t.Fatal("removed credential still in the pool")
	}
	if e := p.Eligible(apifamily.Route{Family: apifamily.Anthropic}, "m"); e.Set.Len() != 1 || e.Set.At(0).ID != "c1" {
		t.Fatalf("eligible after the change: %d", e.Set.Len())
	}
	// Bindings stay until a config serves (see lifecycle_test.go).
	if p.Sessions.Len() != 2 {
		t.Fatal("bindings dropped by SetMembers")
	}
	p.dropStaleBindings()
	if _, ok := p.Sessions.Get("s1", "m"); ok {
		t.Fatal("binding to a removed credential survived")
	}
	if id, ok := p.Sessions.Get("s2", "m"); !ok || id != "c1" {
		t.Fatal("binding to a staying credential dropped")
	}

	// Stored members come and go without touching inline ones.
	p.setStored([]*auth.Auth{rec("c4", "claude")})
	if !p.IsInline("c1") || p.IsInline("c4") {
		t.Fatal("IsInline wrong")
	}
	p.PutStored(rec("c5", "claude"))
	if !p.removeStored("c5") || p.removeStored("c1") {
		t.Fatal("removeStored must remove stored and refuse inline credentials")
	}
	total, enabled, available := p.Availability(now)
	if total != 2 || enabled != 2 || available != 1 { // c1 (cooling) and c4
		t.Fatalf("availability %d %d %d", total, enabled, available)
	}
}

func TestPoolOutlivesOneUser(t *testing.T) {
	a := Acquire("pool-test-lifetime")
	b := Acquire("pool-test-lifetime")
	if a != b {
		t.Fatal("same name gave two pools")
	}
	Release("pool-test-lifetime")
	if _, ok := Lookup("pool-test-lifetime"); !ok {
		t.Fatal("pool gone while still used")
	}
	Release("pool-test-lifetime")
	if _, ok := Lookup("pool-test-lifetime"); ok {
		t.Fatal("pool kept after its last user left")
	}
}

func TestClientModelNamesAreBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newCredential(rec("a", "claude"))
	p := failure.Policy{}.WithDefaults()
	for i := 0; i < 3*maxModelCooldowns; i++ {
		c.RecordFailure(string(rune('a'+i%26))+time.Duration(i).String(), failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel}, p, now)
		now = now.Add(2 * time.Second) // each cooldown (1s) is over before the next
	}
	c.mu.Lock()
	n := len(c.models)
	c.mu.Unlock()
	if n > maxModelCooldowns {
		t.Fatalf("%d per-model entries kept", n)
	}

	pl := Acquire("pool-test-bounded")
	defer Release("pool-test-bounded")
	pl.SetMembers([]*auth.Auth{rec("c1", "claude")}, nil)
	for i := 0; i < maxSets+10; i++ {
		pl.Eligible(apifamily.Route{Family: apifamily.Anthropic}, "model-"+time.Duration(i).String())
	}
	pl.mu.RLock()
	n = len(pl.sets)
	pl.mu.RUnlock()
	if n > maxSets {
		t.Fatalf("%d eligible sets kept", n)
	}
}

// TestCodexServesResponsesOnly: the ChatGPT backend behind a Codex
// credential serves the Responses API and the model list, so a Codex
// credential is never eligible for chat or text completions or embeddings.
func TestCodexServesResponsesOnly(t *testing.T) {
	p := Acquire("pool-test-codex-endpoints")
	defer Release("pool-test-codex-endpoints")
	p.SetMembers([]*auth.Auth{rec("x1", "codex"), rec("o1", "openai")}, nil)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/v1/responses", []string{"o1", "x1"}},
		{"/v1/responses/resp_1", []string{"o1", "x1"}},
		{"/v1/models", []string{"o1", "x1"}},
		{"/v1/chat/completions", []string{"o1"}},
		{"/v1/completions", []string{"o1"}},
		{"/v1/embeddings", []string{"o1"}},
	} {
		route, ok := apifamily.Parse(tc.path)
		if !ok {
			t.Fatalf("%s not served", tc.path)
		}
		e := p.Eligible(route, "gpt-5")
		var got []string
		for i := 0; i < e.Set.Len(); i++ {
			got = append(got, e.Set.At(i).ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: eligible %v, want %v", tc.path, got, tc.want)
		}
	}
}
