package failure

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestClassifyQuotaWindows covers every header and body form of a
// subscription's usage window refusing a credential.
func TestClassifyQuotaWindows(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]} // spelt as given, as some upstreams do
		}
		return h
	}
	const p = "Anthropic-Ratelimit-Unified-"
	for _, tc := range []struct {
		name   string
		model  string
		header http.Header
		body   string
		scope  Scope
		family string
		until  time.Duration // 0: zero Until
		reason string
	}{
		{"5h rejected", "claude-sonnet-4-5", hdr(p+"Status", "rejected", p+"Reset", unix(2*time.Hour),
			p+"5h-Status", "rejected", p+"5h-Reset", unix(2*time.Hour), p+"7d-Status", "allowed", p+"7d-Reset", unix(90*time.Hour)),
			"", ScopeAll, "", 2 * time.Hour, ReasonQuotaExhausted},
		{"7d rejected, lower case names", "claude-opus-4-1", hdr("anthropic-ratelimit-unified-7d-status", "rejected",
			"anthropic-ratelimit-unified-7d-reset", unix(20*time.Hour), "anthropic-ratelimit-unified-5h-status", "allowed",
			"anthropic-ratelimit-unified-5h-reset", unix(time.Hour)),
			"", ScopeAll, "", 20 * time.Hour, ReasonQuotaExhausted},
		{"5h and 7d rejected: the later reset", "m", hdr(p+"5h-Status", "rejected", p+"5h-Reset", unix(time.Hour),
			p+"7d-Status", "rejected", p+"7d-Reset", unix(3*time.Hour)),
			"", ScopeAll, "", 3 * time.Hour, ReasonQuotaExhausted},
		{"7d reset beyond the cap", "m", hdr(p+"7d-Status", "rejected", p+"7d-Reset", unix(100*time.Hour)),
			"", ScopeAll, "", MaxHintDelay, ReasonQuotaExhausted},
		{"7d reset as RFC 3339", "m", hdr(p+"7d-Status", "rejected", p+"7d-Reset", now.Add(5*time.Hour).Format(time.RFC3339)),
			"", ScopeAll, "", 5 * time.Hour, ReasonQuotaExhausted},
		{"overall rejected alone", "claude-haiku-4-5", hdr(p+"Status", "rejected", p+"Reset", unix(40*time.Minute)),
			"", ScopeAll, "", 40 * time.Minute, ReasonQuotaExhausted},
		{"overall rejected, reset missing: Retry-After", "m", hdr(p+"Status", "rejected", "Retry-After", "30"),
			"", ScopeAll, "", 30 * time.Second, ReasonQuotaExhausted},
		{"overall rejected, no reset at all", "m", hdr(p+"Status", "rejected"),
			"", ScopeAll, "", 0, ReasonQuotaExhausted},
		{"7d_sonnet rejected for a sonnet model", "claude-sonnet-4-5-20250929", hdr(p+"Status", "rejected", p+"Reset", unix(20*time.Hour),
			p+"5h-Status", "allowed", p+"5h-Reset", unix(time.Hour), p+"7d-Status", "allowed", p+"7d-Reset", unix(90*time.Hour),
			p+"7d_sonnet-Status", "rejected", p+"7d_sonnet-Reset", unix(20*time.Hour)),
			"", ScopeFamily, "sonnet", 20 * time.Hour, ReasonQuotaExhausted},
		{"7d_opus rejected for an older opus name", "claude-3-opus-latest", hdr(p+"7d_opus-Status", "rejected", p+"7d_opus-Reset", unix(7*time.Hour),
			p+"5h-Status", "allowed_warning"),
			"", ScopeFamily, "opus", 7 * time.Hour, ReasonQuotaExhausted},
		{"7d_oi rejected: no family in the model name, the model only", "claude-opus-4-1", hdr(p+"Status", "rejected",
			p+"5h-Status", "allowed", p+"7d-Status", "allowed", p+"7d_oi-Status", "rejected", p+"7d_oi-Reset", unix(9*time.Hour)),
			"", ScopeModel, "", 9 * time.Hour, ReasonQuotaExhausted},
		{"7d_sonnet rejected for a request without a model", "", hdr(p+"7d_sonnet-Status", "rejected", p+"7d_sonnet-Reset", unix(time.Hour)),
			"", ScopeNone, "", 0, ReasonQuotaExhausted},
		{"every window allowed: an ordinary 429", "m", hdr(p+"Status", "allowed", p+"5h-Status", "allowed", p+"5h-Reset", unix(time.Hour),
			"Retry-After", "7"),
			"", ScopeModel, "", 7 * time.Second, ReasonRateLimited},
		{"a hostile family name cannot widen the scope", "claude-sonnet-4", hdr(p+"7d_-Status", "rejected", p+"7d_-Reset", unix(time.Hour)),
			"", ScopeAll, "", time.Hour, ReasonQuotaExhausted},
		{"codex resets_at", "gpt-5-codex", nil,
			`{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_at":` + unix(3*time.Hour) + `,"resets_in_seconds":99}}`,
			ScopeAll, "", 3 * time.Hour, ReasonQuotaExhausted},
		{"codex resets_in_seconds", "gpt-5", nil,
			`{"error":{"type":"usage_limit_reached","resets_in_seconds":5400}}`,
			ScopeAll, "", 90 * time.Minute, ReasonQuotaExhausted},
		{"codex resets_in_seconds as a string", "gpt-5", nil,
			`{"error":{"type":"usage_limit_reached","resets_in_seconds":"60"}}`,
			ScopeAll, "", time.Minute, ReasonQuotaExhausted},
		{"codex top-level type", "gpt-5", nil,
			`{"type":"usage_limit_reached","resets_in_seconds":120}`,
			ScopeAll, "", 2 * time.Minute, ReasonQuotaExhausted},
		{"codex code field", "gpt-5", nil,
			`{"error":{"code":"usage_limit_reached","resets_at":` + unix(time.Minute) + `}}`,
			ScopeAll, "", time.Minute, ReasonQuotaExhausted},
		{"codex without a reset: Retry-After", "gpt-5", hdr("Retry-After", "15"),
			`{"error":{"type":"usage_limit_reached"}}`,
			ScopeAll, "", 15 * time.Second, ReasonQuotaExhausted},
		{"codex reset in the past: no deadline", "gpt-5", nil,
			`{"error":{"type":"usage_limit_reached","resets_at":` + unix(-time.Hour) + `}}`,
			ScopeAll, "", 0, ReasonQuotaExhausted},
		{"codex reset a year away: capped", "gpt-5", nil,
			`{"error":{"type":"usage_limit_reached","resets_in_seconds":31536000}}`,
			ScopeAll, "", MaxHintDelay, ReasonQuotaExhausted},
		{"usage_limit_reached quoted in a message is not one", "gpt-5", nil,
			`{"error":{"type":"invalid_request_error","message":"usage_limit_reached"}}`,
			ScopeModel, "", 0, ReasonRateLimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			v := Classify(testPolicy, gen(tc.model), Attempt{Status: 429, Header: tc.header, Body: body}, now)
			if v.Action != Failover || v.Scope != tc.scope || v.Family != tc.family || v.Reason != tc.reason {
				t.Fatalf("got %v %v family %q %q, want failover %v family %q %q", v.Action, v.Scope, v.Family, v.Reason, tc.scope, tc.family, tc.reason)
			}
			var want time.Time
			if tc.until != 0 {
				want = now.Add(tc.until)
			}
			if !v.Until.Equal(want) || v.Hinted != (tc.until != 0) {
				t.Fatalf("until %v (hinted %v), want %v", v.Until, v.Hinted, want)
			}
		})
	}
}

// TestQuotaOnlyOn429: the window headers of a success or of another error
// status change nothing.
func TestQuotaOnlyOn429(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := http.Header{"Anthropic-Ratelimit-Unified-5h-Status": {"rejected"}, "Anthropic-Ratelimit-Unified-5h-Reset": {"1800003600"}}
	if v := Classify(testPolicy, gen("m"), Attempt{Status: 200, Header: h}, now); v.Action != Success {
		t.Fatalf("200: %+v", v)
	}
	if v := Classify(testPolicy, gen("m"), Attempt{Status: 400, Header: h, Body: []byte(`{"error":{"type":"usage_limit_reached"}}`)}, now); v.Action != Return {
		t.Fatalf("400: %+v", v)
	}
}

func TestInFamily(t *testing.T) {
	for _, tc := range []struct {
		model, family string
		want          bool
	}{
		{"claude-sonnet-4-5", "sonnet", true},
		{"claude-3-5-Sonnet-latest", "sonnet", true},
		{"claude-sonnet-4-5", "SONNET", true},
		{"claude-opus-4-1", "sonnet", false},
		{"sonnetx-1", "sonnet", false},
		{"claude-opus-4-1", "oi", false},
		{"m", "", false},
	} {
		if got := InFamily(tc.model, tc.family); got != tc.want {
			t.Errorf("InFamily(%q, %q) = %v", tc.model, tc.family, got)
		}
	}
	if got := Families("claude-3-5-Sonnet-latest"); len(got) != 3 || got[0] != "claude" || got[1] != "sonnet" || got[2] != "latest" {
		t.Fatalf("Families: %q", got)
	}
}

func TestStreamRejection(t *testing.T) {
	for _, tc := range []struct {
		name, event, data string
		status            int
		body              string
	}{
		{"anthropic overloaded", "error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, 529, ""},
		{"anthropic rate limit, no event name", "", `{"type":"error","error":{"type":"rate_limit_error","message":"x"}}`, 429, ""},
		{"anthropic other error", "error", `{"type":"error","error":{"type":"api_error","message":"x"}}`, 0, ""},
		{"responses rate limit", "response.failed", `{"type":"response.failed","response":{"id":"r","error":{"code":"rate_limit_exceeded","message":"slow down"}}}`,
			429, `{"error":{"code":"rate_limit_exceeded","message":"slow down"}}`},
		{"codex usage limit", "", `{"type":"response.failed","response":{"error":{"type":"usage_limit_reached","resets_in_seconds":60}}}`,
			429, `{"error":{"type":"usage_limit_reached","resets_in_seconds":60}}`},
		{"responses server error", "", `{"type":"response.failed","response":{"error":{"code":"server_error"}}}`, 0, ""},
		{"output", "content_block_delta", `{"type":"content_block_delta"}`, 0, ""},
		{"not json", "error", `overloaded_error`, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, ok := StreamRejection(tc.event, []byte(tc.data))
			if ok != (tc.status != 0) || status != tc.status {
				t.Fatalf("got %d %v, want %d", status, ok, tc.status)
			}
			want := tc.body
			if want == "" && ok {
				want = tc.data
			}
			if string(body) != want {
				t.Fatalf("body %s, want %s", body, want)
			}
		})
	}
	// A usage limit in a stream cools the credential as the status would.
	now := time.Unix(1_800_000_000, 0)
	status, body, _ := StreamRejection("", []byte(`{"type":"response.failed","response":{"error":{"type":"usage_limit_reached","resets_in_seconds":60}}}`))
	v := Classify(testPolicy, gen("gpt-5"), Attempt{Status: status, Body: body}, now)
	if v.Scope != ScopeAll || !v.Until.Equal(now.Add(time.Minute)) {
		t.Fatalf("%+v", v)
	}
}
