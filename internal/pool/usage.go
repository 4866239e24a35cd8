package pool

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
)

// The usage ledger counts requests, failovers and tokens per client key
// label, credential and model (SPEC section 16), in buckets that answer for
// any window up to [MaxUsageWindow]: one-minute buckets for the last hour
// and one-hour buckets for the day before. It lives in the Pool, so it
// survives config reloads.
//
// Model names come from clients and labels from access providers, so the
// ledger is bounded whatever they send: at most usageMaxModels model names
// and usageMaxClients client labels, past which new ones are counted as
// [UsageOther], and at most usageMaxSeries (client, credential, model)
// series, past which a new series is counted under model UsageOther, or
// else under client and model UsageOther. That last series is kept for
// every credential beyond the bound, so per-credential figures are always
// whole. Series idle for longer than the ledger reaches back are dropped
// when room is needed (looked for at most once per usagePruneEvery). A
// series takes about 5 KB, so a pool's ledger stays under about 20 MB plus
// 5 KB per credential.
const (
	// MaxUsageWindow is the longest window [Pool.Usage] answers for.
	MaxUsageWindow = 24 * time.Hour
	// UsageOther is the client label and model name that what exceeds the
	// ledger's bounds is counted under.
	UsageOther = "other"

	usageMaxSeries  = 4096
	usageMaxModels  = 256
	usageMaxClients = 1024
	usagePruneEvery = int64(time.Minute / time.Second) // in seconds

	// usageMinutes one-minute buckets cover the current hour (and some of
	// the one before); usageHours one-hour buckets cover the 24 complete
	// hours before the current one, and the current one.
	usageMinutes = 60
	usageHours   = 25
)

// UsageKey names one series of the usage ledger.
type UsageKey struct {
	// Client is the label of the client key ("" when the handler has no
	// access providers, or the provider gave no label).
	Client string
	// Auth is the ID of the credential.
	Auth string
	// Model is the model as the client named it, before any model_alias
	// ("" for requests that name none, such as model lists).
	Model string
}

// Tokens are the token counts of one response. Input is the prompt tokens
// neither read from nor written to the provider's prompt cache, so Input +
// CacheRead + CacheWrite is the whole prompt in every API family.
type Tokens struct {
	Input, Output, CacheRead, CacheWrite uint64
}

// UsageCounts are what the ledger counts per series.
type UsageCounts struct {
	// Requests counts client requests the credential answered or, when
	// every attempt failed, was tried for last.
	Requests uint64
	// Failovers counts attempts of the credential that failed over to
	// another (cooling it, unless the request names no model), as
	// caddy_llm_proxy_failovers_total does.
	Failovers uint64
	Tokens
}

// Add adds o's counts to c.
func (c *UsageCounts) Add(o UsageCounts) {
	c.Requests += o.Requests
	c.Failovers += o.Failovers
	c.Input += o.Input
	c.Output += o.Output
	c.CacheRead += o.CacheRead
	c.CacheWrite += o.CacheWrite
}

// UsageTotal is one series with its counts since the series began (the
// pool was created, or the series came back after being dropped as idle).
type UsageTotal struct {
	UsageKey
	UsageCounts
}

// RecordRequest counts one client request in series k: credential k.Auth
// answered it (or was tried last, when every attempt failed) and its
// response reported t (zero when it reported no usage).
func (p *Pool) RecordRequest(k UsageKey, t Tokens, now time.Time) {
	p.usage.add(k, UsageCounts{Requests: 1, Tokens: t}, now)
}

// RecordFailover counts one attempt of credential k.Auth that failed over
// to another credential.
func (p *Pool) RecordFailover(k UsageKey, now time.Time) {
	p.usage.add(k, UsageCounts{Failovers: 1}, now)
}

// UsageTotals returns every series of the ledger with its counts since it
// began, for metrics; the order is unspecified.
func (p *Pool) UsageTotals() []UsageTotal {
	all := p.usage.all()
	out := make([]UsageTotal, len(all))
	for i, s := range all {
		s.mu.Lock()
		out[i] = UsageTotal{s.key, s.total}
		s.mu.Unlock()
	}
	return out
}

// usageLedger is the pool's usage ledger. Its zero value is empty and
// ready. Recording into an existing series takes the read lock and the
// series' own mutex, and allocates nothing.
type usageLedger struct {
	mu     sync.RWMutex
	series map[UsageKey]*usageSeries
	// clients and models count the series of each distinct name.
	clients, models map[string]int
	// prunedAt is when idle series were last looked for (unix seconds).
	prunedAt int64
}

// usageSeries is the counts of one series.
type usageSeries struct {
	key UsageKey

	mu sync.Mutex
	// dead: the series was dropped as idle; a record that finds it so
	// goes to the ledger again.
	dead    bool
	last    int64 // the minute of the latest record
	total   UsageCounts
	minutes [usageMinutes]usageBucket
	hours   [usageHours]usageBucket
}

// usageBucket is the counts of one minute or hour; at says which (since
// the unix epoch). A bucket holding an older one is stale.
type usageBucket struct {
	at int64
	UsageCounts
}

func (l *usageLedger) add(k UsageKey, c UsageCounts, now time.Time) {
	for {
		if l.get(k, now).add(c, now) {
			return
		}
		// Dropped as idle in between: the next get makes a new series.
	}
}

// get returns the series k is counted in.
func (l *usageLedger) get(k UsageKey, now time.Time) *usageSeries {
	l.mu.RLock()
	s := l.series[k]
	if s == nil {
		// Counted under another series when k is over a bound, unless
		// idle series are due to be dropped to make room.
		if at := l.place(k); at == k || now.Unix() < l.prunedAt+usagePruneEvery {
			s = l.series[at]
		}
	}
	l.mu.RUnlock()
	if s != nil {
		return s
	}
	return l.create(k, now)
}

// place returns the series k is counted in: k itself while the bounds
// allow, else k with UsageOther in place of the names over a bound. Must
// hold l.mu.
func (l *usageLedger) place(k UsageKey) UsageKey {
	if _, ok := l.clients[k.Client]; !ok && len(l.clients) >= usageMaxClients {
		k.Client = UsageOther
	}
	if _, ok := l.models[k.Model]; !ok && len(l.models) >= usageMaxModels {
		k.Model = UsageOther
	}
	if _, ok := l.series[k]; ok || len(l.series) < usageMaxSeries {
		return k
	}
	k.Model = UsageOther
	if _, ok := l.series[k]; ok {
		return k
	}
	// The credential's own overflow series, kept beyond the bound.
	k.Client = UsageOther
	return k
}

// create returns the series k is counted in, making it.
func (l *usageLedger) create(k UsageKey, now time.Time) *usageSeries {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.series == nil {
		l.series = make(map[UsageKey]*usageSeries)
		l.clients = make(map[string]int)
		l.models = make(map[string]int)
	}
	at := l.place(k)
	if at != k && now.Unix() >= l.prunedAt+usagePruneEvery {
		l.prune(now)
		at = l.place(k)
	}
	if s := l.series[at]; s != nil {
		return s
	}
	// The names may be slices of a request body: the ledger keeps
	// copies of its own.
	at = UsageKey{strings.Clone(at.Client), strings.Clone(at.Auth), strings.Clone(at.Model)}
	s := &usageSeries{key: at, last: minuteOf(now)}
	for i := range s.minutes {
		s.minutes[i].at = math.MinInt64
	}
	for i := range s.hours {
		s.hours[i].at = math.MinInt64
	}
	l.series[at] = s
	l.clients[at.Client]++
	l.models[at.Model]++
	return s
}

// prune drops the series with no record in any bucket a window can reach.
// Must hold l.mu for writing.
func (l *usageLedger) prune(now time.Time) {
	l.prunedAt = now.Unix()
	oldest := minuteOf(now) - usageHours*60
	for k, s := range l.series {
		s.mu.Lock()
		idle := s.last < oldest
		s.dead = idle
		s.mu.Unlock()
		if !idle {
			continue
		}
		delete(l.series, k)
		forget(l.clients, k.Client)
		forget(l.models, k.Model)
	}
}

// forget drops one series' use of name.
func forget(names map[string]int, name string) {
	if names[name] <= 1 {
		delete(names, name)
		return
	}
	names[name]--
}

// all returns every series.
func (l *usageLedger) all() []*usageSeries {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]*usageSeries, 0, len(l.series))
	for _, s := range l.series {
		out = append(out, s)
	}
	return out
}

// add counts c at now into the series; false when the series was dropped.
// A record older than a bucket's current minute or hour (a clock that
// went back) is kept in the totals only.
func (s *usageSeries) add(c UsageCounts, now time.Time) bool {
	m := minuteOf(now)
	h := floorDiv(m, 60)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	s.total.Add(c)
	s.last = max(s.last, m)
	countInto(&s.minutes[mod(m, usageMinutes)], m, c)
	countInto(&s.hours[mod(h, usageHours)], h, c)
	return true
}

// countInto counts c into b as the bucket of at.
func countInto(b *usageBucket, at int64, c UsageCounts) {
	if b.at < at {
		*b = usageBucket{at: at}
	}
	if b.at == at {
		b.Add(c)
	}
}

// usageWindow is the buckets one report sums: the minutes from minFrom to
// minTo, and the hours from hourFrom to hourTo (none when hourFrom >
// hourTo).
type usageWindow struct {
	minFrom, minTo, hourFrom, hourTo int64
}

// newUsageWindow returns the buckets that cover since to now, since at
// most MaxUsageWindow before now, and the start of the oldest bucket.
// Within the current hour the window starts at since's minute; beyond it,
// at since's hour, counted in hours up to the current one and in minutes
// from there.
func newUsageWindow(since, now time.Time) (usageWindow, time.Time) {
	if oldest := now.Add(-MaxUsageWindow); since.Before(oldest) {
		since = oldest
	}
	if since.After(now) {
		since = now
	}
	nowMin, sinceMin := minuteOf(now), minuteOf(since)
	hour := floorDiv(nowMin, 60)
	if sinceMin >= hour*60 {
		return usageWindow{minFrom: sinceMin, minTo: nowMin, hourFrom: 0, hourTo: -1}, time.Unix(sinceMin*60, 0)
	}
	sinceHour := floorDiv(sinceMin, 60)
	return usageWindow{minFrom: hour * 60, minTo: nowMin, hourFrom: sinceHour, hourTo: hour - 1}, time.Unix(sinceHour*3600, 0)
}

// sum returns the series' counts in window w.
func (s *usageSeries) sum(w usageWindow) UsageCounts {
	var c UsageCounts
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.minutes {
		if b := &s.minutes[i]; b.at >= w.minFrom && b.at <= w.minTo {
			c.Add(b.UsageCounts)
		}
	}
	for i := range s.hours {
		if b := &s.hours[i]; b.at >= w.hourFrom && b.at <= w.hourTo {
			c.Add(b.UsageCounts)
		}
	}
	return c
}

// UsageReport is a pool's usage over a window: in all, and per client key
// label, per credential and per model.
type UsageReport struct {
	// Since is the start of the oldest bucket counted: since's minute
	// within the current hour, since's hour before that. Until is when
	// the report was made.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Totals is every request of the pool in the window.
	Totals UsageRow `json:"totals"`
	// Clients, Auths and Models are the rows per client label, credential
	// and model with any count in the window, the most tokens first.
	Clients []UsageRow `json:"clients"`
	Auths   []UsageRow `json:"auths"`
	Models  []UsageRow `json:"models"`
}

// UsageRow is the usage of one client label, credential or model (the
// name set, the others empty), or of the whole pool (no name).
type UsageRow struct {
	// Client is the client key label: "" for requests without one
	// (shown as "client": "" in a row of clients). Auth is the
	// credential ID. Model is the model the client named: "" for
	// requests naming none (shown as "model": "" in a row of models).
	Client string `json:"client,omitempty"`
	Auth   string `json:"auth,omitempty"`
	Model  string `json:"model,omitempty"`
	// Requests and Failovers are as in [UsageCounts].
	Requests  uint64 `json:"requests"`
	Failovers uint64 `json:"failovers"`
	// The tokens the responses reported (see [Tokens]).
	InputTokens      uint64 `json:"input_tokens"`
	OutputTokens     uint64 `json:"output_tokens"`
	CacheReadTokens  uint64 `json:"cache_read_tokens"`
	CacheWriteTokens uint64 `json:"cache_write_tokens"`
	// CacheHitRate is the share of prompt tokens read from the provider's
	// cache: cache_read / (input + cache_read + cache_write), 0 without
	// prompt tokens.
	CacheHitRate float64 `json:"cache_hit_rate"`

	by rowKind // the name the row is of
}

// rowKind says which name a UsageRow is of.
type rowKind uint8

const (
	rowTotal rowKind = iota
	rowClient
	rowAuth
	rowModel
)

// MarshalJSON shows the name a row is of even when it is empty (a client
// without a label, requests naming no model).
func (r UsageRow) MarshalJSON() ([]byte, error) {
	type plain UsageRow // without this method
	switch {
	case r.by == rowClient && r.Client == "":
		return json.Marshal(struct {
			Client string `json:"client"`
			plain
		}{"", plain(r)})
	case r.by == rowModel && r.Model == "":
		return json.Marshal(struct {
			Model string `json:"model"`
			plain
		}{"", plain(r)})
	}
	return json.Marshal(plain(r))
}

func (r *UsageRow) add(c UsageCounts) {
	r.Requests += c.Requests
	r.Failovers += c.Failovers
	r.InputTokens += c.Input
	r.OutputTokens += c.Output
	r.CacheReadTokens += c.CacheRead
	r.CacheWriteTokens += c.CacheWrite
}

// tokens is every token the row counts.
func (r *UsageRow) tokens() uint64 {
	return r.InputTokens + r.OutputTokens + r.CacheReadTokens + r.CacheWriteTokens
}

// name is the name the row is of.
func (r *UsageRow) name() string {
	switch r.by {
	case rowClient:
		return r.Client
	case rowAuth:
		return r.Auth
	case rowModel:
		return r.Model
	}
	return ""
}

func (r *UsageRow) finish() {
	if prompt := r.InputTokens + r.CacheReadTokens + r.CacheWriteTokens; prompt > 0 {
		r.CacheHitRate = float64(r.CacheReadTokens) / float64(prompt)
	}
}

// Usage reports the pool's usage from since (at most [MaxUsageWindow]
// ago) to now.
func (p *Pool) Usage(since time.Time) UsageReport {
	return p.usage.report(since, clock.Now())
}

// report is the ledger's usage from since to now.
func (l *usageLedger) report(since, now time.Time) UsageReport {
	w, start := newUsageWindow(since, now)
	rep := UsageReport{Since: start.UTC(), Until: now.UTC()}
	clients := map[string]*UsageRow{}
	auths := map[string]*UsageRow{}
	models := map[string]*UsageRow{}
	row := func(rows map[string]*UsageRow, name string, by rowKind) *UsageRow {
		r := rows[name]
		if r == nil {
			r = &UsageRow{by: by}
			switch by {
			case rowClient:
				r.Client = name
			case rowAuth:
				r.Auth = name
			case rowModel:
				r.Model = name
			}
			rows[name] = r
		}
		return r
	}
	for _, s := range l.all() {
		c := s.sum(w)
		if c == (UsageCounts{}) {
			continue
		}
		rep.Totals.add(c)
		row(clients, s.key.Client, rowClient).add(c)
		row(auths, s.key.Auth, rowAuth).add(c)
		row(models, s.key.Model, rowModel).add(c)
	}
	rep.Totals.finish()
	rep.Clients, rep.Auths, rep.Models = sortedRows(clients), sortedRows(auths), sortedRows(models)
	return rep
}

// sortedRows returns the rows, the most tokens first, then by name.
func sortedRows(rows map[string]*UsageRow) []UsageRow {
	out := make([]UsageRow, 0, len(rows))
	for _, r := range rows {
		r.finish()
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b UsageRow) int {
		if c := cmp.Compare(b.tokens(), a.tokens()); c != 0 {
			return c
		}
		return strings.Compare(a.name(), b.name())
	})
	return out
}

// minuteOf is t's minute since the unix epoch.
func minuteOf(t time.Time) int64 { return floorDiv(t.Unix(), 60) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }
