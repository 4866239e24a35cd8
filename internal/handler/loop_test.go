package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

// answer is one scripted upstream answer to one attempt.
type answer struct {
	status int
	header http.Header
	body   string
	// err is a transport error (no response); connected says a
	// connection had been made before it.
	err       error
	connected bool
	// broken: the body breaks off after body was sent.
	broken bool
	// cancel: the client goes away while the attempt is under way.
	cancel bool
}

// scriptedUpstream is a RoundTripper that answers each credential from its
// own script, in order, and notes which credential each attempt used.
type scriptedUpstream struct {
	t       *testing.T
	mu      sync.Mutex
	scripts map[string][]answer
	tried   []string
	cancel  context.CancelFunc // the current client request's
}

// credentialOf names the credential an upstream request carries: each
// credential's key is "key-" and its ID.
func credentialOf(h http.Header) string {
	for _, v := range []string{h.Get("X-Api-Key"), h.Get("X-Goog-Api-Key"), strings.TrimPrefix(h.Get("Authorization"), "Bearer ")} {
		if id, ok := strings.CutPrefix(v, "key-"); ok {
			return id
		}
	}
	return "?"
}

func (u *scriptedUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	id := credentialOf(req.Header)
	u.mu.Lock()
	u.tried = append(u.tried, id)
	script := u.scripts[id]
	cancel := u.cancel
	if len(script) == 0 {
		u.mu.Unlock()
		u.t.Errorf("unexpected attempt with credential %s", id)
		return nil, errors.New("no scripted answer")
	}
	a := script[0]
	u.scripts[id] = script[1:]
	u.mu.Unlock()
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	if a.cancel {
		cancel()
		return nil, req.Context().Err()
	}
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && (a.err == nil || a.connected) {
		trace.GotConn(httptrace.GotConnInfo{})
	}
	if a.err != nil {
		return nil, a.err
	}
	h := a.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	resp := &http.Response{StatusCode: a.status, Header: h, Request: req, ContentLength: int64(len(a.body)),
		Body: io.NopCloser(strings.NewReader(a.body))}
	if a.broken {
		resp.ContentLength = -1
		resp.Body = io.NopCloser(io.MultiReader(strings.NewReader(a.body), iotestErr{io.ErrUnexpectedEOF}))
	}
	return resp, nil
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// recordingObserver keeps what the loop reports.
type recordingObserver struct {
	mu       sync.Mutex
	outcomes []string // Attempt reasons
	requests []requestCall
	usage    []Usage
}

type requestCall struct {
	authID   string
	status   int
	attempts int
	decision selector.Decision
}

func (o *recordingObserver) Attempt(_, _ string, _ int, _ time.Duration, v failure.Verdict) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes = append(o.outcomes, v.Reason)
}

func (o *recordingObserver) Request(_, authID string, status, attempts int, d selector.Decision) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, requestCall{authID, status, attempts, d})
}

func (o *recordingObserver) Usage(_, _ string, u Usage) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.usage = append(o.usage, u)
}

// cool is an expected cooldown: its key ("*" for every model, a model, or
// a model on one endpoint) and how long after the case's start it ends.
type cool struct {
	key   string
	until time.Duration
}

// step is one client request of a case and what must come of it.
type step struct {
	advance            time.Duration // the fake clock moves this much first
	method, path, body string
	header             http.Header

	status     int               // as the loop reports it (499: the client left)
	tried      []string          // credentials in the order tried
	outcomes   []string          // failure.Reason of each attempt; nil: not checked
	decision   selector.Decision // "": not checked
	retryAfter string            // "": not checked
	bodyHas    string            // a substring of the client body; "": not checked
	bodyIs     *string           // the exact client body; nil: not checked
	aborted    bool              // the client connection is aborted
	cooled     map[string][]cool // every credential's cooldowns afterwards (none when absent)
	waited     []time.Duration   // the waits of wait_for_cooldown
	check      func(t *testing.T, p *Proxy)
}

// loopCase is one row of the attempt-loop table: credentials "a", "b"
// (and "c" when listed), tried in that order (fill first), their scripts
// and the requests sent.
type loopCase struct {
	name        string
	provider    string // default claude
	creds       []string
	affinity    bool
	maxAttempts int
	wait        time.Duration // wait_for_cooldown
	scripts     map[string][]answer
	steps       []step
	// oauth: the credentials send OAuth access tokens ("key-<id>") with
	// refresh tokens; refreshes scripts the outcome of each refresh of a
	// credential after a 401 (nil: it gets the token "key-<id>+"). Every
	// case runs with refresh-on-401 on; a refresh not scripted fails.
	oauth     bool
	refreshes map[string][]error
}

const (
	claudeBody = `{"model":"claude-x","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	claudeOK   = `{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":40}}`
)

func ptr[T any](v T) *T { return &v }

func retryAfter(s string) http.Header { return http.Header{"Retry-After": {s}} }

func TestAttemptLoop(t *testing.T) {
	const minute, hour = time.Minute, time.Hour
	ok := answer{status: 200, body: claudeOK}
	badRequest := `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}`
	cases := []loopCase{
		{
			name:    "success first try",
			scripts: map[string][]answer{"a": {ok}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a"}, outcomes: []string{"success"}, decision: selector.DecisionNone, bodyIs: ptr(claudeOK),
				check: func(t *testing.T, p *Proxy) {
					obs := p.Observer.(*recordingObserver)
					if want := (Usage{Input: 3, Output: 2, CacheRead: 40}); len(obs.usage) != 1 || obs.usage[0] != want {
						t.Fatalf("usage recorded %+v, want [%+v]", obs.usage, want)
					}
				}}},
		},
		{
			name:    "429 with a reset hint, then success on the next",
			scripts: map[string][]answer{"a": {{status: 429, header: retryAfter("20"), body: `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`}}, "b": {ok}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b"}, outcomes: []string{"rate_limited", "success"}, bodyIs: ptr(claudeOK),
				cooled: map[string][]cool{"a": {{"claude-x", 20 * time.Second}}}}},
		},
		{
			name: "429s without a hint climb the ladder per model",
			scripts: map[string][]answer{
				"a": {{status: 429, body: "{}"}, {status: 429, body: "{}"}},
				"b": {ok, ok},
			},
			steps: []step{
				{method: "POST", path: "/v1/messages", body: claudeBody,
					status: 200, tried: []string{"a", "b"}, cooled: map[string][]cool{"a": {{"claude-x", time.Second}}}},
				{advance: time.Second, method: "POST", path: "/v1/messages", body: claudeBody,
					status: 200, tried: []string{"a", "b"}, cooled: map[string][]cool{"a": {{"claude-x", 3 * time.Second}}}},
			},
		},
		{
			name: "all cooling: the last 429 with the pool's soonest Retry-After, then 429 without an attempt",
			scripts: map[string][]answer{
				"a": {{status: 429, header: retryAfter("5"), body: `{"a":1}`}, ok},
				"b": {{status: 429, header: http.Header{"Retry-After": {"20"}, "Retry-After-Ms": {"20000"}}, body: `{"b":1}`}},
			},
			steps: []step{
				{method: "POST", path: "/v1/messages", body: claudeBody,
					status: 429, tried: []string{"a", "b"}, retryAfter: "5", bodyIs: ptr(`{"b":1}`),
					cooled: map[string][]cool{"a": {{"claude-x", 5 * time.Second}}, "b": {{"claude-x", 20 * time.Second}}}},
				{advance: 2 * time.Second, method: "POST", path: "/v1/messages", body: claudeBody,
					status: 429, tried: nil, retryAfter: "3", bodyHas: "cooling down",
					cooled: map[string][]cool{"a": {{"claude-x", 5 * time.Second}}, "b": {{"claude-x", 20 * time.Second}}}},
				// Another model is not cooling.
				{method: "POST", path: "/v1/messages", body: strings.Replace(claudeBody, "claude-x", "claude-y", 1),
					status: 200, tried: []string{"a"},
					cooled: map[string][]cool{"a": {{"claude-x", 5 * time.Second}}, "b": {{"claude-x", 20 * time.Second}}}},
			},
		},
		{
			name: "401 cools the credential for every model",
			scripts: map[string][]answer{
				"a": {{status: 401, body: `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`}},
				"b": {ok, ok},
			},
			steps: []step{
				{method: "POST", path: "/v1/messages", body: claudeBody,
					status: 200, tried: []string{"a", "b"}, outcomes: []string{"auth_failed", "success"},
					cooled: map[string][]cool{"a": {{"*", 30 * minute}}}},
				{advance: minute, method: "POST", path: "/v1/messages", body: strings.Replace(claudeBody, "claude-x", "claude-y", 1),
					status: 200, tried: []string{"b"}, cooled: map[string][]cool{"a": {{"*", 30 * minute}}}},
			},
		},
		{
			name: "404 model not found on a generation route cools the model",
			scripts: map[string][]answer{
				"a": {{status: 404, body: `{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}`}},
				"b": {ok},
			},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b"}, outcomes: []string{"model_not_found", "success"},
				cooled: map[string][]cool{"a": {{"claude-x", 12 * hour}}}}},
		},
		{
			name:     "Gemini 404 that may mean a method the model lacks cools the model on that endpoint",
			provider: "gemini",
			scripts: map[string][]answer{
				"a": {{status: 404, body: `{"error":{"code":404,"message":"models/gemini-2.5-pro is not found for API version v1beta, or is not supported for embedContent.","status":"NOT_FOUND"}}`}},
				"b": {{status: 200, body: `{"embedding":{"values":[0.1]}}`}},
			},
			steps: []step{{method: "POST", path: "/v1beta/models/gemini-2.5-pro:embedContent", body: `{"content":{"parts":[{"text":"hi"}]}}`,
				status: 200, tried: []string{"a", "b"},
				cooled: map[string][]cool{"a": {{"gemini-2.5-pro@/v1beta/models/gemini-2.5-pro:embedContent", 12 * hour}}}}},
		},
		{
			name:     "404 naming the model on a route that runs no model is returned untouched",
			provider: "openai",
			scripts: map[string][]answer{
				"a": {{status: 404, body: `{"error":{"message":"The model ` + "`gpt-9`" + ` does not exist","type":"invalid_request_error","code":"model_not_found"}}`}},
			},
			steps: []step{{method: "POST", path: "/v1/responses/resp_1/cancel", body: `{"model":"gpt-9"}`,
				status: 404, tried: []string{"a"}, outcomes: []string{"client_error"}, bodyHas: "model_not_found"}},
		},
		{
			name:    "400 is returned untouched and cools nothing",
			scripts: map[string][]answer{"a": {{status: 400, body: badRequest}}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 400, tried: []string{"a"}, outcomes: []string{"client_error"}, bodyIs: ptr(badRequest)}},
		},
		{
			name:     "a request without a model fails over without cooling (ScopeNone)",
			provider: "openai",
			scripts: map[string][]answer{
				"a": {{status: 429, header: retryAfter("60"), body: "{}"}, {status: 503, body: "{}"}},
				"b": {{status: 200, body: `{"data":[]}`}, {status: 200, body: `{"data":[]}`}},
			},
			steps: []step{
				{method: "GET", path: "/v1/models", status: 200, tried: []string{"a", "b"}, outcomes: []string{"rate_limited", "success"},
					check: func(t *testing.T, p *Proxy) {
						c, _ := p.Pool.Get("a")
						if _, failures := c.Counts(); failures != 1 {
							t.Fatalf("failures of a = %d, want 1", failures)
						}
					}},
				// a is tried again at once: it was not cooled.
				{method: "GET", path: "/v1/models", status: 200, tried: []string{"a", "b"}, outcomes: []string{"server_error", "success"}},
			},
		},
		{
			name:    "the client leaves: stop, nothing cooled, nothing more tried",
			scripts: map[string][]answer{"a": {{cancel: true}}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 499, tried: []string{"a"}, outcomes: []string{"client_canceled"}}},
		},
		{
			name:        "max_attempts bounds the attempts; the last failure is returned",
			creds:       []string{"a", "b", "c"},
			maxAttempts: 2,
			scripts: map[string][]answer{
				"a": {{status: 500, body: `{"a":500}`}},
				"b": {{status: 529, body: `{"b":529}`}},
			},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 529, tried: []string{"a", "b"}, bodyIs: ptr(`{"b":529}`),
				cooled: map[string][]cool{"a": {{"claude-x", minute}}, "b": {{"claude-x", minute}}}}},
		},
		{
			name: "wait_for_cooldown waits for the soonest recovery, then retries",
			wait: 15 * time.Second,
			scripts: map[string][]answer{
				"a": {{status: 429, header: retryAfter("10"), body: "{}"}, ok},
				"b": {{status: 429, header: retryAfter("20"), body: "{}"}},
			},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b", "a"}, waited: []time.Duration{10 * time.Second},
				cooled: map[string][]cool{"b": {{"claude-x", 20 * time.Second}}}}},
		},
		{
			name: "wait_for_cooldown does not wait past its bound",
			wait: 5 * time.Second,
			scripts: map[string][]answer{
				"a": {{status: 429, header: retryAfter("10"), body: "{}"}},
				"b": {{status: 429, header: retryAfter("20"), body: "{}"}},
			},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 429, tried: []string{"a", "b"}, retryAfter: "10",
				cooled: map[string][]cool{"a": {{"claude-x", 10 * time.Second}}, "b": {{"claude-x", 20 * time.Second}}}}},
		},
		{
			name: "an event stream that breaks after its first output ends with an error event; no other credential is tried",
			scripts: map[string][]answer{"a": {{status: 200, header: http.Header{"Content-Type": {"text/event-stream"}}, broken: true,
				body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
					"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"}}},
			steps: []step{{method: "POST", path: "/v1/messages", body: strings.Replace(claudeBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1),
				status: 200, tried: []string{"a"}, bodyHas: "event: error",
				cooled: map[string][]cool{"a": {{"claude-x", minute}}}}},
		},
		{
			name:    "a JSON body that breaks off aborts the client connection",
			scripts: map[string][]answer{"a": {{status: 200, broken: true, body: `{"id":"msg_1","content":[`}}},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a"}, aborted: true,
				cooled: map[string][]cool{"a": {{"claude-x", minute}}}}},
		},
		{
			name: "a refused connection cools the credential for every model",
			scripts: map[string][]answer{
				"a": {{err: errors.New("dial tcp: connection refused")}},
				"b": {ok},
			},
			steps: []step{{method: "POST", path: "/v1/messages", body: claudeBody,
				status: 200, tried: []string{"a", "b"}, outcomes: []string{"connection_error", "success"},
				cooled: map[string][]cool{"a": {{"*", minute}}}}},
		},
		{
			name:     "a stored response is pinned to its credential, without affinity and apart from the sessions",
			provider: "openai",
			scripts: map[string][]answer{
				"a": {{status: 500, body: "{}"}},
				"b": {
					{status: 200, body: `{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":5,"output_tokens":1}}`},
					{status: 200, body: `{"id":"resp_2","object":"response"}`},
					{status: 200, body: `{"id":"resp_1","object":"response"}`},
				},
			},
			steps: []step{
				{method: "POST", path: "/v1/responses", body: `{"model":"gpt-5","input":"hi"}`,
					status: 200, tried: []string{"a", "b"}, cooled: map[string][]cool{"a": {{"gpt-5", minute}}}},
				// a has recovered and comes first; the follow-up still
				// goes to the credential that holds the response.
				{advance: 2 * minute, method: "POST", path: "/v1/responses", body: `{"model":"gpt-5","previous_response_id":"resp_1","input":"more"}`,
					status: 200, tried: []string{"b"}, decision: selector.DecisionPin, cooled: map[string][]cool{"a": {{"gpt-5", minute}}}},
				{method: "GET", path: "/v1/responses/resp_1",
					status: 200, tried: []string{"b"}, decision: selector.DecisionPin, cooled: map[string][]cool{"a": {{"gpt-5", minute}}},
					check: func(t *testing.T, p *Proxy) {
						if n := p.Pool.Sessions.Len(); n != 0 {
							t.Fatalf("pins counted as %d sessions", n)
						}
					}},
			},
		},
		{
			name:     "a session is bound to the credential that served it and stays there",
			affinity: true,
			scripts: map[string][]answer{
				"a": {{status: 429, header: retryAfter("30"), body: "{}"}},
				"b": {ok, ok},
			},
			steps: []step{
				{method: "POST", path: "/v1/messages", body: claudeBody, header: http.Header{"X-Session-Id": {"sess-1"}},
					status: 200, tried: []string{"a", "b"}, decision: selector.DecisionRebind,
					cooled: map[string][]cool{"a": {{"claude-x", 30 * time.Second}}},
					check: func(t *testing.T, p *Proxy) {
						if got := p.Pool.Sessions.CountByAuth(); len(got) != 1 || got["b"] != 1 {
							t.Fatalf("bindings %v, want the session on b only", got)
						}
					}},
				// a has recovered and comes first for new sessions; this
				// one keeps b.
				{advance: minute, method: "POST", path: "/v1/messages", body: claudeBody, header: http.Header{"X-Session-Id": {"sess-1"}},
					status: 200, tried: []string{"b"}, decision: selector.DecisionHit, cooled: map[string][]cool{"a": {{"claude-x", 30 * time.Second}}}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runLoopCase(t, tc) })
	}
}

func runLoopCase(t *testing.T, tc loopCase) {
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(start)
	up := &scriptedUpstream{t: t, scripts: tc.scripts}
	p := loopProxy(t, tc, up, fake)
	var waited []time.Duration
	p.wait = func(_ context.Context, d time.Duration) bool {
		waited = append(waited, d)
		fake.Advance(d)
		return true
	}
	for i, st := range tc.steps {
		fake.Advance(st.advance)
		up.tried, waited = nil, nil
		obs := p.Observer.(*recordingObserver)
		obs.outcomes = nil
		w, aborted := serveStep(t, p, up, st)
		where := fmt.Sprintf("step %d (%s %s)", i+1, st.method, st.path)

		if len(obs.requests) != i+1 {
			t.Fatalf("%s: %d requests observed", where, len(obs.requests))
		}
		got := obs.requests[i]
		if got.status != st.status || (st.status != 499 && !aborted && w.Code != st.status) {
			t.Fatalf("%s: status %d (client saw %d), want %d: %s", where, got.status, w.Code, st.status, w.Body)
		}
		if aborted != st.aborted {
			t.Fatalf("%s: aborted %v, want %v", where, aborted, st.aborted)
		}
		if !slices.Equal(up.tried, st.tried) || got.attempts != len(st.tried) {
			t.Fatalf("%s: tried %v (%d attempts), want %v", where, up.tried, got.attempts, st.tried)
		}
		if st.outcomes != nil && !slices.Equal(obs.outcomes, st.outcomes) {
			t.Fatalf("%s: outcomes %v, want %v", where, obs.outcomes, st.outcomes)
		}
		if st.decision != "" && got.decision != st.decision {
			t.Fatalf("%s: decision %q, want %q", where, got.decision, st.decision)
		}
		if st.retryAfter != "" {
			if ra := w.Header().Get("Retry-After"); ra != st.retryAfter || w.Header().Get("Retry-After-Ms") != "" {
				t.Fatalf("%s: Retry-After %q (ms %q), want %q", where, ra, w.Header().Get("Retry-After-Ms"), st.retryAfter)
			}
		}
		if st.bodyIs != nil && w.Body.String() != *st.bodyIs {
			t.Fatalf("%s: body %q, want %q", where, w.Body, *st.bodyIs)
		}
		if !strings.Contains(w.Body.String(), st.bodyHas) {
			t.Fatalf("%s: body %q lacks %q", where, w.Body, st.bodyHas)
		}
		if !slices.Equal(waited, st.waited) {
			t.Fatalf("%s: waited %v, want %v", where, waited, st.waited)
		}
		checkCooldowns(t, where, p, start, st.cooled)
		if st.check != nil {
			st.check(t, p)
		}
	}
	for id, rest := range up.scripts {
		if len(rest) > 0 {
			t.Fatalf("credential %s has %d answers left", id, len(rest))
		}
	}
	for id, rest := range tc.refreshes {
		if len(rest) > 0 {
			t.Fatalf("credential %s has %d refreshes left", id, len(rest))
		}
	}
}

// loopProxy builds the Proxy of a case over a real pool and selector.
func loopProxy(t *testing.T, tc loopCase, up http.RoundTripper, fake *clock.Fake) *Proxy {
	t.Helper()
	name := "loop-" + t.Name()
	pl := pool.Acquire(name)
	t.Cleanup(func() { pool.Release(name) })
	ids := tc.creds
	if ids == nil {
		ids = []string{"a", "b"}
	}
	provider := tc.provider
	if provider == "" {
		provider = "claude"
	}
	var auths []*auth.Auth
	for _, id := range ids {
		a := &auth.Auth{ID: id}
		a.Provider, a.APIKey, a.BaseURL = provider, "key-"+id, "http://upstream.test"
		if tc.oauth {
			a.APIKey, a.AccessToken, a.RefreshToken = "", "key-"+id, "rt-"+id
		}
		auths = append(auths, a)
	}
	pl.SetMembers(auths, nil)
	p := &Proxy{
		Pool:            pl,
		Strategy:        selector.FillFirst{},
		MaxAttempts:     tc.maxAttempts,
		WaitForCooldown: tc.wait,
		MaxBody:         1 << 20,
		Transports:      oneTransport{up},
		Logger:          zap.NewNop(),
		Observer:        &recordingObserver{},
		Refresher:       &scriptedRefresher{t: t, pool: pl, results: tc.refreshes, up: up},
		Now:             fake.Now,
	}
	if tc.affinity {
		p.Affinity = &selector.Affinity{Strategy: p.Strategy, Bindings: pl.Sessions}
	}
	return p
}

// serveStep sends one request; aborted reports that the handler aborted
// the client connection (http.ErrAbortHandler).
func serveStep(t *testing.T, p *Proxy, up *scriptedUpstream, st step) (w *httptest.ResponseRecorder, aborted bool) {
	t.Helper()
	var body io.Reader
	if st.body != "" {
		body = strings.NewReader(st.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up.cancel = cancel
	r := httptest.NewRequest(st.method, st.path, body).WithContext(ctx)
	for k, v := range st.header {
		r.Header[k] = v
	}
	w = httptest.NewRecorder()
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			aborted = true
		}
	}()
	if err := p.ServeHTTP(w, r); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w, false
}

// checkCooldowns compares every credential's cooldowns at the fake clock's
// now with want (keys and deadlines from start).
func checkCooldowns(t *testing.T, where string, p *Proxy, start time.Time, want map[string][]cool) {
	t.Helper()
	now := p.Now()
	for _, c := range p.Pool.Credentials() {
		var got []string
		for _, cd := range c.Cooldowns(now) {
			got = append(got, cd.Model+"+"+cd.Until.Sub(start).String())
		}
		var exp []string
		for _, cd := range want[c.ID()] {
			if start.Add(cd.until).After(now) {
				exp = append(exp, cd.key+"+"+cd.until.String())
			}
		}
		sort.Strings(got)
		sort.Strings(exp)
		if !slices.Equal(got, exp) {
			t.Fatalf("%s: cooldowns of %s = %v, want %v", where, c.ID(), got, exp)
		}
	}
	for id := range want {
		if _, ok := p.Pool.Get(id); !ok {
			t.Fatalf("%s: no credential %s", where, id)
		}
	}
}
