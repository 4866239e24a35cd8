package pool

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

func quotaCred(providerName string) *Credential {
	return newCredential(&auth.Auth{ID: "a", Fields: auth.Fields{Provider: providerName, APIKey: "k"}})
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// TestRecordQuota is the table of every quota header form: Claude unified
// windows (fractions), Codex windows (percentages, reset-at and
// reset-after), API-key remaining/limit headers, missing and malformed
// values.
func TestRecordQuota(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name     string
		provider string
		h        http.Header
		want     string // JSON of Credential.Quota(); "null" for none
		used     float64
	}{
		{"claude unified windows", "claude", headers(
			"Anthropic-Ratelimit-Unified-5h-Utilization", "0.25",
			"Anthropic-Ratelimit-Unified-5h-Status", "allowed",
			"Anthropic-Ratelimit-Unified-5h-Reset", "1800003600",
			"Anthropic-Ratelimit-Unified-7d-Utilization", "0.6",
			"Anthropic-Ratelimit-Unified-7d-Status", "allowed_warning",
			"Anthropic-Ratelimit-Unified-7d-Reset", "1800100000",
			"Anthropic-Ratelimit-Unified-Status", "allowed",
			"Anthropic-Ratelimit-Unified-Reset", "1800003600",
			"Anthropic-Ratelimit-Unified-Representative-Claim", "five_hour"),
			`{"updated_at":"2027-01-15T08:00:00Z","status":"allowed","reset_at":"2027-01-15T09:00:00Z","representative_claim":"five_hour",` +
				`"windows":[{"name":"5h","utilization":0.25,"status":"allowed","reset_at":"2027-01-15T09:00:00Z"},` +
				`{"name":"7d","utilization":0.6,"status":"allowed_warning","reset_at":"2027-01-16T11:46:40Z"}]}`, 0.6},
		{"claude rejected window counts as full", "claude", headers(
			"Anthropic-Ratelimit-Unified-5h-Status", "rejected",
			"Anthropic-Ratelimit-Unified-5h-Reset", "1800003600"),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"5h","status":"rejected","reset_at":"2027-01-15T09:00:00Z"}]}`, 1},
		{"claude api key limits", "claude", headers(
			"Anthropic-Ratelimit-Requests-Remaining", "49",
			"Anthropic-Ratelimit-Requests-Limit", "50",
			"Anthropic-Ratelimit-Tokens-Remaining", "39000",
			"Anthropic-Ratelimit-Tokens-Limit", "40000",
			"Anthropic-Ratelimit-Input-Tokens-Limit", "30000"),
			`{"updated_at":"2027-01-15T08:00:00Z","limits":[{"kind":"requests","remaining":49,"limit":50},` +
				`{"kind":"tokens","remaining":39000,"limit":40000},{"kind":"input_tokens","limit":30000}]}`, 0},
		{"codex percent windows", "codex", headers(
			"X-Codex-Primary-Used-Percent", "97.5",
			"X-Codex-Primary-Window-Minutes", "300",
			"X-Codex-Primary-Reset-After-Seconds", "600",
			"X-Codex-Secondary-Used-Percent", "12",
			"X-Codex-Secondary-Window-Minutes", "10080",
			"X-Codex-Secondary-Reset-At", "1800500000"),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"primary","utilization":0.975,"reset_at":"2027-01-15T08:10:00Z","window_minutes":300},` +
				`{"name":"secondary","utilization":0.12,"reset_at":"2027-01-21T02:53:20Z","window_minutes":10080}]}`, 0.975},
		{"codex reset-at wins over reset-after", "codex", headers(
			"X-Codex-Primary-Used-Percent", "50",
			"X-Codex-Primary-Reset-At", "1800000060",
			"X-Codex-Primary-Reset-After-Seconds", "999"),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"primary","utilization":0.5,"reset_at":"2027-01-15T08:01:00Z"}]}`, 0.5},
		{"percent over 100 clamps to full", "codex", headers("X-Codex-Primary-Used-Percent", "140"),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"primary","utilization":1}]}`, 1},
		{"openai api key limits", "openai", headers(
			"X-Ratelimit-Remaining-Requests", "9999",
			"X-Ratelimit-Limit-Requests", "10000",
			"X-Ratelimit-Remaining-Tokens", "not-a-number",
			"X-Ratelimit-Limit-Tokens", "2000000"),
			`{"updated_at":"2027-01-15T08:00:00Z","limits":[{"kind":"requests","remaining":9999,"limit":10000},{"kind":"tokens","limit":2000000}]}`, 0},
		{"no quota headers", "claude", headers("Content-Type", "application/json"), `null`, 0},
		{"gemini reports none", "gemini", headers("X-Ratelimit-Remaining-Requests", "3"), `null`, 0},
		{"malformed everything", "claude", headers(
			"Anthropic-Ratelimit-Unified-5h-Utilization", "NaN",
			"Anthropic-Ratelimit-Unified-7d-Utilization", "-0.5",
			"Anthropic-Ratelimit-Unified-Status", "Allowed; <script>",
			"Anthropic-Ratelimit-Unified-Reset", "12",
			"Anthropic-Ratelimit-Unified-Representative-Claim", "a-very-long-claim-name-that-goes-on-and-on",
			"Anthropic-Ratelimit-Requests-Remaining", "-3"),
			`null`, 0},
		{"infinite and fraction-with-garbage", "codex", headers(
			"X-Codex-Primary-Used-Percent", "Inf",
			"X-Codex-Secondary-Used-Percent", "50%"),
			`null`, 0},
		{"an openai_compatible upstream cannot report subscription windows", "openai_compatible", headers(
			"X-Codex-Primary-Used-Percent", "100",
			"Anthropic-Ratelimit-Unified-5h-Utilization", "1"),
			`null`, 0},
		{"only the first of repeated values counts", "codex", func() http.Header {
			h := http.Header{}
			for i := range 1000 {
				h.Add("X-Codex-Primary-Used-Percent", strconv.Itoa(i))
			}
			return h
		}(),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"primary","utilization":0}]}`, 0},
		{"a status that is not a word is not recorded", "claude", headers(
			"Anthropic-Ratelimit-Unified-5h-Utilization", "0.5",
			"Anthropic-Ratelimit-Unified-5h-Status", "rejected\r\nx-evil: 1"),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"5h","utilization":0.5}]}`, 0.5},
		{"malformed reset is dropped, the window kept", "claude", headers(
			"Anthropic-Ratelimit-Unified-5h-Utilization", "0.97",
			"Anthropic-Ratelimit-Unified-5h-Reset", "tomorrow"),
			`{"updated_at":"2027-01-15T08:00:00Z","windows":[{"name":"5h","utilization":0.97}]}`, 0.97},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := quotaCred(tc.provider)
			c.RecordQuota(tc.h, now)
			got, err := json.Marshal(c.Quota())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("quota\n got %s\nwant %s", got, tc.want)
			}
			if u := c.QuotaUsed(now); u != tc.used {
				t.Errorf("QuotaUsed = %v, want %v", u, tc.used)
			}
		})
	}
}

// TestRecordQuotaKeepsUnreported: a response that reports only one window
// replaces that window and keeps the others; a window past its reset no
// longer counts for steering.
func TestRecordQuotaKeepsUnreported(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := quotaCred("claude")
	c.RecordQuota(headers("Anthropic-Ratelimit-Unified-5h-Utilization", "0.99", "Anthropic-Ratelimit-Unified-5h-Reset", "1800000100",
		"Anthropic-Ratelimit-Unified-7d-Utilization", "0.3"), now)
	c.RecordQuota(headers("Anthropic-Ratelimit-Unified-7d-Utilization", "0.4"), now.Add(time.Second))
	q := c.Quota()
	if len(q.Windows) != 2 || *q.Windows[0].Utilization != 0.99 || *q.Windows[1].Utilization != 0.4 {
		t.Fatalf("windows %+v", q.Windows)
	}
	if u := c.QuotaUsed(now.Add(99 * time.Second)); u != 0.99 {
		t.Errorf("before the 5h reset: QuotaUsed = %v", u)
	}
	if u := c.QuotaUsed(now.Add(100 * time.Second)); u != 0.4 {
		t.Errorf("after the 5h reset: QuotaUsed = %v, want the 7d window's 0.4", u)
	}
}

// TestRecordQuotaAllocs: recording a response without quota headers, or
// with them, allocates nothing; nor does reading the steering summary.
func TestRecordQuotaAllocs(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := quotaCred("claude")
	plain := headers("Content-Type", "application/json", "Request-Id", "x")
	withQuota := headers("Anthropic-Ratelimit-Unified-5h-Utilization", "0.5", "Anthropic-Ratelimit-Unified-5h-Status", "allowed",
		"Anthropic-Ratelimit-Unified-5h-Reset", "1800003600")
	for name, h := range map[string]http.Header{"plain": plain, "quota": withQuota} {
		if n := testing.AllocsPerRun(100, func() { c.RecordQuota(h, now) }); n != 0 {
			t.Errorf("%s: RecordQuota allocates %v times", name, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.QuotaUsed(now) }); n != 0 {
		t.Errorf("QuotaUsed allocates %v times", n)
	}
}
