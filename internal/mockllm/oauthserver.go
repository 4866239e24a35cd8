package mockllm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// oauthPath reports whether path is one of the fake OAuth server's.
func oauthPath(path string) bool {
	switch path {
	case "/v1/oauth/token", "/oauth/token", "/v1/oauth/authorize", "/oauth/authorize":
		return true
	}
	return false
}

// oauthProvider is the provider whose endpoints live at path: Claude's
// under /v1/oauth/ (its token endpoint's real path), Codex's under /oauth/.
func oauthProvider(path string) string {
	if strings.HasPrefix(path, "/v1/") {
		return OAuthClaude
	}
	return OAuthCodex
}

// serveOAuth serves the token and authorize endpoints.
func (s *Server) serveOAuth(w http.ResponseWriter, r *http.Request) {
	provider := oauthProvider(r.URL.Path)
	if strings.HasSuffix(r.URL.Path, "/authorize") {
		s.oauthAuthorize(w, r, provider)
		return
	}
	s.oauthToken(w, r, provider)
}

// oauthAuthorize answers GET /v1/oauth/authorize (Claude) and
// /oauth/authorize (Codex) as if the user logged in and consented: a 302
// to redirect_uri with code and state. The account is login_hint's label,
// else the provider's first account by label.
func (s *Server) oauthAuthorize(w http.ResponseWriter, r *http.Request, provider string) {
	o := s.oauth
	s.record(r, "", "", "", false)
	if r.Method != http.MethodGet {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed")
		return
	}
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("response_type") != "code":
		err = mockError("response_type must be code")
	case q.Get("client_id") == "":
		err = mockError("client_id is required")
	case err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "":
		err = mockError("redirect_uri must be an absolute http(s) URL")
	case q.Get("code_challenge_method") != "S256":
		err = mockError("code_challenge_method must be S256")
	case len(q.Get("code_challenge")) != 43:
		err = mockError("code_challenge must be a base64url SHA-256 (43 characters)")
	case q.Get("state") == "":
		err = mockError("state is required")
	}
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	o.mu.Lock()
	label := o.loginAccount(provider, q.Get("login_hint"))
	if label == "" {
		o.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "no "+provider+" account to log in (login_hint names one)")
		return
	}
	code := newID("mock-code-", 40)
	o.pruneCodes()
	o.codes[code] = &authCode{
		label: label, clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
		challenge: q.Get("code_challenge"), state: q.Get("state"), expiry: o.clock().Add(OAuthCodeLifetime),
	}
	o.accounts[label].stats.Authorizations++
	o.mu.Unlock()

	rq := redirect.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	redirect.RawQuery = rq.Encode()
	w.Header().Set("Location", redirect.String())
	w.WriteHeader(http.StatusFound)
}

// loginAccount picks the account a login is for. The caller holds o.mu.
func (o *oauthServer) loginAccount(provider, hint string) string {
	if hint != "" {
		if a, ok := o.accounts[hint]; ok && a.Provider == provider {
			return hint
		}
		return ""
	}
	var labels []string
	for label, a := range o.accounts {
		if a.Provider == provider {
			labels = append(labels, label)
		}
	}
	if len(labels) == 0 {
		return ""
	}
	return slices.Min(labels)
}

// tokenParams are the parameters of a token request.
type tokenParams map[string]string

// parseTokenRequest decodes the body in the provider's format: a JSON
// object for Claude, a form for Codex.
func parseTokenRequest(r *http.Request, body, provider string) (tokenParams, bool) {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	ct = strings.TrimSpace(strings.ToLower(ct))
	p := tokenParams{}
	if provider == OAuthClaude {
		if ct != "application/json" {
			return nil, false
		}
		var m map[string]any
		if json.Unmarshal([]byte(body), &m) != nil {
			return nil, false
		}
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return nil, false
			}
			p[k] = s
		}
		return p, true
	}
	if ct != "application/x-www-form-urlencoded" {
		return nil, false
	}
	q, err := url.ParseQuery(body)
	if err != nil {
		return nil, false
	}
	for k, v := range q {
		p[k] = v[0]
	}
	return p, true
}

// oauthToken serves POST /v1/oauth/token (Claude, JSON) and /oauth/token
// (Codex, form), both grants.
func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request, provider string) {
	o := s.oauth
	body, err := readBody(r)
	if r.Method != http.MethodPost {
		s.record(r, body, "", "", false)
		w.Header().Set("Allow", http.MethodPost)
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed")
		return
	}
	p, ok := parseTokenRequest(r, body, provider)
	if err != nil || !ok {
		s.record(r, body, "", "", false)
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Invalid request format")
		return
	}

	o.mu.Lock()
	label := o.grantAccount(p, provider)
	f, faulted := o.takeFault(label)
	if faulted && label != "" {
		o.accounts[label].stats.Faults++
	}
	o.mu.Unlock()
	s.record(r, body, "", label, faulted)
	if label != "" {
		w.Header()["X-Mock-Credential"] = []string{label}
	}
	if faulted {
		writeOAuthFault(w, provider, f)
		return
	}

	switch p["grant_type"] {
	case "refresh_token":
		s.oauthRefresh(w, p, provider)
	case "authorization_code":
		s.oauthExchange(w, p, provider)
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token or authorization_code")
	}
}

// grantAccount is the label of the account a token request is about, ""
// if unknown. The caller holds o.mu.
func (o *oauthServer) grantAccount(p tokenParams, provider string) string {
	label := ""
	switch p["grant_type"] {
	case "refresh_token":
		if g := o.refresh[p["refresh_token"]]; g != nil {
			label = g.label
		}
	case "authorization_code":
		if c := o.codes[p["code"]]; c != nil {
			label = c.label
		}
	}
	if a := o.accounts[label]; a == nil || a.Provider != provider {
		return ""
	}
	return label
}

// oauthRefresh carries out a refresh_token grant: the token must be the
// latest of its chain and not revoked; it is rotated.
func (s *Server) oauthRefresh(w http.ResponseWriter, p tokenParams, provider string) {
	o := s.oauth
	if p["client_id"] == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "client_id is required")
		return
	}
	o.mu.Lock()
	label := o.grantAccount(p, provider)
	g := o.refresh[p["refresh_token"]]
	if label == "" || g.used || g.revoked {
		if label != "" {
			o.accounts[label].stats.Rejected++
		}
		o.mu.Unlock()
		writeDeadRefresh(w, provider, label == "", g != nil && g.revoked)
		return
	}
	g.used = true
	a := o.accounts[label]
	a.stats.Refreshes++
	body := o.issue(a, p["client_id"])
	o.mu.Unlock()
	writeTokenResponse(w, body)
}

// oauthExchange carries out an authorization_code grant: the code must be
// unused and fresh, and client_id, redirect_uri, the PKCE verifier (and for
// Claude the state) must match the authorize request.
func (s *Server) oauthExchange(w http.ResponseWriter, p tokenParams, provider string) {
	o := s.oauth
	o.mu.Lock()
	label := o.grantAccount(p, provider)
	c := o.codes[p["code"]]
	var why string
	switch {
	case label == "":
		why = "Invalid 'code' in request."
	case c.used:
		why = "Authorization code has already been used."
	case o.clock().After(c.expiry):
		why = "Authorization code has expired."
	case p["client_id"] != c.clientID:
		why = "client_id does not match the authorization request."
	case p["redirect_uri"] != c.redirectURI:
		why = "redirect_uri does not match the authorization request."
	case !verifies(p["code_verifier"], c.challenge):
		why = "Invalid code_verifier."
	case provider == OAuthClaude && p["state"] != c.state:
		why = "Invalid 'state' in request."
	}
	if why != "" {
		if label != "" {
			o.accounts[label].stats.Rejected++
		}
		o.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", why)
		return
	}
	c.used = true
	a := o.accounts[label]
	a.revoked = false
	a.stats.Logins++
	body := o.issue(a, p["client_id"])
	o.mu.Unlock()
	writeTokenResponse(w, body)
}

// verifies reports whether verifier's S256 challenge is challenge.
func verifies(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return hmac.Equal([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge))
}

// issue creates a new access and refresh token for a and returns the
// provider's token response (clientID is the ID token's audience). The caller holds o.mu.
func (o *oauthServer) issue(a *oauthAccount, clientID string) any {
	now := o.clock()
	expiry := now.Add(a.Lifetime)
	var access, refresh string
	if a.Provider == OAuthCodex {
		access = o.jwt(map[string]any{
			"iss": "https://auth.openai.com", "aud": []string{"https://api.openai.com/v1"},
			"iat": now.Unix(), "exp": expiry.Unix(), "jti": newID("", 16),
			"https://api.openai.com/auth": map[string]any{"chatgpt_account_id": a.AccountID, "chatgpt_plan_type": "pro"},
		})
		refresh = newID("rt_", 48)
	} else {
		access = newID("sk-ant-oat01-", 80)
		refresh = newID("sk-ant-ort01-", 80)
	}
	o.pruneAccess(now)
	o.access[access] = &accessGrant{label: a.label, expiry: expiry}
	o.refresh[refresh] = &refreshGrant{label: a.label}
	a.latest = OAuthTokens{AccessToken: access, RefreshToken: refresh, Expiry: expiry}
	lifetime := int64(a.Lifetime / time.Second)
	if a.Provider == OAuthCodex {
		return map[string]any{
			"id_token": o.jwt(map[string]any{
				"iss": "https://auth.openai.com", "aud": clientID, "sub": "user-" + a.AccountID,
				"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "email": a.Email, "email_verified": true,
				"https://api.openai.com/auth": map[string]any{"chatgpt_account_id": a.AccountID, "chatgpt_plan_type": "pro"},
			}),
			"access_token": access, "refresh_token": refresh, "expires_in": lifetime,
			"token_type": "Bearer", "scope": "openid profile email offline_access",
		}
	}
	return map[string]any{
		"token_type": "Bearer", "access_token": access, "expires_in": lifetime, "refresh_token": refresh,
		"scope":        "user:inference user:profile user:sessions:claude_code",
		"organization": map[string]any{"uuid": "org-" + a.AccountID, "name": "Mock organization"},
		"account":      map[string]any{"uuid": a.AccountID, "email_address": a.Email},
	}
}

// pruneAccess forgets access tokens expired for a day, so a long run does
// not grow the table. The caller holds o.mu.
func (o *oauthServer) pruneAccess(now time.Time) {
	if len(o.access) < 1024 {
		return
	}
	for tok, g := range o.access {
		if now.Sub(g.expiry) > 24*time.Hour {
			delete(o.access, tok)
		}
	}
}

// pruneCodes forgets used and expired authorization codes once there are
// many. The caller holds o.mu.
func (o *oauthServer) pruneCodes() {
	if len(o.codes) < 1024 {
		return
	}
	now := o.clock()
	for code, c := range o.codes {
		if c.used || now.After(c.expiry) {
			delete(o.codes, code)
		}
	}
}

// jwt signs claims as an HS256 JWT (clients decode without verifying).
func (o *oauthServer) jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, o.key)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// writeTokenResponse sends a successful grant's answer, uncacheable as
// RFC 6749 requires.
func writeTokenResponse(w http.ResponseWriter, body any) {
	w.Header().Set("Cache-Control", "no-store")
	writeControlJSON(w, http.StatusOK, body)
}

// writeOAuthError sends RFC 6749's error shape:
// {"error":"invalid_grant","error_description":"..."}.
func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeControlJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// writeDeadRefresh answers a refresh token that cannot be used, as each
// provider does. Claude: 400 invalid_grant "Refresh token not found or
// invalid" for every case. Codex: 401 with OpenAI's error object, code
// refresh_token_reused for a rotated-away token and
// refresh_token_invalidated for a revoked one; 400 invalid_grant for a
// token it never issued.
func writeDeadRefresh(w http.ResponseWriter, provider string, unknown, revoked bool) {
	if provider == OAuthClaude {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "Refresh token not found or invalid")
		return
	}
	if unknown {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
		return
	}
	code, msg := "refresh_token_reused", "Your refresh token has already been used to generate a new access token. Please try signing in again."
	if revoked {
		code, msg = "refresh_token_invalidated", "Your refresh token has been invalidated. Please try signing in again."
	}
	writeControlJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "param": nil, "code": code,
	}})
}

// writeOAuthFault answers with an injected fault: Claude's token endpoint
// in Anthropic's error shape, Codex's in OpenAI's, unless f.Body is set.
func writeOAuthFault(w http.ResponseWriter, provider string, f OAuthFault) {
	if f.Refuse {
		refuse(w)
		return
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((f.RetryAfter+time.Second-1)/time.Second), 10))
	}
	status := f.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	body := []byte(f.Body)
	if f.Body == "" {
		fam := famOpenAI
		if provider == OAuthClaude {
			fam = famAnthropic
		}
		body = appendError(nil, fam, status, defaultMessage(fam, status))
	}
	w.Header()["Content-Type"] = ctJSON
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
