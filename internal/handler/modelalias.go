package handler

import (
	"bytes"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// aliased returns the body to send with credential a, with the model
// renamed by a's model_alias, and for a Gemini request the upstream name
// for the path ("" when the path keeps its model). Bindings, cooldowns and
// metrics stay keyed by the client-visible req.model.
func aliased(req *parsed, a *auth.Auth) (body []byte, pathModel string) {
	up := a.UpstreamModel(req.model)
	if up == req.model {
		return req.body, ""
	}
	if req.route.Model != "" {
		return req.body, up
	}
	body, _ = withBodyModel(req.body, up)
	return body, ""
}

// withBodyModel returns body with the value of its top-level "model" string
// replaced by model, every other byte as it was. ok is false, and body is
// returned unchanged, when body is not a valid JSON object or has no
// top-level "model" string. Nested "model" keys are never touched. Callers
// refuse bodies with more than one top-level model key (see countModelKeys),
// so the one replaced is the one the upstream reads.
func withBodyModel(body []byte, model string) (out []byte, ok bool) {
	start, end, ok := bodyModelSpan(body)
	if !ok {
		return body, false
	}
	enc := quoteJSON(model)
	out = make([]byte, 0, len(body)-(end-start)+len(enc))
	out = append(out, body[:start]...)
	out = append(out, enc...)
	return append(out, body[end:]...), true
}

// bodyModelSpan returns where the raw value of the top-level "model" string
// is in body, quotes included. It walks the body with the session
// package's bounded walker: client bodies are never validated recursively
// (a body nesting millions of arrays would overflow the stack).
func bodyModelSpan(body []byte) (start, end int, ok bool) {
	found := false
	wellFormed := session.ForEachMember(body, func(key, val []byte) bool {
		if !found && keyIs(key, "model", false) {
			found = true
			if val[0] == '"' {
				// val is a slice of body: its offset is what its capacity lacks.
				start = cap(body) - cap(val)
				end, ok = start+len(val), true
			}
		}
		return true // walk to the end: only a well-formed body is rewritten
	})
	if !wellFormed {
		return 0, 0, false
	}
	return start, end, ok
}

// countModelKeys counts the top-level keys of a JSON object body that name
// "model" ignoring case, after unescaping: a body with two of them could
// be read differently by the gateway and by an upstream (the first or the
// last wins, or a case-insensitive decoder picks either).
func countModelKeys(body []byte) int {
	n := 0
	session.ForEachMember(body, func(key, _ []byte) bool {
		if keyIs(key, "model", true) {
			n++
		}
		return true
	})
	return n
}

// keyIs reports whether a raw JSON key (between its quotes) is name once
// unescaped, ignoring case when fold is set.
func keyIs(raw []byte, name string, fold bool) bool {
	if bytes.IndexByte(raw, '\\') >= 0 {
		raw = []byte(gjson.Parse(`"` + string(raw) + `"`).Str)
	}
	if fold {
		return bytes.EqualFold(raw, []byte(name))
	}
	return string(raw) == name
}

// quoteJSON encodes s as a JSON string.
func quoteJSON(s string) []byte {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, len(s)+2)
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

// withPathModel returns the path of a Gemini request for model from with
// its {model} segment ("/models/{model}:{action}") naming to instead.
func withPathModel(path, from, to string) string {
	seg := "/models/" + from + ":"
	i := strings.LastIndex(path, seg)
	if i < 0 {
		return path
	}
	return path[:i] + "/models/" + to + ":" + path[i+len(seg):]
}
