package integration

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// TestStateHitRateBench measures, with real Caddy processes on one
// file_system storage, how many turns of running conversations stay on
// their credential (and hit the mock's prompt cache) across a restart and
// behind a round robin of three instances, with state_sync at its default
// and off, and how long a cooldown and a binding take to reach the other
// instances. It is a benchmark, not a test: it runs only with
// LLMPROXY_STATE_BENCH set (=propagation: only the last part) and prints a
// table (BENCHMARKS.md, "Session 3").
//
//	LLMPROXY_STATE_BENCH=1 go test -count=1 -run TestStateHitRateBench -v ./integration/
func TestStateHitRateBench(t *testing.T) {
	if os.Getenv("LLMPROXY_STATE_BENCH") == "" {
		t.Skip("set LLMPROXY_STATE_BENCH=1 to run")
	}
	up := newUpstream(t, mockllmOpts())
	bin := buildCaddy(t)
	if os.Getenv("LLMPROXY_STATE_BENCH") == "propagation" {
		propagation(t, up, bin)
		return
	}
	const convs = 300
	var rows []string
	row := func(format string, args ...any) {
		rows = append(rows, fmt.Sprintf(format, args...))
		t.Log(rows[len(rows)-1])
	}

	// One instance: turns 1 and 2, a stop, a start as the same instance,
	// turns 3 and 4. The first turn after the restart is the measure.
	restart := []struct {
		name string
		sync string // "" is the default, 2s
		sig  syscall.Signal
		wait bool // kill -9 only once the document holds every binding
	}{
		{"SIGTERM", "", syscall.SIGTERM, false},
		{"SIGTERM", "off", syscall.SIGTERM, false},
		{"kill -9, document caught up", "", syscall.SIGKILL, true},
		{"kill -9 at once after turn 2 (every binding younger than state_sync)", "", syscall.SIGKILL, false},
		{"kill -9", "off", syscall.SIGKILL, false},
	}
	for i, tc := range restart {
		const pool = "bench-restart"
		storage := t.TempDir()
		n := newStateNode(t, "restart", bin, storage, stateSite(pool, up.URL, tc.sync))
		via := func(int) *caddyProcess { return n.caddyProcess }
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		cs := newStateConvs(fmt.Sprintf("bench-restart-%d", i), convs)
		up.Reset()
		sendTurns(t, cs, via, nil)
		sendTurns(t, cs, via, rng)
		if tc.wait {
			doc := stateDocPath(storage, pool, n.instanceID(t))
			waitFor(t, time.Minute, "the state document", func() bool { return docBindings(doc) >= convs })
		}
		n.stop(t, tc.sig)
		n.start(t)
		before := up.Stats()
		r := sendTurns(t, cs, via, rng)
		hit, eligible := cacheTurns(before, up.Stats())
		r4 := sendTurns(t, cs, via, rng)
		row("| restart: %s | %s | %d/%d = **%.1f%%** | %d/%d = %.1f%% | %.1f%% |", tc.name, syncName(tc.sync),
			r.same, r.later, 100*r.rate(), hit, eligible, pct(hit, eligible), 100*r4.rate())
		n.stop(t, syscall.SIGTERM)
	}

	// Three instances behind a round robin over all requests: each turn
	// goes to the next instance, so a conversation changes instance at
	// nearly every turn. Rounds of one turn per conversation (shuffled)
	// are separated by a think time.
	three := []struct {
		sync  string
		think time.Duration
	}{
		{"", 5 * time.Second},
		{"", 3 * time.Second},
		{"", 0},
		{"200ms", time.Second},
		{"off", 3 * time.Second},
	}
	for i, tc := range three {
		pool := fmt.Sprintf("bench-three-%d", i)
		storage := t.TempDir()
		body := stateSite(pool, up.URL, tc.sync)
		nodes := []*stateNode{
			newStateNode(t, "A", bin, storage, body),
			newStateNode(t, "B", bin, storage, body),
			newStateNode(t, "C", bin, storage, body),
		}
		next := 0
		via := func(int) *caddyProcess {
			next++
			return nodes[next%3].caddyProcess
		}
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		cs := newStateConvs(fmt.Sprintf("bench-three-%d", i), convs/2)
		up.Reset()
		sendTurns(t, cs, via, rng)
		var same, later int
		start := time.Now()
		for turn := 2; turn <= 6; turn++ {
			time.Sleep(tc.think)
			r := sendTurns(t, cs, via, rng)
			same += r.same
			later += r.later
		}
		took := time.Since(start) - 5*tc.think
		hit, eligible := cacheTurns(nil, up.Stats())
		row("| three instances, think %v (a round of %d turns takes %v) | %s | %d/%d = **%.1f%%** | %d/%d = %.1f%% | |",
			tc.think, len(cs), (took / 5).Round(10*time.Millisecond), syncName(tc.sync), same, later, 100*float64(same)/float64(later), hit, eligible, pct(hit, eligible))
		for _, n := range nodes {
			n.stop(t, syscall.SIGTERM)
		}
	}
	propagation(t, up, bin)
	fmt.Printf("\n| scenario | state_sync | later turns on the previous turn's credential | mock cache hit turns / eligible | next turn on its credential |\n| --- | --- | --- | --- | --- |\n%s\n", strings.Join(rows, "\n"))
}

func syncName(s string) string {
	if s == "" {
		return "default (2s)"
	}
	return s
}

// cacheTurns sums the mock's cache hit turns and eligible turns between two
// snapshots (before nil: since the last reset).
func cacheTurns(before, after map[string]mockllm.CredentialStats) (hit, eligible int64) {
	for label, a := range after {
		b := before[label]
		hit += a.CacheHitTurns - b.CacheHitTurns
		eligible += a.EligibleTurns - b.EligibleTurns
	}
	return hit, eligible
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// propagation measures how long a new cooldown and a new binding learnt by
// instance A take to show on B and C (their admin API, polled every 5ms),
// with state_sync 200ms: A writes at its next period, B and C read at
// theirs.
func propagation(t *testing.T, up *upstream, bin string) {
	const pool, samples = "bench-propagation", 40
	const sync = 200 * time.Millisecond
	storage := t.TempDir()
	body := stateSite(pool, up.URL, sync.String(), "one")
	a := newStateNode(t, "A", bin, storage, body)
	others := []*stateNode{newStateNode(t, "B", bin, storage, body), newStateNode(t, "C", bin, storage, body)}
	var cool, bind []time.Duration
	for i := 0; i < samples; i++ {
		// Events at random moments of the instances' periods.
		time.Sleep(rand.N(sync))
		// A cooldown of a model of its own: a 429 from the only credential.
		model := fmt.Sprintf("claude-sonnet-4-5-p%d", i)
		up.SetFault("claude-1", mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": "600"}, Times: 1})
		resp, err := http.Post("http://"+a.site+"/v1/messages", "application/json",
			strings.NewReader(fmt.Sprintf(`{"model":%q,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, model)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("sample %d: status %d", i, resp.StatusCode)
		}
		start := time.Now()
		for _, n := range others {
			// The credential's own view lists every cooldown (the list of
			// credentials shows 16).
			for !slices.ContainsFunc(n.credCooldowns(t, pool, "c-one"), func(c cooldownView) bool { return c.Model == model }) {
				if time.Since(start) > time.Minute {
					t.Fatalf("%s never learnt the cooldown of %s", n.name, model)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		cool = append(cool, time.Since(start))

		// A new conversation's binding.
		want := map[*stateNode]int{}
		for _, n := range others {
			want[n] = n.sessions(t, pool)["c-one"] + 1
		}
		time.Sleep(rand.N(sync))
		sendTurns(t, newStateConvs(fmt.Sprintf("propagation-%d", i), 1), func(int) *caddyProcess { return a.caddyProcess }, nil)
		start = time.Now()
		for _, n := range others {
			for n.sessions(t, pool)["c-one"] < want[n] {
				if time.Since(start) > time.Minute {
					t.Fatalf("%s never learnt binding %d", n.name, i)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		bind = append(bind, time.Since(start))
	}
	for _, m := range []struct {
		what string
		d    []time.Duration
	}{{"cooldown", cool}, {"binding", bind}} {
		slices.Sort(m.d)
		p := func(q float64) time.Duration { return m.d[int(q*float64(len(m.d)-1))].Round(time.Millisecond) }
		t.Logf("| %s learnt by A, shown on B and C (state_sync %v, %d samples) | p50 %v | p90 %v | max %v (%.1f × state_sync) |",
			m.what, sync, samples, p(0.5), p(0.9), p(1), float64(m.d[len(m.d)-1])/float64(sync))
	}
	for _, n := range append(others, a) {
		n.stop(t, syscall.SIGTERM)
	}
}
