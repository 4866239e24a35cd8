package integration

// Hostile clients against the failure rule: a client request can cool a
// credential only through an upstream answer about the credential (auth,
// quota, rate limit, overload, outage), never through one about the request
// (an unknown path or resource, malformed or oversized input). Each test
// sends what an attacker would send to shut a credential or a model for
// everybody, through a real Caddy and the mock upstream, and then checks
// that the next honest request is still served by the same credential.
// Pools and the fake clock follow failover_test.go.

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// sendExpect sends one request and checks its status and the upstream
// requests it caused per credential (then resets the mock's record).
func sendExpect(t *testing.T, up *upstream, method, path, body string, status int, want map[string]int) (*http.Response, []byte) {
	t.Helper()
	resp, b := call(t, method, path, nil, body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %.300s", method, path, resp.StatusCode, status, b)
	}
	if got := perCredential(up); !equalCounts(got, want) {
		t.Fatalf("%s %s: upstream requests per credential %v, want %v", method, path, got, want)
	}
	up.Reset()
	return resp, b
}

// TestHostile404sDoNotCool: requests for unknown resources, a Gemini action
// the upstream does not know, a missing model's metadata, or a generation
// request answered with a 404 that does not say the model is missing, all
// get the upstream's 404 from the first credential, with no failover and no
// cooldown: the same credential serves the next request for the model.
// Paths llm_proxy does not serve get its own 404 without reaching any
// upstream.
func TestHostile404sDoNotCool(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	cases := []struct {
		name         string
		honest       apiCall
		method, path string
		body         string
		fault        *mockllm.Fault // the first credential's answer, else the mock's own
		unserved     bool           // llm_proxy answers itself
	}{
		{name: "unknown batch, with a model in the body", honest: anthropicCall,
			method: http.MethodPost, path: "/v1/messages/batches/msgbatch_nope/cancel", body: anthropicCall.body},
		{name: "unknown stored response, with a model in the body", honest: openAICall,
			method: http.MethodPost, path: "/v1/responses/resp_nope/cancel", body: `{"model":"gpt-5"}`},
		{name: "gemini action the upstream does not know", honest: geminiCall,
			// The mock answers as for an unknown URL, quoting the path
			// "models/gemini-2.5-pro:embedContent".
			method: http.MethodPost, path: "/v1beta/models/gemini-2.5-pro:embedContent", body: geminiCall.body},
		{name: "missing model metadata", honest: openAICall,
			method: http.MethodGet, path: "/v1/models/nope",
			// OpenAI's answer: 404 code model_not_found (the mock's default 404).
			fault: &mockllm.Fault{Status: 404, Times: 1}},
		{name: "generation 404 that is not about the model", honest: anthropicCall,
			method: http.MethodPost, path: "/v1/messages", body: anthropicCall.body,
			fault: &mockllm.Fault{Status: 404, Times: 1, Body: `{"detail":"Not Found"}`}},
		{name: "generation 404 for a missing file named like a model", honest: anthropicCall,
			method: http.MethodPost, path: "/v1/messages", body: anthropicCall.body,
			fault: &mockllm.Fault{Status: 404, Times: 1,
				Body: `{"type":"error","error":{"type":"not_found_error","message":"File not found: model claude-sonnet-4-5 not found"}}`}},
		{name: "unknown path under messages", honest: anthropicCall, unserved: true,
			method: http.MethodPost, path: "/v1/messages/anything", body: anthropicCall.body},
		{name: "unknown gemini action", honest: geminiCall, unserved: true,
			method: http.MethodPost, path: "/v1beta/models/gemini-2.5-pro:bogus", body: geminiCall.body},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.honest
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
			up.ClearFaults()
			up.Reset()
			first := c.labels[0]
			want := map[string]int{first: 1}
			if tc.unserved {
				want = map[string]int{}
			}
			// Twice: had the first cooled the credential, the second would
			// go to the other one.
			for range 2 {
				if tc.fault != nil {
					up.SetFault(first, *tc.fault)
				}
				sendExpect(t, up, tc.method, tc.path, tc.body, http.StatusNotFound, want)
			}
			up.ClearFaults()
			expectServed(t, up, c, first, nil)
		})
	}
}

// TestGeminiMethodTheModelLacksCoolsOnlyThatMethod: Gemini answers a method
// the model does not support with the words it uses for a missing model.
// The credential's model is cooled for that method only: the model itself
// keeps being served there.
func TestGeminiMethodTheModelLacksCoolsOnlyThatMethod(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	c := geminiCall
	count := apiCall{name: "gemini count", path: "/v1beta/models/gemini-2.5-pro:countTokens", body: c.body}
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
	up.Reset()
	start := f.Now()
	up.SetFault("gemini-1", mockllm.Fault{Status: 404, Times: 1,
		Body: `{"error":{"code":404,"message":"models/gemini-2.5-pro is not found for API version v1beta, or is not supported for countTokens. ` +
			`Call ListModels to see the list of available models and their supported methods.","status":"NOT_FOUND"}}`})
	expectServed(t, up, count, "gemini-2", map[string]int{"gemini-1": 1, "gemini-2": 1})
	// The model itself still runs on gemini-1...
	expectServed(t, up, c, "gemini-1", nil)
	// ...countTokens for it skips gemini-1 for model_not_found (12h).
	expectServed(t, up, count, "gemini-2", nil)
	advanceTo(t, f, start.Add(12*time.Hour-time.Millisecond))
	expectServed(t, up, count, "gemini-2", nil)
	advanceTo(t, f, start.Add(12*time.Hour))
	expectServed(t, up, count, "gemini-1", nil)
}

// TestRevokedGeminiKeyIsAnAuthFailure: Gemini refuses a revoked key with
// 400 API_KEY_INVALID, not 401. The credential is cooled for every model
// for auth_failure (30m) and the request moves on.
func TestRevokedGeminiKeyIsAnAuthFailure(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	pro := geminiCall
	flash := geminiCall
	flash.path = "/v1beta/models/gemini-2.5-flash:generateContent"
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), pro.creds(up.URL), fillFirst))
	up.Reset()
	start := f.Now()
	up.SetFault("gemini-1", mockllm.Fault{RevokedKey: true})
	expectServed(t, up, pro, "gemini-2", map[string]int{"gemini-1": 1, "gemini-2": 1})
	up.ClearFaults()
	expectServed(t, up, flash, "gemini-2", nil)
	advanceTo(t, f, start.Add(30*time.Minute-time.Millisecond))
	expectServed(t, up, pro, "gemini-2", nil)
	advanceTo(t, f, start.Add(30*time.Minute))
	expectServed(t, up, flash, "gemini-1", nil)
}

// TestHostileInputThatGeminiQuotesIsNotAnAuthFailure: Gemini's 400 for an
// unknown field quotes the field's name; a client naming its field "API key
// not valid" gets that 400 back and cools nothing.
func TestHostileInputThatGeminiQuotesIsNotAnAuthFailure(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	c := geminiCall
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
	up.Reset()
	up.SetFault("gemini-1", mockllm.Fault{Status: 400, Times: 1,
		Body: `{"error":{"code":400,"message":"Invalid JSON payload received. Unknown name \"API key not valid\" at 'contents[0]': Cannot find field.","status":"INVALID_ARGUMENT",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"contents[0]","description":"API_KEY_INVALID"}]}]}}`})
	sendExpect(t, up, http.MethodPost, c.path, `{"API key not valid":1,`+c.body[1:], http.StatusBadRequest, map[string]int{"gemini-1": 1})
	expectServed(t, up, c, "gemini-1", nil)
}

// TestResponseHeaderTimeoutCoolsOnlyTheModel: an upstream that takes the
// request and answers nothing within response_header_timeout cools the
// requested model on that credential for server_error (60s); other models
// keep using it. (The transport's real timer bounds the wait; only outcomes
// are asserted.)
func TestResponseHeaderTimeoutCoolsOnlyTheModel(t *testing.T) {
	up := newFailoverUpstream(t)
	f := fakeClock(t)
	sonnet, opus := claudeCall("claude-sonnet-4-5"), claudeCall("claude-opus-4-1")
	transport := "\t\ttransport http {\n\t\t\tresponse_header_timeout 200ms\n\t\t}\n"
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), sonnet.creds(up.URL), fillFirst+transport))
	up.Reset()
	start := f.Now()
	up.SetFault("claude-1", mockllm.Fault{Delay: time.Minute, Times: 1})
	expectServed(t, up, sonnet, "claude-2", map[string]int{"claude-1": 1, "claude-2": 1})
	expectServed(t, up, opus, "claude-1", nil)
	advanceTo(t, f, start.Add(time.Minute-time.Millisecond))
	expectServed(t, up, sonnet, "claude-2", nil)
	advanceTo(t, f, start.Add(time.Minute))
	expectServed(t, up, sonnet, "claude-1", nil)
}

// TestUpstreamErrorBodiesAreBoundedAndRedacted: an upstream error body that
// quotes the key, 100 KiB long with the key straddling the 64 KiB bound and
// again near the end, reaches the client cut at the bound, with its own
// Content-Length and no part of the key: when returned (400) and when it is
// the last answer after every credential failed (500).
func TestUpstreamErrorBodiesAreBoundedAndRedacted(t *testing.T) {
	const limit = 64 << 10
	up := newFailoverUpstream(t)
	fakeClock(t)
	c := anthropicCall
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
	body := func(key string) string {
		var b strings.Builder
		b.WriteString(`{"type":"error","error":{"type":"invalid_request_error","message":"invalid x-api-key ` + key + ` `)
		b.WriteString(strings.Repeat("x", limit-b.Len()-len(key)/2))
		b.WriteString(key) // straddles the bound
		b.WriteString(strings.Repeat("y", 100<<10-b.Len()-len(key)-3))
		b.WriteString(key + `"}}`)
		return b.String()
	}
	check := func(resp *http.Response, got []byte) {
		t.Helper()
		if len(got) > limit {
			t.Fatalf("error body of %d bytes, bound %d", len(got), limit)
		}
		if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(got)) {
			t.Fatalf("Content-Length %q for %d bytes", cl, len(got))
		}
		for _, key := range []string{"sk-ant-one", "sk-ant-two"} {
			if bytes.Contains(got, []byte(key)) {
				t.Fatalf("upstream key %s reached the client", key)
			}
			for n := 1; n < len(key); n++ {
				if bytes.HasSuffix(got, []byte(key[:n])) {
					t.Fatalf("the body ends with the first %d bytes of %s", n, key)
				}
			}
		}
		if !bytes.Contains(got, []byte("invalid x-api-key [redacted] xxx")) {
			t.Fatalf("the key was not redacted in place: %.120s", got)
		}
	}

	up.Reset()
	up.SetFault("claude-1", mockllm.Fault{Status: 400, Times: 1, Body: body("sk-ant-one")})
	check(sendExpect(t, up, http.MethodPost, c.path, c.body, http.StatusBadRequest, map[string]int{"claude-1": 1}))

	up.SetFault("claude-1", mockllm.Fault{Status: 500, Times: 1, Body: body("sk-ant-one")})
	up.SetFault("claude-2", mockllm.Fault{Status: 500, Times: 1, Body: body("sk-ant-two")})
	check(sendExpect(t, up, http.MethodPost, c.path, c.body, http.StatusInternalServerError, map[string]int{"claude-1": 1, "claude-2": 1}))
}

// TestOpenAIRequestTooLargeIsReturned: OpenAI answers a request larger
// than the tokens-per-minute limit with 429 "Request too large". It is
// about the request: returned to the client, nothing cooled.
func TestOpenAIRequestTooLargeIsReturned(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	c := openAICall
	loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
	up.Reset()
	const tooLarge = `{"error":{"message":"Request too large for gpt-5 in organization org-abc on tokens per min (TPM): Limit 30000, Requested 950000. ` +
		`The input or output tokens must be reduced in order to run successfully.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`
	for range 2 {
		up.SetFault("openai-1", mockllm.Fault{Status: 429, Times: 1, Body: tooLarge,
			Headers: map[string]string{"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "10m"}})
		_, got := sendExpect(t, up, http.MethodPost, c.path, c.body, http.StatusTooManyRequests, map[string]int{"openai-1": 1})
		if string(got) != tooLarge {
			t.Fatalf("body changed: %s", got)
		}
	}
	expectServed(t, up, c, "openai-1", nil)
}

// TestRequestWithoutModelCoolsNothing: a rate limit or server error met by
// a request that names no model (the model list) moves it to the next
// credential but cools nothing, so neither model-less requests nor model
// requests are shut off the credential by it.
func TestRequestWithoutModelCoolsNothing(t *testing.T) {
	up := newFailoverUpstream(t)
	fakeClock(t)
	c := openAICall
	for _, fault := range []mockllm.Fault{
		{Status: 429, Times: 1, Headers: map[string]string{"Retry-After": "3600"}},
		{Status: 503, Times: 1},
	} {
		t.Run(strconv.Itoa(fault.Status), func(t *testing.T) {
			loadConfig(t, t.TempDir(), proxySite(uniquePool(t), c.creds(up.URL), fillFirst))
			up.ClearFaults()
			up.Reset()
			up.SetFault("openai-1", fault)
			sendExpect(t, up, http.MethodGet, "/v1/models", "", http.StatusOK, map[string]int{"openai-1": 1, "openai-2": 1})
			sendExpect(t, up, http.MethodGet, "/v1/models", "", http.StatusOK, map[string]int{"openai-1": 1})
			expectServed(t, up, c, "openai-1", nil)
		})
	}
}
