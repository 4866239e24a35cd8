package pool

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/provider"
)

// The quota state of one credential is bounded: at most maxQuotaWindows
// usage windows and maxQuotaLimits rate limits, whatever the upstream sends.
const (
	maxQuotaWindows = 2
	maxQuotaLimits  = 4
	// maxQuotaToken bounds a recorded status or claim ("allowed",
	// "five_hour"); a longer or odd value is not recorded.
	maxQuotaToken = 32
)

// quotaState is what a credential's upstream last reported about its usage
// limits in response headers (SPEC section 13). Its fields live in fixed
// arrays, so recording allocates nothing; the steering summary (used,
// resetAt) is read without a lock.
type quotaState struct {
	mu       sync.Mutex
	updated  time.Time // zero: nothing recorded yet
	status   string
	claim    string
	resetAt  int64 // unix seconds; 0: not reported
	windows  [maxQuotaWindows]windowReading
	limits   [maxQuotaLimits]limitReading
	used     [maxQuotaWindows]atomic.Uint64 // float64 bits of the window's effective fraction used
	usedTill [maxQuotaWindows]atomic.Int64  // unix seconds the window resets at; 0: unknown
}

// windowReading is one usage window as reported.
type windowReading struct {
	set     bool
	hasUsed bool
	used    float64 // fraction, 0..1
	status  string
	resetAt int64 // unix seconds; 0: not reported
	minutes int64
}

// limitReading is one rate limit as reported; -1: not reported.
type limitReading struct {
	set              bool
	remaining, limit int64
}

// quotaReading is what one response reported, parsed before the
// credential's lock is taken.
type quotaReading struct {
	any     bool
	status  string
	claim   string
	resetAt int64
	windows [maxQuotaWindows]windowReading
	limits  [maxQuotaLimits]limitReading
}

// RecordQuota records the quota headers of a response from the
// credential's upstream (success or not), as its provider names them.
// Headers the response lacks keep their last value: a window or limit is
// replaced only when the response reports it. A response without quota
// headers changes nothing and allocates nothing; malformed values are
// ignored.
func (c *Credential) RecordQuota(h http.Header, now time.Time) {
	p := provider.Lookup(c.Auth().Provider)
	if p == nil || p.Quota.Empty() || len(h) == 0 {
		return
	}
	var r quotaReading
	readQuota(&p.Quota, h, now, &r)
	if !r.any {
		return
	}
	q := &c.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	q.updated = now
	if r.status != "" {
		q.status = r.status
	}
	if r.claim != "" {
		q.claim = r.claim
	}
	if r.resetAt != 0 {
		q.resetAt = r.resetAt
	}
	for i, w := range r.windows {
		if !w.set {
			continue
		}
		q.windows[i] = w
		q.used[i].Store(math.Float64bits(w.effective()))
		q.usedTill[i].Store(w.resetAt)
	}
	for i, l := range r.limits {
		if l.set {
			q.limits[i] = l
		}
	}
}

// effective is the share of the window steering counts as used: 1 once the
// window says it is rejected, else what it reported.
func (w windowReading) effective() float64 {
	if w.status == "rejected" {
		return 1
	}
	if w.hasUsed {
		return w.used
	}
	return 0
}

// readQuota parses the headers q names from h into r.
func readQuota(q *provider.Quota, h http.Header, now time.Time, r *quotaReading) {
	r.status = quotaToken(q.Value(h, q.Status))
	r.claim = quotaToken(q.Value(h, q.Claim))
	r.resetAt = unixSeconds(q.Value(h, q.ResetAt))
	r.any = r.status != "" || r.claim != "" || r.resetAt != 0
	for i, w := range q.Windows {
		if i == maxQuotaWindows {
			break
		}
		if r.windows[i] = readWindow(q, w, h, now); r.windows[i].set {
			r.any = true
		}
	}
	for i, l := range q.Limits {
		if i == maxQuotaLimits {
			break
		}
		rem, lim := count(q.Value(h, l.Remaining)), count(q.Value(h, l.Limit))
		if rem >= 0 || lim >= 0 {
			r.limits[i] = limitReading{set: true, remaining: rem, limit: lim}
			r.any = true
		}
	}
}

// readWindow parses one usage window. It counts as reported when its share
// used or its status is.
func readWindow(q *provider.Quota, w provider.QuotaWindow, h http.Header, now time.Time) windowReading {
	var r windowReading
	r.used, r.hasUsed = fraction(q.Value(h, w.Used), w.UsedFull)
	r.status = quotaToken(q.Value(h, w.Status))
	if !r.hasUsed && r.status == "" {
		return windowReading{}
	}
	r.set = true
	r.resetAt = unixSeconds(q.Value(h, w.ResetAt))
	if r.resetAt == 0 {
		if after := count(q.Value(h, w.ResetAfter)); after >= 0 && after <= maxQuotaSeconds {
			r.resetAt = now.Unix() + after
		}
	}
	if m := count(q.Value(h, w.Minutes)); m > 0 && m <= maxQuotaSeconds/60 {
		r.minutes = m
	}
	return r
}

// maxQuotaSeconds bounds reset times and window lengths: a year.
const maxQuotaSeconds = 366 * 24 * 3600

// fraction parses a share used, full being its value when exhausted (1 or
// 100), as a fraction clamped to 0..1.
func fraction(s string, full float64) (float64, bool) {
	if s == "" || full <= 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, false
	}
	return min(f/full, 1), true
}

// unixSeconds parses a time in unix seconds; 0 when absent or implausible
// (before 2000 or after 2200).
func unixSeconds(s string) int64 {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0
		}
		n = int64(f)
	}
	if n < 946684800 || n > 7258118400 {
		return 0
	}
	return n
}

// count parses a non-negative integer; -1 when absent or malformed.
func count(s string) int64 {
	if s == "" {
		return -1
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// quotaToken returns s when it is a short lower-case word (letters, digits,
// '_' and '-'), else "": statuses and claims are recorded only as such.
func quotaToken(s string) string {
	if len(s) == 0 || len(s) > maxQuotaToken {
		return ""
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if (b < 'a' || b > 'z') && (b < '0' || b > '9') && b != '_' && b != '-' {
			return ""
		}
	}
	return s
}

// QuotaUsed returns the largest share (0..1) of its usage windows the
// credential's upstream last reported as used, counting a rejected window
// as full and ignoring windows that have reset by now. It is 0 when
// nothing was reported. It takes no lock and does not allocate.
func (c *Credential) QuotaUsed(now time.Time) float64 {
	q := &c.quota
	sec := now.Unix()
	used := 0.0
	for i := range q.used {
		if till := q.usedTill[i].Load(); till != 0 && sec >= till {
			continue
		}
		used = max(used, math.Float64frombits(q.used[i].Load()))
	}
	return used
}

// Quota is a credential's quota state as the admin API shows it.
type Quota struct {
	// UpdatedAt is when a response last reported any of it.
	UpdatedAt time.Time `json:"updated_at"`
	// Status, ResetAt and RepresentativeClaim are the subscription-wide
	// status, its reset and the window that binds (Claude).
	Status              string    `json:"status,omitempty"`
	ResetAt             time.Time `json:"reset_at,omitzero"`
	RepresentativeClaim string    `json:"representative_claim,omitempty"`
	// Windows are the usage windows reported.
	Windows []QuotaWindow `json:"windows,omitempty"`
	// Limits are the API-key rate limits reported.
	Limits []QuotaLimit `json:"limits,omitempty"`
}

// QuotaWindow is one usage window.
type QuotaWindow struct {
	Name string `json:"name"`
	// Utilization is the share used, 0..1 (a percentage is divided by 100).
	Utilization *float64  `json:"utilization,omitempty"`
	Status      string    `json:"status,omitempty"`
	ResetAt     time.Time `json:"reset_at,omitzero"`
	// WindowMinutes is the window's length, when reported (Codex).
	WindowMinutes int64 `json:"window_minutes,omitempty"`
}

// QuotaLimit is one API-key rate limit; a nil field was not reported.
type QuotaLimit struct {
	Kind      string `json:"kind"`
	Remaining *int64 `json:"remaining,omitempty"`
	Limit     *int64 `json:"limit,omitempty"`
}

// Quota returns the credential's quota state, or nil when its upstream
// never reported any.
func (c *Credential) Quota() *Quota {
	p := provider.Lookup(c.Auth().Provider)
	q := &c.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.updated.IsZero() || p == nil {
		return nil
	}
	out := &Quota{UpdatedAt: q.updated, Status: q.status, RepresentativeClaim: q.claim, ResetAt: unixTime(q.resetAt)}
	for i, w := range q.windows {
		if !w.set || i >= len(p.Quota.Windows) {
			continue
		}
		v := QuotaWindow{Name: p.Quota.Windows[i].Name, Status: w.status, ResetAt: unixTime(w.resetAt), WindowMinutes: w.minutes}
		if w.hasUsed {
			used := w.used
			v.Utilization = &used
		}
		out.Windows = append(out.Windows, v)
	}
	for i, l := range q.limits {
		if !l.set || i >= len(p.Quota.Limits) {
			continue
		}
		out.Limits = append(out.Limits, QuotaLimit{Kind: p.Quota.Limits[i].Kind, Remaining: known(l.remaining), Limit: known(l.limit)})
	}
	return out
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func known(n int64) *int64 {
	if n < 0 {
		return nil
	}
	return &n
}
