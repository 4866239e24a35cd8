package llmproxy

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestOAuthSettings(t *testing.T) {
	t.Setenv("LLM_TEST_OAUTH_BASE", "http://127.0.0.1:9")
	h := &Handler{OAuth: map[string]*OAuthProvider{
		"claude": {TokenURL: "{env.LLM_TEST_OAUTH_BASE}/v1/oauth/token", RefreshLead: caddy.Duration(time.Hour)},
	}}
	got, err := h.oauthSettings(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	c := got["claude"]
	if c.Endpoints.TokenURL != "http://127.0.0.1:9/v1/oauth/token" || c.RefreshLead != time.Hour {
		t.Fatalf("claude overrides not applied: %+v", c)
	}
	if c.Endpoints.AuthorizeURL != "https://claude.ai/oauth/authorize" || c.Endpoints.ClientID != "9d1c250a-e61b-44d9-88ed-5944d1962f5e" {
		t.Fatalf("claude defaults lost: %+v", c.Endpoints)
	}
	x := got["codex"]
	if x.Endpoints.TokenURL != "https://auth.openai.com/oauth/token" || x.RefreshLead != 5*24*time.Hour {
		t.Fatalf("codex defaults: %+v", x)
	}
	if _, ok := got["gemini"]; ok {
		t.Fatal("gemini has no OAuth login")
	}
}

func TestOAuthSettingsRefused(t *testing.T) {
	for name, o := range map[string]map[string]*OAuthProvider{
		"unknown provider":          {"gemini": {}},
		"url empty after expansion": {"codex": {TokenURL: "{env.LLM_TEST_UNSET_VAR}/token"}},
		"negative lead":             {"claude": {RefreshLead: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			h := &Handler{OAuth: o}
			if _, err := h.oauthSettings(caddy.NewReplacer()); err == nil || !strings.Contains(err.Error(), "oauth") {
				t.Fatalf("error = %v, want an oauth error", err)
			}
		})
	}
}
