package handler

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// Bounds of the usage scanner. Usage figures sit in small JSON documents
// (the response itself, or one SSE event); anything larger is passed through
// unread.
const (
	// usageJSONLimit is the largest non-streamed JSON body read for usage.
	usageJSONLimit = 1 << 20
	// usageLineLimit is the longest SSE line kept across reads; longer lines
	// are skipped.
	usageLineLimit = 64 << 10
)

var (
	usageWord      = []byte("usage") // also matches "usageMetadata"
	usageKey       = []byte(`"usage`)
	metadataSuffix = []byte("Metadata")
	dataPrefix     = []byte("data:")
)

// bodyScanner reads what the proxy learns from a response body as it is
// copied to the client, without holding the stream back: the copy loop feeds
// it every chunk after the chunk was written and flushed. It reads the
// prompt-cache token counts (for metrics) and the ID of a stored resource
// the response created (for pinning follow-ups to the credential).
//
// It understands each API family's usage fields:
//
//	Anthropic   usage.cache_read_input_tokens, usage.cache_creation_input_tokens
//	            (SSE: message_start's message.usage and message_delta's usage)
//	OpenAI chat usage.prompt_tokens_details.cached_tokens
//	Responses   usage.input_tokens_details.cached_tokens
//	            (SSE: response.usage of response.completed)
//	Gemini      usageMetadata.cachedContentTokenCount
//
// Providers repeat or grow the figures from event to event (message_start
// and message_delta both carry them, every Gemini chunk may), so each figure
// is the largest value seen, never a sum.
type bodyScanner struct {
	sse bool
	// buf holds the JSON body (sse false) or the partial SSE line carried
	// over to the next read (sse true).
	buf []byte
	// skip drops the rest of a body or line that exceeded its bound.
	skip bool

	found       bool
	read, write int64

	obs          Observer
	pool, authID string

	// onResourceID, when set, receives the ID of the stored resource the
	// body describes (an OpenAI response, read from the same document as
	// its usage; an Anthropic message batch), so that later requests
	// naming it reach this credential.
	onResourceID func(id string)
	resourceID   string
}

// bodyScanner returns a scanner for resp, or nil when no usage can be
// read from it: no observer, not a success, or a body that is neither JSON
// nor SSE (or still encoded).
func (p *Proxy) bodyScanner(resp *http.Response, authID string, onResourceID func(string)) *bodyScanner {
	if (p.Observer == nil && onResourceID == nil) || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	mt = strings.TrimSpace(mt)
	s := &bodyScanner{obs: p.Observer, pool: p.Pool.Name(), authID: authID, onResourceID: onResourceID}
	switch {
	case strings.EqualFold(mt, "text/event-stream"):
		s.sse = true
	case strings.EqualFold(mt, "application/json") ||
		(len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json")):
		if resp.ContentLength > usageJSONLimit {
			return nil
		}
		if resp.ContentLength > 0 {
			s.buf = make([]byte, 0, resp.ContentLength)
		}
	default:
		return nil
	}
	return s
}

// feed reads the next chunk of the body.
func (s *bodyScanner) feed(b []byte) {
	if s == nil {
		return
	}
	if !s.sse {
		if s.skip {
			return
		}
		if len(s.buf)+len(b) > usageJSONLimit {
			s.skip, s.buf = true, nil
			return
		}
		s.buf = append(s.buf, b...)
		return
	}

	// Finish the line carried over from the previous read.
	if len(s.buf) > 0 || s.skip {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.carry(b)
			return
		}
		s.carry(b[:i])
		if !s.skip {
			s.line(s.buf)
		}
		s.buf, s.skip = s.buf[:0], false
		b = b[i+1:]
	}
	// Complete lines are read in place; most reads hold no usage at all.
	last := bytes.LastIndexByte(b, '\n')
	if last >= 0 {
		if whole := b[:last]; bytes.Contains(whole, usageWord) {
			for len(whole) > 0 {
				ln := whole
				if j := bytes.IndexByte(whole, '\n'); j >= 0 {
					ln, whole = whole[:j], whole[j+1:]
				} else {
					whole = nil
				}
				s.line(ln)
			}
		}
		b = b[last+1:]
	}
	if len(b) > 0 {
		s.carry(b)
	}
}

// carry appends a partial line to the carry buffer, dropping the line once
// it exceeds usageLineLimit.
func (s *bodyScanner) carry(b []byte) {
	if s.skip {
		return
	}
	if len(s.buf)+len(b) > usageLineLimit {
		s.skip, s.buf = true, s.buf[:0]
		return
	}
	s.buf = append(s.buf, b...)
}

// line reads one complete SSE line (without its newline).
func (s *bodyScanner) line(ln []byte) {
	ln = bytes.TrimSuffix(ln, []byte{'\r'})
	data, ok := bytes.CutPrefix(ln, dataPrefix)
	if !ok || !hasUsageObject(data) {
		return
	}
	s.doc(data)
}

// hasUsageObject reports whether b has a "usage" or "usageMetadata" member
// whose value is an object. It keeps the JSON parser away from the many
// events without usage, including OpenAI's "usage":null on every chunk.
func hasUsageObject(b []byte) bool {
	for {
		i := bytes.Index(b, usageKey)
		if i < 0 {
			return false
		}
		b = b[i+len(usageKey):]
		b = bytes.TrimPrefix(b, metadataSuffix)
		if len(b) == 0 || b[0] != '"' {
			continue
		}
		b = bytes.TrimLeft(b[1:], " \t\r\n")
		if len(b) == 0 || b[0] != ':' {
			continue
		}
		b = bytes.TrimLeft(b[1:], " \t\r\n")
		if len(b) > 0 && b[0] == '{' {
			return true
		}
	}
}

// doc reads the usage figures of one JSON document: a response, an SSE
// event's data, or (Gemini's streamGenerateContent without alt=sse) an
// array of chunks.
func (s *bodyScanner) doc(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	if b[0] == '[' {
		gjson.ParseBytes(b).ForEach(func(_, v gjson.Result) bool {
			s.object(v)
			return true
		})
		return
	}
	s.object(gjson.ParseBytes(b))
}

// object reads the usage figures of one JSON object.
func (s *bodyScanner) object(o gjson.Result) {
	if !o.IsObject() {
		return
	}
	if m := o.Get("usageMetadata"); m.IsObject() { // Gemini
		s.saw(m.Get("cachedContentTokenCount").Int(), 0)
		return
	}
	if s.onResourceID != nil {
		// Responses: the response.completed event, or the response
		// itself; Anthropic: a message batch.
		if id := o.Get("response.id"); id.Type == gjson.String {
			s.resourceID = id.Str
		} else if (o.Get("object").Str == "response" || o.Get("type").Str == "message_batch") && o.Get("id").Type == gjson.String {
			s.resourceID = o.Get("id").Str
		}
	}
	u := o.Get("usage")
	if !u.IsObject() {
		// Anthropic message_start, Responses response.completed.
		if u = o.Get("message.usage"); !u.IsObject() {
			if u = o.Get("response.usage"); !u.IsObject() {
				return
			}
		}
	}
	read := u.Get("cache_read_input_tokens").Int() // Anthropic
	if read == 0 {
		read = u.Get("prompt_tokens_details.cached_tokens").Int() // Chat
	}
	if read == 0 {
		read = u.Get("input_tokens_details.cached_tokens").Int() // Responses
	}
	s.saw(read, u.Get("cache_creation_input_tokens").Int())
}

func (s *bodyScanner) saw(read, write int64) {
	s.found = true
	s.read = max(s.read, read)
	s.write = max(s.write, write)
}

// finish reads a buffered JSON body and reports what was found, once.
func (s *bodyScanner) finish() {
	if s == nil {
		return
	}
	if !s.sse && !s.skip && (s.onResourceID != nil || bytes.Contains(s.buf, usageWord)) {
		s.doc(s.buf)
	}
	s.buf = nil
	if s.found && s.obs != nil {
		s.obs.Usage(s.pool, s.authID, s.read, s.write)
	}
	if s.resourceID != "" {
		s.onResourceID(s.resourceID)
	}
}
