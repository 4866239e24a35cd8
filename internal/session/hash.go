package session

import "github.com/caddy-llm-proxy/llmproxy/internal/stablehash"

// Message hash (signal 7): a 64-bit FNV-1a hash, stable across processes,
// machines and Go versions, of
//
//	system prompt pieces, then first user message pieces      -> short ID
//	... then first assistant message pieces                    -> full ID
//
// Each text piece is written as a tag byte ('s', 'u' or 'a'), the decoded
// text and a 0xff terminator (a byte that never occurs in UTF-8), so pieces
// cannot run into each other. A string content and an array holding the same
// single text block hash the same.
//
// The system prompt is the Claude "system", Gemini "systemInstruction", OpenAI
// Responses "instructions", plus every system/developer message that comes
// before the first user message. Assistant messages before the first user
// message are ignored, so an opening greeting does not change the hash
// between turns.

// hasher is the FNV-1a state of the message hash.
type hasher struct{ stablehash.FNV }

// piece writes one tagged text piece.
func (h *hasher) piece(tag byte, text []byte) {
	h.AddByte(tag)
	h.Add(text)
	h.AddByte(0xff)
}

// role classes of a message.
const (
	roleOther = iota
	roleSystem
	roleUser
	roleAssistant
)

func roleClass(raw []byte, gemini bool) int {
	if raw == nil && gemini {
		return roleUser // Gemini treats a content without role as the user's
	}
	switch string(stringRaw(raw)) {
	case "user":
		return roleUser
	case "assistant", "model":
		return roleAssistant
	case "system", "developer":
		return roleSystem
	}
	return roleOther
}

// stringRaw returns the raw bytes between the quotes of a JSON string value
// (escapes left in place), or nil.
func stringRaw(raw []byte) []byte {
	if !isString(raw) {
		return nil
	}
	return raw[1 : len(raw)-1]
}

// textPieces writes the texts of a content value: a string, an array of
// blocks/parts with a "text" member (types "text", "input_text",
// "output_text" or none), or an object with "parts" (Gemini content).
func textPieces(h *hasher, tag byte, content []byte) {
	if len(content) == 0 {
		return
	}
	switch content[0] {
	case '"':
		if t, ok := textBytes(content); ok {
			h.piece(tag, t)
		}
	case '[':
		forEachElement(content, func(block []byte) bool {
			if len(block) == 0 || block[0] != '{' {
				if t, ok := textBytes(block); ok { // array of strings
					h.piece(tag, t)
				}
				return true
			}
			var typ, text []byte
			forEachMember(block, func(k, v []byte) bool {
				switch string(k) {
				case "type":
					typ = v
				case "text":
					text = v
				}
				return true
			})
			switch string(stringRaw(typ)) {
			case "", "text", "input_text", "output_text":
				if t, ok := textBytes(text); ok {
					h.piece(tag, t)
				}
			}
			return true
		})
	case '{':
		// A Gemini content: its parts are an array. An object is not
		// descended into again, so the work stays linear in the body
		// whatever the nesting ({"parts":{"parts":...}} would otherwise be
		// walked once per level).
		if parts := member(content, "parts"); len(parts) > 0 && parts[0] != '{' {
			textPieces(h, tag, parts)
		}
	}
}

// messageHash computes signal 7 from the captured body fields.
func messageHash(f *bodyFields) IDs {
	h := hasher{stablehash.Offset}
	textPieces(&h, 's', f.system)
	textPieces(&h, 's', f.systemInstruction)
	textPieces(&h, 's', f.instructions)

	list, gemini := f.messages, false
	switch {
	case list != nil:
	case f.contents != nil:
		list, gemini = f.contents, true
	case f.input != nil:
		list = f.input
		if isString(list) { // Responses input as a plain string: the user message
			textPieces(&h, 'u', list)
			return hashIDs(h, h, false)
		}
	default:
		return IDs{}
	}

	var short hasher
	seenUser, seenAssistant := false, false
	forEachElement(list, func(msg []byte) bool {
		if len(msg) == 0 || msg[0] != '{' {
			return true
		}
		var role, typ, content []byte
		hasType := false
		forEachMember(msg, func(k, v []byte) bool {
			switch string(k) {
			case "role":
				role = v
			case "type":
				typ, hasType = v, true
			case "content", "parts":
				content = v
			}
			return true
		})
		// Responses items: a message is {"type":"message",...} or has a role
		// and no type; function calls, reasoning and the like are skipped.
		if hasType && string(stringRaw(typ)) != "message" {
			return true
		}
		if !gemini && role == nil {
			return true
		}
		switch roleClass(role, gemini) {
		case roleSystem:
			if !seenUser {
				textPieces(&h, 's', content)
			}
		case roleUser:
			if !seenUser {
				seenUser = true
				textPieces(&h, 'u', content)
				short = h
			}
		case roleAssistant:
			if seenUser {
				seenAssistant = true
				textPieces(&h, 'a', content)
				return false
			}
		}
		return true
	})
	if !seenUser {
		return IDs{}
	}
	return hashIDs(h, short, seenAssistant)
}

// hashIDs formats the message-hash IDs from the full and short states.
func hashIDs(full, short hasher, withAssistant bool) IDs {
	s := hashID(short)
	if !withAssistant || full == short {
		return IDs{Primary: s, Stable: s, Source: SourceMessageHash}
	}
	return IDs{Primary: hashID(full), Fallback: s, Stable: s, Source: SourceMessageHash}
}

// hashID renders a hash as prefixMessageHash + 16 lower-case hex digits.
func hashID(h hasher) string {
	const digits = "0123456789abcdef"
	var b [len(prefixMessageHash) + 16]byte
	n := copy(b[:], prefixMessageHash)
	x := uint64(h.FNV)
	for i := len(b) - 1; i >= n; i-- {
		b[i] = digits[x&0xf]
		x >>= 4
	}
	return string(b[:])
}
