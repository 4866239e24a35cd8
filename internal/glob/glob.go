// Package glob matches the patterns of llm_proxy's config: the models a
// credential serves and the client headers forwarded upstream. In a pattern
// '*' matches any run of characters (including '/'); every other character
// matches itself, ignoring ASCII case.
package glob

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
