package selector

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
)

// pinReq is a request for resource pin on the Set, with session s.
func pinReq(set *Set, avail Availability, s, pin string) *Request {
	return &Request{Set: set, Avail: avail, Session: s, HashKey: s, Model: "m", Pin: pin}
}

func TestPinGoesFirst(t *testing.T) {
	s := NewSet("k", cands("a", "b", "c"))
	for _, withBindings := range []bool{false, true} {
		t.Run(fmt.Sprintf("bindings=%v", withBindings), func(t *testing.T) {
			st := NewState()
			b := newFakeBindings()
			a := &Affinity{Strategy: FillFirst{}}
			if withBindings {
				a.Bindings = b
				b.Bind("sess", "m", "a")
			}
			st.Pin("", "resp_1", "c")

			i, d := a.Pick(st, pinReq(s, nil, "sess", "resp_1"))
			if s.At(i).ID != "c" || d != DecisionPin {
				t.Fatalf("pick %s, %q; want c, pin", s.At(i).ID, d)
			}
			if got, _ := b.Get("sess", "m"); withBindings && got != "a" {
				t.Fatalf("a pinned pick moved the session's binding to %q", got)
			}
			if b.binds > 1 {
				t.Fatalf("a pinned pick bound the session (%d binds)", b.binds)
			}

			// The pinned credential cooling or already tried: the
			// request goes on as if it had no pin.
			down := AvailableFunc(func(i int) bool { return s.At(i).ID != "c" })
			i, d = a.Pick(st, pinReq(s, down, "sess", "resp_1"))
			want, wantD := "a", DecisionNone
			if withBindings {
				wantD = DecisionHit
			}
			if s.At(i).ID != want || d != wantD {
				t.Fatalf("pinned credential down: %s, %q; want %s, %q", s.At(i).ID, d, want, wantD)
			}

			// A pin to a credential that is not in the Set (it left the
			// pool, or serves another family) is ignored.
			other := NewSet("k2", cands("a", "b"))
			if i, d := a.Pick(st, pinReq(other, nil, "", "resp_1")); other.At(i).ID != "a" || d != DecisionNone {
				t.Fatalf("pin outside the Set: %s, %q", other.At(i).ID, d)
			}
			// An unknown resource has no pin.
			if i, d := a.Pick(st, pinReq(s, nil, "", "resp_unknown")); s.At(i).ID != "a" || d != DecisionNone {
				t.Fatalf("unknown resource: %s, %q", s.At(i).ID, d)
			}
		})
	}
}

func TestPinIgnoresEmptyNames(t *testing.T) {
	st := NewState()
	st.Pin("", "", "a")
	if st.pins != nil {
		t.Fatal("an empty resource name was pinned")
	}
	s := NewSet("k", cands("a", "b"))
	a := &Affinity{Strategy: FillFirst{}}
	if _, d := a.Pick(st, pinReq(s, nil, "", "")); d != DecisionNone {
		t.Fatalf("decision %q for a request without a pin", d)
	}
}

// TestPinsAreNotSessions: pins live in their own table, so they neither
// count as bindings nor change any.
func TestPinsAreNotSessions(t *testing.T) {
	st := NewState()
	b := newFakeBindings()
	a := &Affinity{Strategy: RoundRobin{}, Bindings: b}
	for i := range 100 {
		st.Pin("client", fmt.Sprintf("resp_%d", i), "a")
	}
	s := NewSet("k", cands("a", "b"))
	for i := range 100 {
		if _, d := a.Pick(st, pinReq(s, nil, "", fmt.Sprintf("resp_%d", i))); d != DecisionPin {
			t.Fatalf("resp_%d: decision %q", i, d)
		}
	}
	if len(b.m) != 0 || b.binds != 0 {
		t.Fatalf("pins reached the bindings: %v", b.m)
	}
}

// TestPinFloodKeepsOthersPins is the attack: a client creates more stored
// resources than the pins hold, to push another client's pins out (their
// follow-ups would then reach an account that does not have the resource).
// It only evicts its own.
func TestPinFloodKeepsOthersPins(t *testing.T) {
	st := NewState()
	st.Pin("user:victim", "resp_victim", "a")
	for i := range MaxPins + 100 {
		st.Pin("user:attacker", fmt.Sprintf("resp_%d", i), "b")
	}
	if id, ok := st.pinned("resp_victim"); !ok || id != "a" {
		t.Fatalf("victim's pin = %q, %v after the flood", id, ok)
	}
	if n := st.pins.Len(); n > MaxPins {
		t.Fatalf("%d pins kept, bound %d", n, MaxPins)
	}
}

func TestPinTTL(t *testing.T) {
	fake := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	defer clock.Install(fake.Now)()
	st := NewState()
	st.Pin("", "resp_1", "a")
	st.Pin("", "resp_2", "a")

	fake.Advance(PinTTL - time.Minute)
	if _, ok := st.pinned("resp_1"); !ok { // a use refreshes the pin
		t.Fatal("pin gone before its TTL")
	}
	fake.Advance(2 * time.Minute)
	if _, ok := st.pinned("resp_1"); !ok {
		t.Fatal("a used pin expired from its creation, not its last use")
	}
	if _, ok := st.pinned("resp_2"); ok {
		t.Fatal("an unused pin outlived its TTL")
	}
}
