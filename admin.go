package llmproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// Limits of the admin API.
const (
	// adminMaxBody bounds the JSON body of POST and PATCH requests.
	adminMaxBody = 1 << 20
	// adminMaxFailures wrong management secrets from one address start a
	// lock-out of adminLockout.
	adminMaxFailures = 5
	adminLockout     = 30 * time.Minute
	// adminListCooldowns bounds the per-model cooldowns shown per
	// credential in GET .../auths (model names come from clients); the
	// rest are counted in cooldowns_omitted and shown by GET .../auths/<id>.
	adminListCooldowns = 16
)

// AdminAPI is the admin API of llm_proxy, served on Caddy's admin endpoint
// under /llm_proxy/. It inspects and changes the credential pools of the
// running config without a reload:
//
//	GET    /llm_proxy/pools                          pool names, credential counts and availability
//	GET    /llm_proxy/pools/<pool>/auths             credentials, secrets masked
//	POST   /llm_proxy/pools/<pool>/auths             add a credential (JSON record with "id"), written to storage
//	GET    /llm_proxy/pools/<pool>/auths/<id>        one credential, secret masked
//	PATCH  /llm_proxy/pools/<pool>/auths/<id>        change disabled, priority, weight
//	DELETE /llm_proxy/pools/<pool>/auths/<id>        delete from storage; its bindings are dropped
//	POST   /llm_proxy/pools/<pool>/auths/<id>/reset  clear its cooldowns
//	GET    /llm_proxy/pools/<pool>/sessions          binding count in all and per credential
//	DELETE /llm_proxy/pools/<pool>/sessions          drop bindings (?auth=<id>: only that credential's)
//	POST   /llm_proxy/pools/<pool>/rescan            re-read storage now
//	POST   /llm_proxy/pools/<pool>/logins            start an OAuth login: login_id and the URL to open
//	POST   /llm_proxy/pools/<pool>/logins/<login_id> complete it with the pasted redirect URL or code
//	DELETE /llm_proxy/pools/<pool>/logins/<login_id> cancel it
//	GET    /llm_proxy/ui                             the status page for a browser; its JSON API is under /llm_proxy/ui/api
//
// Caddy's admin endpoint refuses a browser that opens the status page by
// its address (the request names no origin) unless the admin origins allow
// the empty one: admin localhost:2019 { origins localhost:2019
// 127.0.0.1:2019 [::1]:2019 "" }.
//
// When the pool's handler has a management_secret, every route of that
// pool needs "Authorization: Bearer <secret>"; 5 wrong secrets from one
// address lock that address out for 30 minutes. Inline credentials cannot
// be changed or deleted here (409). Errors are JSON.
//
// Logins put subscription credentials (Claude Pro/Max, ChatGPT) into the
// pool in two steps, so a web page can drive them. Start with
// {"provider": "claude"|"codex"}, optionally "id" (the credential to write;
// default "<provider>-<email>") and other record fields for the new record
// (base_url, proxy_url, label, priority...); the answer (201) holds
// login_id, the authorize url and expires_at. The user opens the URL, logs
// in, and pastes back where the browser was sent (or the code; Claude's
// CODE#STATE too): complete with {"code": "<pasted>"}, which exchanges it
// (PKCE, state checked), writes the record to storage and answers (201)
// with the credential, secrets masked. Logging in to an existing
// credential replaces its tokens and keeps its other fields. A login
// expires after 10 minutes and is used once: a wrong state or a refused
// code ends it too (only a paste without any code leaves it pending). At
// most 16 logins per pool wait at a time; more drop the oldest.
//
// The module has no configuration; Caddy loads it with every admin
// endpoint.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.llm_proxy",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the routes of the admin API.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{
			Pattern: "/llm_proxy/",
			Handler: caddy.AdminHandlerFunc(a.serve),
		},
	}
}

// serve dispatches a request under /llm_proxy/.
func (a AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/llm_proxy/ui"); ok && (rest == "" || rest[0] == '/') {
		return a.serveUI(w, r, rest)
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/llm_proxy/pools")
	if !ok || (rest != "" && rest[0] != '/') {
		return apiError(http.StatusNotFound, "not found: the llm_proxy admin API is under /llm_proxy/pools")
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, http.MethodGet)
		}
		return writeJSON(w, http.StatusOK, poolSummaries())
	}

	segs, err := splitPath(rest)
	if err != nil {
		return err
	}
	name, sub := segs[0], segs[1:]
	p, secret, err := lookupPool(name)
	if err != nil {
		return err
	}
	if err := checkManagementSecret(w, r, name, secret); err != nil {
		return err
	}
	return poolAdmin{p: p}.route(w, r, sub)
}

// route serves the pool route sub (the path after /llm_proxy/pools/<pool>,
// split and unescaped) to a caller already admitted to the pool.
func (ps poolAdmin) route(w http.ResponseWriter, r *http.Request, sub []string) error {
	switch {
	case len(sub) == 1 && sub[0] == "auths":
		switch r.Method {
		case http.MethodGet:
			return writeJSON(w, http.StatusOK, ps.views())
		case http.MethodPost:
			return ps.add(w, r)
		}
		return methodNotAllowed(w, http.MethodGet, http.MethodPost)

	case len(sub) >= 3 && sub[0] == "auths" && sub[len(sub)-1] == "reset" && r.Method == http.MethodPost:
		return ps.reset(w, strings.Join(sub[1:len(sub)-1], "/"))

	case len(sub) >= 2 && sub[0] == "auths":
		id := strings.Join(sub[1:], "/")
		switch r.Method {
		case http.MethodGet:
			return ps.get(w, id)
		case http.MethodPatch:
			return ps.patch(w, r, id)
		case http.MethodDelete:
			return ps.delete(w, r, id)
		}
		return methodNotAllowed(w, http.MethodGet, http.MethodPatch, http.MethodDelete)

	case len(sub) == 1 && sub[0] == "sessions":
		switch r.Method {
		case http.MethodGet:
			return ps.sessions(w)
		case http.MethodDelete:
			return ps.dropSessions(w, r)
		}
		return methodNotAllowed(w, http.MethodGet, http.MethodDelete)

	case len(sub) == 1 && sub[0] == "rescan":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, http.MethodPost)
		}
		return ps.rescan(w, r)

	case len(sub) == 1 && sub[0] == "usage":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, http.MethodGet)
		}
		return ps.usage(w, r)

	case len(sub) == 1 && sub[0] == "logins":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, http.MethodPost)
		}
		return ps.startLogin(w, r)

	case len(sub) == 2 && sub[0] == "logins":
		switch r.Method {
		case http.MethodPost:
			return ps.completeLogin(w, r, sub[1])
		case http.MethodDelete:
			return ps.cancelLogin(w, sub[1])
		}
		return methodNotAllowed(w, http.MethodPost, http.MethodDelete)
	}
	return apiError(http.StatusNotFound, "not found: pool routes are auths, auths/<id>, auths/<id>/reset, sessions, usage, rescan, logins and logins/<login_id>")
}

// poolSummary is one pool in GET /llm_proxy/pools.
type poolSummary struct {
	Name string `json:"name"`
	// Total counts the credentials, Enabled those not disabled, Available
	// those of them not cooling down for all models.
	Total     int `json:"total"`
	Enabled   int `json:"enabled"`
	Available int `json:"available"`
}

func poolSummaries() []poolSummary {
	now := clock.Now()
	out := []poolSummary{}
	for _, name := range pool.Names() {
		p, ok := pool.Lookup(name)
		if !ok {
			continue
		}
		s := poolSummary{Name: name}
		s.Total, s.Enabled, s.Available = p.Availability(now)
		out = append(out, s)
	}
	return out
}

// authView is how the admin API shows a credential: everything an operator
// needs, never a secret (API key, access or refresh token, header values,
// URL passwords).
type authView struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Label    string `json:"label,omitempty"`
	// Email and AccountID identify the account of an OAuth record.
	Email     string `json:"email,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	// Kind is "api_key" or "access_token": which credential is sent.
	Kind string `json:"kind"`
	// MaskedSecret is "…" and at most the last 4 characters of the secret.
	MaskedSecret string `json:"masked_secret"`
	// State is serving, cooling (cooling down for every model), disabled,
	// or needs_login: its OAuth refresh token was refused for good, and it
	// is out of rotation until a new login writes another one.
	State string `json:"state"`
	// Expired is the access token's expiry as written in the record, and
	// LastRefresh when its tokens were last obtained.
	Expired     string `json:"expired,omitempty"`
	LastRefresh string `json:"last_refresh,omitempty"`
	// RefreshError is the last failed OAuth refresh while failures last,
	// or the refusal behind needs_login; RefreshFailures counts temporary
	// failures in a row and RefreshRetryAt is the next attempt after them.
	RefreshError    string     `json:"refresh_error,omitempty"`
	RefreshFailures int        `json:"refresh_failures,omitempty"`
	RefreshRetryAt  *time.Time `json:"refresh_retry_at,omitempty"`
	// BaseURL and ProxyURL are shown without user info and query.
	BaseURL  string   `json:"base_url"`
	ProxyURL string   `json:"proxy_url,omitempty"`
	Models   []string `json:"models,omitempty"`
	// ExcludedModels and ModelAlias are the credential's model exclusions
	// and aliases (client name to upstream name).
	ExcludedModels []string          `json:"excluded_models,omitempty"`
	ModelAlias     map[string]string `json:"model_alias,omitempty"`
	// HeaderNames lists the extra upstream headers (names only).
	HeaderNames []string `json:"header_names,omitempty"`
	Priority    int      `json:"priority"`
	Weight      int      `json:"weight"`
	Disabled    bool     `json:"disabled"`
	Inline      bool     `json:"inline"`
	// Source is "inline" (the config) or "storage".
	Source    string          `json:"source"`
	Cooldowns []pool.Cooldown `json:"cooldowns"`
	// CooldownsOmitted counts the per-model cooldowns left out of a list
	// of credentials (at most 16 are shown per credential there).
	CooldownsOmitted int    `json:"cooldowns_omitted,omitempty"`
	Successes        uint64 `json:"successes"`
	Failures         uint64 `json:"failures"`
	// Sessions counts the session bindings to this credential.
	Sessions int `json:"sessions"`
	// Quota is what the credential's upstream last reported about its
	// usage limits in response headers; absent until it reports any.
	Quota *pool.Quota `json:"quota,omitempty"`
}

// newAuthView shows c. With maxCooldowns > 0, at most that many per-model
// cooldowns are listed (the credential-wide one always is) and the rest
// are counted.
func newAuthView(c *pool.Credential, sessions int, now time.Time, maxCooldowns int) authView {
	a := c.Auth()
	v := authView{
		ID:             a.ID,
		Provider:       a.Provider,
		Label:          a.Label,
		Email:          a.Email,
		AccountID:      a.AccountID,
		Kind:           "api_key",
		MaskedSecret:   a.Masked(),
		State:          c.State(now),
		Expired:        a.Expired,
		LastRefresh:    a.LastRefresh,
		BaseURL:        displayURL(a.BaseURLOrDefault()),
		ProxyURL:       displayURL(a.ProxyURL),
		Models:         a.Models,
		ExcludedModels: a.ExcludedModels,
		ModelAlias:     a.ModelAlias,
		Priority:       a.Priority,
		Weight:         a.EffectiveWeight(),
		Disabled:       a.Disabled,
		Inline:         a.Inline,
		Source:         "storage",
		Cooldowns:      c.Cooldowns(now),
		Sessions:       sessions,
		Quota:          c.Quota(),
	}
	if a.IsOAuth() {
		v.Kind = "access_token"
	}
	if a.Inline {
		v.Source = "inline"
	}
	for name := range a.Headers {
		v.HeaderNames = append(v.HeaderNames, name)
	}
	sort.Strings(v.HeaderNames)
	if v.Cooldowns == nil {
		v.Cooldowns = []pool.Cooldown{}
	}
	sort.Slice(v.Cooldowns, func(i, j int) bool { return v.Cooldowns[i].Model < v.Cooldowns[j].Model })
	if limit := maxCooldowns; limit > 0 {
		if len(v.Cooldowns) > 0 && v.Cooldowns[0].Model == "*" {
			limit++ // "*" sorts first and is not counted
		}
		if len(v.Cooldowns) > limit {
			v.CooldownsOmitted = len(v.Cooldowns) - limit
			v.Cooldowns = v.Cooldowns[:limit]
		}
	}
	v.Successes, v.Failures = c.Counts()
	rs := c.RefreshStatus()
	v.RefreshError, v.RefreshFailures = rs.LastError, rs.Failures
	if !rs.RetryAt.IsZero() {
		v.RefreshRetryAt = &rs.RetryAt
	}
	return v
}

// displayURL returns scheme, host and path of a URL: no user info (it may
// hold a password) and no query (it may hold a key).
func displayURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// poolAdmin serves the routes of one pool.
type poolAdmin struct {
	p *pool.Pool
}

func (ps poolAdmin) pool() *pool.Pool { return ps.p }

func (ps poolAdmin) name() string { return ps.p.Name() }

func (ps poolAdmin) views() []authView {
	now := clock.Now()
	counts := ps.pool().Sessions.CountByAuth()
	out := []authView{}
	for _, c := range ps.pool().Credentials() {
		out = append(out, newAuthView(c, counts[c.ID()], now, adminListCooldowns))
	}
	return out
}

func (ps poolAdmin) view(id string) (authView, bool) {
	c, ok := ps.pool().Get(id)
	if !ok {
		return authView{}, false
	}
	return newAuthView(c, ps.pool().Sessions.CountByAuth()[id], clock.Now(), 0), true
}

func (ps poolAdmin) get(w http.ResponseWriter, id string) error {
	v, ok := ps.view(id)
	if !ok {
		return ps.unknownAuth(id)
	}
	return writeJSON(w, http.StatusOK, v)
}

func (ps poolAdmin) unknownAuth(id string) error {
	return apiError(http.StatusNotFound, "pool %q has no credential %q", ps.name(), id)
}

func (ps poolAdmin) inlineConflict(id string) error {
	return apiError(http.StatusConflict, "credential %q of pool %q is declared in the config (inline); change it there and reload", id, ps.name())
}

// add stores a new credential and puts it into the pool at once.
func (ps poolAdmin) add(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	id, doc, err := splitID(body)
	if err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	if err := auth.ValidateID(id); err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	if ps.pool().IsInline(id) {
		return ps.inlineConflict(id)
	}
	if _, ok := ps.pool().Get(id); ok || ps.pool().HasRecord(r.Context(), id) {
		return apiError(http.StatusConflict, "credential %q already exists in pool %q; change it with PATCH or DELETE it first", id, ps.name())
	}
	a, err := auth.Parse(id, doc)
	if err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	if err := ps.pool().Save(r.Context(), a); err != nil {
		return apiError(http.StatusInternalServerError, "saving credential %q: %v", id, err)
	}
	adminLogger().Info("credential added", zap.String("pool", ps.name()), zap.String("auth", id))
	v, _ := ps.view(id)
	return writeJSON(w, http.StatusCreated, v)
}

// authPatch is the body of PATCH /llm_proxy/pools/<pool>/auths/<id>.
type authPatch struct {
	Disabled *bool `json:"disabled"`
	Priority *int  `json:"priority"`
	Weight   *int  `json:"weight"`
}

// patch changes disabled, priority or weight of a stored credential. The
// record keeps every other field, known or not.
func (ps poolAdmin) patch(w http.ResponseWriter, r *http.Request, id string) error {
	if ps.pool().IsInline(id) {
		return ps.inlineConflict(id)
	}
	c, ok := ps.pool().Get(id)
	if !ok {
		return ps.unknownAuth(id)
	}
	var p authPatch
	if err := decodeStrict(r, &p, "decoding patch (allowed fields: disabled, priority, weight)"); err != nil {
		return err
	}
	if p.Disabled == nil && p.Priority == nil && p.Weight == nil {
		return apiError(http.StatusBadRequest, "nothing to change: set disabled, priority or weight")
	}
	a := c.Auth().Clone()
	if p.Disabled != nil {
		a.Disabled = *p.Disabled
	}
	if p.Priority != nil {
		a.Priority = *p.Priority
	}
	if p.Weight != nil {
		weight := *p.Weight
		a.Weight = &weight
	}
	if err := a.Validate(); err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	// Installing the record drops the bindings of a credential that is now
	// disabled.
	if err := ps.pool().Save(r.Context(), a); err != nil {
		return apiError(http.StatusInternalServerError, "saving credential %q: %v", id, err)
	}
	adminLogger().Info("credential changed", zap.String("pool", ps.name()), zap.String("auth", id),
		zap.Bool("disabled", a.Disabled), zap.Int("priority", a.Priority), zap.Int("weight", a.EffectiveWeight()))
	v, _ := ps.view(id)
	return writeJSON(w, http.StatusOK, v)
}

// delete removes a stored credential from storage and from the pool. A
// record that is in storage but not in the pool (one that does not parse)
// can be deleted too.
func (ps poolAdmin) delete(w http.ResponseWriter, r *http.Request, id string) error {
	if ps.pool().IsInline(id) {
		return ps.inlineConflict(id)
	}
	_, inPool := ps.pool().Get(id)
	if !inPool && !ps.pool().HasRecord(r.Context(), id) {
		return ps.unknownAuth(id)
	}
	dropped := ps.pool().Sessions.CountByAuth()[id]
	if err := ps.pool().Delete(r.Context(), id); err != nil {
		return apiError(http.StatusInternalServerError, "deleting credential %q: %v", id, err)
	}
	adminLogger().Info("credential deleted", zap.String("pool", ps.name()), zap.String("auth", id))
	return writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true, "sessions_dropped": dropped})
}

func (ps poolAdmin) reset(w http.ResponseWriter, id string) error {
	c, ok := ps.pool().Get(id)
	if !ok {
		return ps.unknownAuth(id)
	}
	c.Reset()
	adminLogger().Info("credential cooldowns cleared", zap.String("pool", ps.name()), zap.String("auth", id))
	v, _ := ps.view(id)
	return writeJSON(w, http.StatusOK, v)
}

func (ps poolAdmin) sessions(w http.ResponseWriter) error {
	counts := ps.pool().Sessions.CountByAuth()
	total := 0
	for _, n := range counts {
		total += n
	}
	return writeJSON(w, http.StatusOK, map[string]any{"total": total, "by_auth": counts})
}

func (ps poolAdmin) dropSessions(w http.ResponseWriter, r *http.Request) error {
	// Instances sharing the pool's state drop them too (SPEC 14).
	removed := ps.pool().DropSessions(r.URL.Query().Get("auth"))
	return writeJSON(w, http.StatusOK, map[string]int{"removed": removed})
}

// rescanResult is the answer of POST /llm_proxy/pools/<pool>/rescan.
type rescanResult struct {
	// Stored counts the stored credentials now in the pool.
	Stored int `json:"stored"`
	// Skipped are the records that do not parse, by storage key.
	Skipped []skippedRecord `json:"skipped"`
	// Conflicts are stored IDs also declared inline (the inline one wins).
	Conflicts []string `json:"conflicts,omitempty"`
}

type skippedRecord struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// rescan lists storage now, as the periodic rescan does, and reports what
// it found.
func (ps poolAdmin) rescan(w http.ResponseWriter, r *http.Request) error {
	found, err := ps.pool().Rescan(r.Context())
	if err != nil {
		// The reason may name storage internals: it goes to Caddy's log.
		return apiError(http.StatusInternalServerError, "listing credentials in storage failed (see Caddy's log); pool %q keeps its current ones", ps.name())
	}
	res := rescanResult{Stored: found.Stored, Skipped: []skippedRecord{}, Conflicts: found.Conflicts}
	for _, b := range found.Skipped {
		res.Skipped = append(res.Skipped, skippedRecord{Key: b.Key, Error: b.Err.Error()})
	}
	sort.Slice(res.Skipped, func(i, j int) bool { return res.Skipped[i].Key < res.Skipped[j].Key })
	return writeJSON(w, http.StatusOK, res)
}

// splitID takes the "id" field out of a JSON object, keeping the order of
// the other fields.
func splitID(body []byte) (id string, doc []byte, err error) {
	taken, doc, err := takeFields(body, "credential", "id")
	if err != nil {
		return "", nil, err
	}
	v, ok := taken["id"]
	if !ok {
		return "", nil, errors.New(`missing "id": name the credential with an "id" field`)
	}
	if err := json.Unmarshal(v, &id); err != nil {
		return "", nil, errors.New(`"id" must be a string`)
	}
	return id, doc, nil
}

// readBody reads a request body of at most adminMaxBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, adminMaxBody+1))
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(b) > adminMaxBody {
		return nil, apiError(http.StatusRequestEntityTooLarge, "body larger than %d bytes", adminMaxBody)
	}
	return b, nil
}

// decodeStrict reads a JSON body into v, refusing unknown fields; what
// names the body in the 400 answer.
func decodeStrict(r *http.Request, v any, what string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiError(http.StatusBadRequest, "%s: %v", what, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return apiError(http.StatusInternalServerError, "encoding response: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

func methodNotAllowed(w http.ResponseWriter, methods ...string) error {
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return apiError(http.StatusMethodNotAllowed, "method not allowed; use %s", strings.Join(methods, " or "))
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func adminLogger() *zap.Logger { return caddy.Log().Named("admin.api.llm_proxy") }

// Interface guards
var (
	_ caddy.Module      = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
