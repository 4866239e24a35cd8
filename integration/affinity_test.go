package integration

import (
	"fmt"
	"github.com/caddyserver/caddy/v2/caddytest"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// affinitySite is a pool of the three mock Claude keys with affinity on.
func affinitySite(pool, base, strategy string, ids ...string) string {
	if len(ids) == 0 {
		ids = []string{"one", "two", "three"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\tllm_proxy {\n\t\tpool %s\n", pool)
	for _, id := range ids {
		fmt.Fprintf(&b, "\t\tauth c-%s {\n\t\t\tprovider claude\n\t\t\tapi_key sk-ant-%s\n\t\t\tbase_url %s\n\t\t}\n", id, id, base)
	}
	fmt.Fprintf(&b, "\t\trouting {\n\t\t\tstrategy %s\n\t\t\tsession_affinity on\n\t\t}\n\t}", strategy)
	return b.String()
}

// conversation builds turn n (1-based) of a Claude Code style conversation.
// With session set, the body carries metadata.user_id as Claude Code sends
// it; without, the proxy falls back to the message hash.
func conversation(topic, session string, turn int) string {
	var msgs []string
	for i := 1; i <= turn; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"role":"user","content":[{"type":"text","text":"%s question %d"}]}`, topic, i))
		if i < turn {
			msgs = append(msgs, fmt.Sprintf(`{"role":"assistant","content":[{"type":"text","text":"answer %d about %s"}]}`, i, topic))
		}
	}
	meta := ""
	if session != "" {
		meta = fmt.Sprintf(`"metadata":{"user_id":"{\"device_id\":\"dev-1\",\"account_uuid\":\"\",\"session_id\":\"%s\"}"},`, session)
	}
	return fmt.Sprintf(`{"model":"claude-sonnet-4-5","max_tokens":32,%s"system":[{"type":"text","text":"You are Claude Code."}],"messages":[%s],"stream":false}`,
		meta, strings.Join(msgs, ","))
}

// runConversations sends turns 1..turns of n conversations, concurrently
// across conversations, and returns the credential of every turn.
func runConversations(t *testing.T, n, turns int, withSession bool, prefix string) [][]string {
	t.Helper()
	out := make([][]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan string, n*turns)
	for c := 0; c < n; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			session := ""
			if withSession {
				session = uuid.NewString()
			}
			topic := fmt.Sprintf("%s-topic-%d", prefix, c)
			for turn := 1; turn <= turns; turn++ {
				req, _ := http.NewRequest(http.MethodPost, siteAddr+"/v1/messages", strings.NewReader(conversation(topic, session, turn)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Sprintf("conversation %d turn %d: status %d", c, turn, resp.StatusCode)
					return
				}
				out[c] = append(out[c], resp.Header.Get("X-Mock-Credential"))
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	return out
}

func checkSticky(t *testing.T, convs [][]string) map[string]int {
	t.Helper()
	spread := map[string]int{}
	for i, turns := range convs {
		for _, c := range turns {
			if c != turns[0] {
				t.Fatalf("conversation %d moved between credentials: %v", i, turns)
			}
		}
		spread[turns[0]]++
	}
	return spread
}

func TestConcurrentConversationsStayOnOneCredentialAndSpreadEvenly(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	for _, tc := range []struct {
		name        string
		withSession bool
	}{{"claude code session ids", true}, {"message hash fallback", false}} {
		t.Run(tc.name, func(t *testing.T) {
			pool := "sticky-" + strings.ReplaceAll(tc.name, " ", "-")
			loadConfig(t, t.TempDir(), affinitySite(pool, up.URL, "round_robin"))
			convs := runConversations(t, 60, 4, tc.withSession, pool)
			spread := checkSticky(t, convs)
			for _, c := range []string{"claude-1", "claude-2", "claude-3"} {
				if spread[c] != 20 {
					t.Fatalf("new conversations not spread evenly: %v", spread)
				}
			}
		})
	}
}

func TestBindingsSurviveReloadAndLeaveWithTheirCredential(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	const pool = "reload-bindings"
	loadConfig(t, dir, affinitySite(pool, up.URL, "round_robin"))

	sessions := make([]string, 30)
	first := make([]string, 30)
	for i := range sessions {
		sessions[i] = uuid.NewString()
		resp, body := call(t, http.MethodPost, "/v1/messages", nil, conversation(fmt.Sprintf("r%d", i), sessions[i], 1))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		first[i] = resp.Header.Get("X-Mock-Credential")
	}

	// A reload with the same pool name (and a changed TTL) keeps bindings.
	site := strings.Replace(affinitySite(pool, up.URL, "round_robin"), "session_affinity on", "session_affinity on\n\t\t\tsession_affinity_ttl 2h", 1)
	loadConfig(t, dir, site)
	for i := range sessions {
		resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation(fmt.Sprintf("r%d", i), sessions[i], 2))
		if got := resp.Header.Get("X-Mock-Credential"); got != first[i] {
			t.Fatalf("session %d moved from %s to %s after a reload", i, first[i], got)
		}
	}

	// Removing a credential moves only its sessions.
	loadConfig(t, dir, affinitySite(pool, up.URL, "round_robin", "one", "three"))
	moved := 0
	for i := range sessions {
		resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation(fmt.Sprintf("r%d", i), sessions[i], 3))
		got := resp.Header.Get("X-Mock-Credential")
		switch {
		case first[i] == "claude-2":
			if got == "claude-2" {
				t.Fatalf("session %d still served by the removed credential", i)
			}
			moved++
		case got != first[i]:
			t.Fatalf("session %d on a remaining credential moved from %s to %s", i, first[i], got)
		}
	}
	if moved != 10 {
		t.Fatalf("%d sessions were on the removed credential, want 10", moved)
	}
}

func TestNoGoroutineLeakOverManyReloads(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	cfg := func(i int) string {
		// Alternate pool names and settings so pools are created and
		// destroyed, and rescans start and stop.
		site := affinitySite(fmt.Sprintf("leak-%d", i%2), up.URL, "round_robin")
		return caddyfile(dir, strings.Replace(site, "\t\trouting {", "\t\trescan_interval 1h\n\t\trouting {", 1))
	}
	// The first load starts the in-process Caddy when this test runs alone.
	caddytest.NewTester(t).InitServer(cfg(0), "caddyfile")
	for i := 1; i < 5; i++ {
		if code, body := postLoad(t, cfg(i)); code != 200 {
			t.Fatalf("load %d: %d %s", i, code, body)
		}
	}
	call(t, http.MethodPost, "/v1/messages", nil, conversation("leak", uuid.NewString(), 1))
	base := settleGoroutines(0)
	for i := 0; i < 100; i++ {
		if code, body := postLoad(t, cfg(i)); code != 200 {
			t.Fatalf("reload %d: %d %s", i, code, body)
		}
	}
	call(t, http.MethodPost, "/v1/messages", nil, conversation("leak", uuid.NewString(), 1))
	if n := settleGoroutines(base + 5); n > base+5 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines grew from %d to %d over 100 reloads:\n%s", base, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestBadReloadKeepsRunningConfigServing(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	const pool = "bad-reload"
	loadConfig(t, dir, affinitySite(pool, up.URL, "round_robin"))
	for _, bad := range []string{
		strings.Replace(affinitySite(pool, up.URL, "round_robin"), "strategy round_robin", "strategy nope", 1),
		affinitySite(pool, up.URL, "round_robin") + "\n\tllm_proxy /other/* {\n\t\tpool " + pool + "\n\t\tauth x {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t}\n\t}",
	} {
		code, body := postLoad(t, caddyfile(dir, bad))
		if code == 200 {
			t.Fatalf("bad config accepted: %s", bad)
		}
		t.Logf("refused as expected: %s", body)
		resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation("still", "", 1))
		if resp.StatusCode != 200 {
			t.Fatalf("running config stopped serving after a refused reload: %d", resp.StatusCode)
		}
	}
}
