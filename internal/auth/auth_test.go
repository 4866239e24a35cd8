package auth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

// Records as written by the CLIProxyAPI login flows and by hand.
const (
	claudeOAuthFile = `{
  "type": "claude",
  "access_token": "sk-ant-oat01-AAAAAAAAAAAAAAAAAAAAAAAA",
  "refresh_token": "sk-ant-ort01-BBBBBBBBBBBBBBBBBBBB",
  "expired": "2025-10-01T12:00:00Z",
  "email": "a@b.c",
  "last_refresh": "2025-09-30T12:00:00+02:00"
}`
	codexOAuthFile = `{"type":"codex","id_token":"eyJhbGciOi.eyJzdWIi.c2ln","access_token":"eyJhY2Nlc3M.token.sig","refresh_token":"rt_CCCCCCCCCCCC","account_id":"acct-1234","email":"x@y.z","expired":"2025-10-01T12:00:00+08:00","last_refresh":"2025-09-30T12:00:00Z"}`
	claudeKeyFile  = `{"type":"claude","api_key":"sk-ant-api03-DDDDDDDDDDDDDDDDDDDD"}`
	geminiCLIFile  = `{"type":"gemini","token":{"access_token":"ya29.EEEE","refresh_token":"1//FFFF","expiry":"2025-10-01T12:00:00Z"},"project_id":"p","email":"g@h.i"}`
)

func mustParse(t *testing.T, id, data string) *Auth {
	t.Helper()
	a, err := Parse(id, []byte(data))
	if err != nil {
		t.Fatalf("Parse(%q): %v", id, err)
	}
	return a
}

func mustMarshal(t *testing.T, a *Auth) []byte {
	t.Helper()
	b, err := a.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	return b
}

func TestParseLoginFiles(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       Auth
		oauth      bool
	}{
		{
			name: "claude oauth", data: claudeOAuthFile, oauth: true,
			want: Auth{ID: "claude oauth", Fields: Fields{Provider: "claude", AccessToken: "sk-ant-oat01-AAAAAAAAAAAAAAAAAAAAAAAA"},
				RefreshToken: "sk-ant-ort01-BBBBBBBBBBBBBBBBBBBB", Expired: "2025-10-01T12:00:00Z", Email: "a@b.c",
				LastRefresh: "2025-09-30T12:00:00+02:00"},
		},
		{
			name: "codex oauth", data: codexOAuthFile, oauth: true,
			want: Auth{ID: "codex oauth", Fields: Fields{Provider: "codex", AccessToken: "eyJhY2Nlc3M.token.sig", AccountID: "acct-1234"},
				RefreshToken: "rt_CCCCCCCCCCCC", Email: "x@y.z", Expired: "2025-10-01T12:00:00+08:00",
				IDToken: "eyJhbGciOi.eyJzdWIi.c2ln", LastRefresh: "2025-09-30T12:00:00Z"},
		},
		{
			name: "claude api key", data: claudeKeyFile,
			want: Auth{ID: "claude api key", Fields: Fields{Provider: "claude", APIKey: "sk-ant-api03-DDDDDDDDDDDDDDDDDDDD"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			tc.want.ID = id
			a := mustParse(t, id, tc.data)
			got := *a
			got.raw, got.order, got.providerKey = nil, nil, ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parsed %+v, want %+v", got, tc.want)
			}
			if a.IsOAuth() != tc.oauth {
				t.Errorf("IsOAuth() = %v, want %v", a.IsOAuth(), tc.oauth)
			}

			out := mustMarshal(t, a)
			if !sameDocument(out, []byte(tc.data)) {
				t.Errorf("written back as %s, want the same document as %s", out, tc.data)
			}
			if strings.Contains(string(out), `"provider"`) {
				t.Errorf("written back with a provider field: %s", out)
			}
			// The field order of the file is kept.
			if got, want := fieldOrder(t, out), fieldOrder(t, []byte(tc.data)); !reflect.DeepEqual(got, want) {
				t.Errorf("field order %v, want %v", got, want)
			}
		})
	}
}

// fieldOrder returns the top-level field names of a JSON object, in order.
func fieldOrder(t *testing.T, data []byte) []string {
	t.Helper()
	var a Auth
	if err := a.decode(data); err != nil {
		t.Fatal(err)
	}
	return a.order
}

func TestMarshalKeepsUnchangedEncoding(t *testing.T) {
	const data = `{"provider":"openai","api_key":"sk-123456789012","priority":0,"disabled":false,"models":[],"weight":null,"headers":{},"x":{"nested":[1,2.50]}}`
	a := mustParse(t, "k", data)
	out := mustMarshal(t, a)
	if string(out) != data {
		t.Errorf("got  %s\nwant %s", out, data)
	}
}

func TestMarshalChanges(t *testing.T) {
	a := mustParse(t, "c", codexOAuthFile)
	a.Priority = 5
	w := 0
	a.Weight = &w
	a.Email = ""
	a.Models = []string{"gpt-5*"}

	var doc map[string]any
	if err := json.Unmarshal(mustMarshal(t, a), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "codex", "id_token": "eyJhbGciOi.eyJzdWIi.c2ln", "access_token": "eyJhY2Nlc3M.token.sig",
		"refresh_token": "rt_CCCCCCCCCCCC", "account_id": "acct-1234", "expired": "2025-10-01T12:00:00+08:00",
		"last_refresh": "2025-09-30T12:00:00Z", "priority": float64(5), "weight": float64(0),
		"models": []any{"gpt-5*"},
	}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("got  %v\nwant %v", doc, want)
	}
}

func TestProviderAndType(t *testing.T) {
	// With both, provider is the provider and type an unknown field kept.
	a := mustParse(t, "both", `{"type":"something-else","provider":"openai","api_key":"k-1234567890123"}`)
	if a.Provider != "openai" {
		t.Fatalf("Provider = %q, want openai", a.Provider)
	}
	a.Provider = "openai_compatible"
	a.BaseURL = "http://localhost:8000/v1"
	var doc map[string]any
	if err := json.Unmarshal(mustMarshal(t, a), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["type"] != "something-else" || doc["provider"] != "openai_compatible" {
		t.Errorf("got %v", doc)
	}

	// A new record is written with provider, first.
	n := &Auth{ID: "new", Fields: Fields{Provider: "gemini", APIKey: "AIzaSyGGGGGGGGGG", Priority: 2}}
	if got, want := string(mustMarshal(t, n)), `{"provider":"gemini","api_key":"AIzaSyGGGGGGGGGG","priority":2}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestJSONInterfaces(t *testing.T) {
	a := &Auth{ID: "keep", Inline: true}
	if err := json.Unmarshal([]byte(`{"provider":"claude","access_token":"t-123456789012345","extra":true}`), a); err != nil {
		t.Fatal(err)
	}
	if a.ID != "keep" || !a.Inline || a.Provider != "claude" {
		t.Errorf("after Unmarshal: %+v", a)
	}
	out, err := json.Marshal(struct{ A *Auth }{a})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"A":{"provider":"claude","access_token":"t-123456789012345","extra":true}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "12345678901234567890"
	for _, tc := range []struct {
		name, data, want string
	}{
		{"not an object", `["claude"]`, "not a JSON object"},
		{"bad json", `{"type":"claude",`, "decoding"},
		{"trailing data", `{"type":"claude","api_key":"k-1234567890123"} {}`, "after the JSON object"},
		{"wrong type", `{"type":"claude","api_key":` + secret + `}`, `field "api_key": expected string, got JSON number`},
		{"wrong weight", `{"type":"claude","api_key":"x","weight":1.5}`, `field "weight"`},
		{"gemini cli", geminiCLIFile, "Gemini CLI OAuth files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("rec", []byte(tc.data))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"rec"`) {
				t.Errorf("error %q does not contain %q and the ID", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	w := func(n int) *int { return &n }
	base := func() *Auth { return &Auth{ID: "a", Fields: Fields{Provider: "claude", APIKey: "sk-ant-secret-value"}} }
	for _, tc := range []struct {
		name   string
		modify func(a *Auth)
		want   string // "" for valid
	}{
		{"valid", func(a *Auth) {}, ""},
		{"access token only", func(a *Auth) { a.APIKey, a.AccessToken = "", "tok" }, ""},
		{"weight 0", func(a *Auth) { a.Weight = w(0) }, ""},
		{"weight max", func(a *Auth) { a.Weight = w(selector.MaxWeight) }, ""},
		{"socks proxy", func(a *Auth) { a.ProxyURL = "socks5://user:pw@127.0.0.1:1080" }, ""},
		{"compatible", func(a *Auth) { a.Provider, a.BaseURL = "openai_compatible", "http://127.0.0.1:8000/v1" }, ""},
		{"models", func(a *Auth) { a.Models = []string{"claude-*", "*opus*"} }, ""},
		{"headers", func(a *Auth) { a.Headers = map[string]string{"X-Team": "a b"} }, ""},
		{"unparsable expiry is metadata", func(a *Auth) { a.Expired = "soon" }, ""},
		{"no id", func(a *Auth) { a.ID = "" }, "empty credential ID"},
		{"bad id", func(a *Auth) { a.ID = "../x" }, "not allowed"},
		{"no provider", func(a *Auth) { a.Provider = "" }, "missing provider (allowed: claude, codex, gemini, openai, openai_compatible)"},
		{"unknown provider", func(a *Auth) { a.Provider = "Claude" }, `unknown provider "Claude"`},
		{"no secret", func(a *Auth) { a.APIKey = "" }, "set api_key or access_token"},
		{"blank secret", func(a *Auth) { a.APIKey = "  " }, "api_key contains white space only"},
		{"secret with newline", func(a *Auth) { a.APIKey = "sk-ant\nX-Evil: 1" }, "control characters"},
		{"gemini access token", func(a *Auth) { a.Provider, a.APIKey, a.AccessToken = "gemini", "", "ya29.x" }, "gemini credential has no api_key"},
		{"weight negative", func(a *Auth) { a.Weight = w(-1) }, "weight -1 out of range 0..1000000"},
		{"weight too big", func(a *Auth) { a.Weight = w(selector.MaxWeight + 1) }, "out of range"},
		{"compatible without base_url", func(a *Auth) { a.Provider = "openai_compatible" }, "needs a base_url"},
		{"relative base_url", func(a *Auth) { a.BaseURL = "/v1" }, `base_url: scheme ""`},
		{"ftp base_url", func(a *Auth) { a.BaseURL = "ftp://h/" }, `base_url: scheme "ftp" not supported (allowed: http, https)`},
		{"base_url without host", func(a *Auth) { a.BaseURL = "https:///v1" }, "no host"},
		{"bad proxy_url", func(a *Auth) { a.ProxyURL = "http://user:sekrit@[::1" }, "proxy_url: not a valid URL"},
		{"empty model", func(a *Auth) { a.Models = []string{"a", ""} }, "models[1]"},
		{"bad header name", func(a *Auth) { a.Headers = map[string]string{"Bad Name": "v"} }, `invalid header name "Bad Name"`},
		{"bad header value", func(a *Auth) { a.Headers = map[string]string{"X-A": "v\r\nX-B: sekrit"} }, `value of "X-A"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := base()
			tc.modify(a)
			err := a.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if err != nil {
				for _, s := range []string{"sk-ant-secret-value", "sekrit", "ya29"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q contains a secret", err)
					}
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		provider, baseURL, effective string
	}{
		{"claude", "", "https://api.anthropic.com"},
		{"openai", "", "https://api.openai.com"},
		{"codex", "", "https://chatgpt.com/backend-api/codex"},
		{"gemini", "", "https://generativelanguage.googleapis.com"},
		{"openai_compatible", "http://h:1/v1/", "http://h:1/v1"},
		{"openai_compatible", "", ""},
		{"claude", "https://proxy.example/", "https://proxy.example"},
		{"unknown", "", ""},
	} {
		a := &Auth{Fields: Fields{Provider: tc.provider, BaseURL: tc.baseURL}}
		if got := a.BaseURLOrDefault(); got != tc.effective {
			t.Errorf("%s: BaseURLOrDefault() = %q, want %q", tc.provider, got, tc.effective)
		}
	}

	a := &Auth{}
	if a.EffectiveWeight() != 1 {
		t.Errorf("EffectiveWeight() = %d for no weight, want 1", a.EffectiveWeight())
	}
	w := 7
	a.Weight = &w
	if a.EffectiveWeight() != 7 {
		t.Errorf("EffectiveWeight() = %d, want 7", a.EffectiveWeight())
	}
}

func TestServesModel(t *testing.T) {
	for _, tc := range []struct {
		models []string
		model  string
		want   bool
	}{
		{nil, "anything", true},
		{[]string{}, "", true},
		{[]string{"gpt-4o"}, "gpt-4o", true},
		{[]string{"gpt-4o"}, "gpt-4o-mini", false},
		{[]string{"GPT-4o"}, "gpt-4O", true},
		{[]string{"claude-*"}, "claude-sonnet-4-5", true},
		{[]string{"claude-*"}, "claude-", true},
		{[]string{"claude-*"}, "claude", false},
		{[]string{"*"}, "meta-llama/llama-3-70b", true},
		{[]string{"meta-llama/*"}, "meta-llama/llama-3-70b", true},
		{[]string{"*opus*"}, "claude-opus-4-1", true},
		{[]string{"*-mini"}, "gpt-4o-mini", true},
		{[]string{"*-mini"}, "gpt-4o-mini-x", false},
		{[]string{"a*b*c"}, "aXbYbZc", true},
		{[]string{"a*b*c"}, "aXbYcZ", false},
		{[]string{"gemini-?"}, "gemini-x", false}, // only * is special
		{[]string{"gemini-[12]"}, "gemini-[12]", true},
		{[]string{"x", "y*"}, "yes", true},
	} {
		a := &Auth{Fields: Fields{Models: tc.models}}
		if got := a.ServesModel(tc.model); got != tc.want {
			t.Errorf("%q ServesModel(%q) = %v, want %v", tc.models, tc.model, got, tc.want)
		}
	}
}

func TestSecretAndMasked(t *testing.T) {
	for _, tc := range []struct {
		apiKey, token, secret, masked string
		oauth                         bool
	}{
		{"", "", "", "", false},
		{"sk-ant-api03-abcd", "tok", "sk-ant-api03-abcd", "…abcd", false},
		{"", "sk-ant-oat01-wxyz", "sk-ant-oat01-wxyz", "…wxyz", true},
		{"short-key", "", "short-key", "…", false},
	} {
		a := &Auth{Fields: Fields{APIKey: tc.apiKey, AccessToken: tc.token}}
		if got := a.Secret(); got != tc.secret {
			t.Errorf("Secret() = %q, want %q", got, tc.secret)
		}
		if got := a.Masked(); got != tc.masked {
			t.Errorf("Masked() = %q, want %q", got, tc.masked)
		}
		if got := a.IsOAuth(); got != tc.oauth {
			t.Errorf("IsOAuth() = %v, want %v", got, tc.oauth)
		}
	}
}

func TestClone(t *testing.T) {
	if (*Auth)(nil).Clone() != nil {
		t.Error("nil.Clone() is not nil")
	}
	a := mustParse(t, "c", `{"provider":"openai","api_key":"k-1234567890123","weight":3,"models":["a"],"headers":{"X-A":"1"},"note":"n"}`)
	c := a.Clone()
	before := mustMarshal(t, a)
	if got := mustMarshal(t, c); string(got) != string(before) {
		t.Errorf("clone marshals to %s, want %s", got, before)
	}
	*c.Weight = 9
	c.Models[0] = "b"
	c.Headers["X-A"] = "2"
	c.raw["note"] = json.RawMessage(`"changed"`)
	c.order[0] = "x"
	if after := mustMarshal(t, a); string(after) != string(before) {
		t.Errorf("changing the clone changed the original: %s, was %s", after, before)
	}
}

func TestValidateUnexpanded(t *testing.T) {
	// URLs that hold placeholders are checked once expanded, not before.
	a := &Auth{ID: "a", Fields: Fields{Provider: "openai_compatible", APIKey: "{env.KEY}",
		BaseURL: "{env.BASE}", ProxyURL: "socks5://{env.PROXY_HOST}:1080"}}
	if err := a.ValidateUnexpanded(); err != nil {
		t.Fatalf("ValidateUnexpanded: %v", err)
	}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "base_url") {
		t.Fatalf("Validate of an unexpanded base_url: %v", err)
	}

	// Every other rule holds before expansion.
	w := func(n int) *int { return &n }
	for _, tc := range []struct {
		name string
		f    Fields
		want string
	}{
		{"gemini token", Fields{Provider: "gemini", AccessToken: "{env.TOKEN}"}, "gemini credential has no api_key"},
		{"no credential", Fields{Provider: "claude"}, "set api_key or access_token"},
		{"no base_url", Fields{Provider: "openai_compatible", APIKey: "{env.K}"}, "openai_compatible credential needs a base_url"},
		{"literal bad base_url", Fields{Provider: "openai", APIKey: "{env.K}", BaseURL: "ftp://h"}, `scheme "ftp" not supported`},
		{"weight", Fields{Provider: "openai", APIKey: "{env.K}", Weight: w(-2)}, "weight -2 out of range"},
		{"unknown provider", Fields{Provider: "{env.PROVIDER}", APIKey: "k"}, `unknown provider "{env.PROVIDER}"`},
		{"header value", Fields{Provider: "openai", APIKey: "k", Headers: map[string]string{"X-A": "{env.A}\n"}}, `value of "X-A"`},
	} {
		a := &Auth{ID: "a", Fields: tc.f}
		if err := a.ValidateUnexpanded(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestFieldsExpand(t *testing.T) {
	headers := map[string]string{"X-Team": "{env.TEAM}"}
	f := Fields{Provider: "{p}", APIKey: "{k}", AccessToken: "{t}", AccountID: "{a}", BaseURL: "{b}",
		ProxyURL: "{x}", Label: "{l}", Models: []string{"{m}"}, Headers: headers}
	f.Expand(func(s string) string { return strings.ToUpper(s) })
	want := Fields{Provider: "{p}", APIKey: "{K}", AccessToken: "{T}", AccountID: "{A}", BaseURL: "{B}",
		ProxyURL: "{X}", Label: "{l}", Models: []string{"{m}"}, Headers: map[string]string{"X-Team": "{ENV.TEAM}"}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("expanded %+v\nwant     %+v", f, want)
	}
	if headers["X-Team"] != "{env.TEAM}" {
		t.Errorf("the config's header map was changed: %v", headers)
	}
}
