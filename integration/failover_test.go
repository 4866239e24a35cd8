package integration

// End-to-end checks of SPEC section 7 (failures, cooldowns, errors) through a
// real Caddy and the mock upstream with fault injection.
//
// Time: every test except the two that need the handler's real timer
// (wait_for_cooldown) or a real SDK installs a fake clock that starts at
// time.Now() and only moves forward, so cooldown deadlines are checked
// exactly (just before: still skipped; at the deadline: used again) without
// sleeping. Isolation: the in-process Caddy is shared by every test of the
// package and pool state survives reloads per pool name, so each test (and
// each subtest) uses its own pool name.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// failoverKeys are the mock's keys for these tests: mockKeys plus a second
// Gemini key, so Gemini requests can fail over too.
func failoverKeys() map[string]string {
	keys := make(map[string]string, len(mockKeys)+1)
	for k, v := range mockKeys {
		keys[k] = v
	}
	keys["gm-two"] = "gemini-2"
	return keys
}

func newFailoverUpstream(t *testing.T) *upstream {
	t.Helper()
	return newUpstream(t, mockllm.Options{Keys: failoverKeys()})
}

// fakeClock installs a fake clock starting now for the rest of the test.
func fakeClock(t *testing.T) *clock.Fake {
	t.Helper()
	f := clock.NewFake(time.Now())
	t.Cleanup(clock.Install(f.Now))
	return f
}

// advanceTo moves the fake clock forward to at.
func advanceTo(t *testing.T, f *clock.Fake, at time.Time) {
	t.Helper()
	d := at.Sub(f.Now())
	if d < 0 {
		t.Fatalf("fake clock would move backwards by %v", -d)
	}
	f.Advance(d)
}

// uniquePool names a pool after the running (sub)test, so no two tests share
// cooldowns or bindings.
func uniquePool(t *testing.T) string {
	var b strings.Builder
	b.WriteString("fo-")
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// cred is one inline credential of a test config.
type cred struct {
	id, provider, key, base string
	extra                   string // more lines inside the auth block
}

// proxySite renders an llm_proxy block for a site. extra goes inside the
// llm_proxy block after the credentials (routing, retry, cooldown...).
func proxySite(pool string, creds []cred, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tllm_proxy {\n\t\tpool %s\n", pool)
	for _, c := range creds {
		fmt.Fprintf(&b, "\t\tauth %s {\n\t\t\tprovider %s\n\t\t\tapi_key %s\n\t\t\tbase_url %s\n", c.id, c.provider, c.key, c.base)
		if c.extra != "" {
			fmt.Fprintf(&b, "\t\t\t%s\n", c.extra)
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString(extra)
	b.WriteString("\n\t}")
	return b.String()
}

const fillFirst = "\t\trouting {\n\t\t\tstrategy fill_first\n\t\t}\n"

// claudeCreds are credentials a, b, c on the mock (labels claude-1..3).
func claudeCreds(base string, n int) []cred {
	keys := []string{"sk-ant-one", "sk-ant-two", "sk-ant-three"}
	ids := []string{"a", "b", "c"}
	out := make([]cred, n)
	for i := range out {
		out[i] = cred{id: ids[i], provider: "claude", key: keys[i], base: base}
	}
	return out
}

// apiCall is one kind of client request, per API family.
type apiCall struct {
	name       string
	path, body string
	creds      func(base string) []cred
	labels     [2]string // mock labels of credentials a and b
}

func claudeCall(model string) apiCall {
	return apiCall{
		name:   "anthropic",
		path:   "/v1/messages",
		body:   `{"model":"` + model + `","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`,
		creds:  func(base string) []cred { return claudeCreds(base, 2) },
		labels: [2]string{"claude-1", "claude-2"},
	}
}

var (
	anthropicCall = claudeCall("claude-sonnet-4-5")
	openAICall    = apiCall{
		name: "openai",
		path: "/v1/chat/completions",
		body: `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`,
		creds: func(base string) []cred {
			return []cred{{id: "a", provider: "openai", key: "sk-oai-one", base: base}, {id: "b", provider: "openai", key: "sk-oai-two", base: base}}
		},
		labels: [2]string{"openai-1", "openai-2"},
	}
	geminiCall = apiCall{
		name: "gemini",
		path: "/v1beta/models/gemini-2.5-pro:generateContent",
		body: `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`,
		creds: func(base string) []cred {
			return []cred{{id: "a", provider: "gemini", key: "gm-one", base: base}, {id: "b", provider: "gemini", key: "gm-two", base: base}}
		},
		labels: [2]string{"gemini-1", "gemini-2"},
	}
)

// send makes the call and returns the response and its body.
func (c apiCall) send(t *testing.T) (*http.Response, []byte) {
	t.Helper()
	return call(t, http.MethodPost, c.path, nil, c.body)
}

// perCredential counts the mock's recorded requests by credential label.
func perCredential(up *upstream) map[string]int {
	n := map[string]int{}
	for _, r := range up.Requests() {
		n[r.Credential]++
	}
	return n
}

// expectServed sends c and checks that it got 200 from credential label,
// with exactly the given upstream requests per credential since the last
// Reset of the mock (which it resets afterwards).
func expectServed(t *testing.T, up *upstream, c apiCall, label string, want map[string]int) {
	t.Helper()
	resp, body := c.send(t)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 from %s: %s", resp.StatusCode, label, body)
	}
	if got := resp.Header.Get("X-Mock-Credential"); got != label {
		t.Fatalf("served by %q, want %q", got, label)
	}
	if want == nil {
		want = map[string]int{label: 1}
	}
	if got := perCredential(up); !equalCounts(got, want) {
		t.Fatalf("upstream requests per credential %v, want %v", got, want)
	}
	up.Reset()
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// TestResetHintsCoolForExactlyTheHintedTime covers every reset-hint format of
// SPEC 7: a 429 with the hint fails over to the next credential, and the
// credential is skipped until exactly the hinted deadline.
func TestResetHintsCoolForExactlyTheHintedTime(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)

	geminiBody := func(delay string) string {
		return `{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED"},` +
			`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"` + delay + `"}]}}`
	}
	cases := []struct {
		name  string
		call  apiCall
		times int // fault uses; 0 = forever (cleared before the deadline check)
		// fault returns the fault for credential a at now and the deadline
		// the hint names.
		fault func(now time.Time) (mockllm.Fault, time.Time)
	}{
		{"retry-after seconds", anthropicCall, 1, func(now time.Time) (mockllm.Fault, time.Time) {
			return mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": "90"}}, now.Add(90 * time.Second)
		}},
		{"retry-after http date", anthropicCall, 0, func(now time.Time) (mockllm.Fault, time.Time) {
			v := now.Add(2 * time.Minute).UTC().Format(http.TimeFormat)
			at, err := http.ParseTime(v)
			if err != nil {
				t.Fatal(err)
			}
			return mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": v}}, at
		}},
		{"retry-after-ms", anthropicCall, 1, func(now time.Time) (mockllm.Fault, time.Time) {
			return mockllm.Fault{Status: 429, Headers: map[string]string{"retry-after-ms": "2500"}}, now.Add(2500 * time.Millisecond)
		}},
		{"anthropic requests reset rfc3339", anthropicCall, 0, func(now time.Time) (mockllm.Fault, time.Time) {
			at := now.Add(3 * time.Minute).Truncate(time.Second)
			return mockllm.Fault{Status: 429, Headers: map[string]string{
				"anthropic-ratelimit-requests-limit":     "50",
				"anthropic-ratelimit-requests-remaining": "0",
				"anthropic-ratelimit-requests-reset":     at.UTC().Format(time.RFC3339),
				// A bucket with capacity left does not count.
				"anthropic-ratelimit-tokens-remaining": "1000",
				"anthropic-ratelimit-tokens-reset":     now.Add(time.Hour).UTC().Format(time.RFC3339),
			}}, at
		}},
		{"anthropic unified 5h reset unix", anthropicCall, 1, func(now time.Time) (mockllm.Fault, time.Time) {
			at := time.Unix(now.Add(5*time.Minute).Unix(), 0)
			return mockllm.Fault{Status: 429, Headers: map[string]string{
				"anthropic-ratelimit-unified-status":    "rejected",
				"anthropic-ratelimit-unified-5h-status": "rejected",
				"anthropic-ratelimit-unified-5h-reset":  strconv.FormatInt(at.Unix(), 10),
			}}, at
		}},
		{"openai x-ratelimit-reset-requests", openAICall, 1, func(now time.Time) (mockllm.Fault, time.Time) {
			return mockllm.Fault{Status: 429, Headers: map[string]string{
				"x-ratelimit-limit-requests":     "500",
				"x-ratelimit-remaining-requests": "0",
				"x-ratelimit-reset-requests":     "6m0s",
			}}, now.Add(6 * time.Minute)
		}},
		{"gemini retryinfo", geminiCall, 0, func(now time.Time) (mockllm.Fault, time.Time) {
			return mockllm.Fault{Status: 429, Body: geminiBody("37s")}, now.Add(37 * time.Second)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.call
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
			up.ClearFaults()
			up.Reset()
			a, b := c.labels[0], c.labels[1]

			fault, deadline := tc.fault(f.Now())
			fault.Times = tc.times
			up.SetFault(a, fault)

			// a answers 429 with the hint; the request moves to b.
			expectServed(t, up, c, b, map[string]int{a: 1, b: 1})
			if tc.times == 0 {
				// The fault would stay; a must not even be asked.
				up.ClearFaults()
			}

			// Just before the deadline a is still skipped.
			advanceTo(t, f, deadline.Add(-time.Millisecond))
			expectServed(t, up, c, b, nil)

			// At the deadline a is used again (fill_first prefers it).
			advanceTo(t, f, deadline)
			expectServed(t, up, c, a, nil)
		})
	}
}

// TestRateLimitWithoutHintBacksOff: 1s, then 2s after a second 429, and back
// to 1s after a success.
func TestRateLimitWithoutHintBacksOff(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	c := anthropicCall
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
	up.Reset()

	step := func(wantCool time.Duration) {
		t.Helper()
		start := f.Now()
		up.SetFault("claude-1", mockllm.Fault{Status: 429, Times: 1})
		expectServed(t, up, c, "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
		advanceTo(t, f, start.Add(wantCool-time.Millisecond))
		expectServed(t, up, c, "claude-2", nil)
		advanceTo(t, f, start.Add(wantCool))
	}
	step(time.Second)
	// Back after 1s, a second 429 at once: 2s.
	step(2 * time.Second)
	// Success on a resets the ladder...
	expectServed(t, up, c, "claude-1", nil)
	// ...so the next 429 cools for 1s again.
	step(time.Second)
	expectServed(t, up, c, "claude-1", nil)
}

// TestAuthFailureCoolsCredentialForAllModels: a 401 takes the credential out
// for 30m for every model.
func TestAuthFailureCoolsCredentialForAllModels(t *testing.T) {
	for _, status := range []int{401, 403} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			up := newFailoverUpstream(t)
			f := fakeClock(t)
			sonnet, opus := claudeCall("claude-sonnet-4-5"), claudeCall("claude-opus-4-1")
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), sonnet.creds(up.URL), fillFirst))
			up.Reset()
			start := f.Now()

			up.SetFault("claude-1", mockllm.Fault{Status: status})
			expectServed(t, up, sonnet, "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
			up.ClearFaults()
			// Another model skips it too.
			expectServed(t, up, opus, "claude-2", nil)

			advanceTo(t, f, start.Add(30*time.Minute-time.Millisecond))
			expectServed(t, up, opus, "claude-2", nil)
			expectServed(t, up, sonnet, "claude-2", nil)

			advanceTo(t, f, start.Add(30*time.Minute))
			expectServed(t, up, opus, "claude-1", nil)
			expectServed(t, up, sonnet, "claude-1", nil)
		})
	}
}

// TestModelNotFoundCoolsOnlyThatModel: a 404 saying the model does not exist
// cools that model on that credential for 12h; other models keep using it.
func TestModelNotFoundCoolsOnlyThatModel(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	sonnet, opus := claudeCall("claude-sonnet-4-5"), claudeCall("claude-opus-4-1")
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), sonnet.creds(up.URL), fillFirst))
	up.Reset()
	start := f.Now()
	up.SetFault("claude-1", mockllm.Fault{Status: 404, Times: 1,
		Body: `{"type":"error","error":{"type":"not_found_error","message":"model: claude-sonnet-4-5"}}`})
	expectServed(t, up, sonnet, "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
	expectServed(t, up, opus, "claude-1", nil)
	advanceTo(t, f, start.Add(12*time.Hour-time.Millisecond))
	expectServed(t, up, sonnet, "claude-2", nil)
	advanceTo(t, f, start.Add(12*time.Hour))
	expectServed(t, up, sonnet, "claude-1", nil)
}

// TestClientErrorsReturnedUnchanged: 400, 409, 413 and 422 reach the client
// once, status and body unchanged, with no failover and no cooldown.
func TestClientErrorsReturnedUnchanged(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	for _, status := range []int{400, 409, 413, 422} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			for _, c := range []apiCall{anthropicCall, openAICall} {
				loadConfig(t, t.TempDir(), proxySite(uniquePool(t)+"-"+c.name, c.creds(up.URL), fillFirst))
				up.ClearFaults()
				up.Reset()
				want := fmt.Sprintf(`{"type":"error","error":{"type":"invalid_request_error","message":"upstream says %d: messages.0.content: Field required"},"request_id":"req_x%d"}`, status, status)
				up.SetFault(c.labels[0], mockllm.Fault{Status: status, Body: want, Headers: map[string]string{"X-Upstream-Marker": "kept"}, Times: 1})

				resp, body := c.send(t)
				if resp.StatusCode != status {
					t.Fatalf("%s: status %d, want %d: %s", c.path, resp.StatusCode, status, body)
				}
				if string(body) != want {
					t.Fatalf("%s: body changed:\n got %s\nwant %s", c.path, body, want)
				}
				if resp.Header.Get("X-Upstream-Marker") != "kept" || resp.Header.Get("X-Mock-Credential") != c.labels[0] {
					t.Fatalf("%s: upstream headers not passed through: %v", c.path, resp.Header)
				}
				if got := perCredential(up); !equalCounts(got, map[string]int{c.labels[0]: 1}) {
					t.Fatalf("%s: upstream requests %v, want only one to %s", c.path, got, c.labels[0])
				}
				up.Reset()
				// Not cooled: a still takes the next request.
				expectServed(t, up, c, c.labels[0], nil)
			}
		})
	}
}

// TestAllCoolingAnswers429WithRetryAfter: when every eligible credential is
// cooling the client gets 429 in its API's shape with Retry-After = seconds
// until the soonest recovery, rounded up; with none eligible, 503.
func TestAllCoolingAnswers429WithRetryAfter(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)

	type shape func(t *testing.T, body []byte)
	cases := []struct {
		name  string
		call  apiCall
		check shape
	}{
		{"anthropic", anthropicCall, func(t *testing.T, body []byte) {
			if jsonField(t, body, "type") != "error" || jsonField(t, body, "error", "type") != "rate_limit_error" ||
				jsonField(t, body, "error", "message") == nil {
				t.Fatalf("not an Anthropic rate_limit_error: %s", body)
			}
		}},
		{"openai", openAICall, func(t *testing.T, body []byte) {
			if jsonField(t, body, "error", "type") != "rate_limit_error" || jsonField(t, body, "error", "code") != "rate_limit_exceeded" ||
				jsonField(t, body, "error", "message") == nil {
				t.Fatalf("not an OpenAI rate limit error: %s", body)
			}
		}},
		{"gemini", geminiCall, func(t *testing.T, body []byte) {
			if jsonField(t, body, "error", "code") != float64(429) || jsonField(t, body, "error", "status") != "RESOURCE_EXHAUSTED" {
				t.Fatalf("not a Gemini RESOURCE_EXHAUSTED error: %s", body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.call
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
			up.ClearFaults()
			up.Reset()
			start := f.Now()
			// a recovers in 1.5s, b in 30s; neither hint is a Retry-After.
			up.SetFault(c.labels[0], mockllm.Fault{Status: 429, Headers: map[string]string{"retry-after-ms": "1500"}, Times: 1})
			up.SetFault(c.labels[1], mockllm.Fault{Status: 429, Headers: map[string]string{"retry-after-ms": "30000"}, Times: 1})

			// Both fail: the last upstream answer (b's 429), with a
			// Retry-After for the soonest recovery added.
			resp, body := c.send(t)
			if resp.StatusCode != 429 || resp.Header.Get("X-Mock-Credential") != c.labels[1] {
				t.Fatalf("status %d from %q, want b's 429: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
			}
			if got := resp.Header.Get("Retry-After"); got != "2" {
				t.Fatalf("Retry-After %q on the last upstream 429, want 2", got)
			}
			if got := perCredential(up); !equalCounts(got, map[string]int{c.labels[0]: 1, c.labels[1]: 1}) {
				t.Fatalf("upstream requests %v", got)
			}
			up.Reset()

			// Everything cooling: our own 429, no upstream request.
			for _, tt := range []struct {
				at   time.Duration
				want string
			}{{0, "2"}, {400 * time.Millisecond, "2"}, {500 * time.Millisecond, "1"}, {1499 * time.Millisecond, "1"}} {
				advanceTo(t, f, start.Add(tt.at))
				resp, body := c.send(t)
				if resp.StatusCode != 429 {
					t.Fatalf("at +%v: status %d, want 429: %s", tt.at, resp.StatusCode, body)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.want {
					t.Fatalf("at +%v: Retry-After %q, want %q", tt.at, got, tt.want)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("content type %q", ct)
				}
				tc.check(t, body)
				if n := len(up.Requests()); n != 0 {
					t.Fatalf("at +%v: %d upstream requests while everything cools", tt.at, n)
				}
			}
			// a recovers first.
			advanceTo(t, f, start.Add(1500*time.Millisecond))
			expectServed(t, up, c, c.labels[0], nil)
		})
	}

	t.Run("last upstream 429 tells when the pool recovers", func(t *testing.T) {
		c := anthropicCall
		loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
		up.ClearFaults()
		up.Reset()
		start := f.Now()
		// a recovers in 5s; b, which answers last, asks for 10 minutes.
		up.SetFault("claude-1", mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": "5"}, Times: 1})
		up.SetFault("claude-2", mockllm.Fault{Status: 429, Times: 1,
			Headers: map[string]string{"Retry-After": "600", "retry-after-ms": "600000"}})
		resp, body := c.send(t)
		if resp.StatusCode != 429 || resp.Header.Get("X-Mock-Credential") != "claude-2" {
			t.Fatalf("status %d from %q, want b's 429: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
		}
		// SDKs read retry-after-ms before Retry-After: both must say 5s.
		if ra, ms := resp.Header.Get("Retry-After"), resp.Header.Get("Retry-After-Ms"); ra != "5" || (ms != "" && ms != "5000") {
			t.Fatalf("Retry-After %q, retry-after-ms %q; want 5s, when a recovers", ra, ms)
		}
		up.Reset()
		advanceTo(t, f, start.Add(5*time.Second))
		expectServed(t, up, c, "claude-1", nil)
	})

	t.Run("no credential serves the model", func(t *testing.T) {
		creds := claudeCreds(up.URL, 2)
		creds[0].extra = "models claude-haiku-*"
		creds[1].extra = "disabled"
		loadConfig(t, t.TempDir(), proxySite(uniquePool(t), creds, fillFirst))
		up.Reset()
		for _, tt := range []struct {
			name string
			call apiCall
		}{{"unserved model", claudeCall("claude-opus-4-1")}, {"only credential disabled", openAICall}} {
			resp, body := tt.call.send(t)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("%s: status %d, want 503: %s", tt.name, resp.StatusCode, body)
			}
			if tt.call.path == "/v1/messages" && jsonField(t, body, "type") != "error" {
				t.Fatalf("%s: not in Anthropic shape: %s", tt.name, body)
			}
			if tt.call.path != "/v1/messages" && jsonField(t, body, "error", "message") == nil {
				t.Fatalf("%s: not in OpenAI shape: %s", tt.name, body)
			}
		}
		if n := len(up.Requests()); n != 0 {
			t.Fatalf("%d upstream requests", n)
		}
		// The haiku credential still serves its own models.
		expectServed(t, up, claudeCall("claude-haiku-4-5"), "claude-1", nil)
	})
}

// TestEveryAttemptFailedReturnsLastUpstreamAnswer: all credentials fail with
// 5xx; the client gets the last one's status and body.
func TestEveryAttemptFailedReturnsLastUpstreamAnswer(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 3), fillFirst))
	up.Reset()
	up.SetFault("claude-1", mockllm.Fault{Status: 500, Body: `{"type":"error","error":{"type":"api_error","message":"first"}}`})
	up.SetFault("claude-2", mockllm.Fault{Status: 502, Body: `{"type":"error","error":{"type":"api_error","message":"second"}}`})
	last := `{"type":"error","error":{"type":"overloaded_error","message":"third and last"}}`
	up.SetFault("claude-3", mockllm.Fault{Status: 529, Body: last, Headers: map[string]string{"X-Upstream-Marker": "c"}})

	resp, body := anthropicCall.send(t)
	if resp.StatusCode != 529 || string(body) != last {
		t.Fatalf("got %d %s, want the last upstream answer 529 %s", resp.StatusCode, body, last)
	}
	if resp.Header.Get("X-Upstream-Marker") != "c" {
		t.Fatalf("last upstream headers not passed: %v", resp.Header)
	}
	if got := perCredential(up); !equalCounts(got, map[string]int{"claude-1": 1, "claude-2": 1, "claude-3": 1}) {
		t.Fatalf("upstream requests %v, want one per credential", got)
	}
}

// TestMaxAttemptsBoundsUpstreamRequests: max_attempts 2 with three failing
// credentials makes only two upstream requests.
func TestMaxAttemptsBoundsUpstreamRequests(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 3), fillFirst+"\t\tretry {\n\t\t\tmax_attempts 2\n\t\t}\n"))
	up.Reset()
	up.SetFault(mockllm.AnyKey, mockllm.Fault{Status: 500})

	resp, body := anthropicCall.send(t)
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want the last upstream 500: %s", resp.StatusCode, body)
	}
	if got := perCredential(up); !equalCounts(got, map[string]int{"claude-1": 1, "claude-2": 1}) {
		t.Fatalf("upstream requests %v, want exactly claude-1 and claude-2 once", got)
	}
}

// TestStartedStreamIsNeverRetried: a stream that broke off after its first
// events is not replayed elsewhere; the client sees a truncated stream, and
// the credential is charged a failure.
func TestStartedStreamIsNeverRetried(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2), fillFirst))
	up.Reset()
	up.SetFault("claude-1", mockllm.Fault{DropAfterEvents: 2, Times: 1})

	req, _ := http.NewRequest(http.MethodPost, siteAddr+"/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// The events sent before the drop arrive, then the stream ends
	// cleanly with an error event in Anthropic's shape, so the client (and
	// its SDK) can tell the stream is incomplete.
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		t.Errorf("truncated stream did not end cleanly: %v", rerr)
	}
	if !bytes.Contains(body, []byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\"")) {
		t.Errorf("truncated stream does not end with an error event: %s", body)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Credential") != "claude-1" {
		t.Fatalf("status %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
	}
	events := sseEvents(body)
	if len(events) < 2 || len(events) > 3 {
		t.Fatalf("got %d events, want the 1-2 sent before the drop and the error event: %s", len(events), body)
	}
	if bytes.Contains(body, []byte("message_stop")) {
		t.Fatalf("stream not truncated: %s", body)
	}
	if got := perCredential(up); !equalCounts(got, map[string]int{"claude-1": 1}) {
		t.Fatalf("upstream requests %v, want exactly one (no replay)", got)
	}
	up.Reset()

	// claude-1 was charged: cooled, so the next request goes to claude-2,
	// for the server-error time (60s).
	start := f.Now()
	expectServed(t, up, anthropicCall, "claude-2", nil)
	advanceTo(t, f, start.Add(time.Minute-time.Millisecond))
	expectServed(t, up, anthropicCall, "claude-2", nil)
	advanceTo(t, f, start.Add(time.Minute))
	expectServed(t, up, anthropicCall, "claude-1", nil)
}

// TestConnectionAndServerErrorsFailOver: refused connections and 5xx move to
// the next credential and cool the failed one for 60s.
func TestConnectionAndServerErrorsFailOver(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)

	t.Run("closed port", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL
		dead.Close()
		creds := claudeCreds(up.URL, 2)
		creds[0].base = deadURL
		loadConfig(t, t.TempDir(), proxySite(uniquePool(t), creds, fillFirst))
		up.Reset()
		expectServed(t, up, anthropicCall, "claude-2", nil)
		expectServed(t, up, anthropicCall, "claude-2", nil)
	})

	for _, tc := range []struct {
		name  string
		fault mockllm.Fault
	}{
		{"connection closed without response", mockllm.Fault{Refuse: true, Times: 1}},
		{"500", mockllm.Fault{Status: 500, Times: 1}},
		{"502", mockllm.Fault{Status: 502, Times: 1}},
		{"503", mockllm.Fault{Status: 503, Times: 1}},
		{"529 overloaded", mockllm.Fault{Status: 529, Times: 1}},
		{"408", mockllm.Fault{Status: 408, Times: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2), fillFirst))
			up.ClearFaults()
			up.Reset()
			start := f.Now()
			up.SetFault("claude-1", tc.fault)
			expectServed(t, up, anthropicCall, "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
			advanceTo(t, f, start.Add(time.Minute-time.Millisecond))
			expectServed(t, up, anthropicCall, "claude-2", nil)
			advanceTo(t, f, start.Add(time.Minute))
			expectServed(t, up, anthropicCall, "claude-1", nil)
		})
	}
}

// TestWaitForCooldown uses the real clock: the handler waits on a real
// timer. Only outcomes are asserted, never timings.
func TestWaitForCooldown(t *testing.T) {
	up := newFailoverUpstream(t)

	t.Run("within the bound", func(t *testing.T) {
		loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2),
			fillFirst+"\t\tretry {\n\t\t\twait_for_cooldown 5s\n\t\t}\n"))
		up.ClearFaults()
		up.Reset()
		// Both credentials answer 429 once with an 800ms hint: the request
		// that met both 429s waits for the soonest recovery and is served
		// then, instead of answering 429.
		hint := mockllm.Fault{Status: 429, Headers: map[string]string{"retry-after-ms": "800"}, Times: 1}
		up.SetFault("claude-1", hint)
		up.SetFault("claude-2", hint)
		resp, body := anthropicCall.send(t)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200 after waiting for the cooldown: %s", resp.StatusCode, body)
		}
		if got := len(up.Requests()); got != 3 {
			t.Fatalf("%d upstream requests, want 3 (two 429s, then the retry after the wait)", got)
		}
	})

	t.Run("beyond the bound", func(t *testing.T) {
		loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2),
			fillFirst+"\t\tretry {\n\t\t\twait_for_cooldown 2s\n\t\t}\n"))
		up.ClearFaults()
		up.Reset()
		up.SetFault(mockllm.AnyKey, mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": "600"}, Times: 2})
		if resp, body := anthropicCall.send(t); resp.StatusCode != 429 {
			t.Fatalf("first request: %d %s", resp.StatusCode, body)
		}
		up.Reset()
		// Recovery is ~10 minutes away: no waiting, 429 at once.
		resp, body := anthropicCall.send(t)
		if resp.StatusCode != 429 || jsonField(t, body, "error", "type") != "rate_limit_error" {
			t.Fatalf("status %d, want our 429: %s", resp.StatusCode, body)
		}
		if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 590 || ra > 600 {
			t.Fatalf("Retry-After %q, want about 600", resp.Header.Get("Retry-After"))
		}
		if n := len(up.Requests()); n != 0 {
			t.Fatalf("%d upstream requests", n)
		}
	})
}

// TestCooldownsSurviveReload: a cooled credential stays cooled across a
// config reload that keeps the pool name.
func TestCooldownsSurviveReload(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	dir := t.TempDir()
	pool := uniquePool(t)
	site := proxySite(pool, claudeCreds(up.URL, 2), fillFirst)
	loadConfig(t, dir, site)
	up.Reset()
	start := f.Now()
	up.SetFault("claude-1", mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": "600"}, Times: 1})
	expectServed(t, up, anthropicCall, "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})

	// The same llm_proxy config with another route beside it, so Caddy does
	// not skip the load as unchanged.
	loadConfig(t, dir, "\trespond /reloaded 204\n"+site)
	if resp, _ := call(t, http.MethodGet, "/reloaded", nil, ""); resp.StatusCode != 204 {
		t.Fatalf("reload did not take effect: %d", resp.StatusCode)
	}
	expectServed(t, up, anthropicCall, "claude-2", nil)
	advanceTo(t, f, start.Add(10*time.Minute-time.Millisecond))
	expectServed(t, up, anthropicCall, "claude-2", nil)
	advanceTo(t, f, start.Add(10*time.Minute))
	expectServed(t, up, anthropicCall, "claude-1", nil)
}

// sdkResult is what sdkcheck/anthropic-retry.mjs prints.
type sdkResult struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Text      string `json:"text"`
	Responses []struct {
		Status     int    `json:"status"`
		RetryAfter string `json:"retry_after"`
		ShouldRet  string `json:"x_should_retry"`
		ErrorType  string `json:"error_type"`
		Credential string `json:"credential"`
	} `json:"responses"`
}

// TestAnthropicSDKHonoursRetryAfter runs the official Anthropic TypeScript
// SDK (sdkcheck/) against the proxy while every credential cools for about a
// second: the SDK must wait for our 429's Retry-After and then succeed. It
// needs node and sdkcheck/install.sh; without them it skips, unless
// E2E_REQUIRE_CLIS=1. Real clock: the SDK sleeps for real.
func TestAnthropicSDKHonoursRetryAfter(t *testing.T) {
	required := os.Getenv("E2E_REQUIRE_CLIS") == "1"
	missing := func(format string, args ...any) {
		t.Helper()
		if required {
			t.Fatalf(format+" (E2E_REQUIRE_CLIS=1)", args...)
		}
		t.Skipf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found: %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "sdkcheck"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@anthropic-ai", "sdk", "package.json")); err != nil {
		missing("@anthropic-ai/sdk not installed; run sdkcheck/install.sh: %v", err)
	}

	up := newFailoverUpstream(t)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2), fillFirst))
	up.ClearFaults()
	up.Reset()
	// Each credential answers one 429 with Retry-After: 1. The script's
	// priming call (no retries) uses both up and gets a 429; its real call,
	// made at once, finds every credential cooling and gets our own 429
	// with Retry-After: 1, which the SDK must honour before retrying.
	hint := mockllm.Fault{Status: 429, Headers: map[string]string{"Retry-After": "1"}, Times: 1}
	up.SetFault("claude-1", hint)
	up.SetFault("claude-2", hint)

	cmd := exec.Command(node, filepath.Join(dir, "anthropic-retry.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LLM_PROXY_BASE_URL="+siteAddr, "SDKCHECK_PRIME=1", "SDKCHECK_MAX_RETRIES=2")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sdk script: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var res sdkResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	var lastLine string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lastLine = l
		}
	}
	if err := json.Unmarshal([]byte(lastLine), &res); err != nil {
		t.Fatalf("sdk script output %q: %v\nstderr: %s", out, err, stderr.String())
	}
	if !res.OK {
		t.Fatalf("SDK call failed: %s (responses %+v)", res.Error, res.Responses)
	}
	if res.Text == "" {
		t.Fatalf("SDK call returned no text: %+v", res)
	}
	rs := res.Responses
	if len(rs) != 2 {
		t.Fatalf("SDK saw %d responses, want our 429 then 200: %+v", len(rs), rs)
	}
	if rs[0].Status != 429 || rs[0].RetryAfter != "1" || rs[0].ErrorType != "rate_limit_error" || rs[0].Credential != "" {
		t.Fatalf("first SDK response %+v, want the proxy's own 429 with Retry-After 1", rs[0])
	}
	if rs[1].Status != 200 || rs[1].Credential != "claude-1" {
		t.Fatalf("retried SDK response %+v, want 200 from claude-1", rs[1])
	}
	// The mock saw the priming attempts (one 429 each) and then the retry,
	// served once the cooldown was over.
	reqs := up.Requests()
	if len(reqs) != 3 || !reqs[0].Fault || !reqs[1].Fault || reqs[2].Fault || reqs[2].Credential != "claude-1" {
		var seen []string
		for _, r := range reqs {
			seen = append(seen, fmt.Sprintf("%s(fault=%v)", r.Credential, r.Fault))
		}
		t.Fatalf("upstream requests %v, want claude-1 and claude-2 faulted, then a clean retry on claude-1", seen)
	}
}
