package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

func TestParseOAuth(t *testing.T) {
	got, err := parseOAuth(" alice=claude , bob=codex:1h30m,")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]mockllm.OAuthAccount{
		"alice": {Provider: "claude"},
		"bob":   {Provider: "codex", Lifetime: 90 * time.Minute},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if got, err := parseOAuth(""); got != nil || err != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	for in, msg := range map[string]string{
		"alice":                    "not label=provider",
		"=claude":                  "not label=provider",
		"alice=gemini":             "not claude or codex",
		"alice=claude:soon":        "not a positive duration",
		"alice=claude:-1h":         "not a positive duration",
		"alice=claude,alice=codex": "given twice",
	} {
		if _, err := parseOAuth(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Fatalf("%q: %v, want %q", in, err, msg)
		}
	}
}
