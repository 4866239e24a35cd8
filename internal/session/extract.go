// Package session finds the conversation a request belongs to and remembers
// which upstream credential serves each conversation.
//
// Extract reads the session signals of one request (headers and body, with
// the body walked once). Cache holds the bindings from (session, model) to a
// credential ID with a sliding TTL and an LRU bound.
package session

import (
	"bytes"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Source names the signal a session ID was taken from.
type Source string

// The sources, in the order Extract tries them (SPEC section 5 step 5).
const (
	// SourceNone means the request carried no session signal.
	SourceNone Source = ""
	// SourceClaudeCode is the X-Claude-Code-Session-Id header or the session
	// inside a Claude Code metadata.user_id.
	SourceClaudeCode Source = "claude_code"
	// SourceCodex is the Session-Id / Session_id header sent by Codex CLI.
	SourceCodex Source = "codex"
	// SourceHeader is the X-Session-ID header.
	SourceHeader Source = "x_session_id"
	// SourceUserID is a metadata.user_id that is not in Claude Code form.
	SourceUserID Source = "user_id"
	// SourcePromptCacheKey is the body field prompt_cache_key.
	SourcePromptCacheKey Source = "prompt_cache_key"
	// SourceConversation is the body field conversation_id, conversation.id
	// or a string conversation.
	SourceConversation Source = "conversation"
	// SourceMessageHash is the hash of the system prompt and the first user
	// and assistant messages.
	SourceMessageHash Source = "message_hash"
)

// ID prefixes. Every session ID is "<prefix><value>", so different signal
// kinds never collide. The Claude Code header and the Claude Code
// metadata.user_id share "cc:".
const (
	prefixClaudeCode   = "cc:"    // + session UUID
	prefixCodex        = "codex:" // + Session-Id header value
	prefixHeader       = "sid:"   // + X-Session-ID header value
	prefixUserID       = "user:"  // + metadata.user_id as sent
	prefixPromptCache  = "pck:"   // + prompt_cache_key
	prefixConversation = "conv:"  // + conversation_id / conversation.id / conversation
	prefixMessageHash  = "msg:"   // + 16 lower-case hex digits of a 64-bit FNV-1a hash
)

// maxIDLen is the longest explicit ID accepted, in bytes.
const maxIDLen = 256

// maxUserIDLen is the longest metadata.user_id looked at, in bytes. Claude
// Code's JSON form is about 150 bytes; a longer value can be neither that
// form nor a usable ID (maxIDLen), and is never parsed.
const maxUserIDLen = 1024

// IDs are the session identifiers found in one request.
//
// Formats (the prefix tells the signal kind apart):
//
//	cc:<uuid>        Claude Code (header or metadata.user_id)
//	codex:<id>       Session-Id / Session_id header
//	sid:<id>         X-Session-ID header
//	user:<user_id>   metadata.user_id in any other form
//	pck:<key>        prompt_cache_key
//	conv:<id>        conversation_id, conversation.id, string conversation
//	msg:<16 hex>     message hash
//
// Explicit values are used after trimming surrounding spaces.
type IDs struct {
	// Primary is the session ID to bind; "" when the request carries no
	// signal.
	Primary string
	// Fallback is set for message hashes only: the short ID (hash without
	// the first assistant message), set only when it differs from Primary.
	// It lets turn 2 inherit turn 1's binding.
	Fallback string
	// Stable is the ID to hash for rendezvous across processes: Primary for
	// explicit IDs, the short ID for message hashes (so turn 1 and turn 2
	// hash the same).
	Stable string
	// Source tells which signal produced the IDs.
	Source Source
}

// explicit returns the IDs of an explicit session signal.
func explicit(src Source, prefix, id string) IDs {
	p := prefix + id
	return IDs{Primary: p, Stable: p, Source: src}
}

// bodyFields holds the raw values of the top-level body members Extract
// looks at. Each is a slice of the body (nil when absent).
type bodyFields struct {
	metadata, promptCacheKey, conversationID, conversation []byte
	system, messages, contents, systemInstruction          []byte
	instructions, input                                    []byte
}

// Extract returns the session IDs of a request from its headers and body,
// trying the signals in the order of SPEC section 5 step 5; the first valid
// one wins. The body is walked once, and only when no Claude Code header is
// present. A body that is not a well-formed JSON object yields no body
// signal; header signals still work. Extract never panics.
func Extract(h http.Header, body []byte) IDs {
	// 1. X-Claude-Code-Session-Id.
	if id, ok := validID(header(h, "X-Claude-Code-Session-Id", "x-claude-code-session-id")); ok {
		return explicit(SourceClaudeCode, prefixClaudeCode, id)
	}

	var f bodyFields
	if len(body) > 0 && !scanBody(body, &f) {
		f = bodyFields{}
	}

	// 2 and 5. metadata.user_id: the Claude Code form now, any other later.
	var userID string
	if f.metadata != nil {
		if raw := member(f.metadata, "user_id"); raw != nil {
			userID = boundedString(raw, maxUserIDLen)
			if id, ok := claudeCodeSession(userID); ok {
				return explicit(SourceClaudeCode, prefixClaudeCode, id)
			}
		}
	}

	// 3. Session-Id / Session_id (Codex CLI).
	if id, ok := validID(header(h, "Session-Id", "Session_id", "session_id", "session-id")); ok {
		return explicit(SourceCodex, prefixCodex, id)
	}

	// 4. X-Session-ID.
	if id, ok := validID(header(h, "X-Session-Id", "X-Session-ID", "x-session-id")); ok {
		return explicit(SourceHeader, prefixHeader, id)
	}

	// 5. metadata.user_id as is.
	if id, ok := validID(userID); ok {
		return explicit(SourceUserID, prefixUserID, id)
	}

	// 6. prompt_cache_key, conversation_id, conversation.id / conversation.
	if id, ok := validID(boundedString(f.promptCacheKey, maxIDLen)); ok {
		return explicit(SourcePromptCacheKey, prefixPromptCache, id)
	}
	if id, ok := validID(boundedString(f.conversationID, maxIDLen)); ok {
		return explicit(SourceConversation, prefixConversation, id)
	}
	if c := f.conversation; len(c) > 0 {
		if c[0] == '{' {
			c = member(c, "id")
		}
		if id, ok := validID(boundedString(c, maxIDLen)); ok {
			return explicit(SourceConversation, prefixConversation, id)
		}
	}

	// 7. Message hash.
	return messageHash(&f)
}

// scanBody walks the top level of body once and records the members of
// interest in f. It reports whether body is a well-formed JSON object.
func scanBody(body []byte, f *bodyFields) bool {
	return forEachMember(body, func(key, val []byte) bool {
		switch string(key) { // no allocation: the compiler optimises this conversion
		case "metadata":
			if val[0] == '{' {
				f.metadata = val
			}
		case "prompt_cache_key":
			f.promptCacheKey = val
		case "conversation_id":
			f.conversationID = val
		case "conversation":
			f.conversation = val
		case "system":
			f.system = val
		case "messages":
			f.messages = val
		case "contents":
			f.contents = val
		case "systemInstruction", "system_instruction":
			f.systemInstruction = val
		case "instructions":
			f.instructions = val
		case "input":
			f.input = val
		}
		return true
	})
}

// header returns the first value stored under any of keys, looked up
// verbatim so that non-canonical keys (such as Session_id) are found too.
func header(h http.Header, keys ...string) string {
	for _, k := range keys {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// validID trims spaces from s and reports whether the result is a usable
// explicit ID: not empty, at most maxIDLen bytes, valid UTF-8 and free of
// control characters.
func validID(s string) (string, bool) {
	s = strings.Trim(s, " ")
	if s == "" || len(s) > maxIDLen {
		return "", false
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return "", false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			return "", false
		}
		i += n
	}
	return s, true
}

// claudeCodeSession returns the session UUID of a Claude Code user_id: the
// session_id of a JSON text, or the part after "_session_" of the legacy
// "user_<hash>[_account_<uuid>]_session_<uuid>" form. The JSON text is
// walked by the bounded, non-recursive walker of scan.go, so no nesting can
// exhaust the stack.
func claudeCodeSession(userID string) (string, bool) {
	t := strings.TrimSpace(userID)
	if len(t) > maxUserIDLen {
		return "", false
	}
	if strings.HasPrefix(t, "{") {
		var sid []byte
		if !forEachMember([]byte(t), func(k, v []byte) bool {
			if string(k) == "session_id" {
				sid = v
			}
			return true
		}) || !isString(sid) {
			return "", false
		}
		return validID(stringValue(sid))
	}
	if strings.HasPrefix(t, "user_") {
		if i := strings.LastIndex(t, "_session_"); i >= 0 {
			return validID(t[i+len("_session_"):])
		}
	}
	return "", false
}

// member returns the raw value of the member called name of the JSON object
// obj (already checked by scanBody), or nil.
func member(obj []byte, name string) []byte {
	var val []byte
	forEachMember(obj, func(k, v []byte) bool {
		if string(k) == name {
			val = v
			return false
		}
		return true
	})
	return val
}

// boundedString decodes a raw JSON string value whose decoded text can be
// at most max bytes long; longer values and non-strings give "". The raw
// length is checked first, so a huge value is never copied.
func boundedString(raw []byte, max int) string {
	// An escape takes at most 6 raw bytes per decoded byte (\u0041).
	if len(raw) > 6*max+2 {
		return ""
	}
	if s := stringValue(raw); len(s) <= max {
		return s
	}
	return ""
}

// stringValue decodes a raw JSON string value; anything else gives "".
func stringValue(raw []byte) string {
	if !isString(raw) {
		return ""
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	return gjson.ParseBytes(raw).Str
}

// textBytes returns the decoded content of a raw JSON string value without
// copying when it has no escapes; ok is false for non-strings.
func textBytes(raw []byte) (text []byte, ok bool) {
	if !isString(raw) {
		return nil, false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], true
	}
	return []byte(gjson.ParseBytes(raw).Str), true
}

// BindingModel returns model without a thinking suffix: a trailing
// parenthesised level such as "(high)", "(low)", "(medium)" or "(8192)",
// and a trailing "-thinking" (case-insensitive), so that all thinking levels
// of one model share a binding. It returns a substring of model and does not
// allocate.
func BindingModel(model string) string {
	for {
		m := strings.TrimRight(model, " ")
		if n := len(m); n > 2 && m[n-1] == ')' {
			if i := strings.LastIndexByte(m, '('); i > 0 && isLevel(m[i+1:n-1]) {
				m = strings.TrimRight(m[:i], " ")
			}
		}
		const suffix = "-thinking"
		if n := len(m); n > len(suffix) && strings.EqualFold(m[n-len(suffix):], suffix) {
			m = m[:n-len(suffix)]
		}
		if m == model {
			return model
		}
		model = m
	}
}

// isLevel reports whether s looks like a thinking level: a non-empty run of
// letters, digits, '-' and '_'.
func isLevel(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
