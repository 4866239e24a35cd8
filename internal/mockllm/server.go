// Package mockllm is a fast, realistic mock of the LLM provider APIs that
// llm_proxy fronts, used by integration tests, the demo and the benchmarks.
//
// A Server is an http.Handler answering in each provider's wire format,
// non-streaming or streaming (SSE, one flush per event):
//
//	POST /v1/messages, /v1/messages/count_tokens             Anthropic
//	POST /v1/chat/completions, /v1/completions, /v1/embeddings OpenAI
//	GET  /v1/models, /v1/models/{id}                         OpenAI (Anthropic's shape with anthropic-version)
//	POST /v1/responses, /backend-api/codex/responses         OpenAI Responses, Codex
//	POST /v1beta/models/{model}:generateContent              Gemini (also under /v1/models/)
//	POST /v1beta/models/{model}:streamGenerateContent        Gemini (?alt=sse: SSE, else a JSON array)
//	POST /v1beta/models/{model}:countTokens                  Gemini
//	GET  /v1beta/models, /v1beta/models/{model}              Gemini
//
// With Options.OAuthAccounts it is also a fake OAuth server for Claude and
// Codex subscription logins (see OAuthAccount), whose access tokens the
// endpoints above accept until they expire:
//
//	POST /v1/oauth/token      Claude token endpoint (JSON body; refresh_token and authorization_code grants)
//	GET  /v1/oauth/authorize  Claude authorize page: 302 to redirect_uri with code and state
//	POST /oauth/token         Codex token endpoint (form body; both grants)
//	GET  /oauth/authorize     Codex authorize page
//
// The credential is read from x-api-key, Authorization: Bearer,
// x-goog-api-key or ?key=, and every response names it in the
// X-Mock-Credential header (its label from Options.Keys, else the key).
// Requests are recorded (Requests), faults are injected per credential
// (SetFault), a per-credential prompt cache is simulated and reported in each
// provider's usage fields (Stats), and clients that leave early are counted.
// The same controls are served over HTTP under /_mock/: GET /_mock/requests,
// POST /_mock/reset, GET /_mock/stats, GET /_mock/faults, POST /_mock/faults
// with {"key": "...", "status": 429, "headers": {...}, "body": "...",
// "delay": "250ms" (or milliseconds), "times": 1, "drop_after_events": 2,
// "refuse": false, "revoked_key": false, "stream_error": "overloaded",
// "stream_error_after": 1, "stream_resets_in": 60}, DELETE /_mock/faults (?key=K for
// one), GET /_mock/health, and for the OAuth server GET /_mock/oauth/stats,
// GET /_mock/oauth/accounts, GET|POST|DELETE /_mock/oauth/faults,
// POST /_mock/oauth/revoke and POST /_mock/oauth/advance.
//
// Nothing is logged per request; responses are appended into pooled buffers.
package mockllm

import (
	"bytes"
	"context"
	"hash/maphash"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default option values.
const (
	// DefaultDeltas is the number of text deltas in a streamed reply.
	DefaultDeltas = 5
	// DefaultMaxRecorded is the number of requests kept for Requests.
	DefaultMaxRecorded = 1000
	// DefaultCacheEntries bounds the prompt-prefix hashes remembered per credential.
	DefaultCacheEntries = 1 << 20
	// MaxBodyBytes is the largest request body the mock accepts.
	MaxBodyBytes = 64 << 20
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Keys, when non-empty, is the set of accepted credentials (key → label).
	// Requests carrying any other key get 401. When empty, every key is
	// accepted and labelled with itself.
	Keys map[string]string
	// StreamDelay is the pause between two SSE events (default 0).
	StreamDelay time.Duration
	// Deltas is the number of text deltas in a streamed reply (default 5).
	Deltas int
	// MaxRecorded is the number of requests kept for Requests (default 1000);
	// a negative value disables recording.
	MaxRecorded int
	// CacheEntries bounds the prompt-prefix hashes remembered per credential
	// (default 1<<20); the oldest entries are evicted first.
	CacheEntries int
	// OAuthAccounts, when non-empty, enables the fake OAuth server with
	// these subscription accounts (label → account).
	OAuthAccounts map[string]OAuthAccount
	// Now is the fake OAuth server's clock (default time.Now); tests share
	// their fake clock with it. AdvanceClock moves it further.
	Now func() time.Time
}

// Request is one request recorded by the Server.
type Request struct {
	Time     time.Time   `json:"time"`
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawQuery string      `json:"raw_query"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
	// Key is the credential the request carried ("" if none).
	Key string `json:"key"`
	// Credential is the key's label (the key itself when it has no label).
	Credential string `json:"credential"`
	// Fault reports that an injected fault was applied to this request.
	Fault bool `json:"fault"`
	// Cancelled reports that the client went away before the response was
	// complete (during a stream or a fault delay).
	Cancelled bool `json:"cancelled"`
}

// CredentialStats are the counters kept per credential label.
type CredentialStats struct {
	// Requests counts every request that carried the credential.
	Requests int64 `json:"requests"`
	// Faults counts requests an injected fault was applied to.
	Faults int64 `json:"faults"`
	// EligibleTurns counts generation requests with more than one
	// conversation message (a previous turn could have been cached).
	EligibleTurns int64 `json:"eligible_turns"`
	// CacheHitTurns counts eligible turns with a cached prefix.
	CacheHitTurns int64 `json:"cache_hit_turns"`
	// InputTokens is the total prompt tokens (cached or not).
	InputTokens int64 `json:"input_tokens"`
	// CacheReadTokens is the prompt tokens served from the simulated cache.
	CacheReadTokens int64 `json:"cache_read_tokens"`
	// CacheCreationTokens is the prompt tokens written to the simulated cache.
	CacheCreationTokens int64 `json:"cache_creation_tokens"`
	// OutputTokens is the total reply tokens.
	OutputTokens int64 `json:"output_tokens"`
	// Cancelled counts responses the client abandoned before completion.
	Cancelled int64 `json:"cancelled"`
	// CacheHitRate is CacheHitTurns / EligibleTurns (0 without eligible turns).
	CacheHitRate float64 `json:"cache_hit_rate"`
}

// credState is the live, concurrently updated state of one credential label.
type credState struct {
	requests, faults, eligible, hits      atomic.Int64
	input, cacheRead, cacheCreate, output atomic.Int64
	cancelled                             atomic.Int64
	cache                                 promptCache
}

func (c *credState) snapshot() CredentialStats {
	st := CredentialStats{
		Requests:            c.requests.Load(),
		Faults:              c.faults.Load(),
		EligibleTurns:       c.eligible.Load(),
		CacheHitTurns:       c.hits.Load(),
		InputTokens:         c.input.Load(),
		CacheReadTokens:     c.cacheRead.Load(),
		CacheCreationTokens: c.cacheCreate.Load(),
		OutputTokens:        c.output.Load(),
		Cancelled:           c.cancelled.Load(),
	}
	if st.EligibleTurns > 0 {
		st.CacheHitRate = float64(st.CacheHitTurns) / float64(st.EligibleTurns)
	}
	return st
}

// Server is the mock upstream. Create it with New; it is safe for
// concurrent use.
type Server struct {
	keys         map[string]string
	delay        time.Duration
	deltas       int
	maxRecorded  int
	cacheEntries int
	seed         maphash.Seed

	recMu   sync.Mutex
	recBuf  []*Request
	recNext int

	credMu sync.RWMutex
	creds  map[string]*credState

	faultMu    sync.RWMutex
	faults     map[string]*faultEntry
	faultCount atomic.Int32

	replies   sync.Map // model → *reply
	replyN    atomic.Int32
	createdAt int64

	oauth *oauthServer // nil without Options.OAuthAccounts

	quota quotas // quota headers per credential (quota.go)
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	s := &Server{
		keys:         make(map[string]string, len(opts.Keys)),
		delay:        opts.StreamDelay,
		deltas:       opts.Deltas,
		maxRecorded:  opts.MaxRecorded,
		cacheEntries: opts.CacheEntries,
		seed:         maphash.MakeSeed(),
		creds:        make(map[string]*credState),
		faults:       make(map[string]*faultEntry),
		createdAt:    time.Now().Unix(),
	}
	for k, v := range opts.Keys {
		if v == "" {
			v = k
		}
		s.keys[k] = v
	}
	if s.deltas <= 0 {
		s.deltas = DefaultDeltas
	}
	if s.maxRecorded == 0 {
		s.maxRecorded = DefaultMaxRecorded
	}
	if s.cacheEntries <= 0 {
		s.cacheEntries = DefaultCacheEntries
	}
	if s.delay < 0 {
		s.delay = 0
	}
	if len(opts.OAuthAccounts) > 0 {
		s.oauth = newOAuthServer(opts.OAuthAccounts, opts.Now)
	}
	return s
}

// Requests returns the recorded requests, oldest first.
func (s *Server) Requests() []Request {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	out := make([]Request, 0, len(s.recBuf))
	n := len(s.recBuf)
	start := 0
	if n == s.maxRecorded {
		start = s.recNext
	}
	for i := range n {
		r := *s.recBuf[(start+i)%n]
		r.Header = r.Header.Clone()
		out = append(out, r)
	}
	return out
}

// Reset forgets the recorded requests, the per-credential stats, the
// simulated prompt caches and the OAuth counters. Faults and OAuth tokens
// are kept (see ClearFaults).
func (s *Server) Reset() {
	s.recMu.Lock()
	s.recBuf = nil
	s.recNext = 0
	s.recMu.Unlock()
	s.credMu.Lock()
	s.creds = make(map[string]*credState)
	s.credMu.Unlock()
	if s.oauth != nil {
		s.oauth.resetStats()
	}
}

// Stats returns a snapshot of the per-credential counters, by label.
func (s *Server) Stats() map[string]CredentialStats {
	s.credMu.RLock()
	defer s.credMu.RUnlock()
	out := make(map[string]CredentialStats, len(s.creds))
	for label, c := range s.creds {
		out[label] = c.snapshot()
	}
	return out
}

func (s *Server) cred(label string) *credState {
	s.credMu.RLock()
	c := s.creds[label]
	s.credMu.RUnlock()
	if c != nil {
		return c
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	if c = s.creds[label]; c == nil {
		c = &credState{}
		s.creds[label] = c
	}
	return c
}

func (s *Server) record(r *http.Request, body, key, label string, fault bool) *Request {
	if s.maxRecorded < 0 {
		return nil
	}
	rec := &Request{
		Time:       time.Now(),
		Method:     r.Method,
		Path:       r.URL.Path,
		RawQuery:   r.URL.RawQuery,
		Header:     r.Header.Clone(),
		Body:       body,
		Key:        key,
		Credential: label,
		Fault:      fault,
	}
	s.recMu.Lock()
	if len(s.recBuf) < s.maxRecorded {
		s.recBuf = append(s.recBuf, rec)
	} else {
		s.recBuf[s.recNext] = rec
	}
	s.recNext = (s.recNext + 1) % s.maxRecorded
	s.recMu.Unlock()
	return rec
}

// endpoint identifies the API operation a request addresses.
type endpoint uint8

const (
	epUnknown endpoint = iota
	epAnthropicMessages
	epAnthropicCountTokens
	epChat
	epCompletions
	epEmbeddings
	epModels
	epModel
	epResponses
	epGeminiGenerate
	epGeminiStream
	epGeminiCount
	epGeminiModels
	epGeminiModel
)

// family is the API family that decides the error and wire shapes.
type family uint8

const (
	famOpenAI family = iota
	famAnthropic
	famGemini
)

// route maps a path to its endpoint, API family and, for path-addressed
// models (Gemini, OpenAI model retrieval), the model name.
func route(path string) (endpoint, family, string) {
	switch path {
	case "/v1/messages":
		return epAnthropicMessages, famAnthropic, ""
	case "/v1/messages/count_tokens":
		return epAnthropicCountTokens, famAnthropic, ""
	case "/v1/chat/completions":
		return epChat, famOpenAI, ""
	case "/v1/completions":
		return epCompletions, famOpenAI, ""
	case "/v1/embeddings":
		return epEmbeddings, famOpenAI, ""
	case "/v1/models":
		return epModels, famOpenAI, ""
	case "/v1/responses", "/backend-api/codex/responses":
		return epResponses, famOpenAI, ""
	case "/v1beta/models":
		return epGeminiModels, famGemini, ""
	}
	var rest string
	gemini := false
	switch {
	case strings.HasPrefix(path, "/v1beta/models/"):
		rest, gemini = path[len("/v1beta/models/"):], true
	case strings.HasPrefix(path, "/v1/models/"):
		rest = path[len("/v1/models/"):]
	default:
		if strings.HasPrefix(path, "/v1/messages") {
			return epUnknown, famAnthropic, ""
		}
		return epUnknown, famOpenAI, ""
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		if gemini {
			return epGeminiModel, famGemini, rest
		}
		return epModel, famOpenAI, rest
	}
	model := rest[:i]
	switch rest[i+1:] {
	case "generateContent":
		return epGeminiGenerate, famGemini, model
	case "streamGenerateContent":
		return epGeminiStream, famGemini, model
	case "countTokens":
		return epGeminiCount, famGemini, model
	}
	return epUnknown, famGemini, model
}

// credentialOf returns the credential a request carries: x-api-key,
// Authorization: Bearer, x-goog-api-key or the key query parameter.
func credentialOf(r *http.Request) string {
	h := r.Header
	if v := h.Get("X-Api-Key"); v != "" {
		return v
	}
	if v := h.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		if t := strings.TrimSpace(v[7:]); t != "" {
			return t
		}
	}
	if v := h.Get("X-Goog-Api-Key"); v != "" {
		return v
	}
	if r.URL.RawQuery != "" {
		return r.URL.Query().Get("key")
	}
	return ""
}

// call is the per-request state shared by the endpoint handlers.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	ep    endpoint
	fam   family
	model string
	body  string
	cred  *credState
	rec   *Request
	drop  int // DropAfterEvents of the applied fault
	// reject is the in-stream rejection of the applied fault.
	reject streamReject
}

// cancelled records that the client went away before the response was done.
func (c *call) cancelled() {
	c.cred.cancelled.Add(1)
	if c.rec != nil {
		c.s.recMu.Lock()
		c.rec.Cancelled = true
		c.s.recMu.Unlock()
	}
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads the whole request body into a string (a single allocation).
func readBody(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", nil
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			bodyPool.Put(buf)
		}
	}()
	if n := r.ContentLength; n > 0 && n <= MaxBodyBytes {
		buf.Grow(int(n) + 1)
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return "", err
	}
	if buf.Len() > MaxBodyBytes {
		return "", errBodyTooLarge
	}
	return buf.String(), nil
}

type mockError string

func (e mockError) Error() string { return string(e) }

const errBodyTooLarge = mockError("request body too large")

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if s.oauth != nil {
		if oauthPath(path) {
			s.serveOAuth(w, r)
			return
		}
		if strings.HasPrefix(path, "/_mock/oauth/") {
			s.serveOAuthControl(w, r)
			return
		}
	}
	if path == "/_mock/quota" {
		s.serveQuotaControl(w, r)
		return
	}
	if strings.HasPrefix(path, "/_mock/") {
		s.serveControl(w, r)
		return
	}
	ep, fam, model := route(path)
	if (ep == epModels || ep == epModel) && r.Header.Get("Anthropic-Version") != "" {
		fam = famAnthropic // Anthropic's GET /v1/models shares the path
	}
	c := &call{s: s, w: w, r: r, ctx: r.Context(), ep: ep, fam: fam, model: model}

	body, err := readBody(r)
	key := credentialOf(r)
	label := key
	var oauthTok oauthUse
	isOAuth := false
	if key != "" {
		if l, ok := s.keys[key]; ok {
			label = l
		} else if oauthTok, isOAuth = s.oauthAccess(key); isOAuth {
			label = oauthTok.label
		}
		w.Header()["X-Mock-Credential"] = []string{label}
	}
	if ep == epUnknown {
		s.record(r, body, key, label, false)
		if c.fam == famOpenAI {
			// OpenAI's own answer to an unknown URL: no error code (its
			// 404 for a missing model says "model_not_found").
			b := appendString([]byte(`{"error":{"message":`), "Invalid URL ("+r.Method+" "+path+")")
			c.writeBody(http.StatusNotFound, append(b, `,"type":"invalid_request_error","param":null,"code":null}}`...))
			return
		}
		c.writeError(http.StatusNotFound, "Unknown request URL: "+r.Method+" "+path)
		return
	}
	if key == "" {
		s.record(r, body, key, label, false)
		c.writeError(http.StatusUnauthorized, missingKeyMessage(fam))
		return
	}
	if isOAuth {
		if c.refuseOAuth(oauthTok, key, body) {
			return
		}
	} else if len(s.keys) > 0 {
		if _, ok := s.keys[key]; !ok {
			c.cred = s.cred(label)
			c.cred.requests.Add(1)
			s.record(r, body, key, label, false)
			c.writeError(http.StatusUnauthorized, invalidKeyMessage(fam))
			return
		}
	}
	c.cred = s.cred(label)
	c.cred.requests.Add(1)
	s.writeQuotaHeaders(w.Header(), fam, key, label)

	var f Fault
	faulted := false
	if s.faultCount.Load() > 0 {
		f, faulted = s.takeFault(key, label)
	}
	c.rec = s.record(r, body, key, label, faulted)
	if faulted {
		c.cred.faults.Add(1)
		if !c.applyFault(&f) {
			return
		}
	}
	if err != nil {
		status := http.StatusBadRequest
		if err == errBodyTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		c.writeError(status, err.Error())
		return
	}
	c.body = body
	c.dispatch()
}

func (c *call) dispatch() {
	method := c.r.Method
	get := c.ep == epModels || c.ep == epModel || c.ep == epGeminiModels || c.ep == epGeminiModel
	allowed := http.MethodPost
	if get {
		allowed = http.MethodGet
	}
	if method != allowed {
		c.w.Header()["Allow"] = []string{allowed}
		c.writeError(http.StatusMethodNotAllowed, "Method "+method+" not allowed")
		return
	}
	if !get && !looksLikeObject(c.body) {
		c.writeError(http.StatusBadRequest, "request body must be a JSON object")
		return
	}
	switch c.ep {
	case epAnthropicMessages:
		c.anthropicMessages()
	case epAnthropicCountTokens:
		c.anthropicCountTokens()
	case epChat:
		c.chatCompletions()
	case epCompletions:
		c.completions()
	case epEmbeddings:
		c.embeddings()
	case epModels:
		c.listModels()
	case epModel:
		c.getModel()
	case epResponses:
		c.responses()
	case epGeminiGenerate:
		c.geminiGenerate(false)
	case epGeminiStream:
		c.geminiGenerate(true)
	case epGeminiCount:
		c.geminiCountTokens()
	case epGeminiModels:
		c.geminiListModels()
	case epGeminiModel:
		c.geminiGetModel()
	}
}

// looksLikeObject is a cheap sanity check that body is a JSON object.
func looksLikeObject(body string) bool {
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}
