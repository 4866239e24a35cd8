package failure

import (
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// StatusOverloaded is Anthropic's status for an overloaded upstream, which
// an overloaded_error event inside a stream stands for.
const StatusOverloaded = 529

// StreamRejection reads one server-sent event (its event name and its data)
// that arrived in a 200 stream before any output, and reports whether it is
// a refusal that would have been a 429 or 529 status had it come first:
//
//   - Anthropic: event "error" (or data type "error") whose error.type is
//     rate_limit_error (429) or overloaded_error (529);
//   - Responses (OpenAI, Codex): data type "response.failed" whose
//     response.error.code (or .type) names a rate limit or a usage limit
//     (rate_limit_exceeded, usage_limit_reached...): 429.
//
// body is what [Classify] reads as that status's body: the event's data,
// or for response.failed {"error": <response.error>}, so that a Codex
// usage limit's resets_at and resets_in_seconds are honoured.
func StreamRejection(event string, data []byte) (status int, body []byte, ok bool) {
	root := jsonRoot(data)
	if !root.IsObject() {
		return 0, nil, false
	}
	typ := stringField(root.Get("type"))
	switch {
	case event == "error" || typ == "error":
		switch stringField(root.Get("error.type")) {
		case "rate_limit_error":
			return http.StatusTooManyRequests, data, true
		case "overloaded_error":
			return StatusOverloaded, data, true
		}
	case typ == "response.failed":
		e := root.Get("response.error")
		if !e.IsObject() {
			return 0, nil, false
		}
		code := stringField(e.Get("code")) + " " + stringField(e.Get("type"))
		if strings.Contains(code, "rate_limit") || strings.Contains(code, "usage_limit") {
			return http.StatusTooManyRequests, wrapError(e), true
		}
	}
	return 0, nil, false
}

// wrapError is {"error": e}.
func wrapError(e gjson.Result) []byte {
	b := make([]byte, 0, len(e.Raw)+10)
	b = append(b, `{"error":`...)
	b = append(b, e.Raw...)
	return append(b, '}')
}
