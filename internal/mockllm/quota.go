package mockllm

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Quota is what the mock reports about one credential's usage limits in
// response headers, on every response it sends for that credential
// (success, error or fault), the way the real upstreams do (SPEC section
// 13): Anthropic requests get Claude's unified window headers
// (anthropic-ratelimit-unified-5h-* and -7d-*, utilization as a fraction),
// OpenAI requests get Codex's (x-codex-primary-* and -secondary-*, used
// percent); both get the API-key remaining/limit request headers when
// LimitRequests is set.
type Quota struct {
	// Primary and Secondary are the shares used, 0..1, of the short window
	// (Claude 5h, Codex primary) and the long one (Claude 7d, Codex
	// secondary).
	Primary   float64 `json:"primary"`
	Secondary float64 `json:"secondary"`
	// Status is every window's status; "" means "allowed".
	Status string `json:"status,omitempty"`
	// ResetAt is when the short window resets; zero means an hour after
	// the response. The long window resets a week after the response.
	ResetAt time.Time `json:"reset_at,omitzero"`
	// RemainingRequests and LimitRequests are sent as the API-key request
	// limits when LimitRequests > 0.
	RemainingRequests int `json:"remaining_requests,omitempty"`
	LimitRequests     int `json:"limit_requests,omitempty"`
}

// quotas holds the Quota of each credential key or label.
type quotas struct {
	mu sync.RWMutex
	m  map[string]Quota
	n  atomic.Int32
}

func (s *Server) quotas() *quotas { return &s.quota }

// SetQuota makes every later response for the credential key (or label)
// report q in its quota headers.
func (s *Server) SetQuota(key string, q Quota) {
	qs := s.quotas()
	qs.mu.Lock()
	if qs.m == nil {
		qs.m = make(map[string]Quota)
	}
	qs.m[key] = q
	qs.n.Store(int32(len(qs.m)))
	qs.mu.Unlock()
}

// ClearQuota stops reporting quota for key; "" clears every credential's.
func (s *Server) ClearQuota(key string) {
	qs := s.quotas()
	qs.mu.Lock()
	if key == "" {
		clear(qs.m)
	} else {
		delete(qs.m, key)
	}
	qs.n.Store(int32(len(qs.m)))
	qs.mu.Unlock()
}

// Quotas returns the configured quotas, by key or label.
func (s *Server) Quotas() map[string]Quota {
	qs := s.quotas()
	qs.mu.RLock()
	defer qs.mu.RUnlock()
	out := make(map[string]Quota, len(qs.m))
	for k, q := range qs.m {
		out[k] = q
	}
	return out
}

// writeQuotaHeaders sets the quota headers of the credential (by key, then
// label) on the response about to be written.
func (s *Server) writeQuotaHeaders(h http.Header, fam family, key, label string) {
	qs := s.quotas()
	if qs.n.Load() == 0 {
		return
	}
	qs.mu.RLock()
	q, ok := qs.m[key]
	if !ok {
		q, ok = qs.m[label]
	}
	qs.mu.RUnlock()
	if !ok {
		return
	}
	now := time.Now()
	reset := q.ResetAt
	if reset.IsZero() {
		reset = now.Add(time.Hour)
	}
	long := now.Add(7 * 24 * time.Hour)
	status := q.Status
	if status == "" {
		status = "allowed"
	}
	unix := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	frac := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	if fam == famAnthropic {
		claim := "five_hour"
		if q.Secondary > q.Primary {
			claim = "seven_day"
		}
		h.Set("Anthropic-Ratelimit-Unified-Status", status)
		h.Set("Anthropic-Ratelimit-Unified-Reset", unix(reset))
		h.Set("Anthropic-Ratelimit-Unified-Representative-Claim", claim)
		h.Set("Anthropic-Ratelimit-Unified-5h-Utilization", frac(q.Primary))
		h.Set("Anthropic-Ratelimit-Unified-5h-Status", status)
		h.Set("Anthropic-Ratelimit-Unified-5h-Reset", unix(reset))
		h.Set("Anthropic-Ratelimit-Unified-7d-Utilization", frac(q.Secondary))
		h.Set("Anthropic-Ratelimit-Unified-7d-Status", status)
		h.Set("Anthropic-Ratelimit-Unified-7d-Reset", unix(long))
		if q.LimitRequests > 0 {
			h.Set("Anthropic-Ratelimit-Requests-Remaining", strconv.Itoa(q.RemainingRequests))
			h.Set("Anthropic-Ratelimit-Requests-Limit", strconv.Itoa(q.LimitRequests))
		}
		return
	}
	h.Set("X-Codex-Primary-Used-Percent", frac(q.Primary*100))
	h.Set("X-Codex-Primary-Window-Minutes", "300")
	h.Set("X-Codex-Primary-Reset-After-Seconds", strconv.FormatInt(int64(reset.Sub(now)/time.Second), 10))
	h.Set("X-Codex-Primary-Reset-At", unix(reset))
	h.Set("X-Codex-Secondary-Used-Percent", frac(q.Secondary*100))
	h.Set("X-Codex-Secondary-Window-Minutes", "10080")
	h.Set("X-Codex-Secondary-Reset-At", unix(long))
	if q.LimitRequests > 0 {
		h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(q.RemainingRequests))
		h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(q.LimitRequests))
	}
}

// quotaRequest is the JSON body of POST /_mock/quota.
type quotaRequest struct {
	Key string `json:"key"`
	Quota
}

// serveQuotaControl serves /_mock/quota:
//
//	GET    /_mock/quota  configured quotas (JSON object by key)
//	POST   /_mock/quota  set one: {"key": "k", "primary": 0.97, "secondary": 0.2}
//	DELETE /_mock/quota  clear all (?key=K: only K's)
func (s *Server) serveQuotaControl(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeControlJSON(w, http.StatusOK, s.Quotas())
	case http.MethodPost:
		var qr quotaRequest
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			err = json.Unmarshal(body, &qr)
		}
		if err == nil && qr.Key == "" {
			err = mockError(`"key" is required (a credential key or label)`)
		}
		if err != nil {
			writeControlJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.SetQuota(qr.Key, qr.Quota)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		s.ClearQuota(r.URL.Query().Get("key"))
		w.WriteHeader(http.StatusNoContent)
	default:
		writeControlJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
	}
}
