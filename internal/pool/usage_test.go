package pool

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
)

// usageStart is 10:00:30 UTC on a fixed day: half a minute into an hour.
var usageStart = time.Date(2026, 3, 2, 10, 0, 30, 0, time.UTC)

func rowsByName(rows []UsageRow) map[string]UsageRow {
	out := make(map[string]UsageRow, len(rows))
	for _, r := range rows {
		out[r.name()] = r
	}
	return out
}

func TestUsageReportPerClientCredentialAndModel(t *testing.T) {
	var l usageLedger
	now := usageStart
	l.add(UsageKey{"alice", "c1", "claude-sonnet-4-5"}, UsageCounts{Requests: 1, Tokens: Tokens{Input: 10, Output: 5, CacheRead: 80, CacheWrite: 10}}, now)
	l.add(UsageKey{"alice", "c2", "claude-sonnet-4-5"}, UsageCounts{Requests: 1, Tokens: Tokens{Input: 100, Output: 50}}, now)
	l.add(UsageKey{"alice", "c1", "claude-sonnet-4-5"}, UsageCounts{Failovers: 1}, now)
	l.add(UsageKey{"bob", "c2", "gpt-5"}, UsageCounts{Requests: 1, Tokens: Tokens{Input: 1, Output: 1}}, now)
	l.add(UsageKey{"", "c2", ""}, UsageCounts{Requests: 1}, now)

	rep := l.report(now.Add(-time.Hour), now)
	want := UsageRow{Requests: 4, Failovers: 1, InputTokens: 111, OutputTokens: 56, CacheReadTokens: 80, CacheWriteTokens: 10,
		CacheHitRate: 80.0 / 201}
	if rep.Totals != want {
		t.Fatalf("totals %+v, want %+v", rep.Totals, want)
	}
	names := func(rows []UsageRow) (out []string) {
		for _, r := range rows {
			out = append(out, r.name())
		}
		return out
	}
	// The most tokens first, then by name.
	if got := fmt.Sprint(names(rep.Clients)); got != "[alice bob ]" {
		t.Errorf("clients in order %s", got)
	}
	if got := fmt.Sprint(names(rep.Auths)); got != "[c2 c1]" {
		t.Errorf("auths in order %s", got)
	}
	if got := fmt.Sprint(names(rep.Models)); got != "[claude-sonnet-4-5 gpt-5 ]" {
		t.Errorf("models in order %s", got)
	}
	c1 := rowsByName(rep.Auths)["c1"]
	if c1.Requests != 1 || c1.Failovers != 1 || c1.CacheHitRate != 0.8 || c1.Client != "" || c1.Model != "" {
		t.Errorf("c1 row %+v", c1)
	}
	if alice := rowsByName(rep.Clients)["alice"]; alice.Requests != 2 || alice.InputTokens != 110 || alice.Auth != "" {
		t.Errorf("alice row %+v", alice)
	}
	if anon := rowsByName(rep.Clients)[""]; anon.Requests != 1 || anon.CacheHitRate != 0 {
		t.Errorf("unlabelled client row %+v", anon)
	}
	if !rep.Since.Equal(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) || !rep.Until.Equal(now) {
		t.Errorf("window %v to %v", rep.Since, rep.Until)
	}
}

func TestUsageReportJSON(t *testing.T) {
	var l usageLedger
	l.add(UsageKey{"", "c1", ""}, UsageCounts{Requests: 1, Tokens: Tokens{Input: 3, CacheRead: 1}}, usageStart)
	b, err := json.Marshal(l.report(usageStart.Add(-time.Minute), usageStart))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"since", "until", "totals", "clients", "auths", "models"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	row := func(list string) map[string]any { return got[list].([]any)[0].(map[string]any) }
	// A row shows its own name even when empty, and no other.
	for list, want := range map[string]string{"clients": "client", "auths": "auth", "models": "model"} {
		r := row(list)
		for _, name := range []string{"client", "auth", "model"} {
			if _, ok := r[name]; ok != (name == want) {
				t.Errorf("%s row: %q present %v: %v", list, name, ok, r)
			}
		}
	}
	totals := got["totals"].(map[string]any)
	for _, k := range []string{"requests", "failovers", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_hit_rate"} {
		if _, ok := totals[k]; !ok {
			t.Errorf("totals lack %q: %v", k, totals)
		}
	}
	if _, ok := totals["client"]; ok || totals["cache_hit_rate"] != 0.25 {
		t.Errorf("totals %v", totals)
	}
	// An empty ledger answers with empty lists, not null.
	var empty usageLedger
	b, _ = json.Marshal(empty.report(usageStart.Add(-time.Hour), usageStart))
	if !strings.Contains(string(b), `"clients":[]`) || !strings.Contains(string(b), `"models":[]`) {
		t.Errorf("empty report %s", b)
	}
}

func TestUsageWindows(t *testing.T) {
	var l usageLedger
	k := UsageKey{"a", "c1", "m"}
	now := time.Date(2026, 3, 2, 12, 30, 20, 0, time.UTC)
	// One request at each of these ages.
	ages := []time.Duration{0, 5 * time.Minute, 29 * time.Minute, 31 * time.Minute, 90 * time.Minute,
		3 * time.Hour, 23 * time.Hour, 25 * time.Hour}
	for _, age := range ages {
		l.add(k, UsageCounts{Requests: 1}, now.Add(-age))
	}
	for _, tc := range []struct {
		window time.Duration
		want   uint64
		since  time.Time
	}{
		{time.Minute, 1, time.Date(2026, 3, 2, 12, 29, 0, 0, time.UTC)},
		{10 * time.Minute, 2, time.Date(2026, 3, 2, 12, 20, 0, 0, time.UTC)},
		{30 * time.Minute, 3, time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)},
		// Beyond the current hour, whole hours: 11:00 on.
		{time.Hour, 5, time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)},
		{2 * time.Hour, 5, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)},
		{4 * time.Hour, 6, time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)},
		{24 * time.Hour, 7, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		// No further back than 24h.
		{48 * time.Hour, 7, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
	} {
		rep := l.report(now.Add(-tc.window), now)
		if rep.Totals.Requests != tc.want || !rep.Since.Equal(tc.since) {
			t.Errorf("since %v ago: %d requests from %v, want %d from %v", tc.window, rep.Totals.Requests, rep.Since, tc.want, tc.since)
		}
	}
	// Since in the future: the current minute only.
	if rep := l.report(now.Add(time.Hour), now); rep.Totals.Requests != 1 {
		t.Errorf("future since: %d requests", rep.Totals.Requests)
	}
	// The totals keep everything.
	if tot := totalsOf(&l)[k]; tot.Requests != uint64(len(ages)) {
		t.Errorf("totals %+v", tot)
	}
}

// TestUsageClockBack: a record older than its bucket's current minute (the
// clock went back) never wipes newer counts.
func TestUsageClockBack(t *testing.T) {
	var l usageLedger
	k := UsageKey{"a", "c1", "m"}
	now := usageStart.Add(2 * time.Hour)
	l.add(k, UsageCounts{Requests: 1}, now)
	l.add(k, UsageCounts{Requests: 1}, now.Add(-time.Hour)) // same minute slot, an hour older
	if rep := l.report(now, now); rep.Totals.Requests != 1 {
		t.Errorf("this minute: %d requests", rep.Totals.Requests)
	}
	if rep := l.report(now.Add(-2*time.Hour), now); rep.Totals.Requests != 2 {
		t.Errorf("last 2h: %d requests", rep.Totals.Requests)
	}
}

func totalsOf(l *usageLedger) map[UsageKey]UsageCounts {
	out := map[UsageKey]UsageCounts{}
	for _, s := range l.all() {
		s.mu.Lock()
		out[s.key] = s.total
		s.mu.Unlock()
	}
	return out
}

// TestUsageHostileModelNames: a client naming 5000 distinct models keeps
// the ledger within its bounds; what is over them is counted under
// "other", and nothing is lost from the totals.
func TestUsageHostileModelNames(t *testing.T) {
	var l usageLedger
	now := usageStart
	for i := range 5000 {
		l.add(UsageKey{"mallory", "c1", "model-" + strconv.Itoa(i)}, UsageCounts{Requests: 1, Tokens: Tokens{Input: 2}}, now)
	}
	l.add(UsageKey{"alice", "c1", "model-1"}, UsageCounts{Requests: 1}, now)
	if n := len(l.models); n > usageMaxModels+1 {
		t.Fatalf("%d model names kept", n)
	}
	if n := len(l.series); n > usageMaxModels+2 {
		t.Fatalf("%d series kept", n)
	}
	rep := l.report(now.Add(-time.Hour), now)
	if rep.Totals.Requests != 5001 || rep.Totals.InputTokens != 10000 {
		t.Fatalf("totals %+v", rep.Totals)
	}
	other := rowsByName(rep.Models)[UsageOther]
	if other.Requests != 5000-usageMaxModels {
		t.Errorf("other counts %d requests", other.Requests)
	}
	// A name kept before the bound was reached is still counted as itself.
	if m1 := rowsByName(rep.Models)["model-1"]; m1.Requests != 2 {
		t.Errorf("model-1 counts %d requests", m1.Requests)
	}
}

// TestUsageSeriesBound: many clients and models cannot push the series
// past the bound, and every credential's figures stay whole.
func TestUsageSeriesBound(t *testing.T) {
	var l usageLedger
	now := usageStart
	const creds = 40
	var want [creds]uint64
	for i := range 20000 {
		c := i % creds
		k := UsageKey{"client-" + strconv.Itoa(i%2000), "cred-" + strconv.Itoa(c), "m-" + strconv.Itoa(i%200)}
		l.add(k, UsageCounts{Requests: 1, Tokens: Tokens{Output: uint64(i)}}, now)
		want[c] += uint64(i)
	}
	if n := len(l.series); n > usageMaxSeries+creds {
		t.Fatalf("%d series", n)
	}
	if n := len(l.clients); n > usageMaxClients+1 {
		t.Fatalf("%d clients", n)
	}
	auths := rowsByName(l.report(now.Add(-time.Hour), now).Auths)
	for c := range creds {
		if got := auths["cred-"+strconv.Itoa(c)].OutputTokens; got != want[c] {
			t.Errorf("cred-%d: %d output tokens, want %d", c, got, want[c])
		}
	}
}

// TestUsagePruneMakesRoom: series idle for longer than any window reaches
// are dropped when a bound is met, so new names are counted as themselves
// again.
func TestUsagePruneMakesRoom(t *testing.T) {
	var l usageLedger
	now := usageStart
	for i := range usageMaxModels {
		l.add(UsageKey{"a", "c1", "old-" + strconv.Itoa(i)}, UsageCounts{Requests: 1}, now)
	}
	l.add(UsageKey{"a", "c1", "new-0"}, UsageCounts{Requests: 1}, now.Add(time.Hour))
	if _, ok := l.series[UsageKey{"a", "c1", UsageOther}]; !ok {
		t.Fatal("a name over the bound is not counted as other")
	}
	later := now.Add(26 * time.Hour)
	l.add(UsageKey{"a", "c1", "new-1"}, UsageCounts{Requests: 1}, later)
	if _, ok := l.series[UsageKey{"a", "c1", "new-1"}]; !ok {
		t.Fatal("idle series did not make room")
	}
	if _, ok := l.series[UsageKey{"a", "c1", "old-0"}]; ok {
		t.Fatal("an idle series was kept")
	}
	// The series new-0 was counted in, 25h ago, is kept.
	if rep := l.report(later.Add(-24*time.Hour), later); rep.Totals.Requests != 1 {
		t.Errorf("last 24h: %d requests", rep.Totals.Requests)
	}
	if len(l.series) != 2 {
		t.Errorf("%d series after pruning", len(l.series))
	}
}

// TestUsageConcurrentRecords races records, new series, pruning and
// reports (run with -race); no record is lost.
func TestUsageConcurrentRecords(t *testing.T) {
	p := &Pool{name: "usage-race"}
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				now := usageStart.Add(time.Duration(i) * time.Minute)
				k := UsageKey{"client-" + strconv.Itoa(w), "c" + strconv.Itoa(i%3), "m-" + strconv.Itoa((w*each+i)%600)}
				p.RecordRequest(k, Tokens{Input: 1}, now)
				if i%100 == 0 {
					p.RecordFailover(k, now)
					_ = p.usage.report(now.Add(-time.Hour), now)
					_ = p.UsageTotals()
				}
			}
		})
	}
	wg.Wait()
	var requests, input, failovers uint64
	for _, tot := range p.UsageTotals() {
		requests += tot.Requests
		input += tot.Input
		failovers += tot.Failovers
	}
	// Pruning drops idle series with their totals: the ones left hold
	// at least the last day's records.
	if requests > workers*each || input != requests || failovers > workers*each/100 {
		t.Fatalf("requests %d, input %d, failovers %d", requests, input, failovers)
	}
	last := usageStart.Add((each - 1) * time.Minute)
	rep := p.usage.report(last.Add(-24*time.Hour), last)
	want := uint64(0)
	for i := range each {
		if !usageStart.Add(time.Duration(i) * time.Minute).Before(rep.Since) {
			want += workers
		}
	}
	if rep.Totals.Requests != want {
		t.Fatalf("last day: %d requests, want %d", rep.Totals.Requests, want)
	}
}

func TestPoolUsageReadsTheClock(t *testing.T) {
	fake := clock.NewFake(usageStart)
	defer clock.Install(fake.Now)()
	p := &Pool{name: "usage-clock"}
	p.RecordRequest(UsageKey{"a", "c1", "m"}, Tokens{Output: 7}, fake.Now())
	fake.Advance(2 * time.Minute)
	if rep := p.Usage(fake.Now().Add(-time.Minute)); rep.Totals.Requests != 0 || !rep.Until.Equal(fake.Now()) {
		t.Errorf("last minute: %+v", rep)
	}
	if rep := p.Usage(fake.Now().Add(-5 * time.Minute)); rep.Totals.OutputTokens != 7 {
		t.Errorf("last 5 minutes: %+v", rep.Totals)
	}
}

// BenchmarkUsageRecord records into existing series from every core, as
// requests do.
func BenchmarkUsageRecord(b *testing.B) {
	p := &Pool{name: "usage-bench"}
	now := usageStart
	keys := make([]UsageKey, 64)
	for i := range keys {
		keys[i] = UsageKey{"client-" + strconv.Itoa(i%8), "cred-" + strconv.Itoa(i%4), "model-" + strconv.Itoa(i%2)}
		p.RecordRequest(keys[i], Tokens{}, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p.RecordRequest(keys[i%len(keys)], Tokens{Input: 10, Output: 20, CacheRead: 30}, now)
			i++
		}
	})
}

// BenchmarkUsageRecordOneSeries is the worst contention: every request in
// one series.
func BenchmarkUsageRecordOneSeries(b *testing.B) {
	p := &Pool{name: "usage-bench-one"}
	k := UsageKey{"client", "cred", "model"}
	now := usageStart
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.RecordRequest(k, Tokens{Input: 10, Output: 20}, now)
		}
	})
}
