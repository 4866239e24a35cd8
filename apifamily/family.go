// Package apifamily recognises which LLM API a client request speaks
// (Anthropic Messages, OpenAI, Gemini) from its path, finds the requested
// model, and writes errors in that API's own JSON shape so that official SDKs
// parse them and apply their retry logic.
package apifamily

import (
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// Family is an LLM API wire format.
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

// Serves reports whether a credential of the given provider can answer
// requests of this family.
func (f Family) Serves(provider string) bool {
	switch f {
	case Anthropic:
		return provider == "claude"
	case OpenAI:
		return provider == "openai" || provider == "codex" || provider == "openai_compatible"
	case Gemini:
		return provider == "gemini"
	}
	return false
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
	// (messages, chat and text completions, embeddings, creating a
	// response, Gemini model actions). Only there can an upstream 404 mean
	// "this credential does not serve the model"; everywhere else a 404 is
	// about the client's request and goes back to the client.
	Generation bool
}

// Parse maps a request path to its API family:
//
//	/v1/messages*                         Anthropic
//	/v1/chat/completions, /v1/completions,
//	/v1/responses*, /v1/embeddings,
//	/v1/models, /v1/models/{id}           OpenAI (see ParseRequest)
//	/v1beta/models/{model}:{action},
//	/v1/models/{model}:{action}           Gemini
//
// ok is false for every other path.
func Parse(path string) (r Route, ok bool) {
	switch {
	case path == "/v1/messages", path == "/v1/messages/count_tokens":
		return Route{Family: Anthropic, Generation: true}, true
	case strings.HasPrefix(path, "/v1/messages/"):
		return Route{Family: Anthropic}, true
	case path == "/v1/chat/completions", path == "/v1/completions", path == "/v1/embeddings", path == "/v1/responses":
		return Route{Family: OpenAI, Generation: true}, true
	case path == "/v1/models", strings.HasPrefix(path, "/v1/responses/"):
		return Route{Family: OpenAI}, true
	}
	if id, ok := strings.CutPrefix(path, "/v1/models/"); ok && id != "" && !strings.ContainsAny(id, ":/") {
		// GET /v1/models/{id}: one model's metadata.
		return Route{Family: OpenAI}, true
	}
	for _, prefix := range [...]string{"/v1beta/models/", "/v1/models/"} {
		rest, found := strings.CutPrefix(path, prefix)
		if !found {
			continue
		}
		model, action, found := strings.Cut(rest, ":")
		if !found || model == "" || action == "" || strings.Contains(model, "/") {
			return Route{}, false
		}
		return Route{Family: Gemini, Model: model, Generation: true}, true
	}
	return Route{}, false
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

// BodyModel returns the "model" field of a JSON request body, or "".
func BodyModel(body []byte) string {
	return gjson.GetBytes(body, "model").String()
}
