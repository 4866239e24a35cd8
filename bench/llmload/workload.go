// Package llmload drives many concurrent multi-turn LLM conversations
// against an HTTP endpoint (llm_proxy, a plain reverse_proxy or the mock
// upstream itself) and measures latency, time to first body byte,
// throughput, errors and the credential that served each request.
//
// It is the engine of bench/cmd/llmload and of scripts/bench.sh; it uses
// only the standard library.
package llmload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// API families the load tool can speak.
const (
	APIAnthropic = "anthropic" // POST /v1/messages
	APIOpenAI    = "openai"    // POST /v1/chat/completions
)

// Session signal modes.
const (
	// SessionMetadata sends Claude Code's metadata.user_id JSON text with a
	// session_id (Anthropic) or prompt_cache_key (OpenAI).
	SessionMetadata = "metadata"
	// SessionHeader sends X-Claude-Code-Session-Id (Anthropic) or
	// Session-Id (OpenAI).
	SessionHeader = "header"
	// SessionNone sends no session signal, so llm_proxy falls back to the
	// hash of the system prompt and the first messages.
	SessionNone = "none"
)

// Workload describes the conversations to generate. Everything is derived
// from Seed, so the same Workload replays byte-identical requests.
type Workload struct {
	API            string // APIAnthropic or APIOpenAI
	Model          string
	Stream         bool
	Session        string // SessionMetadata, SessionHeader or SessionNone
	SystemBytes    int    // size of the system prompt
	UserBytes      int    // size of each user message
	AssistantBytes int    // size of each assistant message replayed as history
	MaxTokens      int
	Seed           uint64
}

// withDefaults fills zero fields.
func (w Workload) withDefaults() Workload {
	if w.API == "" {
		w.API = APIAnthropic
	}
	if w.Model == "" {
		if w.API == APIOpenAI {
			w.Model = "gpt-5"
		} else {
			w.Model = "claude-sonnet-4-5"
		}
	}
	if w.Session == "" {
		w.Session = SessionMetadata
	}
	if w.SystemBytes <= 0 {
		w.SystemBytes = 4096
	}
	if w.UserBytes <= 0 {
		w.UserBytes = 600
	}
	if w.AssistantBytes <= 0 {
		w.AssistantBytes = 900
	}
	if w.MaxTokens <= 0 {
		w.MaxTokens = 1024
	}
	return w
}

// Validate reports a bad workload.
func (w Workload) Validate() error {
	switch w.API {
	case APIAnthropic, APIOpenAI:
	default:
		return fmt.Errorf("unknown api %q (want %s or %s)", w.API, APIAnthropic, APIOpenAI)
	}
	switch w.Session {
	case SessionMetadata, SessionHeader, SessionNone:
	default:
		return fmt.Errorf("unknown session mode %q (want %s, %s or %s)", w.Session, SessionMetadata, SessionHeader, SessionNone)
	}
	return nil
}

// Path is the request path for the workload's API family.
func (w Workload) Path() string {
	if w.API == APIOpenAI {
		return "/v1/chat/completions"
	}
	return "/v1/messages"
}

var words = strings.Fields(`the a of to in and code file function test build error value request
response session credential cache prompt model stream token proxy handler config route upstream
latency pool select bind retry cooldown header body json parse read write buffer server client
module reload storage admin metric review diff patch commit branch merge refactor rename method
struct field slice map channel context deadline timeout mutex atomic goroutine benchmark profile`)

// text returns about n bytes of JSON-safe prose from r, starting with tag.
func text(r *rand.Rand, tag string, n int) string {
	var b strings.Builder
	b.Grow(n + 16)
	b.WriteString(tag)
	for b.Len() < n {
		b.WriteByte(' ')
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// Conversation is one multi-turn conversation: its session ID, the fixed
// parts of its requests and the history built so far.
type Conversation struct {
	w         *Workload
	index     int
	sessionID string
	rng       *rand.Rand
	head      []byte   // request JSON up to and including `"messages":[`
	history   [][]byte // encoded messages of earlier turns (no cache_control)
	turn      int
}

// uuidFrom formats 128 pseudo-random bits as a version 4 UUID.
func uuidFrom(r *rand.Rand) string {
	a, b := r.Uint64(), r.Uint64()
	a = (a &^ (0xf << 12)) | (0x4 << 12)
	b = (b &^ (0x3 << 62)) | (0x2 << 62)
	s := fmt.Sprintf("%016x%016x", a, b)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// systemPrompt is shared by every conversation of a workload, as a real
// client's system prompt is.
func (w *Workload) systemPrompt() string {
	r := rand.New(rand.NewPCG(w.Seed, 0x5157))
	return text(r, "You are Claude Code, Anthropic's official CLI for Claude.", w.SystemBytes)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain strings, maps and slices are marshalled
	}
	return b
}

// NewConversation returns conversation number i of the workload.
func (w *Workload) NewConversation(i int, system string) *Conversation {
	r := rand.New(rand.NewPCG(w.Seed, uint64(i)+1))
	c := &Conversation{w: w, index: i, rng: r, sessionID: uuidFrom(r)}
	var b []byte
	b = append(b, `{"model":`...)
	b = append(b, mustJSON(w.Model)...)
	b = append(b, `,"max_tokens":`...)
	b = strconv.AppendInt(b, int64(w.MaxTokens), 10)
	if w.Stream {
		b = append(b, `,"stream":true`...)
	}
	switch w.API {
	case APIAnthropic:
		if w.Session == SessionMetadata {
			uid := `{"device_id":"` + fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()) +
				`","account_uuid":"","session_id":"` + c.sessionID + `"}`
			b = append(b, `,"metadata":{"user_id":`...)
			b = append(b, mustJSON(uid)...)
			b = append(b, '}')
		}
		b = append(b, `,"system":`...)
		b = append(b, mustJSON([]textBlock{
			{Type: "text", Text: "You are Claude Code, Anthropic's official CLI for Claude."},
			{Type: "text", Text: system, CacheControl: &cacheControl{Type: "ephemeral"}},
		})...)
		b = append(b, `,"messages":[`...)
	case APIOpenAI:
		if w.Session == SessionMetadata {
			b = append(b, `,"prompt_cache_key":`...)
			b = append(b, mustJSON(c.sessionID)...)
		}
		b = append(b, `,"messages":[`...)
		b = append(b, mustJSON(map[string]string{"role": "system", "content": system})...)
		b = append(b, ',')
	}
	c.head = b
	return c
}

// SessionID is the conversation's session ID.
func (c *Conversation) SessionID() string { return c.sessionID }

// Turn is the number of turns sent so far.
func (c *Conversation) Turn() int { return c.turn }

// Anthropic message shapes, fields in Claude Code's order.
type (
	cacheControl struct {
		Type string `json:"type"`
	}
	textBlock struct {
		Type         string        `json:"type"`
		Text         string        `json:"text"`
		CacheControl *cacheControl `json:"cache_control,omitempty"`
	}
	message struct {
		Role    string      `json:"role"`
		Content []textBlock `json:"content"`
	}
)

// encodeMessage encodes one message; last marks the newest user message,
// which carries Claude Code's moving cache_control marker.
func (c *Conversation) encodeMessage(role, content string, last bool) []byte {
	if c.w.API == APIOpenAI {
		return mustJSON(map[string]string{"role": role, "content": content})
	}
	block := textBlock{Type: "text", Text: content}
	if last {
		block.CacheControl = &cacheControl{Type: "ephemeral"}
	}
	return mustJSON(message{Role: role, Content: []textBlock{block}})
}

// NextBody returns the body of the conversation's next turn: the history
// plus a new user message. Call Advance after the turn was answered.
func (c *Conversation) NextBody() []byte {
	tag := fmt.Sprintf("[conversation %d of seed %d, turn %d]", c.index, c.w.Seed, c.turn+1)
	user := text(c.rng, tag, c.w.UserBytes)
	size := len(c.head) + c.w.UserBytes + 128
	for _, m := range c.history {
		size += len(m) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, c.head...)
	for _, m := range c.history {
		b = append(b, m...)
		b = append(b, ',')
	}
	b = append(b, c.encodeMessage("user", user, true)...)
	b = append(b, "]}"...)
	c.history = append(c.history, c.encodeMessage("user", user, false))
	return b
}

// Advance records the assistant's answer to the last turn (a synthetic,
// deterministic text of the workload's size, as a client replays it).
func (c *Conversation) Advance() {
	c.turn++
	reply := text(c.rng, fmt.Sprintf("[answer %d]", c.turn), c.w.AssistantBytes)
	c.history = append(c.history, c.encodeMessage("assistant", reply, false))
}
