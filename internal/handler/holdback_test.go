package handler

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	evMessageStart = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
	evPing         = "event: ping\ndata: {\"type\": \"ping\"}\n\n"
	evDelta        = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello\"}}\n\n"
	evStop         = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	evOverloaded   = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	evRateLimited  = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n"
	evCreated      = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n"
	evInProgress   = "event: response.in_progress\ndata: {\"type\":\"response.in_progress\"}\n\n"
	evRateLimits   = "event: codex.rate_limits\ndata: {\"type\":\"codex.rate_limits\",\"primary\":{\"used_percent\":99}}\n\n"
	evTextDelta    = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n"
	evUsageLimit   = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"usage_limit_reached\",\"resets_in_seconds\":60}}}\n\n"
)

// countingReader returns one chunk per Read and counts the reads.
type countingReader struct {
	chunks []string
	reads  int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	r.reads++
	n := copy(p, r.chunks[0])
	if n < len(r.chunks[0]) {
		r.chunks[0] = r.chunks[0][n:]
	} else {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestHoldBack(t *testing.T) {
	big := "event: message_start\ndata: {\"type\":\"message_start\",\"pad\":\"" + strings.Repeat("x", holdBackBytes) + "\"}\n\n"
	for _, tc := range []struct {
		name   string
		chunks []string
		reads  int // reads holdBack makes
		status int // the rejection's status, 0 for none
	}{
		{"first event has output: one read", []string{evDelta, evStop}, 1, 0},
		{"output after the envelope", []string{evMessageStart, evPing, evDelta, evStop}, 3, 0},
		{"overloaded before output", []string{evMessageStart, evPing, evOverloaded}, 3, 529},
		{"rate limited first", []string{evRateLimited}, 1, 429},
		{"codex usage limit after its envelope", []string{evCreated, evInProgress, evRateLimits, evUsageLimit}, 4, 429},
		{"error after output is not a rejection", []string{evMessageStart, evDelta, evOverloaded}, 2, 0},
		{"one event split over many reads, CRLF", []string{"event: er", "ror\r\ndata: {\"type\":\"error\",", "\"error\":{\"type\":\"overloaded_error\"}}\r\n", "\r\n"}, 4, 529},
		{"several events in one read", []string{evMessageStart + evPing + evRateLimited}, 1, 429},
		{"keep-alive comments are held", []string{": keep-alive\n\n", evMessageStart, evOverloaded}, 3, 529},
		{"15 quiet events, then an error: held", append(repeat(evPing, 15), evOverloaded), 16, 529},
		{"16 quiet events release the stream", append(repeat(evPing, 16), evOverloaded), 16, 0},
		{"more than 1 MiB releases the stream", []string{big, evOverloaded}, -1, 0},
		{"the end of the stream releases it", []string{evMessageStart, evPing}, 2, 0},
		{"a hostile data line naming no type", []string{"data: {\"type\":\"ping\",\"x\":\"event: error\"}\n\n", evDelta}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{chunks: append([]string(nil), tc.chunks...)}
			all := strings.Join(tc.chunks, "")
			head, pending, rej, err := holdBack(r, time.Minute)
			if err != nil && err != io.EOF || pending != nil {
				t.Fatal(err, pending)
			}
			if tc.reads >= 0 && r.reads != tc.reads {
				t.Fatalf("%d reads, want %d", r.reads, tc.reads)
			}
			if !strings.HasPrefix(all, string(head)) {
				t.Fatalf("head is not the start of the stream")
			}
			got := 0
			if rej != nil {
				got = rej.status
			}
			if got != tc.status {
				t.Fatalf("rejection %d, want %d", got, tc.status)
			}
			if rej == nil {
				// Released: the head and the rest make the stream.
				b, _ := io.ReadAll(&heldBody{head: head, err: err, rest: io.NopCloser(r)})
				if string(b) != all {
					t.Fatalf("released stream differs: %d bytes of %d", len(b), len(all))
				}
			}
		})
	}
}

// streamUpstream answers each credential (by its key) with a 200 event
// stream, and records the attempts.
type streamUpstream struct {
	mu      sync.Mutex
	streams map[string]string
	tried   []string
}

func (u *streamUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.Header.Get("X-Api-Key")
	u.mu.Lock()
	u.tried = append(u.tried, key)
	u.mu.Unlock()
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{"Content-Type": {"text/event-stream"}, "X-Upstream-Key": {key}}
	return &http.Response{StatusCode: 200, Header: h, Request: req, ContentLength: -1,
		Body: io.NopCloser(strings.NewReader(u.streams[key]))}, nil
}

const (
	holdKeyA = "sk-ant-holdback-key-a-0123456789"
	holdKeyB = "sk-ant-holdback-key-b-0123456789"
)

const streamBody = `{"model":"claude-sonnet-4-5","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

// TestHoldBackFailsOver: a rejection inside a 200 stream before any output
// moves the request to the next credential, and the client sees only the
// next credential's stream and headers; the rejecting credential cools.
func TestHoldBackFailsOver(t *testing.T) {
	for i, rejecting := range []string{evMessageStart + evPing + evOverloaded, evRateLimited} {
		t.Run(fmt.Sprint(i), func(t *testing.T) { holdBackFailsOver(t, rejecting) })
	}
}

func holdBackFailsOver(t *testing.T, rejecting string) {
	up := &streamUpstream{streams: map[string]string{
		holdKeyA: rejecting + evDelta + evStop,
		holdKeyB: evMessageStart + evDelta + evStop,
	}}
	p := hostileProxy(t, up, holdKeyA, "https://a.example", holdKeyB, "https://b.example")
	w := serve(t, p, http.MethodPost, "/v1/messages", streamBody, http.Header{"Anthropic-Version": {"2023-06-01"}})
	if w.Code != 200 || w.Body.String() != evMessageStart+evDelta+evStop {
		t.Fatalf("status %d, body %q", w.Code, w.Body)
	}
	if got := w.Header().Get("X-Upstream-Key"); got != holdKeyB {
		t.Fatalf("headers of %q reached the client", got)
	}
	if len(up.tried) != 2 {
		t.Fatalf("attempts %v", up.tried)
	}
	if cd := cooldowns(t, p, "a"); len(cd) != 1 {
		t.Fatalf("rejecting credential cooldowns %+v", cd)
	}
}

// TestHoldBackAfterOutputStreams: an error after the first output event
// streams to the client as it came; nothing is retried.
func TestHoldBackAfterOutputStreams(t *testing.T) {
	stream := evMessageStart + evDelta + evOverloaded
	up := &streamUpstream{streams: map[string]string{holdKeyA: stream, holdKeyB: evDelta + evStop}}
	p := hostileProxy(t, up, holdKeyA, "https://a.example", holdKeyB, "https://b.example")
	w := serve(t, p, http.MethodPost, "/v1/messages", streamBody, http.Header{"Anthropic-Version": {"2023-06-01"}})
	if w.Code != 200 || w.Body.String() != stream || len(up.tried) != 1 {
		t.Fatalf("status %d, body %q, attempts %v", w.Code, w.Body, up.tried)
	}
}

// TestHoldBackAllRejected: when every credential rejects inside its
// stream, the client gets the last rejection as the error status it stands
// for, a JSON body in the provider's shape, with no secret of the key.
func TestHoldBackAllRejected(t *testing.T) {
	quoting := fmt.Sprintf("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"key %s is limited\"}}\n\n", holdKeyB)
	up := &streamUpstream{streams: map[string]string{holdKeyA: evOverloaded, holdKeyB: evMessageStart + quoting}}
	p := hostileProxy(t, up, holdKeyA, "https://a.example", holdKeyB, "https://b.example")
	w := serve(t, p, http.MethodPost, "/v1/messages", streamBody, http.Header{"Anthropic-Version": {"2023-06-01"}})
	if w.Code != 429 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", w.Code, w.Header().Get("Content-Type"))
	}
	body := w.Body.String()
	if strings.Contains(body, holdKeyB) || !strings.Contains(body, "rate_limit_error") || strings.Contains(body, "event:") {
		t.Fatalf("body %q", body)
	}
}

// gatedReader returns its first chunk, then blocks until release is
// closed, then returns the rest.
type gatedReader struct {
	first, rest string
	release     chan struct{}
	step        int
}

func (r *gatedReader) Read(p []byte) (int, error) {
	switch r.step++; r.step {
	case 1:
		return copy(p, r.first), nil
	case 2:
		<-r.release
		return copy(p, r.rest), nil
	}
	return 0, io.EOF
}

// TestHoldBackWaitReleases: an upstream that sends its envelope and then
// keeps the stream waiting gets it through to the client once the wait
// runs out; the read under way then completes the stream in order.
func TestHoldBackWaitReleases(t *testing.T) {
	r := &gatedReader{first: evMessageStart, rest: evDelta + evStop, release: make(chan struct{})}
	head, pending, rej, err := holdBack(r, time.Millisecond)
	if string(head) != evMessageStart || pending == nil || rej != nil || err != nil {
		t.Fatalf("head %q, pending %v, rejection %v, err %v", head, pending != nil, rej, err)
	}
	close(r.release)
	b, err := io.ReadAll(&heldBody{head: head, pending: pending, rest: io.NopCloser(r)})
	if err != nil || string(b) != evMessageStart+evDelta+evStop {
		t.Fatalf("stream %q, %v", b, err)
	}
}

// TestHoldBackBrokenStreamFailsOver: an upstream stream that breaks off
// before any output fails over like a connection that broke off: the
// client gets the next credential's stream, and nothing of the first.
func TestHoldBackBrokenStreamFailsOver(t *testing.T) {
	var mu sync.Mutex
	var tried []string
	rt := rtFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		key := r.Header.Get("X-Api-Key")
		mu.Lock()
		tried = append(tried, key)
		mu.Unlock()
		var body io.Reader = strings.NewReader(evMessageStart + evDelta + evStop)
		if key == holdKeyA {
			body = io.MultiReader(strings.NewReader(evMessageStart), iotestErr{io.ErrUnexpectedEOF})
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Request: r,
			ContentLength: -1, Body: io.NopCloser(body)}, nil
	})
	p := hostileProxy(t, rt, holdKeyA, "https://a.example", holdKeyB, "https://b.example")
	w := serve(t, p, http.MethodPost, "/v1/messages", streamBody, http.Header{"Anthropic-Version": {"2023-06-01"}})
	if w.Code != 200 || w.Body.String() != evMessageStart+evDelta+evStop || len(tried) != 2 {
		t.Fatalf("status %d, body %q, attempts %v", w.Code, w.Body, tried)
	}
	if cd := cooldowns(t, p, "a"); len(cd) != 1 || cd[0].Model != "claude-sonnet-4-5" {
		t.Fatalf("cooldowns of a: %+v", cd)
	}
}
