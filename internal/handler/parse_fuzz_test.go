package handler

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// servedPath is an oracle for the endpoints llm_proxy serves, written
// independently of apifamily.Parse: IDs are 1 to 256 of [A-Za-z0-9_.:-],
// Gemini models [A-Za-z0-9_.-]+ with an allowlisted action. Segments "."
// and ".." are checked separately.
var servedPath = regexp.MustCompile(`^(/v1/(messages(/count_tokens|/batches(/[A-Za-z0-9_.:-]{1,256}(/results|/cancel)?)?)?` +
	`|chat/completions|completions|embeddings|models(/[A-Za-z0-9_.:-]{1,256})?` +
	`|responses(/compact|/input_tokens|/[A-Za-z0-9_.:-]{1,256}(/input_items|/cancel)?)?)` +
	`|/v1(beta)?/models/[A-Za-z0-9_.-]+:(generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)` +
	`|/v1beta/models(/[A-Za-z0-9_.-]{1,256})?)$`)

func served(path string) bool {
	if !servedPath.MatchString(path) {
		return false
	}
	for _, s := range strings.Split(path, "/") {
		if s == "." || s == ".." {
			return false
		}
	}
	return true
}

// FuzzRequestPath feeds arbitrary request targets, session headers and
// bodies through everything a request meets before the upstream: route
// parsing, body reading, model and resource extraction, session extraction
// and building the upstream request. It must never panic; a request is
// accepted only for a served path, with a bounded, clean model name and
// resource ID, no encoded '/', the body kept byte for byte, and an upstream
// URL that is exactly the checked path.
func FuzzRequestPath(f *testing.F) {
	for _, seed := range []struct {
		target, session string
		body            []byte
	}{
		{"/v1/messages", "", []byte(`{"model":"claude-x","metadata":{"user_id":"{\"session_id\":\"abc\"}"},"messages":[{"role":"user","content":"hi"}]}`)},
		{"/v1beta/models/g:generateContent?alt=sse", "sess", []byte(`{"contents":[{"role":"user","parts":[{"text":"x"}]}]}`)},
		{"/v1/responses", "", []byte(`{"model":"gpt","previous_response_id":"resp_1","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]}]}`)},
		{"/v1/responses/resp_1/cancel", "", nil},
		{"/v1/messages/batches/msgbatch_1/results", "", nil},
		{"/v1/models/ft:gpt-4o:org::id", "", nil},
		{"/v1beta/models?pageToken=x", "", nil},
		{"/v1beta/models/gemini-2.5-pro", "", nil},
		{"/v1/chat/completions", "\x00", []byte(`{"model":`)},
		{"/v1/messages", "", []byte{0xff, 0xfe, '{', '"'}},
		{"/v1/messages/../../admin", "", nil},
		{"/v1/responses/%2e%2e/x", "", nil},
		{"/v1/responses/a%2Fcancel", "", nil},
		{"/v1beta/models/gemini-pro:generateContent/extra", "", nil},
		{"//v1/messages", "", nil},
		{"/v1/messages", "", []byte(`{"model":"` + strings.Repeat("m", 300) + `"}`)},
		{"/v1/messages", "", []byte(`{"model":"a\u0000"}`)},
		{"/v1/messages", "", []byte(`{"metadata":{"user_id":"{\"a\":` + strings.Repeat("[", 5000) + `"}}`)},
		{"/v1beta/models/g:generateContent", "", []byte(`{"systemInstruction":` + strings.Repeat(`{"parts":`, 200) + `"x"` + strings.Repeat("}", 200) + `}`)},
	} {
		f.Add(seed.target, seed.session, seed.body)
	}
	base := &url.URL{Scheme: "https", Host: "upstream.example", Path: "/base"}
	f.Fuzz(func(t *testing.T, target, sessionHeader string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 itself
		}
		r := &http.Request{
			Method:        http.MethodPost,
			URL:           u,
			RequestURI:    target,
			Header:        http.Header{"X-Session-Id": {sessionHeader}, "Cookie": {"sso=1"}, "Authorization": {"Bearer client"}},
			Body:          http.NoBody,
			ContentLength: int64(len(body)),
		}
		if len(body) > 0 {
			r.Body = readCloser{bytes.NewReader(body)}
		}
		route, ok := apifamily.ParseRequest(u.Path, r.Header)
		if ok != served(u.Path) {
			t.Fatalf("Parse(%q) ok = %v, the oracle says %v", u.Path, ok, !ok)
		}
		if !ok {
			return
		}
		const max = 1 << 20
		p, err := parse(r, route, max, true)
		if err != nil {
			var re *requestError
			switch {
			case errors.As(err, &re):
				if len(re.msg) > 200 {
					t.Fatalf("error message of %d bytes", len(re.msg))
				}
			case errors.Is(err, errTooLarge):
				if len(body) <= max {
					t.Fatalf("body of %d bytes refused as too large", len(body))
				}
			default:
				t.Fatalf("parse: %v", err)
			}
			return
		}
		if len(p.model) > apifamily.MaxModelLen || apifamily.CheckModel(p.model) != nil {
			t.Fatalf("accepted model %q", p.model)
		}
		if len(p.resource) > apifamily.MaxIDLen {
			t.Fatalf("resource ID of %d bytes", len(p.resource))
		}
		if hasEncodedSlash(u.EscapedPath()) {
			t.Fatalf("accepted an encoded '/' in %q", u.EscapedPath())
		}
		if !bytes.Equal(p.body, body) {
			t.Fatalf("body changed while parsing")
		}
		if len(p.ids.Primary) > len("codex:")+256 || len(p.ids.Fallback) > len("codex:")+256 {
			t.Fatalf("session ID of %d bytes", len(p.ids.Primary))
		}
		out := newUpstreamRequest(context.Background(), r, p.body, &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "gemini", APIKey: "k"}}, base, nil)
		if out.URL.Path != base.Path+u.Path || out.URL.EscapedPath() != out.URL.Path || out.URL.Host != base.Host {
			t.Fatalf("upstream URL %s for the checked path %q", out.URL, u.Path)
		}
		if out.Header.Get("Cookie") != "" || out.Header.Get("Authorization") != "" || out.Header.Get("X-Goog-Api-Key") != "k" {
			t.Fatalf("upstream headers %v", out.Header)
		}
	})
}

// readCloser is a body that is not an *io.nopCloser, as the server's are.
type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
