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
)

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
		{"415", 415, nil, "", ret},
		{"422", 422, nil, "", ret},
		{"499", 499, nil, "", ret},
		{"400 with retry-after still returned", 400, hdr("Retry-After", "60"), "", ret},

		{"401", 401, nil, "", auth},
		{"402", 402, nil, "", auth},
		{"403", 403, nil, `{"type":"error","error":{"type":"permission_error","message":"no"}}`, auth},
		{"401 earlier hint ignored", 401, hdr("Retry-After", "60"), "", auth},
		{"403 later hint wins", 403, hdr("Retry-After", "7200"), "", hinted(auth, 2*time.Hour)},

		{"404 empty body", 404, nil, "", ret},
		{"404 html", 404, nil, "<html><body>404 page not found</body></html>", ret},
		{"404 openai bad url", 404, nil, openAIBadURL, ret},
		{"404 anthropic not found without model", 404, nil, anthropicNotFound, ret},
		{"404 gemini other entity", 404, nil, geminiOtherNotFound, ret},
		{"404 openai model_not_found", 404, nil, openAIModelNotFound, mnf},
		{"404 anthropic model", 404, nil, anthropicModelNotFound, mnf},
		{"404 gemini model", 404, nil, geminiModelNotFound, mnf},
		{"404 gemini unknown model", 404, nil, `{"error":{"code":404,"message":"Unknown model: models/gemini-9","status":"NOT_FOUND"}}`, mnf},
		{"404 gemini status without model", 404, nil, `{"error":{"code":404,"message":"Method unknown.","status":"NOT_FOUND"}}`, ret},
		{"404 gemini model array", 404, nil, "[" + geminiModelNotFound + "]", mnf},
		{"404 vllm model does not exist", 404, nil, vllmModelNotFound, mnf},
		{"404 ollama error string", 404, nil, ollamaModelNotFound, mnf},
		{"404 plain text", 404, nil, "Model Not Found: foo", mnf},
		{"404 detail field", 404, nil, `{"detail":"Model llama-9 not found"}`, mnf},
		{"404 model_not_found top-level code", 404, nil, `{"code":"model_not_found","message":"x"}`, mnf},
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
			"anthropic-ratelimit-unified-5h-status", "rejected"), "", hinted(rate, 4*time.Hour)},
		{"429 openai", 429, hdr("x-ratelimit-reset-requests", "6m0s", "x-ratelimit-remaining-requests", "0"), "", hinted(rate, 6*time.Minute)},
		{"429 gemini", 429, nil, geminiRetry34s, hinted(rate, 34*time.Second)},
		{"429 only skipped buckets", 429, hdr("x-ratelimit-reset-tokens", "1m", "x-ratelimit-remaining-tokens", "5"), "", rate},
		{"429 past hint", 429, hdr("Retry-After", httpDate(-time.Minute)), "", rate},

		{"status 0 without error", 0, nil, "", Verdict{Action: Failover, Scope: ScopeAll, Reason: "connection_error", Until: now.Add(testPolicy.ServerError)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			got := Classify(testPolicy, tt.status, tt.h, body, nil, nil, now)
			assertVerdict(t, got, tt.want)
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
		got := Classify(Policy{}, tt.status, nil, []byte(tt.body), nil, nil, now)
		if want := now.Add(tt.want); !got.Until.Equal(want) {
			t.Errorf("status %d: Until = %s, want now+%v", tt.status, fmtUntil(got.Until), tt.want)
		}
	}
	if got := Classify(Policy{}, 0, nil, nil, errors.New("boom"), nil, now); !got.Until.Equal(now.Add(time.Minute)) {
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
	stop := Verdict{Action: Stop, Reason: "client_canceled"}

	tests := []struct {
		name      string
		status    int
		err       error
		clientErr error
		want      Verdict
	}{
		{"refused dial", 0, refused, nil, conn},
		{"refused over http", 0, httpRefused, nil, conn},
		{"refused wrapped", 0, fmt.Errorf("attempt 2: %w", refused), nil, conn},
		{"tls-like error", 0, errors.New("tls: failed to verify certificate"), nil, conn},
		{"eof", 0, errors.New("EOF"), nil, conn},
		{"deadline exceeded", 0, context.DeadlineExceeded, nil, timeout},
		{"deadline exceeded over http", 0, httpExpired, nil, timeout},
		{"deadline wrapped", 0, fmt.Errorf("upstream: %w", context.DeadlineExceeded), nil, timeout},
		{"upstream canceled, client fine", 0, context.Canceled, nil, timeout},
		{"net timeout", 0, &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, nil, timeout},
		{"error wins over status", 502, refused, nil, conn},

		{"client canceled", 0, context.Canceled, context.Canceled, stop},
		{"client canceled with refused", 0, refused, context.Canceled, stop},
		{"client deadline", 0, context.DeadlineExceeded, context.DeadlineExceeded, stop},
		{"client gone, response arrived", 500, nil, context.Canceled, stop},
		{"client gone, 429 arrived", 429, nil, context.Canceled, stop},
		{"client gone, 200 arrived", 200, nil, context.Canceled, stop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(testPolicy, tt.status, hdr("Retry-After", "600"), nil, tt.err, tt.clientErr, now)
			assertVerdict(t, got, tt.want)
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

func TestClassifyModelRequest(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	p := Policy{ModelNotFound: 5 * time.Hour}
	// A bare 404 of a generation request is about the model.
	v := ClassifyModelRequest(p, 404, nil, []byte(`{"detail":"Not Found"}`), nil, nil, now)
	if v.Action != Failover || v.Scope != ScopeModel || v.Reason != ReasonModelNotFound || !v.Until.Equal(now.Add(5*time.Hour)) {
		t.Fatalf("bare 404 of a model request: %+v", v)
	}
	// Without a model the same 404 goes back to the client.
	if v := Classify(p, 404, nil, []byte(`{"detail":"Not Found"}`), nil, nil, now); v.Action != Return {
		t.Fatalf("bare 404 without a model: %+v", v)
	}
	// A 404 about a previous response is the client's: no cooldown.
	prev := []byte(`{"error":{"message":"Previous response with id 'resp_123' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`)
	if v := ClassifyModelRequest(p, 404, nil, prev, nil, nil, now); v.Action != Return {
		t.Fatalf("404 about a previous response: %+v", v)
	}
	// Everything else is as Classify says.
	for _, status := range []int{200, 400, 401, 429, 500} {
		if a, b := ClassifyModelRequest(p, status, nil, nil, nil, nil, now), Classify(p, status, nil, nil, nil, nil, now); a != b {
			t.Errorf("status %d: %+v vs %+v", status, a, b)
		}
	}
	if v := ClassifyModelRequest(p, 404, nil, nil, nil, context.Canceled, now); v.Action != Stop {
		t.Fatalf("client gone: %+v", v)
	}
}
