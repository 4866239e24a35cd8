package oauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Token is what a successful grant returns.
type Token struct {
	// AccessToken authenticates requests to the provider's API.
	AccessToken string
	// RefreshToken obtains the next AccessToken. After a refresh it is the
	// rotated token, or the one sent when the endpoint did not rotate it, so
	// it is always the one to store. After a login it may be empty if the
	// endpoint issued none.
	RefreshToken string
	// IDToken is the OpenID Connect ID token, if the endpoint sent one.
	IDToken string
	// Expiry is when AccessToken expires: now plus expires_in, else the
	// access token's own exp claim when it is a JWT, else zero (unknown).
	Expiry time.Time
	// Email is the account's address: the ID token's email claim, else
	// Claude's account.email_address.
	Email string
	// AccountID is the ChatGPT account (the chatgpt_account_id claim under
	// https://api.openai.com/auth in the ID token), else Claude's
	// account.uuid.
	AccountID string
}

// maxTokenResponse bounds the token endpoint's answer.
const maxTokenResponse = 1 << 20

// Refresh exchanges refreshToken for a new access token at ep.TokenURL.
// A nil client means http.DefaultClient; the client is used as given except
// that redirects are never followed (a token request is not sent anywhere
// but TokenURL). Failures are *Error values.
func Refresh(ctx context.Context, client *http.Client, ep Endpoints, refreshToken string, now time.Time) (Token, error) {
	const op = "refresh"
	if err := ep.Validate(); err != nil {
		return Token{}, &Error{Op: op, Permanent: true, Err: err}
	}
	if refreshToken == "" {
		return Token{}, &Error{Op: op, Permanent: true, Err: errors.New("no refresh token")}
	}
	req := tokenRequest{
		GrantType:    "refresh_token",
		RefreshToken: refreshToken,
		ClientID:     ep.ClientID,
		Scope:        ep.RefreshScope,
	}
	tok, err := post(ctx, client, ep, op, &req, now, secretForms(refreshToken))
	if err == nil && tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	return tok, err
}

// tokenRequest holds the parameters of both grants, in the order they are
// encoded; empty ones are left out.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Code         string `json:"code,omitempty"`
	State        string `json:"state,omitempty"`
	ClientID     string `json:"client_id"`
	RedirectURI  string `json:"redirect_uri,omitempty"`
	CodeVerifier string `json:"code_verifier,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// encode returns the body and its content type for format f.
func (r *tokenRequest) encode(f BodyFormat) ([]byte, string, error) {
	if f == JSONBody {
		b, err := json.Marshal(r)
		return b, "application/json", err
	}
	var b strings.Builder
	for _, kv := range [...][2]string{
		{"grant_type", r.GrantType},
		{"refresh_token", r.RefreshToken},
		{"code", r.Code},
		{"state", r.State},
		{"client_id", r.ClientID},
		{"redirect_uri", r.RedirectURI},
		{"code_verifier", r.CodeVerifier},
		{"scope", r.Scope},
	} {
		if kv[1] == "" && kv[0] != "client_id" && kv[0] != "grant_type" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[1]))
	}
	return []byte(b.String()), "application/x-www-form-urlencoded", nil
}

// post sends a grant and decodes the answer. secrets are the request's
// confidential values, blanked out of any error.
func post(ctx context.Context, client *http.Client, ep Endpoints, op string, tr *tokenRequest, now time.Time, secrets []string) (Token, error) {
	body, ctype, err := tr.encode(ep.Format)
	if err != nil {
		return Token{}, &Error{Op: op, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.TokenURL, bytes.NewReader(body))
	if err != nil {
		return Token{}, &Error{Op: op, Permanent: true, Err: errors.New("invalid token_url")}
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	resp, err := noRedirects(client).Do(req)
	if err != nil {
		return Token{}, &Error{Op: op, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return Token{}, &Error{Op: op, Status: resp.StatusCode, Err: errors.New("reading the answer: " + sanitize(err.Error(), secrets))}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := errorAnswer(op, resp, b, now, secrets)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			e.Err = errors.New("unexpected redirect from the token endpoint")
		}
		return Token{}, e
	}
	if len(b) > maxTokenResponse {
		return Token{}, &Error{Op: op, Status: resp.StatusCode, Err: errors.New("answer too large")}
	}
	tok, err := parseToken(b, now)
	if err != nil {
		return Token{}, &Error{Op: op, Status: resp.StatusCode, Err: err}
	}
	return tok, nil
}

// noRedirects returns a copy of c (or of http.DefaultClient) that hands
// any redirect back instead of re-sending the grant to another URL.
func noRedirects(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// tokenResponse is a token endpoint's success answer. Claude adds account
// and organization; Codex adds id_token.
type tokenResponse struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	IDToken      string      `json:"id_token"`
	ExpiresIn    json.Number `json:"expires_in"`
	Account      struct {
		UUID         string `json:"uuid"`
		EmailAddress string `json:"email_address"`
	} `json:"account"`
}

func parseToken(b []byte, now time.Time) (Token, error) {
	var r tokenResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return Token{}, errors.New("the answer is not a token response")
	}
	if r.AccessToken == "" {
		return Token{}, errors.New("the answer has no access_token")
	}
	t := Token{
		AccessToken:  r.AccessToken,
		RefreshToken: r.RefreshToken,
		IDToken:      r.IDToken,
		Email:        r.Account.EmailAddress,
		AccountID:    r.Account.UUID,
	}
	if secs, err := r.ExpiresIn.Float64(); err == nil && secs > 0 {
		t.Expiry = now.Add(time.Duration(min(secs, maxLifetime.Seconds()) * float64(time.Second)))
	} else if c, ok := jwtClaims(r.AccessToken); ok && c.Exp > 0 && c.Exp < maxUnix {
		t.Expiry = time.Unix(int64(c.Exp), 0)
	}
	if c, ok := jwtClaims(r.IDToken); ok {
		if c.Email != "" {
			t.Email = c.Email
		}
		if c.Auth.ChatGPTAccountID != "" {
			t.AccountID = c.Auth.ChatGPTAccountID
		}
	}
	return t, nil
}

// maxLifetime caps expires_in, maxUnix a JWT's exp, so absurd values
// cannot overflow a time.Duration.
const (
	maxLifetime = 10 * 365 * 24 * time.Hour
	maxUnix     = 1 << 40
)

// claims are the JWT claims llm_proxy reads.
type claims struct {
	Exp   float64 `json:"exp"`
	Email string  `json:"email"`
	Auth  struct {
		ChatGPTAccountID string `json:"chatgpt_account_id"`
	} `json:"https://api.openai.com/auth"`
}

// jwtClaims decodes a JWT's payload without verifying its signature: the
// token came over TLS from the token endpoint itself, which is what vouches
// for it. It reports false for anything that is not a JWT.
func jwtClaims(tok string) (claims, bool) {
	var c claims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, false
	}
	return c, json.Unmarshal(payload, &c) == nil
}

// ParseTime parses a record's RFC 3339 timestamp (expired, last_refresh),
// with or without fractional seconds. It reports false for an empty or
// malformed value.
func ParseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// FormatTime formats t the way records store expired and last_refresh:
// RFC 3339 in UTC, whole seconds.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}
