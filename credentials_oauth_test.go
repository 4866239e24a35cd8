package llmproxy

import (
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// An inline OAuth credential's refresh token is expanded at provision time
// (it stays a placeholder in the adapted JSON) and reaches the record the
// pool refreshes.
func TestInlineRefreshTokenExpanded(t *testing.T) {
	t.Setenv("LLMPROXY_TEST_RT", "rt-expanded-0123456789")
	h := &Handler{Auths: []*InlineAuth{{ID: "max", RefreshToken: "{env.LLMPROXY_TEST_RT}",
		Fields: auth.Fields{Provider: "claude", AccessToken: "at-0123456789"}}}}
	auths, err := h.inlineAuths(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if a := auths[0]; a.RefreshToken != "rt-expanded-0123456789" || !a.Inline || !a.IsOAuth() {
		t.Fatalf("record %+v", a)
	}
	if h.Auths[0].RefreshToken != "{env.LLMPROXY_TEST_RT}" {
		t.Fatal("the config's value was changed")
	}
}
