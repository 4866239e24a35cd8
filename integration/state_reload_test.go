package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/filestorage"
	"github.com/caddyserver/certmagic"
	"github.com/google/uuid"
)

func init() {
	caddy.RegisterModule(countingStorage{})
}

// storeCounts counts the Store calls of every countingStorage by key.
var storeCounts = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// storesUnder returns how many Store calls wrote keys containing part.
func storesUnder(part string) int {
	storeCounts.Lock()
	defer storeCounts.Unlock()
	total := 0
	for k, n := range storeCounts.n {
		if strings.Contains(k, part) {
			total += n
		}
	}
	return total
}

// countingStorage is Caddy's file_system storage that counts what is
// written: "storage test_counting_fs { root <dir> }".
type countingStorage struct {
	filestorage.FileStorage
}

func (countingStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.test_counting_fs",
		New: func() caddy.Module { return new(countingStorage) },
	}
}

func (s *countingStorage) CertMagicStorage() (certmagic.Storage, error) {
	return countingFS{&certmagic.FileStorage{Path: s.Root}}, nil
}

type countingFS struct{ *certmagic.FileStorage }

func (c countingFS) Store(ctx context.Context, key string, value []byte) error {
	storeCounts.Lock()
	storeCounts.n[key]++
	storeCounts.Unlock()
	return c.FileStorage.Store(ctx, key, value)
}

// reloadCaddyfile is the in-process Caddy's config on counting storage
// in dir, with site as the site block's body.
func reloadCaddyfile(dir, site string) string {
	return fmt.Sprintf(`{
	admin %s
	http_port %d
	https_port %d
	grace_period 1m
	storage test_counting_fs {
		root %s
	}
}

%s {
%s
}
`, adminAddr, sitePort, httpsPort, dir, siteAddr, site)
}

// forceLoad loads cfg through the admin API even when it equals the
// running config.
func forceLoad(t *testing.T, cfg string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /load: %d %s", resp.StatusCode, b)
	}
}

// steadyGoroutines waits until the goroutine count stops falling (old
// servers wind down after a reload) and returns it.
func steadyGoroutines() int {
	last, same := -1, 0
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && same < 3; time.Sleep(100 * time.Millisecond) {
		runtime.GC()
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}

// settleGoroutines waits until at most limit goroutines run (old servers
// wind down after a reload) and returns the count it ended with.
func settleGoroutines(limit int) int {
	var n int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		runtime.GC()
		if n = runtime.NumGoroutine(); n <= limit {
			break
		}
	}
	return n
}

// TestStateReloadsBounded reloads a config whose pool keeps its name 100
// times with state_sync 200ms and no traffic: the pool's state document is
// not rewritten by reloads (nothing changed), no other key is written, and
// the goroutine count stays where it was. Then 20 reloads that drop the
// pool and bring it back write the document at most once per drop.
func TestStateReloadsBounded(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	const pool = "state-reloads"
	site := func(i int) string {
		// Alternate a setting so every reload rebuilds the handler.
		return strings.Replace(stateSite(pool, up.URL, testStateSync), "\t\trouting {",
			fmt.Sprintf("\t\trescan_interval %dh\n\t\trouting {", 1+i%2), 1)
	}
	caddytest.NewTester(t).InitServer(reloadCaddyfile(dir, site(0)), "caddyfile")
	sessions, creds := make([]string, 6), make([]string, 6)
	for i := range sessions {
		sessions[i] = uuid.NewString()
		resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation(fmt.Sprintf("reloads-%d", i), sessions[i], 1))
		creds[i] = resp.Header.Get("X-Mock-Credential")
	}
	doc := "llm_proxy/" + pool + "/state/"
	// The bindings reach the document within a period or two; wait until
	// the writes stop (two periods without one).
	waitFor(t, 10*time.Second, "the state document to be written", func() bool { return storesUnder(doc) > 0 })
	for last := -1; ; {
		n := storesUnder(doc)
		if n == last {
			break
		}
		last = n
		time.Sleep(500 * time.Millisecond) // condition: no write in 2.5 periods
	}
	for i := 1; i <= 5; i++ {
		forceLoad(t, reloadCaddyfile(dir, site(i)))
	}
	// The same traffic before both counts: one request, then the test's
	// idle connections closed.
	serve := func(when string) {
		resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation("reloads-0", "", 1))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("serving %s: %d", when, resp.StatusCode)
		}
		http.DefaultClient.CloseIdleConnections()
	}
	serve("before the reloads")
	base := steadyGoroutines()
	docWrites, allWrites := storesUnder(doc), storesUnder("")
	start := time.Now()
	for i := 0; i < 100; i++ {
		forceLoad(t, reloadCaddyfile(dir, site(i)))
	}
	took := time.Since(start)
	serve("after 100 reloads")
	if n := settleGoroutines(base + 5); n > base+5 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines grew from %d to %d over 100 reloads:\n%s", base, n, buf[:runtime.Stack(buf, true)])
	}
	// The request above may add a binding and so one write; reloads of an
	// unchanged pool add none.
	dw, aw := storesUnder(doc)-docWrites, storesUnder("")-allWrites
	t.Logf("100 reloads in %v: %d state document writes, %d storage writes in all", took.Round(time.Millisecond), dw, aw)
	if dw > 2 {
		t.Fatalf("100 reloads of an unchanged pool wrote its state document %d times", dw)
	}
	if aw != dw {
		storeCounts.Lock()
		t.Logf("writes by key: %v", storeCounts.n)
		storeCounts.Unlock()
		t.Fatalf("100 reloads wrote %d storage keys other than the state document", aw-dw)
	}

	// A config without the pool detaches it (one write at most); the next
	// one with it starts it afresh.
	docWrites = storesUnder(doc)
	const drops = 20
	for i := 0; i < drops; i++ {
		forceLoad(t, reloadCaddyfile(dir, "\trespond \"no pool\" 200"))
		forceLoad(t, reloadCaddyfile(dir, site(i)))
	}
	serve("after the drops")
	dw = storesUnder(doc) - docWrites
	t.Logf("%d drops of the pool: %d state document writes", drops, dw)
	if dw > drops+2 {
		t.Fatalf("%d drops of the pool wrote its state document %d times", drops, dw)
	}
	// The pool came back from its document each time: the conversations
	// of before the reloads are still on their credentials.
	for i := range sessions {
		resp, _ := call(t, http.MethodPost, "/v1/messages", nil, conversation(fmt.Sprintf("reloads-%d", i), sessions[i], 2))
		if got := resp.Header.Get("X-Mock-Credential"); got != creds[i] {
			t.Fatalf("conversation %d moved from %s to %s over the reloads", i, creds[i], got)
		}
	}
	if n := settleGoroutines(base + 5); n > base+5 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines grew from %d to %d over %d drops of the pool:\n%s", base, n, drops, buf[:runtime.Stack(buf, true)])
	}
}
