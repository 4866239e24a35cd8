package handler

import (
	"bytes"
	"errors"
	"io"
	"net/http"

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
// holdBackEvents events without output, past holdBackBytes, or at the end
// of the stream. It returns the bytes read (which go to the client first
// when the stream is released) and the rejection, if any. err is a read
// error other than io.EOF.
//
// An event that carries output is released as soon as it is complete: a
// stream whose first event has output is not delayed beyond that event's
// own arrival (an SSE client acts on no event before its end).
func holdBack(body io.Reader) (head []byte, rej *rejection, err error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var p eventParser
	for {
		n, rerr := body.Read(buf)
		head = append(head, buf[:n]...)
		for {
			ev, ok := p.next(head)
			if !ok {
				break
			}
			if status, b, is := failure.StreamRejection(ev.name, ev.data); is {
				return head, &rejection{status: status, body: b}, nil
			}
			if !ev.quiet() {
				return head, nil, nil
			}
			if p.events++; p.events >= holdBackEvents {
				return head, nil, nil
			}
		}
		if len(head) >= holdBackBytes || rerr == io.EOF {
			return head, nil, nil
		}
		if rerr != nil {
			return head, nil, rerr
		}
	}
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
// the head, then the read error holdBack met, if any, then the rest.
type heldBody struct {
	head []byte
	err  error
	rest io.ReadCloser
}

func (b *heldBody) Read(p []byte) (int, error) {
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

func (b *heldBody) Close() error { return b.rest.Close() }

// holdsBack reports whether the head of resp is held back: a 2xx event
// stream that is not content-encoded.
func holdsBack(resp *http.Response) bool {
	ce := resp.Header.Get("Content-Encoding")
	return resp.StatusCode >= 200 && resp.StatusCode <= 299 && isEventStream(resp.Header) && (ce == "" || ce == "identity")
}

// holdBackResponse holds back the head of resp's event stream (see
// holdBack). Without a rejection, resp.Body is replaced by one that
// returns the head first, and nil is returned. With one, resp.Body is
// closed and the rejection is returned as the error response it stands
// for: its status, resp's headers as a JSON answer, and the event's data
// with the credential's secrets redacted.
func holdBackResponse(resp *http.Response, a *auth.Auth) (status int, h http.Header, body []byte, rejected bool) {
	head, rej, err := holdBack(resp.Body)
	if rej == nil {
		if errors.Is(err, io.EOF) {
			err = nil
		}
		resp.Body = &heldBody{head: head, err: err, rest: resp.Body}
		return 0, nil, nil, false
	}
	resp.Body.Close()
	h = resp.Header.Clone()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	body = rej.body
	truncated := len(body) > errorBodyLimit
	if truncated {
		body = body[:errorBodyLimit]
	}
	body = redactSecrets(bytes.Clone(body), a)
	if truncated {
		body = trimSecretPrefix(body, a)
	}
	return rej.status, h, body, true
}
