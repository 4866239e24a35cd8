package llmproxy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// TestInlineAuthJSON pins the JSON names of an inline credential: configs
// written for earlier versions keep loading.
func TestInlineAuthJSON(t *testing.T) {
	w := 0
	ia := InlineAuth{ID: "x", Fields: auth.Fields{Provider: "codex", APIKey: "k", AccessToken: "t", AccountID: "acct",
		BaseURL: "https://b", Models: []string{"m"}, Priority: 1, Weight: &w, Headers: map[string]string{"H": "v"},
		ProxyURL: "http://p", Disabled: true, Label: "l"}}
	b, err := json.Marshal(ia)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"x","provider":"codex","api_key":"k","access_token":"t","account_id":"acct","base_url":"https://b",` +
		`"models":["m"],"priority":1,"weight":0,"headers":{"H":"v"},"proxy_url":"http://p","disabled":true,"label":"l"}`
	if string(b) != want {
		t.Fatalf("encoded as\n%s\nwant\n%s", b, want)
	}
	var back InlineAuth
	if err := json.Unmarshal([]byte(want), &back); err != nil || !reflect.DeepEqual(back, ia) {
		t.Fatalf("decoded %+v (%v), want %+v", back, err, ia)
	}
}

func TestInlineAuthsExpandAndValidate(t *testing.T) {
	t.Setenv("LLMPROXY_TEST_KEY", "sk-expanded-0123456789")
	t.Setenv("LLMPROXY_TEST_BASE", "http://127.0.0.1:9/v1")
	t.Setenv("LLMPROXY_TEST_BAD_BASE", "127.0.0.1:9")
	t.Setenv("LLMPROXY_TEST_TEAM", "team-a")
	repl := caddy.NewReplacer()

	headers := map[string]string{"X-Team": "{env.LLMPROXY_TEST_TEAM}"}
	h := &Handler{Auths: []*InlineAuth{{ID: "a", Fields: auth.Fields{Provider: "openai_compatible",
		APIKey: "{env.LLMPROXY_TEST_KEY}", BaseURL: "{env.LLMPROXY_TEST_BASE}", Label: "{env.LLMPROXY_TEST_TEAM}", Headers: headers}}}}
	got, err := h.inlineAuths(repl)
	if err != nil {
		t.Fatal(err)
	}
	a := got[0]
	if !a.Inline || a.APIKey != "sk-expanded-0123456789" || a.BaseURL != "http://127.0.0.1:9/v1" || a.Headers["X-Team"] != "team-a" {
		t.Errorf("expanded to %+v", a.Fields)
	}
	if a.Label != "{env.LLMPROXY_TEST_TEAM}" {
		t.Errorf("label expanded: %q", a.Label)
	}
	// The config keeps its placeholders: a reload expands them again.
	if h.Auths[0].APIKey != "{env.LLMPROXY_TEST_KEY}" || headers["X-Team"] != "{env.LLMPROXY_TEST_TEAM}" {
		t.Errorf("config changed: %+v", h.Auths[0].Fields)
	}

	for _, tc := range []struct {
		name string
		ia   *InlineAuth
		want string
	}{
		{"url checked once expanded", &InlineAuth{ID: "b", Fields: auth.Fields{Provider: "openai_compatible", APIKey: "k",
			BaseURL: "{env.LLMPROXY_TEST_BAD_BASE}"}}, `auth "b": base_url`},
		{"unset variable", &InlineAuth{ID: "c", Fields: auth.Fields{Provider: "claude", APIKey: "{env.LLMPROXY_TEST_UNSET}"}},
			`its value "{env.LLMPROXY_TEST_UNSET}" expanded to nothing`},
		{"gemini needs an api_key", &InlineAuth{ID: "d", Fields: auth.Fields{Provider: "gemini", AccessToken: "{env.LLMPROXY_TEST_KEY}"}},
			`auth "d": gemini credential has no api_key`},
		{"no id", &InlineAuth{Fields: auth.Fields{Provider: "claude", APIKey: "k"}}, "auths[0]: missing id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Handler{Auths: []*InlineAuth{tc.ia}}).inlineAuths(repl)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "sk-expanded") {
				t.Fatalf("error %q holds the expanded secret", err)
			}
		})
	}

	dup := &Handler{Auths: []*InlineAuth{h.Auths[0], h.Auths[0]}}
	if _, err := dup.inlineAuths(repl); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("duplicate IDs: %v", err)
	}
}
