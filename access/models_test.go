package access

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestAuthenticateClientModels(t *testing.T) {
	c := provisioned(t, &ConfigAPIKey{
		Keys:          []string{"plain-key"},
		LabeledKeys:   map[string]string{"intern": "intern-key", "lead": "lead-key"},
		AllowedModels: map[string][]string{"intern": {"claude-haiku-*", "gpt-4o-mini"}},
	})
	for _, tc := range []struct {
		key     string
		model   string
		label   string
		allowed bool
	}{
		{"intern-key", "claude-haiku-4-5", "intern", true},
		{"intern-key", "CLAUDE-HAIKU-4-5", "intern", true},
		{"intern-key", "gpt-4o-mini", "intern", true},
		{"intern-key", "claude-opus-4", "intern", false},
		{"intern-key", "gpt-4o-mini-2024", "intern", false},
		{"intern-key", "xclaude-haiku-4", "intern", false},
		{"lead-key", "claude-opus-4", "lead", true},
		{"plain-key", "claude-opus-4", DefaultKeyLabel("plain-key"), true},
	} {
		client, err := c.AuthenticateClient(tc.key)
		if err != nil || client.Label != tc.label {
			t.Fatalf("AuthenticateClient(%q) = %+v, %v; want label %q", tc.key, client, err, tc.label)
		}
		if got := client.Allows(tc.model); got != tc.allowed {
			t.Errorf("key %q: Allows(%q) = %v, want %v", tc.label, tc.model, got, tc.allowed)
		}
		if label, err := c.Authenticate(tc.key); err != nil || label != tc.label {
			t.Errorf("Authenticate(%q) = %q, %v; want the same label", tc.key, label, err)
		}
	}
	if _, err := c.AuthenticateClient("intern"); !errors.Is(err, ErrBadKey) {
		t.Errorf("a label as the key: %v, want ErrBadKey", err)
	}
}

// labelOnly is a third-party provider that knows nothing of models.
type labelOnly struct{}

func (labelOnly) Authenticate(key string) (string, error) {
	if key == "k" {
		return "third", nil
	}
	return "", ErrBadKey
}

func TestAuthenticateThirdPartyProvider(t *testing.T) {
	client, err := Authenticate(labelOnly{}, "k")
	if err != nil || !reflect.DeepEqual(client, Client{Label: "third"}) || !client.Allows("any-model") {
		t.Errorf("Authenticate(labelOnly) = %+v, %v", client, err)
	}
	if _, err := Authenticate(labelOnly{}, "x"); !errors.Is(err, ErrBadKey) {
		t.Errorf("bad key: %v", err)
	}
	c := provisioned(t, &ConfigAPIKey{LabeledKeys: map[string]string{"a": "a-key"}, AllowedModels: map[string][]string{"a": {"m"}}})
	if client, err := Authenticate(c, "a-key"); err != nil || !reflect.DeepEqual(client.Models, []string{"m"}) {
		t.Errorf("Authenticate(config_api_key) = %+v, %v; want the models", client, err)
	}
}

func TestAllowedModelsProvisionErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		c    ConfigAPIKey
		want string
	}{
		"label of no key": {ConfigAPIKey{
			LabeledKeys:   map[string]string{"a": "a-key"},
			AllowedModels: map[string][]string{"b": {"m"}},
		}, `"b" is not the label of a key`},
		"empty list": {ConfigAPIKey{
			LabeledKeys:   map[string]string{"a": "a-key"},
			AllowedModels: map[string][]string{"a": {}},
		}, "empty list"},
		"bad glob": {ConfigAPIKey{
			LabeledKeys:   map[string]string{"a": "a-key"},
			AllowedModels: map[string][]string{"a": {"claude haiku"}},
		}, `bad model pattern "claude haiku"`},
		"unlabelled key": {ConfigAPIKey{
			Keys:          []string{"plain"},
			AllowedModels: map[string][]string{"key-0": {"m"}},
		}, "not the label of a key"},
	} {
		err := tc.c.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Provision = %v, want an error containing %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "a-key") {
			t.Errorf("%s: error shows the key: %v", name, err)
		}
	}
}

func TestUnmarshalKeyModels(t *testing.T) {
	d := caddyfile.NewTestDispenser(`config_api_key {
		keys plain
		key intern {env.INTERN_KEY} {
			models claude-haiku-* gpt-4o-mini
		}
		key lead lead-key
	}`)
	var c ConfigAPIKey
	if err := c.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := ConfigAPIKey{
		Keys:          []string{"plain"},
		LabeledKeys:   map[string]string{"intern": "{env.INTERN_KEY}", "lead": "lead-key"},
		AllowedModels: map[string][]string{"intern": {"claude-haiku-*", "gpt-4o-mini"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

func TestUnmarshalKeyModelsErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"config_api_key {\n key a secret-a {\n models\n }\n}", "models needs at least one glob"},
		{"config_api_key {\n key a secret-a {\n models claude-\x01x\n }\n}", "bad model glob"},
		{"config_api_key {\n key a secret-a {\n models m\n models n\n }\n}", "duplicate models option"},
		{"config_api_key {\n key a secret-a {\n ratelimit 5\n }\n}", `unknown option "ratelimit"`},
		{"config_api_key {\n key a secret-a {\n sk-Secret-123\n }\n}", "not shown"},
		{"config_api_key {\n key secret-a {\n models m\n }\n}", "key takes a label and a key, got 1"},
		{"config_api_key {\n keys secret-a {\n models m\n }\n}", "keys takes no block"},
	} {
		var c ConfigAPIKey
		err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.in, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "secret-a") || strings.Contains(err.Error(), "sk-Secret") {
			t.Errorf("%q: error shows a key: %v", tc.in, err)
		}
		if !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: error names no line: %v", tc.in, err)
		}
	}
}
