package llmproxy

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
//	tokens_total{pool,client,auth,model,type}  tokens the responses reported, by type: input
//	                                           (prompt tokens outside the cache), output,
//	                                           cache_read, cache_write (read at scrape time)
//	usage_requests_total{pool,client,auth,model}
//	                                           client requests that reached a credential, per
//	                                           client key label ("" without one), the credential
//	                                           that answered or was tried last, and the model
//	                                           the client named (read at scrape time)
//
// Label values are pool names, credential IDs, client key labels, small
// fixed sets and, in the two usage counters only, model names; never
// session IDs or keys. The usage counters are the pool's usage ledger
// (see pool.Pool.Usage), with its bounds: at most 256 model names and 1024
// client labels per pool, the rest counted as "other", and 4096 series
// per pool plus one per credential. They live in the pool, so they count
// across config reloads for as long as a loaded config uses the pool, and
// a series idle for a day may start again from zero. The other collectors
// are created once per process, so their counters keep counting across
// config reloads; each new config's registry gets them registered again.
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
	usage       *usageCollector
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
		metrics.usage = &usageCollector{
			tokens: prometheus.NewDesc(metricsNamespace+"_tokens_total",
				"Tokens the responses reported, per client key label, credential, model the client named, and type: input (prompt tokens neither read from nor written to the provider's cache), output, cache_read, cache_write. Model names past 256 per pool and client labels past 1024 count as \"other\".",
				[]string{"pool", "client", "auth", "model", "type"}, nil),
			requests: prometheus.NewDesc(metricsNamespace+"_usage_requests_total",
				"Client requests that reached a credential, per client key label (\"\" without one), the credential that answered or was tried last, and the model the client named. Model names past 256 per pool and client labels past 1024 count as \"other\".",
				[]string{"pool", "client", "auth", "model"}, nil),
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
		metrics.ttfb, metrics.cacheRead, metrics.cacheWrite, metrics.credentials, metrics.usage,
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

// usageCollector reports each live pool's usage ledger when scraped, so
// counting costs the requests nothing beyond the ledger, and the series are
// the ledger's, bounded as it is.
type usageCollector struct {
	tokens, requests *prometheus.Desc
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tokens
	ch <- c.requests
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, name := range pool.Names() {
		p, ok := pool.Lookup(name)
		if !ok {
			continue // released since listed
		}
		poolName := validLabel(name)
		for k, n := range usageSeries(p) {
			counter(c.requests, n.Requests, poolName, k.Client, k.Auth, k.Model)
			counter(c.tokens, n.Input, poolName, k.Client, k.Auth, k.Model, "input")
			counter(c.tokens, n.Output, poolName, k.Client, k.Auth, k.Model, "output")
			counter(c.tokens, n.CacheRead, poolName, k.Client, k.Auth, k.Model, "cache_read")
			counter(c.tokens, n.CacheWrite, poolName, k.Client, k.Auth, k.Model, "cache_write")
		}
	}
}

// usageSeries returns the pool's usage series with label values that are
// valid UTF-8 (Prometheus refuses others); series whose names become alike
// that way are added up, so no sample is reported twice.
func usageSeries(p *pool.Pool) map[pool.UsageKey]pool.UsageCounts {
	totals := p.UsageTotals()
	out := make(map[pool.UsageKey]pool.UsageCounts, len(totals))
	for _, t := range totals {
		k := pool.UsageKey{Client: validLabel(t.Client), Auth: validLabel(t.Auth), Model: validLabel(t.Model)}
		n := out[k]
		n.Add(t.UsageCounts)
		out[k] = n
	}
	return out
}

// validLabel returns s with any invalid UTF-8 replaced.
func validLabel(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Interface guards
var (
	_ handler.Observer     = observer{}
	_ prometheus.Collector = (*credentialsCollector)(nil)
	_ prometheus.Collector = (*usageCollector)(nil)
)
