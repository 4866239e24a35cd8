package failure

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// now is the fixed clock of every test in this package.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// hdr builds a header from name/value pairs, keeping names exactly as given
// (not canonicalised) so that case-insensitive matching is exercised too.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

func rfc3339(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
func unix(d time.Duration) string    { return strconv.FormatInt(now.Add(d).Unix(), 10) }
func httpDate(d time.Duration) string {
	return now.Add(d).Format(http.TimeFormat)
}

const geminiRetry34s = `{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[` +
	`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"x"}]},` +
	`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34s"}]}}`

func TestResetHint(t *testing.T) {
	const none = time.Duration(-1) // want no hint
	tests := []struct {
		name string
		h    http.Header
		body string
		want time.Duration // offset from now, or none
	}{
		{"nothing", nil, "", none},
		{"unrelated headers", hdr("Content-Type", "application/json", "X-Request-Id", "42"), `{"error":{"message":"x"}}`, none},

		// Retry-After.
		{"retry-after seconds", hdr("Retry-After", "30"), "", 30 * time.Second},
		{"retry-after lower case", hdr("retry-after", "30"), "", 30 * time.Second},
		{"retry-after padded", hdr("Retry-After", " 17 "), "", 17 * time.Second},
		{"retry-after fractional", hdr("Retry-After", "1.5"), "", 1500 * time.Millisecond},
		{"retry-after http date", hdr("Retry-After", httpDate(2*time.Minute)), "", 2 * time.Minute},
		{"retry-after rfc850 date", hdr("Retry-After", now.Add(time.Hour).Format(time.RFC850)), "", time.Hour},
		{"retry-after zero", hdr("Retry-After", "0"), "", none},
		{"retry-after negative", hdr("Retry-After", "-5"), "", none},
		{"retry-after signed", hdr("Retry-After", "+5"), "", none},
		{"retry-after exponent", hdr("Retry-After", "1e3"), "", none},
		{"retry-after NaN", hdr("Retry-After", "NaN"), "", none},
		{"retry-after Inf", hdr("Retry-After", "Inf"), "", none},
		{"retry-after hex", hdr("Retry-After", "0x10"), "", none},
		{"retry-after two dots", hdr("Retry-After", "1.2.3"), "", none},
		{"retry-after empty", hdr("Retry-After", ""), "", none},
		{"retry-after words", hdr("Retry-After", "soon"), "", none},
		{"retry-after past date", hdr("Retry-After", httpDate(-time.Minute)), "", none},
		{"retry-after repeated takes latest", hdr("Retry-After", "10", "Retry-After", "60", "Retry-After", "bogus"), "", time.Minute},

		// retry-after-ms.
		{"retry-after-ms", hdr("retry-after-ms", "1500"), "", 1500 * time.Millisecond},
		{"retry-after-ms canonical", hdr("Retry-After-Ms", "20"), "", 20 * time.Millisecond},
		{"retry-after-ms fractional", hdr("retry-after-ms", "250.5"), "", 250*time.Millisecond + 500*time.Microsecond},
		{"retry-after-ms invalid", hdr("retry-after-ms", "abc"), "", none},
		{"retry-after-ms zero", hdr("retry-after-ms", "0"), "", none},

		// Anthropic per-bucket resets (RFC 3339).
		{"anthropic requests no remaining", hdr("Anthropic-Ratelimit-Requests-Reset", rfc3339(40*time.Second)), "", 40 * time.Second},
		{"anthropic tokens remaining 0", hdr(
			"anthropic-ratelimit-tokens-reset", rfc3339(50*time.Second),
			"anthropic-ratelimit-tokens-remaining", "0"), "", 50 * time.Second},
		{"anthropic tokens remaining positive skipped", hdr(
			"anthropic-ratelimit-tokens-reset", rfc3339(50*time.Second),
			"anthropic-ratelimit-tokens-remaining", "12000"), "", none},
		{"anthropic remaining unparsable applies", hdr(
			"anthropic-ratelimit-tokens-reset", rfc3339(50*time.Second),
			"anthropic-ratelimit-tokens-remaining", "lots"), "", 50 * time.Second},
		{"anthropic input exhausted output not", hdr(
			"anthropic-ratelimit-input-tokens-reset", rfc3339(20*time.Second),
			"anthropic-ratelimit-input-tokens-remaining", "0",
			"anthropic-ratelimit-output-tokens-reset", rfc3339(5*time.Minute),
			"anthropic-ratelimit-output-tokens-remaining", "8000",
			"anthropic-ratelimit-requests-reset", rfc3339(3*time.Minute),
			"anthropic-ratelimit-requests-remaining", "49"), "", 20 * time.Second},
		{"anthropic remaining of another bucket does not count", hdr(
			"anthropic-ratelimit-output-tokens-reset", rfc3339(90*time.Second),
			"anthropic-ratelimit-tokens-remaining", "5000"), "", 90 * time.Second},
		{"anthropic fractional seconds", hdr("anthropic-ratelimit-requests-reset", "2025-06-01T12:00:30.5Z"), "", 30500 * time.Millisecond},
		{"anthropic offset zone", hdr("anthropic-ratelimit-requests-reset", "2025-06-01T14:01:00+02:00"), "", time.Minute},
		{"anthropic unix seconds rejected", hdr("anthropic-ratelimit-requests-reset", unix(time.Minute)), "", none},
		{"anthropic garbage", hdr("anthropic-ratelimit-requests-reset", "tomorrow"), "", none},
		{"anthropic exactly now", hdr("anthropic-ratelimit-requests-reset", rfc3339(0)), "", none},
		{"unified exactly now", hdr("anthropic-ratelimit-unified-reset", unix(0)), "", none},
		{"anthropic past", hdr("anthropic-ratelimit-requests-reset", rfc3339(-time.Second)), "", none},
		{"anthropic non-reset header ignored", hdr("anthropic-ratelimit-requests-limit", "50"), "", none},

		// Anthropic unified resets (unix seconds).
		{"unified no status", hdr("anthropic-ratelimit-unified-reset", unix(2*time.Hour)), "", 2 * time.Hour},
		{"unified rejected", hdr(
			"anthropic-ratelimit-unified-reset", unix(2*time.Hour),
			"anthropic-ratelimit-unified-status", "rejected"), "", 2 * time.Hour},
		{"unified allowed skipped", hdr(
			"anthropic-ratelimit-unified-reset", unix(2*time.Hour),
			"anthropic-ratelimit-unified-status", "allowed"), "", none},
		{"unified allowed_warning skipped", hdr(
			"Anthropic-Ratelimit-Unified-5h-Reset", unix(3*time.Hour),
			"Anthropic-Ratelimit-Unified-5h-Status", "allowed_warning"), "", none},
		{"unified 5h allowed 7d rejected", hdr(
			"anthropic-ratelimit-unified-5h-reset", unix(3*time.Hour),
			"anthropic-ratelimit-unified-5h-status", "allowed",
			"anthropic-ratelimit-unified-7d-reset", unix(20*time.Hour),
			"anthropic-ratelimit-unified-7d-status", "rejected"), "", 20 * time.Hour},
		{"unified 5h rejected 7d allowed", hdr(
			"anthropic-ratelimit-unified-5h-reset", unix(3*time.Hour),
			"anthropic-ratelimit-unified-5h-status", "rejected",
			"anthropic-ratelimit-unified-7d-reset", unix(20*time.Hour),
			"anthropic-ratelimit-unified-7d-status", "allowed"), "", 3 * time.Hour},
		{"unified window status does not leak to overall", hdr(
			"anthropic-ratelimit-unified-reset", unix(time.Hour),
			"anthropic-ratelimit-unified-5h-status", "allowed"), "", time.Hour},
		{"unified fractional unix", hdr("anthropic-ratelimit-unified-reset", strconv.FormatInt(now.Unix()+10, 10)+".25"), "", 10250 * time.Millisecond},
		{"unified rfc3339 accepted", hdr("anthropic-ratelimit-unified-reset", rfc3339(time.Hour)), "", time.Hour},
		{"unified past", hdr("anthropic-ratelimit-unified-reset", unix(-time.Hour)), "", none},
		{"unified garbage", hdr("anthropic-ratelimit-unified-reset", "-1"), "", none},

		// OpenAI.
		{"openai requests 6m0s", hdr("x-ratelimit-reset-requests", "6m0s"), "", 6 * time.Minute},
		{"openai tokens 1s", hdr("X-Ratelimit-Reset-Tokens", "1s"), "", time.Second},
		{"openai 20ms", hdr("x-ratelimit-reset-tokens", "20ms"), "", 20 * time.Millisecond},
		{"openai compound", hdr("x-ratelimit-reset-requests", "2h3m4.5s"), "", 2*time.Hour + 3*time.Minute + 4500*time.Millisecond},
		{"openai bare seconds", hdr("x-ratelimit-reset-requests", "12"), "", 12 * time.Second},
		{"openai bare fraction", hdr("x-ratelimit-reset-requests", "0.5"), "", 500 * time.Millisecond},
		{"openai remaining 0 applies", hdr(
			"x-ratelimit-reset-requests", "45s",
			"x-ratelimit-remaining-requests", "0"), "", 45 * time.Second},
		{"openai remaining positive skipped", hdr(
			"x-ratelimit-reset-tokens", "45s",
			"x-ratelimit-remaining-tokens", "149000"), "", none},
		{"openai tokens exhausted requests not", hdr(
			"x-ratelimit-reset-requests", "8m",
			"x-ratelimit-remaining-requests", "499",
			"x-ratelimit-reset-tokens", "7s",
			"x-ratelimit-remaining-tokens", "0"), "", 7 * time.Second},
		{"openai invalid", hdr("x-ratelimit-reset-requests", "6 minutes"), "", none},
		{"openai negative", hdr("x-ratelimit-reset-requests", "-6s"), "", none},
		{"openai zero", hdr("x-ratelimit-reset-requests", "0s"), "", none},
		{"openai remaining header alone", hdr("x-ratelimit-remaining-requests", "0"), "", none},

		// Gemini body.
		{"gemini retry info", nil, geminiRetry34s, 34 * time.Second},
		{"gemini fractional", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"0.5s"}]}}`, 500 * time.Millisecond},
		{"gemini nanos", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.000340012s"}]}}`, time.Second + 340012},
		{"gemini array wrapped", nil, " \n[" + geminiRetry34s + "]", 34 * time.Second},
		{"gemini array second element", nil, `[{"error":{"code":429}},` + geminiRetry34s + `]`, 34 * time.Second},
		{"gemini other type ignored", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.Help","retryDelay":"34s"}]}}`, none},
		{"gemini no type ignored", nil, `{"error":{"details":[{"retryDelay":"34s"}]}}`, none},
		{"gemini delay without unit", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34"}]}}`, none},
		{"gemini delay number", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":34}]}}`, none},
		{"gemini negative delay", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"-3s"}]}}`, none},
		{"gemini truncated body", nil, geminiRetry34s[:60], none},
		{"not json", nil, "retryDelay 34s", none},
		{"text before json", nil, "upstream said: " + geminiRetry34s, none},
		{"details not array", nil, `{"error":{"details":{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34s"}}}`, none},

		// Combinations: the latest wins.
		{"retry-after vs openai", hdr("Retry-After", "10", "x-ratelimit-reset-tokens", "1m"), "", time.Minute},
		{"retry-after vs anthropic", hdr("Retry-After", "300", "anthropic-ratelimit-tokens-reset", rfc3339(30*time.Second)), "", 5 * time.Minute},
		{"retry-after vs ms", hdr("Retry-After", "1", "retry-after-ms", "1200"), "", 1200 * time.Millisecond},
		{"gemini vs retry-after", hdr("Retry-After", "10"), geminiRetry34s, 34 * time.Second},
		{"retry-after vs gemini", hdr("Retry-After", "100"), geminiRetry34s, 100 * time.Second},
		{"valid beats past and invalid", hdr(
			"Retry-After", httpDate(-time.Hour),
			"retry-after-ms", "nope",
			"anthropic-ratelimit-requests-reset", rfc3339(-time.Minute),
			"x-ratelimit-reset-requests", "3s"), "", 3 * time.Second},
		{"skipped bucket does not win", hdr(
			"Retry-After", "5",
			"x-ratelimit-reset-tokens", "1h",
			"x-ratelimit-remaining-tokens", "10"), "", 5 * time.Second},

		// Cap at MaxHintDelay.
		{"cap retry-after", hdr("Retry-After", "999999999"), "", MaxHintDelay},
		{"cap retry-after overflow", hdr("Retry-After", "99999999999999999999999999"), "", MaxHintDelay},
		{"cap retry-after date", hdr("Retry-After", httpDate(72*time.Hour)), "", MaxHintDelay},
		{"cap openai", hdr("x-ratelimit-reset-requests", "1000h"), "", MaxHintDelay},
		{"cap unified far future", hdr("anthropic-ratelimit-unified-reset", "99999999999999999999"), "", MaxHintDelay},
		{"cap gemini", nil, `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"100000s"}]}}`, MaxHintDelay},
		{"just under cap kept", hdr("Retry-After", strconv.Itoa(int(MaxHintDelay/time.Second)-1)), "", MaxHintDelay - time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			got, ok := ResetHint(tt.h, body, now)
			if tt.want == none {
				if ok {
					t.Fatalf("ResetHint = %v (now%+v), want no hint", got, got.Sub(now))
				}
				if !got.IsZero() {
					t.Fatalf("ResetHint returned %v with ok=false, want zero time", got)
				}
				return
			}
			if !ok {
				t.Fatalf("ResetHint found no hint, want now+%v", tt.want)
			}
			if want := now.Add(tt.want); !got.Equal(want) {
				t.Fatalf("ResetHint = now%+v, want now+%v", got.Sub(now), tt.want)
			}
		})
	}
}

// FuzzResetHint feeds arbitrary values to every hint family and arbitrary
// bodies: ResetHint must not panic, and any deadline it returns must lie in
// (now, now+MaxHintDelay].
func FuzzResetHint(f *testing.F) {
	f.Add("Retry-After", "30", "", []byte(nil))
	f.Add("retry-after-ms", "1.5", "", []byte(nil))
	f.Add("anthropic-ratelimit-tokens-reset", "2025-06-01T12:00:30Z", "0", []byte(nil))
	f.Add("anthropic-ratelimit-unified-5h-reset", "1748782800", "rejected", []byte(nil))
	f.Add("x-ratelimit-reset-requests", "2h3m4.5s", "0", []byte(nil))
	f.Add("x", "", "", []byte(geminiRetry34s))
	f.Add("x", "", "", []byte("["+geminiRetry34s+"]"))
	f.Add("Retry-After", "Sun, 01 Jun 2025 12:01:00 GMT", "", []byte(`[{"error":{"details":[{"@type":1}]}}`))
	f.Fuzz(func(t *testing.T, name, value, aux string, body []byte) {
		h := http.Header{}
		h[name] = []string{value}
		// The same value under every recognised family, with aux as the
		// matching remaining/status header.
		for _, n := range []string{
			"retry-after", "retry-after-ms",
			"anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-unified-reset",
			"anthropic-ratelimit-unified-7d-reset", "x-ratelimit-reset-tokens",
		} {
			h[n] = []string{value}
		}
		h["anthropic-ratelimit-tokens-remaining"] = []string{aux}
		h["anthropic-ratelimit-unified-status"] = []string{aux}
		h["x-ratelimit-remaining-tokens"] = []string{aux}
		got, ok := ResetHint(h, body, now)
		if !ok {
			if !got.IsZero() {
				t.Fatalf("ok=false with non-zero deadline %v", got)
			}
			return
		}
		if !got.After(now) || got.After(now.Add(MaxHintDelay)) {
			t.Fatalf("deadline now%+v outside (0, %v]", got.Sub(now), MaxHintDelay)
		}
	})
}
