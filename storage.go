package llmproxy

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// storageTimeout bounds one listing of storage, so a slow storage backend
// cannot hang a reload.
const storageTimeout = 10 * time.Second

// loadStored lists storage and installs the records in the pool. Failures
// are logged, never fatal: the pool keeps serving what it has, and the next
// rescan tries again.
func (h *Handler) loadStored(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	auths, bad, err := h.store.List(ctx)
	if err != nil {
		h.logger.Warn("listing credentials in storage failed; keeping the current ones", zap.Error(err))
		return
	}
	for _, b := range bad {
		h.logger.Warn("skipping credential record that does not parse", zap.String("key", b.Key), zap.Error(b.Err))
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

// live maps each pool name to the handler of the newest config using it, so
// the admin API can reach the pool's storage and settings.
var (
	liveMu sync.Mutex
	live   = map[string]*Handler{}
)

func registerLive(h *Handler) {
	liveMu.Lock()
	live[h.Pool] = h
	liveMu.Unlock()
}

func unregisterLive(h *Handler) {
	liveMu.Lock()
	if live[h.Pool] == h {
		delete(live, h.Pool)
	}
	liveMu.Unlock()
}

// liveHandler returns the newest handler serving the pool name.
func liveHandler(name string) (*Handler, bool) {
	liveMu.Lock()
	defer liveMu.Unlock()
	h, ok := live[name]
	return h, ok
}
