package llmproxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// validateHandlers runs `caddy validate` in process on a JSON config whose
// one route holds the given llm_proxy handlers (JSON objects without the
// "handler" key): Caddy provisions, validates and cleans up every module,
// and starts nothing.
func validateHandlers(t *testing.T, handlers ...string) error {
	t.Helper()
	var hs []string
	for _, h := range handlers {
		hs = append(hs, `{"handler":"llm_proxy",`+strings.TrimPrefix(h, "{"))
	}
	raw := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"storage": {"module": "file_system", "root": %q},
		"apps": {"http": {"servers": {"test": {
			"listen": ["127.0.0.1:0"],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [%s]}]
		}}}}
	}`, t.TempDir(), strings.Join(hs, ","))
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	return caddy.Validate(&cfg)
}

// Bad durations in the JSON config are refused with the field named,
// never replaced by defaults.
func TestValidateRefusesBadDurations(t *testing.T) {
	for _, tc := range []struct {
		name, handler, want string
	}{
		{"negative cooldown", `{"pool":"v-neg","cooldown":{"server_error":"-5s"}}`, "cooldown server_error must not be negative"},
		{"ladder below its step", `{"pool":"v-ladder","cooldown":{"rate_limit":"10m","rate_limit_max":"1m"}}`, "cooldown rate_limit_max (1m0s) must not be below rate_limit (10m0s)"},
		{"negative rescan interval", `{"pool":"v-rescan","rescan_interval":"-1s"}`, "rescan_interval must not be negative"},
		{"negative binding TTL", `{"pool":"v-ttl","routing":{"session_affinity":true,"session_affinity_ttl":"-1h"}}`, "routing.session_affinity_ttl must not be negative"},
		{"quota_headroom of 1", `{"pool":"v-head","routing":{"quota_headroom":1}}`, "routing.quota_headroom 1 out of range"},
		{"negative quota_headroom", `{"pool":"v-head","routing":{"quota_headroom":-0.1}}`, "routing.quota_headroom -0.1 out of range"},
		{"negative wait", `{"pool":"v-wait","retry":{"wait_for_cooldown":"-1s"}}`, "retry.wait_for_cooldown must not be negative"},
		{"two handlers, one pool", `{"pool":"v-dup"}`, `pool "v-dup" is used by more than one llm_proxy handler in this config`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handlers := []string{tc.handler}
			if tc.name == "two handlers, one pool" {
				handlers = append(handlers, tc.handler)
			}
			err := validateHandlers(t, handlers...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error containing %q", err, tc.want)
			}
			if names := pool.Names(); len(names) != 0 {
				t.Fatalf("a refused config left pools in use: %v", names)
			}
		})
	}
}

// A valid config validates, and validating leaves nothing behind: no pool
// stays in use.
func TestValidateLeavesNoPool(t *testing.T) {
	err := validateHandlers(t,
		`{"pool":"v-ok-1","cooldown":{"rate_limit":"2s","rate_limit_max":"1m"}}`,
		`{"pool":"v-ok-2","auths":[{"id":"k","provider":"claude","api_key":"sk-ant-0123456789"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if names := pool.Names(); len(names) != 0 {
		t.Fatalf("validating left pools in use: %v", names)
	}
}
