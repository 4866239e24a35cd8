package llmproxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

func TestAdminUsage(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)
	fake := clock.NewFake(now)
	defer clock.Install(fake.Now)()
	f := newAdminFixture(t, "usage-admin", "")
	f.p.RecordRequest(pool.UsageKey{Client: "alice", Auth: "c1", Model: "m1"},
		pool.Tokens{Input: 10, Output: 20, CacheRead: 30, CacheWrite: 40}, now.Add(-10*time.Minute))
	f.p.RecordRequest(pool.UsageKey{Client: "", Auth: "c2", Model: "m2"}, pool.Tokens{Output: 1}, now.Add(-3*time.Hour))
	f.p.RecordFailover(pool.UsageKey{Client: "alice", Auth: "c2", Model: "m1"}, now.Add(-time.Minute))

	get := func(query string, want int) map[string]any {
		t.Helper()
		w := adminCall(t, "127.0.0.1:1", http.MethodGet, "/llm_proxy/pools/usage-admin/usage"+query, "", nil)
		if w.Code != want {
			t.Fatalf("GET usage%s: %d, want %d: %s", query, w.Code, want, w.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("not JSON: %s", w.Body)
		}
		return v
	}
	v := get("", http.StatusOK) // the last hour
	if v["pool"] != "usage-admin" || v["since"] != "2026-03-02T11:00:00Z" || v["until"] != "2026-03-02T12:30:00Z" {
		t.Errorf("answer %v", v)
	}
	totals := v["totals"].(map[string]any)
	if totals["requests"] != 1.0 || totals["failovers"] != 1.0 || totals["cache_hit_rate"] != 0.375 {
		t.Errorf("totals %v", totals)
	}
	if auths := v["auths"].([]any); len(auths) != 2 || auths[0].(map[string]any)["auth"] != "c1" {
		t.Errorf("auths %v", auths)
	}

	v = get("?since=24h", http.StatusOK)
	clients := v["clients"].([]any)
	if len(clients) != 2 || clients[1].(map[string]any)["client"] != "" || clients[1].(map[string]any)["output_tokens"] != 1.0 {
		t.Errorf("clients over 24h %v", clients)
	}
	v = get("?since=5m", http.StatusOK)
	if totals := v["totals"].(map[string]any); totals["requests"] != 0.0 || totals["failovers"] != 1.0 {
		t.Errorf("totals over 5m %v", totals)
	}

	for _, q := range []string{"?since=25h", "?since=0", "?since=-1h", "?since=1d", "?since=" + strings.Repeat("9", 1000), "?since=1h&since=2h", "?since="} {
		w := adminCall(t, "127.0.0.1:1", http.MethodGet, "/llm_proxy/pools/usage-admin/usage"+q, "", nil)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "since") {
			t.Errorf("GET usage%.40s: %d %s", q, w.Code, w.Body)
		}
		if len(w.Body.String()) > 400 {
			t.Errorf("GET usage%.40s: the error echoes too much: %d bytes", q, w.Body.Len())
		}
	}
	if w := adminCall(t, "127.0.0.1:1", http.MethodPost, "/llm_proxy/pools/usage-admin/usage", "", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST usage: %d", w.Code)
	}
}

// TestAdminUsageNeedsTheSecret: the usage of a pool with a management
// secret is shown only with it.
func TestAdminUsageNeedsTheSecret(t *testing.T) {
	f := newAdminFixture(t, "usage-admin-secret", "usage-secret-1")
	f.p.RecordRequest(pool.UsageKey{Client: "alice", Auth: "c1", Model: "m1"}, pool.Tokens{Output: 5}, clock.Now())
	path := "/llm_proxy/pools/usage-admin-secret/usage"
	if w := adminCall(t, "10.9.8.7:1", http.MethodGet, path, "", nil); w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "alice") {
		t.Errorf("without the secret: %d %s", w.Code, w.Body)
	}
	w := adminCall(t, "10.9.8.7:1", http.MethodGet, path, "", map[string]string{"Authorization": "Bearer usage-secret-1"})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"client":"alice"`) {
		t.Errorf("with the secret: %d %s", w.Code, w.Body)
	}
}
