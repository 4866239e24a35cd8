package mockllm

// Kinds of Fault.StreamError: the rejection a provider may send inside an
// HTTP 200 event stream.
const (
	// StreamOverloaded is Anthropic's overloaded_error event (for the
	// OpenAI families, a server_error).
	StreamOverloaded = "overloaded"
	// StreamRateLimit is a rate_limit_error event (Anthropic) or a
	// response.failed with code rate_limit_exceeded (Responses).
	StreamRateLimit = "rate_limit"
	// StreamUsageLimit is Codex's response.failed with code
	// usage_limit_reached and resets_in_seconds (Fault.StreamResetsIn);
	// Anthropic has no such event and sends a rate_limit_error.
	StreamUsageLimit = "usage_limit"
)

// streamReject is the in-stream rejection of the applied fault.
type streamReject struct {
	kind     string // "" for none
	after    int    // events sent before it
	resetsIn int    // seconds, for StreamUsageLimit
}

// due reports whether the rejection replaces the next event.
func (r streamReject) due(sent int) bool { return r.kind != "" && sent == r.after }

// writeReject writes the rejection event of the request's family in place
// of the next event and ends the stream cleanly, as providers do.
func (st *streamer) writeReject() {
	r := st.c.reject
	st.buf = st.buf[:0]
	switch {
	case st.c.fam == famAnthropic:
		typ, msg := "overloaded_error", "Overloaded"
		if r.kind != StreamOverloaded {
			typ, msg = "rate_limit_error", "This request would exceed your account's rate limit. (mock)"
		}
		st.buf = append(st.buf, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\""...)
		st.buf = append(st.buf, typ...)
		st.buf = append(st.buf, `","message":`...)
		st.buf = appendString(st.buf, msg)
		st.buf = append(st.buf, "}}\n\n"...)
	case st.c.ep == epResponses:
		code := "server_error"
		switch r.kind {
		case StreamRateLimit:
			code = "rate_limit_exceeded"
		case StreamUsageLimit:
			code = "usage_limit_reached"
		}
		st.buf = append(st.buf, "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\""...)
		st.buf = append(st.buf, code...)
		st.buf = append(st.buf, `","message":"rejected in the stream (mock)"`...)
		if r.kind == StreamUsageLimit {
			st.buf = append(st.buf, `,"resets_in_seconds":`...)
			st.buf = appendInt(st.buf, r.resetsIn)
		}
		st.buf = append(st.buf, "}}}\n\n"...)
	default:
		st.buf = append(st.buf, "data: "...)
		st.buf = appendError(st.buf, st.c.fam, 429, "rejected in the stream (mock)")
		st.buf = append(st.buf, "\n\n"...)
	}
	st.c.reject = streamReject{}
	if _, err := st.c.w.Write(st.buf); err == nil {
		_ = st.rc.Flush()
	}
	st.done = true
}
