package failure

import (
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// ReasonQuotaExhausted is the reason of a subscription's usage window
// refusing the credential: a Claude unified window (5h, 7d, or a model
// family's) or a Codex usage limit. The credential, or the family's models
// on it, cool until the window resets.
const ReasonQuotaExhausted = "quota_exhausted"

// Header names of the Claude unified windows, lower case.
const statusSuffix = "-status"

// quotaVerdict reads a 429 refusing a subscription's usage window: a Codex
// usage_limit_reached body, or Claude unified-window headers with a
// rejected window. ok is false for any other 429.
func quotaVerdict(req Request, a Attempt, now time.Time) (Verdict, bool) {
	if until, hinted, ok := usageLimit(a.Body, now); ok {
		v := Verdict{Action: Failover, Scope: ScopeAll, Reason: ReasonQuotaExhausted, Until: until, Hinted: hinted}
		return withResetHint(v, a, now), true
	}
	return unifiedVerdict(req, a, now)
}

// withResetHint fills in a missing deadline from the generic reset hints.
func withResetHint(v Verdict, a Attempt, now time.Time) Verdict {
	if v.Until.IsZero() {
		v.Until, v.Hinted = ResetHint(a.Header, a.Body, now)
	}
	return v
}

// usageLimit reads a Codex usage-limit body: error.type, error.code or a
// top-level type usage_limit_reached. The reset is error.resets_at (unix
// seconds), else now + error.resets_in_seconds (top-level fields are read
// too); hinted is false when neither parses. Deadlines are capped at
// now + MaxHintDelay.
func usageLimit(body []byte, now time.Time) (until time.Time, hinted, ok bool) {
	root := jsonRoot(body)
	if !root.IsObject() {
		return time.Time{}, false, false
	}
	e := root.Get("error")
	if !e.IsObject() {
		e = root
	}
	if stringField(e.Get("type")) != "usage_limit_reached" && stringField(e.Get("code")) != "usage_limit_reached" &&
		stringField(root.Get("type")) != "usage_limit_reached" {
		return time.Time{}, false, false
	}
	c := collector{now: now}
	if t, ok := parseUnix(numberText(e.Get("resets_at"))); ok {
		c.at(t)
	} else if d, ok := parseSeconds(numberText(e.Get("resets_in_seconds")), time.Second); ok {
		c.after(d)
	}
	return c.best, c.found, true
}

// numberText is the text of a JSON number or of a string holding one.
func numberText(r gjson.Result) string {
	switch r.Type {
	case gjson.Number:
		return r.Raw
	case gjson.String:
		return strings.TrimSpace(r.Str)
	}
	return ""
}

// window is one Claude unified rate-limit window a response reported.
type window struct {
	name     string // "" (the overall status), "5h", "7d", "7d_sonnet", ...
	rejected bool
	reset    string // the -reset header's first value
}

// family is the model family a model-specific window (one whose name has
// an underscore, such as 7d_sonnet) limits: the part after the first
// underscore, lower case. Windows without one (5h, 7d) limit every model.
func (w window) family() string {
	_, f, _ := strings.Cut(w.name, "_")
	return f
}

// unifiedWindows lists the windows of the anthropic-ratelimit-unified-*
// headers of h, each read from the first value of its -status and -reset
// headers.
func unifiedWindows(h http.Header) []window {
	var ws []window
	for k, vs := range h {
		lk := strings.ToLower(k)
		if len(vs) == 0 || !strings.HasSuffix(lk, statusSuffix) {
			continue
		}
		var name string
		switch {
		case lk == "anthropic-ratelimit-unified-status":
		case strings.HasPrefix(lk, unifiedPrefix):
			name = strings.TrimSuffix(strings.TrimPrefix(lk, unifiedPrefix), statusSuffix)
			if name == "" {
				continue
			}
		default:
			continue
		}
		resetName := strings.TrimSuffix(lk, statusSuffix) + resetSuffix
		ws = append(ws, window{
			name:     name,
			rejected: strings.EqualFold(strings.TrimSpace(vs[0]), "rejected"),
			reset:    headerValue(h, resetName),
		})
	}
	return ws
}

// headerValue is the first value of the header named lower (lower case),
// however h spells it.
func headerValue(h http.Header, lower string) string {
	if vs := h[http.CanonicalHeaderKey(lower)]; len(vs) > 0 {
		return strings.TrimSpace(vs[0])
	}
	for k, vs := range h {
		if len(vs) > 0 && strings.ToLower(k) == lower {
			return strings.TrimSpace(vs[0])
		}
	}
	return ""
}

// unifiedVerdict reads the Claude unified-window headers of a 429. In
// order:
//
//   - a credential-wide window (one without an underscore: 5h, 7d)
//     rejected: ScopeAll until the latest reset among them;
//   - a model-specific window rejected (7d_sonnet, 7d_opus, 7d_oi...):
//     ScopeFamily of that family when the requested model's name has the
//     family as a word ("claude-sonnet-4-5" is of family "sonnet"), until
//     its reset; otherwise the requested model only (ScopeModel), since
//     which models such a window covers cannot be told from its name;
//   - the overall anthropic-ratelimit-unified-status rejected with no
//     window rejected: ScopeAll until anthropic-ratelimit-unified-reset.
//
// A missing or unparsable reset falls back to the generic reset hints
// (Retry-After...), and without any to the policy.
func unifiedVerdict(req Request, a Attempt, now time.Time) (Verdict, bool) {
	var wide, specific, overall []window
	for _, w := range unifiedWindows(a.Header) {
		switch {
		case !w.rejected:
		case w.name == "":
			overall = append(overall, w)
		case w.family() == "":
			wide = append(wide, w)
		default:
			specific = append(specific, w)
		}
	}
	v := Verdict{Action: Failover, Scope: ScopeAll, Reason: ReasonQuotaExhausted}
	switch {
	case len(wide) > 0:
		v.Until, v.Hinted = latestReset(wide, now)
	case len(specific) > 0:
		var mine []window
		for _, w := range specific {
			if InFamily(req.Model, w.family()) {
				mine = append(mine, w)
			}
		}
		if len(mine) > 0 {
			v.Scope, v.Family = ScopeFamily, mine[0].family()
			specific = mine[:1]
		} else if req.Model == "" {
			v.Scope = ScopeNone
			return v, true
		} else {
			v.Scope = ScopeModel
		}
		v.Until, v.Hinted = latestReset(specific, now)
	case len(overall) > 0:
		v.Until, v.Hinted = latestReset(overall, now)
	default:
		return Verdict{}, false
	}
	return withResetHint(v, a, now), true
}

// latestReset is the latest reset among ws (unix seconds, or RFC 3339),
// capped at now + MaxHintDelay; ok is false when none is after now.
func latestReset(ws []window, now time.Time) (time.Time, bool) {
	c := collector{now: now}
	for _, w := range ws {
		if t, ok := parseUnix(w.reset); ok {
			c.at(t)
		} else if t, err := time.Parse(time.RFC3339, w.reset); err == nil {
			c.at(t)
		}
	}
	return c.best, c.found
}

// InFamily reports whether model belongs to family: whether family (lower
// case) is one of the words of the model's name, the runs of letters
// between digits and punctuation. "claude-sonnet-4-5" and
// "claude-3-5-sonnet-latest" are of family "sonnet"; "claude-opus-4-1" is
// not.
func InFamily(model, family string) bool {
	if family == "" {
		return false
	}
	found := false
	eachWord(model, func(w string) bool {
		found = strings.EqualFold(w, family)
		return !found
	})
	return found
}

// Families returns the words of model's name (lower case), the families a
// ScopeFamily cooldown may have been recorded under for it.
func Families(model string) []string {
	var fs []string
	eachWord(model, func(w string) bool {
		fs = append(fs, strings.ToLower(w))
		return true
	})
	return fs
}

// eachWord calls f with each run of ASCII letters of s, while f returns
// true.
func eachWord(s string, f func(string) bool) {
	start := -1
	for i := 0; i <= len(s); i++ {
		letter := i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z')
		switch {
		case letter && start < 0:
			start = i
		case !letter && start >= 0:
			if !f(s[start:i]) {
				return
			}
			start = -1
		}
	}
}
