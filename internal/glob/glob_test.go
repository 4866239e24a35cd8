package glob

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"claude-*", "claude-sonnet-4-5", true},
		{"claude-*", "Claude-Sonnet", true},
		{"CLAUDE-*", "claude-x", true},
		{"claude-*", "claude", false},
		{"*opus*", "claude-opus-4", true},
		{"*/*", "org/model", true},
		{"gpt-4o", "gpt-4o-mini", false},
		{"gemini-?", "gemini-x", false}, // only * is special
		{"gemini-[12]", "gemini-[12]", true},
		{"x-stainless-*", "X-Stainless-Os", true},
		{"x-stainless-*", "X-Stainless-", true},
		{"x-stainless-*", "X-Stainles", false},
		{"*-id", "Session-Id", true},
		{"a*b*c", "AxxBxxC", true},
		{"a*b*c", "AxxBxx", false},
		{"a**b", "ab", true},
		{"x-team", "X-Teams", false},
		{"é*", "É", false}, // ASCII case only
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
	} {
		if got := Match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestMatchHostilePattern: a pattern built to backtrack stays linear in
// the length of s for each star, so it cannot stall a request.
func TestMatchHostilePattern(t *testing.T) {
	pattern := strings.Repeat("*a", 64) + "b"
	s := strings.Repeat("a", 1<<14)
	if Match(pattern, s) {
		t.Fatal("matched")
	}
}

func BenchmarkMatch(b *testing.B) {
	for b.Loop() {
		Match("x-stainless-*", "X-Stainless-Package-Version")
	}
}

func TestCheck(t *testing.T) {
	for _, p := range []string{"claude-haiku-*", "*", "gpt-4o", "org/model:tag", "modèle"} {
		if err := Check(p); err != nil {
			t.Errorf("Check(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "a b", "a\tb", "a\x00", "a\x7f", "a\u0085", strings.Repeat("a", MaxLen+1)} {
		if Check(p) == nil {
			t.Errorf("Check(%q) = nil, want an error", p)
		}
	}
}

func TestMatchAny(t *testing.T) {
	ps := []string{"claude-haiku-*", "gpt-4o"}
	if !MatchAny(ps, "Claude-Haiku-4-5") || !MatchAny(ps, "gpt-4o") {
		t.Error("MatchAny misses a listed model")
	}
	if MatchAny(ps, "claude-opus-4") || MatchAny(ps, "gpt-4o-mini") || MatchAny(nil, "x") {
		t.Error("MatchAny matches an unlisted model")
	}
}
