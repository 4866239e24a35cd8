package mockllm

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// AnyKey is the fault key that matches every credential. A fault set for a
// request's key or label takes precedence over it.
const AnyKey = "*"

// Fault is an injected failure for the requests of one credential.
type Fault struct {
	// Status, when non-zero, answers with this status and Body instead of a
	// normal response.
	Status int `json:"status,omitempty"`
	// Headers are added to the response (a faulted or a normal one).
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the error body; by default the provider's error shape for Status.
	Body string `json:"body,omitempty"`
	// Delay is waited before the response headers are written.
	Delay time.Duration `json:"delay,omitempty"`
	// Times limits the fault to the next Times requests; 0 means forever.
	Times int `json:"times,omitempty"`
	// DropAfterEvents, for a normal response, sends that many SSE events (or
	// Gemini JSON-array chunks; for a non-streaming response, half of the
	// body) and then closes the connection abruptly.
	DropAfterEvents int `json:"drop_after_events,omitempty"`
	// Refuse closes the connection without any response.
	Refuse bool `json:"refuse,omitempty"`
	// RevokedKey answers as the provider answers a revoked or expired key:
	// Gemini with 400 INVALID_ARGUMENT "API key not valid" and a
	// google.rpc.ErrorInfo of reason API_KEY_INVALID (not 401: that is how
	// Gemini refuses keys), Anthropic and OpenAI with their 401 invalid-key
	// errors.
	RevokedKey bool `json:"revoked_key,omitempty"`
	// StreamError, for a normal streamed response, replaces the event
	// after the first StreamErrorAfter events by a rejection of that kind
	// (StreamOverloaded, StreamRateLimit, StreamUsageLimit) and ends the
	// stream, as providers reject inside an HTTP 200 stream.
	StreamError      string `json:"stream_error,omitempty"`
	StreamErrorAfter int    `json:"stream_error_after,omitempty"`
	// StreamResetsIn is the resets_in_seconds of a StreamUsageLimit.
	StreamResetsIn int `json:"stream_resets_in,omitempty"`
}

// faultEntry is a configured fault with its remaining use count.
type faultEntry struct {
	f       Fault
	limited bool
	left    atomic.Int64
}

// take consumes one use of the fault and reports whether it applies.
func (e *faultEntry) take() bool {
	if !e.limited {
		return true
	}
	for {
		n := e.left.Load()
		if n <= 0 {
			return false
		}
		if e.left.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// SetFault injects f into the requests carrying key (a credential key, its
// label, or AnyKey), replacing any fault set for key before.
func (s *Server) SetFault(key string, f Fault) {
	e := &faultEntry{f: f, limited: f.Times > 0}
	e.left.Store(int64(f.Times))
	s.faultMu.Lock()
	s.faults[key] = e
	s.faultCount.Store(int32(len(s.faults)))
	s.faultMu.Unlock()
}

// ClearFault removes the fault set for key.
func (s *Server) ClearFault(key string) {
	s.faultMu.Lock()
	delete(s.faults, key)
	s.faultCount.Store(int32(len(s.faults)))
	s.faultMu.Unlock()
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.faultMu.Lock()
	clear(s.faults)
	s.faultCount.Store(0)
	s.faultMu.Unlock()
}

// Faults returns the configured faults by key, with Times set to the
// remaining uses of limited faults.
func (s *Server) Faults() map[string]Fault {
	s.faultMu.RLock()
	defer s.faultMu.RUnlock()
	out := make(map[string]Fault, len(s.faults))
	for k, e := range s.faults {
		f := e.f
		if e.limited {
			f.Times = int(e.left.Load())
		}
		out[k] = f
	}
	return out
}

// takeFault finds the fault for a request by key, then label, then AnyKey,
// and consumes one of its uses.
func (s *Server) takeFault(key, label string) (Fault, bool) {
	s.faultMu.RLock()
	defer s.faultMu.RUnlock()
	for _, k := range [...]string{key, label, AnyKey} {
		if e, ok := s.faults[k]; ok {
			if e.take() {
				return e.f, true
			}
			// An exhausted fault for the key itself hides nothing: fall through.
		}
	}
	return Fault{}, false
}

// applyFault carries out f before the normal response. It reports whether
// the normal response should still be written.
func (c *call) applyFault(f *Fault) bool {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			c.cancelled()
			return false
		case <-t.C:
		}
	}
	if f.Refuse {
		refuse(c.w)
		return false
	}
	h := c.w.Header()
	for k, v := range f.Headers {
		h.Set(k, v)
	}
	if f.RevokedKey {
		c.writeRevokedKey()
		return false
	}
	if f.Status != 0 && f.Status != http.StatusOK {
		if f.Body != "" {
			if h.Get("Content-Type") == "" {
				h["Content-Type"] = ctJSON
			}
			h["Content-Length"] = []string{strconv.Itoa(len(f.Body))}
			c.w.WriteHeader(f.Status)
			_, _ = c.w.Write([]byte(f.Body))
			return false
		}
		c.writeError(f.Status, defaultMessage(c.fam, f.Status))
		return false
	}
	c.drop = f.DropAfterEvents
	c.reject = streamReject{kind: f.StreamError, after: f.StreamErrorAfter, resetsIn: f.StreamResetsIn}
	return true
}

// writeRevokedKey answers as the request's provider answers a key it no
// longer accepts.
func (c *call) writeRevokedKey() {
	if c.fam != famGemini {
		c.writeError(http.StatusUnauthorized, invalidKeyMessage(c.fam))
		return
	}
	bp := getBuf()
	b := append((*bp)[:0], `{"error":{"code":400,"message":`...)
	b = appendString(b, invalidKeyMessage(famGemini))
	b = append(b, `,"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",`+
		`"reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}},`+
		`{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":`...)
	b = appendString(b, invalidKeyMessage(famGemini))
	*bp = append(b, `}]}}`...)
	c.writeBody(http.StatusBadRequest, *bp)
	putBuf(bp)
}

// refuse closes the client connection without a response.
func refuse(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a wrapper without Hijack: make net/http reset the stream.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// abort ends the response abruptly: the client sees a truncated body.
func abort() {
	panic(http.ErrAbortHandler)
}

// writeError writes msg as an error of the request's API family.
func (c *call) writeError(status int, msg string) {
	bp := getBuf()
	*bp = appendError((*bp)[:0], c.fam, status, msg)
	c.writeBody(status, *bp)
	putBuf(bp)
}

// appendError appends the error body of family fam for status.
func appendError(b []byte, fam family, status int, msg string) []byte {
	switch fam {
	case famAnthropic:
		b = append(b, `{"type":"error","error":{"type":"`...)
		b = append(b, anthropicErrorType(status)...)
		b = append(b, `","message":`...)
		b = appendString(b, msg)
		b = append(b, `},"request_id":"req_`...)
		b = appendRandom(b, 24)
		return append(b, `"}`...)
	case famGemini:
		b = append(b, `{"error":{"code":`...)
		b = appendInt(b, status)
		b = append(b, `,"message":`...)
		b = appendString(b, msg)
		b = append(b, `,"status":"`...)
		b = append(b, geminiStatus(status)...)
		return append(b, `"}}`...)
	default:
		typ, code := openAIErrorType(status)
		b = append(b, `{"error":{"message":`...)
		b = appendString(b, msg)
		b = append(b, `,"type":"`...)
		b = append(b, typ...)
		b = append(b, `","param":null,"code":`...)
		if code == "" {
			b = append(b, "null"...)
		} else {
			b = appendString(b, code)
		}
		return append(b, `}}`...)
	}
}

func anthropicErrorType(status int) string {
	switch status {
	case 400, 405, 422:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 408, 504:
		return "timeout_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 529, 503:
		return "overloaded_error"
	}
	return "api_error"
}

func openAIErrorType(status int) (typ, code string) {
	switch status {
	case 401:
		return "invalid_request_error", "invalid_api_key"
	case 403:
		return "invalid_request_error", "unsupported_country_region_territory"
	case 404:
		return "invalid_request_error", "model_not_found"
	case 429:
		return "requests", "rate_limit_exceeded"
	case 500, 502, 503, 504, 529:
		return "server_error", ""
	}
	if status >= 500 {
		return "server_error", ""
	}
	return "invalid_request_error", ""
}

func geminiStatus(status int) string {
	switch status {
	case 400, 405, 413, 422:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 408, 504:
		return "DEADLINE_EXCEEDED"
	case 409:
		return "ABORTED"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 501:
		return "UNIMPLEMENTED"
	case 503, 529:
		return "UNAVAILABLE"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "FAILED_PRECONDITION"
}

// defaultMessage is the error message used for an injected status.
func defaultMessage(fam family, status int) string {
	switch status {
	case 401:
		return invalidKeyMessage(fam)
	case 429:
		switch fam {
		case famAnthropic:
			return "This request would exceed your organization's rate limit. (mock)"
		case famGemini:
			return "Resource has been exhausted (e.g. check quota). (mock)"
		}
		return "Rate limit reached for requests. (mock)"
	case 529:
		return "Overloaded"
	}
	return statusText(status) + " (mock)"
}

func missingKeyMessage(fam family) string {
	switch fam {
	case famAnthropic:
		return "x-api-key header is required"
	case famGemini:
		return "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
	}
	return "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
}

func invalidKeyMessage(fam family) string {
	switch fam {
	case famAnthropic:
		return "invalid x-api-key"
	case famGemini:
		return "API key not valid. Please pass a valid API key."
	}
	return "Incorrect API key provided (invalid x-api-key)."
}
