// Package apifamily recognises which LLM API a client request speaks
// (Anthropic Messages, OpenAI, Gemini) from its path, finds the requested
// model, and writes errors in that API's own JSON shape so that official SDKs
// parse them and apply their retry logic.
package apifamily

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Family is an LLM API wire format. Which providers serve a family is the
// provider table's to say (internal/provider).
type Family uint8

// The API families llm_proxy understands.
const (
	Unknown Family = iota
	Anthropic
	OpenAI
	Gemini
)

// String returns the family's lowercase name, as used in logs and metrics.
func (f Family) String() string {
	switch f {
	case Anthropic:
		return "anthropic"
	case OpenAI:
		return "openai"
	case Gemini:
		return "gemini"
	}
	return "unknown"
}

// Route is what the path of a request says about it.
type Route struct {
	Family Family
	// Model is the model named in the path (Gemini only); empty otherwise,
	// in which case the body's "model" field names it. A request that names
	// no model at all (GET /v1/models) can be served by any credential of the
	// family.
	Model string
	// Generation marks an endpoint that runs the model the request names
	// (messages and their token count, chat and text completions,
	// embeddings, creating, compacting or counting the tokens of a
	// response, Gemini model actions). Only there can an upstream 404 mean
	// "this credential does not serve the model"; everywhere else a 404 is
	// about the client's request and goes back to the client.
	Generation bool
	// Endpoint is the kind of OpenAI endpoint the route is (zero for the
	// other families), for providers that serve only some of them.
	Endpoint Endpoint
}

// Endpoint is a kind of OpenAI endpoint. Some providers speak the OpenAI
// wire format for only part of the API: the ChatGPT backend behind Codex
// credentials serves Responses and the model list, nothing else.
type Endpoint uint8

// The OpenAI endpoint kinds.
const (
	// EndpointAny is a route of another family.
	EndpointAny Endpoint = iota
	// EndpointChat is /v1/chat/completions and /v1/completions.
	EndpointChat
	// EndpointEmbeddings is /v1/embeddings.
	EndpointEmbeddings
	// EndpointResponses is /v1/responses and everything under it.
	EndpointResponses
	// EndpointModels is /v1/models and /v1/models/{id}, and Gemini's
	// /v1beta/models and /v1beta/models/{model}.
	EndpointModels
)

// Limits on what a client may name.
const (
	// MaxModelLen is the longest model name accepted, in bytes. Per-model
	// state (cooldowns, eligible sets, bindings) is keyed by it.
	MaxModelLen = 256
	// MaxIDLen is the longest resource ID accepted in a path, in bytes.
	MaxIDLen = 256
)

// geminiActions are the Gemini model actions served: stateless calls on one
// model. Actions that create account-bound resources (batches, long-running
// operations, cached contents) are not served.
var geminiActions = map[string]bool{
	"generateContent":       true,
	"streamGenerateContent": true,
	"countTokens":           true,
	"embedContent":          true,
	"batchEmbedContents":    true,
}

// maxSegments is the most path segments of any served endpoint.
const maxSegments = 5

// Parse maps a request path to its API family. Only these exact paths are
// served, each {id} and {model} being one segment of letters, digits, '_',
// '.', '-' and ':' ({model} without ':'), IDs at most MaxIDLen bytes:
//
//	/v1/messages, /v1/messages/count_tokens,
//	/v1/messages/batches, /v1/messages/batches/{id}[/results|/cancel]    Anthropic
//	/v1/chat/completions, /v1/completions, /v1/embeddings,
//	/v1/responses, /v1/responses/compact, /v1/responses/input_tokens,
//	/v1/responses/{id}[/input_items|/cancel],
//	/v1/models, /v1/models/{id}                                          OpenAI (see ParseRequest)
//	/v1beta/models/{model}:{action}, /v1/models/{model}:{action},
//	/v1beta/models, /v1beta/models/{model}                               Gemini
//
// Gemini actions are generateContent, streamGenerateContent, countTokens,
// embedContent and batchEmbedContents. ok is false for every other path,
// including any with an empty, "." or ".." segment: path is the decoded
// path, so percent-encoded dots are refused too.
func Parse(path string) (r Route, ok bool) {
	seg, n := split(path)
	if n < 2 || seg[0] != "v1" && seg[0] != "v1beta" {
		return Route{}, false
	}
	if seg[0] == "v1beta" {
		switch {
		case n == 2 && seg[1] == "models":
			return Route{Family: Gemini, Endpoint: EndpointModels}, true
		case n == 3 && seg[1] == "models":
			if r, ok := geminiRoute(seg[2]); ok {
				return r, true
			}
			if len(seg[2]) <= MaxIDLen && validModelSegment(seg[2]) {
				// GET /v1beta/models/{model}: one model's metadata.
				return Route{Family: Gemini, Endpoint: EndpointModels}, true
			}
		}
		return Route{}, false
	}
	anthropic := Route{Family: Anthropic}
	openAI := func(e Endpoint) Route { return Route{Family: OpenAI, Endpoint: e} }
	generation := func(r Route) (Route, bool) { r.Generation = true; return r, true }
	switch {
	case n == 2:
		switch seg[1] {
		case "messages":
			return generation(anthropic)
		case "completions":
			return generation(openAI(EndpointChat))
		case "embeddings":
			return generation(openAI(EndpointEmbeddings))
		case "responses":
			return generation(openAI(EndpointResponses))
		case "models":
			return openAI(EndpointModels), true
		}
	case seg[1] == "messages":
		if n == 3 && seg[2] == "count_tokens" {
			return generation(anthropic)
		}
		// n is at most maxSegments (5).
		if seg[2] == "batches" && (n == 3 || validID(seg[3]) && (n == 4 || seg[4] == "results" || seg[4] == "cancel")) {
			return anthropic, true
		}
	case seg[1] == "chat":
		if n == 3 && seg[2] == "completions" {
			return generation(openAI(EndpointChat))
		}
	case seg[1] == "responses":
		if n == 3 && (seg[2] == "compact" || seg[2] == "input_tokens") {
			return generation(openAI(EndpointResponses))
		}
		if validID(seg[2]) && (n == 3 || n == 4 && (seg[3] == "input_items" || seg[3] == "cancel")) {
			return openAI(EndpointResponses), true
		}
	case seg[1] == "models" && n == 3:
		if r, ok := geminiRoute(seg[2]); ok {
			return r, true
		}
		if validID(seg[2]) {
			// GET /v1/models/{id}: one model's metadata (fine-tuned model
			// IDs contain ':').
			return openAI(EndpointModels), true
		}
	}
	return Route{}, false
}

// geminiRoute parses the {model}:{action} segment of a Gemini path.
func geminiRoute(s string) (Route, bool) {
	model, action, found := strings.Cut(s, ":")
	if !found || !geminiActions[action] || !validModelSegment(model) {
		return Route{}, false
	}
	return Route{Family: Gemini, Model: model, Generation: true}, true
}

// split cuts a path into its segments, without allocating. n is 0 when the
// path does not start with '/', has more than maxSegments segments, or has
// an empty, "." or ".." segment (a trailing slash or "//" included).
func split(path string) (seg [maxSegments]string, n int) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return seg, 0
	}
	for {
		s, after, more := strings.Cut(rest, "/")
		if n == maxSegments || s == "" || s == "." || s == ".." {
			return seg, 0
		}
		seg[n] = s
		n++
		if !more {
			return seg, n
		}
		rest = after
	}
}

// validID reports whether s is a usable resource ID in a path: 1 to
// MaxIDLen bytes of letters, digits, '_', '.', '-' and ':', and not "." or
// "..".
func validID(s string) bool {
	return len(s) <= MaxIDLen && safeSegment(s, true)
}

// validModelSegment reports whether s can be the {model} of a Gemini path:
// letters, digits, '_', '.' and '-'. Its length is checked with the body's model
// (CheckModel), so that the client gets a 400 in its own shape.
func validModelSegment(s string) bool {
	return safeSegment(s, false)
}

func safeSegment(s string, colon bool) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		case c == ':' && colon:
		default:
			return false
		}
	}
	return true
}

// ParseRequest is Parse with the request's headers: the model listing
// (/v1/models and /v1/models/{id}) exists in both the OpenAI and the
// Anthropic API, and a request carrying anthropic-version is Anthropic's.
func ParseRequest(path string, h http.Header) (Route, bool) {
	r, ok := Parse(path)
	if ok && r.Family == OpenAI && (path == "/v1/models" || strings.HasPrefix(path, "/v1/models/")) && h.Get("Anthropic-Version") != "" {
		r.Family = Anthropic
	}
	return r, ok
}

// BodyModel returns the "model" field of a JSON request body when it is a
// string; "" otherwise (absent, null, another type, or not JSON).
func BodyModel(body []byte) string {
	if r := gjson.GetBytes(body, "model"); r.Type == gjson.String {
		return r.Str
	}
	return ""
}

// CheckModel returns why a model name from a client is refused: longer than
// MaxModelLen bytes, not valid UTF-8, or holding control characters. The
// empty name (no model) is fine.
func CheckModel(model string) error {
	if len(model) > MaxModelLen {
		return fmt.Errorf("model name is %d bytes long; at most %d are accepted", len(model), MaxModelLen)
	}
	if !utf8.ValidString(model) {
		return fmt.Errorf("model name is not valid UTF-8")
	}
	for _, c := range model {
		if c < 0x20 || c >= 0x7f && c < 0xa0 {
			return fmt.Errorf("model name holds control character %U", c)
		}
	}
	return nil
}
