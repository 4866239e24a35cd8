package llmproxy

import (
	"net/http"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// defaultUsageWindow is the window of GET .../usage without ?since.
const defaultUsageWindow = time.Hour

// usageAnswer is the answer of GET /llm_proxy/pools/<pool>/usage: the
// pool's name and its usage report.
type usageAnswer struct {
	Pool string `json:"pool"`
	pool.UsageReport
}

// usage answers GET /llm_proxy/pools/<pool>/usage?since=<duration>: the
// requests, failovers and tokens of the pool over the last <duration> (a
// Go duration such as 30m or 6h, at most 24h; default 1h), in all, per
// client key label, per credential and per model (see pool.UsageReport).
// Within the current hour the window starts at a whole minute; beyond it,
// at a whole hour: "since" in the answer says where it starts.
func (ps poolAdmin) usage(w http.ResponseWriter, r *http.Request) error {
	window, err := usageWindow(r)
	if err != nil {
		return err
	}
	rep := ps.p.Usage(clock.Now().Add(-window))
	return writeJSON(w, http.StatusOK, usageAnswer{Pool: ps.p.Name(), UsageReport: rep})
}

// usageWindow reads ?since: one Go duration above zero and at most
// pool.MaxUsageWindow.
func usageWindow(r *http.Request) (time.Duration, error) {
	values := r.URL.Query()["since"]
	switch len(values) {
	case 0:
		return defaultUsageWindow, nil
	case 1:
	default:
		return 0, apiError(http.StatusBadRequest, "since is given %d times; give it once", len(values))
	}
	d, err := time.ParseDuration(values[0])
	if err != nil || d <= 0 || d > pool.MaxUsageWindow {
		shown := values[0]
		if len(shown) > 32 {
			shown = shown[:32] + "…"
		}
		return 0, apiError(http.StatusBadRequest,
			"since must be a duration above 0 and at most 24h, such as 15m, 1h or 24h (default 1h); got %q", shown)
	}
	return d, nil
}
