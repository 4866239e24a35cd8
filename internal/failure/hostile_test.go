package failure

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The tests in this file are written from the attacker's side: a client
// that wants one request to cool a credential, or a model on every
// credential, for everybody.

const (
	geminiKeyInvalid = `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",` +
		`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com",` +
		`"metadata":{"service":"generativelanguage.googleapis.com"}},` +
		`{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"API key not valid. Please pass a valid API key."}]}}`
	geminiKeyExpired = `{"error":{"code":400,"message":"API key expired. Please renew the API key.","status":"INVALID_ARGUMENT",` +
		`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`
	// Gemini quotes an unknown field name of the request in its 400.
	geminiEchoedField = `{"error":{"code":400,"message":"Invalid JSON payload received. Unknown name \"API key not valid\" at 'contents[0]': Cannot find field.",` +
		`"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"contents[0]",` +
		`"description":"Invalid JSON payload received. Unknown name \"API_KEY_INVALID\" at 'contents[0]': Cannot find field."}]}]}}`
	geminiMethodNotSupported = `{"error":{"code":404,"message":"models/gemini-2.5-pro is not found for API version v1beta, or is not supported for embedContent. ` +
		`Call ListModels to see the list of available models and their supported methods.","status":"NOT_FOUND"}}`
)

func TestClassifyNotFound(t *testing.T) {
	ret := Verdict{Action: Return, Reason: "client_error"}
	mnf := Verdict{Action: Failover, Scope: ScopeModel, Reason: "model_not_found", Until: now.Add(testPolicy.ModelNotFound)}
	endpoint := mnf
	endpoint.Scope = ScopeEndpoint
	read := Request{} // GET /v1/models/{id}, a stored response, a batch

	tests := []struct {
		name string
		req  Request
		body string
		want Verdict
	}{
		// What each provider says when the model does not exist.
		{"openai model_not_found", gen("gpt-9"), openAIModelNotFound, mnf},
		{"openai top-level code", gen("x"), `{"code":"model_not_found","message":"x"}`, mnf},
		{"anthropic model", gen("claude-9-opus"), anthropicModelNotFound, mnf},
		{"gemini model", gen("gemini-9-pro"), geminiModelNotFound, endpoint},
		{"gemini model in a stream array", gen("gemini-9-pro"), "[" + geminiModelNotFound + "]", endpoint},
		{"gemini unknown model", gen("gemini-9"), `{"error":{"code":404,"message":"Unknown model: models/gemini-9","status":"NOT_FOUND"}}`, mnf},
		{"gemini model, other case", gen("Gemini-9-Pro"), geminiModelNotFound, endpoint},
		{"vllm", gen("llama-9"), vllmModelNotFound, mnf},
		{"ollama", gen("llama9"), ollamaModelNotFound, mnf},
		{"plain text", gen("foo"), "Model Not Found: foo", mnf},
		{"detail field", gen("llama-9"), `{"detail":"Model llama-9 not found"}`, mnf},

		// A request for a method the model lacks gets Gemini's same
		// words: it cools that model only for that method.
		{"gemini method the model lacks", gen("gemini-2.5-pro"), geminiMethodNotSupported, endpoint},

		// Unknown paths, actions and resources are the client's.
		{"empty", gen("gpt-5"), "", ret},
		{"bare detail", gen("claude-sonnet-4-5"), `{"detail":"Not Found"}`, ret},
		{"html page", gen("gpt-5"), "<html><body>404 page not found</body></html>", ret},
		{"openai invalid url", gen("gpt-5"), openAIBadURL, ret},
		{"openai chat model on completions", gen("gpt-4o"), `{"error":{"message":"This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?","type":"invalid_request_error","param":"model","code":null}}`, ret},
		{"anthropic not found", gen("claude-sonnet-4-5"), anthropicNotFound, ret},
		{"anthropic unknown url naming the model", gen("claude-sonnet-4-5"), `{"type":"error","error":{"type":"not_found_error","message":"Unknown request URL: POST /v1/messages/model-claude-sonnet-4-5-not-found"}}`, ret},
		{"anthropic missing file named after a model", gen("claude-sonnet-4-5"), `{"type":"error","error":{"type":"not_found_error","message":"File not found: model claude-sonnet-4-5 not found"}}`, ret},
		{"gemini other entity", gen("gemini-2.5-pro"), geminiOtherNotFound, ret},
		{"gemini method unknown", gen("gemini-2.5-pro"), `{"error":{"code":404,"message":"Method unknown.","status":"NOT_FOUND"}}`, ret},
		{"gemini unknown action echoes the path", gen("gemini-2.5-pro"), `{"error":{"code":404,"message":"Unknown request URL: POST /v1beta/models/gemini-2.5-pro:bogus (model not found)","status":"NOT_FOUND"}}`, ret},
		{"google front end page for an unknown action", gen("gemini-2.5-pro"), `<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)!!1</title><p>The requested URL <code>/v1beta/models/gemini-2.5-pro:bogus</code> was not found on this server. That's all we know.`, ret},
		{"plain text path echo", gen("gemini-2.5-pro"), "model not found: /v1beta/models/gemini-2.5-pro:bogus", ret},
		{"longer model name", gen("gpt-5"), `{"detail":"Model gpt-5-pro not found"}`, ret},
		{"model name inside another", gen("llama"), `{"detail":"Model codellama not found"}`, ret},
		{"another model missing", gen("gpt-5"), `{"detail":"Model gpt-9 does not exist"}`, ret},
		{"previous response", gen("gpt-5"), `{"error":{"message":"Previous response with id 'resp_123' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`, ret},

		// Nothing is ever cooled for a request that names no model or
		// does not run one, whatever the body says.
		{"no model, openai model_not_found", read, openAIModelNotFound, ret},
		{"no model, anthropic model", read, anthropicModelNotFound, ret},
		{"model read, not generation", Request{Model: "gpt-9"}, openAIModelNotFound, ret},
		{"generation without a model", Request{Generation: true}, `{"detail":"Model  not found"}`, ret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertVerdict(t, classifyStatus(tt.req, http.StatusNotFound, nil, tt.body), tt.want)
		})
	}
}

// TestClassifyWithoutModel: a request that names no model never cools a
// model scope; only answers about the credential itself cool it.
func TestClassifyWithoutModel(t *testing.T) {
	none := func(reason string) Verdict { return Verdict{Action: Failover, Scope: ScopeNone, Reason: reason} }
	auth := Verdict{Action: Failover, Scope: ScopeAll, Reason: "auth_failed", Until: now.Add(testPolicy.AuthFailure)}
	tests := []struct {
		status int
		h      http.Header
		body   string
		want   Verdict
	}{
		{429, hdr("Retry-After", "600"), "", none("rate_limited")},
		{429, nil, geminiRetry34s, none("rate_limited")},
		{500, hdr("Retry-After", "600"), "", none("server_error")},
		{503, nil, "", none("server_error")},
		{529, nil, "", none("server_error")},
		{408, nil, "", none("server_error")},
		{401, nil, "", auth},
		{403, nil, "", auth},
		{400, nil, geminiKeyInvalid, auth},
		{404, nil, openAIModelNotFound, Verdict{Action: Return, Reason: "client_error"}},
	}
	for _, tt := range tests {
		assertVerdict(t, classifyStatus(Request{}, tt.status, tt.h, tt.body), tt.want)
		assertVerdict(t, classifyStatus(Request{Generation: true}, tt.status, tt.h, tt.body), tt.want)
	}
}

func TestClassifyGeminiKey(t *testing.T) {
	ret := Verdict{Action: Return, Reason: "client_error"}
	auth := Verdict{Action: Failover, Scope: ScopeAll, Reason: "auth_failed", Until: now.Add(testPolicy.AuthFailure)}
	tests := []struct {
		name string
		body string
		want Verdict
	}{
		{"revoked", geminiKeyInvalid, auth},
		{"expired", geminiKeyExpired, auth},
		{"in a stream array", "[" + geminiKeyInvalid + "]", auth},
		{"reason only", `{"error":{"code":400,"message":"Bad key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}`, auth},
		{"message only", `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}`, auth},
		{"echoed field names", geminiEchoedField, ret},
		{"reason outside an ErrorInfo", `{"error":{"code":400,"message":"x","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","reason":"API_KEY_INVALID"}]}}`, ret},
		{"other invalid argument", `{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified\n","status":"INVALID_ARGUMENT"}}`, ret},
		{"location not supported", `{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}`, ret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertVerdict(t, classifyStatus(gen("gemini-2.5-pro"), http.StatusBadRequest, nil, tt.body), tt.want)
		})
	}
}

func TestClassifyForbidden(t *testing.T) {
	ret := Verdict{Action: Return, Reason: "client_error"}
	auth := Verdict{Action: Failover, Scope: ScopeAll, Reason: "auth_failed", Until: now.Add(testPolicy.AuthFailure)}
	tests := []struct {
		name string
		body string
		want Verdict
	}{
		{"gemini file of another project", `{"error":{"code":403,"message":"You do not have permission to access the File abc123 or it may not exist.","status":"PERMISSION_DENIED"}}`, ret},
		{"gemini cached content of another project", `{"error":{"code":403,"message":"CachedContent not found (or permission denied)","status":"PERMISSION_DENIED"}}`, ret},
		{"gemini service disabled", `{"error":{"code":403,"message":"Generative Language API has not been used in project 123 before or it is disabled.","status":"PERMISSION_DENIED",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com"}]}}`, auth},
		{"gemini key blocked", `{"error":{"code":403,"message":"Requests to this API generativelanguage.googleapis.com method google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.","status":"PERMISSION_DENIED",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_SERVICE_BLOCKED","domain":"googleapis.com"}]}}`, auth},
		{"gemini resource words with an ErrorInfo", `{"error":{"code":403,"message":"Consumer not found.","status":"PERMISSION_DENIED",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_INVALID"}]}}`, auth},
		{"gemini unregistered caller", `{"error":{"code":403,"message":"Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.","status":"PERMISSION_DENIED"}}`, auth},
		{"anthropic permission", `{"type":"error","error":{"type":"permission_error","message":"not found"}}`, auth},
		{"empty", "", auth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertVerdict(t, classifyStatus(gen("gemini-2.5-pro"), http.StatusForbidden, nil, tt.body), tt.want)
		})
	}
}

// FuzzClassify checks the invariants of the rule against arbitrary
// answers: Classify never panics; without a model nothing model-scoped is
// cooled; a 404 fails over only for a generation request with a model;
// only 400, 401-404, 408, 429 and 5xx (or a transport failure) fail over;
// and a failover that cools has a deadline within the policy and hint
// bounds.
func FuzzClassify(f *testing.F) {
	for _, b := range []string{
		"", openAIModelNotFound, anthropicModelNotFound, geminiModelNotFound, geminiMethodNotSupported,
		vllmModelNotFound, ollamaModelNotFound, geminiKeyInvalid, geminiEchoedField, openAIRequestTooLarge,
		geminiRetry34s, "<html>model x not found</html>", "[" + geminiModelNotFound + "]",
	} {
		f.Add(404, b, "gemini-9-pro", true)
	}
	f.Add(429, openAIRequestTooLarge, "", false)
	f.Add(400, geminiKeyInvalid, "gemini-2.5-pro", true)
	f.Fuzz(func(t *testing.T, status int, body, model string, generation bool) {
		req := Request{Model: model, Generation: generation}
		h := hdr("Retry-After", "600")
		v := Classify(testPolicy, req, Attempt{Status: status, Header: h, Body: []byte(body)}, now)
		if v.Action != Failover {
			if v.Scope != ScopeModel || !v.Until.IsZero() || v.Hinted {
				t.Fatalf("%v verdict with cooling fields: %+v", v.Action, v)
			}
			return
		}
		if model == "" && (v.Scope == ScopeModel || v.Scope == ScopeEndpoint) {
			t.Fatalf("status %d without a model cools %v", status, v.Scope)
		}
		if status == http.StatusNotFound && (!generation || model == "") {
			t.Fatalf("404 of %+v fails over: %+v", req, v)
		}
		switch {
		case status < 100, status == 400, status >= 401 && status <= 404, status == 408, status == 429, status >= 500 && status <= 599:
		default:
			t.Fatalf("status %d fails over: %+v", status, v)
		}
		if v.Scope == ScopeNone {
			if !v.Until.IsZero() {
				t.Fatalf("ScopeNone with a deadline: %+v", v)
			}
			return
		}
		if !v.Until.IsZero() && (!v.Until.After(now) || v.Until.After(now.Add(max(MaxHintDelay, testPolicy.ModelNotFound)))) {
			t.Fatalf("deadline now%+v out of bounds", v.Until.Sub(now))
		}
		if v.Reason == ReasonModelNotFound && !strings.Contains(strings.ToLower(body), "model") {
			t.Fatalf("model_not_found from a body that never says model: %q", body)
		}
	})
}

// TestClassifyDeadlineBound guards the fuzz test's bound: the longest
// cooldown is a hint capped at MaxHintDelay or a policy duration.
func TestClassifyDeadlineBound(t *testing.T) {
	v := classifyStatus(gen("gpt-9"), 404, hdr("Retry-After", "999999999"), openAIModelNotFound)
	if want := now.Add(MaxHintDelay); !v.Until.Equal(want) || !v.Hinted {
		t.Fatalf("Until = %s, want now+%v", fmtUntil(v.Until), time.Duration(MaxHintDelay))
	}
}
