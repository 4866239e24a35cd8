package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Error is a failed token request. Its message names the operation, the
// HTTP status and the provider's error code and description; it never
// contains a token, a code or a PKCE verifier.
type Error struct {
	// Op is the grant that failed: "refresh" or "code exchange".
	Op string
	// Status is the HTTP status of the token endpoint's answer, 0 when no
	// answer arrived (Err then says why).
	Status int
	// Code is the OAuth error code (invalid_grant, refresh_token_reused,
	// ...), from either {"error":"code"} or {"error":{"code":"..."}}.
	Code string
	// Description is the provider's explanation, shortened and with any
	// secret of the request blanked out.
	Description string
	// Permanent reports that repeating the request cannot succeed: for a
	// refresh, the refresh token is dead and the credential needs a new
	// login. Everything else (no answer, 5xx, 429, unexpected answers) is
	// temporary and worth retrying with backoff.
	Permanent bool
	// RetryAfter is the wait the endpoint asked for (Retry-After), or 0.
	RetryAfter time.Duration
	// Err is the underlying transport or decoding error, if any.
	Err error
}

func (e *Error) Error() string {
	msg := "oauth " + e.Op + ": "
	switch {
	case e.Status != 0:
		msg += "token endpoint answered " + strconv.Itoa(e.Status)
		if e.Code != "" {
			msg += " " + e.Code
		}
		if e.Description != "" {
			msg += ": " + e.Description
		} else if e.Err != nil {
			msg += ": " + e.Err.Error()
		}
	case e.Err != nil:
		msg += e.Err.Error()
	default:
		msg += "no answer from the token endpoint"
	}
	if e.RetryAfter > 0 {
		msg += " (retry after " + e.RetryAfter.String() + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a token-endpoint answer that repeating
// the request cannot change (see Error.Permanent).
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// deadTokenCodes are the error codes meaning the grant itself is gone:
// RFC 6749's invalid_grant, and the codes OpenAI's token endpoint uses for a
// refresh token that was rotated away, has expired or was revoked.
var deadTokenCodes = map[string]bool{
	"invalid_grant":             true,
	"refresh_token_reused":      true,
	"refresh_token_expired":     true,
	"refresh_token_invalidated": true,
}

// permanent classifies an error answer. Only a client error (4xx other than
// 408 and 429) carrying one of deadTokenCodes is permanent, plus
// invalid_request when its description is about the refresh token or code
// (a malformed one never becomes valid). Answers without a recognised code,
// including a bare 401, stay temporary: wrongly retiring a credential needs
// a human, wrongly retrying only costs a backoff.
func permanent(status int, code, desc string) bool {
	if status < 400 || status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests {
		return false
	}
	if deadTokenCodes[code] {
		return true
	}
	if code == "invalid_request" {
		d := strings.ToLower(desc)
		return strings.Contains(d, "refresh token") || strings.Contains(d, "refresh_token") ||
			strings.Contains(d, "authorization code") || strings.Contains(d, "code_verifier")
	}
	return false
}

// maxDescription bounds the provider's description kept in an Error.
const maxDescription = 200

// errorAnswer builds the Error for a non-2xx answer with body b. secrets
// are blanked out of the description.
func errorAnswer(op string, resp *http.Response, b []byte, now time.Time, secrets []string) *Error {
	code, desc := parseErrorBody(b)
	desc = sanitize(desc, secrets)
	code = sanitize(code, secrets)
	if len(code) > 64 {
		code = code[:64]
	}
	e := &Error{Op: op, Status: resp.StatusCode, Code: code, Description: desc}
	e.Permanent = permanent(e.Status, code, desc)
	if !e.Permanent {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// parseErrorBody reads the two error shapes token endpoints use:
// RFC 6749's {"error":"code","error_description":"..."} and OpenAI's
// {"error":{"code":"...","type":"...","message":"..."}}.
func parseErrorBody(b []byte) (code, desc string) {
	var body struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription string          `json:"error_description"`
		Message          string          `json:"message"`
	}
	if json.Unmarshal(b, &body) != nil {
		return "", ""
	}
	desc = body.ErrorDescription
	if desc == "" {
		desc = body.Message
	}
	if json.Unmarshal(body.Error, &code) == nil {
		return code, desc
	}
	var obj struct {
		Code    json.RawMessage `json:"code"`
		Type    string          `json:"type"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body.Error, &obj) != nil {
		return "", desc
	}
	if json.Unmarshal(obj.Code, &code) != nil || code == "" {
		code = obj.Type
	}
	if obj.Message != "" {
		desc = obj.Message
	}
	return code, desc
}

// secretForms returns each value as it may appear in an echoed request: as
// is, form-encoded and JSON-escaped.
func secretForms(values ...string) []string {
	out := make([]string, 0, 3*len(values))
	for _, v := range values {
		out = append(out, v, url.QueryEscape(v))
		if b, err := json.Marshal(v); err == nil {
			out = append(out, string(b[1:len(b)-1]))
		}
	}
	return out
}

// sanitize blanks out secrets, drops control characters and shortens s.
func sanitize(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxDescription {
		cut := maxDescription
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// retryAfter parses a Retry-After value (seconds or an HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}
