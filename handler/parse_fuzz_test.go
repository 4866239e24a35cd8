package handler

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/apifamily"
)

// FuzzParse feeds arbitrary paths, headers and bodies through request
// parsing: it must never panic, and it must keep the body byte for byte
// for replay.
func FuzzParse(f *testing.F) {
	f.Add("/v1/messages", "", []byte(`{"model":"claude-x","metadata":{"user_id":"{\"session_id\":\"abc\"}"},"messages":[{"role":"user","content":"hi"}]}`))
	f.Add("/v1beta/models/g:generateContent", "sess", []byte(`{"contents":[{"role":"user","parts":[{"text":"x"}]}]}`))
	f.Add("/v1/responses", "", []byte(`{"model":"gpt","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]}]}`))
	f.Add("/v1/chat/completions", "\x00", []byte(`{"model":`))
	f.Add("/v1/messages", "", []byte{0xff, 0xfe, '{', '"'})
	f.Fuzz(func(t *testing.T, path, sessionHeader string, body []byte) {
		route, ok := apifamily.Parse(path)
		if !ok {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header["X-Session-Id"] = []string{sessionHeader}
		p, err := parse(r, route, 1<<20, true)
		if err != nil {
			if len(body) <= 1<<20 {
				t.Fatalf("parse failed on a body within the limit: %v", err)
			}
			return
		}
		if !bytes.Equal(p.body, body) {
			t.Fatalf("body changed while parsing")
		}
	})
}
