package handler

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

func TestWithBodyModel(t *testing.T) {
	for _, tc := range []struct {
		name, body, model, want string
		ok                      bool
	}{
		{"first", `{"model":"a","x":1}`, "up", `{"model":"up","x":1}`, true},
		{"not first", `{"x":{"model":"nested"},"model":"a"}`, "up", `{"x":{"model":"nested"},"model":"up"}`, true},
		{"white space kept", " \n{ \"model\" :\t\"a\" , \"y\" : [ 1 ] }\n", "up", " \n{ \"model\" :\t\"up\" , \"y\" : [ 1 ] }\n", true},
		{"escaped value", `{"model":"a\"b\u0041","z":"model"}`, "up", `{"model":"up","z":"model"}`, true},
		{"escaped key", `{"mod\u0065l":"a"}`, "up", `{"mod\u0065l":"up"}`, true},
		{"upstream name escaped", `{"model":"a"}`, "x\"y\\z\n", `{"model":"x\"y\\z\u000a"}`, true},
		{"nested only", `{"msg":{"model":"a"},"arr":[{"model":"b"}]}`, "up", `{"msg":{"model":"a"},"arr":[{"model":"b"}]}`, false},
		{"no model", `{"x":1}`, "up", `{"x":1}`, false},
		{"model not a string", `{"model":["a"],"y":"model"}`, "up", `{"model":["a"],"y":"model"}`, false},
		{"model null", `{"model":null}`, "up", `{"model":null}`, false},
		{"array body", `[{"model":"a"}]`, "up", `[{"model":"a"}]`, false},
		{"string body", `"model"`, "up", `"model"`, false},
		{"invalid JSON", `{"model":"a",`, "up", `{"model":"a",`, false},
		{"trailing garbage", `{"model":"a"}x`, "up", `{"model":"a"}x`, false},
		{"empty", ``, "up", ``, false},
		{"key as value", `{"k":"model","model":"a"}`, "up", `{"k":"model","model":"up"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := withBodyModel([]byte(tc.body), tc.model)
			if string(got) != tc.want || ok != tc.ok {
				t.Errorf("withBodyModel(%q) = %q, %v; want %q, %v", tc.body, got, ok, tc.want, tc.ok)
			}
			if ok && apifamily.BodyModel(got) != tc.model {
				t.Errorf("rewritten body names %q, want %q", apifamily.BodyModel(got), tc.model)
			}
		})
	}
}

func TestWithBodyModelLeavesInputAlone(t *testing.T) {
	in := []byte(`{"model":"a","x":1}`)
	withBodyModel(in, "a-much-longer-upstream-name")
	if string(in) != `{"model":"a","x":1}` {
		t.Fatalf("input changed: %s", in)
	}
}

func TestParseRefusesTwoModelKeys(t *testing.T) {
	for _, body := range []string{
		`{"model":"allowed","model":"excluded"}`,
		`{"model":"allowed","Model":"excluded"}`,
		`{"model":"allowed","mod\u0065l":"excluded"}`,
		`{"MODEL":"x","model":"allowed"}`,
	} {
		r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
		route, _ := apifamily.Parse(r.URL.Path)
		_, err := parse(r, route, 1<<20, false)
		if _, ok := err.(*requestError); !ok {
			t.Errorf("parse(%s) error = %v, want a request error", body, err)
		}
	}
	r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"model":"a","x":{"model":"b"}}`))
	route, _ := apifamily.Parse(r.URL.Path)
	if p, err := parse(r, route, 1<<20, false); err != nil || p.model != "a" {
		t.Fatalf("parse with a nested model = %v, %v", p, err)
	}
}

func TestAliased(t *testing.T) {
	a := &auth.Auth{ID: "a", Fields: auth.Fields{Provider: "openai", APIKey: "k", ModelAlias: map[string]string{"Fast": "vendor/fast-v2"}}}
	req := &parsed{model: "fast", body: []byte(`{"model":"fast"}`)}
	body, pm := aliased(req, a)
	if string(body) != `{"model":"vendor/fast-v2"}` || pm != "" {
		t.Fatalf("aliased = %s, %q", body, pm)
	}
	if string(req.body) != `{"model":"fast"}` {
		t.Fatalf("client body changed: %s", req.body)
	}
	plain := &parsed{model: "other", body: []byte(`{"model":"other"}`)}
	if body, _ := aliased(plain, a); &body[0] != &plain.body[0] {
		t.Fatal("a model without alias must send the client's body as is")
	}
	g := &parsed{model: "fast", route: apifamily.Route{Family: apifamily.Gemini, Model: "fast", Generation: true}, body: []byte(`{"contents":[]}`)}
	body, pm = aliased(g, a)
	if string(body) != `{"contents":[]}` || pm != "vendor/fast-v2" {
		t.Fatalf("gemini aliased = %s, %q", body, pm)
	}
}

func TestWithPathModel(t *testing.T) {
	for _, tc := range []struct{ path, from, to, want string }{
		{"/v1beta/models/fast:generateContent", "fast", "gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent"},
		{"/v1beta/models/fast:streamGenerateContent", "fast", "g", "/v1beta/models/g:streamGenerateContent"},
		{"/v1beta/models/other:generateContent", "fast", "g", "/v1beta/models/other:generateContent"},
	} {
		if got := withPathModel(tc.path, tc.from, tc.to); got != tc.want {
			t.Errorf("withPathModel(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestWithBodyModelDeepNesting: a client body nesting millions of arrays
// after its model must neither overflow the stack (the process would exit)
// nor be rewritten; counting its model keys must not recurse either.
func TestWithBodyModelDeepNesting(t *testing.T) {
	body := []byte(`{"model":"fast","x":` + strings.Repeat("[", 30<<20) + `}`)
	if got, ok := withBodyModel(body, "upstream-name"); ok || len(got) != len(body) {
		t.Fatalf("deeply nested body rewritten (ok %v)", ok)
	}
	if n := countModelKeys(body); n > 1 {
		t.Fatalf("countModelKeys = %d", n)
	}
}
