package failure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testPolicy uses durations distinct from the defaults and from each other,
// so a test fails if Classify picks the wrong one or ignores the policy.
var testPolicy = Policy{
	RateLimit:     2 * time.Second,
	RateLimitMax:  10 * time.Minute,
	AuthFailure:   45 * time.Minute,
	ModelNotFound: 6 * time.Hour,
	ServerError:   90 * time.Second,
}

const (
	openAIModelNotFound    = `{"error":{"message":"The model ` + "`gpt-9`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`
	openAIBadURL           = `{"error":{"message":"Invalid URL (POST /v1/chat/complete)","type":"invalid_request_error","param":null,"code":null}}`
	anthropicModelNotFound = `{"type":"error","error":{"type":"not_found_error","message":"model: claude-9-opus"}}`
	anthropicNotFound      = `{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}`
	geminiModelNotFound    = `{"error":{"code":404,"message":"models/gemini-9-pro is not found for API version v1beta, or is not supported for generateContent.","status":"NOT_FOUND"}}`
	geminiOtherNotFound    = `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}`
	vllmModelNotFound      = `{"object":"error","message":"The model ` + "`llama-9`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`
	ollamaModelNotFound    = `{"error":"model 'llama9' not found, try pulling it first"}`

	openAITPMReached      = `{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`
	openAIRequestTooLarge = `{"error":{"message":"Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 36000. The input or output tokens must be reduced in order to run successfully.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`
)

// gen is a generation request for model.
func gen(model string) Request { return Request{Model: model, Generation: true} }

// classifyStatus runs Classify on a response to req.
func classifyStatus(req Request, status int, h http.Header, body string) Verdict {
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return Classify(testPolicy, req, Attempt{Status: status, Header: h, Body: b}, now)
}

func TestClassifyStatus(t *testing.T) {
	success := Verdict{Action: Success, Reason: "success"}
	ret := Verdict{Action: Return, Reason: "client_error"}
	auth := Verdict{Action: Failover, Scope: ScopeAll, Reason: "auth_failed", Until: now.Add(testPolicy.AuthFailure)}
	mnf := Verdict{Action: Failover, Scope: ScopeModel, Reason: "model_not_found", Until: now.Add(testPolicy.ModelNotFound)}
	server := Verdict{Action: Failover, Scope: ScopeModel, Reason: "server_error", Until: now.Add(testPolicy.ServerError)}
	rate := Verdict{Action: Failover, Scope: ScopeModel, Reason: "rate_limited"}
	hinted := func(v Verdict, d time.Duration) Verdict {
		v.Until, v.Hinted = now.Add(d), true
		return v
	}

	tests := []struct {
		name   string
		status int
		h      http.Header
		body   string
		want   Verdict
	}{
		{"101", 101, nil, "", success},
		{"200", 200, nil, "", success},
		{"201", 201, nil, "", success},
		{"204", 204, nil, "", success},
		{"206", 206, nil, "", success},
		{"301", 301, nil, "", success},
		{"304", 304, nil, "", success},
		{"307", 307, nil, "", success},
		{"200 with hint headers stays success", 200, hdr("Retry-After", "60"), "", success},
		{"nonstandard 600", 600, nil, "", success},

		{"400", 400, nil, `{"error":{"message":"bad"}}`, ret},
		{"405", 405, nil, "", ret},
		{"409", 409, nil, "", ret},
		{"410", 410, nil, "", ret},
		{"413", 413, nil, "", ret},
		{"413 anthropic request_too_large", 413, nil, `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}`, ret},
		{"400 anthropic prompt is too long", 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}`, ret},
		{"415", 415, nil, "", ret},
		{"422", 422, nil, "", ret},
		{"499", 499, nil, "", ret},
		{"400 with retry-after still returned", 400, hdr("Retry-After", "60"), "", ret},

		{"401", 401, nil, "", auth},
		{"402", 402, nil, "", auth},
		{"403 anthropic permission_error", 403, nil, `{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}`, auth},
		{"403 openai unsupported region", 403, nil, `{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","param":null,"type":"request_forbidden"}}`, auth},
		{"401 earlier hint ignored", 401, hdr("Retry-After", "60"), "", auth},
		{"403 later hint wins", 403, hdr("Retry-After", "7200"), "", hinted(auth, 2*time.Hour)},

		{"404 empty body", 404, nil, "", ret},
		{"404 bare detail", 404, nil, `{"detail":"Not Found"}`, ret},
		{"404 openai model", 404, nil, openAIModelNotFound, mnf},
		{"404 model later hint wins", 404, hdr("Retry-After", "86400"), openAIModelNotFound, hinted(mnf, 24*time.Hour)},
		{"model_not_found body on 400 is returned", 400, nil, openAIModelNotFound, ret},

		{"408", 408, nil, "", server},
		{"500", 500, nil, "", server},
		{"501", 501, nil, "", server},
		{"502", 502, nil, "", server},
		{"503", 503, nil, "", server},
		{"504", 504, nil, "", server},
		{"529 overloaded", 529, nil, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, server},
		{"599", 599, nil, "", server},
		{"503 earlier retry-after", 503, hdr("Retry-After", "5"), "", server},
		{"503 later retry-after", 503, hdr("Retry-After", "120"), "", hinted(server, 2*time.Minute)},
		{"529 later retry-after-ms", 529, hdr("retry-after-ms", "95000"), "", hinted(server, 95*time.Second)},

		{"429 no hint", 429, nil, `{"error":{"message":"slow down"}}`, rate},
		{"429 retry-after", 429, hdr("Retry-After", "7"), "", hinted(rate, 7*time.Second)},
		{"429 short hint beats policy", 429, hdr("retry-after-ms", "300"), "", hinted(rate, 300*time.Millisecond)},
		{"429 anthropic", 429, hdr(
			"anthropic-ratelimit-tokens-reset", rfc3339(25*time.Second),
			"anthropic-ratelimit-tokens-remaining", "0",
			"anthropic-ratelimit-requests-reset", rfc3339(time.Hour),
			"anthropic-ratelimit-requests-remaining", "3"), "", hinted(rate, 25*time.Second)},
		{"429 unified", 429, hdr(
			"anthropic-ratelimit-unified-5h-reset", unix(4*time.Hour),
			"anthropic-ratelimit-unified-5h-status", "rejected"), "", hinted(Verdict{Action: Failover, Scope: ScopeAll, Reason: ReasonQuotaExhausted}, 4*time.Hour)},
		{"429 openai", 429, hdr("x-ratelimit-reset-requests", "6m0s", "x-ratelimit-remaining-requests", "0"), "", hinted(rate, 6*time.Minute)},
		{"429 gemini", 429, nil, geminiRetry34s, hinted(rate, 34*time.Second)},
		{"429 only skipped buckets", 429, hdr("x-ratelimit-reset-tokens", "1m", "x-ratelimit-remaining-tokens", "5"), "", rate},
		{"429 past hint", 429, hdr("Retry-After", httpDate(-time.Minute)), "", rate},
		{"429 openai tpm reached", 429, hdr("x-ratelimit-reset-tokens", "2s", "x-ratelimit-remaining-tokens", "0"), openAITPMReached, hinted(rate, 2*time.Second)},
		{"429 openai request too large", 429, hdr("x-ratelimit-reset-tokens", "2s", "x-ratelimit-remaining-tokens", "0"), openAIRequestTooLarge, ret},
		{"429 openai request too large in a stream array", 429, nil, "[" + openAIRequestTooLarge + "]", ret},
		{"429 that quotes request too large later", 429, nil, `{"error":{"message":"Rate limit reached. Request too large","type":"requests","code":"rate_limit_exceeded"}}`, rate},

		{"status 0 without error", 0, nil, "", Verdict{Action: Failover, Scope: ScopeAll, Reason: "connection_error", Until: now.Add(testPolicy.ServerError)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertVerdict(t, classifyStatus(gen("gpt-9"), tt.status, tt.h, tt.body), tt.want)
		})
	}
}

func assertVerdict(t *testing.T, got, want Verdict) {
	t.Helper()
	if got.Action != want.Action || got.Scope != want.Scope || got.Reason != want.Reason ||
		!got.Until.Equal(want.Until) || got.Hinted != want.Hinted {
		t.Errorf("verdict = {%v %v %q until %s hinted=%v}, want {%v %v %q until %s hinted=%v}",
			got.Action, got.Scope, got.Reason, fmtUntil(got.Until), got.Hinted,
			want.Action, want.Scope, want.Reason, fmtUntil(want.Until), want.Hinted)
	}
}

func fmtUntil(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return fmt.Sprintf("now%+v", t.Sub(now))
}

// TestClassifyDefaults checks that a zero Policy gets the documented
// default durations.
func TestClassifyDefaults(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   time.Duration
	}{
		{401, "", 30 * time.Minute},
		{404, openAIModelNotFound, 12 * time.Hour},
		{503, "", 60 * time.Second},
	}
	for _, tt := range tests {
		got := Classify(Policy{}, gen("gpt-9"), Attempt{Status: tt.status, Body: []byte(tt.body)}, now)
		if want := now.Add(tt.want); !got.Until.Equal(want) {
			t.Errorf("status %d: Until = %s, want now+%v", tt.status, fmtUntil(got.Until), tt.want)
		}
	}
	if got := Classify(Policy{}, gen("gpt-9"), Attempt{Err: errors.New("boom")}, now); !got.Until.Equal(now.Add(time.Minute)) {
		t.Errorf("transport error: Until = %s, want now+1m", fmtUntil(got.Until))
	}
}

// refusedDialError dials a loopback port that nothing listens on and returns
// the real error.
func refusedDialError(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback listener: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err == nil {
		conn.Close()
		t.Skipf("port %s was reused before the test could dial it", addr)
	}
	return err
}

// timeoutError is a net.Error that reports a timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyTransport(t *testing.T) {
	refused := refusedDialError(t)

	// The same refusal as an HTTP client reports it (wrapped in *url.Error).
	closedURL := "http://" + refused.(*net.OpError).Addr.String() + "/v1/messages"
	_, httpRefused := http.Get(closedURL)
	if httpRefused == nil {
		t.Skip("closed port answered over HTTP")
	}

	// A real request whose context deadline has already passed.
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	req, err := http.NewRequestWithContext(expired, http.MethodGet, closedURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, httpExpired := http.DefaultClient.Do(req)
	if !errors.Is(httpExpired, context.DeadlineExceeded) {
		t.Fatalf("expected a deadline error from the HTTP client, got %v", httpExpired)
	}

	conn := Verdict{Action: Failover, Scope: ScopeAll, Reason: "connection_error", Until: now.Add(testPolicy.ServerError)}
	timeout := Verdict{Action: Failover, Scope: ScopeAll, Reason: "timeout", Until: now.Add(testPolicy.ServerError)}
	// Once connected, a failure concerns the model asked for, not the
	// credential's endpoint.
	connModel := Verdict{Action: Failover, Scope: ScopeModel, Reason: "connection_error", Until: now.Add(testPolicy.ServerError)}
	timeoutModel := Verdict{Action: Failover, Scope: ScopeModel, Reason: "timeout", Until: now.Add(testPolicy.ServerError)}
	stop := Verdict{Action: Stop, Reason: "client_canceled"}
	headerTimeout := errors.New("net/http: timeout awaiting response headers")

	tests := []struct {
		name      string
		status    int
		err       error
		connected bool
		clientErr error
		want      Verdict
	}{
		{"refused dial", 0, refused, false, nil, conn},
		{"refused over http", 0, httpRefused, false, nil, conn},
		{"refused wrapped", 0, fmt.Errorf("attempt 2: %w", refused), false, nil, conn},
		{"tls-like error", 0, errors.New("tls: failed to verify certificate"), false, nil, conn},
		{"dns", 0, &net.DNSError{Err: "no such host", Name: "api.example", IsNotFound: true}, false, nil, conn},
		{"dial timeout", 0, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, false, nil, timeout},
		{"eof", 0, errors.New("EOF"), false, nil, conn},
		{"deadline exceeded", 0, context.DeadlineExceeded, false, nil, timeout},
		{"deadline exceeded over http", 0, httpExpired, false, nil, timeout},
		{"deadline wrapped", 0, fmt.Errorf("upstream: %w", context.DeadlineExceeded), false, nil, timeout},
		{"upstream canceled, client fine", 0, context.Canceled, false, nil, timeout},
		{"net timeout", 0, &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, false, nil, timeout},
		{"error wins over status", 502, refused, false, nil, conn},

		{"connected, then no response headers in time", 0, &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, true, nil, timeoutModel},
		{"connected, then the response header timeout", 0, fmt.Errorf("%w: %w", headerTimeout, context.DeadlineExceeded), true, nil, timeoutModel},
		{"connected, then closed without response", 0, errors.New("EOF"), true, nil, connModel},

		{"client canceled", 0, context.Canceled, false, context.Canceled, stop},
		{"client canceled with refused", 0, refused, false, context.Canceled, stop},
		{"client deadline", 0, context.DeadlineExceeded, true, context.DeadlineExceeded, stop},
		{"client gone, response arrived", 500, nil, true, context.Canceled, stop},
		{"client gone, 429 arrived", 429, nil, true, context.Canceled, stop},
		{"client gone, 200 arrived", 200, nil, true, context.Canceled, stop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Attempt{Status: tt.status, Header: hdr("Retry-After", "600"), Err: tt.err, Connected: tt.connected, ClientErr: tt.clientErr}
			got := Classify(testPolicy, gen("claude-x"), a, now)
			assertVerdict(t, got, tt.want)
			if tt.want.Action == Failover {
				// Without a model, nothing model-scoped is cooled.
				want := tt.want
				if want.Scope == ScopeModel {
					want = Verdict{Action: Failover, Scope: ScopeNone, Reason: want.Reason}
				}
				assertVerdict(t, Classify(testPolicy, Request{}, a, now), want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Success.String(), "success"},
		{Return.String(), "return"},
		{Failover.String(), "failover"},
		{Stop.String(), "stop"},
		{Action(42).String(), "action(42)"},
		{ScopeModel.String(), "model"},
		{ScopeAll.String(), "all"},
		{ScopeEndpoint.String(), "endpoint"},
		{ScopeNone.String(), "none"},
		{Scope(-1).String(), "scope(-1)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

// TestReasonsDocumented guards the reason strings other packages and users
// (logs, metrics) rely on.
func TestReasonsDocumented(t *testing.T) {
	got := strings.Join([]string{
		ReasonSuccess, ReasonRateLimited, ReasonAuthFailed, ReasonModelNotFound, ReasonServerError,
		ReasonConnectionError, ReasonTimeout, ReasonClientError, ReasonClientCanceled,
	}, ",")
	want := "success,rate_limited,auth_failed,model_not_found,server_error,connection_error,timeout,client_error,client_canceled"
	if got != want {
		t.Errorf("reasons = %s, want %s", got, want)
	}
}
