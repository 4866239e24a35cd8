package failure

import (
	"strings"

	"github.com/tidwall/gjson"
)

// errorBody is what the rules read in a provider's error body. Every test
// on it is phrased so that text the client chose (a model name, a path, a
// field name that the upstream echoes) cannot make an answer about the
// request look like one about the credential.
type errorBody struct {
	// message is the error's text, lower case: error.message, error (when
	// a string), message or detail of a JSON body, or the whole body when
	// it is plain text.
	message string
	code    string // error.code or code, when a string (OpenAI)
	typ     string // error.type (Anthropic, OpenAI)
	status  string // error.status (Gemini)
	// reasons are the reasons of the google.rpc.ErrorInfo entries of
	// error.details (Gemini).
	reasons []string
	// html: the body is an HTML page (a web server's or a front end's own
	// error page, which quotes the requested URL).
	html bool
}

// parseErrorBody reads an error body: a JSON object, a JSON array whose
// first element is one (Gemini streaming), or plain text.
func parseErrorBody(body []byte) errorBody {
	var e errorBody
	root := jsonRoot(body)
	if !root.Exists() {
		text := strings.TrimSpace(string(body))
		e.html = strings.HasPrefix(text, "<")
		e.message = strings.ToLower(text)
		return e
	}
	if root.IsArray() {
		root = root.Get("0")
	}
	if !root.IsObject() {
		return e
	}
	errv := root.Get("error")
	msg := errv.Get("message").String()
	if errv.Type == gjson.String {
		// {"error": "model 'x' not found"} (Ollama and similar).
		msg = errv.Str
	}
	for _, alt := range [...]string{"message", "detail"} {
		if msg == "" {
			msg = root.Get(alt).String()
		}
	}
	e.message = strings.ToLower(msg)
	e.code = stringField(errv.Get("code"))
	if e.code == "" {
		e.code = stringField(root.Get("code"))
	}
	e.typ = stringField(errv.Get("type"))
	e.status = stringField(errv.Get("status"))
	if details := errv.Get("details"); details.IsArray() {
		details.ForEach(func(_, d gjson.Result) bool {
			if d.IsObject() && hasType(d, "google.rpc.ErrorInfo") {
				e.reasons = append(e.reasons, d.Get("reason").String())
			}
			return true
		})
	}
	return e
}

// stringField is r's value when it is a JSON string, else "".
func stringField(r gjson.Result) string {
	if r.Type != gjson.String {
		return ""
	}
	return r.Str
}

// says reports whether the message contains phrase (lower case).
func (e errorBody) says(phrase string) bool {
	return strings.Contains(e.message, phrase)
}

// modelMissing reports whether a 404 body says that model does not exist,
// in the words of the provider whose shape the body has. A body in a
// provider's shape is judged by that provider's rule alone, so a message
// that merely quotes the model (a missing file named after it, an unknown
// URL containing it) does not count.
func (e errorBody) modelMissing(model string) bool {
	model = strings.ToLower(model)
	switch {
	case e.code == "model_not_found":
		// OpenAI: "The model `x` does not exist or you do not have access
		// to it."
		return true
	case e.typ == "not_found_error":
		// Anthropic: {"type":"not_found_error","message":"model: x"}. Its
		// other 404s (an unknown URL, a file) do not start so.
		return strings.HasPrefix(e.message, "model:")
	case e.status == "NOT_FOUND":
		// Gemini: "models/x is not found for API version v1beta, or is not
		// supported for generateContent." An unknown method echoes the
		// path, where the name is followed by ":action": no match.
		return namesModel(e.message, "models/"+model) &&
			(e.says("not found") || e.says("unknown model"))
	case e.html:
		// A web server's page quoting the URL ("The requested URL
		// /v1beta/models/x:bogus was not found on this server").
		return false
	}
	// OpenAI-compatible servers, in JSON or plain text: "The model `x`
	// does not exist.", "model 'x' not found, try pulling it first",
	// "Model x not found".
	return e.says("model") && (e.says("not found") || e.says("does not exist")) && namesModel(e.message, model)
}

// namesModel reports whether msg (lower case) names name as a whole word:
// not inside a longer name, and not followed by ':' or '/' as in a quoted
// URL path (models/x:action).
func namesModel(msg, name string) bool {
	if name == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		if (start == 0 || !isNameByte(msg[start-1])) && !continuesName(msg, end) {
			return true
		}
		i = start + 1
	}
}

// continuesName reports whether the text at msg[end:] continues a model
// name or a path: a name character, ':' or '/', or '.' followed by a name
// character (a final '.' ends the sentence).
func continuesName(msg string, end int) bool {
	if end >= len(msg) {
		return false
	}
	switch c := msg[end]; {
	case c == ':' || c == '/':
		return true
	case c == '.':
		return end+1 < len(msg) && isNameByte(msg[end+1])
	default:
		return isNameByte(c)
	}
}

// isNameByte reports whether c can be part of a model name.
func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// keyInvalid reports whether a 400 body is Gemini's answer to a revoked,
// expired or unknown API key: a google.rpc.ErrorInfo with reason
// API_KEY_INVALID (or API_KEY_EXPIRED), or a message that starts "API key
// not valid" or "API key expired". Only the start of the message counts:
// Gemini's other 400s quote the request ("Invalid JSON payload received.
// Unknown name ...").
func (e errorBody) keyInvalid() bool {
	for _, r := range e.reasons {
		if r == "API_KEY_INVALID" || r == "API_KEY_EXPIRED" {
			return true
		}
	}
	return strings.HasPrefix(e.message, "api key not valid") || strings.HasPrefix(e.message, "api key expired")
}

// requestTooLarge reports whether a 429 body says that the request alone
// exceeds a per-minute token limit (OpenAI: "Request too large for gpt-4o
// in organization org-... on tokens per min (TPM): Limit 30000, Requested
// 36000."). That refusal is about the request: the limit was not reached,
// and a credential of the same tier would refuse it too.
func (e errorBody) requestTooLarge() bool {
	return strings.HasPrefix(e.message, "request too large")
}

// resourceDenied reports whether a 403 body is Gemini's refusal of a
// resource the request referred to, which it cannot tell from a missing
// one: "You do not have permission to access the File x or it may not
// exist.", "CachedContent not found (or permission denied)". A client can
// name any file or cache, so such a refusal says nothing about the key.
// Google's refusals of the key or its project (API_KEY_SERVICE_BLOCKED,
// SERVICE_DISABLED, CONSUMER_SUSPENDED...) carry a google.rpc.ErrorInfo
// and stay authentication failures.
func (e errorBody) resourceDenied() bool {
	return e.status == "PERMISSION_DENIED" && len(e.reasons) == 0 &&
		(e.says("may not exist") || e.says("not found"))
}
