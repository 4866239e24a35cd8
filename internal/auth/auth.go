// Package auth holds the upstream credentials of an llm_proxy pool: the
// credential record (Auth), the Store that keeps records in Caddy storage,
// and the access providers that check the keys clients present.
package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Providers understood by llm_proxy, as written in the "provider" (or
// "type") field of a record and in the Caddyfile's provider subdirective.
const (
	ProviderClaude           = "claude"
	ProviderOpenAI           = "openai"
	ProviderCodex            = "codex"
	ProviderGemini           = "gemini"
	ProviderOpenAICompatible = "openai_compatible"
)

// MaxWeight is the largest weight a credential may have.
const MaxWeight = 1000000

// defaultBaseURLs maps each provider to the upstream it talks to when the
// record has no base_url. openai_compatible has none: its base_url is
// required.
var defaultBaseURLs = map[string]string{
	ProviderClaude: "https://api.anthropic.com",
	ProviderOpenAI: "https://api.openai.com",
	ProviderCodex:  "https://chatgpt.com/backend-api/codex",
	ProviderGemini: "https://generativelanguage.googleapis.com",
}

// Providers returns the known provider names, sorted.
func Providers() []string {
	return []string{ProviderClaude, ProviderCodex, ProviderGemini, ProviderOpenAI, ProviderOpenAICompatible}
}

// Auth is one upstream credential: an API key or an OAuth access token for
// one provider, with the settings that say where and how it is used.
//
// In storage a credential is one JSON document at <storage_prefix>/<id>.json.
// Field names are matched exactly (lower case). The files written by the
// CLIProxyAPI login flows for Claude and Codex load unchanged: "type" is
// accepted in place of "provider", and every field llm_proxy does not know
// (id_token, last_refresh, ...) is kept and written back as it was. Gemini CLI
// OAuth files (type "gemini" with a "token" object) are not supported: a
// Gemini credential needs an api_key, and such a file is reported as a record
// that failed to load.
type Auth struct {
	// ID names the credential. For a stored record it is the storage key
	// below the prefix without ".json" (it may contain "/" for records in
	// sub-directories); for an inline credential it is the id given in the
	// Caddyfile. It is not part of the JSON document.
	ID string `json:"-"`

	// Provider is one of claude, openai, codex, gemini and
	// openai_compatible. JSON "provider"; "type" is accepted when
	// "provider" is absent, and is then the name written back.
	Provider string `json:"provider"`

	// APIKey is the provider API key. Either it or AccessToken is required;
	// when both are set the API key is used.
	APIKey string `json:"api_key,omitempty"`

	// AccessToken is an OAuth bearer token (Claude or Codex login).
	AccessToken string `json:"access_token,omitempty"`

	// RefreshToken is the OAuth refresh token, kept for the login tool that
	// wrote the record.
	RefreshToken string `json:"refresh_token,omitempty"`

	// Expired is when the access token expires, in RFC 3339 form as written
	// by the login flows.
	Expired string `json:"expired,omitempty"`

	// BaseURL is the upstream's base URL, an absolute http or https URL.
	// Default: per provider (see DefaultBaseURL); required for
	// openai_compatible.
	BaseURL string `json:"base_url,omitempty"`

	// Models lists the models this credential serves. A "*" in a pattern
	// matches any run of characters (including "/"); everything else is
	// literal, and matching ignores ASCII case. Default: every model.
	Models []string `json:"models,omitempty"`

	// Priority orders credentials in tiers: a higher priority is tried
	// first. Default: 0.
	Priority int `json:"priority,omitempty"`

	// Weight is the credential's share of new sessions, 0 to 1000000; 0
	// means it is never picked for a new session. Default: 1.
	Weight *int `json:"weight,omitempty"`

	// Headers are extra headers set on every upstream request sent with
	// this credential, after the credential itself is applied.
	Headers map[string]string `json:"headers,omitempty"`

	// ProxyURL is an egress proxy for this credential's upstream requests
	// (http, https, socks5 or socks5h).
	ProxyURL string `json:"proxy_url,omitempty"`

	// Disabled takes the credential out of the pool without deleting it.
	Disabled bool `json:"disabled,omitempty"`

	// Label is a human-readable name for logs and the admin API.
	Label string `json:"label,omitempty"`

	// Email is the account's e-mail address, as written by login flows.
	Email string `json:"email,omitempty"`

	// AccountID is the account ID; for Codex OAuth records it is sent as
	// the chatgpt-account-id header.
	AccountID string `json:"account_id,omitempty"`

	// Inline is true for credentials declared in the Caddyfile or JSON
	// config. They are never written to storage.
	Inline bool `json:"-"`

	// raw is the JSON document the record was decoded from, one raw value
	// per top-level field, known or not. The values are never modified.
	raw map[string]json.RawMessage
	// order is the order of the fields in that document.
	order []string
	// providerKey is "type" when the document named the provider with
	// "type" and had no "provider" field; "" otherwise.
	providerKey string
}

// knownField describes one JSON field that maps to an Auth field.
type knownField struct {
	name string
	ptr  func(a *Auth) any // pointer to the Go field
}

// knownFields lists the record's fields in the order they are written when
// they are not in the original document. "provider" is first; its name may
// be "type" (see Auth.providerKey).
var knownFields = []knownField{
	{"provider", func(a *Auth) any { return &a.Provider }},
	{"label", func(a *Auth) any { return &a.Label }},
	{"email", func(a *Auth) any { return &a.Email }},
	{"account_id", func(a *Auth) any { return &a.AccountID }},
	{"api_key", func(a *Auth) any { return &a.APIKey }},
	{"access_token", func(a *Auth) any { return &a.AccessToken }},
	{"refresh_token", func(a *Auth) any { return &a.RefreshToken }},
	{"expired", func(a *Auth) any { return &a.Expired }},
	{"base_url", func(a *Auth) any { return &a.BaseURL }},
	{"models", func(a *Auth) any { return &a.Models }},
	{"priority", func(a *Auth) any { return &a.Priority }},
	{"weight", func(a *Auth) any { return &a.Weight }},
	{"headers", func(a *Auth) any { return &a.Headers }},
	{"proxy_url", func(a *Auth) any { return &a.ProxyURL }},
	{"disabled", func(a *Auth) any { return &a.Disabled }},
}

// fieldName returns the JSON name of a known field for this record.
func (a *Auth) fieldName(f knownField) string {
	if f.name == "provider" && a.providerKey != "" {
		return a.providerKey
	}
	return f.name
}

// isKnown reports whether name is a known field of this record.
func (a *Auth) isKnown(name string) bool {
	for _, f := range knownFields {
		if a.fieldName(f) == name {
			return true
		}
	}
	return false
}

// Parse decodes a stored record and validates it. id is the record's ID
// (see Auth.ID). Errors name the ID and the field at fault, never a secret.
func Parse(id string, data []byte) (*Auth, error) {
	a := &Auth{ID: id}
	if err := a.decode(data); err != nil {
		return nil, fmt.Errorf("parsing auth %q: %w", id, err)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// UnmarshalJSON decodes a record without validating it; ID and Inline are
// left as they are. Unknown fields are kept and written back by
// MarshalJSON.
func (a *Auth) UnmarshalJSON(data []byte) error {
	id, inline := a.ID, a.Inline
	*a = Auth{ID: id, Inline: inline}
	return a.decode(data)
}

// decode fills a (which must be fresh) from a JSON object.
func (a *Auth) decode(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("decoding record: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("record is not a JSON object")
	}
	a.raw = make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("decoding record: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return errors.New("decoding record: object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("decoding field %q: %w", name, err)
		}
		if _, dup := a.raw[name]; !dup {
			a.order = append(a.order, name)
		}
		a.raw[name] = v // as encoding/json does, the last duplicate wins
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("decoding record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("decoding record: data after the JSON object")
	}

	if _, ok := a.raw["provider"]; !ok {
		if _, ok := a.raw["type"]; ok {
			a.providerKey = "type"
		}
	}
	for _, f := range knownFields {
		name := a.fieldName(f)
		v, ok := a.raw[name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, f.ptr(a)); err != nil {
			return fmt.Errorf("field %q: %w", name, fieldError(err))
		}
	}
	return nil
}

// fieldError turns a decoding error of one field into one that cannot
// carry the field's value.
func fieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		kind, _, _ := strings.Cut(te.Value, " ") // "number 1.5": drop the value
		return fmt.Errorf("expected %s, got JSON %s", te.Type, kind)
	}
	return errors.New("invalid value")
}

// MarshalJSON encodes the record: its known fields and every unknown field
// it was decoded with, in the original order, new fields last. A field
// whose value did not change keeps its original encoding, so a record that
// was decoded and not modified encodes to the same JSON document. If the
// record named its provider with "type", it is written back that way.
func (a *Auth) MarshalJSON() ([]byte, error) {
	values := make(map[string]json.RawMessage, len(a.raw)+2)
	for name, v := range a.raw {
		if !a.isKnown(name) {
			values[name] = v
		}
	}
	var added []string
	for _, f := range knownFields {
		name := a.fieldName(f)
		cur := reflect.ValueOf(f.ptr(a)).Elem()
		if orig, ok := a.raw[name]; ok && sameValue(orig, cur) {
			values[name] = orig
			continue
		}
		if isEmpty(cur) {
			continue
		}
		b, err := json.Marshal(cur.Interface())
		if err != nil {
			return nil, fmt.Errorf("encoding field %q: %w", name, err)
		}
		values[name] = b
		if _, ok := a.raw[name]; !ok {
			added = append(added, name)
		}
	}

	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	write := func(name string) {
		v, ok := values[name]
		if !ok {
			return
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(name) // a string always encodes
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	for _, name := range a.order {
		write(name)
	}
	for _, name := range added {
		write(name)
	}
	buf.WriteByte('}')

	var out bytes.Buffer
	if err := json.Compact(&out, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("encoding record: %w", err)
	}
	return out.Bytes(), nil
}

// sameValue reports whether the raw JSON orig decodes to the value cur.
func sameValue(orig json.RawMessage, cur reflect.Value) bool {
	v := reflect.New(cur.Type())
	if err := json.Unmarshal(orig, v.Interface()); err != nil {
		return false
	}
	if isEmpty(v.Elem()) && isEmpty(cur) {
		return true
	}
	return reflect.DeepEqual(v.Elem().Interface(), cur.Interface())
}

// isEmpty reports whether v is a zero value or an empty slice or map.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// Validate checks the record: a valid ID, a known provider, a credential
// (an api_key, or an access_token for providers other than gemini), a
// weight in range, a base_url for openai_compatible, absolute URLs, valid
// model patterns and header names. Errors name the credential and the
// field, never a secret.
func (a *Auth) Validate() error {
	if err := a.validate(); err != nil {
		return fmt.Errorf("auth %q: %w", a.ID, err)
	}
	return nil
}

func (a *Auth) validate() error {
	if err := ValidateID(a.ID); err != nil {
		return err
	}
	switch a.Provider {
	case "":
		return errors.New("missing provider (allowed: " + strings.Join(Providers(), ", ") + ")")
	case ProviderClaude, ProviderOpenAI, ProviderCodex, ProviderGemini, ProviderOpenAICompatible:
	default:
		return fmt.Errorf("unknown provider %q (allowed: %s)", a.Provider, strings.Join(Providers(), ", "))
	}

	for _, s := range []struct{ name, val string }{
		{"api_key", a.APIKey},
		{"access_token", a.AccessToken},
	} {
		if s.val != "" && (strings.TrimSpace(s.val) == "" || hasControl(s.val)) {
			return fmt.Errorf("%s contains white space only or control characters", s.name)
		}
	}
	if a.Provider == ProviderGemini && a.APIKey == "" {
		if _, ok := a.raw["token"]; ok {
			return errors.New("gemini credential has no api_key: Gemini CLI OAuth files (with a \"token\" object) are not supported, use a Gemini API key")
		}
		return errors.New("gemini credential has no api_key")
	}
	if a.Secret() == "" {
		return errors.New("missing credential: set api_key or access_token")
	}

	if a.Weight != nil && (*a.Weight < 0 || *a.Weight > MaxWeight) {
		return fmt.Errorf("weight %d out of range 0..%d", *a.Weight, MaxWeight)
	}
	if a.Provider == ProviderOpenAICompatible && a.BaseURL == "" {
		return errors.New("openai_compatible credential needs a base_url")
	}
	if a.BaseURL != "" {
		if err := checkURL(a.BaseURL, "http", "https"); err != nil {
			return fmt.Errorf("base_url: %w", err)
		}
	}
	if a.ProxyURL != "" {
		if err := checkURL(a.ProxyURL, "http", "https", "socks5", "socks5h"); err != nil {
			return fmt.Errorf("proxy_url: %w", err)
		}
	}
	for i, m := range a.Models {
		if m == "" || strings.ContainsFunc(m, isSpaceOrControl) {
			return fmt.Errorf("models[%d]: empty or contains white space or control characters", i)
		}
	}
	for name, val := range a.Headers {
		if !validHeaderName(name) {
			return fmt.Errorf("headers: invalid header name %q", name)
		}
		if strings.ContainsAny(val, "\r\n\x00") {
			return fmt.Errorf("headers: value of %q contains a line break or NUL", name)
		}
	}
	return nil
}

// checkURL checks that raw is an absolute URL with a host and one of the
// schemes. The URL is not repeated in errors: it may hold a password.
func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) {
		return fmt.Errorf("scheme %q not supported (allowed: %s)", u.Scheme, strings.Join(schemes, ", "))
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func isSpaceOrControl(r rune) bool {
	return r <= 0x20 || r == 0x7f
}

// validHeaderName reports whether name is an HTTP token (RFC 9110).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ExpiresAt returns the access token's expiry from Expired; ok is false
// when Expired is empty or not an RFC 3339 time.
func (a *Auth) ExpiresAt() (t time.Time, ok bool) {
	if a.Expired == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, a.Expired)
	return t, err == nil
}

// EffectiveWeight returns the weight, 1 when unset.
func (a *Auth) EffectiveWeight() int {
	if a.Weight == nil {
		return 1
	}
	return *a.Weight
}

// DefaultBaseURL returns the provider's default base URL: for claude
// https://api.anthropic.com, openai https://api.openai.com, codex
// https://chatgpt.com/backend-api/codex, gemini
// https://generativelanguage.googleapis.com. It is "" for openai_compatible,
// whose base URL is required, and for unknown providers.
func (a *Auth) DefaultBaseURL() string {
	return defaultBaseURLs[a.Provider]
}

// BaseURLOrDefault returns BaseURL, or the provider's default when it is
// empty, without a trailing slash.
func (a *Auth) BaseURLOrDefault() string {
	u := a.BaseURL
	if u == "" {
		u = a.DefaultBaseURL()
	}
	return strings.TrimRight(u, "/")
}

// ServesModel reports whether the credential serves model: true when
// Models is empty, else when a pattern matches. In a pattern "*" matches
// any run of characters (including "/"), other characters match
// themselves, ignoring ASCII case.
func (a *Auth) ServesModel(model string) bool {
	if len(a.Models) == 0 {
		return true
	}
	for _, p := range a.Models {
		if globMatch(p, model) {
			return true
		}
	}
	return false
}

// globMatch matches s against pattern, where '*' matches any run of bytes
// and every other byte matches itself, ignoring ASCII case. It backtracks
// only to the last star, so it runs in O(len(pattern)*len(s)) at worst and
// does not allocate.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && lower(pattern[p]) == lower(s[i]):
			p++
			i++
		case star >= 0:
			mark++
			p, i = star+1, mark
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
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Secret returns the credential sent upstream: the API key, else the
// access token.
func (a *Auth) Secret() string {
	if a.APIKey != "" {
		return a.APIKey
	}
	return a.AccessToken
}

// IsOAuth reports whether the credential is an OAuth access token (no API
// key). Claude, for one, takes such a token as a Bearer token with the
// OAuth beta header instead of as x-api-key.
func (a *Auth) IsOAuth() bool {
	return a.APIKey == "" && a.AccessToken != ""
}

// maskMinLen is the shortest secret Masked shows the end of.
const maskMinLen = 12

// Masked returns a display form of the secret that cannot be used: "…"
// followed by its last 4 characters, or only "…" when the secret is shorter
// than 12 characters. It is "" when there is no secret.
func (a *Auth) Masked() string {
	s := a.Secret()
	switch {
	case s == "":
		return ""
	case len(s) < maskMinLen:
		return "…"
	}
	return "…" + s[len(s)-4:]
}

// Clone returns a deep copy of the record, including the unknown fields it
// was decoded with.
func (a *Auth) Clone() *Auth {
	if a == nil {
		return nil
	}
	c := *a
	if a.Weight != nil {
		w := *a.Weight
		c.Weight = &w
	}
	c.Models = slices.Clone(a.Models)
	c.Headers = maps.Clone(a.Headers)
	c.raw = maps.Clone(a.raw) // raw values are never modified, so they are shared
	c.order = slices.Clone(a.order)
	return &c
}
