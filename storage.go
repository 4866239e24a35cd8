package llmproxy

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/auth"
)

// storageTimeout bounds one listing of storage, so a slow storage backend
// cannot hang a reload.
const storageTimeout = 10 * time.Second

// listStored lists the credential records in storage. Failures are logged,
// never fatal: the pool keeps serving what it has, and the next rescan tries
// again. ok is false when storage could not be listed.
func (h *Handler) listStored(ctx context.Context) (auths []*auth.Auth, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	auths, bad, err := h.store.List(ctx)
	if err != nil {
		h.logger.Warn("listing credentials in storage failed; keeping the current ones", zap.Error(err))
		return nil, false
	}
	h.warnBad(bad)
	return auths, true
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
		if h.badRecords[b.Key] != msg {
			h.logger.Warn("skipping credential record that does not parse", zap.String("key", b.Key), zap.Error(b.Err))
		}
	}
	h.badRecords = seen
}

// loadStored lists storage again and, when this handler's config is the one
// serving the pool, installs the records at once.
func (h *Handler) loadStored(ctx context.Context) {
	auths, ok := h.listStored(ctx)
	if !ok {
		return
	}
	liveMu.Lock()
	h.stored = auths
	top := isTop(h)
	liveMu.Unlock()
	if !top {
		return
	}
	for _, id := range h.pool.SetStored(auths) {
		h.logger.Warn("skipping stored credential whose ID is declared inline", zap.String("auth", id))
	}
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
		restore.logger.Info("restoring the credentials of the running config", zap.String("pool", restore.Pool))
		restore.applyMembers()
	}
}

// isTop reports whether h is the newest handler of its pool. Must hold liveMu.
func isTop(h *Handler) bool {
	stack := live[h.Pool]
	return len(stack) > 0 && stack[len(stack)-1] == h
}

// applyMembers makes this handler's inline and stored credentials the
// pool's.
func (h *Handler) applyMembers() {
	liveMu.Lock()
	stored := h.stored
	liveMu.Unlock()
	h.pool.SetMembers(h.inline, stored)
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
