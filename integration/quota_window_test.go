package integration

// End-to-end checks of SPEC section 13's subscription windows and in-stream
// rejections through a real Caddy and the mock upstream, with the fake
// clock of failover_test.go.

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// unifiedRejection is a Claude 429 whose headers say the window named
// rejected (5h, 7d_sonnet...) refused the credential until reset; the
// other windows are allowed.
func unifiedRejection(window string, reset time.Time) mockllm.Fault {
	h := map[string]string{
		"anthropic-ratelimit-unified-status":    "rejected",
		"anthropic-ratelimit-unified-reset":     strconv.FormatInt(reset.Unix(), 10),
		"anthropic-ratelimit-unified-5h-status": "allowed",
		"anthropic-ratelimit-unified-7d-status": "allowed",
	}
	h["anthropic-ratelimit-unified-"+window+"-status"] = "rejected"
	h["anthropic-ratelimit-unified-"+window+"-reset"] = strconv.FormatInt(reset.Unix(), 10)
	return mockllm.Fault{Status: 429, Headers: h, Times: 1}
}

// TestUnifiedWindowCoolsEveryModel: one 5h rejection costs exactly one
// upstream attempt across three models: the requests for the two other
// models skip the credential without an attempt until the window resets.
func TestUnifiedWindowCoolsEveryModel(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2), fillFirst))
	up.ClearFaults()
	up.Reset()
	reset := time.Unix(f.Now().Add(2*time.Hour).Unix(), 0)
	up.SetFault("claude-1", unifiedRejection("5h", reset))

	expectServed(t, up, claudeCall("claude-sonnet-4-5"), "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
	expectServed(t, up, claudeCall("claude-opus-4-1"), "claude-2", nil)
	expectServed(t, up, claudeCall("claude-haiku-4-5"), "claude-2", nil)

	advanceTo(t, f, reset.Add(-time.Millisecond))
	expectServed(t, up, claudeCall("claude-opus-4-1"), "claude-2", nil)
	advanceTo(t, f, reset)
	for _, m := range []string{"claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"} {
		expectServed(t, up, claudeCall(m), "claude-1", nil)
	}
}

// TestFamilyWindowCoolsItsFamily: a rejected 7d_sonnet window cools the
// credential for the sonnet models only.
func TestFamilyWindowCoolsItsFamily(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), claudeCreds(up.URL, 2), fillFirst))
	up.ClearFaults()
	up.Reset()
	reset := time.Unix(f.Now().Add(20*time.Hour).Unix(), 0)
	up.SetFault("claude-1", unifiedRejection("7d_sonnet", reset))

	expectServed(t, up, claudeCall("claude-sonnet-4-5"), "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
	expectServed(t, up, claudeCall("claude-3-7-sonnet-latest"), "claude-2", nil)
	expectServed(t, up, claudeCall("claude-opus-4-1"), "claude-1", nil)
	advanceTo(t, f, reset)
	expectServed(t, up, claudeCall("claude-sonnet-4-5"), "claude-1", nil)
}

// responsesCall is a Responses request on OpenAI credentials a and b.
func responsesCall(model string, stream bool) apiCall {
	c := openAICall
	c.name = "responses"
	c.path = "/v1/responses"
	c.body = `{"model":"` + model + `","input":"hi","stream":` + strconv.FormatBool(stream) + `}`
	return c
}

// TestCodexUsageLimitCoolsForTheGivenTime: a usage_limit_reached body cools
// the credential for every model until exactly resets_at, or now +
// resets_in_seconds.
func TestCodexUsageLimitCoolsForTheGivenTime(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	for _, tc := range []struct {
		name string
		body func(now time.Time) (string, time.Time)
	}{
		{"resets_in_seconds", func(now time.Time) (string, time.Time) {
			return `{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_in_seconds":5400}}`,
				now.Add(5400 * time.Second)
		}},
		{"resets_at", func(now time.Time) (string, time.Time) {
			at := time.Unix(now.Add(3*time.Hour).Unix(), 0)
			return `{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","resets_at":` + strconv.FormatInt(at.Unix(), 10) + `}}`, at
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), openAICall.creds(up.URL), fillFirst))
			up.ClearFaults()
			up.Reset()
			body, deadline := tc.body(f.Now())
			up.SetFault("openai-1", mockllm.Fault{Status: 429, Body: body, Times: 1})

			expectServed(t, up, responsesCall("gpt-5-codex", false), "openai-2", map[string]int{"openai-1": 1, "openai-2": 1})
			expectServed(t, up, responsesCall("gpt-5", false), "openai-2", nil)
			advanceTo(t, f, deadline.Add(-time.Millisecond))
			expectServed(t, up, responsesCall("gpt-5-mini", false), "openai-2", nil)
			advanceTo(t, f, deadline)
			expectServed(t, up, responsesCall("gpt-5-codex", false), "openai-1", nil)
		})
	}
}

// TestInStreamRejectionBeforeOutputFailsOver: a rejection inside a 200
// stream before any output moves the request to the next credential; the
// client sees one clean stream from it and no error.
func TestInStreamRejectionBeforeOutputFailsOver(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	for _, tc := range []struct {
		name  string
		call  apiCall
		fault mockllm.Fault
		until time.Duration // how long credential a then cools (every model)
		other apiCall       // a request for another model that must skip a until then
		last  string        // the stream's last event
	}{
		{"anthropic overloaded after message_start", claudeCall("claude-sonnet-4-5"),
			mockllm.Fault{StreamError: mockllm.StreamOverloaded, StreamErrorAfter: 1, Times: 1},
			0, apiCall{}, "message_stop"},
		{"anthropic rate limit first", claudeCall("claude-sonnet-4-5"),
			mockllm.Fault{StreamError: mockllm.StreamRateLimit, Times: 1},
			0, apiCall{}, "message_stop"},
		{"codex usage limit after its envelope", responsesCall("gpt-5-codex", true),
			mockllm.Fault{StreamError: mockllm.StreamUsageLimit, StreamErrorAfter: 2, StreamResetsIn: 600, Times: 1},
			10 * time.Minute, responsesCall("gpt-5", true), "response.completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.call
			if !strings.Contains(c.body, `"stream":true`) {
				c.body = strings.Replace(c.body, `"messages"`, `"stream":true,"messages"`, 1)
			}
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
			up.ClearFaults()
			up.Reset()
			a, b := c.labels[0], c.labels[1]
			up.SetFault(a, tc.fault)
			start := f.Now()

			resp, body := c.send(t)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != b {
				t.Fatalf("status %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
			}
			s := string(body)
			if strings.Contains(s, "event: error") || strings.Contains(s, "_error") || strings.Contains(s, "response.failed") || !strings.Contains(s, "event: "+tc.last) {
				t.Fatalf("client stream:\n%s", s)
			}
			if got := perCredential(up); !equalCounts(got, map[string]int{a: 1, b: 1}) {
				t.Fatalf("upstream requests %v", got)
			}
			up.Reset()
			if tc.until > 0 {
				advanceTo(t, f, start.Add(tc.until-time.Millisecond))
				expectServed(t, up, tc.other, b, nil)
				advanceTo(t, f, start.Add(tc.until))
				expectServed(t, up, tc.other, a, nil)
			}
		})
	}
}

// TestInStreamRejectionAfterOutputIsNotReplayed: once an event with output
// went out, an error event streams to the client as it came, and the
// request is not sent again.
func TestInStreamRejectionAfterOutputIsNotReplayed(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	c := claudeCall("claude-sonnet-4-5")
	c.body = strings.Replace(c.body, `"messages"`, `"stream":true,"messages"`, 1)
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
	up.ClearFaults()
	up.Reset()
	// message_start, content_block_start (output), then the error.
	up.SetFault("claude-1", mockllm.Fault{StreamError: mockllm.StreamOverloaded, StreamErrorAfter: 2, Times: 1})

	resp, body := c.send(t)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "claude-1" {
		t.Fatalf("status %d from %q", resp.StatusCode, resp.Header.Get("X-Mock-Credential"))
	}
	s := string(body)
	if !strings.Contains(s, "event: content_block_start") || !strings.HasSuffix(s, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n") {
		t.Fatalf("client stream:\n%s", s)
	}
	if got := perCredential(up); !equalCounts(got, map[string]int{"claude-1": 1}) {
		t.Fatalf("upstream requests %v", got)
	}
}
