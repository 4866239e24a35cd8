package pool

// Stored credentials: listings of the active config's store (on attach,
// periodic rescans and the admin API's rescan) and the admin API's writes.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// storageTimeout bounds one listing of storage, so a slow storage backend
// cannot hang a reload.
const storageTimeout = 10 * time.Second

// Rescan is what one listing of storage found.
type Rescan struct {
	// Stored counts the stored credentials now in the pool.
	Stored int
	// Skipped are the records that could not be read or do not parse.
	Skipped []auth.LoadError
	// Conflicts are stored IDs also declared inline; the inline
	// credential wins.
	Conflicts []string
}

// Rescan lists the active config's store now and installs what it holds,
// as the periodic rescan does. When storage cannot be listed, the error
// says so and the pool keeps its current stored credentials; a record that
// is listed but cannot be read keeps its current copy too, so a storage
// hiccup never empties the pool. Records that do not parse are skipped and
// logged once per problem, not once per rescan.
func (p *Pool) Rescan(ctx context.Context) (Rescan, error) {
	return p.rescan(ctx, nil)
}

// rescan lists a's store, or the active config's when a is nil, and
// installs the records while that config is active.
func (p *Pool) rescan(ctx context.Context, a *Attachment) (Rescan, error) {
	p.store.Lock()
	defer p.store.Unlock()
	if err := ctx.Err(); err != nil {
		return Rescan{}, err
	}
	p.life.Lock()
	if a == nil {
		a = p.active()
	}
	active := a != nil && p.active() == a
	var current []*auth.Auth
	if active {
		current = a.stored
	}
	p.life.Unlock()
	if !active {
		return Rescan{}, fmt.Errorf("pool %q has no active config to rescan", p.name)
	}

	listed, bad, err := p.list(ctx, a, current)
	if err != nil {
		return Rescan{}, err
	}
	stored, conflicts := withoutInline(listed, a.cfg.Inline)
	p.warn(a.cfg.Logger, bad, conflicts)

	p.life.Lock()
	defer p.life.Unlock()
	a.stored = stored
	if p.active() == a {
		p.setStored(stored)
		p.wakeRefresh()
	}
	return Rescan{Stored: len(stored), Skipped: bad, Conflicts: conflicts}, nil
}

// list lists a's store, bounded by storageTimeout. When storage cannot be
// listed it logs why and returns current with the error; a record that is
// listed but cannot be read keeps its copy in current. Must hold p.store.
func (p *Pool) list(ctx context.Context, a *Attachment, current []*auth.Auth) ([]*auth.Auth, []auth.LoadError, error) {
	if a.cfg.Store == nil {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	auths, bad, err := a.cfg.Store.List(ctx)
	if err != nil {
		a.cfg.Logger.Warn("listing credentials in storage failed; keeping the current ones",
			zap.String("pool", p.name), zap.Error(err))
		return current, nil, fmt.Errorf("listing credentials in storage: %w", err)
	}
	return keepUnreadable(auths, bad, current), bad, nil
}

// keepUnreadable adds to listed the current record of every ID whose key
// was listed but could not be read.
func keepUnreadable(listed []*auth.Auth, bad []auth.LoadError, current []*auth.Auth) []*auth.Auth {
	added := false
	for _, b := range bad {
		if !b.Unreadable || b.ID == "" {
			continue
		}
		i, found := sort.Find(len(current), func(i int) int { return strings.Compare(b.ID, current[i].ID) })
		if found {
			listed = append(listed, current[i])
			added = true
		}
	}
	if added {
		sort.Slice(listed, func(i, j int) bool { return listed[i].ID < listed[j].ID })
	}
	return listed
}

// withoutInline splits off the stored records whose ID is declared inline.
func withoutInline(stored, inline []*auth.Auth) (kept []*auth.Auth, conflicts []string) {
	if len(inline) == 0 {
		return stored, nil
	}
	ids := idSet(inline)
	kept = make([]*auth.Auth, 0, len(stored))
	for _, a := range stored {
		if ids[a.ID] {
			conflicts = append(conflicts, a.ID)
			continue
		}
		kept = append(kept, a)
	}
	return kept, conflicts
}

// whereStored names the storage key of the record id, when the store
// knows it, for error messages.
func whereStored(s auth.Store, id string) string {
	if cs, ok := s.(*auth.CaddyStore); ok {
		return " at " + cs.Key(id)
	}
	return ""
}

// warn logs the problems of one listing, each once: a record is warned
// about again only when its problem changes. Must hold p.store.
func (p *Pool) warn(log *zap.Logger, bad []auth.LoadError, conflicts []string) {
	seen := make(map[string]string, len(bad)+len(conflicts))
	for _, b := range bad {
		msg := b.Err.Error()
		seen[b.Key] = msg
		switch {
		case p.warned[b.Key] == msg:
		case b.Unreadable:
			log.Warn("cannot read credential record; a credential already loaded under its ID keeps serving",
				zap.String("pool", p.name), zap.String("key", b.Key), zap.Error(b.Err))
		default:
			log.Warn("skipping credential record that does not parse",
				zap.String("pool", p.name), zap.String("key", b.Key), zap.Error(b.Err))
		}
	}
	for _, id := range conflicts {
		key, msg := "inline:"+id, "declared inline"
		seen[key] = msg
		if p.warned[key] != msg {
			log.Warn("skipping stored credential whose ID is declared inline",
				zap.String("pool", p.name), zap.String("auth", id))
		}
	}
	p.warned = seen
}

// Save writes a stored credential's record to the active config's store
// and installs it at once (the admin API's writes, logins). A credential
// now disabled loses its bindings. Credentials declared inline are refused.
//
// The write re-reads the stored record under its storage lock. When rec
// carries the OAuth tokens the pool holds for the credential while storage
// holds others (a refresh wrote them meanwhile, here or in another
// instance), storage's tokens are kept: a change of other fields (such as
// the admin API's PATCH, made on the pool's copy) never writes back a
// spent refresh token. A record with tokens of its own (a new login)
// replaces them.
func (p *Pool) Save(ctx context.Context, rec *auth.Auth) error {
	p.store.Lock()
	defer p.store.Unlock()
	a, err := p.writable(rec.ID)
	if err != nil {
		return err
	}
	var held *auth.Auth
	if c, ok := p.Get(rec.ID); ok {
		held = c.Auth()
	}
	written, _, err := a.cfg.Store.Update(ctx, rec.ID, func(cur *auth.Auth) (*auth.Auth, error) {
		if cur != nil && held != nil && sameTokens(rec, held) && !sameTokens(cur, held) {
			return withTokens(rec, cur), nil
		}
		return rec, nil
	})
	if err != nil {
		return err
	}
	p.life.Lock()
	defer p.life.Unlock()
	a.stored = withRecord(a.stored, rec.ID, written)
	if p.active() == a {
		p.PutStored(written)
		p.wakeRefresh()
	}
	return nil
}

// sameTokens reports whether a and b hold the same OAuth tokens.
func sameTokens(a, b *auth.Auth) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken
}

// withTokens returns rec with the OAuth tokens (and their times) of from.
func withTokens(rec, from *auth.Auth) *auth.Auth {
	out := rec.Clone()
	out.AccessToken, out.RefreshToken, out.IDToken = from.AccessToken, from.RefreshToken, from.IDToken
	out.Expired, out.LastRefresh = from.Expired, from.LastRefresh
	return out
}

// Delete deletes a stored credential's record from the active config's
// store and removes the credential at once, dropping its bindings.
// Deleting a record that does not exist is not an error.
func (p *Pool) Delete(ctx context.Context, id string) error {
	p.store.Lock()
	defer p.store.Unlock()
	a, err := p.writable(id)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.Delete(ctx, id); err != nil {
		return err
	}
	p.life.Lock()
	defer p.life.Unlock()
	a.stored = withRecord(a.stored, id, nil)
	if p.active() == a {
		p.removeStored(id)
	}
	return nil
}

// writable returns the active config when the record id may be written
// to its store.
func (p *Pool) writable(id string) (*Attachment, error) {
	a, err := p.activeConfig()
	if err != nil {
		return nil, err
	}
	if a.cfg.Store == nil {
		return nil, fmt.Errorf("pool %q has no storage", p.name)
	}
	if slices.ContainsFunc(a.cfg.Inline, func(i *auth.Auth) bool { return i.ID == id }) {
		return nil, fmt.Errorf("credential %q is declared inline: change it in the config", id)
	}
	return a, nil
}

// HasRecord reports whether the active config's storage holds a record
// named id, whether or not it parses (the admin API deletes records that
// do not parse too). It is false for stores other than auth.CaddyStore.
func (p *Pool) HasRecord(ctx context.Context, id string) bool {
	a, err := p.activeConfig()
	if err != nil {
		return false
	}
	cs, ok := a.cfg.Store.(*auth.CaddyStore)
	if !ok || auth.ValidateID(id) != nil {
		return false
	}
	return cs.Storage.Exists(ctx, cs.Key(id))
}

// withRecord returns stored (sorted by ID) with the record id replaced by
// rec, or removed when rec is nil.
func withRecord(stored []*auth.Auth, id string, rec *auth.Auth) []*auth.Auth {
	out := make([]*auth.Auth, 0, len(stored)+1)
	for _, s := range stored {
		if s.ID != id {
			out = append(out, s)
		}
	}
	if rec != nil {
		out = append(out, rec)
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	}
	return out
}
