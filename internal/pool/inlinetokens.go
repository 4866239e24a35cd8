package pool

// Tokens of inline OAuth credentials. An inline credential's record is the
// config, which llm_proxy never rewrites; the tokens a refresh rotates are
// kept in a document of their own in the config's storage, beside the
// stored credentials but never under storage_prefix:
// llm_proxy/<pool>/oauth/<id>.json, or <storage_prefix>.oauth/<id>.json
// when storage_prefix and that path contain one another. A restart or
// reload takes the tokens from there, not the config's spent refresh token.
//
// Precedence: the document records (as a SHA-256 hash) the refresh token
// the config declared when the tokens were obtained. While the config
// declares that same token, the document's tokens win; once the config
// declares another one (the user logged in again and pasted the new
// token), the config wins and its token is refreshed from then on.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// inlineTokens is the document that keeps an inline credential's
// refreshed tokens.
type inlineTokens struct {
	// ConfigToken is the hex SHA-256 of the refresh token the config
	// declared when these tokens were obtained from it.
	ConfigToken  string `json:"config_refresh_token_sha256"`
	Provider     string `json:"provider"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token,omitempty"`
	Expired      string `json:"expired,omitempty"`
	LastRefresh  string `json:"last_refresh,omitempty"`
	Email        string `json:"email,omitempty"`
	AccountID    string `json:"account_id,omitempty"`
}

// configToken is the hash inlineTokens.ConfigToken holds for a refresh
// token of the config.
func configToken(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(sum[:])
}

// tokensOf returns the document keeping rec's tokens, obtained from the
// config's refresh token configRT.
func tokensOf(rec *auth.Auth, configRT string) inlineTokens {
	return inlineTokens{
		ConfigToken:  configToken(configRT),
		Provider:     rec.Provider,
		AccessToken:  rec.AccessToken,
		RefreshToken: rec.RefreshToken,
		IDToken:      rec.IDToken,
		Expired:      rec.Expired,
		LastRefresh:  rec.LastRefresh,
		Email:        rec.Email,
		AccountID:    rec.AccountID,
	}
}

// parseInlineTokens decodes a tokens document.
func parseInlineTokens(data []byte) (inlineTokens, error) {
	var d inlineTokens
	if err := json.Unmarshal(data, &d); err != nil {
		return d, errors.New("not a JSON tokens document")
	}
	if d.AccessToken == "" || d.RefreshToken == "" {
		return d, errors.New("tokens document without access_token or refresh_token")
	}
	return d, nil
}

// over returns the config's record orig with the document's tokens, or
// orig itself when the document belongs to another refresh token of the
// config or another provider.
func (d inlineTokens) over(orig *auth.Auth) *auth.Auth {
	if d.ConfigToken != configToken(orig.RefreshToken) || d.Provider != orig.Provider {
		return orig
	}
	rec := orig.Clone()
	rec.AccessToken, rec.RefreshToken, rec.IDToken = d.AccessToken, d.RefreshToken, d.IDToken
	rec.Expired, rec.LastRefresh = d.Expired, d.LastRefresh
	if d.Email != "" {
		rec.Email = d.Email
	}
	if d.AccountID != "" {
		rec.AccountID = d.AccountID
	}
	return rec
}

// tokenStorage returns where a's inline credentials keep their tokens:
// the storage of a's store and the key prefix; nil without storage.
func (p *Pool) tokenStorage(a *Attachment) (certmagic.Storage, string) {
	return p.besideRecords(a, "oauth")
}

// besideRecords returns the storage of a's records and the key prefix of
// the pool's documents of the given kind: llm_proxy/<pool>/<kind>, or
// <storage_prefix>.<kind> when that and the records' prefix contain one
// another (so neither is ever listed as the other); nil without Caddy
// storage.
func (p *Pool) besideRecords(a *Attachment, kind string) (certmagic.Storage, string) {
	cs, ok := a.cfg.Store.(*auth.CaddyStore)
	if !ok || cs.Storage == nil {
		return nil, ""
	}
	prefix := "llm_proxy/" + p.name + "/" + kind
	records := strings.Trim(cs.Prefix, "/")
	if within(prefix, records) || within(records, prefix) {
		prefix = records + "." + kind
	}
	return cs.Storage, prefix
}

// within reports whether key is dir or below it.
func within(key, dir string) bool {
	return key == dir || strings.HasPrefix(key, dir+"/")
}

// configRecord returns a's inline credential id as the config declares it
// (a.cfg is never written after Attach, so no lock is needed; a.inline,
// which refreshes replace, is read only under p.life).
func (a *Attachment) configRecord(id string) *auth.Auth {
	for _, r := range a.cfg.Inline {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// inlineWithTokens returns a's inline credentials, each refreshable one
// with the tokens kept for it in storage when there are any. A document
// that cannot be read leaves the config's tokens in place (a refresh reads
// it again under its lock before using any refresh token).
func (p *Pool) inlineWithTokens(ctx context.Context, a *Attachment) []*auth.Auth {
	st, prefix := p.tokenStorage(a)
	if st == nil || len(a.cfg.OAuth) == 0 {
		return a.cfg.Inline
	}
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	out := make([]*auth.Auth, len(a.cfg.Inline))
	for i, rec := range a.cfg.Inline {
		out[i] = rec
		if _, ok := refreshSettings(rec, a.cfg.OAuth); !ok {
			continue
		}
		key := prefix + "/" + rec.ID + ".json"
		data, err := st.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var d inlineTokens
		if err == nil {
			d, err = parseInlineTokens(data)
		}
		if err != nil {
			a.cfg.Logger.Warn("cannot read the refreshed tokens of an inline credential; using the config's until the next refresh",
				zap.String("pool", p.name), zap.String("auth", rec.ID), zap.String("key", key), zap.Error(err))
			continue
		}
		out[i] = d.over(rec)
	}
	return out
}

// inline refreshes an inline credential under the storage lock of its
// tokens document, after re-reading it: tokens another instance refreshed
// meanwhile are taken over instead. Without storage the tokens live in
// memory only.
func (j *refreshJob) inline(ctx context.Context) refreshOutcome {
	orig := j.a.configRecord(j.c.id)
	st, prefix := j.p.tokenStorage(j.a)
	if st == nil || orig == nil {
		return j.memory(ctx, j.c.Auth())
	}
	key := prefix + "/" + orig.ID + ".json"
	var out refreshOutcome
	var current *auth.Auth
	_, err := auth.UpdateDocument(ctx, st, key, func(old []byte) ([]byte, error) {
		current = orig
		if old != nil {
			d, err := parseInlineTokens(old)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", key, err)
			}
			current = d.over(orig)
		}
		next, err := j.try(ctx, current, &out)
		if next == nil {
			return nil, err
		}
		data, err := json.MarshalIndent(tokensOf(next, orig.RefreshToken), "", "  ")
		return append(data, '\n'), err
	})
	return out.settled(current, err)
}
