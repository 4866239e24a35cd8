package apifamily

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Error kinds used in errors the plugin makes itself. They map onto each
// family's own error vocabulary in WriteError.
const (
	KindAuthentication = "authentication"
	KindNotFound       = "not_found"
	KindTooLarge       = "request_too_large"
	KindRateLimit      = "rate_limit"
	KindUnavailable    = "unavailable"
	KindUpstream       = "upstream"
	KindInvalidRequest = "invalid_request"
	KindPermission     = "permission"
)

// anthropicTypes maps error kinds to Anthropic's error.type values.
var anthropicTypes = map[string]string{
	KindAuthentication: "authentication_error",
	KindNotFound:       "not_found_error",
	KindTooLarge:       "request_too_large",
	KindRateLimit:      "rate_limit_error",
	KindUnavailable:    "overloaded_error",
	KindUpstream:       "api_error",
	KindInvalidRequest: "invalid_request_error",
	KindPermission:     "permission_error",
}

// openAITypes maps error kinds to OpenAI's error.type and error.code values.
var openAITypes = map[string][2]string{
	KindAuthentication: {"invalid_request_error", "invalid_api_key"},
	KindNotFound:       {"invalid_request_error", "not_found"},
	KindTooLarge:       {"invalid_request_error", "request_too_large"},
	KindRateLimit:      {"rate_limit_error", "rate_limit_exceeded"},
	KindUnavailable:    {"server_error", "no_credential_available"},
	KindUpstream:       {"server_error", "upstream_error"},
	KindInvalidRequest: {"invalid_request_error", "invalid_request"},
	KindPermission:     {"permission_error", "model_not_allowed"},
}

// geminiStatus maps HTTP status codes to Google RPC status names.
func geminiStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusRequestEntityTooLarge:
		return "INVALID_ARGUMENT"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

// ErrorBody renders an error in the family's JSON shape:
//
//	Anthropic: {"type":"error","error":{"type":"rate_limit_error","message":"..."}}
//	OpenAI:    {"error":{"message":"...","type":"...","code":"..."}}
//	Gemini:    {"error":{"code":429,"message":"...","status":"RESOURCE_EXHAUSTED"}}
//
// Unknown families get the OpenAI shape.
func ErrorBody(f Family, status int, kind, message string) []byte {
	var v any
	switch f {
	case Anthropic:
		t := anthropicTypes[kind]
		if t == "" {
			t = "api_error"
		}
		v = anthropicError{Type: "error", Error: anthropicDetail{Type: t, Message: message}}
	case Gemini:
		v = geminiError{Error: geminiDetail{Code: status, Message: message, Status: geminiStatus(status)}}
	default:
		tc, ok := openAITypes[kind]
		if !ok {
			tc = [2]string{"server_error", kind}
		}
		v = openAIError{Error: openAIDetail{Message: message, Type: tc[0], Code: tc[1]}}
	}
	b, _ := json.Marshal(v)
	return b
}

type anthropicError struct {
	Type  string          `json:"type"`
	Error anthropicDetail `json:"error"`
}

type anthropicDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type openAIError struct {
	Error openAIDetail `json:"error"`
}

type openAIDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

type geminiError struct {
	Error geminiDetail `json:"error"`
}

type geminiDetail struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

// WriteError writes an error response in the family's shape. A positive
// retryAfter (seconds) is sent as Retry-After.
func WriteError(w http.ResponseWriter, f Family, status int, kind, message string, retryAfter int) {
	body := ErrorBody(f, status, kind, message)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if f == Anthropic && kind == KindRateLimit {
		// Anthropic's SDKs read this header before Retry-After.
		h.Set("x-should-retry", "true")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// StreamErrorEvent renders a server-sent event that reports an error in the
// middle of a stream, the way each API does it, so SDKs raise it as an
// error and the stream still ends cleanly:
//
//	Anthropic:        event: error / data: {"type":"error","error":{"type":"api_error",...}}
//	OpenAI Responses: event: error / data: {"type":"error","code":"upstream_error","message":...}
//	OpenAI Chat, Gemini: data: {"error":{...}}
func StreamErrorEvent(f Family, path, message string) []byte {
	var b []byte
	switch {
	case f == Anthropic:
		b = append(b, "event: error\ndata: "...)
		b = append(b, ErrorBody(f, http.StatusBadGateway, KindUpstream, message)...)
	case f == OpenAI && strings.HasPrefix(path, "/v1/responses"):
		ev, _ := json.Marshal(struct {
			Type    string `json:"type"`
			Code    string `json:"code"`
			Message string `json:"message"`
		}{"error", "upstream_error", message})
		b = append(b, "event: error\ndata: "...)
		b = append(b, ev...)
	default:
		b = append(b, "data: "...)
		b = append(b, ErrorBody(f, http.StatusBadGateway, KindUpstream, message)...)
	}
	return append(b, "\n\n"...)
}
