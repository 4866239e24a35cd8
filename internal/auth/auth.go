// Package auth holds the upstream credentials of an llm_proxy pool: the
// settings users write for a credential (Fields, shared by inline and
// stored credentials), the credential record (Auth) and its validation
// against the provider table, the Store that keeps records in Caddy
// storage, and where a client request carries its own key (ClientKey).
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

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/glob"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
	"github.com/caddy-llm-proxy/llmproxy/internal/provider"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

// Fields are the settings of a credential that users write: the same in an
// inline auth block of the config and in a stored record. Values that hold
// placeholders such as {env.ANTHROPIC_KEY} are expanded when an inline
// credential is provisioned (see Expand); stored records are used as
// written.
type Fields struct {
	// Provider names the upstream provider: claude, codex, gemini, openai or
	// openai_compatible. Required. It decides which API the credential
	// serves (claude: Anthropic Messages; gemini: Gemini; the others:
	// OpenAI), its default base_url and how the key is sent. A stored
	// record may call this field "type", as the CLIProxyAPI login flows
	// write it.
	Provider string `json:"provider"`

	// APIKey is the provider API key. Either it or access_token is required,
	// and gemini needs an API key. When both are set the API key is used. It
	// is sent as x-api-key (claude), x-goog-api-key (gemini) or
	// "Authorization: Bearer" (the others). Placeholders are expanded.
	APIKey string `json:"api_key,omitempty"`

	// AccessToken is an OAuth access token from a subscription login
	// (Claude Pro/Max through Claude Code, ChatGPT through Codex), sent as
	// "Authorization: Bearer"; claude adds the oauth-2025-04-20
	// anthropic-beta flag. Not accepted for gemini. Placeholders are
	// expanded.
	AccessToken string `json:"access_token,omitempty"`

	// AccountID is the account the access token belongs to. For codex it is
	// sent with the access token as the chatgpt-account-id header.
	// Placeholders are expanded.
	AccountID string `json:"account_id,omitempty"`

	// BaseURL is the upstream's address, an absolute http or https URL; the
	// client's path is appended to it (without the client's /v1 when the
	// base URL ends in /v1). Default: https://api.anthropic.com (claude),
	// https://chatgpt.com/backend-api/codex (codex),
	// https://generativelanguage.googleapis.com (gemini),
	// https://api.openai.com (openai); required for openai_compatible.
	// Placeholders are expanded.
	BaseURL string `json:"base_url,omitempty"`

	// Models lists the models the credential serves, as patterns: "*"
	// matches any run of characters (including "/"), everything else is
	// literal, and case is ignored. Default: every model.
	Models []string `json:"models,omitempty"`

	// ExcludedModels lists models the credential never serves, as patterns
	// like those of models; an exclusion wins over models. Default: none.
	ExcludedModels []string `json:"excluded_models,omitempty"`

	// ModelAlias maps a client-visible model name to the name sent
	// upstream: a request for the key is eligible on this credential
	// (whatever models and excluded_models say) and goes upstream with the
	// value in the body's "model" (or the Gemini path's {model}). Keys are
	// matched ignoring ASCII case; the response is passed on as the
	// upstream sent it. Names are non-empty, without white space. Default:
	// none.
	ModelAlias map[string]string `json:"model_alias,omitempty"`

	// Priority puts the credential in a tier: the highest tier with an
	// available credential serves, lower tiers only while every credential
	// above is cooling down or disabled. Default: 0; may be negative.
	Priority int `json:"priority,omitempty"`

	// Weight is the credential's share of new sessions within its tier,
	// from 0 to 1000000; 0 means it is never picked for a new session.
	// Default: 1.
	Weight *int `json:"weight,omitempty"`

	// Headers are set on every upstream request sent with this credential,
	// after the credential itself, so they override the client's headers
	// of the same name. Placeholders in values are expanded.
	Headers map[string]string `json:"headers,omitempty"`

	// ProxyURL is an egress proxy for this credential's upstream requests:
	// an http, https, socks5 or socks5h URL. Default: none. Placeholders
	// are expanded.
	ProxyURL string `json:"proxy_url,omitempty"`

	// Disabled takes the credential out of the pool without removing it.
	Disabled bool `json:"disabled,omitempty"`

	// Label is a human-readable name for logs and the admin API.
	Label string `json:"label,omitempty"`
}

// Expand replaces the placeholders in the fields that take them (api_key,
// access_token, account_id, base_url, proxy_url and header values) by
// expand's result. Headers is replaced by a new map, so fields copied from
// a config are not changed.
func (f *Fields) Expand(expand func(string) string) {
	for _, p := range []*string{&f.APIKey, &f.AccessToken, &f.AccountID, &f.BaseURL, &f.ProxyURL} {
		*p = expand(*p)
	}
	if f.Headers != nil {
		h := make(map[string]string, len(f.Headers))
		for k, v := range f.Headers {
			h[k] = expand(v)
		}
		f.Headers = h
	}
}

// Auth is one upstream credential: an API key or an OAuth access token for
// one provider, with the settings that say where and how it is used.
//
// In storage a credential is one JSON document at <storage_prefix>/<id>.json.
// Field names are matched exactly (lower case). The files written by the
// CLIProxyAPI login flows for Claude and Codex load unchanged: "type" is
// accepted in place of "provider", and every field llm_proxy does not know
// is kept and written back as it was. Gemini CLI
// OAuth files (type "gemini" with a "token" object) are not supported: a
// Gemini credential needs an api_key, and such a file is reported as a record
// that failed to load.
type Auth struct {
	// ID names the credential. For a stored record it is the storage key
	// below the prefix without ".json" (it may contain "/" for records in
	// sub-directories); for an inline credential it is the id given in the
	// config. It is not part of the JSON document.
	ID string `json:"-"`

	// Fields are the settings users write.
	Fields

	// RefreshToken is the OAuth refresh token that obtains the next access
	// token. llm_proxy refreshes records that have one before their access
	// token expires, and writes the rotated token back.
	RefreshToken string `json:"refresh_token,omitempty"`

	// IDToken is the OpenID Connect ID token of the last login or refresh
	// (Codex), kept as the login flows write it.
	IDToken string `json:"id_token,omitempty"`

	// Expired is when the access token expires, in RFC 3339 form as written
	// by the login flows.
	Expired string `json:"expired,omitempty"`

	// LastRefresh is when the tokens were last obtained, in RFC 3339 form.
	// Without Expired, the next refresh is due refresh_lead after it.
	LastRefresh string `json:"last_refresh,omitempty"`

	// Email is the account's e-mail address, as written by login flows.
	Email string `json:"email,omitempty"`

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
	{"id_token", func(a *Auth) any { return &a.IDToken }},
	{"expired", func(a *Auth) any { return &a.Expired }},
	{"last_refresh", func(a *Auth) any { return &a.LastRefresh }},
	{"base_url", func(a *Auth) any { return &a.BaseURL }},
	{"models", func(a *Auth) any { return &a.Models }},
	{"excluded_models", func(a *Auth) any { return &a.ExcludedModels }},
	{"model_alias", func(a *Auth) any { return &a.ModelAlias }},
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

// Validate checks the record: a valid ID, a provider from the provider
// table, the credential it needs (an api_key, or an access_token where the
// provider takes one), a base_url where the provider has no default, a
// weight in range, absolute URLs, valid model patterns and header names.
// Errors name the credential and the field, never a secret.
func (a *Auth) Validate() error {
	return a.check(false)
}

// ValidateUnexpanded is Validate for a credential as written in a config,
// whose values may still hold placeholders (see Fields.Expand): a base_url
// or proxy_url holding one is not checked as a URL. Config adapters call it
// to report mistakes early; Validate runs once the values are expanded.
func (a *Auth) ValidateUnexpanded() error {
	return a.check(true)
}

func (a *Auth) check(unexpanded bool) error {
	if err := a.validate(unexpanded); err != nil {
		return fmt.Errorf("auth %q: %w", a.ID, err)
	}
	return nil
}

func (a *Auth) validate(unexpanded bool) error {
	if err := ValidateID(a.ID); err != nil {
		return err
	}
	p := provider.Lookup(a.Provider)
	if p == nil {
		allowed := strings.Join(provider.Names(), ", ")
		if a.Provider == "" {
			return errors.New("missing provider (allowed: " + allowed + ")")
		}
		return fmt.Errorf("unknown provider %q (allowed: %s)", a.Provider, allowed)
	}
	if err := a.checkCredential(p); err != nil {
		return err
	}
	if a.Weight != nil && (*a.Weight < 0 || *a.Weight > selector.MaxWeight) {
		return fmt.Errorf("weight %d out of range 0..%d", *a.Weight, selector.MaxWeight)
	}
	if err := a.checkURLs(p, unexpanded); err != nil {
		return err
	}
	return a.checkLists(p)
}

// checkCredential checks api_key and access_token against what provider p
// takes.
func (a *Auth) checkCredential(p *provider.Provider) error {
	for _, s := range []struct{ name, val string }{
		{"api_key", a.APIKey},
		{"access_token", a.AccessToken},
	} {
		if s.val != "" && (strings.TrimSpace(s.val) == "" || hasControl(s.val)) {
			return fmt.Errorf("%s contains white space only or control characters", s.name)
		}
	}
	switch {
	case !p.AccessTokens && a.APIKey == "":
		if _, ok := a.raw["token"]; ok {
			return fmt.Errorf("%s credential has no api_key: OAuth login files with a \"token\" object (such as Gemini CLI OAuth files) are not supported, use an API key", p.Name)
		}
		return fmt.Errorf("%s credential has no api_key (%s takes no access_token)", p.Name, p.Name)
	case a.Secret() == "":
		return errors.New("missing credential: set api_key or access_token")
	}
	return nil
}

// checkURLs checks base_url, required where provider p has no default, and
// proxy_url. With unexpanded, a URL holding a placeholder is not checked.
func (a *Auth) checkURLs(p *provider.Provider, unexpanded bool) error {
	if p.DefaultBaseURL == "" && a.BaseURL == "" {
		return fmt.Errorf("%s credential needs a base_url", p.Name)
	}
	for _, u := range []struct {
		name, val string
		schemes   []string
	}{
		{"base_url", a.BaseURL, []string{"http", "https"}},
		{"proxy_url", a.ProxyURL, []string{"http", "https", "socks5", "socks5h"}},
	} {
		if u.val == "" || unexpanded && strings.Contains(u.val, "{") {
			continue
		}
		if err := checkURL(u.val, u.schemes...); err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
	}
	return nil
}

// checkLists checks the model patterns, the model aliases and the header
// names and values.
func (a *Auth) checkLists(p *provider.Provider) error {
	for _, l := range []struct {
		name string
		list []string
	}{{"models", a.Models}, {"excluded_models", a.ExcludedModels}} {
		for i, m := range l.list {
			if !ValidModelName(m) {
				return fmt.Errorf("%s[%d]: empty or contains white space or control characters", l.name, i)
			}
		}
	}
	if err := checkAliases(a.ModelAlias, p.Serves(apifamily.Gemini)); err != nil {
		return err
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

// ValidModelName reports whether s can be a model name or pattern in
// models, excluded_models or model_alias: not empty, without white space
// or control characters.
func ValidModelName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, isSpaceOrControl)
}

// checkAliases checks model_alias: names without white space or control
// characters, and no client name twice (ignoring ASCII case). When the
// upstream names the model in the request path (Gemini's
// /v1beta/models/{model}:{action}), an upstream name must also be one plain
// path segment: a "/", ":", "?", "#" or "%" in it would send the request to
// another path than the one the client's was checked against. Errors name
// the client name, which is not a secret.
func checkAliases(aliases map[string]string, inPath bool) error {
	seen := make(map[string]string, len(aliases))
	for _, client := range slices.Sorted(maps.Keys(aliases)) {
		if !ValidModelName(client) || len(client) > maxAliasLen {
			return fmt.Errorf("model_alias: client name %q is empty, too long or contains white space or control characters", client)
		}
		if !ValidModelName(aliases[client]) || len(aliases[client]) > maxAliasLen {
			return fmt.Errorf("model_alias: upstream name for %q is empty, too long or contains white space or control characters", client)
		}
		if inPath && (strings.ContainsAny(aliases[client], "/:?#%") || aliases[client] == "." || aliases[client] == "..") {
			return fmt.Errorf("model_alias: upstream name for %q goes into the request path, so it may not be . or .. or contain / : ? # or %%", client)
		}
		lower := strings.ToLower(client)
		if prev, dup := seen[lower]; dup {
			return fmt.Errorf("model_alias: client names %q and %q differ only in case", prev, client)
		}
		seen[lower] = client
	}
	return nil
}

// maxAliasLen is the longest name model_alias takes, as long as the
// longest model name a client may send.
const maxAliasLen = 256

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

// EffectiveWeight returns the weight, 1 when unset.
func (a *Auth) EffectiveWeight() int {
	if a.Weight == nil {
		return 1
	}
	return *a.Weight
}

// BaseURLOrDefault returns BaseURL, or the provider's default when it is
// empty, without a trailing slash.
func (a *Auth) BaseURLOrDefault() string {
	u := a.BaseURL
	if u == "" {
		if p := provider.Lookup(a.Provider); p != nil {
			u = p.DefaultBaseURL
		}
	}
	return strings.TrimRight(u, "/")
}

// ServesModel reports whether the credential serves the client-visible
// model: when it is a model_alias key, or when Models is empty or a
// pattern of it matches and no pattern of ExcludedModels does. In a
// pattern "*" matches any run of characters (including "/"), other
// characters match themselves, ignoring ASCII case.
func (a *Auth) ServesModel(model string) bool {
	if _, ok := a.alias(model); ok {
		return true
	}
	if len(a.Models) > 0 && !matchAny(a.Models, model) {
		return false
	}
	return !matchAny(a.ExcludedModels, model)
}

// UpstreamModel returns the name a request for the client-visible model is
// sent upstream with: its model_alias value, else model itself.
func (a *Auth) UpstreamModel(model string) string {
	if up, ok := a.alias(model); ok {
		return up
	}
	return model
}

// alias looks model up among the model_alias keys, ignoring ASCII case
// (Validate makes sure at most one key matches).
func (a *Auth) alias(model string) (string, bool) {
	if model == "" || len(a.ModelAlias) == 0 {
		return "", false
	}
	if up, ok := a.ModelAlias[model]; ok {
		return up, true
	}
	for client, up := range a.ModelAlias {
		if strings.EqualFold(client, model) {
			return up, true
		}
	}
	return "", false
}

func matchAny(patterns []string, model string) bool {
	for _, p := range patterns {
		if glob.Match(p, model) {
			return true
		}
	}
	return false
}

// Secret returns the credential sent upstream: the API key, else the
// access token.
func (a *Auth) Secret() string {
	if a.APIKey != "" {
		return a.APIKey
	}
	return a.AccessToken
}

// IsOAuth reports whether the credential sends an OAuth access token: it
// has one and no API key. Providers take such a token differently from a
// key (see provider.Provider.Apply).
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
	c.ExcludedModels = slices.Clone(a.ExcludedModels)
	c.ModelAlias = maps.Clone(a.ModelAlias)
	c.Headers = maps.Clone(a.Headers)
	c.raw = maps.Clone(a.raw) // raw values are never modified, so they are shared
	c.order = slices.Clone(a.order)
	return &c
}

// ApplyToken makes t the record's tokens, as obtained at now by a refresh
// or a login: access_token, refresh_token (kept when t has none), expired
// (removed when t's expiry is unknown), last_refresh, and id_token, email
// and account_id when t carries them. Every other field, known or not,
// keeps its value and place in the document.
func (a *Auth) ApplyToken(t oauth.Token, now time.Time) {
	a.AccessToken = t.AccessToken
	if t.RefreshToken != "" {
		a.RefreshToken = t.RefreshToken
	}
	a.Expired = ""
	if !t.Expiry.IsZero() {
		a.Expired = oauth.FormatTime(t.Expiry)
	}
	a.LastRefresh = oauth.FormatTime(now)
	for _, f := range []struct {
		dst *string
		val string
	}{
		{&a.IDToken, t.IDToken}, {&a.Email, t.Email}, {&a.AccountID, t.AccountID},
	} {
		if f.val != "" {
			*f.dst = f.val
		}
	}
}
