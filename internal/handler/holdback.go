package handler

import (
	"bytes"
	"io"
	"net/http"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
)

// Bounds of the hold-back of a stream's head: at most this many leading
// events without output, and this many bytes, are held back before the
// stream is released to the client as is.
const (
	holdBackEvents = 16
	holdBackBytes  = 1 << 20
	// holdBackWait bounds the time the head is held: an upstream that
	// sends its envelope (message_start) and then thinks for long gets its
	// stream through to the client after this. Rejections come at once.
	holdBackWait = 2 * time.Second
)

// noOutputEvents are the stream events that carry no output: the
// envelope a provider sends before the first token (Responses and Codex:
// response.created, response.in_progress, codex.rate_limits,
// codex.response.metadata; Anthropic: message_start, ping). They are named
// by the SSE event field or, without one, by the data's "type".
var noOutputEvents = map[string]bool{
	"response.created":        true,
	"response.in_progress":    true,
	"codex.rate_limits":       true,
	"codex.response.metadata": true,
	"message_start":           true,
	"ping":                    true,
}

// rejection is a refusal that arrived inside a 200 event stream before any
// output: the status it stands for (429, or 529 for an overload) and the
// body it is classified and answered with (see failure.StreamRejection).
type rejection struct {
	status int
	body   []byte
}

// holdBack reads the head of an event stream until it can tell whether the
// upstream accepted the request: it stops at the first event that carries
// output, at a rejection (an error event before any output), after
// holdBackEvents events without output, past holdBackBytes, after wait
// (an upstream that sends its envelope and then thinks for long is not
// kept from the client), or at the end of the stream. It returns the bytes
// read, which go to the client first when the stream is released, the
// read still under way when wait ran out (nil otherwise), the rejection,
// if any, and the read error met (io.EOF included).
//
// An event that carries output is released as soon as it is complete: a
// stream whose first event has output is not delayed beyond that event's
// own arrival (an SSE client acts on no event before its end).
func holdBack(body io.Reader, wait time.Duration) (head []byte, pending <-chan readResult, rej *rejection, err error) {
	// Reads run in their own goroutine, one at a time, so that wait can
	// end the hold-back while one is under way; the buffer is reused only
	// once its bytes were copied to head.
	results := make(chan readResult, 1)
	bp := copyBuffers.Get().(*[]byte)
	buf := *bp
	timer := time.NewTimer(wait)
	defer func() {
		timer.Stop()
		if pending == nil {
			// No read is under way: the buffer is free again. (With one
			// under way it is left to the collector.)
			copyBuffers.Put(bp)
		}
	}()
	var p eventParser
	for {
		go func() {
			n, err := body.Read(buf)
			results <- readResult{b: buf[:n], err: err}
		}()
		var r readResult
		select {
		case r = <-results:
		case <-timer.C:
			return head, results, nil, nil
		}
		head = append(head, r.b...)
		for {
			ev, ok := p.next(head)
			if !ok {
				break
			}
			if status, b, is := failure.StreamRejection(ev.name, ev.data); is {
				return head, nil, &rejection{status: status, body: b}, nil
			}
			if !ev.quiet() {
				return head, nil, nil, r.err
			}
			if p.events++; p.events >= holdBackEvents {
				return head, nil, nil, r.err
			}
		}
		if len(head) >= holdBackBytes || r.err != nil {
			return head, nil, nil, r.err
		}
	}
}

// readResult is one read of a held-back body.
type readResult struct {
	b   []byte
	err error
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	name string // the event field, "" without one
	data []byte // the data lines joined by '\n'
}

// quiet reports whether the event carries no output: a known envelope
// event, or one without data (a comment such as a keep-alive).
func (e sseEvent) quiet() bool {
	if len(e.data) == 0 {
		return true
	}
	name := e.name
	if name == "" {
		name = gjson.GetBytes(e.data, "type").String()
	}
	return noOutputEvents[name]
}

// eventParser walks the complete events of a growing buffer.
type eventParser struct {
	pos    int // start of the next event in the buffer
	events int // events without output held so far
}

// next returns the next complete event of buf (which only ever grows by
// appending), and false when none is complete yet.
func (p *eventParser) next(buf []byte) (sseEvent, bool) {
	var ev sseEvent
	hasData := false
	i := p.pos
	for {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return sseEvent{}, false
		}
		line := bytes.TrimSuffix(buf[i:i+j], []byte{'\r'})
		i += j + 1
		if len(line) == 0 {
			if ev.name == "" && !hasData && i-p.pos <= 2 {
				// A blank line between events.
				p.pos = i
				continue
			}
			p.pos = i
			return ev, true
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(field) {
		case "event":
			ev.name = string(value)
		case "data":
			if hasData {
				ev.data = append(ev.data, '\n')
			}
			hasData = true
			ev.data = append(ev.data, value...)
		}
	}
}

// heldBody is a response body whose head was read by holdBack: it returns
// the head, then the read that was under way when the hold-back ended, if
// any, then the read error holdBack met, if any, then the rest.
type heldBody struct {
	head    []byte
	pending <-chan readResult
	err     error
	rest    io.ReadCloser
}

func (b *heldBody) Read(p []byte) (int, error) {
	if len(b.head) == 0 && b.pending != nil {
		r := <-b.pending
		b.pending, b.head, b.err = nil, r.b, r.err
	}
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.rest.Read(p)
}

// Close closes the upstream body, which ends a read still under way.
func (b *heldBody) Close() error { return b.rest.Close() }

// holdsBack reports whether the head of resp is held back: a 2xx event
// stream that is not content-encoded.
func holdsBack(resp *http.Response) bool {
	ce := resp.Header.Get("Content-Encoding")
	return resp.StatusCode >= 200 && resp.StatusCode <= 299 && isEventStream(resp.Header) && (ce == "" || ce == "identity")
}

// holdBackResponse holds back the head of resp's event stream for at most
// wait (see holdBack). When the stream is released, resp.Body is replaced
// by one that returns the head first, and ok is false. Otherwise nothing
// reached the client and the returned attempt is what the response came
// to instead, closed: a rejection as the error response it stands for (its
// status, resp's headers as a JSON answer, and the event's data with the
// credential's secrets redacted), or an upstream that broke off before any
// output as the transport error it is.
func holdBackResponse(resp *http.Response, a *auth.Auth, wait time.Duration) (at failure.Attempt, ok bool) {
	head, pending, rej, err := holdBack(resp.Body, wait)
	if rej == nil && (err == nil || err == io.EOF) {
		resp.Body = &heldBody{head: head, pending: pending, err: err, rest: resp.Body}
		return failure.Attempt{}, false
	}
	resp.Body.Close()
	if rej == nil {
		return failure.Attempt{Err: err, Connected: true}, true
	}
	h := resp.Header.Clone()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	body := rej.body
	truncated := len(body) > errorBodyLimit
	if truncated {
		body = body[:errorBodyLimit]
	}
	body = redactSecrets(bytes.Clone(body), a)
	if truncated {
		body = trimSecretPrefix(body, a)
	}
	return failure.Attempt{Status: rej.status, Header: h, Body: body}, true
}
