package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// labelledKeys admits the keys it maps to labels; those in limited may use
// only the models listed.
type labelledKeys struct {
	labels  map[string]string
	limited map[string][]string
}

func (k labelledKeys) Authenticate(key string) (string, error) {
	c, err := k.AuthenticateClient(key)
	return c.Label, err
}

func (k labelledKeys) AuthenticateClient(key string) (access.Client, error) {
	label, ok := k.labels[key]
	if !ok {
		return access.Client{}, access.ErrBadKey
	}
	return access.Client{Label: label, Models: k.limited[key]}, nil
}

// ledger returns the pool's usage series by key.
func ledger(p *Proxy) map[pool.UsageKey]pool.UsageCounts {
	out := map[pool.UsageKey]pool.UsageCounts{}
	for _, s := range p.Pool.UsageTotals() {
		out[s.UsageKey] = s.UsageCounts
	}
	return out
}

// TestUsageLedgerPerClientCredentialModel: a request is counted once, under
// its client's label, the credential that answered and the model the
// client named, with the tokens of the answer; the credential that failed
// over before it counts the failover.
func TestUsageLedgerPerClientCredentialModel(t *testing.T) {
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(start)
	defer clock.Install(fake.Now)()
	up := &scriptedUpstream{t: t, scripts: map[string][]answer{
		"a": {{status: 429, body: `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`}, {status: 500, body: "{}"}},
		"b": {{status: 200, body: claudeOK}, {status: 503, body: "{}"}},
	}}
	p := loopProxy(t, loopCase{}, up, fake)
	p.Access = []access.AccessProvider{labelledKeys{
		labels:  map[string]string{"alice-key": "alice", "intern-key": "intern"},
		limited: map[string][]string{"intern-key": {"claude-haiku-*"}},
	}}
	send := func(key, body string, want int) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(body))
		r.Header.Set("X-Api-Key", key)
		w := httptest.NewRecorder()
		if err := p.ServeHTTP(w, r); err != nil || w.Code != want {
			t.Fatalf("status %d (%v), want %d: %s", w.Code, err, want, w.Body)
		}
	}
	send("alice-key", claudeBody, 200) // a: 429, b: answers
	// Refused for its model before any upstream call: not counted.
	send("intern-key", claudeBody, 403)
	fake.Advance(time.Minute)
	// Every attempt fails: counted under the credential tried last.
	send("alice-key", strings.Replace(claudeBody, "claude-x", "claude-y", 1), 503)

	got := ledger(p)
	want := map[pool.UsageKey]pool.UsageCounts{
		{Client: "alice", Auth: "a", Model: "claude-x"}: {Failovers: 1},
		{Client: "alice", Auth: "b", Model: "claude-x"}: {Requests: 1, Tokens: pool.Tokens{Input: 3, Output: 2, CacheRead: 40}},
		{Client: "alice", Auth: "a", Model: "claude-y"}: {Failovers: 1},
		{Client: "alice", Auth: "b", Model: "claude-y"}: {Requests: 1, Failovers: 1},
	}
	if len(got) != len(want) {
		t.Errorf("ledger %+v, want %+v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%+v: %+v, want %+v", k, got[k], w)
		}
	}
	rep := p.Pool.Usage(fake.Now().Add(-time.Hour))
	if rep.Totals.Requests != 2 || rep.Totals.Failovers != 3 || rep.Totals.OutputTokens != 2 || len(rep.Clients) != 1 {
		t.Errorf("report %+v", rep)
	}
}

// TestUsageLedgerWithoutAccess: without access providers every request is
// the unlabelled client's.
func TestUsageLedgerWithoutAccess(t *testing.T) {
	fake := clock.NewFake(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	up := &scriptedUpstream{t: t, scripts: map[string][]answer{"a": {{status: 200, body: claudeOK}}}}
	p := loopProxy(t, loopCase{}, up, fake)
	r := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(claudeBody))
	if err := p.ServeHTTP(httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	if got := ledger(p)[pool.UsageKey{Client: "", Auth: "a", Model: "claude-x"}]; got.Requests != 1 || got.Output != 2 {
		t.Errorf("ledger %+v", ledger(p))
	}
}

// TestUsageNotCountedForStoredResponses: reading a stored response back
// repeats the usage of the run that created it; only the run's counts.
func TestUsageNotCountedForStoredResponses(t *testing.T) {
	fake := clock.NewFake(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	stored := `{"id":"resp_1","object":"response","status":"completed","model":"gpt-5",` +
		`"usage":{"input_tokens":300,"input_tokens_details":{"cached_tokens":200},"output_tokens":7}}`
	up := &scriptedUpstream{t: t, scripts: map[string][]answer{"a": {{status: 200, body: stored}, {status: 200, body: stored}}}}
	p := loopProxy(t, loopCase{provider: "openai", creds: []string{"a"}}, up, fake)
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodPost, "/v1/responses", strings.NewReader(`{"model":"gpt-5","input":"hi"}`)),
		httptest.NewRequest(http.MethodGet, "/v1/responses/resp_1", nil),
	} {
		w := httptest.NewRecorder()
		if err := p.ServeHTTP(w, r); err != nil || w.Code != 200 {
			t.Fatalf("%s %s: %d %v", r.Method, r.URL, w.Code, err)
		}
	}
	got := ledger(p)
	if run := got[pool.UsageKey{Auth: "a", Model: "gpt-5"}]; run != (pool.UsageCounts{Requests: 1, Tokens: pool.Tokens{Input: 100, Output: 7, CacheRead: 200}}) {
		t.Errorf("the run: %+v", run)
	}
	if read := got[pool.UsageKey{Auth: "a"}]; read != (pool.UsageCounts{Requests: 1}) {
		t.Errorf("the read: %+v", read)
	}
	if obs := p.Observer.(*recordingObserver); len(obs.usage) != 1 {
		t.Errorf("observer got usage %d times", len(obs.usage))
	}
}
