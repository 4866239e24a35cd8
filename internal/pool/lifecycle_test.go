package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// fakeTickers replaces the rescan loops' tickers: every loop ticks on one
// channel the test drives, and the loops running are counted.
type fakeTickers struct {
	tick    chan time.Time
	mu      sync.Mutex
	running int
	started int
}

func useFakeTickers(t *testing.T) *fakeTickers {
	t.Helper()
	f := &fakeTickers{tick: make(chan time.Time)}
	prev := newTicker
	newTicker = func(time.Duration) (<-chan time.Time, func()) {
		f.mu.Lock()
		f.running++
		f.started++
		f.mu.Unlock()
		var once sync.Once
		return f.tick, func() {
			once.Do(func() {
				f.mu.Lock()
				f.running--
				f.mu.Unlock()
			})
		}
	}
	t.Cleanup(func() { newTicker = prev })
	return f
}

// loops returns how many rescan loops run and how many were ever started.
func (f *fakeTickers) loops() (running, started int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running, f.started
}

// rescanNow makes the running loop rescan and returns once it has: a loop
// takes the second tick only after the rescan of the first.
func (f *fakeTickers) rescanNow() {
	f.tick <- time.Time{}
	f.tick <- time.Time{}
}

// brokenStorage is a file storage whose listings, loads or writes can be
// made to fail or to wait, as a remote backend does.
type brokenStorage struct {
	*certmagic.FileStorage
	mu       sync.Mutex
	failList bool
	failLoad map[string]bool
	// listing, when set, receives a signal once a listing has read its
	// keys and then waits for release.
	listing chan struct{}
	release chan struct{}
	events  []string // "listed" when a listing returns, "lock <key>" before a write
}

func (b *brokenStorage) Lock(ctx context.Context, name string) error {
	b.mu.Lock()
	b.events = append(b.events, "lock "+name)
	b.mu.Unlock()
	return b.FileStorage.Lock(ctx, name)
}

func (b *brokenStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	b.mu.Lock()
	fail, listing, release := b.failList, b.listing, b.release
	b.mu.Unlock()
	if fail {
		return nil, errors.New("storage backend unavailable")
	}
	keys, err := b.FileStorage.List(ctx, prefix, recursive)
	if listing != nil {
		listing <- struct{}{}
		<-release
	}
	b.mu.Lock()
	b.events = append(b.events, "listed")
	b.mu.Unlock()
	return keys, err
}

func (b *brokenStorage) Load(ctx context.Context, key string) ([]byte, error) {
	b.mu.Lock()
	fail := b.failLoad[key]
	b.mu.Unlock()
	if fail {
		return nil, &os.PathError{Op: "open", Path: key, Err: os.ErrPermission}
	}
	return b.FileStorage.Load(ctx, key)
}

func (b *brokenStorage) set(f func(*brokenStorage)) {
	b.mu.Lock()
	f(b)
	b.mu.Unlock()
}

// newStore is a record store on a file storage in a temp dir holding the
// given records (claude keys).
func newStore(t *testing.T, ids ...string) (*auth.CaddyStore, *brokenStorage) {
	t.Helper()
	bs := &brokenStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	s := auth.NewCaddyStore(bs, "llm_proxy/test/auths")
	for _, id := range ids {
		putRecord(t, s, id, `{"provider":"claude","api_key":"sk-ant-`+strings.ReplaceAll(id, "/", "-")+`-0123456789"}`)
	}
	return s, bs
}

// putRecord writes a record document straight into storage, as an
// operator or another instance does.
func putRecord(t *testing.T, s *auth.CaddyStore, id, doc string) {
	t.Helper()
	if err := s.Storage.Store(context.Background(), s.Key(id), []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func members(p *Pool) []string {
	ids := []string{}
	for _, c := range p.Credentials() {
		ids = append(ids, c.ID())
	}
	return ids
}

func wantMembers(t *testing.T, p *Pool, want ...string) {
	t.Helper()
	if got := members(p); !reflect.DeepEqual(got, want) {
		t.Fatalf("pool members %v, want %v", got, want)
	}
}

func attach(t *testing.T, name string, cfg Config) *Attachment {
	t.Helper()
	a, err := Attach(context.Background(), name, cfg)
	if err != nil {
		t.Fatalf("attach %v: %v", cfg.Owner, err)
	}
	t.Cleanup(a.Detach)
	return a
}

// The order in which Caddy attaches, starts and detaches configs decides
// which one's credentials, secret and rescans the pool has.
func TestLifecycleOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps string // space separated: +X attach, ^X serve, -X detach
		// want: members, secret, running loops; "" secret with noConfig
		// means no config is attached.
		members  []string
		secret   string
		noConfig bool
		loops    int
	}{
		{name: "first load", steps: "+A ^A", members: []string{"a1", "sa"}, secret: "secret-a", loops: 1},
		{name: "validate starts nothing", steps: "+A", members: []string{"a1", "sa"}, secret: "secret-a", loops: 0},
		{name: "validated config cleaned up", steps: "+A -A", noConfig: true},
		{name: "reload", steps: "+A ^A +B ^B -A", members: []string{"b1", "sb"}, secret: "secret-b", loops: 1},
		{name: "reload not started yet", steps: "+A ^A +B", members: []string{"b1", "sb"}, secret: "secret-b", loops: 0},
		{name: "refused reload", steps: "+A ^A +B -B", members: []string{"a1", "sa"}, secret: "secret-a", loops: 1},
		{name: "refused reload after a second good one", steps: "+A ^A +B ^B -A +C -C", members: []string{"b1", "sb"}, secret: "secret-b", loops: 1},
		{name: "config without rescans", steps: "+A ^A +C ^C -A", members: []string{"c1"}, secret: "", loops: 0},
		{name: "last config leaves", steps: "+A ^A +B ^B -A -B", noConfig: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticks := useFakeTickers(t)
			storeA, _ := newStore(t, "sa")
			storeB, _ := newStore(t, "sb")
			configs := map[string]Config{
				"A": {Owner: "A", Inline: []*auth.Auth{rec("a1", "claude")}, Store: storeA, ManagementSecret: "secret-a", RescanInterval: time.Second},
				"B": {Owner: "B", Inline: []*auth.Auth{rec("b1", "claude")}, Store: storeB, ManagementSecret: "secret-b", RescanInterval: time.Second},
				"C": {Owner: "C", Inline: []*auth.Auth{rec("c1", "claude")}},
			}
			name := "lifecycle-" + strings.ReplaceAll(tc.name, " ", "-")
			attached := map[string]*Attachment{}
			for _, step := range strings.Fields(tc.steps) {
				op, id := step[0], step[1:]
				switch op {
				case '+':
					attached[id] = attach(t, name, configs[id])
				case '^':
					attached[id].Serve()
				case '-':
					attached[id].Detach()
				}
			}
			running, _ := ticks.loops()
			if running != tc.loops {
				t.Errorf("%d rescan loops running, want %d", running, tc.loops)
			}
			p, ok := Lookup(name)
			if tc.noConfig {
				if ok {
					t.Fatalf("pool still in use: members %v", members(p))
				}
				return
			}
			wantMembers(t, p, tc.members...)
			if secret, ok := p.ManagementSecret(); !ok || secret != tc.secret {
				t.Errorf("management secret %q (%v), want %q", secret, ok, tc.secret)
			}
		})
	}
}

// A refused reload leaves the running config's settings, state and
// rescans as they were.
func TestRefusedReloadRestoresRunningConfig(t *testing.T) {
	ticks := useFakeTickers(t)
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	defer clock.Install(fake.Now)()
	storeA, _ := newStore(t, "shared")
	storeB, _ := newStore(t, "shared", "only-b")
	const name = "lifecycle-refused"
	a := attach(t, name, Config{Owner: "A", Store: storeA, BindingTTL: time.Hour, RescanInterval: time.Second})
	a.Serve()
	p := a.Pool()
	shared, _ := p.Get("shared")

	b := attach(t, name, Config{Owner: "B", Store: storeB, BindingTTL: 3 * time.Hour, RescanInterval: time.Second})
	wantMembers(t, p, "only-b", "shared")
	if c, _ := p.Get("shared"); c != shared {
		t.Fatal("a credential in both configs lost its state")
	}
	b.Detach()
	wantMembers(t, p, "shared")
	if c, _ := p.Get("shared"); c != shared {
		t.Fatal("restoring lost a credential's state")
	}

	// The binding TTL is the running config's again.
	p.Sessions.Bind("s", "m", "shared")
	fake.Advance(90 * time.Minute)
	if _, ok := p.Sessions.Get("s", "m"); ok {
		t.Fatal("binding outlived the running config's TTL of 1h")
	}

	// Its rescans run again, on its own store.
	putRecord(t, storeA, "new-a", `{"provider":"claude","api_key":"sk-ant-new-a-0123456789"}`)
	ticks.rescanNow()
	wantMembers(t, p, "new-a", "shared")
}

// One config can attach a pool once: two handlers of one config sharing a
// pool name is a config error, and it changes nothing in the pool.
func TestDuplicatePoolInOneConfig(t *testing.T) {
	const name = "lifecycle-duplicate"
	a := attach(t, name, Config{Owner: "cfg-1", Inline: []*auth.Auth{rec("x", "claude")}})
	_, err := Attach(context.Background(), name, Config{Owner: "cfg-1", Inline: []*auth.Auth{rec("y", "claude")}})
	if err == nil || !strings.Contains(err.Error(), "more than one llm_proxy handler") {
		t.Fatalf("second attach by one config: %v", err)
	}
	wantMembers(t, a.Pool(), "x")

	// The next config may use the name again, and the refused attach took
	// no use of the pool with it.
	b := attach(t, name, Config{Owner: "cfg-2", Inline: []*auth.Auth{rec("y", "claude")}})
	wantMembers(t, a.Pool(), "y")
	a.Detach()
	b.Detach()
	if _, ok := Lookup(name); ok {
		t.Fatal("a refused attach kept the pool in use")
	}
}

// A stored record with an inline credential's ID refuses the config that
// declares it; found by a rescan, it is skipped and reported.
func TestInlineAndStoredConflict(t *testing.T) {
	const name = "lifecycle-conflict"
	store, _ := newStore(t, "dup", "s1")
	_, err := Attach(context.Background(), name, Config{Owner: "A", Inline: []*auth.Auth{rec("dup", "claude")}, Store: store})
	if err == nil || !strings.Contains(err.Error(), `auth "dup" is declared inline and also exists in storage at llm_proxy/test/auths/dup.json`) {
		t.Fatalf("attach: %v", err)
	}
	if _, ok := Lookup(name); ok {
		t.Fatal("a refused attach kept the pool in use")
	}

	store2, _ := newStore(t, "s1")
	a := attach(t, name, Config{Owner: "B", Inline: []*auth.Auth{rec("dup", "claude")}, Store: store2})
	putRecord(t, store2, "dup", `{"provider":"claude","api_key":"sk-ant-stored-0123456789"}`)
	res, err := a.Pool().Rescan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 1 || !reflect.DeepEqual(res.Conflicts, []string{"dup"}) {
		t.Fatalf("rescan: %+v", res)
	}
	c, _ := a.Pool().Get("dup")
	if c.Auth().APIKey != "k-dup" {
		t.Fatal("the stored record replaced the inline credential")
	}
	if err := a.Pool().Save(context.Background(), rec("dup", "claude")); err == nil {
		t.Fatal("an admin write took the ID of an inline credential")
	}
}

// Bindings to credentials a new config removed stay while it may still be
// refused and go once it serves.
func TestBindingsDropWhenConfigServes(t *testing.T) {
	const name = "lifecycle-bindings"
	a := attach(t, name, Config{Owner: "A", Inline: []*auth.Auth{rec("keep", "claude"), rec("gone", "claude")}})
	a.Serve()
	p := a.Pool()
	p.Sessions.Bind("s-keep", "m", "keep")
	p.Sessions.Bind("s-gone", "m", "gone")

	// Refused: nothing is dropped, and the running config has both again.
	b := attach(t, name, Config{Owner: "B", Inline: []*auth.Auth{rec("keep", "claude")}})
	b.Detach()
	if p.Sessions.Len() != 2 {
		t.Fatal("a refused config dropped bindings")
	}

	c := attach(t, name, Config{Owner: "C", Inline: []*auth.Auth{rec("keep", "claude")}})
	if p.Sessions.Len() != 2 {
		t.Fatal("bindings dropped before the new config served")
	}
	c.Serve()
	if _, ok := p.Sessions.Get("s-gone", "m"); ok {
		t.Fatal("binding to a removed credential survived the new config's start")
	}
	if id, ok := p.Sessions.Get("s-keep", "m"); !ok || id != "keep" {
		t.Fatal("binding to a staying credential dropped")
	}
	a.Detach()
}

// Exactly one rescan loop runs per pool, whatever the number of reloads,
// and it lists the active config's store.
func TestOneRescanLoopOverManyReloads(t *testing.T) {
	ticks := useFakeTickers(t)
	const name = "lifecycle-loops"
	store, _ := newStore(t)
	prev := attach(t, name, Config{Owner: 0, Store: store, RescanInterval: time.Second})
	prev.Serve()
	for i := 1; i <= 100; i++ {
		next := attach(t, name, Config{Owner: i, Store: store, RescanInterval: time.Second})
		if i%10 == 0 {
			// A refused reload now and then.
			next.Detach()
			continue
		}
		next.Serve()
		prev.Detach()
		prev = next
		if running, _ := ticks.loops(); running != 1 {
			t.Fatalf("reload %d: %d rescan loops running", i, running)
		}
	}
	putRecord(t, store, "late", `{"provider":"claude","api_key":"sk-ant-late-0123456789"}`)
	ticks.rescanNow()
	wantMembers(t, prev.Pool(), "late")
	prev.Detach()
	if running, started := ticks.loops(); running != 0 || started > 101 {
		t.Fatalf("after the last detach: %d loops running, %d started", running, started)
	}
}

// A listing taken before an admin write never undoes the write.
func TestAdminWriteWaitsForListing(t *testing.T) {
	const name = "lifecycle-write-vs-listing"
	store, bs := newStore(t, "a")
	att := attach(t, name, Config{Owner: "A", Store: store})
	p := att.Pool()

	bs.set(func(b *brokenStorage) { b.listing, b.release = make(chan struct{}), make(chan struct{}) })
	listing, release := bs.listing, bs.release
	rescanned := make(chan error, 1)
	go func() {
		_, err := p.Rescan(context.Background())
		rescanned <- err
	}()
	<-listing // the listing has its keys: "a" only
	bs.set(func(b *brokenStorage) { b.listing = nil })

	if p.store.TryLock() {
		t.Fatal("a listing runs without holding the pool's storage lock")
	}
	bs.set(func(b *brokenStorage) { b.events = nil })
	saved, saving := make(chan error, 1), make(chan struct{})
	go func() {
		close(saving)
		r := rec("b", "claude")
		r.APIKey = "sk-ant-b-0123456789"
		saved <- p.Save(context.Background(), r)
	}()
	<-saving
	for range 100 {
		runtime.Gosched() // let the write run now if anything allowed it to
	}
	close(release)
	if err := <-rescanned; err != nil {
		t.Fatal(err)
	}
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
	wantMembers(t, p, "a", "b")
	bs.set(func(b *brokenStorage) {
		if len(b.events) < 2 || b.events[0] != "listed" || b.events[1] != "lock "+store.Key("b") {
			t.Fatalf("storage saw %q, want the listing to end before the write", b.events)
		}
	})

	if err := p.Delete(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	wantMembers(t, p, "a")
	if p.HasRecord(context.Background(), "b") || !p.HasRecord(context.Background(), "a") {
		t.Fatal("HasRecord does not follow storage")
	}
}

// A storage hiccup never empties the pool: a failed listing keeps every
// member, on a rescan and when a config attaches, and a record that
// cannot be read keeps its current copy.
func TestFailedListingKeepsMembers(t *testing.T) {
	const name = "lifecycle-list-fails"
	store, bs := newStore(t, "a", "team/b")
	a := attach(t, name, Config{Owner: "A", Store: store})
	p := a.Pool()
	wantMembers(t, p, "a", "team/b")

	bs.set(func(b *brokenStorage) { b.failList = true })
	if _, err := p.Rescan(context.Background()); err == nil {
		t.Fatal("a failed listing was reported as a rescan")
	}
	wantMembers(t, p, "a", "team/b")
	attach(t, name, Config{Owner: "B", Store: store})
	wantMembers(t, p, "a", "team/b")

	bs.set(func(b *brokenStorage) {
		b.failList = false
		b.failLoad = map[string]bool{store.Key("a"): true}
	})
	before, _ := p.Get("a")
	if err := os.MkdirAll(filepath.Join(bs.Path, "llm_proxy", "test", "auths", "x.json", "y"), 0o700); err != nil {
		t.Fatal(err)
	}
	res, err := p.Rescan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 2 || len(res.Skipped) != 2 {
		t.Fatalf("rescan: %+v", res)
	}
	wantMembers(t, p, "a", "team/b")
	if after, _ := p.Get("a"); after.Auth() != before.Auth() {
		t.Fatal("the unreadable record's current copy was replaced")
	}
}

// A bad record is logged once, not on every rescan, and again when its
// problem changes.
func TestBadRecordsWarnedOnce(t *testing.T) {
	const name = "lifecycle-warn-once"
	core, logs := observer.New(zapcore.WarnLevel)
	store, _ := newStore(t, "good")
	putRecord(t, store, "broken", `{"provider":`)
	a := attach(t, name, Config{Owner: "A", Inline: []*auth.Auth{rec("dup", "claude")}, Store: store, Logger: zap.New(core)})
	putRecord(t, store, "dup", `{"provider":"claude","api_key":"sk-ant-dup-0123456789"}`)
	for i := 0; i < 3; i++ {
		if _, err := a.Pool().Rescan(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	putRecord(t, store, "broken", `{"provider":"nope","api_key":"k"}`)
	if _, err := a.Pool().Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range logs.All() {
		got = append(got, fmt.Sprintf("%s %v", e.Message, e.ContextMap()["key"]))
	}
	want := []string{
		"skipping credential record that does not parse llm_proxy/test/auths/broken.json",
		"skipping stored credential whose ID is declared inline <nil>",
		"skipping credential record that does not parse llm_proxy/test/auths/broken.json",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// refreshLoops counts the goroutines running a refresh loop.
func refreshLoops() int {
	buf := make([]byte, 8<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "pool.(*Pool).refreshLoop(")
}

// The OAuth refresh loop runs only while a config serves (never for a
// config that is only validated or refused), exactly one per pool over
// many reloads, and stops with the last config.
func TestOneRefreshLoopOverManyReloads(t *testing.T) {
	e := newRefreshEnv(t, map[string]mockllm.OAuthAccount{"alice": {Provider: mockllm.OAuthClaude}})
	const name = "lifecycle-refresh-loops"
	store, _ := newStore(t)
	putRecord(t, store, "alice", oauthRecord("alice", refreshStart.Add(time.Hour))) // due
	cfg := func(owner int) Config {
		return Config{Owner: owner, Store: store, Logger: e.logger, OAuth: e.settings(4 * time.Hour)}
	}
	base := refreshLoops()

	// caddy validate: attached, never started.
	attach(t, name, cfg(-1)).Detach()
	if n := refreshLoops() - base; n != 0 || e.stats("alice").Refreshes != 0 {
		t.Fatalf("a validated config started %d refresh loops, %d refreshes", n, e.stats("alice").Refreshes)
	}

	prev := attach(t, name, cfg(0))
	prev.Serve()
	c := credOf(t, prev.Pool(), "alice")
	waitFor(t, "the refresh", func() bool { return c.RefreshStatus().Counts[RefreshRefreshed] == 1 })
	for i := 1; i <= 100; i++ {
		next := attach(t, name, cfg(i))
		if i%10 == 0 {
			next.Detach() // refused
		} else {
			next.Serve()
			prev.Detach()
			prev = next
		}
		// The old loop has exited (Detach and Attach wait for it); the
		// new one's goroutine may not have run yet.
		waitFor(t, "the refresh loop to run", func() bool { return refreshLoops()-base >= 1 })
		if n := refreshLoops() - base; n != 1 {
			t.Fatalf("reload %d: %d refresh loops running", i, n)
		}
	}
	if s := e.stats("alice"); s.Refreshes != 1 || s.Rejected != 0 {
		t.Fatalf("mock %+v after 100 reloads, want one refresh", s)
	}
	prev.Detach()
	if n := refreshLoops() - base; n != 0 {
		t.Fatalf("%d refresh loops left after the last config", n)
	}
}
