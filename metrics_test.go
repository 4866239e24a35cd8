package llmproxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/handler"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

// metricValue is the value of the sample of family name with exactly the
// given labels in reg; ok is false when there is none.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, lp := range got {
		if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
			return false
		}
	}
	return true
}

func TestMetricsSurviveReregistration(t *testing.T) {
	const poolName = "metrics-test-reload"
	// The first config's registry, registered into twice (two handlers).
	reg1 := prometheus.NewPedanticRegistry()
	obs := newObserver(reg1, nil)
	if err := registerMetrics(reg1); err != nil {
		t.Fatalf("second registration into the same registry: %v", err)
	}

	req := map[string]string{"pool": poolName, "auth": "c1", "status": "200"}
	before, _ := metricValue(t, reg1, "caddy_llm_proxy_requests_total", req)
	obs.Request(poolName, "c1", http.StatusOK, 1, selector.DecisionHit)
	obs.Attempt(poolName, "c1", http.StatusOK, 30*time.Millisecond, failure.Verdict{Action: failure.Success, Reason: failure.ReasonSuccess})
	obs.Usage(poolName, "c1", handler.Usage{Input: 5, Output: 7, CacheRead: 1000, CacheWrite: 24})
	if v, ok := metricValue(t, reg1, "caddy_llm_proxy_requests_total", req); !ok || v != before+1 {
		t.Fatalf("requests_total = %v (present %v), want %v", v, ok, before+1)
	}

	// A reload: the new config has a new registry.
	reg2 := prometheus.NewPedanticRegistry()
	obs2 := newObserver(reg2, nil)
	obs2.Request(poolName, "c1", http.StatusOK, 1, selector.DecisionHit)
	obs2.Request(poolName, "", http.StatusServiceUnavailable, 0, selector.DecisionNone)
	obs2.Attempt(poolName, "c2", http.StatusTooManyRequests, 10*time.Millisecond,
		failure.Verdict{Action: failure.Failover, Reason: failure.ReasonRateLimited})
	obs2.Attempt(poolName, "c2", 0, time.Second,
		failure.Verdict{Action: failure.Failover, Reason: failure.ReasonConnectionError})
	obs2.Usage(poolName, "c1", handler.Usage{CacheRead: 500})

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"caddy_llm_proxy_requests_total", req, before + 2},
		{"caddy_llm_proxy_requests_total", map[string]string{"pool": poolName, "auth": "none", "status": "503"}, 1},
		{"caddy_llm_proxy_affinity_decisions_total", map[string]string{"pool": poolName, "decision": "hit"}, 2},
		{"caddy_llm_proxy_affinity_decisions_total", map[string]string{"pool": poolName, "decision": "none"}, 1},
		{"caddy_llm_proxy_attempts_total", map[string]string{"pool": poolName, "auth": "c1", "outcome": "success"}, 1},
		{"caddy_llm_proxy_attempts_total", map[string]string{"pool": poolName, "auth": "c2", "outcome": "rate_limited"}, 1},
		{"caddy_llm_proxy_failovers_total", map[string]string{"pool": poolName, "auth": "c2", "reason": "rate_limited"}, 1},
		{"caddy_llm_proxy_failovers_total", map[string]string{"pool": poolName, "auth": "c2", "reason": "connection_error"}, 1},
		// The connection error had no response: no time to first byte.
		{"caddy_llm_proxy_upstream_ttfb_seconds", map[string]string{"pool": poolName, "auth": "c2"}, 1},
		{"caddy_llm_proxy_upstream_ttfb_seconds", map[string]string{"pool": poolName, "auth": "c1"}, 1},
		{"caddy_llm_proxy_prompt_cache_read_tokens_total", map[string]string{"pool": poolName, "auth": "c1"}, 1500},
		{"caddy_llm_proxy_prompt_cache_write_tokens_total", map[string]string{"pool": poolName, "auth": "c1"}, 24},
	} {
		for i, reg := range []*prometheus.Registry{reg1, reg2} {
			if v, ok := metricValue(t, reg, c.name, c.labels); !ok || v != c.want {
				t.Errorf("registry %d: %s%v = %v (present %v), want %v", i+1, c.name, c.labels, v, ok, c.want)
			}
		}
	}
}

func TestMetricsCredentialsGauge(t *testing.T) {
	const poolName = "metrics-test-credentials"
	p := pool.Acquire(poolName)
	defer pool.Release(poolName)
	for _, id := range []string{"a", "b", "c", "d"} {
		p.PutStored(&auth.Auth{ID: id, Fields: auth.Fields{Provider: "claude", APIKey: "sk-" + id, Disabled: id == "d"}})
	}
	now := clock.Now()
	b, _ := p.Get("b")
	b.RecordFailure("claude-x", failure.Verdict{Action: failure.Failover, Scope: failure.ScopeAll,
		Reason: failure.ReasonAuthFailed, Until: now.Add(time.Hour)}, failure.Policy{}.WithDefaults(), now)

	reg := prometheus.NewPedanticRegistry()
	newObserver(reg, nil)
	for state, want := range map[string]float64{"total": 4, "enabled": 3, "available": 2} {
		v, ok := metricValue(t, reg, "caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": state})
		if !ok || v != want {
			t.Errorf("credentials{state=%q} = %v (present %v), want %v", state, v, ok, want)
		}
	}

	pool.Release(poolName)
	if _, ok := metricValue(t, reg, "caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "total"}); ok {
		t.Error("a released pool is still reported")
	}
	pool.Acquire(poolName) // for the deferred Release
}

// Credentials whose refresh token was refused for good are counted as
// needs_login and not available; refreshes are counted per credential by
// result.
func TestMetricsOAuthRefreshes(t *testing.T) {
	const poolName = "metrics-test-oauth"
	m := mockllm.New(mockllm.Options{OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude}, "bob": {Provider: mockllm.OAuthClaude},
	}})
	srv := httptest.NewServer(m)
	defer srv.Close()
	m.RevokeOAuth("alice")
	ep := oauth.ClaudeDefaults()
	ep.TokenURL = srv.URL + "/v1/oauth/token"
	var inline []*auth.Auth
	for _, label := range []string{"alice", "bob"} {
		a := &auth.Auth{ID: label, Inline: true, RefreshToken: "mock-rt-" + label}
		a.Provider, a.AccessToken = "claude", "mock-at-"+label
		inline = append(inline, a)
	}
	att, err := pool.Attach(context.Background(), poolName, pool.Config{Owner: t.Name(), Inline: inline,
		OAuth: map[string]oauth.Settings{"claude": {Endpoints: ep, RefreshLead: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Detach()
	p := att.Pool()
	for _, id := range []string{"alice", "bob"} {
		c, _ := p.Get(id)
		_ = p.RefreshRejected(context.Background(), c, c.Auth())
	}

	reg := prometheus.NewPedanticRegistry()
	newObserver(reg, nil)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "total"}, 2},
		{"caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "enabled"}, 2},
		{"caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "available"}, 1},
		{"caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "needs_login"}, 1},
		{"caddy_llm_proxy_oauth_refreshes_total", map[string]string{"pool": poolName, "auth": "alice", "result": "needs_login"}, 1},
		{"caddy_llm_proxy_oauth_refreshes_total", map[string]string{"pool": poolName, "auth": "alice", "result": "refreshed"}, 0},
		{"caddy_llm_proxy_oauth_refreshes_total", map[string]string{"pool": poolName, "auth": "bob", "result": "refreshed"}, 1},
	} {
		if v, ok := metricValue(t, reg, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
}

// The quota a credential's upstream reported is exported at scrape time:
// window utilization and reset, API-key remaining and limit; a credential
// that never reported any has no quota series.
func TestMetricsQuota(t *testing.T) {
	const poolName = "metrics-test-quota"
	p := pool.Acquire(poolName)
	defer pool.Release(poolName)
	p.PutStored(&auth.Auth{ID: "max", Fields: auth.Fields{Provider: "claude", AccessToken: "at"}})
	p.PutStored(&auth.Auth{ID: "key", Fields: auth.Fields{Provider: "openai", APIKey: "sk-x"}})
	p.PutStored(&auth.Auth{ID: "quiet", Fields: auth.Fields{Provider: "claude", APIKey: "sk-q"}})
	now := clock.Now()
	reset := now.Add(time.Hour).Unix()
	h := http.Header{}
	h.Set("Anthropic-Ratelimit-Unified-5h-Utilization", "0.97")
	h.Set("Anthropic-Ratelimit-Unified-5h-Reset", strconv.FormatInt(reset, 10))
	h.Set("Anthropic-Ratelimit-Unified-7d-Utilization", "0.2")
	maxCred, _ := p.Get("max")
	maxCred.RecordQuota(h, now)
	keyCred, _ := p.Get("key")
	keyCred.RecordQuota(http.Header{"X-Ratelimit-Remaining-Requests": {"42"}, "X-Ratelimit-Limit-Requests": {"50"}}, now)

	reg := prometheus.NewPedanticRegistry()
	newObserver(reg, nil)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"caddy_llm_proxy_quota_utilization", map[string]string{"pool": poolName, "auth": "max", "window": "5h"}, 0.97},
		{"caddy_llm_proxy_quota_utilization", map[string]string{"pool": poolName, "auth": "max", "window": "7d"}, 0.2},
		{"caddy_llm_proxy_quota_reset_timestamp_seconds", map[string]string{"pool": poolName, "auth": "max", "window": "5h"}, float64(reset)},
		{"caddy_llm_proxy_quota_remaining", map[string]string{"pool": poolName, "auth": "key", "kind": "requests"}, 42},
		{"caddy_llm_proxy_quota_limit", map[string]string{"pool": poolName, "auth": "key", "kind": "requests"}, 50},
	} {
		if v, ok := metricValue(t, reg, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := metricValue(t, reg, "caddy_llm_proxy_quota_utilization", map[string]string{"pool": poolName, "auth": "quiet", "window": "5h"}); ok {
		t.Error("a credential that reported no quota has a utilization series")
	}
}
