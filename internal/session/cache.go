package session

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/stablehash"
)

// Defaults of Options.
const (
	DefaultTTL           = time.Hour
	DefaultMaxEntries    = 1_000_000
	DefaultSweepInterval = time.Minute
	DefaultClientShare   = 0.25
)

// maxShards is the shard count of large caches; small caches get fewer
// shards (see NewCache) so that their LRU order is exact.
const (
	maxShards         = 64
	minEntriesByShard = 1024
)

// Options configure a Cache. The zero value is usable.
type Options struct {
	// TTL is how long a binding lives after its last use; DefaultTTL when 0.
	TTL time.Duration
	// MaxEntries bounds the number of bindings; DefaultMaxEntries when 0.
	// When full, the least recently used binding goes first.
	MaxEntries int
	// Now is the clock; time.Now when nil. Tests inject a fake clock.
	Now func() time.Time
	// ClientShare is the share of MaxEntries that the bindings of one
	// client (see BindFor) may take, in (0, 1]; DefaultClientShare when
	// out of range.
	ClientShare float64
}

// Cache maps (session, model) to the ID of the credential that serves it,
// with a sliding TTL and an LRU bound. All methods are safe for concurrent
// use.
//
// Bindings are keyed by a 64-bit hash of session and model; the strings
// themselves are not stored. The hash is xxHash64, unseeded, so a key means
// the same binding in every process and on every machine: that is what lets
// [Cache.Snapshot] and [Cache.Restore] carry bindings across restarts and
// between instances. Two pairs whose hashes collide (odds about n/2^64 per
// lookup) share one binding, which only means that two conversations are
// served by the same credential; for one model, two distinct session hashes
// never collide. The credential ID passed to Bind is stored as given,
// without a copy.
//
// The cache is split into up to 64 shards by session, each with its own
// mutex, map and LRU list; all models of a session live in one shard. The
// LRU order is kept per shard: when the cache is full, an insert evicts the
// least recently used binding of its own shard. That is exact for caches of
// fewer than 2048 entries (one shard) and a close approximation for larger
// ones, whose shards fill evenly. Concurrent inserts into different shards
// may overshoot MaxEntries by at most one binding per shard, and later
// inserts evict back down to the bound.
//
// Bindings made with BindFor belong to a client, and one client's bindings
// may take only ClientShare of the cache: a client over its share (kept
// per shard, which its sessions fill evenly) loses its own least recently
// used binding to a new one, so a client flooding new session IDs evicts
// its own bindings rather than everyone's. Only a hash of the client is
// kept.
type Cache struct {
	shards    []shard
	shift     uint // sessionHash >> shift selects the shard
	ttl       atomic.Int64
	count     atomic.Int64 // bindings in all shards
	max       int64
	clientMax int // bindings one client may hold per shard
	now       func() time.Time
	base      time.Time
	newTicker func(time.Duration) (<-chan time.Time, func())

	runMu sync.Mutex
	stop  chan struct{}
	done  chan struct{}
}

// entry is one binding, stored in a shard's slab and linked in LRU order,
// and in its client's LRU order when it has a client.
type entry struct {
	key          uint64 // hash of (session, model)
	sessionHash  uint64 // hash of session, for InvalidateSession
	client       uint64 // hash of the client; 0 for none
	auth         string
	lastUsed     int64 // nanoseconds since Cache.base
	prev, next   int32 // slab indices; -1 for none. next links the free list too.
	cprev, cnext int32 // the client's list; -1 for none
}

// clientList is one client's bindings in a shard, most recently used first.
type clientList struct {
	head, tail int32
	n          int
}

// shard is one lock domain of the cache.
type shard struct {
	mu    sync.Mutex
	index map[uint64]int32 // key -> slab index
	slab  []entry
	head  int32 // most recently used, -1 when empty
	tail  int32 // least recently used, -1 when empty
	free  int32 // first free slab slot, -1 when none
	count *atomic.Int64
	// changes counts the changes to the shard's bindings (see
	// Cache.Changes); it is only touched under mu, so that the hot paths
	// pay nothing for it on a cache line they do not already own.
	changes uint64
	// clients holds the lists of the clients with bindings in the shard.
	clients map[uint64]*clientList
	_       [64]byte // keep shards' hot fields on separate cache lines
}

// NewCache returns an empty cache configured by opts.
func NewCache(opts Options) *Cache {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	n, shift := 1, uint(64)
	for n < maxShards && maxEntries/(2*n) >= minEntriesByShard {
		n *= 2
		shift--
	}
	share := opts.ClientShare
	if share <= 0 || share > 1 {
		share = DefaultClientShare
	}
	c := &Cache{
		max:       int64(maxEntries),
		clientMax: max(1, int(float64(maxEntries)*share)/n),
		shards:    make([]shard, n),
		shift:     shift,
		now:       now,
		base:      now(),
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.count = &c.count
		s.reset()
	}
	c.SetTTL(opts.TTL)
	return c
}

// SetTTL changes the TTL; DefaultTTL when d <= 0. It applies from then on,
// to existing bindings too: a binding expires at its last use plus the
// current TTL.
func (c *Cache) SetTTL(d time.Duration) {
	if d <= 0 {
		d = DefaultTTL
	}
	c.ttl.Store(int64(d))
}

// clock returns the current time in nanoseconds since c.base. Using
// Time.Sub keeps the monotonic reading of time.Now, so wall-clock jumps do
// not expire bindings.
func (c *Cache) clock() int64 { return int64(c.now().Sub(c.base)) }

// hashes returns the session hash and the binding key of (session, model).
// Both are the same in every process (see Cache).
func (c *Cache) hashes(session, model string) (sessionHash, key uint64) {
	sessionHash = xxhash.Sum64String(session)
	modelHash := xxhash.Sum64String(model)
	// For a fixed model, the map from sessionHash to key is a bijection, so
	// distinct session hashes never collide on one model.
	return sessionHash, stablehash.Mix(sessionHash + modelHash*0x9e3779b97f4a7c15)
}

func (c *Cache) shardOf(sessionHash uint64) *shard {
	return &c.shards[sessionHash>>c.shift]
}

// Get returns the credential bound to (session, model). A hit refreshes the
// binding's TTL and makes it the most recently used; an expired binding is
// removed and reported as a miss. Get does not allocate.
func (c *Cache) Get(session, model string) (authID string, ok bool) {
	sh, key := c.hashes(session, model)
	s := c.shardOf(sh)
	s.mu.Lock()
	i, found := s.index[key]
	if found {
		now := c.clock()
		e := &s.slab[i]
		if now-e.lastUsed >= c.ttl.Load() {
			s.remove(i)
		} else {
			e.lastUsed = now
			s.moveToFront(i)
			s.clientMoveToFront(i)
			s.changes++
			authID, ok = e.auth, true
		}
	}
	s.mu.Unlock()
	return authID, ok
}

// Bind binds (session, model) to authID, replacing any previous binding, and
// refreshes its TTL. When the shard is full, its least recently used binding
// is dropped first.
func (c *Cache) Bind(session, model, authID string) {
	sh, key := c.hashes(session, model)
	s := c.shardOf(sh)
	s.mu.Lock()
	now := c.clock()
	if i, found := s.index[key]; found {
		e := &s.slab[i]
		e.auth, e.lastUsed = authID, now
		s.moveToFront(i)
		s.clientMoveToFront(i)
		s.changes++
		s.mu.Unlock()
		return
	}
	for c.count.Load() >= c.max && s.tail >= 0 {
		s.remove(s.tail)
	}
	i := s.alloc()
	s.slab[i] = entry{key: key, sessionHash: sh, auth: authID, lastUsed: now, prev: -1, next: -1, cprev: -1, cnext: -1}
	s.pushFront(i)
	s.index[key] = i
	c.count.Add(1)
	s.changes++
	s.mu.Unlock()
}

// BindFor is Bind for a binding that belongs to client (e.g. the
// authenticated user, or the client's address when there is none); ""
// is no client, as with Bind. When the client already holds its share of
// the cache, its own least recently used binding is dropped first.
func (c *Cache) BindFor(client, session, model, authID string) {
	if client == "" {
		c.Bind(session, model, authID)
		return
	}
	ch := hashClient(client)
	sh, key := c.hashes(session, model)
	s := c.shardOf(sh)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes++
	now := c.clock()
	i, found := s.index[key]
	if found {
		e := &s.slab[i]
		e.auth, e.lastUsed = authID, now
		s.moveToFront(i)
		if e.client == ch {
			s.clientMoveToFront(i)
			return
		}
		s.clientUnlink(i)
	}
	if cl := s.clients[ch]; cl != nil && cl.n >= c.clientMax {
		s.remove(cl.tail)
	}
	if !found {
		for c.count.Load() >= c.max && s.tail >= 0 {
			s.remove(s.tail)
		}
		i = s.alloc()
		s.slab[i] = entry{key: key, sessionHash: sh, auth: authID, lastUsed: now, prev: -1, next: -1}
		s.pushFront(i)
		s.index[key] = i
		c.count.Add(1)
	}
	s.slab[i].client = ch
	s.clientPush(i)
}

// Touch refreshes the TTL of (session, model) only if it is still bound to
// authID and not expired, and reports whether it did.
func (c *Cache) Touch(session, model, authID string) bool {
	sh, key := c.hashes(session, model)
	s := c.shardOf(sh)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.index[key]
	if !found {
		return false
	}
	now := c.clock()
	e := &s.slab[i]
	if now-e.lastUsed >= c.ttl.Load() {
		s.remove(i)
		return false
	}
	if e.auth != authID {
		return false
	}
	e.lastUsed = now
	s.moveToFront(i)
	s.clientMoveToFront(i)
	s.changes++
	return true
}

// Unbind removes the binding of (session, model) only if it still points at
// authID, and reports whether it did.
func (c *Cache) Unbind(session, model, authID string) bool {
	sh, key := c.hashes(session, model)
	s := c.shardOf(sh)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.index[key]
	if !found || s.slab[i].auth != authID {
		return false
	}
	s.remove(i)
	return true
}

// InvalidateSession removes the bindings of session for all models and
// returns how many it removed.
func (c *Cache) InvalidateSession(session string) int {
	sh := xxhash.Sum64String(session)
	s := c.shardOf(sh)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeIf(func(e *entry) bool { return e.sessionHash == sh })
}

// InvalidateAuth removes every binding to authID and returns how many it
// removed.
func (c *Cache) InvalidateAuth(authID string) int {
	return c.removeAll(func(e *entry) bool { return e.auth == authID })
}

// Retain removes the bindings whose credential keep rejects (credentials
// that left the pool) and returns how many it removed. keep is called with a
// shard locked and must not call back into the Cache.
func (c *Cache) Retain(keep func(authID string) bool) int {
	return c.removeAll(func(e *entry) bool { return !keep(e.auth) })
}

// Clear removes every binding, releases the memory they used, and returns
// how many there were.
func (c *Cache) Clear() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.count.Add(-int64(len(s.index)))
		if len(s.index) > 0 {
			s.changes++
		}
		s.reset()
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of bindings, including expired ones not yet swept.
func (c *Cache) Len() int { return int(c.count.Load()) }

// CountByAuth returns the number of unexpired bindings per credential ID.
func (c *Cache) CountByAuth() map[string]int {
	counts := make(map[string]int)
	ttl := c.ttl.Load()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		now := c.clock()
		for j := s.head; j >= 0; j = s.slab[j].next {
			e := &s.slab[j]
			if now-e.lastUsed >= ttl {
				break // the rest of the list is older still
			}
			counts[e.auth]++
		}
		s.mu.Unlock()
	}
	return counts
}

// Sweep removes the expired bindings now and returns how many it removed.
// Each shard's LRU list is walked from its oldest end and the walk stops at
// the first unexpired binding: list order is last-use order, and under one
// TTL that is expiry order.
func (c *Cache) Sweep() int {
	n := 0
	ttl := c.ttl.Load()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		now := c.clock()
		for s.tail >= 0 && now-s.slab[s.tail].lastUsed >= ttl {
			s.remove(s.tail)
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// Start runs Sweep every interval (DefaultSweepInterval when <= 0) in a
// background goroutine until Stop. Calling Start while running does nothing.
func (c *Cache) Start(interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.stop != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	c.stop, c.done = stop, done
	tick, stopTicker := c.newTicker(interval)
	go func() {
		defer close(done)
		defer stopTicker()
		for {
			select {
			case <-stop:
				return
			case <-tick:
				c.Sweep()
			}
		}
	}()
}

// Stop stops the goroutine started by Start and waits for it to exit. It is
// safe to call more than once and without Start; Start may be called again
// afterwards.
func (c *Cache) Stop() {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.stop == nil {
		return
	}
	close(c.stop)
	<-c.done
	c.stop, c.done = nil, nil
}

// removeAll removes the bindings matching drop in every shard.
func (c *Cache) removeAll(drop func(*entry) bool) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.removeIf(drop)
		s.mu.Unlock()
	}
	return n
}

// The shard methods below require s.mu to be held.

// reset empties the shard and drops its memory.
func (s *shard) reset() {
	s.index = make(map[uint64]int32)
	s.clients = make(map[uint64]*clientList)
	s.slab = nil
	s.head, s.tail, s.free = -1, -1, -1
}

// removeIf removes the entries matching drop and returns how many.
func (s *shard) removeIf(drop func(*entry) bool) int {
	n := 0
	for i := s.head; i >= 0; {
		next := s.slab[i].next
		if drop(&s.slab[i]) {
			s.remove(i)
			n++
		}
		i = next
	}
	return n
}

// alloc returns a free slab slot, growing the slab when none is free.
func (s *shard) alloc() int32 {
	if i := s.free; i >= 0 {
		s.free = s.slab[i].next
		return i
	}
	s.slab = append(s.slab, entry{})
	return int32(len(s.slab) - 1)
}

// remove unlinks entry i, deletes it from the index and frees its slot.
func (s *shard) remove(i int32) {
	s.unlink(i)
	s.clientUnlink(i)
	e := &s.slab[i]
	delete(s.index, e.key)
	s.count.Add(-1)
	s.changes++
	*e = entry{next: s.free, prev: -1, cprev: -1, cnext: -1} // drops the auth string reference
	s.free = i
}

func (s *shard) unlink(i int32) {
	e := &s.slab[i]
	if e.prev >= 0 {
		s.slab[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.slab[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *shard) pushFront(i int32) {
	e := &s.slab[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.slab[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}

func (s *shard) moveToFront(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

// hashClient is the hash a client's bindings carry, the same in every
// process; never 0, which is no client.
func hashClient(client string) uint64 {
	return xxhash.Sum64String(client) | 1
}

// clientPush makes entry i, whose client is set, the most recently used
// of its client.
func (s *shard) clientPush(i int32) {
	e := &s.slab[i]
	cl := s.clients[e.client]
	if cl == nil {
		cl = &clientList{head: -1, tail: -1}
		s.clients[e.client] = cl
	}
	e.cprev, e.cnext = -1, cl.head
	if cl.head >= 0 {
		s.slab[cl.head].cprev = i
	} else {
		cl.tail = i
	}
	cl.head = i
	cl.n++
}

// clientUnlink takes entry i out of its client's list and clears its
// client; an entry without a client is left alone.
func (s *shard) clientUnlink(i int32) {
	e := &s.slab[i]
	if e.client == 0 {
		return
	}
	cl := s.clients[e.client]
	if e.cprev >= 0 {
		s.slab[e.cprev].cnext = e.cnext
	} else {
		cl.head = e.cnext
	}
	if e.cnext >= 0 {
		s.slab[e.cnext].cprev = e.cprev
	} else {
		cl.tail = e.cprev
	}
	if cl.n--; cl.n == 0 {
		delete(s.clients, e.client)
	}
	e.client, e.cprev, e.cnext = 0, -1, -1
}

// clientMoveToFront makes entry i the most recently used of its client,
// if it has one. It does not allocate.
func (s *shard) clientMoveToFront(i int32) {
	e := &s.slab[i]
	if e.client == 0 {
		return
	}
	cl := s.clients[e.client]
	if cl.head == i {
		return
	}
	// i is not the head, so it has a predecessor.
	s.slab[e.cprev].cnext = e.cnext
	if e.cnext >= 0 {
		s.slab[e.cnext].cprev = e.cprev
	} else {
		cl.tail = e.cprev
	}
	e.cprev, e.cnext = -1, cl.head
	s.slab[cl.head].cprev = i
	cl.head = i
}

// Binding is one session binding as saved to storage.
type Binding struct {
	Key      uint64    // hash of (session, model): the binding's identity
	Session  uint64    // hash of the session (InvalidateSession)
	Client   uint64    // hash of the client; 0 for none
	Auth     string    // credential ID
	LastUsed time.Time // wall-clock time of the last use
}

// Changes returns a number that grows whenever a binding is added, moved,
// removed, expired (by Sweep or a lookup) or used; equal numbers mean
// nothing to save. A binding that merely ages past its TTL does not change
// the number until it is swept.
func (c *Cache) Changes() uint64 {
	var n uint64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.changes
		s.mu.Unlock()
	}
	return n
}

// wall returns the wall-clock time of t nanoseconds since c.base, without
// a monotonic reading, so that it compares with times of other processes.
func (c *Cache) wall(t int64) time.Time {
	return c.base.Round(0).Add(time.Duration(t))
}

// Snapshot returns the cache's unexpired bindings, most recently used
// first, at most max of them (max <= 0: all). Their LastUsed is the wall
// clock of the last use as this cache's clock saw it.
func (c *Cache) Snapshot(max int) []Binding {
	type saved struct {
		key, session, client uint64
		auth                 string
		lastUsed             int64
	}
	size := c.Len()
	if max > 0 {
		size = min(size, max*len(c.shards))
	}
	out := make([]saved, 0, size)
	ttl := c.ttl.Load()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		now := c.clock()
		taken := 0
		for j := s.head; j >= 0 && (max <= 0 || taken < max); j = s.slab[j].next {
			e := &s.slab[j]
			if now-e.lastUsed >= ttl {
				break // the rest of the list is older still
			}
			out = append(out, saved{key: e.key, session: e.sessionHash, client: e.client, auth: e.auth, lastUsed: e.lastUsed})
			taken++
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b saved) int {
		if d := cmp.Compare(b.lastUsed, a.lastUsed); d != 0 {
			return d
		}
		return cmp.Compare(a.key, b.key)
	})
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	bs := make([]Binding, len(out))
	for i, e := range out {
		bs[i] = Binding{Key: e.key, Session: e.session, Client: e.client, Auth: e.auth, LastUsed: c.wall(e.lastUsed)}
	}
	return bs
}

// restoreChunk is how many bindings Restore takes into a shard per hold of
// its lock, so that a large Restore does not stall lookups.
const restoreChunk = 256

// Restore merges bindings saved by this or another instance (see
// Snapshot). A binding is taken when the cache has none for its Key, or
// has one last used earlier than it (newest wins, so a conversation that
// failover moved to another credential stays moved, and one used more
// recently elsewhere has its last use brought forward). Taken bindings keep
// their LastUsed, so they never look newer than they are and expire at
// their saved last use plus the TTL; a LastUsed in the future counts as
// now. Expired bindings and ones without a credential are skipped.
// MaxEntries and the per-client share hold as for BindFor, except that a
// restored binding never displaces a more recently used one: when there is
// no older binding to evict, it is skipped. Restore returns how many
// bindings it took.
//
// The credential IDs are stored as given; Restore does not check that they
// still name credentials of the pool (see Retain).
func (c *Cache) Restore(bs []Binding) int {
	type pending struct {
		lastUsed int64
		i        int // index in bs
		shard    int
	}
	now := c.clock()
	ttl := c.ttl.Load()
	todo := make([]pending, 0, len(bs))
	for i := range bs {
		b := &bs[i]
		if b.Auth == "" {
			continue
		}
		t := min(int64(b.LastUsed.Sub(c.base.Round(0))), now)
		// An age that overflows (a LastUsed centuries ago, or the zero
		// time) comes out negative: older than any TTL, too.
		if age := now - t; age >= ttl || age < 0 {
			continue
		}
		todo = append(todo, pending{lastUsed: t, i: i, shard: int(b.Session >> c.shift)})
	}
	// Per shard, newest first: each binding then goes behind the ones
	// taken before it, and eviction only ever drops bindings older than
	// the one coming in.
	slices.SortFunc(todo, func(a, b pending) int {
		if d := cmp.Compare(a.shard, b.shard); d != 0 {
			return d
		}
		return cmp.Compare(b.lastUsed, a.lastUsed)
	})
	auths := make(map[string]string) // one copy of each credential ID
	taken := 0
	for len(todo) > 0 {
		s := &c.shards[todo[0].shard]
		n := 1
		for n < len(todo) && todo[n].shard == todo[0].shard {
			n++
		}
		var r restorer
		for start := 0; start < n; start += restoreChunk {
			s.mu.Lock()
			r.begin(s)
			for _, p := range todo[start:min(n, start+restoreChunk)] {
				b := &bs[p.i]
				auth, ok := auths[b.Auth]
				if !ok {
					auth = b.Auth
					auths[auth] = auth
				}
				if r.take(c, b, auth, p.lastUsed) {
					taken++
				}
			}
			s.mu.Unlock()
		}
		todo = todo[n:]
	}
	return taken
}

// restorer takes bindings into one shard in order of decreasing last use.
// It remembers where it put the last one in the shard's list and in each
// client's list, since the next one goes behind it.
type restorer struct {
	s       *shard
	last    cursor            // in the shard's list; i is -1 for none
	clients map[uint64]cursor // in each client's list
}

// cursor is a binding taken by a restorer, by slab index and key.
type cursor struct {
	i   int32
	key uint64
}

// valid reports whether cursor k still points at the binding it was set
// to.
func (s *shard) valid(k cursor) bool {
	j, ok := s.index[k.key]
	return ok && j == k.i
}

// begin starts a hold of s's lock. The cursors of the previous hold are
// kept only if they still point at the same bindings, which another
// goroutine may have removed or rebound while the lock was free. A kept
// cursor may have been used since; it is then newer still, which keeps it
// a valid starting point for the walk behind it.
func (r *restorer) begin(s *shard) {
	if r.s != s {
		*r = restorer{s: s, last: cursor{i: -1}, clients: make(map[uint64]cursor)}
		return
	}
	if r.last.i >= 0 && !s.valid(r.last) {
		r.last.i = -1
	}
	for ch, k := range r.clients {
		if !s.valid(k) || s.slab[k.i].client != ch {
			delete(r.clients, ch)
		}
	}
}

// take merges b, last used at t (nanoseconds since Cache.base), into the
// shard and reports whether it did. Every binding it evicts is older
// than t, so neither cursor (each at least as new as t) is ever evicted.
func (r *restorer) take(c *Cache, b *Binding, auth string, t int64) bool {
	s := r.s
	i, found := s.index[b.Key]
	if found && s.slab[i].lastUsed >= t {
		return false // as new or newer here
	}
	evict := int32(-1) // the client's binding to drop for its share
	if b.Client != 0 && (!found || s.slab[i].client != b.Client) {
		if cl := s.clients[b.Client]; cl != nil && cl.n >= c.clientMax {
			if s.slab[cl.tail].lastUsed >= t {
				return false // the client's share is full of newer bindings
			}
			evict = cl.tail
		}
	}
	if !found && evict < 0 && c.count.Load() >= c.max && (s.tail < 0 || s.slab[s.tail].lastUsed >= t) {
		return false // full of newer bindings
	}
	if evict >= 0 {
		s.remove(evict)
	}
	if found {
		s.unlink(i)
		s.clientUnlink(i)
	} else {
		for c.count.Load() >= c.max {
			if s.tail < 0 || s.slab[s.tail].lastUsed >= t {
				return false // another shard grew meanwhile
			}
			s.remove(s.tail)
		}
		i = s.alloc()
		s.slab[i] = entry{key: b.Key, sessionHash: b.Session, prev: -1, next: -1, cprev: -1, cnext: -1}
		s.index[b.Key] = i
		c.count.Add(1)
	}
	e := &s.slab[i]
	e.auth, e.lastUsed = auth, t
	// A cursor is never i itself while the clock runs forward (i was
	// older than t); the checks keep a clock stepped back from linking i
	// behind itself.
	start := r.last.i
	if start == i {
		start = -1
	}
	s.insertAfter(i, s.behind(start, t))
	r.last = cursor{i: i, key: b.Key}
	if b.Client != 0 {
		e.client = b.Client
		start := int32(-1)
		if k, ok := r.clients[b.Client]; ok && k.i != i {
			start = k.i
		}
		s.clientInsertAfter(i, s.clientBehind(b.Client, start, t))
		r.clients[b.Client] = cursor{i: i, key: b.Key}
	}
	s.changes++
	return true
}

// behind returns the last binding of the shard's list last used at t or
// later, walking from start (a binding in the list; -1 for the head); -1
// when there is none.
func (s *shard) behind(start int32, t int64) int32 {
	p := start
	if p >= 0 && s.slab[p].lastUsed < t {
		p = -1 // not a valid start after all
	}
	if p < 0 {
		if p = s.head; p < 0 || s.slab[p].lastUsed < t {
			return -1
		}
	}
	for n := s.slab[p].next; n >= 0 && s.slab[n].lastUsed >= t; n = s.slab[n].next {
		p = n
	}
	return p
}

// insertAfter links the unlinked entry i behind p in the shard's list,
// or at its head when p is -1.
func (s *shard) insertAfter(i, p int32) {
	if p < 0 {
		s.pushFront(i)
		return
	}
	e := &s.slab[i]
	e.prev, e.next = p, s.slab[p].next
	if e.next >= 0 {
		s.slab[e.next].prev = i
	} else {
		s.tail = i
	}
	s.slab[p].next = i
}

// clientBehind is behind for the list of client ch.
func (s *shard) clientBehind(ch uint64, start int32, t int64) int32 {
	p := start
	if p >= 0 && s.slab[p].lastUsed < t {
		p = -1
	}
	if p < 0 {
		cl := s.clients[ch]
		if cl == nil {
			return -1
		}
		if p = cl.head; s.slab[p].lastUsed < t {
			return -1
		}
	}
	for n := s.slab[p].cnext; n >= 0 && s.slab[n].lastUsed >= t; n = s.slab[n].cnext {
		p = n
	}
	return p
}

// clientInsertAfter links entry i, whose client is set and which is in no
// client list, behind p in its client's list, or at its head when p is -1.
func (s *shard) clientInsertAfter(i, p int32) {
	if p < 0 {
		s.clientPush(i)
		return
	}
	e := &s.slab[i]
	cl := s.clients[e.client]
	e.cprev, e.cnext = p, s.slab[p].cnext
	if e.cnext >= 0 {
		s.slab[e.cnext].cprev = i
	} else {
		cl.tail = i
	}
	s.slab[p].cnext = i
	cl.n++
}
