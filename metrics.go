package llmproxy

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/failure"
	"github.com/caddy-llm-proxy/llmproxy/internal/handler"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

// Metrics are exported in Caddy's metrics registry as caddy_llm_proxy_*:
//
//	requests_total{pool,auth,status}           client requests that reached selection; auth
//	                                           is the credential that answered or was tried
//	                                           last ("none" when none was picked)
//	client_requests_total{pool,client,status}  with access configured: requests per client
//	                                           key label that reached selection or got 403
//	                                           for a model the key may not use
//	attempts_total{pool,auth,outcome}          upstream attempts by failure.Reason* outcome, or
//	                                           token_refresh (a 401 answered by refreshing the
//	                                           OAuth token and trying the credential again)
//	failovers_total{pool,auth,reason}          attempts that cooled their credential and
//	                                           moved on
//	affinity_decisions_total{pool,decision}    hit, miss, rebind, pin (a stored resource's
//	                                           credential) or none per request
//	credentials{pool,state}                    credentials per state: total, enabled,
//	                                           available, needs_login (read at scrape time)
//	oauth_refreshes_total{pool,auth,result}    OAuth token refreshes by result: refreshed,
//	                                           adopted (another instance's), failed
//	                                           (temporary), needs_login (read at scrape time)
//	upstream_ttfb_seconds{pool,auth}           time to the upstream response headers
//	prompt_cache_read_tokens_total{pool,auth}  prompt tokens served from the provider cache
//	prompt_cache_write_tokens_total{pool,auth} prompt tokens written to the provider cache
//
// Label values are pool names, credential IDs, client key labels and small
// fixed sets only; never session IDs, keys or models. The collectors are created once per
// process, so counters keep counting across config reloads; each new
// config's registry gets them registered again.
var metrics struct {
	once        sync.Once
	requests    *prometheus.CounterVec
	clients     *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	failovers   *prometheus.CounterVec
	affinity    *prometheus.CounterVec
	ttfb        *prometheus.HistogramVec
	cacheRead   *prometheus.CounterVec
	cacheWrite  *prometheus.CounterVec
	credentials *credentialsCollector
}

const metricsNamespace = "caddy_llm_proxy"

// noAuth is the auth label of requests no credential was picked for.
const noAuth = "none"

func initMetrics() {
	metrics.once.Do(func() {
		counter := func(name, help string, labels ...string) *prometheus.CounterVec {
			return prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: metricsNamespace, Name: name, Help: help,
			}, labels)
		}
		metrics.requests = counter("requests_total",
			"Client requests that reached credential selection, by the credential that answered and the status returned.",
			"pool", "auth", "status")
		metrics.clients = counter("client_requests_total",
			"Client requests per client key label (access configured) that reached credential selection or were refused for their model, by the status returned.",
			"pool", "client", "status")
		metrics.attempts = counter("attempts_total",
			"Upstream attempts by outcome (success, client_error, rate_limited, auth_failed, model_not_found, server_error, timeout, connection_error, client_canceled, token_refresh).",
			"pool", "auth", "outcome")
		metrics.failovers = counter("failovers_total",
			"Upstream attempts that put their credential in cooldown and failed over, by reason.",
			"pool", "auth", "reason")
		metrics.affinity = counter("affinity_decisions_total",
			"Affinity decisions per request: hit, miss, rebind (session bindings), pin (the credential that created a stored resource the request refers to) or none.",
			"pool", "decision")
		metrics.ttfb = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "upstream_ttfb_seconds",
			Help:      "Time from sending an upstream request to its response headers.",
			Buckets:   []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"pool", "auth"})
		metrics.cacheRead = counter("prompt_cache_read_tokens_total",
			"Prompt tokens the provider served from its prompt cache, from the usage figures of responses.",
			"pool", "auth")
		metrics.cacheWrite = counter("prompt_cache_write_tokens_total",
			"Prompt tokens the provider wrote to its prompt cache, from the usage figures of responses.",
			"pool", "auth")
		metrics.credentials = &credentialsCollector{
			desc: prometheus.NewDesc(metricsNamespace+"_credentials",
				"Credentials of each pool: total, enabled (not disabled), available (enabled, not cooling down for every model and not needing a login) and needs_login (OAuth refresh token refused for good).",
				[]string{"pool", "state"}, nil),
			refreshes: prometheus.NewDesc(metricsNamespace+"_oauth_refreshes_total",
				"OAuth access-token refreshes per credential by result: refreshed, adopted (tokens another instance stored), failed (temporary, retried with backoff), needs_login (refresh token refused for good).",
				[]string{"pool", "auth", "result"}, nil),
			quotaUsed: prometheus.NewDesc(metricsNamespace+"_quota_utilization",
				"Share (0..1) of each usage window a credential's upstream last reported as used in its quota headers (Claude 5h/7d, Codex primary/secondary).",
				[]string{"pool", "auth", "window"}, nil),
			quotaReset: prometheus.NewDesc(metricsNamespace+"_quota_reset_timestamp_seconds",
				"When each usage window of a credential resets, as last reported, in unix seconds.",
				[]string{"pool", "auth", "window"}, nil),
			quotaRemaining: prometheus.NewDesc(metricsNamespace+"_quota_remaining",
				"What an API key's rate limit has left (requests, tokens, input_tokens, output_tokens), as last reported.",
				[]string{"pool", "auth", "kind"}, nil),
			quotaLimit: prometheus.NewDesc(metricsNamespace+"_quota_limit",
				"What an API key's rate limit allows per period (requests, tokens, input_tokens, output_tokens), as last reported.",
				[]string{"pool", "auth", "kind"}, nil),
		}
	})
}

// registerMetrics registers the collectors into a config's registry. A
// collector already registered there is fine (several handlers share one
// config).
func registerMetrics(reg prometheus.Registerer) error {
	initMetrics()
	var errs []error
	for _, c := range []prometheus.Collector{
		metrics.requests, metrics.clients, metrics.attempts, metrics.failovers, metrics.affinity,
		metrics.ttfb, metrics.cacheRead, metrics.cacheWrite, metrics.credentials,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// newObserver registers the metrics into reg (when not nil) and returns the
// observer that records them. A registration failure is logged, not fatal:
// requests are served either way.
func newObserver(reg *prometheus.Registry, logger *zap.Logger) handler.Observer {
	initMetrics()
	if reg != nil {
		if err := registerMetrics(reg); err != nil && logger != nil {
			logger.Error("registering llm_proxy metrics", zap.Error(err))
		}
	}
	return observer{}
}

// observer records what the handler reports into the metrics.
type observer struct{}

func (observer) Attempt(pool, authID string, status int, ttfb time.Duration, v failure.Verdict) {
	metrics.attempts.WithLabelValues(pool, authID, v.Reason).Inc()
	if v.Action == failure.Failover {
		metrics.failovers.WithLabelValues(pool, authID, v.Reason).Inc()
	}
	if status > 0 {
		metrics.ttfb.WithLabelValues(pool, authID).Observe(ttfb.Seconds())
	}
}

func (observer) Request(pool, authID string, status, _ int, affinity selector.Decision) {
	if authID == "" {
		authID = noAuth
	}
	if affinity == "" {
		affinity = selector.DecisionNone
	}
	metrics.requests.WithLabelValues(pool, authID, strconv.Itoa(status)).Inc()
	metrics.affinity.WithLabelValues(pool, string(affinity)).Inc()
}

var _ handler.ClientObserver = observer{}

func (observer) ClientRequest(pool, client string, status int) {
	metrics.clients.WithLabelValues(pool, client, strconv.Itoa(status)).Inc()
}

func (observer) Usage(pool, authID string, u handler.Usage) {
	// Touch both series so a credential's zero shows up next to its peers.
	metrics.cacheRead.WithLabelValues(pool, authID).Add(float64(max(u.CacheRead, 0)))
	metrics.cacheWrite.WithLabelValues(pool, authID).Add(float64(max(u.CacheWrite, 0)))
}

// credentialsCollector reports each live pool's credential counts and
// their OAuth refresh counters when scraped, so the figures are never
// stale and cost nothing per request.
type credentialsCollector struct {
	desc      *prometheus.Desc
	refreshes *prometheus.Desc
	// The quota headers last recorded per credential.
	quotaUsed, quotaReset, quotaRemaining, quotaLimit *prometheus.Desc
}

func (c *credentialsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.refreshes
	ch <- c.quotaUsed
	ch <- c.quotaReset
	ch <- c.quotaRemaining
	ch <- c.quotaLimit
}

func (c *credentialsCollector) Collect(ch chan<- prometheus.Metric) {
	now := clock.Now()
	for _, name := range pool.Names() {
		p, ok := pool.Lookup(name)
		if !ok {
			continue // released since listed
		}
		total, enabled, available := p.Availability(now)
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(total), name, "total")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(enabled), name, "enabled")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(available), name, "available")
		needsLogin := 0
		for _, cred := range p.Credentials() {
			if cred.NeedsLogin() {
				needsLogin++
			}
			c.collectRefreshes(ch, name, cred)
			c.collectQuota(ch, name, cred)
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(needsLogin), name, "needs_login")
	}
}

// collectRefreshes reports the refresh counters of a credential that was
// ever refreshed.
func (c *credentialsCollector) collectRefreshes(ch chan<- prometheus.Metric, poolName string, cred *pool.Credential) {
	counts := cred.RefreshStatus().Counts
	total := uint64(0)
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return
	}
	for result, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(n), poolName, cred.ID(), result)
	}
}

// collectQuota reports the quota a credential's upstream last reported,
// if it ever did.
func (c *credentialsCollector) collectQuota(ch chan<- prometheus.Metric, poolName string, cred *pool.Credential) {
	q := cred.Quota()
	if q == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, poolName, cred.ID(), label)
	}
	for _, w := range q.Windows {
		if w.Utilization != nil {
			gauge(c.quotaUsed, *w.Utilization, w.Name)
		}
		if !w.ResetAt.IsZero() {
			gauge(c.quotaReset, float64(w.ResetAt.Unix()), w.Name)
		}
	}
	for _, l := range q.Limits {
		if l.Remaining != nil {
			gauge(c.quotaRemaining, float64(*l.Remaining), l.Kind)
		}
		if l.Limit != nil {
			gauge(c.quotaLimit, float64(*l.Limit), l.Kind)
		}
	}
}

// Interface guards
var (
	_ handler.Observer     = observer{}
	_ prometheus.Collector = (*credentialsCollector)(nil)
)
