package selector

import "testing"

// Affinity binds on behalf of the request's client, for the session and
// for the fallback it binds along.
func TestAffinityBindsForTheClient(t *testing.T) {
	b := newFakeBindings()
	a := &Affinity{Strategy: RoundRobin{}, Bindings: b}
	set := NewSet("k", []Candidate{{ID: "c1", Weight: 1}})
	req := &Request{Set: set, Session: "s2", Fallback: "s1", Model: "m", Client: "user:alice"}
	if i, d := a.Pick(NewState(), req); i != 0 || d != DecisionMiss {
		t.Fatalf("Pick = %d, %s", i, d)
	}
	for _, s := range []string{"s1", "s2"} {
		if got := b.owner[bindingKey{s, "m"}]; got != "user:alice" {
			t.Fatalf("binding of %s made for %q", s, got)
		}
	}
	// Inheriting the fallback's binding binds for the client too.
	req = &Request{Set: set, Session: "s3", Fallback: "s1", Model: "m", Client: "user:bob"}
	if _, d := a.Pick(NewState(), req); d != DecisionHit {
		t.Fatalf("decision %s", d)
	}
	if got := b.owner[bindingKey{"s3", "m"}]; got != "user:bob" {
		t.Fatalf("inherited binding made for %q", got)
	}
}
