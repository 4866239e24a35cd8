package llmproxy

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// countSamples counts the samples of family name in reg whose pool label
// is poolName.
func countSamples(t *testing.T, reg prometheus.Gatherer, name, poolName string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "pool" && lp.GetValue() == poolName {
					n++
				}
			}
		}
	}
	return n
}

func TestUsageMetrics(t *testing.T) {
	const name = "usage-metrics"
	p := pool.Acquire(name)
	defer pool.Release(name)
	reg := prometheus.NewRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k := pool.UsageKey{Client: "alice", Auth: "c1", Model: "claude-sonnet-4-5"}
	p.RecordRequest(k, pool.Tokens{Input: 1, Output: 2, CacheRead: 3, CacheWrite: 4}, now)
	p.RecordRequest(k, pool.Tokens{Input: 10, Output: 20, CacheRead: 30, CacheWrite: 40}, now)
	p.RecordRequest(pool.UsageKey{Auth: "c2"}, pool.Tokens{}, now)
	// Names Prometheus would refuse are shown with replacement characters.
	p.RecordRequest(pool.UsageKey{Client: "bad\xffa", Auth: "c1", Model: "m"}, pool.Tokens{Output: 1}, now)
	p.RecordRequest(pool.UsageKey{Client: "bad\xfea", Auth: "c1", Model: "m"}, pool.Tokens{Output: 1}, now)

	labels := func(client, auth, model string, typ ...string) map[string]string {
		l := map[string]string{"pool": name, "client": client, "auth": auth, "model": model}
		if len(typ) > 0 {
			l["type"] = typ[0]
		}
		return l
	}
	for _, tc := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"caddy_llm_proxy_usage_requests_total", labels("alice", "c1", "claude-sonnet-4-5"), 2},
		{"caddy_llm_proxy_tokens_total", labels("alice", "c1", "claude-sonnet-4-5", "input"), 11},
		{"caddy_llm_proxy_tokens_total", labels("alice", "c1", "claude-sonnet-4-5", "output"), 22},
		{"caddy_llm_proxy_tokens_total", labels("alice", "c1", "claude-sonnet-4-5", "cache_read"), 33},
		{"caddy_llm_proxy_tokens_total", labels("alice", "c1", "claude-sonnet-4-5", "cache_write"), 44},
		{"caddy_llm_proxy_usage_requests_total", labels("", "c2", ""), 1},
		{"caddy_llm_proxy_tokens_total", labels("", "c2", "", "output"), 0},
		{"caddy_llm_proxy_usage_requests_total", labels("bad\uFFFDa", "c1", "m"), 2},
	} {
		if v, ok := metricValue(t, reg, tc.metric, tc.labels); !ok || v != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.metric, tc.labels, v, ok, tc.want)
		}
	}

	// A client naming 5000 models keeps the series bounded.
	for i := range 5000 {
		p.RecordRequest(pool.UsageKey{Client: "mallory", Auth: "c1", Model: "m-" + strconv.Itoa(i)}, pool.Tokens{Output: 1}, now)
	}
	if n := countSamples(t, reg, "caddy_llm_proxy_usage_requests_total", name); n > 260 {
		t.Errorf("%d request series", n)
	}
	if n := countSamples(t, reg, "caddy_llm_proxy_tokens_total", name); n > 4*260 {
		t.Errorf("%d token series", n)
	}
	if v, _ := metricValue(t, reg, "caddy_llm_proxy_tokens_total", labels("mallory", "c1", pool.UsageOther, "output")); v < 5000-256 {
		t.Errorf("other counts %v output tokens", v)
	}
}
