package mockllm

import (
	"crypto/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Providers of OAuthAccount.
const (
	OAuthClaude = "claude"
	OAuthCodex  = "codex"
)

// Default lifetimes of the access tokens the fake OAuth server issues.
const (
	DefaultClaudeTokenLifetime = 8 * time.Hour
	DefaultCodexTokenLifetime  = 10 * 24 * time.Hour
	// OAuthCodeLifetime is how long an authorization code can be exchanged.
	OAuthCodeLifetime = 10 * time.Minute
)

// OAuthAccount is a subscription account of the mock's fake OAuth server
// (Options.OAuthAccounts, by label). The access tokens issued for it are
// accepted by the LLM endpoints as that label's credential until they
// expire.
type OAuthAccount struct {
	// Provider is OAuthClaude or OAuthCodex: which token endpoint serves the
	// account and the shape of its answers.
	Provider string `json:"provider"`
	// RefreshToken is the account's first refresh token.
	// Default: "mock-rt-<label>".
	RefreshToken string `json:"refresh_token,omitempty"`
	// AccessToken is the account's first access token, valid until
	// AccessExpiry. Default: "mock-at-<label>".
	AccessToken string `json:"access_token,omitempty"`
	// AccessExpiry is when AccessToken expires. Default: the mock's start
	// time plus Lifetime.
	AccessExpiry time.Time `json:"access_expiry,omitzero"`
	// Lifetime of the access tokens the token endpoint issues (expires_in).
	// Default: 8h for claude, 10 days for codex.
	Lifetime time.Duration `json:"lifetime,omitempty"`
	// AccountID is Claude's account.uuid, Codex's chatgpt_account_id.
	// Default: "acct-<label>".
	AccountID string `json:"account_id,omitempty"`
	// Email is the account's address. Default: "<label>@example.com".
	Email string `json:"email,omitempty"`
}

// OAuthStats are the fake OAuth server's counters for one account.
type OAuthStats struct {
	// Refreshes counts successful refresh_token grants.
	Refreshes int64 `json:"refreshes"`
	// Logins counts successful authorization_code grants.
	Logins int64 `json:"logins"`
	// Authorizations counts authorize requests answered with a code.
	Authorizations int64 `json:"authorizations"`
	// Rejected counts grants refused: a reused, revoked or unknown refresh
	// token of the account, a bad code, verifier or redirect_uri.
	Rejected int64 `json:"rejected"`
	// Faults counts token requests answered by an injected OAuthFault.
	Faults int64 `json:"faults"`
	// ExpiredAccess counts LLM requests refused for an expired access token.
	ExpiredAccess int64 `json:"expired_access"`
}

// OAuthTokens are the latest tokens issued for an account.
type OAuthTokens struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`
	// Revoked reports that RevokeOAuth killed the account's refresh tokens
	// and no login has happened since.
	Revoked bool `json:"revoked"`
}

// OAuthFault is an injected failure of the token endpoints.
type OAuthFault struct {
	// Status answers with this status (429, 500, 503...) in the provider's
	// error shape, or with Body.
	Status int `json:"status,omitempty"`
	// RetryAfter, when positive, is sent as Retry-After (whole seconds).
	RetryAfter time.Duration `json:"-"`
	// Body replaces the default error body.
	Body string `json:"body,omitempty"`
	// Refuse closes the connection without an answer.
	Refuse bool `json:"refuse,omitempty"`
	// Times limits the fault to the next Times token requests; 0: forever.
	Times int `json:"times,omitempty"`
}

// oauthServer is the fake OAuth server's state.
type oauthServer struct {
	now    func() time.Time
	offset atomic.Int64 // AdvanceClock
	key    []byte       // HS256 key of the Codex JWTs

	mu       sync.RWMutex
	accounts map[string]*oauthAccount
	refresh  map[string]*refreshGrant // refresh token →
	access   map[string]*accessGrant  // access token →
	codes    map[string]*authCode     // authorization code →
	faults   map[string]*oauthFaultEntry
}

type oauthAccount struct {
	label string
	OAuthAccount
	latest  OAuthTokens
	revoked bool
	stats   OAuthStats
}

type refreshGrant struct {
	label   string
	used    bool
	revoked bool
}

type accessGrant struct {
	label  string
	expiry time.Time
}

type authCode struct {
	label, clientID, redirectURI, challenge, state string
	expiry                                         time.Time
	used                                           bool
}

type oauthFaultEntry struct {
	f    OAuthFault
	left int // remaining uses when f.Times > 0
}

func newOAuthServer(accounts map[string]OAuthAccount, now func() time.Time) *oauthServer {
	if now == nil {
		now = time.Now
	}
	o := &oauthServer{
		now:      now,
		key:      make([]byte, 32),
		accounts: make(map[string]*oauthAccount, len(accounts)),
		refresh:  make(map[string]*refreshGrant),
		access:   make(map[string]*accessGrant),
		codes:    make(map[string]*authCode),
		faults:   make(map[string]*oauthFaultEntry),
	}
	_, _ = rand.Read(o.key)
	start := o.clock()
	for label, a := range accounts {
		a = withDefaults(label, a)
		if a.AccessExpiry.IsZero() {
			a.AccessExpiry = start.Add(a.Lifetime)
		}
		acct := &oauthAccount{label: label, OAuthAccount: a}
		acct.latest = OAuthTokens{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, Expiry: a.AccessExpiry}
		o.accounts[label] = acct
		o.refresh[a.RefreshToken] = &refreshGrant{label: label}
		o.access[a.AccessToken] = &accessGrant{label: label, expiry: a.AccessExpiry}
	}
	return o
}

func withDefaults(label string, a OAuthAccount) OAuthAccount {
	if a.Provider != OAuthCodex {
		a.Provider = OAuthClaude
	}
	if a.RefreshToken == "" {
		a.RefreshToken = "mock-rt-" + label
	}
	if a.AccessToken == "" {
		a.AccessToken = "mock-at-" + label
	}
	if a.Lifetime <= 0 {
		a.Lifetime = DefaultClaudeTokenLifetime
		if a.Provider == OAuthCodex {
			a.Lifetime = DefaultCodexTokenLifetime
		}
	}
	if a.AccountID == "" {
		a.AccountID = "acct-" + label
	}
	if a.Email == "" {
		a.Email = label + "@example.com"
	}
	return a
}

// clock is the fake OAuth server's time: Options.Now plus AdvanceClock.
func (o *oauthServer) clock() time.Time {
	return o.now().Add(time.Duration(o.offset.Load()))
}

// AdvanceClock moves the fake OAuth server's clock (token and code expiry)
// forward by d, on top of Options.Now. It does nothing without
// OAuthAccounts.
func (s *Server) AdvanceClock(d time.Duration) {
	if s.oauth != nil {
		s.oauth.offset.Add(int64(d))
	}
}

// OAuthNow is the fake OAuth server's current time.
func (s *Server) OAuthNow() time.Time {
	if s.oauth == nil {
		return time.Now()
	}
	return s.oauth.clock()
}

// OAuthStats returns the fake OAuth server's counters by account label.
func (s *Server) OAuthStats() map[string]OAuthStats {
	out := make(map[string]OAuthStats)
	if s.oauth == nil {
		return out
	}
	s.oauth.mu.RLock()
	defer s.oauth.mu.RUnlock()
	for label, a := range s.oauth.accounts {
		out[label] = a.stats
	}
	return out
}

// OAuthTokens returns the latest tokens issued for the account label.
func (s *Server) OAuthTokens(label string) (OAuthTokens, bool) {
	if s.oauth == nil {
		return OAuthTokens{}, false
	}
	s.oauth.mu.RLock()
	defer s.oauth.mu.RUnlock()
	a, ok := s.oauth.accounts[label]
	if !ok {
		return OAuthTokens{}, false
	}
	t := a.latest
	t.Revoked = a.revoked
	return t, true
}

// RevokeOAuth kills every refresh token issued so far for the account
// label: refreshing with any of them is refused as a dead grant from then
// on. Access tokens stay valid until they expire; a new login issues
// working tokens again. It reports whether the account exists.
func (s *Server) RevokeOAuth(label string) bool {
	if s.oauth == nil {
		return false
	}
	o := s.oauth
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.accounts[label]
	if !ok {
		return false
	}
	a.revoked = true
	for _, g := range o.refresh {
		if g.label == label {
			g.revoked = true
		}
	}
	return true
}

// SetOAuthFault injects f into the token requests of the account label (or
// of every account with AnyKey, including requests with unknown tokens),
// replacing any fault set for it before.
func (s *Server) SetOAuthFault(account string, f OAuthFault) {
	if s.oauth == nil {
		return
	}
	s.oauth.mu.Lock()
	s.oauth.faults[account] = &oauthFaultEntry{f: f, left: f.Times}
	s.oauth.mu.Unlock()
}

// ClearOAuthFaults removes the token-endpoint faults of account, or all of
// them when account is "".
func (s *Server) ClearOAuthFaults(account string) {
	if s.oauth == nil {
		return
	}
	s.oauth.mu.Lock()
	if account == "" {
		clear(s.oauth.faults)
	} else {
		delete(s.oauth.faults, account)
	}
	s.oauth.mu.Unlock()
}

// OAuthFaults returns the token-endpoint faults by account, Times being the
// remaining uses of limited ones (used-up faults are gone).
func (s *Server) OAuthFaults() map[string]OAuthFault {
	out := make(map[string]OAuthFault)
	if s.oauth == nil {
		return out
	}
	s.oauth.mu.RLock()
	defer s.oauth.mu.RUnlock()
	for k, e := range s.oauth.faults {
		f := e.f
		if f.Times > 0 {
			f.Times = e.left
		}
		out[k] = f
	}
	return out
}

// resetStats zeroes the counters (Server.Reset).
func (o *oauthServer) resetStats() {
	o.mu.Lock()
	for _, a := range o.accounts {
		a.stats = OAuthStats{}
	}
	o.mu.Unlock()
}

// takeFault consumes one use of the fault for label, else of AnyKey.
// The caller holds o.mu.
func (o *oauthServer) takeFault(label string) (OAuthFault, bool) {
	for _, k := range [...]string{label, AnyKey} {
		e, ok := o.faults[k]
		if !ok || k == "" {
			continue
		}
		if e.f.Times > 0 {
			if e.left--; e.left <= 0 {
				delete(o.faults, k) // used up
			}
		}
		return e.f, true
	}
	return OAuthFault{}, false
}

// oauthUse is an access token of the fake OAuth server seen on an LLM
// request.
type oauthUse struct {
	label, provider string
	expired         bool
}

// oauthAccess looks key up among the access tokens the fake OAuth server
// issued.
func (s *Server) oauthAccess(key string) (oauthUse, bool) {
	if s.oauth == nil {
		return oauthUse{}, false
	}
	o := s.oauth
	o.mu.RLock()
	defer o.mu.RUnlock()
	g := o.access[key]
	if g == nil {
		return oauthUse{}, false
	}
	return oauthUse{label: g.label, provider: o.accounts[g.label].Provider, expired: !o.clock().Before(g.expiry)}, true
}

// OAuth refusals of the LLM endpoints, in the providers' words.
const (
	claudeExpired    = "OAuth token has expired. Please obtain a new token or refresh your existing token."
	claudeNoOAuth    = "OAuth authentication is currently not supported."
	claudeOAuthBeta  = "oauth-2025-04-20"
	codexExpiredBody = `{"error":{"message":"Provided authentication token is expired. Please try signing in again.","type":"invalid_request_error","param":null,"code":"token_expired"}}`
)

// refuseOAuth answers 401 when an OAuth access token cannot be used: it
// has expired (Anthropic: authentication_error "OAuth token has expired";
// OpenAI/Codex: code token_expired), or a Claude token reaches an
// Anthropic endpoint without Authorization: Bearer and the
// anthropic-beta oauth-2025-04-20 flag (Anthropic: "OAuth authentication is
// currently not supported."). It reports whether it answered.
func (c *call) refuseOAuth(u oauthUse, key, body string) bool {
	var msg string
	switch {
	case u.expired:
		msg = claudeExpired
		c.s.oauth.mu.Lock()
		c.s.oauth.accounts[u.label].stats.ExpiredAccess++
		c.s.oauth.mu.Unlock()
	case u.provider == OAuthClaude && c.fam == famAnthropic && c.r.Header.Get("X-Api-Key") != "":
		msg = invalidKeyMessage(famAnthropic)
	case u.provider == OAuthClaude && c.fam == famAnthropic && !hasBeta(c.r.Header, claudeOAuthBeta):
		msg = claudeNoOAuth
	default:
		return false
	}
	c.cred = c.s.cred(u.label)
	c.cred.requests.Add(1)
	c.rec = c.s.record(c.r, body, key, u.label, false)
	if u.expired && c.fam == famOpenAI {
		c.writeBody(http.StatusUnauthorized, []byte(codexExpiredBody))
		return true
	}
	c.writeError(http.StatusUnauthorized, msg)
	return true
}

// hasBeta reports whether the anthropic-beta headers list flag.
func hasBeta(h http.Header, flag string) bool {
	for _, v := range h.Values("Anthropic-Beta") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(f) == flag {
				return true
			}
		}
	}
	return false
}
