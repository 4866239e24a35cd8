package session

import "bytes"

// This file holds a minimal, non-allocating JSON walker. It checks structure
// (balanced and matching brackets, terminated strings, key/colon/comma
// layout) but not the content of strings and literals, and is built for
// speed: string bodies are skipped with bytes.IndexByte, so a large request
// made mostly of long strings is walked at memory speed.

// maxDepth bounds the nesting the walker accepts; deeper documents are
// treated as malformed.
const maxDepth = 1024

// skipWS returns the index of the first non-whitespace byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] (which
// must be '"'), or -1 when the string is not terminated.
func stringEnd(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		j += i
		// Count the backslashes right before the quote. The run cannot cross
		// i: b[i-1] is the previous quote (opening or escaped).
		k := j - 1
		for k >= i && b[k] == '\\' {
			k--
		}
		if (j-1-k)%2 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

// valueEnd returns the index just past the JSON value starting at b[i], or -1
// when it is malformed or truncated.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		return containerEnd(b, i)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f', 'n':
		j := i + 1
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			case '"', '{', '[', ':':
				return -1
			}
			j++
		}
		return j
	default:
		return -1
	}
}

// containerEnd returns the index just past the object or array starting at
// b[i], or -1 when it is malformed or truncated. Bracket kinds are tracked in
// a bit stack so that "[}" is rejected.
func containerEnd(b []byte, i int) int {
	var stack [maxDepth / 64]uint64 // bit set: array, clear: object
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i = stringEnd(b, i)
			if i < 0 {
				return -1
			}
			continue
		case '{', '[':
			if depth >= maxDepth {
				return -1
			}
			if c == '[' {
				stack[depth>>6] |= 1 << (depth & 63)
			} else {
				stack[depth>>6] &^= 1 << (depth & 63)
			}
			depth++
		case '}', ']':
			depth--
			isArray := stack[depth>>6]>>(depth&63)&1 == 1
			if isArray != (c == ']') {
				return -1
			}
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return -1
}

// ForEachMember is forEachMember for other packages that must read the top
// level of a client's JSON body without recursion (rewriting its model):
// nesting beyond maxDepth makes the body malformed instead of using stack.
func ForEachMember(b []byte, fn func(key, val []byte) bool) bool { return forEachMember(b, fn) }

// forEachMember calls fn for each member of the JSON object in b with the raw
// key (between the quotes, escapes left as they are) and the raw value. It
// stops early when fn returns false. It reports false when b is not a
// well-formed object up to the point where the walk ended; when the walk runs
// to the end, only whitespace may follow the object.
func forEachMember(b []byte, fn func(key, val []byte) bool) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		ke := stringEnd(b, i)
		if ke < 0 {
			return false
		}
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		vs := skipWS(b, i+1)
		ve := valueEnd(b, vs)
		if ve < 0 {
			return false
		}
		if !fn(key, b[vs:ve]) {
			return true
		}
		var end, ok bool
		if i, end, ok = afterValue(b, ve, '}'); end {
			return ok
		}
	}
}

// forEachElement calls fn for each element of the JSON array in b, stopping
// early when fn returns false. It reports whether b was well formed up to the
// point where the walk ended.
func forEachElement(b []byte, fn func(val []byte) bool) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		ve := valueEnd(b, i)
		if ve < 0 {
			return false
		}
		if !fn(b[i:ve]) {
			return true
		}
		var end, ok bool
		if i, end, ok = afterValue(b, ve, ']'); end {
			return ok
		}
	}
}

// afterValue steps over what follows a member or element that ends at ve:
// after a comma, i is the start of the next one; at closer (or anything
// else) the walk ends, and wellFormed reports whether b ends right there.
func afterValue(b []byte, ve int, closer byte) (i int, end, wellFormed bool) {
	i = skipWS(b, ve)
	switch {
	case i >= len(b):
		return i, true, false
	case b[i] == ',':
		return skipWS(b, i+1), false, true
	case b[i] == closer:
		return i, true, skipWS(b, i+1) == len(b)
	}
	return i, true, false
}

// isString reports whether the raw value v is a JSON string.
func isString(v []byte) bool { return len(v) >= 2 && v[0] == '"' }
