// Package glob matches the patterns of llm_proxy's config: the models a
// credential serves and the client headers forwarded upstream. In a pattern
// '*' matches any run of characters (including '/'); every other character
// matches itself, ignoring ASCII case.
package glob

import (
	"errors"
	"fmt"
	"unicode"
)

// Match reports whether s matches pattern. It backtracks only to the last
// star, so it takes at most O(len(pattern)*len(s)) steps, without recursion
// or allocation.
func Match(pattern, s string) bool {
	p, i := 0, 0
	star, resume := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, resume = p, i
			p++
		case p < len(pattern) && lower(pattern[p]) == lower(s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			resume++
			i = resume
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// MaxLen is the longest pattern accepted, in bytes: as long as the longest
// model name a client may send.
const MaxLen = 256

// Check returns why pattern cannot be used: empty, longer than MaxLen
// bytes, or holding whitespace or control characters, which no model name
// contains. Every other pattern is valid.
func Check(pattern string) error {
	if pattern == "" {
		return errors.New("empty pattern")
	}
	if len(pattern) > MaxLen {
		return fmt.Errorf("pattern is %d bytes long; at most %d are accepted", len(pattern), MaxLen)
	}
	for _, c := range pattern {
		if c <= ' ' || c == 0x7f || unicode.IsSpace(c) || unicode.IsControl(c) {
			return fmt.Errorf("pattern holds whitespace or control character %U", c)
		}
	}
	return nil
}

// MatchAny reports whether s matches one of patterns.
func MatchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}
