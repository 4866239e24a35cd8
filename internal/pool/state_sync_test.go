package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// stateEnv is one storage directory shared by instances, a fake clock and
// a fake state ticker.
type stateEnv struct {
	t       *testing.T
	fake    *clock.Fake
	storage *brokenStorage
	name    string
	tick    chan time.Time
	mu      sync.Mutex
	loops   int // state loops running
}

func newStateEnv(t *testing.T, name string) *stateEnv {
	t.Helper()
	e := &stateEnv{
		t:       t,
		fake:    clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)),
		storage: &brokenStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}},
		name:    name,
		tick:    make(chan time.Time),
	}
	t.Cleanup(clock.Install(e.fake.Now))
	prev := newStateTicker
	newStateTicker = func(time.Duration) (<-chan time.Time, func()) {
		e.mu.Lock()
		e.loops++
		e.mu.Unlock()
		var once sync.Once
		return e.tick, func() {
			once.Do(func() {
				e.mu.Lock()
				e.loops--
				e.mu.Unlock()
			})
		}
	}
	t.Cleanup(func() { newStateTicker = prev })
	return e
}

func (e *stateEnv) running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loops
}

// instance is one Caddy instance's pool: a Pool of its own (as in another
// process), attached with a config sharing e's storage.
type instance struct {
	pool *Pool
	att  *Attachment
	logs *observer.ObservedLogs
	id   string
}

func (e *stateEnv) config(id string, owner any, logger *zap.Logger) Config {
	return Config{
		Owner:      owner,
		Inline:     []*auth.Auth{rec("a1", "claude"), rec("a2", "claude"), rec("a3", "claude")},
		Store:      auth.NewCaddyStore(e.storage, "llm_proxy/"+e.name+"/auths"),
		Logger:     logger,
		BindingTTL: time.Hour,
		StateSync:  time.Second,
		InstanceID: id,
	}
}

// start starts instance id: its pool reads the saved state, and serves
// unless serve is false.
func (e *stateEnv) start(id string, serve bool) *instance {
	e.t.Helper()
	core, logs := observer.New(zapcore.WarnLevel)
	in := &instance{pool: newPool(e.name), logs: logs, id: id}
	a, err := in.pool.attach(context.Background(), e.config(id, id, zap.New(core)))
	if err != nil {
		e.t.Fatal(err)
	}
	in.att = a
	e.t.Cleanup(in.stop)
	if serve {
		a.Serve()
	}
	return in
}

// stop detaches the instance's config: a shutdown.
func (in *instance) stop() {
	in.att.Detach()
	in.pool.Destruct()
}

// sync runs one state round now, as the loop does on a tick.
func (in *instance) sync() { in.pool.syncState(context.Background(), in.att) }

func (in *instance) writes() uint64 {
	in.pool.state.mu.Lock()
	defer in.pool.state.mu.Unlock()
	return in.pool.state.writes
}

func (e *stateEnv) docPath(id string) string {
	return filepath.Join(e.storage.Path, "llm_proxy", e.name, "state", id+".json")
}

func (e *stateEnv) readDoc(id string) map[string]any {
	e.t.Helper()
	data, err := os.ReadFile(e.docPath(id))
	if err != nil {
		e.t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		e.t.Fatalf("state document is not JSON: %v\n%s", err, data)
	}
	return doc
}

func (e *stateEnv) writeDoc(id, data string) {
	e.t.Helper()
	key := "llm_proxy/" + e.name + "/state/" + id + ".json"
	if err := e.storage.Store(context.Background(), key, []byte(data)); err != nil {
		e.t.Fatal(err)
	}
}

var limited = failure.Verdict{Action: failure.Failover, Scope: failure.ScopeModel, Reason: failure.ReasonRateLimited}

func cred(t *testing.T, p *Pool, id string) *Credential {
	t.Helper()
	c, ok := p.Get(id)
	if !ok {
		t.Fatalf("no credential %q", id)
	}
	return c
}

// A binding and a 429 learnt by instance A hold on instance B after one
// round of each; B's own news reaches A the same way.
func TestStateSharedBetweenInstances(t *testing.T) {
	e := newStateEnv(t, "state-share")
	a, b := e.start("inst-a", true), e.start("inst-b", true)
	now := e.fake.Now()
	a.pool.Sessions.Bind("conv-1", "claude-x", "a1")
	until := cred(t, a.pool, "a2").RecordFailure("claude-x", limited, failure.Policy{}.WithDefaults(), now)
	if !until.After(now) {
		t.Fatal("the 429 set no cooldown")
	}
	a.sync()
	b.sync()
	if id, ok := b.pool.Sessions.Get("conv-1", "claude-x"); !ok || id != "a1" {
		t.Fatalf("B's binding of conv-1: %q, %v; want a1 from A", id, ok)
	}
	c := cred(t, b.pool, "a2")
	if got := c.CoolingUntil("claude-x", now); !got.Equal(until) {
		t.Fatalf("B sees a2 cooling until %v, want A's %v", got, until)
	}
	if c.Available("claude-x", now) {
		t.Fatal("B would pick a2 while A saw it rate limited")
	}
	cds := c.Cooldowns(now)
	if len(cds) != 1 || cds[0].Reason != failure.ReasonRateLimited || cds[0].Model != "claude-x" {
		t.Fatalf("B's admin view of a2: %+v", cds)
	}
	if _, _, avail := b.pool.Availability(now); avail != 3 {
		t.Fatalf("availability %d: a per-model cooldown must not make a2 unavailable for all models", avail)
	}

	// Back the other way.
	b.pool.Sessions.Bind("conv-2", "claude-y", "a3")
	b.sync()
	a.sync()
	if id, ok := a.pool.Sessions.Get("conv-2", "claude-y"); !ok || id != "a3" {
		t.Fatalf("A's binding of conv-2: %q, %v; want a3 from B", id, ok)
	}
}

// A conversation moved by failover on one instance stays moved on the
// other, which bound it first.
func TestStateMovedBindingAdopted(t *testing.T) {
	e := newStateEnv(t, "state-moved")
	a, b := e.start("inst-a", true), e.start("inst-b", true)
	a.pool.Sessions.Bind("conv", "m", "a1")
	a.sync()
	b.sync()
	e.fake.Advance(time.Second)
	// Failover on B moves the conversation to a2.
	b.pool.Sessions.Bind("conv", "m", "a2")
	b.sync()
	a.sync()
	if id, _ := a.pool.Sessions.Get("conv", "m"); id != "a2" {
		t.Fatalf("A keeps conv on %q; want a2, where B moved it", id)
	}
	// And A's older copy never moves it back on B.
	a.sync()
	b.sync()
	if id, _ := b.pool.Sessions.Get("conv", "m"); id != "a2" {
		t.Fatalf("B's conv moved back to %q", id)
	}
}

// An admin reset on A clears the cooldown on B, and B's document, which
// still holds the cooldown, never brings it back on A.
func TestStateResetClearsEverywhere(t *testing.T) {
	e := newStateEnv(t, "state-reset")
	a, b := e.start("inst-a", true), e.start("inst-b", true)
	now := e.fake.Now()
	cred(t, a.pool, "a1").RecordFailure("", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll, Reason: failure.ReasonAuthFailed},
		failure.Policy{}.WithDefaults(), now)
	a.sync()
	b.sync()
	if st := cred(t, b.pool, "a1").State(now); st != StateCooling {
		t.Fatalf("B: a1 is %s after A's 401, want cooling", st)
	}
	// B writes its document for news of its own: it holds the merged
	// cooldown too.
	b.pool.Sessions.Bind("other", "m", "a2")
	b.sync()
	if cools := e.readDoc("inst-b")["credentials"]; !strings.Contains(fmt.Sprint(cools), failure.ReasonAuthFailed) {
		t.Fatalf("B's document does not hold the merged cooldown: %v", cools)
	}
	e.fake.Advance(time.Second)
	cred(t, a.pool, "a1").Reset()
	a.sync()
	now = e.fake.Now()
	if st := cred(t, a.pool, "a1").State(now); st != StateServing {
		t.Fatalf("A: a1 is %s after merging B's older cooldown, want serving", st)
	}
	b.sync()
	if st := cred(t, b.pool, "a1").State(now); st != StateServing {
		t.Fatalf("B: a1 is %s after A's reset, want serving", st)
	}
	// A later 429 on B is news, reset or not.
	until := cred(t, b.pool, "a1").RecordFailure("m", limited, failure.Policy{}.WithDefaults(), now)
	b.sync()
	a.sync()
	if got := cred(t, a.pool, "a1").CoolingUntil("m", now); !got.Equal(until) {
		t.Fatalf("A: a1 cooling until %v after B's later 429, want %v", got, until)
	}
}

// A new process of the same instance resumes its bindings and cooldowns
// from the document written at shutdown, before it serves; expired
// bindings and credentials that left stay behind.
func TestStateResumedAfterRestart(t *testing.T) {
	e := newStateEnv(t, "state-restart")
	a := e.start("inst-a", true)
	a.pool.Sessions.Bind("old", "m", "a1")
	e.fake.Advance(50 * time.Minute)
	a.pool.Sessions.Bind("conv", "m", "a2")
	a.pool.Sessions.Bind("gone", "m", "a3")
	hinted := limited
	hinted.Until = e.fake.Now().Add(time.Hour) // a reset hint
	until := cred(t, a.pool, "a1").RecordFailure("m", hinted, failure.Policy{}.WithDefaults(), e.fake.Now())
	a.stop() // shutdown writes the document
	if a.writes() != 1 {
		t.Fatalf("%d writes at shutdown, want 1", a.writes())
	}
	e.fake.Advance(15 * time.Minute) // "old" is now 65 minutes idle: past the 1h TTL

	// The new process declares a1 and a2 only.
	core, _ := observer.New(zapcore.WarnLevel)
	p := newPool(e.name)
	cfg := e.config("inst-a", "restarted", zap.New(core))
	cfg.Inline = cfg.Inline[:2]
	att, err := p.attach(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { att.Detach(); p.Destruct() }()
	if id, ok := p.Sessions.Get("conv", "m"); !ok || id != "a2" {
		t.Fatalf("restarted instance: conv on %q, %v; want a2", id, ok)
	}
	if _, ok := p.Sessions.Get("old", "m"); ok {
		t.Fatal("a binding past its TTL was resumed")
	}
	if _, ok := p.Sessions.Get("gone", "m"); ok {
		t.Fatal("a binding to a credential no longer in the pool was resumed")
	}
	if got := cred(t, p, "a1").CoolingUntil("m", e.fake.Now()); !got.Equal(until) {
		t.Fatalf("restarted instance: a1 cooling until %v, want %v", got, until)
	}
}

// Bindings to credentials that are not members of this instance's pool
// are never taken, nor cooldowns of unknown credentials.
func TestStateOnlyForMembers(t *testing.T) {
	e := newStateEnv(t, "state-members")
	a := e.start("inst-a", true)
	now := e.fake.Now()
	until := now.Add(time.Hour).UTC().Format(time.RFC3339Nano)
	e.writeDoc("other", `{"kind":"llm_proxy.state","version":1,"instance":"other","pool":"state-members",`+
		`"written":"`+now.UTC().Format(time.RFC3339Nano)+`","auths":["zz","a1"],`+
		`"credentials":{"zz":{"cooldowns":[{"key":"m","until":"`+until+`"}]}},`+
		`"bindings":[["10","20","0",0,`+fmt.Sprint(now.UnixMilli())+`],["11","21","0",1,`+fmt.Sprint(now.UnixMilli())+`]]}`)
	a.sync()
	if n := a.pool.Sessions.Len(); n != 1 {
		t.Fatalf("%d bindings taken, want 1 (the one to a1)", n)
	}
	if _, ok := a.pool.Get("zz"); ok {
		t.Fatal("a document added a credential")
	}
	if msgs := a.logs.All(); len(msgs) != 0 {
		t.Fatalf("warnings for a good document: %v", msgs)
	}
}

// A corrupt, foreign, wrong-pool or wrong-version document is skipped with
// one warning until it changes; the instance keeps writing its own.
func TestStateBadDocumentsWarnedOnce(t *testing.T) {
	e := newStateEnv(t, "state-corrupt")
	a := e.start("inst-a", true)
	now := e.fake.Now().UTC().Format(time.RFC3339Nano)
	bad := map[string]string{
		"garbage":   "{not json",
		"foreign":   `{"kind":"something.else","version":1,"instance":"foreign","pool":"state-corrupt","written":"` + now + `"}`,
		"otherpool": `{"kind":"llm_proxy.state","version":1,"instance":"otherpool","pool":"elsewhere","written":"` + now + `"}`,
		"future":    `{"kind":"llm_proxy.state","version":2,"instance":"future","pool":"state-corrupt","written":"` + now + `"}`,
		"renamed":   `{"kind":"llm_proxy.state","version":1,"instance":"someone","pool":"state-corrupt","written":"` + now + `"}`,
		"badindex":  `{"kind":"llm_proxy.state","version":1,"instance":"badindex","pool":"state-corrupt","written":"` + now + `","auths":[],"bindings":[["1","2","0",5,1]]}`,
		"badhash":   `{"kind":"llm_proxy.state","version":1,"instance":"badhash","pool":"state-corrupt","written":"` + now + `","auths":["a1"],"bindings":[["xyz","2","0",0,1]]}`,
	}
	for id, data := range bad {
		e.writeDoc(id, data)
	}
	a.pool.Sessions.Bind("conv", "m", "a1")
	for range 3 {
		a.sync()
		e.fake.Advance(time.Second)
	}
	warned := map[string]int{}
	for _, entry := range a.logs.All() {
		key, _ := entry.ContextMap()["key"].(string)
		warned[strings.TrimSuffix(filepath.Base(key), ".json")]++
	}
	for id := range bad {
		if warned[id] != 1 {
			t.Errorf("document %q warned %d times, want once: %v", id, warned[id], warned)
		}
	}
	if len(warned) != len(bad) {
		t.Errorf("warnings for %v, want only the bad documents", warned)
	}
	if got := e.readDoc("inst-a")["bindings"].([]any); len(got) != 1 {
		t.Fatalf("own document holds %d bindings, want 1", len(got))
	}
	// Another problem is warned about again.
	e.writeDoc("garbage", `{"kind":"llm_proxy.state","version":7,"instance":"garbage","pool":"state-corrupt","written":"`+now+`"}`)
	a.sync()
	if n := a.logs.FilterField(zap.String("key", "llm_proxy/state-corrupt/state/garbage.json")).Len(); n != 2 {
		t.Fatalf("changed corrupt document warned %d times in all, want 2", n)
	}
}

// A document written more than 24h ago is deleted by a running instance,
// never by one only reading at start (as under `caddy validate`).
func TestStateStaleDocumentDeleted(t *testing.T) {
	e := newStateEnv(t, "state-stale")
	old := e.fake.Now().Add(-stateExpiry - time.Minute).UTC().Format(time.RFC3339Nano)
	e.writeDoc("gone", `{"kind":"llm_proxy.state","version":1,"instance":"gone","pool":"state-stale","written":"`+old+`","auths":["a1"],"bindings":[["1","2","0",0,1]]}`)
	v := e.start("validating", false)
	v.stop()
	if _, err := os.Stat(e.docPath("gone")); err != nil {
		t.Fatalf("reading at start deleted a document: %v", err)
	}
	if _, err := os.Stat(e.docPath("validating")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a config that never served wrote its document: %v", err)
	}
	a := e.start("inst-a", true)
	a.sync()
	if _, err := os.Stat(e.docPath("gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale document still there: %v", err)
	}
	if a.pool.Sessions.Len() != 0 {
		t.Fatal("bindings of a stale document were taken")
	}
}

// Writes follow changes: none without news, one per round with news, and
// a heartbeat when idle for half the expiry.
func TestStateWritesOnlyOnChange(t *testing.T) {
	e := newStateEnv(t, "state-writes")
	a, b := e.start("inst-a", true), e.start("inst-b", true)
	for range 5 {
		a.sync()
	}
	if n := a.writes(); n != 0 {
		t.Fatalf("%d writes with nothing to save", n)
	}
	for i := range 100 {
		a.pool.Sessions.Bind(fmt.Sprint("conv-", i), "m", "a1")
	}
	a.sync()
	a.sync()
	if n := a.writes(); n != 1 {
		t.Fatalf("%d writes for one round of news, want 1", n)
	}
	// B takes A's bindings (news for B, written once), and A learns
	// nothing new from B's document: the exchange settles.
	for range 3 {
		b.sync()
		a.sync()
	}
	if na, nb := a.writes(), b.writes(); na != 1 || nb != 1 {
		t.Fatalf("writes after the exchange: A %d, B %d; want 1 each", na, nb)
	}
	e.fake.Advance(stateHeartbeat)
	a.sync()
	if n := a.writes(); n != 2 {
		t.Fatalf("%d writes after an idle %v, want a heartbeat", n, stateHeartbeat)
	}
}

// Storage that fails is warned about once per outage; the instance keeps
// its own state and catches up when storage answers again.
func TestStateStorageOutageWarnedOnce(t *testing.T) {
	e := newStateEnv(t, "state-outage")
	a := e.start("inst-a", true)
	e.storage.set(func(b *brokenStorage) { b.failList = true })
	a.pool.Sessions.Bind("conv", "m", "a1")
	for range 3 {
		a.sync()
	}
	e.storage.set(func(b *brokenStorage) { b.failList = false })
	a.sync()
	warns := a.logs.FilterMessageSnippet("cannot save or merge").Len()
	if warns != 1 {
		t.Fatalf("%d outage warnings, want 1", warns)
	}
	if _, ok := a.pool.Sessions.Get("conv", "m"); !ok {
		t.Fatal("the outage lost a binding")
	}
	e.storage.set(func(b *brokenStorage) { b.failList = true })
	a.sync()
	if n := a.logs.FilterMessageSnippet("cannot save or merge").Len(); n != 2 {
		t.Fatalf("%d outage warnings after a second outage, want 2", n)
	}
}

// One state loop over 100 reloads of the same config; a reload reads
// nothing again and writes nothing; the last detach writes once; no
// goroutine is left.
func TestStateOneLoopOverManyReloads(t *testing.T) {
	e := newStateEnv(t, "state-reloads")
	before := runtime.NumGoroutine()
	p := newPool(e.name)
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)
	prev, err := p.attach(context.Background(), e.config("inst-a", 0, log))
	if err != nil {
		t.Fatal(err)
	}
	prev.Serve()
	p.Sessions.Bind("conv", "m", "a1")
	e.tick <- time.Time{}
	e.tick <- time.Time{} // the loop takes the second tick after the first round
	for i := 1; i <= 100; i++ {
		next, err := p.attach(context.Background(), e.config("inst-a", i, log))
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			next.Detach() // a refused reload
			continue
		}
		next.Serve()
		prev.Detach()
		prev = next
		if n := e.running(); n != 1 {
			t.Fatalf("reload %d: %d state loops running", i, n)
		}
	}
	e.tick <- time.Time{}
	e.tick <- time.Time{}
	p.state.mu.Lock()
	writes := p.state.writes
	p.state.mu.Unlock()
	if writes != 1 {
		t.Fatalf("%d writes over 100 reloads with one change, want 1", writes)
	}
	prev.Detach()
	p.Destruct()
	p.state.mu.Lock()
	writes = p.state.writes
	p.state.mu.Unlock()
	if writes != 2 {
		t.Fatalf("%d writes after the last detach, want 2 (one at shutdown)", writes)
	}
	if n := e.running(); n != 0 {
		t.Fatalf("%d state loops running after the last detach", n)
	}
	if logs.Len() != 0 {
		t.Fatalf("warnings over reloads: %v", logs.All())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before, %d after 100 reloads", before, after)
	}
}

// storage_prefix over the default state path moves the state documents
// aside, so records and state never mix.
func TestStateKeptOffStoragePrefix(t *testing.T) {
	p := newPool("state-prefix")
	for _, tc := range []struct{ records, want string }{
		{"llm_proxy/state-prefix/auths", "llm_proxy/state-prefix/state"},
		{"llm_proxy/state-prefix", "llm_proxy/state-prefix.state"},
		{"llm_proxy/state-prefix/state/x", "llm_proxy/state-prefix/state/x.state"},
		{"/creds/", "llm_proxy/state-prefix/state"},
	} {
		a := &Attachment{cfg: Config{StateSync: time.Second, InstanceID: "i",
			Store: auth.NewCaddyStore(&certmagic.FileStorage{Path: t.TempDir()}, tc.records)}}
		if _, got := p.stateStorage(a); got != tc.want {
			t.Errorf("records at %q: state at %q, want %q", tc.records, got, tc.want)
		}
	}
	for _, cfg := range []Config{
		{StateSync: 0, InstanceID: "i", Store: auth.NewCaddyStore(&certmagic.FileStorage{Path: t.TempDir()}, "x")},
		{StateSync: time.Second, InstanceID: "", Store: auth.NewCaddyStore(&certmagic.FileStorage{Path: t.TempDir()}, "x")},
		{StateSync: time.Second, InstanceID: "../x", Store: auth.NewCaddyStore(&certmagic.FileStorage{Path: t.TempDir()}, "x")},
		{StateSync: time.Second, InstanceID: "i"},
	} {
		if st, _ := p.stateStorage(&Attachment{cfg: cfg}); st != nil {
			t.Errorf("state kept in storage with %+v", cfg)
		}
	}
}

// The document's format: hashes as hex strings, an auth table, cooldowns
// with reason and learning time; it parses back to the same bindings.
func TestStateDocumentFormat(t *testing.T) {
	e := newStateEnv(t, "state-format")
	a := e.start("inst-a", true)
	now := e.fake.Now()
	a.pool.Sessions.BindFor("client-k", "conv", "m", "a2")
	cred(t, a.pool, "a3").RecordFailure("m", limited, failure.Policy{}.WithDefaults(), now)
	a.sync()
	doc := e.readDoc("inst-a")
	for _, f := range []string{"kind", "version", "instance", "pool", "written", "auths", "bindings", "credentials"} {
		if _, ok := doc[f]; !ok {
			t.Fatalf("document without %q: %v", f, doc)
		}
	}
	if doc["kind"] != stateKind || doc["version"] != float64(1) || doc["instance"] != "inst-a" || doc["pool"] != "state-format" {
		t.Fatalf("document head: %v", doc)
	}
	bs := doc["bindings"].([]any)
	row := bs[0].([]any)
	if len(bs) != 1 || len(row) != 5 || doc["auths"].([]any)[int(row[3].(float64))] != "a2" {
		t.Fatalf("bindings %v with auths %v", bs, doc["auths"])
	}
	for i := range 3 {
		if _, ok := row[i].(string); !ok {
			t.Fatalf("hash %d is %T, want a hex string", i, row[i])
		}
	}
	if row[2] == "0" {
		t.Fatal("the client hash was not saved")
	}
	cools := doc["credentials"].(map[string]any)["a3"].(map[string]any)["cooldowns"].([]any)
	cd := cools[0].(map[string]any)
	if cd["key"] != "m" || cd["reason"] != failure.ReasonRateLimited || cd["until"] == nil || cd["since"] == nil {
		t.Fatalf("cooldown %v", cd)
	}
	data, _ := os.ReadFile(e.docPath("inst-a"))
	parsed, err := parseState(data, "llm_proxy/state-format/state/inst-a.json", "state-format")
	if err != nil {
		t.Fatal(err)
	}
	snap := a.pool.Sessions.Snapshot(0)
	got := parsed.Bindings[0]
	if got.key != snap[0].Key || got.session != snap[0].Session || got.client != snap[0].Client || got.lastUsed != snap[0].LastUsed.UnixMilli() {
		t.Fatalf("parsed %+v, snapshot %+v", got, snap[0])
	}
}

// The bindings decoder takes any valid JSON spelling of the format and
// refuses everything else without panicking.
func TestStateBindingsDecoder(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []savedBinding
		ok   bool
	}{
		{`[]`, []savedBinding{}, true},
		{`null`, nil, true},
		{" [ [ \"A\" ,\n\"ff\",\t\"0\", 0 , -5 ] , [\"1\",\"2\",\"3\",4,5]]", []savedBinding{{key: 10, session: 255, auth: 0, lastUsed: -5}, {key: 1, session: 2, client: 3, auth: 4, lastUsed: 5}}, true},
		{`[["ffffffffffffffff","1","1",0,1]]`, []savedBinding{{key: 1<<64 - 1, session: 1, client: 1, lastUsed: 1}}, true},
		{`[["1ffffffffffffffff","1","1",0,1]]`, nil, false},
		{`[["","1","1",0,1]]`, nil, false},
		{`[["\u0031","1","1",0,1]]`, nil, false},
		{`[["x","1","1",0,1]]`, nil, false},
		{`[[1,"1","1",0,1]]`, nil, false},
		{`[["1","1","1",0.5,1]]`, nil, false},
		{`[["1","1","1",0,1e3]]`, nil, false},
		{`[["1","1","1",-1,1]]`, nil, false},
		{`[["1","1","1",0,1,2]]`, nil, false},
		{`[["1","1","1",0]]`, nil, false},
		{`[["1","1","1",0,99999999999999999999]]`, nil, false},
		{`{}`, nil, false},
		{`[{}]`, nil, false},
	} {
		var got bindingList
		err := json.Unmarshal([]byte(tc.in), &got)
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// A hostile document of ten times the cache's bound in bindings, with
// times in the future and credentials disabled here, keeps the bound and
// takes nothing for the disabled credential.
func TestStateHostileDocumentBounded(t *testing.T) {
	e := newStateEnv(t, "state-hostile")
	core, logs := observer.New(zapcore.WarnLevel)
	p := &Pool{name: e.name, Sessions: session.NewCache(session.Options{Now: clock.Now, MaxEntries: 1000}), Strategy: selector.NewState(),
		creds: make(map[string]*Credential), inline: make(map[string]bool), stored: make(map[string]bool), sets: make(map[setKey]*Eligible)}
	cfg := e.config("inst-a", "hostile", zap.New(core))
	cfg.Inline = []*auth.Auth{rec("a1", "claude"), rec("off", "claude", func(a *auth.Auth) { a.Disabled = true })}
	future := e.fake.Now().Add(240 * time.Hour).UnixMilli()
	var sb strings.Builder
	sb.WriteString(`{"kind":"llm_proxy.state","version":1,"instance":"evil","pool":"state-hostile","written":"` +
		e.fake.Now().UTC().Format(time.RFC3339Nano) + `","auths":["a1","off"],"bindings":[`)
	for i := range 10_000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `["%x","%x","%x",%d,%d]`, i+1, i+1, i%3, i%2, future)
	}
	sb.WriteString("]}")
	e.writeDoc("evil", sb.String())
	a, err := p.attach(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Detach(); p.Destruct() }()
	counts := p.Sessions.CountByAuth()
	if counts["off"] != 0 {
		t.Fatalf("%d bindings taken for a disabled credential", counts["off"])
	}
	if n := p.Sessions.Len(); n == 0 || n > 1000+64 {
		t.Fatalf("%d bindings after a hostile document, bound 1000", n)
	}
	// Future times count as now: the bindings expire within the TTL.
	e.fake.Advance(time.Hour + time.Second)
	p.Sessions.Sweep()
	if n := p.Sessions.Len(); n != 0 {
		t.Fatalf("%d bindings with a future last use outlived the TTL", n)
	}
	if logs.Len() != 0 {
		t.Fatalf("warnings: %v", logs.All())
	}
}

// Storage that fails when a pool starts is warned about once; the config
// attaches and serves with the state it has.
func TestStateStartWithStorageDown(t *testing.T) {
	e := newStateEnv(t, "state-start-down")
	e.storage.set(func(b *brokenStorage) { b.failList = true })
	a := e.start("inst-a", true)
	a.pool.Sessions.Bind("conv", "m", "a1")
	a.sync()
	if n := a.logs.FilterMessageSnippet("cannot save or merge").Len(); n != 1 {
		t.Fatalf("%d warnings for one outage from start, want 1", n)
	}
	if id, ok := a.pool.Sessions.Get("conv", "m"); !ok || id != "a1" {
		t.Fatal("serving lost its binding")
	}
}

// Three instances holding copies of one instance's bindings settle: after
// each has written its copy once, idle rounds write nothing.
func TestStateCopiesSettle(t *testing.T) {
	e := newStateEnv(t, "state-settle")
	a, b, c := e.start("inst-a", true), e.start("inst-b", true), e.start("inst-c", true)
	e.fake.Advance(1234567 * time.Nanosecond) // times off the millisecond
	for i := range 50 {
		c.pool.Sessions.Bind(fmt.Sprint("conv-", i), "m", "a2")
	}
	for range 6 {
		c.sync()
		a.sync()
		b.sync()
		e.fake.Advance(time.Second)
	}
	wa, wb, wc := a.writes(), b.writes(), c.writes()
	for range 6 {
		a.sync()
		b.sync()
		c.sync()
		e.fake.Advance(time.Second)
	}
	if a.writes() != wa || b.writes() != wb || c.writes() != wc {
		t.Fatalf("idle rounds wrote: A %d→%d, B %d→%d, C %d→%d", wa, a.writes(), wb, b.writes(), wc, c.writes())
	}
	if wa > 2 || wb > 2 || wc > 1 {
		t.Fatalf("writes to settle: A %d, B %d, C %d", wa, wb, wc)
	}
	for _, in := range []*instance{a, b} {
		if n := in.pool.Sessions.CountByAuth()["a2"]; n != 50 {
			t.Fatalf("%s holds %d of C's bindings, want 50", in.id, n)
		}
	}
}

// News is written on the first round after it, unless the last write is
// less than a period old: then on the first round a period after it.
func TestStateWritesAtMostOncePerPeriod(t *testing.T) {
	e := newStateEnv(t, "state-period")
	a := e.start("inst-a", true)
	a.pool.Sessions.Bind("one", "m", "a1")
	a.sync()
	if a.writes() != 1 {
		t.Fatalf("%d writes: news must be written at the first round", a.writes())
	}
	for i := range 3 {
		e.fake.Advance(250 * time.Millisecond)
		a.pool.Sessions.Bind(fmt.Sprint("more-", i), "m", "a1")
		a.sync()
	}
	if a.writes() != 1 {
		t.Fatalf("%d writes within one period of 1s", a.writes())
	}
	e.fake.Advance(250 * time.Millisecond)
	a.sync()
	if a.writes() != 2 {
		t.Fatalf("%d writes a period after the last, want 2", a.writes())
	}
	for _, tc := range []struct{ period, tick time.Duration }{
		{2 * time.Second, 500 * time.Millisecond},
		{200 * time.Millisecond, 50 * time.Millisecond},
		{100 * time.Millisecond, 50 * time.Millisecond},
		{10 * time.Millisecond, 50 * time.Millisecond}, // never spins on storage
		{time.Nanosecond, 50 * time.Millisecond},
	} {
		if got := stateTick(tc.period); got != tc.tick {
			t.Errorf("state_sync %v ticks every %v, want %v", tc.period, got, tc.tick)
		}
	}
}

// Bindings dropped through DropSessions on one instance are dropped on
// the others once they merge its document, and never taken back from a
// document that saved them; bindings used after the drop are shared again.
func TestStateDroppedSessionsStayDropped(t *testing.T) {
	e := newStateEnv(t, "state-drop")
	a, b := e.start("inst-a", true), e.start("inst-b", true)
	gone := e.start("inst-0", true) // its document lists before A's
	a.pool.Sessions.Bind("old-1", "m", "a1")
	a.pool.Sessions.Bind("old-2", "m", "a2")
	a.sync()
	b.sync()
	gone.sync()
	gone.stop() // its document keeps old-1 and old-2
	b.pool.Sessions.Bind("b-own", "m", "a3")
	b.sync() // B's document: old-1, old-2, b-own
	e.fake.Advance(time.Second)
	if n := a.pool.DropSessions("a1"); n != 1 {
		t.Fatalf("dropped %d bindings of a1, want 1", n)
	}
	a.sync() // A's document carries the drop
	if _, ok := a.pool.Sessions.Get("old-1", "m"); ok {
		t.Fatal("a binding dropped on A came back from B's document")
	}
	b.sync()
	if _, ok := b.pool.Sessions.Get("old-1", "m"); ok {
		t.Fatal("B kept a binding A dropped")
	}
	if _, ok := b.pool.Sessions.Get("old-2", "m"); !ok {
		t.Fatal("B dropped a binding of another credential")
	}
	e.fake.Advance(time.Second)
	b.pool.Sessions.Bind("new", "m", "a1")
	b.sync()
	a.sync()
	if id, ok := a.pool.Sessions.Get("new", "m"); !ok || id != "a1" {
		t.Fatal("a binding made after the drop was not taken")
	}

	e.fake.Advance(time.Second)
	a.pool.DropSessions("")
	if n := a.pool.Sessions.Len(); n != 0 {
		t.Fatalf("%d bindings on A after dropping all", n)
	}
	a.sync()
	b.sync()
	if n := b.pool.Sessions.Len(); n != 0 {
		t.Fatalf("%d bindings on B after A dropped all", n)
	}
	e.fake.Advance(time.Second)
	b.pool.Sessions.Bind("newer", "m", "a3")
	b.sync()
	a.sync()
	if n := a.pool.Sessions.Len(); n != 1 {
		t.Fatalf("%d bindings on A after B's newer one, want 1", n)
	}

	// A restart of A resumes the drop before it takes the bindings of
	// the document that saved them before it.
	a.stop()
	c := e.start("inst-a", false)
	if _, ok := c.pool.Sessions.Get("old-2", "m"); ok {
		t.Fatal("restarted A took a binding dropped before the restart")
	}
	if _, ok := c.pool.Sessions.Get("newer", "m"); !ok {
		t.Fatal("restarted A lost a binding made after the drop")
	}
}
