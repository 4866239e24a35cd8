package pool

// Logins of subscription credentials (SPEC section 12): the authorization-
// code logins a pool keeps waiting for their code between the two admin API
// calls that start and complete them, and the record a completed login
// writes, which the `caddy llm-proxy login` command writes too.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// Limits of logins.
const (
	// MaxPendingLogins bounds the logins a pool keeps waiting for their
	// code; starting one more drops the oldest.
	MaxPendingLogins = 16
	// maxLoginFields bounds the extra record fields a login carries.
	maxLoginFields = 64 << 10
	// loginTimeout bounds the code exchange and the write of the record
	// once a login completes. They run to the end even when the caller
	// goes away: the provider takes the code only once.
	loginTimeout = time.Minute
)

// LoginErrorKind says why a login could not start or complete.
type LoginErrorKind int

// Kinds of LoginError.
const (
	// LoginInvalid: an unknown provider or one without an OAuth login, a
	// bad credential ID or record field, nothing like a code pasted, a
	// state of another login, or a code the provider refused.
	LoginInvalid LoginErrorKind = iota + 1
	// LoginNotFound: no such pending login in this pool (unknown, expired,
	// cancelled or already used).
	LoginNotFound
	// LoginConflict: the credential cannot take the login: it is declared
	// inline, holds an API key, or is another provider's.
	LoginConflict
	// LoginUnavailable: the token endpoint could not be reached or failed.
	LoginUnavailable
	// LoginStorage: storage could not be read or written.
	LoginStorage
)

// LoginError is a login that could not start or complete. Its message
// never holds a code, verifier or token.
type LoginError struct {
	Kind LoginErrorKind
	Err  error
}

func (e *LoginError) Error() string { return e.Err.Error() }

func (e *LoginError) Unwrap() error { return e.Err }

func loginErr(kind LoginErrorKind, format string, args ...any) error {
	return &LoginError{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// LoginOptions start a login.
type LoginOptions struct {
	// Provider is the provider to log in with: one the pool has OAuth
	// settings for (claude, codex).
	Provider string
	// AuthID names the credential the login writes. Empty: it is named
	// after the account (see LoginAuthID).
	AuthID string
	// Fields are more fields of the record, as a JSON object: any record
	// field except the provider and what the login itself writes (see
	// LoginRecord), e.g. base_url, proxy_url, label, priority. On a
	// re-login they replace the record's own. proxy_url is also used for
	// the code exchange. Nil for none.
	Fields []byte
}

// PendingLogin is a started login as shown to whoever started it. It
// holds nothing secret: the PKCE verifier stays in the pool.
type PendingLogin struct {
	// ID completes or cancels the login. It is random and unguessable.
	ID string
	// Provider is the provider logged in with.
	Provider string
	// AuthID is the credential ID asked for, "" when it is named after the
	// account.
	AuthID string
	// URL is the authorize page to open in a browser.
	URL string
	// Expires is when the login can no longer be completed.
	Expires time.Time
}

// pendingLogin is a started login with its secrets.
type pendingLogin struct {
	PendingLogin
	fields []byte
	login  *oauth.Login
}

// loginTable holds a pool's pending logins, oldest first. The zero value
// is empty and ready.
type loginTable struct {
	mu      sync.Mutex
	pending []*pendingLogin
}

// add keeps l, dropping expired logins and, beyond MaxPendingLogins, the
// oldest.
func (t *loginTable) add(l *pendingLogin, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(now)
	if len(t.pending) >= MaxPendingLogins {
		t.pending = slices.Delete(t.pending, 0, len(t.pending)-MaxPendingLogins+1)
	}
	t.pending = append(t.pending, l)
}

// prune drops expired logins. Must hold t.mu.
func (t *loginTable) prune(now time.Time) {
	t.pending = slices.DeleteFunc(t.pending, func(l *pendingLogin) bool { return l.login.Expired(now) })
}

// find returns the pending login id, without removing it.
func (t *loginTable) find(id string, now time.Time) (*pendingLogin, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(now)
	for _, l := range t.pending {
		if subtle.ConstantTimeCompare([]byte(l.ID), []byte(id)) == 1 {
			return l, true
		}
	}
	return nil, false
}

// take removes l and reports whether it was still pending: of two callers
// completing one login, only one takes it.
func (t *loginTable) take(l *pendingLogin) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.Index(t.pending, l)
	if i < 0 {
		return false
	}
	t.pending = slices.Delete(t.pending, i, i+1)
	return true
}

// StartLogin starts a login with opts.Provider, using the OAuth settings
// of the pool's active config, and keeps it until it is completed or
// cancelled, it expires (after oauth.LoginTTL), or MaxPendingLogins newer
// logins push it out. A given AuthID and Fields are checked now, so a
// mistake shows before the user logs in.
func (p *Pool) StartLogin(ctx context.Context, opts LoginOptions, now time.Time) (PendingLogin, error) {
	ep, _, err := p.loginConfig(opts.Provider)
	if err != nil {
		return PendingLogin{}, err
	}
	fields, err := loginFields(opts.Fields)
	if err != nil {
		return PendingLogin{}, err
	}
	// The fields must make a valid record once the tokens are in.
	probe := LoginAuthID(opts.Provider, oauth.Token{}, now)
	if opts.AuthID != "" {
		probe = opts.AuthID
	}
	if _, err := LoginRecord(probe, opts.Provider, oauth.Token{AccessToken: "probe"}, nil, opts.Fields, now); err != nil {
		return PendingLogin{}, err
	}
	if opts.AuthID != "" {
		existing, err := p.loginTarget(ctx, opts.AuthID)
		if err != nil {
			return PendingLogin{}, err
		}
		if err := CheckRelogin(opts.AuthID, opts.Provider, existing); err != nil {
			return PendingLogin{}, err
		}
	}
	login, err := oauth.NewLogin(ep, now)
	if err != nil {
		return PendingLogin{}, loginErr(LoginInvalid, "provider %s: %v", opts.Provider, err)
	}
	id, err := newLoginID()
	if err != nil {
		return PendingLogin{}, err
	}
	l := &pendingLogin{
		PendingLogin: PendingLogin{
			ID:       id,
			Provider: opts.Provider,
			AuthID:   opts.AuthID,
			URL:      login.URL(),
			Expires:  login.Created.Add(oauth.LoginTTL),
		},
		fields: fields,
		login:  login,
	}
	p.logins.add(l, now)
	return l.PendingLogin, nil
}

// CompleteLogin completes the pending login id with what the user pasted
// (the redirect URL, its query, Claude's CODE#STATE or the bare code; see
// oauth.ParseCode): it exchanges the code at the provider's token
// endpoint, through the record's proxy_url when it has one, writes the
// record (see LoginRecord) to the active config's storage and puts it in
// the pool at once, its cooldowns cleared. It returns the record and
// whether it replaced one.
//
// A login is used once: any completion takes it, except one whose pasted
// text holds no code at all, which leaves it pending for another try. The
// exchange and the write are not cut short when ctx is cancelled, since
// the provider takes a code only once.
func (p *Pool) CompleteLogin(ctx context.Context, id, pasted string, now time.Time) (rec *auth.Auth, replaced bool, err error) {
	l, ok := p.logins.find(id, now)
	if !ok {
		return nil, false, loginErr(LoginNotFound, "pool %q has no pending login %q (logins expire after %v and are used once); start a new one", p.name, id, oauth.LoginTTL)
	}
	if _, _, err := oauth.ParseCode(pasted); err != nil {
		return nil, false, &LoginError{Kind: LoginInvalid, Err: err}
	}
	if !p.logins.take(l) {
		return nil, false, loginErr(LoginNotFound, "login %q of pool %q was used or cancelled meanwhile; start a new one", id, p.name)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loginTimeout)
	defer cancel()

	_, client, err := p.loginConfig(l.Provider)
	if err != nil {
		return nil, false, err
	}
	var existing []byte
	if l.AuthID != "" {
		if existing, err = p.loginTarget(ctx, l.AuthID); err != nil {
			return nil, false, err
		}
	}
	tok, err := ExchangeLogin(ctx, l.login, client(&auth.Auth{Fields: auth.Fields{ProxyURL: LoginProxyURL(existing, l.fields)}}), pasted, now)
	if err != nil {
		return nil, false, err
	}
	authID := l.AuthID
	if authID == "" {
		authID = LoginAuthID(l.Provider, tok, now)
		if existing, err = p.loginTarget(ctx, authID); err != nil {
			return nil, false, err
		}
	}
	if rec, err = LoginRecord(authID, l.Provider, tok, existing, l.fields, now); err != nil {
		return nil, false, err
	}
	if err := p.Save(ctx, rec); err != nil {
		return nil, false, loginErr(LoginStorage, "writing credential %q: %v", authID, err)
	}
	if c, ok := p.Get(authID); ok {
		// The cooldowns of the old tokens (a 401 cools for all models)
		// say nothing about the new ones.
		c.Reset()
	}
	return rec, existing != nil, nil
}

// CancelLogin drops the pending login id and reports whether there was
// one.
func (p *Pool) CancelLogin(id string, now time.Time) bool {
	l, ok := p.logins.find(id, now)
	return ok && p.logins.take(l)
}

// ExchangeLogin exchanges the code the user pasted for tokens, with errors
// as LoginErrors: a code or state the provider or the login refuses is
// LoginInvalid, a token endpoint that cannot be reached or fails is
// LoginUnavailable.
func ExchangeLogin(ctx context.Context, l *oauth.Login, client *http.Client, pasted string, now time.Time) (oauth.Token, error) {
	tok, err := l.Exchange(ctx, client, pasted, now)
	if err == nil {
		return tok, nil
	}
	if oauth.IsPermanent(err) {
		return oauth.Token{}, &LoginError{Kind: LoginInvalid, Err: err}
	}
	return oauth.Token{}, &LoginError{Kind: LoginUnavailable, Err: err}
}

// loginConfig returns the active config's OAuth endpoints for provider
// and the client for its token endpoint.
func (p *Pool) loginConfig(provider string) (oauth.Endpoints, func(*auth.Auth) *http.Client, error) {
	a, err := p.activeConfig()
	if err != nil {
		return oauth.Endpoints{}, nil, &LoginError{Kind: LoginNotFound, Err: err}
	}
	s, ok := a.cfg.OAuth[provider]
	if !ok {
		var names []string
		for name := range a.cfg.OAuth {
			names = append(names, name)
		}
		sort.Strings(names)
		return oauth.Endpoints{}, nil, loginErr(LoginInvalid, "provider %q has no OAuth login; expected one of %s", provider, strings.Join(names, ", "))
	}
	client := a.cfg.Client
	if client == nil {
		client = func(*auth.Auth) *http.Client { return http.DefaultClient }
	}
	return s.Endpoints, client, nil
}

// loginTarget returns the JSON document stored under id, nil when there is
// none. A credential declared inline is refused.
func (p *Pool) loginTarget(ctx context.Context, id string) ([]byte, error) {
	if err := auth.ValidateID(id); err != nil {
		return nil, &LoginError{Kind: LoginInvalid, Err: err}
	}
	a, err := p.writable(id)
	if err != nil {
		if p.IsInline(id) {
			return nil, &LoginError{Kind: LoginConflict, Err: err}
		}
		return nil, &LoginError{Kind: LoginStorage, Err: err}
	}
	if cs, ok := a.cfg.Store.(*auth.CaddyStore); ok {
		return LoadDocument(ctx, cs, id)
	}
	if c, ok := p.Get(id); ok {
		doc, err := c.Auth().MarshalJSON()
		if err != nil {
			return nil, &LoginError{Kind: LoginStorage, Err: err}
		}
		return doc, nil
	}
	return nil, nil
}

// LoadDocument returns the JSON document stored under id in s, whether it
// parses or not, nil when there is none.
func LoadDocument(ctx context.Context, s *auth.CaddyStore, id string) ([]byte, error) {
	b, err := s.Storage.Load(ctx, s.Key(id))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, loginErr(LoginStorage, "reading %s: %v", s.Key(id), err)
	}
	return b, nil
}

func newLoginID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("no randomness for a login ID: %v", err)
	}
	return fmt.Sprintf("%x", b), nil
}

// Record fields a login writes itself, which LoginOptions.Fields cannot
// set.
var loginOwnFields = []string{
	"type", "provider", "api_key", "access_token", "refresh_token", "id_token",
	"expired", "last_refresh", "email", "account_id",
}

// loginFields checks the extra record fields of a login: a JSON object of
// at most maxLoginFields bytes without the fields the login writes. It
// returns them compacted, nil for none.
func loginFields(fields []byte) ([]byte, error) {
	if len(bytes.TrimSpace(fields)) == 0 || string(bytes.TrimSpace(fields)) == "null" {
		return nil, nil
	}
	if len(fields) > maxLoginFields {
		return nil, loginErr(LoginInvalid, "record fields larger than %d bytes", maxLoginFields)
	}
	doc, err := parseDocument(fields)
	if err != nil {
		return nil, loginErr(LoginInvalid, "record fields: %v", err)
	}
	for _, k := range doc.keys {
		if slices.Contains(loginOwnFields, k) {
			return nil, loginErr(LoginInvalid, "record field %q is written by the login itself; the fields it takes are the record's others (base_url, proxy_url, label, priority, weight, models, headers, disabled...)", k)
		}
	}
	var out bytes.Buffer
	if err := json.Compact(&out, fields); err != nil {
		return nil, loginErr(LoginInvalid, "record fields: %v", err)
	}
	return out.Bytes(), nil
}

// LoginAuthID names the credential of a login that was given no ID:
// "<provider>-<email>", else "<provider>-<account_id>", else
// "<provider>-<time of the login>", with characters a credential ID cannot
// hold replaced by "-".
func LoginAuthID(provider string, tok oauth.Token, now time.Time) string {
	name := tok.Email
	if name == "" {
		name = tok.AccountID
	}
	if name == "" {
		name = now.UTC().Format("20060102T150405Z")
	}
	id := safeID(provider + "-" + name)
	if auth.ValidateID(id) != nil {
		// Not expected after safeID; a name that still fails is replaced.
		id = provider + "-" + now.UTC().Format("20060102T150405Z")
	}
	return id
}

// safeID maps s onto the characters of a credential ID in one path
// segment: characters outside A-Z a-z 0-9 . _ @ + - become "-", runs of
// "." one ".", and an ending ".json" gets a "_" after it.
func safeID(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 190; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("_@+-", c) >= 0:
			b.WriteByte(c)
		case c == '.':
			if !strings.HasSuffix(b.String(), ".") {
				b.WriteByte('.')
			}
		default:
			b.WriteByte('-')
		}
	}
	out := b.String()
	if strings.HasSuffix(strings.ToLower(out), ".json") {
		out += "_"
	}
	return out
}

// CheckRelogin reports whether the record stored under id (its JSON
// document; nil for none) can take a login with provider: it must be a
// JSON object of that provider without an API key.
func CheckRelogin(id, provider string, existing []byte) error {
	if existing == nil {
		return nil
	}
	doc, err := parseDocument(existing)
	if err != nil {
		return loginErr(LoginConflict, "credential %q in storage is not a JSON object (%v); delete it or log in under another id", id, err)
	}
	return doc.checkRelogin(id, provider)
}

func (d *document) checkRelogin(id, provider string) error {
	var stored, key string
	for _, k := range []string{"provider", "type"} {
		if v, ok := d.vals[k]; ok {
			key = k
			if json.Unmarshal(v, &stored) != nil {
				return loginErr(LoginConflict, "credential %q in storage has a %q that is not a string; fix it or log in under another id", id, k)
			}
			break
		}
	}
	if key != "" && stored != provider {
		return loginErr(LoginConflict, "credential %q is a %s credential, not %s; log in with %s or under another id", id, stored, provider, stored)
	}
	if v, ok := d.vals["api_key"]; ok {
		var k string
		if json.Unmarshal(v, &k) != nil || k != "" {
			return loginErr(LoginConflict, "credential %q holds an API key; log in under another id", id)
		}
	}
	return nil
}

// LoginProxyURL is the proxy_url of a login's record: the one in its
// extra fields, else the stored record's, "" for none. The code exchange
// goes through it.
func LoginProxyURL(existing, fields []byte) string {
	for _, b := range [][]byte{fields, existing} {
		if b == nil {
			continue
		}
		var v struct {
			ProxyURL string `json:"proxy_url"`
		}
		if json.Unmarshal(b, &v) == nil && v.ProxyURL != "" {
			return v.ProxyURL
		}
	}
	return ""
}

// LoginRecord returns the record a completed login writes for credential
// id: the document the CLIProxyAPI login flows write (type, email,
// account_id, access_token, refresh_token, id_token, expired and
// last_refresh, RFC 3339), so the record is also usable by those tools.
// The tokens are written as auth.Auth.ApplyToken writes a refresh's.
//
// When a record is stored under id (existing: its JSON document, which
// need not parse, e.g. one whose tokens were removed), the login replaces
// its tokens and keeps every other field, known or not: priority, weight,
// models, disabled and the rest stay. An existing record of another
// provider or with an API key is refused. fields (see LoginOptions.Fields)
// are set over the record's.
func LoginRecord(id, provider string, tok oauth.Token, existing, fields []byte, now time.Time) (*auth.Auth, error) {
	if err := auth.ValidateID(id); err != nil {
		return nil, &LoginError{Kind: LoginInvalid, Err: err}
	}
	doc := &document{vals: map[string]json.RawMessage{}}
	if existing != nil {
		var err error
		if doc, err = parseDocument(existing); err != nil {
			return nil, loginErr(LoginConflict, "credential %q in storage is not a JSON object (%v); delete it or log in under another id", id, err)
		}
		if err := doc.checkRelogin(id, provider); err != nil {
			return nil, err
		}
	} else {
		doc.set("type", provider)
	}
	if fields != nil {
		extra, err := parseDocument(fields)
		if err != nil {
			return nil, loginErr(LoginInvalid, "record fields: %v", err)
		}
		for _, k := range extra.keys {
			if slices.Contains(loginOwnFields, k) {
				return nil, loginErr(LoginInvalid, "record field %q is written by the login itself", k)
			}
			doc.setRaw(k, extra.vals[k])
		}
	}
	a := &auth.Auth{ID: id}
	if err := a.UnmarshalJSON(doc.bytes()); err != nil {
		return nil, loginErr(LoginInvalid, "auth %q: %v", id, err)
	}
	if a.Provider == "" {
		a.Provider = provider
	}
	a.ApplyToken(tok, now)
	if err := a.Validate(); err != nil {
		return nil, &LoginError{Kind: LoginInvalid, Err: err}
	}
	return a, nil
}

// document is a JSON object that keeps the order of its fields.
type document struct {
	keys []string
	vals map[string]json.RawMessage
}

// parseDocument decodes a JSON object; of duplicate fields the last wins,
// in the place of the first.
func parseDocument(b []byte) (*document, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	d := &document{vals: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("field %q: %v", k, err)
		}
		d.setRaw(k, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return d, nil
}

func (d *document) setRaw(k string, v json.RawMessage) {
	if _, ok := d.vals[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.vals[k] = v
}

// set sets k to the string s.
func (d *document) set(k, s string) {
	v, _ := json.Marshal(s) // a string always encodes
	d.setRaw(k, v)
}

func (d *document) bytes() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range d.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		b.Write(name)
		b.WriteByte(':')
		b.Write(d.vals[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}
