package mockllm

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Preallocated header values (net/http never mutates them).
var (
	ctJSON        = []string{"application/json"}
	ctSSE         = []string{"text/event-stream"}
	noCache       = []string{"no-cache"}
	accelNoBuffer = []string{"no"}
)

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 256<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s JSON-escaped, without surrounding quotes. Invalid
// UTF-8 becomes U+FFFD.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// appendRandom appends n random base62 characters.
func appendRandom(b []byte, n int) []byte {
	for n > 0 {
		x := rand.Uint64()
		for j := 0; j < 10 && n > 0; j++ {
			b = append(b, base62[x%62])
			x /= 62
			n--
		}
	}
	return b
}

// newID returns prefix followed by n random base62 characters.
func newID(prefix string, n int) string {
	var arr [64]byte
	b := append(arr[:0], prefix...)
	return string(appendRandom(b, n))
}

// writeBody sends a complete JSON body with status.
func (c *call) writeBody(status int, b []byte) {
	h := c.w.Header()
	h["Content-Type"] = ctJSON
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	c.w.WriteHeader(status)
	if c.drop > 0 && status == http.StatusOK {
		// Injected truncation: half the body, then a dropped connection.
		_, _ = c.w.Write(b[:len(b)/2])
		_ = http.NewResponseController(c.w).Flush()
		abort()
	}
	_, _ = c.w.Write(b)
}

// reply is the canned answer for one model, precomputed once.
type reply struct {
	text   string   // JSON-escaped full text, without quotes
	deltas []string // JSON-escaped pieces whose concatenation is text
	tokens int      // output tokens
}

// maxCachedReplies bounds the per-model reply cache.
const maxCachedReplies = 256

// replyFor returns the reply text for model, split in s.deltas pieces.
func (s *Server) replyFor(model string) *reply {
	if v, ok := s.replies.Load(model); ok {
		return v.(*reply)
	}
	rp := buildReply(model, s.deltas)
	if s.replyN.Load() < maxCachedReplies {
		if _, loaded := s.replies.LoadOrStore(model, rp); !loaded {
			s.replyN.Add(1)
		}
	}
	return rp
}

func buildReply(model string, deltas int) *reply {
	if model == "" {
		model = "an unnamed model"
	}
	words := []string{"Hello!", "This", "is", "a", "mock", "reply", "from", model + "."}
	for len(words) < deltas {
		words = append(words, "More.")
	}
	rp := &reply{deltas: make([]string, 0, deltas), tokens: len(words) + 1}
	var full []byte
	for i := range deltas {
		lo, hi := i*len(words)/deltas, (i+1)*len(words)/deltas
		var sb strings.Builder
		for j := lo; j < hi; j++ {
			if j > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[j])
		}
		piece := string(appendEscaped(nil, sb.String()))
		rp.deltas = append(rp.deltas, piece)
		full = append(full, piece...)
	}
	rp.text = string(full)
	return rp
}

// reqFields holds the top-level request fields the handlers use, collected
// in a single pass over the body.
type reqFields struct {
	model        string
	stream       bool
	includeUsage bool
	system       string // raw: Anthropic system, Gemini systemInstruction
	messages     string // raw: Anthropic/OpenAI messages, Gemini contents
	instructions string // raw: Responses instructions
	input        string // raw: Responses / Embeddings input
	prompt       string // raw: Completions prompt
	dimensions   int
	base64       bool
}

// parseFields collects the fields of reqFields from body in one pass over
// its top-level members.
func parseFields(body string) reqFields {
	var f reqFields
	gjson.Parse(body).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			f.model = v.Str
		case "stream":
			f.stream = v.Bool()
		case "stream_options":
			f.includeUsage = v.Get("include_usage").Bool()
		case "system", "systemInstruction", "system_instruction":
			f.system = v.Raw
		case "messages", "contents":
			f.messages = v.Raw
		case "instructions":
			f.instructions = v.Raw
		case "input":
			f.input = v.Raw
		case "prompt":
			f.prompt = v.Raw
		case "dimensions":
			f.dimensions = int(v.Int())
		case "encoding_format":
			f.base64 = v.Str == "base64"
		case "generateContentRequest": // Gemini countTokens
			sub := parseFields(v.Raw)
			if f.messages == "" {
				f.messages = sub.messages
			}
			if f.system == "" {
				f.system = sub.system
			}
		}
		return true
	})
	return f
}

// statusText is the reason phrase of status, including the non-standard 529.
func statusText(status int) string {
	if status == 529 {
		return "Overloaded"
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Error " + strconv.Itoa(status)
}
