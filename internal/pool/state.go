package pool

// State that outlives a process (SPEC section 14). Every instance saves the
// pool's session bindings and cooldowns to the storage of its credential
// records, one document per instance:
//
//	llm_proxy/<pool>/state/<instance>.json
//
// (<storage_prefix>.state/<instance>.json when storage_prefix and that path
// contain one another). The document is written when something changed,
// at most once per state_sync, and once when the last config using the
// pool detaches (shutdown). Four times per state_sync the instance reads
// the documents of the others that changed since it last read them and
// merges them: a binding is taken when this instance has none for its
// conversation or an older one, a cooldown when it ends later than this
// instance's; an admin reset clears the cooldowns learnt before it, and a
// drop of bindings (Pool.DropSessions) drops the bindings here too. A pool
// new to the process reads every document, its own included, before its
// config serves, so a restart resumes where it stopped.
//
// The document (version 1; fields in this order; the times of drops and
// resets only once there was one, "credentials" only for credentials with
// a cooldown, reset or drop to tell):
//
//	{
//	  "kind": "llm_proxy.state", "version": 1,
//	  "instance": "<instance ID>", "pool": "<pool>",
//	  "written": "<RFC 3339 time>",
//	  "sessions_dropped": "<RFC 3339 time all bindings were last dropped>",
//	  "credentials": {
//	    "<credential ID>": {
//	      "reset": "<RFC 3339 time of the latest admin reset>",
//	      "sessions_dropped": "<RFC 3339 time its bindings were last dropped>",
//	      "cooldowns": [{"key": "*"|"<model>", "until": "<RFC 3339>", "reason": "rate_limited", "since": "<RFC 3339>"}, ...]
//	    }
//	  },
//	  "auths": ["<credential ID>", ...],
//	  "bindings": [["<key>", "<session>", "<client>", <auth index>, <last used, unix ms>], ...]
//	}
//
// Hashes (key, session, client) are lowercase hex without leading zeros
// (client "0" for none), so they survive readers that parse JSON numbers
// as float64. Bindings index "auths"; most recently used first. A document
// whose kind, version, pool or instance (its file name) does not match is
// skipped with one warning until its problem changes; documents written
// more than stateExpiry ago are deleted by any instance.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

const (
	// stateKind and stateVersion identify a state document.
	stateKind    = "llm_proxy.state"
	stateVersion = 1

	// stateExpiry is how old a document (by its written time) may grow
	// before any instance deletes it: its instance is gone.
	stateExpiry = 24 * time.Hour
	// stateHeartbeat is how often an instance rewrites its document when
	// nothing changed, so that it never looks gone.
	stateHeartbeat = stateExpiry / 2
	// stateTimeout bounds one round of state storage calls (a write, a
	// listing and the reads), and the read at start and the write at
	// shutdown.
	stateTimeout = 5 * time.Second
	// maxStateDoc bounds the size of a document read; a larger one is
	// skipped as corrupt.
	maxStateDoc = 256 << 20
	// maxSavedKey bounds the cooldown keys saved: model names come from
	// clients, and a longer one stays this instance's.
	maxSavedKey = 512
)

// newStateTicker makes the ticker of the state loop; tests replace it.
var newStateTicker = func(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// stateSync is the pool's memory of its state documents: what it last
// wrote, which documents it has merged, what it warned about. Its mutex
// makes rounds (the loop, the read at start, the write at shutdown) happen
// one at a time; it is never taken while holding another lock of the
// pool.
type stateSync struct {
	mu sync.Mutex
	// loaded: a config read the documents at attach; later configs
	// (reloads) do not read them again. Written under mu.
	loaded atomic.Bool
	// synced: a loop started, so the last detach writes the document (a
	// config that never served, as under `caddy validate`, writes
	// nothing). Set under p.life.
	synced atomic.Bool

	// What the last write saved, and when.
	wroteChanges uint64
	wroteCools   coolPrint
	wroteAt      time.Time

	merged map[string]docStamp // key → the version of the document last merged or skipped
	warned map[string]string   // key → problem already logged
	// future is, per document key, the drop and reset times later than
	// now that it told of (see notAfterOnce).
	future  map[string]map[string]int64
	failing bool // storage failed; warned once for this streak

	// dropped is when all of the pool's bindings were last dropped
	// (DropSessions), in unix nanos.
	dropped     atomic.Int64
	dropChanges atomic.Uint64 // grows with each drop of all bindings
	writes      uint64        // documents written, for tests
}

// docStamp tells whether a document changed since it was last read.
type docStamp struct {
	modified int64 // unix nanos
	size     int64
	members  uint64 // the pool's credential set version then
}

// coolPrint changes whenever the pool's credential set changes, one of
// its credentials learns a cooldown or is reset here, or bindings are
// dropped here.
type coolPrint struct {
	members uint64
	changes uint64
}

// stateDoc is the state document.
type stateDoc struct {
	Kind     string    `json:"kind"`
	Version  int       `json:"version"`
	Instance string    `json:"instance"`
	Pool     string    `json:"pool"`
	Written  time.Time `json:"written"`
	// SessionsDropped is when all bindings were last dropped.
	SessionsDropped time.Time             `json:"sessions_dropped,omitzero"`
	Credentials     map[string]savedCreds `json:"credentials,omitempty"`
	Auths           []string              `json:"auths"`
	// Bindings is the last field: encodeState appends it.
	Bindings bindingList `json:"bindings,omitempty"`

	key string // where it was read
}

// savedCreds is one credential's state in a document.
type savedCreds struct {
	Reset           time.Time   `json:"reset,omitzero"`
	SessionsDropped time.Time   `json:"sessions_dropped,omitzero"`
	Cooldowns       []savedCool `json:"cooldowns,omitempty"`
}

// savedCool is savedCooldown as JSON.
type savedCool struct {
	Key    string    `json:"key"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
}

// savedBinding is one binding: [key, session, client, auth index,
// last used in unix ms].
type savedBinding struct {
	key, session, client uint64
	auth                 int
	lastUsed             int64
}

// MarshalJSON implements json.Marshaler.
func (b savedBinding) MarshalJSON() ([]byte, error) {
	return b.appendJSON(nil), nil
}

func (b savedBinding) appendJSON(out []byte) []byte {
	out = append(out, `["`...)
	out = strconv.AppendUint(out, b.key, 16)
	out = append(out, `","`...)
	out = strconv.AppendUint(out, b.session, 16)
	out = append(out, `","`...)
	out = strconv.AppendUint(out, b.client, 16)
	out = append(out, `",`...)
	out = strconv.AppendInt(out, int64(b.auth), 10)
	out = append(out, ',')
	out = strconv.AppendInt(out, b.lastUsed, 10)
	return append(out, ']')
}

// bindingList is the document's bindings. It decodes by hand: a document
// may hold a million, and encoding/json's generic arrays cost 20
// allocations each.
type bindingList []savedBinding

// UnmarshalJSON implements json.Unmarshaler. The input is valid JSON
// (encoding/json checked it); anything but arrays of three hex strings
// and two integers is an error.
func (l *bindingList) UnmarshalJSON(data []byte) error {
	r := jsonReader{data: data}
	if r.literal("null") {
		*l = nil
		return nil
	}
	if !r.byte('[') {
		return errors.New("bindings is not an array")
	}
	// The shortest binding, ["0","0","0",0,0], takes 17 bytes: a text of
	// mostly '[' must not presize beyond what it can hold.
	out := make(bindingList, 0, min(bytes.Count(data, []byte{'['})-1, len(data)/17))
	if r.byte(']') {
		*l = out
		return nil
	}
	for {
		var b savedBinding
		if !r.byte('[') {
			return errors.New("binding is not an array")
		}
		for _, h := range []*uint64{&b.key, &b.session, &b.client} {
			v, ok := r.hex()
			if !ok || !r.byte(',') {
				return errors.New("binding hash is not a hex string")
			}
			*h = v
		}
		idx, ok := r.int()
		if !ok || idx < 0 || idx > math.MaxInt32 || !r.byte(',') {
			return errors.New("binding auth index is not an integer")
		}
		b.auth = int(idx)
		if b.lastUsed, ok = r.int(); !ok || !r.byte(']') {
			return errors.New("binding time is not an integer, or the binding has more than 5 fields")
		}
		out = append(out, b)
		if r.byte(']') {
			break
		}
		if !r.byte(',') {
			return errors.New("bindings is not an array")
		}
	}
	*l = out
	return nil
}

// jsonReader reads tokens of valid JSON.
type jsonReader struct {
	data []byte
	i    int
}

func (r *jsonReader) space() {
	for r.i < len(r.data) && (r.data[r.i] == ' ' || r.data[r.i] == '\t' || r.data[r.i] == '\n' || r.data[r.i] == '\r') {
		r.i++
	}
}

// byte consumes c after white space, if it is next.
func (r *jsonReader) byte(c byte) bool {
	r.space()
	if r.i < len(r.data) && r.data[r.i] == c {
		r.i++
		return true
	}
	return false
}

func (r *jsonReader) literal(s string) bool {
	r.space()
	if bytes.HasPrefix(r.data[r.i:], []byte(s)) {
		r.i += len(s)
		return true
	}
	return false
}

// hex reads a string of 1 to 16 hex digits.
func (r *jsonReader) hex() (uint64, bool) {
	if !r.byte('"') {
		return 0, false
	}
	var v uint64
	n := 0
	for ; r.i < len(r.data) && r.data[r.i] != '"'; r.i++ {
		c := r.data[r.i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		if n++; n > 16 {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	if n == 0 || !r.byte('"') {
		return 0, false
	}
	return v, true
}

// int reads an integer without fraction or exponent that fits an int64.
func (r *jsonReader) int() (int64, bool) {
	r.space()
	neg := r.i < len(r.data) && r.data[r.i] == '-'
	if neg {
		r.i++
	}
	var v uint64
	n := 0
	for ; r.i < len(r.data) && r.data[r.i] >= '0' && r.data[r.i] <= '9'; r.i++ {
		if n++; n > 18 {
			return 0, false
		}
		v = v*10 + uint64(r.data[r.i]-'0')
	}
	if n == 0 || r.i < len(r.data) && (r.data[r.i] == '.' || r.data[r.i] == 'e' || r.data[r.i] == 'E') {
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

// stateStorage returns where a's config keeps the pool's state documents:
// the storage of its records and the key prefix; nil when a's config keeps
// state in memory (state_sync off, no instance ID, no Caddy storage).
func (p *Pool) stateStorage(a *Attachment) (certmagic.Storage, string) {
	if a.cfg.StateSync <= 0 || !validInstanceID(a.cfg.InstanceID) {
		return nil, ""
	}
	return p.besideRecords(a, "state")
}

// validInstanceID reports whether id may name a document: Caddy's IDs are
// UUIDs.
func validInstanceID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// coolPrint returns the pool's current coolPrint.
func (p *Pool) coolPrint() coolPrint {
	p.mu.RLock()
	defer p.mu.RUnlock()
	cp := coolPrint{members: p.version, changes: p.state.dropChanges.Load()}
	for _, c := range p.creds {
		cp.changes += c.changes.Load()
	}
	return cp
}

// membersVersion returns the version of the pool's credential set.
func (p *Pool) membersVersion() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.version
}

// loadState reads every state document, this instance's too, and merges
// them, once per pool: called when a config attaches a pool no config
// used before in this process, before the config serves. It writes and
// deletes nothing.
func (p *Pool) loadState(ctx context.Context, a *Attachment) {
	st := &p.state
	if st.loaded.Load() {
		return // a reload: no waiting for a round in progress
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	storage, prefix := p.stateStorage(a)
	if st.loaded.Load() || storage == nil {
		return
	}
	st.loaded.Store(true)
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	now := clock.Now()
	p.storageOutcome(a, p.mergeStates(ctx, a, storage, prefix, now, true))
	// What was just read is in storage already: nothing to write for it,
	// and news may be written at once.
	st.wroteChanges, st.wroteCools, st.wroteAt = p.Sessions.Changes(), p.coolPrint(), now.Add(-a.cfg.StateSync)
}

// stateTick is how often the state loop looks for news for a state_sync
// of period: four times per period, but never more often than every 50ms
// (a tiny state_sync must not spin on storage), so that news is written
// soon after it happens rather than up to a period later, while writes
// stay at most one per period.
func stateTick(period time.Duration) time.Duration {
	return max(period/4, 50*time.Millisecond)
}

// stateLoop saves and merges state on every tick until ctx ends.
func (p *Pool) stateLoop(ctx context.Context, a *Attachment, tick <-chan time.Time, stop func()) {
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			p.syncState(ctx, a)
		}
	}
}

// syncState is one round of the state loop: write this instance's
// document if something changed since the last write and that write is a
// period old (or a heartbeat is due), then merge the other documents that
// changed (a listing and one Stat per document when none did) and delete
// expired ones.
func (p *Pool) syncState(ctx context.Context, a *Attachment) {
	st := &p.state
	st.mu.Lock()
	defer st.mu.Unlock()
	storage, prefix := p.stateStorage(a)
	if storage == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	now := clock.Now()
	err := p.saveStateIfChanged(ctx, a, storage, prefix, now)
	if mergeErr := p.mergeStates(ctx, a, storage, prefix, now, false); err == nil {
		err = mergeErr
	}
	if errors.Is(err, context.Canceled) {
		return // the loop is stopping (a reload), storage is not at fault
	}
	p.storageOutcome(a, err)
}

// saveStateOnExit writes this instance's document when the last config
// using the pool detaches, if a loop ever ran: a config that never served
// writes nothing.
func (p *Pool) saveStateOnExit(a *Attachment) {
	st := &p.state
	st.mu.Lock()
	defer st.mu.Unlock()
	storage, prefix := p.stateStorage(a)
	if storage == nil || !st.synced.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	err := p.saveState(ctx, a, storage, prefix, clock.Now())
	if err != nil {
		a.cfg.Logger.Warn("cannot save the pool's session bindings and cooldowns at shutdown",
			zap.String("pool", p.name), zap.Error(err))
	}
}

// saveStateIfChanged writes the document when the bindings or cooldowns
// changed since the last write and that write is a.cfg.StateSync old (at
// most one write per period), or the last write is stateHeartbeat old.
// Must hold p.state.mu.
func (p *Pool) saveStateIfChanged(ctx context.Context, a *Attachment, storage certmagic.Storage, prefix string, now time.Time) error {
	st := &p.state
	since := now.Sub(st.wroteAt)
	due := since >= stateHeartbeat ||
		since >= a.cfg.StateSync && (p.Sessions.Changes() != st.wroteChanges || p.coolPrint() != st.wroteCools)
	if !due {
		return nil
	}
	return p.saveState(ctx, a, storage, prefix, now)
}

// saveState writes the document. Must hold p.state.mu.
func (p *Pool) saveState(ctx context.Context, a *Attachment, storage certmagic.Storage, prefix string, now time.Time) error {
	st := &p.state
	changes, cools := p.Sessions.Changes(), p.coolPrint()
	data, err := p.encodeState(a.cfg.InstanceID, now)
	if err != nil {
		return err
	}
	key := prefix + "/" + a.cfg.InstanceID + ".json"
	if err := storage.Store(ctx, key, data); err != nil {
		return fmt.Errorf("writing %s: %w", key, err)
	}
	st.wroteChanges, st.wroteCools, st.wroteAt = changes, cools, now
	st.writes++
	return nil
}

// encodeState returns the pool's document as of now.
func (p *Pool) encodeState(instance string, now time.Time) ([]byte, error) {
	doc := stateDoc{
		Kind:     stateKind,
		Version:  stateVersion,
		Instance: instance,
		Pool:     p.name,
		Written:  now.UTC(),
		Auths:    []string{},
	}
	if d := p.state.dropped.Load(); d != 0 {
		doc.SessionsDropped = time.Unix(0, d).UTC()
	}
	for _, c := range p.Credentials() {
		cools, reset := c.exportState(now)
		var saved savedCreds
		if !reset.IsZero() {
			saved.Reset = reset.UTC()
		}
		if d := c.sessionsDropped.Load(); d != 0 {
			saved.SessionsDropped = time.Unix(0, d).UTC()
		}
		for _, s := range cools {
			if len(s.Key) > maxSavedKey {
				continue
			}
			saved.Cooldowns = append(saved.Cooldowns, savedCool{Key: s.Key, Until: s.Until.UTC(), Reason: s.Reason, Since: s.Since.UTC()})
		}
		if saved.Reset.IsZero() && saved.SessionsDropped.IsZero() && len(saved.Cooldowns) == 0 {
			continue
		}
		if doc.Credentials == nil {
			doc.Credentials = make(map[string]savedCreds)
		}
		doc.Credentials[c.id] = saved
	}
	// The bindings are encoded by hand (one document may hold a million)
	// and appended as the last field.
	bindings := p.Sessions.Snapshot(0)
	index := make(map[string]int)
	list := make([]byte, 0, 16+len(bindings)*64)
	list = append(list, `,"bindings":[`...)
	for i, b := range bindings {
		idx, ok := index[b.Auth]
		if !ok {
			idx = len(doc.Auths)
			index[b.Auth] = idx
			doc.Auths = append(doc.Auths, b.Auth)
		}
		if i > 0 {
			list = append(list, ',')
		}
		list = savedBinding{key: b.Key, session: b.Session, client: b.Client, auth: idx, lastUsed: b.LastUsed.UnixMilli()}.appendJSON(list)
	}
	list = append(list, "]}\n"...)
	head, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding the state document: %w", err)
	}
	return append(head[:len(head)-1], list...), nil
}

// parseState decodes and checks a document found at key: it must be a
// state document of this version for pool, written by the instance its
// file name names.
func parseState(data []byte, key, pool string) (*stateDoc, error) {
	var doc stateDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("not a JSON state document")
	}
	instance := strings.TrimSuffix(path.Base(key), ".json")
	switch {
	case doc.Kind != stateKind:
		return nil, fmt.Errorf("not a state document (kind %q)", doc.Kind)
	case doc.Version != stateVersion:
		return nil, fmt.Errorf("state document version %d; this build reads version %d", doc.Version, stateVersion)
	case doc.Pool != pool:
		return nil, fmt.Errorf("state document of pool %q", doc.Pool)
	case doc.Instance != instance:
		return nil, fmt.Errorf("state document of instance %q under another instance's name", doc.Instance)
	case doc.Written.IsZero():
		return nil, errors.New("state document without its written time")
	}
	for _, b := range doc.Bindings {
		if b.auth < 0 || b.auth >= len(doc.Auths) {
			return nil, fmt.Errorf("binding names auth %d of %d", b.auth, len(doc.Auths))
		}
	}
	return &doc, nil
}

// mergeStates lists the state documents and merges each that changed
// since it was last read; this instance's own only at start (all true).
// Unless at start, documents written more than stateExpiry ago are
// deleted. A document that cannot be read or parsed is skipped with one
// warning until it changes. It returns the first storage error. Must hold
// p.state.mu.
func (p *Pool) mergeStates(ctx context.Context, a *Attachment, storage certmagic.Storage, prefix string, now time.Time, start bool) error {
	st := &p.state
	keys, err := storage.List(ctx, prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing saved yet
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", prefix, err)
	}
	own := prefix + "/" + a.cfg.InstanceID + ".json"
	members := p.membersVersion()
	if st.merged == nil {
		st.merged = make(map[string]docStamp)
	}
	listed := make(map[string]bool, len(keys))
	var docs []*stateDoc
	var firstErr error
	for _, key := range keys {
		if !strings.HasSuffix(key, ".json") || (key == own && !start) {
			continue
		}
		listed[key] = true
		info, err := storage.Stat(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("reading %s: %w", key, err))
			continue
		}
		stamp := docStamp{modified: info.Modified.UnixNano(), size: info.Size, members: members}
		if st.merged[key] == stamp {
			continue
		}
		if info.Size > maxStateDoc {
			p.warnState(a, key, fmt.Sprintf("state document of %d bytes, more than %d", info.Size, maxStateDoc))
			st.merged[key] = stamp
			continue
		}
		data, err := storage.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("reading %s: %w", key, err))
			continue
		}
		if len(data) > maxStateDoc { // it grew since Stat
			p.warnState(a, key, fmt.Sprintf("state document of %d bytes, more than %d", len(data), maxStateDoc))
			st.merged[key] = stamp
			continue
		}
		doc, err := parseState(data, key, p.name)
		if err != nil {
			p.warnState(a, key, err.Error())
			st.merged[key] = stamp
			continue
		}
		delete(st.warned, key)
		doc.key = key
		if now.Sub(doc.Written) > stateExpiry {
			if !start {
				if err := storage.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
					firstErr = cmpErr(firstErr, fmt.Errorf("deleting %s: %w", key, err))
				}
			}
			continue
		}
		docs = append(docs, doc)
		st.merged[key] = stamp
	}
	// Drops first: a binding one document saved may have been dropped
	// by another.
	for _, doc := range docs {
		p.mergeDrops(doc, now)
	}
	for _, doc := range docs {
		p.mergeDoc(doc, now)
	}
	for key := range st.merged {
		if !listed[key] {
			delete(st.merged, key)
		}
	}
	for key := range st.warned {
		if !listed[key] {
			delete(st.warned, key)
		}
	}
	for key := range st.future {
		if !listed[key] {
			delete(st.future, key)
		}
	}
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// mergeDoc merges a document: its cooldowns and resets into the
// credentials of the pool that it names, its bindings to credentials of
// the pool that serve into the session cache.
func (p *Pool) mergeDoc(doc *stateDoc, now time.Time) {
	for id, saved := range doc.Credentials {
		c, ok := p.Get(id)
		if !ok {
			continue
		}
		cools := make([]savedCooldown, 0, len(saved.Cooldowns))
		for _, s := range saved.Cooldowns {
			cools = append(cools, savedCooldown(s))
		}
		c.mergeState(cools, p.state.notAfterOnce(doc.key, "reset "+id, saved.Reset, now), now)
	}
	if len(doc.Bindings) == 0 {
		return
	}
	// Bindings to credentials that serve here, and used after this
	// instance last dropped them.
	serving := make([]bool, len(doc.Auths))
	dropped := make([]int64, len(doc.Auths))
	for i, id := range doc.Auths {
		c, ok := p.Get(id)
		serving[i] = ok && !c.Auth().Disabled
		if ok {
			dropped[i] = max(p.state.dropped.Load(), c.sessionsDropped.Load())
		}
	}
	bs := make([]session.Binding, 0, len(doc.Bindings))
	for _, b := range doc.Bindings {
		if !serving[b.auth] || time.UnixMilli(b.lastUsed).UnixNano() <= dropped[b.auth] {
			continue
		}
		// A copy never wins a tie with the binding it was copied from
		// (saved times are whole milliseconds): otherwise two instances
		// holding one binding would take each other's copy, and write it,
		// every round.
		bs = append(bs, session.Binding{Key: b.key, Session: b.session, Client: b.client, Auth: doc.Auths[b.auth],
			LastUsed: time.UnixMilli(b.lastUsed - 1)})
	}
	p.Sessions.Restore(bs)
}

// mergeDrops applies the drops of bindings that a document knows of and
// this instance does not yet: all of the pool's bindings, or one
// credential's, are dropped here too (the ones used since the drop
// included: they bind again on their next request). Times later than now
// (another instance's clock) count as now, once (notAfterOnce).
func (p *Pool) mergeDrops(doc *stateDoc, now time.Time) {
	if t := p.state.notAfterOnce(doc.key, "", doc.SessionsDropped, now); !t.IsZero() && t.UnixNano() > p.state.dropped.Load() {
		storeMax(&p.state.dropped, t.UnixNano())
		p.Sessions.Clear()
	}
	for id, saved := range doc.Credentials {
		c, ok := p.Get(id)
		if !ok {
			continue
		}
		if t := p.state.notAfterOnce(doc.key, "drop "+id, saved.SessionsDropped, now); !t.IsZero() && t.UnixNano() > c.sessionsDropped.Load() {
			storeMax(&c.sessionsDropped, t.UnixNano())
			p.Sessions.InvalidateAuth(id)
		}
	}
}

// notAfter returns t, or now when t is later.
func notAfter(t, now time.Time) time.Time {
	if t.After(now) {
		return now
	}
	return t
}

// notAfterOnce returns a drop or reset time t that the document at key
// tells of (what names which): t itself, or now when t is later (the
// other instance's clock runs ahead). A t later than now is applied once:
// the zero time is returned for it from then on, while the document keeps
// telling of it, so that it does not drop the bindings and clear the
// cooldowns made here since at every merge until this clock catches up.
// Must hold p.state.mu.
func (st *stateSync) notAfterOnce(key, what string, t, now time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	seen := st.future[key]
	if n, ok := seen[what]; ok && n == t.UnixNano() {
		return time.Time{}
	}
	if !t.After(now) {
		return t
	}
	if seen == nil {
		if st.future == nil {
			st.future = make(map[string]map[string]int64)
		}
		seen = make(map[string]int64)
		st.future[key] = seen
	}
	seen[what] = t.UnixNano()
	return now
}

// warnState logs a document's problem once until it changes. Must hold
// p.state.mu.
func (p *Pool) warnState(a *Attachment, key, problem string) {
	st := &p.state
	if st.warned[key] == problem {
		return
	}
	if st.warned == nil {
		st.warned = make(map[string]string)
	}
	st.warned[key] = problem
	a.cfg.Logger.Warn("skipping a state document that cannot be used", zap.String("pool", p.name),
		zap.String("key", key), zap.String("problem", problem))
}

// storageOutcome logs the first storage failure of a streak, and the
// recovery. Must hold p.state.mu.
func (p *Pool) storageOutcome(a *Attachment, err error) {
	st := &p.state
	switch {
	case err != nil && !st.failing:
		st.failing = true
		a.cfg.Logger.Warn("cannot save or merge session bindings and cooldowns in storage; this instance keeps its own until storage answers again",
			zap.String("pool", p.name), zap.Error(err))
	case err == nil && st.failing:
		st.failing = false
		a.cfg.Logger.Info("state storage answers again; sharing session bindings and cooldowns", zap.String("pool", p.name))
	}
}

// DropSessions drops the pool's session bindings: all of them, or only
// those to the credential authID when it is not "". It returns how many it
// dropped here. Instances sharing the pool's state drop theirs too when
// they merge this one's document, and bindings last used before the drop
// are never taken back from saved documents.
func (p *Pool) DropSessions(authID string) int {
	now := clock.Now().UnixNano()
	if authID == "" {
		storeMax(&p.state.dropped, now)
		p.state.dropChanges.Add(1)
		return p.Sessions.Clear()
	}
	if c, ok := p.Get(authID); ok {
		storeMax(&c.sessionsDropped, now)
		c.changes.Add(1)
	}
	return p.Sessions.InvalidateAuth(authID)
}

// storeMax stores v in a unless a holds more.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if old >= v || a.CompareAndSwap(old, v) {
			return
		}
	}
}
