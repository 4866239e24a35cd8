package session

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// checkClientLists verifies every shard's client lists against its
// bindings and returns the bindings per client hash.
func checkClientLists(t *testing.T, c *Cache) map[uint64]int {
	t.Helper()
	perClient := map[uint64]int{}
	for si := range c.shards {
		s := &c.shards[si]
		s.mu.Lock()
		owned := map[uint64]int{}
		for i := s.head; i >= 0; i = s.slab[i].next {
			if cl := s.slab[i].client; cl != 0 {
				owned[cl]++
			}
		}
		if len(owned) != len(s.clients) {
			s.mu.Unlock()
			t.Fatalf("shard %d: %d clients own bindings, %d lists", si, len(owned), len(s.clients))
		}
		for client, cl := range s.clients {
			n, prev := 0, int32(-1)
			for i := cl.head; i >= 0; i = s.slab[i].cnext {
				e := &s.slab[i]
				if e.client != client || e.cprev != prev {
					s.mu.Unlock()
					t.Fatalf("shard %d: client list broken at slot %d", si, i)
				}
				prev = i
				n++
			}
			if n != cl.n || n != owned[client] || cl.tail != prev {
				s.mu.Unlock()
				t.Fatalf("shard %d: client list holds %d, counts %d, owns %d", si, n, cl.n, owned[client])
			}
			perClient[client] += n
		}
		s.mu.Unlock()
	}
	return perClient
}

// One client flooding new session IDs evicts its own bindings, never
// those of the other clients, and stays within its share.
func TestFloodingClientEvictsItsOwnBindings(t *testing.T) {
	for _, size := range []int{1000, 1 << 17} { // one shard; 64 shards
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c, _ := newTestCache(time.Hour, size)
			legit := min(300, size/5) // 3 clients' bindings and mallory's share fit
			for i := 0; i < legit; i++ {
				c.BindFor("user:alice", fmt.Sprintf("alice-%d", i), "m", "a1")
				c.BindFor("user:bob", fmt.Sprintf("bob-%d", i), "m", "a2")
				c.Bind(fmt.Sprintf("anon-%d", i), "m", "a3")
			}
			for i := 0; i < 4*size; i++ {
				c.BindFor("user:mallory", fmt.Sprintf("flood-%d", i), "m", "a1")
			}
			for i := 0; i < legit; i++ {
				mustGet(t, c, fmt.Sprintf("alice-%d", i), "m", "a1")
				mustGet(t, c, fmt.Sprintf("bob-%d", i), "m", "a2")
				mustGet(t, c, fmt.Sprintf("anon-%d", i), "m", "a3")
			}
			if c.Len() > size {
				t.Fatalf("%d bindings, bound %d", c.Len(), size)
			}
			perClient := checkClientLists(t, c)
			mallory := perClient[hashClient("user:mallory")]
			if limit := c.clientMax * len(c.shards); mallory > limit || mallory < limit/2 {
				t.Fatalf("mallory holds %d bindings, share %d", mallory, limit)
			}
		})
	}
}

// Within its share, a client loses its least recently used binding first.
func TestClientShareEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewCache(Options{MaxEntries: 100, ClientShare: 0.05, Now: newFakeClock().Now}) // 5 per client
	for i := 0; i < 5; i++ {
		c.BindFor("ip:192.0.2.1", fmt.Sprint("s", i), "m", "a")
	}
	mustGet(t, c, "s0", "m", "a") // s0 is now the most recently used
	c.BindFor("ip:192.0.2.1", "s5", "m", "a")
	mustGet(t, c, "s1", "m", "")
	for _, s := range []string{"s0", "s2", "s3", "s4", "s5"} {
		mustGet(t, c, s, "m", "a")
	}
	// Rebinding another client's session moves it to the new owner.
	c.BindFor("ip:192.0.2.2", "s0", "m", "b")
	perClient := checkClientLists(t, c)
	if perClient[hashClient("ip:192.0.2.1")] != 4 || perClient[hashClient("ip:192.0.2.2")] != 1 {
		t.Fatalf("owners after the rebind: %v", perClient)
	}
	// Bind without a client keeps the owner.
	c.Bind("s0", "m", "c")
	if perClient = checkClientLists(t, c); perClient[hashClient("ip:192.0.2.2")] != 1 {
		t.Fatalf("owners after Bind: %v", perClient)
	}
}

// Every way a binding leaves the cache keeps the client lists consistent.
func TestClientListsStayConsistent(t *testing.T) {
	c, clk := newTestCache(time.Minute, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	clients := []string{"", "user:a", "user:b", "ip:192.0.2.1"}
	for step := 0; step < 50_000; step++ {
		session := fmt.Sprint("s", rng.IntN(3000))
		client := clients[rng.IntN(len(clients))]
		auth := fmt.Sprint("a", rng.IntN(3))
		switch op := rng.IntN(100); {
		case op < 50:
			c.BindFor(client, session, "m", auth)
		case op < 70:
			c.Get(session, "m")
		case op < 80:
			c.Touch(session, "m", auth)
		case op < 88:
			c.Unbind(session, "m", auth)
		case op < 93:
			c.InvalidateSession(session)
		case op < 95:
			c.InvalidateAuth(auth)
		case op < 98:
			clk.Advance(time.Duration(rng.IntN(30)) * time.Second)
			c.Sweep()
		case op < 99:
			c.Retain(func(id string) bool { return id != auth })
		default:
			c.Clear()
		}
		if step%5000 == 0 {
			checkClientLists(t, c)
		}
	}
	checkClientLists(t, c)
}

func TestClientOf(t *testing.T) {
	for _, tc := range []struct {
		user, clientIP, remote, want string
	}{
		{"alice", "192.0.2.1", "192.0.2.1:5", "user:alice"},
		{"", "192.0.2.1", "10.0.0.1:5", "ip:192.0.2.1"},
		{"", "2001:db8:1:2:3:4:5:6", "10.0.0.1:5", "ip:2001:db8:1:2::/64"},
		{"", "", "[::ffff:192.0.2.9]:5", "ip:192.0.2.9"},
		{"", "", "192.0.2.9:5", "ip:192.0.2.9"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
		r.RemoteAddr = tc.remote
		repl := caddy.NewReplacer()
		if tc.user != "" {
			repl.Set("http.auth.user.id", tc.user)
		}
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
		vars := map[string]any{}
		if tc.clientIP != "" {
			vars[caddyhttp.ClientIPVarKey] = tc.clientIP
		}
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, vars)
		if got := ClientOf(r.WithContext(ctx)); got != tc.want {
			t.Errorf("ClientOf(user %q, ip %q, remote %q) = %q, want %q", tc.user, tc.clientIP, tc.remote, got, tc.want)
		}
	}
}
