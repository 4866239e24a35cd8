package failure

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// MaxHintDelay caps reset hints: a deadline further than this from now is
// treated as now + MaxHintDelay, so a buggy or hostile upstream cannot park a
// credential for days. The credential is retried after the cap and, if the
// provider still refuses, cooled again from the new response.
const MaxHintDelay = 24 * time.Hour

// Header name prefixes and suffixes of the provider hint families, lower case.
const (
	anthropicPrefix = "anthropic-ratelimit-"
	unifiedPrefix   = "anthropic-ratelimit-unified-"
	openAIPrefix    = "x-ratelimit-reset-"
	resetSuffix     = "-reset"
)

// ResetHint returns the latest reset deadline among all hints present, and
// whether any was found. Hints whose deadline is not after now, and values
// that do not parse, are ignored; deadlines beyond now + [MaxHintDelay] are
// capped there.
//
// Header names are matched case-insensitively. Recognised hints:
//
//   - Retry-After: delay in seconds (a non-negative decimal) or an HTTP date.
//   - retry-after-ms: delay in milliseconds, fractions allowed.
//   - anthropic-ratelimit-<bucket>-reset (requests, tokens, input-tokens,
//     output-tokens, ...): an RFC 3339 timestamp. When the matching
//     anthropic-ratelimit-<bucket>-remaining header is present and greater
//     than zero, the bucket still had capacity and its reset is ignored.
//   - anthropic-ratelimit-unified-reset and
//     anthropic-ratelimit-unified-<window>-reset (5h, 7d, ...): unix seconds
//     (an RFC 3339 timestamp is accepted too). When the matching
//     anthropic-ratelimit-unified[-<window>]-status header says "allowed" (or
//     "allowed_warning"), that window is not the one that refused and its
//     reset is ignored; "rejected", any other status, or no status applies it.
//   - x-ratelimit-reset-<bucket> (OpenAI requests, tokens, ...): a Go-style
//     duration such as 6m0s, 20ms or 2h3m4.5s, or bare seconds such as 12 or
//     0.5. The same remaining rule applies with x-ratelimit-remaining-<bucket>.
//   - A Gemini error body carrying google.rpc.RetryInfo with retryDelay
//     (a protobuf duration such as "34s" or "0.5s") in error.details, either
//     as a JSON object or as a JSON array of such objects (streaming errors).
//
// When a header repeats, every value is considered; a remaining or status
// header is read from its first value and ignored if it does not parse.
func ResetHint(h http.Header, body []byte, now time.Time) (time.Time, bool) {
	var c collector
	c.now = now
	if len(h) > 0 {
		lower := make(map[string]string, len(h))
		for k, vs := range h {
			if len(vs) > 0 {
				// If a name appears in several spellings, the canonical
				// one wins, so the result does not depend on map order.
				lk := strings.ToLower(k)
				if _, dup := lower[lk]; !dup || k == http.CanonicalHeaderKey(k) {
					lower[lk] = vs[0]
				}
			}
		}
		for k, vs := range h {
			lk := strings.ToLower(k)
			for _, v := range vs {
				headerHint(&c, lk, strings.TrimSpace(v), lower)
			}
		}
	}
	geminiHint(&c, body)
	return c.best, c.found
}

// collector keeps the latest valid deadline seen so far.
type collector struct {
	now   time.Time
	best  time.Time
	found bool
}

// at offers an absolute deadline.
func (c *collector) at(t time.Time) {
	if !t.After(c.now) {
		return
	}
	if limit := c.now.Add(MaxHintDelay); t.After(limit) {
		t = limit
	}
	if !c.found || t.After(c.best) {
		c.best, c.found = t, true
	}
}

// after offers a deadline relative to now.
func (c *collector) after(d time.Duration) {
	// Durations are clamped before Add, which does not guard against
	// overflow; at ignores non-positive ones and caps the rest at
	// MaxHintDelay.
	c.at(c.now.Add(min(d, 2*MaxHintDelay)))
}

// headerHint offers the hint carried by one header value, if the header is a
// recognised hint and the value parses. lower maps lower-case header names to
// their first value, for the remaining and status lookups.
func headerHint(c *collector, name, v string, lower map[string]string) {
	switch {
	case name == "retry-after":
		if d, ok := parseSeconds(v, time.Second); ok {
			c.after(d)
		} else if t, err := http.ParseTime(v); err == nil {
			c.at(t)
		}
	case name == "retry-after-ms":
		if d, ok := parseSeconds(v, time.Millisecond); ok {
			c.after(d)
		}
	case strings.HasPrefix(name, unifiedPrefix) && strings.HasSuffix(name, resetSuffix):
		// Also matches anthropic-ratelimit-unified-reset itself, whose
		// status header is anthropic-ratelimit-unified-status.
		status := strings.ToLower(strings.TrimSpace(lower[strings.TrimSuffix(name, resetSuffix)+"-status"]))
		if strings.HasPrefix(status, "allowed") {
			return
		}
		if t, ok := parseUnix(v); ok {
			c.at(t)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			c.at(t)
		}
	case strings.HasPrefix(name, anthropicPrefix) && strings.HasSuffix(name, resetSuffix) &&
		len(name) > len(anthropicPrefix)+len(resetSuffix):
		if hasCapacity(lower[strings.TrimSuffix(name, resetSuffix)+"-remaining"]) {
			return
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			c.at(t)
		}
	case strings.HasPrefix(name, openAIPrefix) && len(name) > len(openAIPrefix):
		if hasCapacity(lower["x-ratelimit-remaining-"+name[len(openAIPrefix):]]) {
			return
		}
		if d, ok := parseSeconds(v, time.Second); ok {
			c.after(d)
		} else if d, err := time.ParseDuration(v); err == nil {
			c.after(d)
		}
	}
}

// hasCapacity reports whether a -remaining header value says the bucket
// still had room. Absent or unparsable values report false, so the bucket's
// reset is applied.
func hasCapacity(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return false
	}
	f, err := strconv.ParseFloat(v, 64)
	return err == nil && f > 0 && !math.IsInf(f, 0)
}

// geminiHint offers the RetryInfo.retryDelay of a Gemini error body, which is
// either an error object or an array of them.
func geminiHint(c *collector, body []byte) {
	root := jsonRoot(body)
	if !root.Exists() {
		return
	}
	visit := func(obj gjson.Result) {
		details := obj.Get("error.details")
		if !details.IsArray() {
			return
		}
		details.ForEach(func(_, d gjson.Result) bool {
			if !d.IsObject() || !isRetryInfo(d) {
				return true
			}
			delay := d.Get("retryDelay")
			if delay.Type != gjson.String {
				return true
			}
			if d, ok := parseProtoDuration(delay.Str); ok {
				c.after(d)
			}
			return true
		})
	}
	if root.IsArray() {
		root.ForEach(func(_, v gjson.Result) bool {
			visit(v)
			return true
		})
		return
	}
	visit(root)
}

// isRetryInfo reports whether a details entry is a google.rpc.RetryInfo.
func isRetryInfo(d gjson.Result) bool { return hasType(d, "google.rpc.RetryInfo") }

// hasType reports whether a google.rpc details entry has an "@type" ending
// in typ, such as "type.googleapis.com/google.rpc.ErrorInfo". The "@type"
// key is looked up by iteration because gjson paths treat a leading '@' as
// a modifier.
func hasType(d gjson.Result, typ string) bool {
	found := false
	d.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "@type" {
			found = v.Type == gjson.String && strings.HasSuffix(v.Str, typ)
			return false
		}
		return true
	})
	return found
}

// jsonRoot parses body as JSON when it starts (after white space) with an
// object or an array; otherwise it returns a result that does not exist.
func jsonRoot(body []byte) gjson.Result {
	for i, b := range body {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return gjson.ParseBytes(body[i:])
		default:
			return gjson.Result{}
		}
	}
	return gjson.Result{}
}

// parseProtoDuration parses a protobuf JSON duration: decimal seconds
// followed by "s", such as "34s" or "0.5s".
func parseProtoDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	num, ok := strings.CutSuffix(s, "s")
	if !ok {
		return 0, false
	}
	return parseSeconds(num, time.Second)
}

// parseSeconds parses a non-negative decimal number (digits with an optional
// fraction; no sign, exponent or special values) and returns it multiplied by
// unit, exactly down to the nanosecond (further digits are truncated). Values
// too large for a time.Duration saturate at its maximum rather than overflow.
func parseSeconds(s string, unit time.Duration) (time.Duration, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || !allDigits(whole) || !allDigits(frac) {
		return 0, false
	}
	const maxDuration = time.Duration(math.MaxInt64)
	var n time.Duration
	for i := 0; i < len(whole); i++ {
		digit := time.Duration(whole[i] - '0')
		if n > (maxDuration-digit)/10 {
			return maxDuration, true
		}
		n = n*10 + digit
	}
	if n > maxDuration/unit {
		return maxDuration, true
	}
	d := n * unit
	// Each fractional digit adds a tenth of the previous digit's weight;
	// digits below a nanosecond are dropped.
	scale := unit
	for i := 0; i < len(frac); i++ {
		scale /= 10
		if scale == 0 {
			break
		}
		add := time.Duration(frac[i]-'0') * scale
		if d > maxDuration-add {
			return maxDuration, true
		}
		d += add
	}
	return d, true
}

// parseUnix parses unix seconds, fractions allowed. Values beyond the range
// of a time.Duration since the epoch (after the year 2262) saturate there,
// and the caller caps them.
func parseUnix(s string) (time.Time, bool) {
	d, ok := parseSeconds(s, time.Second)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, 0).Add(d), true
}

// allDigits reports whether s consists of ASCII digits only (true for "").
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
