package mockllm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// oauthFaultRequest is the JSON body of POST /_mock/oauth/faults.
// RetryAfter is a Go duration string ("30s") or a number of seconds.
type oauthFaultRequest struct {
	Account    string          `json:"account"`
	Status     int             `json:"status"`
	RetryAfter json.RawMessage `json:"retry_after"`
	Body       string          `json:"body"`
	Refuse     bool            `json:"refuse"`
	Times      int             `json:"times"`
}

func (fr *oauthFaultRequest) fault() (OAuthFault, error) {
	f := OAuthFault{Status: fr.Status, Body: fr.Body, Refuse: fr.Refuse, Times: fr.Times}
	d, err := parseDuration(fr.RetryAfter, time.Second)
	f.RetryAfter = d
	if err == nil && fr.Account == "" {
		err = mockError(`"account" is required (an account label or "*")`)
	}
	return f, err
}

// parseDuration reads a Go duration string or a number of units.
func parseDuration(raw json.RawMessage, unit time.Duration) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseFloat(string(raw), 64)
	return time.Duration(n * float64(unit)), err
}

// serveOAuthControl serves the fake OAuth server's controls:
//
//	GET    /_mock/oauth/stats     per-account counters (JSON object by label)
//	GET    /_mock/oauth/accounts  latest tokens per account, and the clock
//	GET    /_mock/oauth/faults    token-endpoint faults by account
//	POST   /_mock/oauth/faults    {"account": "label" or "*", "status": 429, "retry_after": "30s", "times": 1, "body": "", "refuse": false}
//	DELETE /_mock/oauth/faults    clear them (?account=A: only A's)
//	POST   /_mock/oauth/revoke    {"account": "label"}: kill its refresh tokens
//	POST   /_mock/oauth/advance   {"by": "2h"} (or seconds): move the clock forward
func (s *Server) serveOAuthControl(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + strings.TrimPrefix(r.URL.Path, "/_mock/oauth/") {
	case "GET stats":
		writeControlJSON(w, http.StatusOK, s.OAuthStats())
	case "GET accounts":
		s.oauthAccountsJSON(w)
	case "GET faults":
		s.oauthFaultsJSON(w)
	case "DELETE faults":
		s.ClearOAuthFaults(r.URL.Query().Get("account"))
		w.WriteHeader(http.StatusNoContent)
	case "POST faults":
		s.postOAuthFault(w, r)
	case "POST revoke":
		var req struct {
			Account string `json:"account"`
		}
		if err := decodeControl(r, &req); err != nil || !s.RevokeOAuth(req.Account) {
			writeControlJSON(w, http.StatusNotFound, map[string]string{"error": "unknown account"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "POST advance":
		s.postAdvance(w, r)
	default:
		writeControlJSON(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint"})
	}
}

// oauthFaultsJSON writes GET /_mock/oauth/faults, retry_after as a
// duration string.
func (s *Server) oauthFaultsJSON(w http.ResponseWriter) {
	type view struct {
		OAuthFault
		RetryAfter string `json:"retry_after,omitempty"`
	}
	out := make(map[string]view)
	for k, f := range s.OAuthFaults() {
		v := view{OAuthFault: f}
		if f.RetryAfter > 0 {
			v.RetryAfter = f.RetryAfter.String()
		}
		out[k] = v
	}
	writeControlJSON(w, http.StatusOK, out)
}

// postOAuthFault serves POST /_mock/oauth/faults.
func (s *Server) postOAuthFault(w http.ResponseWriter, r *http.Request) {
	var fr oauthFaultRequest
	err := decodeControl(r, &fr)
	var f OAuthFault
	if err == nil {
		f, err = fr.fault()
	}
	if err != nil {
		writeControlJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.SetOAuthFault(fr.Account, f)
	w.WriteHeader(http.StatusNoContent)
}

// postAdvance serves POST /_mock/oauth/advance.
func (s *Server) postAdvance(w http.ResponseWriter, r *http.Request) {
	var req struct {
		By json.RawMessage `json:"by"`
	}
	err := decodeControl(r, &req)
	var d time.Duration
	if err == nil {
		d, err = parseDuration(req.By, time.Second)
	}
	if err == nil && d < 0 {
		err = mockError("the clock only moves forward")
	}
	if err != nil {
		writeControlJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.AdvanceClock(d)
	writeControlJSON(w, http.StatusOK, map[string]time.Time{"now": s.OAuthNow()})
}

func decodeControl(r *http.Request, v any) error {
	return json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(v)
}

// oauthAccountsJSON writes GET /_mock/oauth/accounts.
func (s *Server) oauthAccountsJSON(w http.ResponseWriter) {
	type account struct {
		Provider  string `json:"provider"`
		AccountID string `json:"account_id"`
		Email     string `json:"email"`
		OAuthTokens
	}
	out := map[string]any{"now": s.OAuthNow()}
	accounts := make(map[string]account)
	o := s.oauth
	o.mu.RLock()
	for label, a := range o.accounts {
		t := a.latest
		t.Revoked = a.revoked
		accounts[label] = account{Provider: a.Provider, AccountID: a.AccountID, Email: a.Email, OAuthTokens: t}
	}
	o.mu.RUnlock()
	out["accounts"] = accounts
	writeControlJSON(w, http.StatusOK, out)
}
