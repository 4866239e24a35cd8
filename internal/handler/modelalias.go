package handler

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
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
// is in body, quotes included.
func bodyModelSpan(body []byte) (start, end int, ok bool) {
	lead := len(body) - len(trimJSONSpace(body))
	if lead == len(body) || body[lead] != '{' || !gjson.ValidBytes(body) {
		return 0, 0, false
	}
	obj := gjson.Parse(string(body[lead:]))
	obj.ForEach(func(k, v gjson.Result) bool {
		if k.Str != "model" {
			return true
		}
		if v.Type == gjson.String {
			start = lead + v.Index
			end = start + len(v.Raw)
			ok = end <= len(body) && string(body[start:end]) == v.Raw
		}
		return false
	})
	return start, end, ok
}

// countModelKeys counts the top-level keys of a JSON object body that name
// "model" ignoring case, after unescaping: a body with two of them could
// be read differently by the gateway and by an upstream (the first or the
// last wins, or a case-insensitive decoder picks either).
func countModelKeys(body []byte) int {
	n := 0
	obj := gjson.ParseBytes(body)
	if !obj.IsObject() {
		return 0
	}
	obj.ForEach(func(k, _ gjson.Result) bool {
		if strings.EqualFold(k.Str, "model") {
			n++
		}
		return true
	})
	return n
}

// trimJSONSpace drops the JSON white space before a value.
func trimJSONSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
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
