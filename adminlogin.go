package llmproxy

// The admin API's two-step login of subscription credentials (SPEC
// section 12): start a login, send the user to its URL, complete it with
// what the browser was redirected to.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// loginStarted is the answer of POST /llm_proxy/pools/<pool>/logins.
type loginStarted struct {
	// LoginID completes or cancels the login.
	LoginID string `json:"login_id"`
	// URL is the authorize page the user opens in a browser.
	URL      string `json:"url"`
	Provider string `json:"provider"`
	// ID is the credential ID asked for; absent when the credential will
	// be named after the account.
	ID string `json:"id,omitempty"`
	// ExpiresAt is when the login can no longer be completed (RFC 3339).
	ExpiresAt string `json:"expires_at"`
}

// startLogin starts a login. The body is {"provider": "claude"|"codex"},
// optionally with "id" (the credential to write; default: named after the
// account) and any other fields of a record except the ones the login
// writes (base_url, proxy_url, label, priority, weight, models, headers,
// disabled...), which go into the record.
func (ps poolAdmin) startLogin(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	taken, fields, err := takeFields(body, "login", "provider", "id")
	if err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	var opts pool.LoginOptions
	if err := stringField(taken, "provider", &opts.Provider); err != nil {
		return err
	}
	if opts.Provider == "" {
		return apiError(http.StatusBadRequest, `missing "provider": the provider to log in with, such as "claude" or "codex"`)
	}
	if err := stringField(taken, "id", &opts.AuthID); err != nil {
		return err
	}
	if !bytes.Equal(fields, []byte("{}")) {
		opts.Fields = fields
	}
	pl, err := ps.pool().StartLogin(r.Context(), opts, clock.Now())
	if err != nil {
		return ps.loginError(err)
	}
	adminLogger().Info("login started", zap.String("pool", ps.name()), zap.String("provider", pl.Provider),
		zap.String("auth", pl.AuthID), zap.Time("expires", pl.Expires))
	return writeJSON(w, http.StatusCreated, loginStarted{
		LoginID:   pl.ID,
		URL:       pl.URL,
		Provider:  pl.Provider,
		ID:        pl.AuthID,
		ExpiresAt: pl.Expires.UTC().Format(time.RFC3339),
	})
}

// loginCode is the body of POST /llm_proxy/pools/<pool>/logins/<login_id>.
type loginCode struct {
	// Code is what the user pasted: the redirect URL, its query string,
	// Claude's CODE#STATE or the bare code.
	Code string `json:"code"`
}

// completeLogin completes a login and answers with the credential it
// wrote, secrets masked.
func (ps poolAdmin) completeLogin(w http.ResponseWriter, r *http.Request, loginID string) error {
	var c loginCode
	if err := decodeStrict(r, &c, `decoding body (expected {"code": "<the redirect URL or the code>"})`); err != nil {
		return err
	}
	rec, replaced, err := ps.pool().CompleteLogin(r.Context(), loginID, c.Code, clock.Now())
	if err != nil {
		return ps.loginError(err)
	}
	adminLogger().Info("credential logged in", zap.String("pool", ps.name()), zap.String("auth", rec.ID),
		zap.String("provider", rec.Provider), zap.Bool("replaced", replaced))
	v, ok := ps.view(rec.ID)
	if !ok {
		return apiError(http.StatusInternalServerError, "credential %q was written but is not in pool %q", rec.ID, ps.name())
	}
	return writeJSON(w, http.StatusCreated, v)
}

// cancelLogin drops a pending login.
func (ps poolAdmin) cancelLogin(w http.ResponseWriter, loginID string) error {
	if !ps.pool().CancelLogin(loginID, clock.Now()) {
		return apiError(http.StatusNotFound, "pool %q has no pending login %q", ps.name(), loginID)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"login_id": loginID, "cancelled": true})
}

// loginError turns a pool.LoginError into the admin API's answer. Storage
// failures may name storage internals: they go to Caddy's log.
func (ps poolAdmin) loginError(err error) error {
	var le *pool.LoginError
	if !errors.As(err, &le) {
		return apiError(http.StatusInternalServerError, "%v", err)
	}
	switch le.Kind {
	case pool.LoginInvalid:
		return apiError(http.StatusBadRequest, "%v", err)
	case pool.LoginNotFound:
		return apiError(http.StatusNotFound, "%v", err)
	case pool.LoginConflict:
		return apiError(http.StatusConflict, "%v", err)
	case pool.LoginUnavailable:
		return apiError(http.StatusBadGateway, "%v; start a new login", err)
	}
	adminLogger().Error("login failed", zap.String("pool", ps.name()), zap.Error(err))
	return apiError(http.StatusInternalServerError, "the login could not be written to the storage of pool %q (see Caddy's log); start a new login", ps.name())
}

// stringField decodes the field name of taken, if present, into dst.
func stringField(taken map[string]json.RawMessage, name string, dst *string) error {
	v, ok := taken[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return apiError(http.StatusBadRequest, "%q must be a string", name)
	}
	return nil
}

// takeFields takes the fields names out of a JSON object, keeping the
// order of the other fields in rest. what names the object in errors.
func takeFields(body []byte, what string, names ...string) (taken map[string]json.RawMessage, rest []byte, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("decoding %s: %v", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("the %s must be a JSON object", what)
	}
	taken = make(map[string]json.RawMessage)
	var out bytes.Buffer
	out.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("decoding %s: %v", what, err)
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("decoding field %q: %v", name, err)
		}
		if slices.Contains(names, name) {
			taken[name] = v
			continue
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		out.Write(k)
		out.WriteByte(':')
		out.Write(v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("decoding %s: %v", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("decoding %s: data after the JSON object", what)
	}
	out.WriteByte('}')
	return taken, out.Bytes(), nil
}
