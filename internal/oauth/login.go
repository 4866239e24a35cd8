package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// LoginTTL is how long a started login can be completed. Codes and pending
// logins are short-lived at the providers too.
const LoginTTL = 10 * time.Minute

// Login is an authorization-code login with PKCE (RFC 7636, S256) in
// progress: start it with NewLogin, send the user to URL, and complete it
// with Exchange once they paste back where the provider redirected them.
//
// A Login is plain data so it can wait between two HTTP calls, or in
// storage, as JSON. CodeVerifier is a secret until the login completes:
// keep a stored Login where the credentials are kept, and drop it once
// Exchange succeeds or Expired reports true.
type Login struct {
	// Endpoints are the provider's settings the login was started with.
	Endpoints Endpoints `json:"endpoints"`
	// State is the random value the redirect must carry back (CSRF).
	State string `json:"state"`
	// CodeVerifier is the PKCE secret whose S256 challenge is in URL.
	CodeVerifier string `json:"code_verifier"`
	// Created is when the login started.
	Created time.Time `json:"created"`
}

// NewLogin starts a login: a fresh 43-character PKCE verifier and a random
// state, both from crypto/rand.
func NewLogin(ep Endpoints, now time.Time) (*Login, error) {
	if err := ep.validateLogin(); err != nil {
		return nil, errors.New("oauth login: " + err.Error())
	}
	verifier, err := randomString(32)
	if err != nil {
		return nil, err
	}
	state, err := randomString(32)
	if err != nil {
		return nil, err
	}
	return &Login{Endpoints: ep, State: state, CodeVerifier: verifier, Created: now}, nil
}

// randomString returns n random bytes, base64url-encoded without padding
// (32 bytes give RFC 7636's minimum verifier length of 43 characters).
func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", errors.New("oauth login: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CodeChallenge is the S256 challenge of the verifier:
// base64url(sha256(CodeVerifier)) without padding.
func (l *Login) CodeChallenge() string {
	sum := sha256.Sum256([]byte(l.CodeVerifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// URL is the authorize page to open in a browser: the provider's
// AuthorizeURL with response_type=code, client_id, redirect_uri, scope,
// code_challenge, code_challenge_method=S256, state and the provider's
// extra parameters.
func (l *Login) URL() string {
	u, err := url.Parse(l.Endpoints.AuthorizeURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	for k, v := range l.Endpoints.AuthorizeParams {
		q.Set(k, v)
	}
	q.Set("response_type", "code")
	q.Set("client_id", l.Endpoints.ClientID)
	q.Set("redirect_uri", l.Endpoints.RedirectURI)
	if l.Endpoints.Scope != "" {
		q.Set("scope", l.Endpoints.Scope)
	}
	q.Set("code_challenge", l.CodeChallenge())
	q.Set("code_challenge_method", "S256")
	q.Set("state", l.State)
	u.RawQuery = q.Encode()
	return u.String()
}

// Expired reports whether the login is older than LoginTTL.
func (l *Login) Expired(now time.Time) bool {
	return now.Sub(l.Created) > LoginTTL
}

// Exchange completes the login with what the user pasted back and returns
// the tokens. pasted may be the whole redirect URL
// (http://localhost:54545/callback?code=...&state=...), its query string,
// Claude's "code#state", or the bare code; see ParseCode. When a state comes
// with the code it must be this login's; a code without a state is accepted
// because PKCE already ties the code to this login: the token endpoint
// refuses a code issued for another login's challenge.
func (l *Login) Exchange(ctx context.Context, client *http.Client, pasted string, now time.Time) (Token, error) {
	const op = "code exchange"
	if l.Expired(now) {
		return Token{}, &Error{Op: op, Permanent: true, Err: errors.New("the login expired; start a new one")}
	}
	code, state, err := ParseCode(pasted)
	if err != nil {
		return Token{}, &Error{Op: op, Permanent: true, Err: err}
	}
	if state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(l.State)) != 1 {
		return Token{}, &Error{Op: op, Permanent: true, Err: errors.New("the state in the pasted answer is not this login's; paste the answer to the URL this login printed")}
	}
	if err := l.Endpoints.validateLogin(); err != nil {
		return Token{}, &Error{Op: op, Permanent: true, Err: err}
	}
	req := tokenRequest{
		GrantType:    "authorization_code",
		Code:         code,
		ClientID:     l.Endpoints.ClientID,
		RedirectURI:  l.Endpoints.RedirectURI,
		CodeVerifier: l.CodeVerifier,
	}
	if l.Endpoints.StateInExchange {
		req.State = l.State
	}
	return post(ctx, client, l.Endpoints, op, &req, now, secretForms(code, l.CodeVerifier))
}

// maxPasted bounds what ParseCode accepts.
const maxPasted = 8 << 10

// ParseCode extracts the authorization code, and the state if present,
// from what a user pasted after logging in:
//
//	http://localhost:54545/callback?code=CODE&state=STATE   the redirect URL (scheme optional)
//	code=CODE&state=STATE                                   its query string
//	CODE#STATE                                              Claude's code page
//	CODE                                                    the bare code
//
// A redirect carrying error=... (the user declined) is reported as an error
// naming the provider's error code. The error never contains the code.
func ParseCode(pasted string) (code, state string, err error) {
	s := strings.TrimSpace(pasted)
	if s == "" {
		return "", "", errors.New("nothing pasted: paste the URL the browser was sent to, or the code")
	}
	if len(s) > maxPasted {
		return "", "", errors.New("the pasted text is too long to be a redirect URL or a code")
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return fromQuery(s[i+1:])
	}
	if strings.Contains(s, "://") {
		return "", "", errors.New("the pasted URL has no code in it")
	}
	if strings.HasPrefix(s, "code=") || strings.HasPrefix(s, "error=") || strings.Contains(s, "&code=") {
		return fromQuery(s)
	}
	code, state, _ = strings.Cut(s, "#")
	if !plausible(code) || (state != "" && !plausible(state)) {
		return "", "", errors.New("the pasted text is not a code: expected a redirect URL, CODE#STATE or the code alone")
	}
	return code, state, nil
}

func fromQuery(raw string) (code, state string, err error) {
	raw, _, _ = strings.Cut(raw, "#")
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", "", errors.New("the pasted URL's query is malformed")
	}
	if e := q.Get("error"); e != "" {
		msg := "the provider refused the login: " + sanitize(e, nil)
		if d := q.Get("error_description"); d != "" {
			msg += ": " + sanitize(d, nil)
		}
		return "", "", errors.New(msg)
	}
	code, state = q.Get("code"), q.Get("state")
	if code == "" {
		return "", "", errors.New("the pasted URL has no code in it")
	}
	if !plausible(code) {
		return "", "", errors.New("the code in the pasted URL is malformed")
	}
	return code, state, nil
}

// plausible reports whether s can be a code or state: non-empty, printable
// ASCII without spaces or URL delimiters.
func plausible(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '&' || c == '?' || c == '#' {
			return false
		}
	}
	return true
}
