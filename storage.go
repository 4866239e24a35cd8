package llmproxy

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// storageTimeout bounds one listing of storage, so a slow storage backend
// cannot hang a reload.
const storageTimeout = 10 * time.Second

// listStored lists the credential records in storage. Failures are logged,
// never fatal: the pool keeps serving what it has, and the next rescan tries
// again. When storage cannot be listed, ok is false and auths are the
// pool's current stored credentials; a record that is listed but cannot be
// read keeps its current copy too. A storage hiccup therefore never empties
// the pool, on a rescan or on a reload.
func (h *Handler) listStored(ctx context.Context) (auths []*auth.Auth, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	auths, bad, err := h.store.List(ctx)
	if err != nil {
		h.logger.Warn("listing credentials in storage failed; keeping the current ones", zap.Error(err))
		return h.pool.StoredAuths(), false
	}
	h.warnBad(bad)
	return keepUnreadable(auths, bad, h.pool.StoredAuths()), true
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

// warnBad logs one warning per record that does not parse, not one per
// rescan: a record is warned about again only when its error changes.
func (h *Handler) warnBad(bad []auth.LoadError) {
	liveMu.Lock()
	defer liveMu.Unlock()
	seen := make(map[string]string, len(bad))
	for _, b := range bad {
		msg := b.Err.Error()
		seen[b.Key] = msg
		if h.badRecords[b.Key] == msg {
			continue
		}
		if b.Unreadable {
			h.logger.Warn("cannot read credential record; a credential already loaded under its ID keeps serving",
				zap.String("key", b.Key), zap.Error(b.Err))
		} else {
			h.logger.Warn("skipping credential record that does not parse", zap.String("key", b.Key), zap.Error(b.Err))
		}
	}
	h.badRecords = seen
}

// loadStored lists storage again and, when this handler's config is the one
// serving the pool, installs the records at once. It returns the stored IDs
// skipped because they are declared inline; ok is false when storage could
// not be listed. Listing and installing hold h.storeMu, as admin writes do,
// so a listing taken before an admin write never undoes it.
func (h *Handler) loadStored(ctx context.Context) (conflicts []string, ok bool) {
	h.storeMu.Lock()
	defer h.storeMu.Unlock()
	auths, ok := h.listStored(ctx)
	if !ok {
		return nil, false
	}
	liveMu.Lock()
	h.stored = auths
	top := isTop(h)
	liveMu.Unlock()
	if !top {
		return nil, true
	}
	conflicts = h.pool.SetStored(auths)
	for _, id := range conflicts {
		h.logger.Warn("skipping stored credential whose ID is declared inline", zap.String("auth", id))
	}
	return conflicts, true
}

// saveStored writes a record to storage and installs it in the pool at
// once (for the admin API).
func (h *Handler) saveStored(ctx context.Context, a *auth.Auth) error {
	h.storeMu.Lock()
	defer h.storeMu.Unlock()
	if _, err := h.store.Save(ctx, a); err != nil {
		return err
	}
	h.rememberStored(a.ID, a)
	h.pool.PutStored(a)
	return nil
}

// deleteStored deletes a record from storage and removes it from the pool
// at once, dropping its bindings (for the admin API).
func (h *Handler) deleteStored(ctx context.Context, id string) error {
	h.storeMu.Lock()
	defer h.storeMu.Unlock()
	if err := h.store.Delete(ctx, id); err != nil {
		return err
	}
	h.rememberStored(id, nil)
	h.pool.RemoveStored(id)
	return nil
}

// rememberStored records an admin write in the handler's copy of the
// stored records (a nil a removes id), so that restoring this handler's
// credentials after a refused reload keeps the write.
func (h *Handler) rememberStored(id string, a *auth.Auth) {
	liveMu.Lock()
	defer liveMu.Unlock()
	out := make([]*auth.Auth, 0, len(h.stored)+1)
	for _, s := range h.stored {
		if s.ID != id {
			out = append(out, s)
		}
	}
	if a != nil {
		out = append(out, a)
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	}
	h.stored = out
}

// startRescan lists storage every RescanInterval until Cleanup.
func (h *Handler) startRescan() {
	interval := DefaultRescanInterval
	if h.RescanInterval != nil {
		interval = time.Duration(*h.RescanInterval)
	}
	if interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.loadStored(ctx)
			}
		}
	}()
	h.stopRescan = func() {
		cancel()
		wg.Wait()
	}
}

// live keeps, per pool name, the provisioned handlers using it, newest
// last. The newest one's credentials are the pool's: when a config fails to
// load after its llm_proxy handlers were provisioned, their cleanup makes the
// still-running config's handler the newest again and its credentials are
// restored, so a refused reload changes nothing.
var (
	liveMu sync.Mutex
	live   = map[string][]*Handler{}
)

func registerLive(h *Handler) {
	liveMu.Lock()
	live[h.Pool] = append(live[h.Pool], h)
	liveMu.Unlock()
}

func unregisterLive(h *Handler) {
	liveMu.Lock()
	stack := live[h.Pool]
	wasTop := len(stack) > 0 && stack[len(stack)-1] == h
	stack = slices.DeleteFunc(stack, func(x *Handler) bool { return x == h })
	var restore *Handler
	if len(stack) == 0 {
		delete(live, h.Pool)
	} else {
		live[h.Pool] = stack
		if wasTop {
			restore = stack[len(stack)-1]
		}
	}
	liveMu.Unlock()
	if restore != nil {
		restore.logger.Info("restoring the credentials and settings of the running config", zap.String("pool", restore.Pool))
		restore.applyToPool()
	}
}

// isTop reports whether h is the newest handler of its pool. Must hold liveMu.
func isTop(h *Handler) bool {
	stack := live[h.Pool]
	return len(stack) > 0 && stack[len(stack)-1] == h
}

// applyToPool makes this handler's settings the pool's: its inline and
// stored credentials and its binding TTL.
func (h *Handler) applyToPool() {
	liveMu.Lock()
	stored := h.stored
	liveMu.Unlock()
	h.pool.SetMembers(h.inline, stored)
	ttl := DefaultAffinityTTL
	if h.Routing != nil && h.Routing.SessionAffinityTTL > 0 {
		ttl = time.Duration(h.Routing.SessionAffinityTTL)
	}
	h.pool.Sessions.SetTTL(ttl)
}

// liveHandler returns the newest handler serving the pool name.
func liveHandler(name string) (*Handler, bool) {
	liveMu.Lock()
	defer liveMu.Unlock()
	stack := live[name]
	if len(stack) == 0 {
		return nil, false
	}
	return stack[len(stack)-1], true
}
