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
// it every chunk after the chunk was written and flushed, and finish returns
// what it found. It reads the token counts (see Usage) and, when asked, the
// ID of a stored resource the response created (for pinning follow-ups to
// the credential).
//
// It understands each API family's usage fields:
//
//	Anthropic   usage.input_tokens, output_tokens, cache_read_input_tokens,
//	            cache_creation_input_tokens (SSE: message_start's
//	            message.usage and message_delta's usage)
//	OpenAI chat usage.prompt_tokens, completion_tokens,
//	            prompt_tokens_details.cached_tokens
//	Responses   usage.input_tokens, output_tokens,
//	            input_tokens_details.cached_tokens
//	            (SSE: response.usage of response.completed)
//	Gemini      usageMetadata.promptTokenCount plus toolUsePromptTokenCount,
//	            candidatesTokenCount plus thoughtsTokenCount,
//	            cachedContentTokenCount
//
// Providers repeat or grow the figures from event to event (message_start
// and message_delta both carry them, every Gemini chunk may), so each figure
// is the largest value seen, never a sum. OpenAI's, the Responses API's and
// Gemini's prompt figures include the cached tokens, Anthropic's do not:
// finish takes the cached tokens off the first three, so Usage.Input means
// the same in every family.
//
// The zero value reads nothing; start decides whether a body is read.
type bodyScanner struct {
	on  bool // the body is read: a 2xx JSON or SSE body, not encoded
	sse bool
	// buf holds the JSON body (sse false) or the partial SSE line carried
	// over to the next read (sse true).
	buf []byte
	// skip drops the rest of a body or line that exceeded its bound.
	skip bool
	// resource: look for the ID of the stored resource the body
	// describes (an OpenAI response, read from the same document as its
	// usage; an Anthropic message batch).
	resource bool
	// cachedInInput: the body's prompt figure includes the cached tokens
	// (OpenAI, Responses, Gemini).
	cachedInInput bool

	out learnt
}

// start sets the scanner up for resp. A response that is not a success, or
// whose body is neither JSON nor SSE (or is still encoded), or is JSON
// known to exceed usageJSONLimit, is not read.
func (s *bodyScanner) start(resp *http.Response, resource bool) {
	*s = bodyScanner{resource: resource}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return
	}
	switch mt := mediaType(resp.Header); {
	case isEventStream(resp.Header):
		s.sse = true
	case strings.EqualFold(mt, "application/json") ||
		(len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json")):
		if resp.ContentLength > usageJSONLimit {
			return
		}
		if resp.ContentLength > 0 {
			s.buf = make([]byte, 0, resp.ContentLength)
		}
	default:
		return
	}
	s.on = true
}

// feed reads the next chunk of the body.
func (s *bodyScanner) feed(b []byte) {
	if !s.on {
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
		var u Usage
		m.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "promptTokenCount", "toolUsePromptTokenCount":
				u.Input += v.Int()
			case "candidatesTokenCount", "thoughtsTokenCount":
				u.Output += v.Int()
			case "cachedContentTokenCount":
				u.CacheRead = v.Int()
			}
			return true
		})
		s.cachedInInput = true
		s.saw(u)
		return
	}
	if s.resource {
		// Responses: the response.completed event, or the response
		// itself; Anthropic: a message batch.
		if id := o.Get("response.id"); id.Type == gjson.String {
			s.out.resourceID = id.Str
		} else if (o.Get("object").Str == "response" || o.Get("type").Str == "message_batch") && o.Get("id").Type == gjson.String {
			s.out.resourceID = o.Get("id").Str
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
	figures, cachedInInput := usageFigures(u)
	s.cachedInInput = s.cachedInInput || cachedInInput
	s.saw(figures)
}

// usageFigures reads an Anthropic, Chat or Responses usage object in one
// pass over its members. cachedInInput reports an OpenAI object, whose
// prompt figure includes the cached tokens.
func usageFigures(o gjson.Result) (u Usage, cachedInInput bool) {
	o.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "input_tokens": // Anthropic, Responses
			u.Input = v.Int()
		case "prompt_tokens": // Chat
			u.Input = v.Int()
			cachedInInput = true
		case "output_tokens", "completion_tokens":
			u.Output = v.Int()
		case "cache_read_input_tokens": // Anthropic
			u.CacheRead = max(u.CacheRead, v.Int())
		case "cache_creation_input_tokens":
			u.CacheWrite = v.Int()
		case "prompt_tokens_details", "input_tokens_details": // Chat; Responses
			u.CacheRead = max(u.CacheRead, v.Get("cached_tokens").Int())
			cachedInInput = true
		}
		return true
	})
	return u, cachedInInput
}

// saw keeps the largest of each figure.
func (s *bodyScanner) saw(u Usage) {
	o := &s.out
	o.reported = true
	o.usage.Input = max(o.usage.Input, u.Input)
	o.usage.Output = max(o.usage.Output, u.Output)
	o.usage.CacheRead = max(o.usage.CacheRead, u.CacheRead)
	o.usage.CacheWrite = max(o.usage.CacheWrite, u.CacheWrite)
}

// finish reads a buffered JSON body and returns what the body told.
func (s *bodyScanner) finish() learnt {
	if s.on && !s.sse && !s.skip && (s.resource || bytes.Contains(s.buf, usageWord)) {
		s.doc(s.buf)
	}
	s.buf = nil
	if s.cachedInInput {
		s.out.usage.Input = max(s.out.usage.Input-s.out.usage.CacheRead, 0)
	}
	return s.out
}
