package access

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func provisioned(t *testing.T, c *ConfigAPIKey) *ConfigAPIKey {
	t.Helper()
	if err := c.Provision(caddy.Context{}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return c
}

func TestConfigAPIKeyModule(t *testing.T) {
	info, err := caddy.GetModule("llm_proxy.access.config_api_key")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.New().(*ConfigAPIKey); !ok {
		t.Errorf("New() returns %T", info.New())
	}
}

func TestConfigAPIKeyAuthenticate(t *testing.T) {
	c := provisioned(t, &ConfigAPIKey{
		Keys:        []string{"client-key-one", "client-key-two"},
		LabeledKeys: map[string]string{"alice": "alice-key", "bob": "bob-key"},
	})
	for _, tc := range []struct {
		key, label string
		err        error
	}{
		{"client-key-one", DefaultKeyLabel("client-key-one"), nil},
		{"client-key-two", DefaultKeyLabel("client-key-two"), nil},
		{"alice-key", "alice", nil},
		{"bob-key", "bob", nil},
		{"", "", ErrNoKey},
		{"client-key", "", ErrBadKey},
		{"client-key-one2", "", ErrBadKey},
		{"alice", "", ErrBadKey},
		{"CLIENT-KEY-ONE", "", ErrBadKey},
	} {
		label, err := c.Authenticate(tc.key)
		if label != tc.label || !errors.Is(err, tc.err) {
			t.Errorf("Authenticate(%q) = %q, %v; want %q, %v", tc.key, label, err, tc.label, tc.err)
		}
	}

	var unprovisioned ConfigAPIKey
	if _, err := unprovisioned.Authenticate("k"); !errors.Is(err, ErrBadKey) {
		t.Errorf("unprovisioned: %v", err)
	}
}

func TestDefaultKeyLabel(t *testing.T) {
	l := DefaultKeyLabel("sk-client-secret")
	if !regexp.MustCompile(`^key-[0-9a-f]{8}$`).MatchString(l) {
		t.Errorf("label %q is not key- and 8 hex digits", l)
	}
	if l != DefaultKeyLabel("sk-client-secret") || l == DefaultKeyLabel("sk-client-secreT") {
		t.Error("label is not a stable function of the key")
	}
}

func TestConfigAPIKeyPlaceholders(t *testing.T) {
	t.Setenv("LLM_PROXY_TEST_CLIENT_KEY", "key-from-env")
	t.Setenv("LLM_PROXY_TEST_TEAM_KEY", "team-from-env")
	c := provisioned(t, &ConfigAPIKey{
		Keys:        []string{"{env.LLM_PROXY_TEST_CLIENT_KEY}", "prefix-{env.LLM_PROXY_TEST_CLIENT_KEY}"},
		LabeledKeys: map[string]string{"team": "{env.LLM_PROXY_TEST_TEAM_KEY}"},
	})
	for key, want := range map[string]string{
		"key-from-env":        DefaultKeyLabel("key-from-env"),
		"prefix-key-from-env": DefaultKeyLabel("prefix-key-from-env"),
		"team-from-env":       "team",
	} {
		if label, err := c.Authenticate(key); err != nil || label != want {
			t.Errorf("Authenticate(%q) = %q, %v; want %q", key, label, err, want)
		}
	}
	if _, err := c.Authenticate("{env.LLM_PROXY_TEST_CLIENT_KEY}"); !errors.Is(err, ErrBadKey) {
		t.Errorf("the unexpanded placeholder is accepted: %v", err)
	}
	// The config keeps the placeholders, not the secrets.
	if c.Keys[0] != "{env.LLM_PROXY_TEST_CLIENT_KEY}" {
		t.Errorf("Keys changed to %q", c.Keys[0])
	}
}

func TestConfigAPIKeyProvisionErrors(t *testing.T) {
	t.Setenv("LLM_PROXY_TEST_SECRET", "s3cret-value")
	for _, tc := range []struct {
		name string
		c    ConfigAPIKey
		want string
	}{
		{"no keys", ConfigAPIKey{}, "no keys configured"},
		{"empty key", ConfigAPIKey{Keys: []string{"a-key", ""}}, "keys[1] is empty"},
		{"unset env", ConfigAPIKey{Keys: []string{"{env.LLM_PROXY_TEST_UNSET_VAR}"}}, "keys[0] is empty (after placeholder expansion)"},
		{"empty labelled key", ConfigAPIKey{LabeledKeys: map[string]string{"ops": ""}}, `the key labelled "ops" is empty`},
		{"blank label", ConfigAPIKey{LabeledKeys: map[string]string{" ": "k"}}, "is blank"},
		{"duplicate", ConfigAPIKey{Keys: []string{"s3cret-value", "{env.LLM_PROXY_TEST_SECRET}"}}, "keys[1] repeats the key of keys[0]"},
		{"duplicate labelled", ConfigAPIKey{Keys: []string{"s3cret-value"}, LabeledKeys: map[string]string{"ops": "s3cret-value"}}, `the key labelled "ops" repeats the key of keys[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Provision(caddy.Context{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
}

func TestConfigAPIKeyUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  ConfigAPIKey
		err   string // "" for no error
	}{
		{
			name: "keys and labelled keys",
			input: `config_api_key {
				keys k1 {env.CLIENT_KEY}
				keys k3
				key alice a-key
				key bob {env.BOB_KEY}
			}`,
			want: ConfigAPIKey{
				Keys:        []string{"k1", "{env.CLIENT_KEY}", "k3"},
				LabeledKeys: map[string]string{"alice": "a-key", "bob": "{env.BOB_KEY}"},
			},
		},
		{name: "empty block", input: `config_api_key {
			}`},
		{name: "argument", input: `config_api_key sk-s3cret`, err: "config_api_key takes no arguments: list the keys in its block with keys or key, at Testfile:1"},
		{name: "keys without key", input: "config_api_key {\n keys\n}", err: "keys needs at least one key, at Testfile:2"},
		{name: "key without key", input: "config_api_key {\n key alice\n}", err: "key takes a label and a key, got 1 arguments, at Testfile:2"},
		{name: "key with extra", input: "config_api_key {\n key alice s3cret more\n}", err: "key takes a label and a key, got 3 arguments"},
		{name: "duplicate label", input: "config_api_key {\n key alice a\n key alice s3cret\n}", err: `duplicate key label "alice", at Testfile:3`},
		{name: "unknown option", input: "config_api_key {\n api_keys k\n}", err: `unrecognized config_api_key option "api_keys" (allowed: keys, key), at Testfile:2`},
		{name: "bare key", input: "config_api_key {\n sk-s3cret\n}", err: "unrecognized config_api_key option (not shown, it may be a key; allowed: keys, key), at Testfile:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got ConfigAPIKey
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q contains a key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
