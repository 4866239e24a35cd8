package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// usageFigures are token counts as the usage ledger keeps them: input is
// the prompt tokens outside the provider's cache in every family.
type usageFigures struct {
	Requests, Failovers                  float64
	Input, Output, CacheRead, CacheWrite float64
}

func (u *usageFigures) add(o usageFigures) {
	u.Requests += o.Requests
	u.Failovers += o.Failovers
	u.Input += o.Input
	u.Output += o.Output
	u.CacheRead += o.CacheRead
	u.CacheWrite += o.CacheWrite
}

// num reads a number at a dotted path of a decoded JSON value (0 when
// absent).
func num(v any, path ...string) float64 {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return 0
		}
		v = m[p]
	}
	f, _ := v.(float64)
	return f
}

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %.300s", err, s)
	}
	return v
}

// reportedUsage reads the usage a client got in one response, in the
// response's own family terms, as a client SDK would, and converts it to
// the ledger's terms. It is written apart from the proxy's own reader.
func reportedUsage(t *testing.T, family string, stream bool, body []byte) usageFigures {
	t.Helper()
	var u usageFigures
	var docs []any
	switch {
	case stream:
		for _, d := range sseEvents(body) {
			if strings.HasPrefix(d, "{") {
				docs = append(docs, decode(t, d))
			}
		}
	case family == "gemini-array":
		arr, _ := decode(t, string(body)).([]any)
		docs = arr
	default:
		docs = []any{decode(t, string(body))}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no documents in %.300s", family, body)
	}
	switch family {
	case "anthropic":
		for _, d := range docs {
			usage := d.(map[string]any)["usage"]
			if m, ok := d.(map[string]any)["message"]; ok {
				usage = m.(map[string]any)["usage"] // message_start
			}
			if usage == nil {
				continue
			}
			// message_delta repeats the input figures (or leaves them out).
			u.Input = max(u.Input, num(usage, "input_tokens"))
			u.CacheRead = max(u.CacheRead, num(usage, "cache_read_input_tokens"))
			u.CacheWrite = max(u.CacheWrite, num(usage, "cache_creation_input_tokens"))
			u.Output = max(u.Output, num(usage, "output_tokens"))
		}
	case "chat":
		for _, d := range docs {
			if usage := d.(map[string]any)["usage"]; usage != nil {
				cached := num(usage, "prompt_tokens_details", "cached_tokens")
				u.Input, u.CacheRead, u.Output = num(usage, "prompt_tokens")-cached, cached, num(usage, "completion_tokens")
			}
		}
	case "responses":
		for _, d := range docs {
			usage := d.(map[string]any)["usage"]
			if stream {
				if d.(map[string]any)["type"] != "response.completed" {
					continue
				}
				usage = d.(map[string]any)["response"].(map[string]any)["usage"]
			}
			cached := num(usage, "input_tokens_details", "cached_tokens")
			u.Input, u.CacheRead, u.Output = num(usage, "input_tokens")-cached, cached, num(usage, "output_tokens")
		}
	case "gemini", "gemini-array":
		for _, d := range docs {
			if m := d.(map[string]any)["usageMetadata"]; m != nil {
				cached := num(m, "cachedContentTokenCount")
				u.Input, u.CacheRead = num(m, "promptTokenCount")-cached, cached
				u.Output = num(m, "candidatesTokenCount") + num(m, "thoughtsTokenCount")
			}
		}
	default:
		t.Fatalf("unknown family %s", family)
	}
	if u.Input+u.CacheRead+u.CacheWrite <= 0 || u.Output <= 0 {
		t.Fatalf("%s (stream %v): no usage read from %.400s", family, stream, body)
	}
	return u
}

// usageRequest is one kind of request the labelled clients send.
type usageRequest struct {
	family string // as reportedUsage reads it
	stream bool
	path   string
	model  string
	body   func(conv string) string
	auth   func(key string) map[string]string
}

func usageRequests() []usageRequest {
	xAPIKey := func(key string) map[string]string {
		return map[string]string{"x-api-key": key, "anthropic-version": "2023-06-01"}
	}
	bearer := func(key string) map[string]string { return map[string]string{"Authorization": "Bearer " + key} }
	goog := func(key string) map[string]string { return map[string]string{"x-goog-api-key": key} }
	msgs := func(conv string) string {
		return fmt.Sprintf(`[{"role":"user","content":%q},{"role":"assistant","content":"noted"},{"role":"user","content":"go on"}]`, conv)
	}
	gem := func(conv string) string {
		return fmt.Sprintf(`{"contents":[{"role":"user","parts":[{"text":%q}]},{"role":"model","parts":[{"text":"noted"}]},{"role":"user","parts":[{"text":"go on"}]}]}`, conv)
	}
	return []usageRequest{
		{"anthropic", false, "/v1/messages", "claude-sonnet-4-5",
			func(c string) string {
				return `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":` + msgs(c) + `}`
			}, xAPIKey},
		{"anthropic", true, "/v1/messages", "claude-sonnet-4-5",
			func(c string) string {
				return `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":` + msgs(c) + `}`
			}, xAPIKey},
		{"chat", false, "/v1/chat/completions", "gpt-4o",
			func(c string) string { return `{"model":"gpt-4o","messages":` + msgs(c) + `}` }, bearer},
		{"chat", true, "/v1/chat/completions", "gpt-4o",
			func(c string) string {
				return `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":` + msgs(c) + `}`
			}, bearer},
		{"responses", false, "/v1/responses", "gpt-5",
			func(c string) string { return `{"model":"gpt-5","input":` + msgs(c) + `}` }, bearer},
		{"responses", true, "/v1/responses", "gpt-5",
			func(c string) string { return `{"model":"gpt-5","stream":true,"input":` + msgs(c) + `}` }, bearer},
		{"gemini", false, "/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash", gem, goog},
		{"gemini", true, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "gemini-2.5-flash", gem, goog},
		{"gemini-array", false, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "gemini-2.5-flash", gem, goog},
	}
}

// promSample is one sample of the metrics exposition.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

var promLabel = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// samplesOf returns the samples of metric name whose pool label is
// poolName, read from one scrape of Caddy's admin /metrics.
func samplesOf(t *testing.T, text, name, poolName string) []promSample {
	t.Helper()
	var out []promSample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			t.Fatalf("bad sample %q", line)
		}
		s := promSample{name: name, labels: map[string]string{}}
		for _, m := range promLabel.FindAllStringSubmatch(labels, -1) {
			v, err := strconv.Unquote(`"` + m[2] + `"`)
			if err != nil {
				t.Fatalf("bad label in %q: %v", line, err)
			}
			s.labels[m[1]] = v
		}
		if s.labels["pool"] != poolName {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		s.value = f
		out = append(out, s)
	}
	return out
}

// seriesKey is one (client, credential, model) series.
type seriesKey struct{ client, auth, model string }

// scrapedUsage reads the pool's two usage counters from one scrape.
func scrapedUsage(t *testing.T, poolName string) map[seriesKey]usageFigures {
	t.Helper()
	text := metricsText(t)
	out := map[seriesKey]usageFigures{}
	key := func(s promSample) seriesKey {
		return seriesKey{s.labels["client"], s.labels["auth"], s.labels["model"]}
	}
	for _, s := range samplesOf(t, text, "caddy_llm_proxy_usage_requests_total", poolName) {
		u := out[key(s)]
		u.Requests = s.value
		out[key(s)] = u
	}
	for _, s := range samplesOf(t, text, "caddy_llm_proxy_tokens_total", poolName) {
		u := out[key(s)]
		switch s.labels["type"] {
		case "input":
			u.Input = s.value
		case "output":
			u.Output = s.value
		case "cache_read":
			u.CacheRead = s.value
		case "cache_write":
			u.CacheWrite = s.value
		default:
			t.Fatalf("unknown token type %q", s.labels["type"])
		}
		out[key(s)] = u
	}
	return out
}

// usageRow is a row of the admin usage report.
type usageRow struct {
	Client           *string `json:"client"`
	Auth             *string `json:"auth"`
	Model            *string `json:"model"`
	Requests         float64 `json:"requests"`
	Failovers        float64 `json:"failovers"`
	InputTokens      float64 `json:"input_tokens"`
	OutputTokens     float64 `json:"output_tokens"`
	CacheReadTokens  float64 `json:"cache_read_tokens"`
	CacheWriteTokens float64 `json:"cache_write_tokens"`
	CacheHitRate     float64 `json:"cache_hit_rate"`
}

func (r usageRow) figures() usageFigures {
	return usageFigures{r.Requests, r.Failovers, r.InputTokens, r.OutputTokens, r.CacheReadTokens, r.CacheWriteTokens}
}

type usageReport struct {
	Pool    string     `json:"pool"`
	Since   time.Time  `json:"since"`
	Until   time.Time  `json:"until"`
	Totals  usageRow   `json:"totals"`
	Clients []usageRow `json:"clients"`
	Auths   []usageRow `json:"auths"`
	Models  []usageRow `json:"models"`
}

func fetchUsage(t *testing.T, poolName, query string) usageReport {
	t.Helper()
	admin := &adminClient{t: t, secret: "usage-admin-secret"}
	var rep usageReport
	b := admin.do(http.MethodGet, "/llm_proxy/pools/"+poolName+"/usage"+query, "", http.StatusOK)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("usage report: %v: %s", err, b)
	}
	return rep
}

// byName indexes rows by the name they are of.
func byName(t *testing.T, rows []usageRow, field func(usageRow) *string) map[string]usageRow {
	t.Helper()
	out := map[string]usageRow{}
	for _, r := range rows {
		name := field(r)
		if name == nil {
			t.Fatalf("row without its name: %+v", r)
		}
		out[*name] = r
	}
	return out
}

// TestUsagePerClientAndCredential: three labelled clients send streaming
// and non-streaming requests of every API family over four credentials;
// the usage report per label and per credential, and the Prometheus
// counters per label, credential and model, equal what the upstream
// reported in each response and what the mock counted per credential. A
// client naming 5000 models keeps the series bounded, losing no request.
func TestUsagePerClientAndCredential(t *testing.T) {
	up := newUpstream(t, mockllm.Options{})
	poolName := "usage-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool %s
		management_secret usage-admin-secret
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %[2]s
		}
		auth c2 {
			provider claude
			api_key sk-ant-two
			base_url %[2]s
		}
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %[2]s
		}
		auth g1 {
			provider gemini
			api_key gm-one
			base_url %[2]s
		}
		access {
			key alice alice-client-key
			key bob bob-client-key
			key carol carol-client-key
			key mallory mallory-client-key
		}
	}`, poolName, up.URL))
	authOf := map[string]string{"claude-1": "c1", "claude-2": "c2", "openai-1": "o1", "gemini-1": "g1"}

	want := map[seriesKey]usageFigures{}
	send := func(client string, rq usageRequest, conv string) {
		t.Helper()
		resp, body := call(t, http.MethodPost, rq.path, rq.auth(client+"-client-key"), rq.body(conv))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %.300s", client, rq.path, resp.StatusCode, body)
		}
		auth := authOf[resp.Header.Get("X-Mock-Credential")]
		if auth == "" {
			t.Fatalf("answered by %q", resp.Header.Get("X-Mock-Credential"))
		}
		u := reportedUsage(t, rq.family, rq.stream, body)
		u.Requests = 1
		k := seriesKey{client, auth, rq.model}
		w := want[k]
		w.add(u)
		want[k] = w
	}

	// One failover: c2 answers 500 once, and the request goes to c1.
	up.SetFault("sk-ant-two", mockllm.Fault{Status: http.StatusInternalServerError, Times: 1})
	haiku := usageRequest{"anthropic", false, "/v1/messages", "claude-haiku-4-5",
		func(c string) string {
			return `{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"` + c + `"}]}`
		},
		usageRequests()[0].auth}
	for i := 0; up.Stats()["claude-2"].Faults == 0; i++ {
		if i == 2 {
			t.Fatal("round robin never reached c2")
		}
		send("carol", haiku, "failover please")
	}

	// Each client sends its conversation twice in every form, so the
	// providers' caches serve the second turn.
	for _, client := range []string{"alice", "bob", "carol"} {
		conv := client + " asks about " + strings.Repeat("prompt caching ", len(client)*7)
		for range 2 {
			for _, rq := range usageRequests() {
				send(client, rq, conv)
			}
		}
	}

	var wantTotal usageFigures
	wantClients := map[string]usageFigures{}
	wantAuths := map[string]usageFigures{}
	for k, u := range want {
		wantTotal.add(u)
		c, a := wantClients[k.client], wantAuths[k.auth]
		c.add(u)
		a.add(u)
		wantClients[k.client], wantAuths[k.auth] = c, a
	}
	if wantTotal.CacheRead == 0 || wantTotal.CacheWrite == 0 || len(wantAuths) != 4 {
		t.Fatalf("the workload did not exercise caches and credentials: %+v over %v", wantTotal, wantAuths)
	}

	// The usage report, per label and per credential.
	rep := fetchUsage(t, poolName, "?since=1h")
	if rep.Pool != poolName || rep.Until.Sub(rep.Since) < time.Hour || rep.Until.Sub(rep.Since) > 2*time.Hour {
		t.Errorf("report of %q from %v to %v", rep.Pool, rep.Since, rep.Until)
	}
	if got := rep.Totals.figures(); got != withFailovers(wantTotal, 1) {
		t.Errorf("totals %+v, want %+v", got, withFailovers(wantTotal, 1))
	}
	clients := byName(t, rep.Clients, func(r usageRow) *string { return r.Client })
	for name, w := range wantClients {
		if name == "carol" {
			w = withFailovers(w, 1)
		}
		if got := clients[name].figures(); got != w {
			t.Errorf("client %s: %+v, want %+v", name, got, w)
		}
	}
	auths := byName(t, rep.Auths, func(r usageRow) *string { return r.Auth })
	for name, w := range wantAuths {
		if name == "c2" {
			w = withFailovers(w, 1)
		}
		if got := auths[name].figures(); got != w {
			t.Errorf("credential %s: %+v, want %+v", name, got, w)
		}
		if r := auths[name]; r.CacheHitRate != r.CacheReadTokens/(r.InputTokens+r.CacheReadTokens+r.CacheWriteTokens) {
			t.Errorf("credential %s: cache hit rate %v", name, r.CacheHitRate)
		}
	}
	if len(clients) != 3 || len(auths) != 4 || len(rep.Models) != 5 {
		t.Errorf("%d clients, %d credentials, %d models", len(clients), len(auths), len(rep.Models))
	}

	// What the mock counted per credential: the whole prompt, the cached
	// part and the output.
	stats := up.Stats()
	for label, id := range authOf {
		st, got := stats[label], auths[id]
		if float64(st.InputTokens) != got.InputTokens+got.CacheReadTokens+got.CacheWriteTokens ||
			float64(st.CacheReadTokens) != got.CacheReadTokens || float64(st.OutputTokens) != got.OutputTokens {
			t.Errorf("credential %s: report %+v, mock counted %+v", id, got, st)
		}
	}

	// The Prometheus counters, per label, credential and model. The
	// failover's series counts neither requests nor tokens.
	want[seriesKey{"carol", "c2", "claude-haiku-4-5"}] = usageFigures{}
	scraped := scrapedUsage(t, poolName)
	for k, w := range want {
		w.Failovers = 0 // not among the usage counters
		if got := scraped[k]; got != w {
			t.Errorf("metrics for %+v: %+v, want %+v", k, got, w)
		}
	}
	if len(scraped) != len(want) {
		t.Errorf("%d series scraped, %d expected", len(scraped), len(want))
	}

	// A hostile client names 5000 models.
	modelsBefore := len(rep.Models)
	hostile(t, 5000)
	rep = fetchUsage(t, poolName, "?since=1h")
	mallory := byName(t, rep.Clients, func(r usageRow) *string { return r.Client })["mallory"]
	if mallory.Requests != 5000 || rep.Totals.Requests != wantTotal.Requests+5000 {
		t.Errorf("mallory %+v, totals %+v", mallory, rep.Totals)
	}
	models := byName(t, rep.Models, func(r usageRow) *string { return r.Model })
	if len(models) != 256+1 || models["other"].Requests != float64(5000-(256-modelsBefore)) {
		t.Errorf("%d models kept, %v requests under other", len(models), models["other"].Requests)
	}
	scraped = scrapedUsage(t, poolName)
	if len(scraped) != len(want)+256-modelsBefore+1 {
		t.Errorf("%d series scraped after 5000 models", len(scraped))
	}
	if got := scraped[seriesKey{"mallory", "o1", "other"}].Requests; got != float64(5000-(256-modelsBefore)) {
		t.Errorf("mallory's other series counts %v requests", got)
	}
	if text := metricsText(t); strings.Contains(text, "client-key") || strings.Contains(text, "sk-") {
		t.Error("a key appears in the metrics")
	}
}

func withFailovers(u usageFigures, n float64) usageFigures {
	u.Failovers = n
	return u
}

// hostile sends n chat requests as mallory, each naming another model.
func hostile(t *testing.T, n int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				body := fmt.Sprintf(`{"model":"mallory-model-%d","messages":[{"role":"user","content":"hi"}]}`, i)
				req, _ := http.NewRequest(http.MethodPost, siteAddr+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer mallory-client-key")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					mu.Lock()
					failed = append(failed, fmt.Sprint(i, err))
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d hostile requests failed: %v", len(failed), failed[:min(5, len(failed))])
	}
}

// TestUsageSurvivesReload: the usage of a pool outlives a reload that
// turns access on; requests made without a client key count under the
// client "", shown as such in the report.
func TestUsageSurvivesReload(t *testing.T) {
	up := newUpstream(t, mockllm.Options{})
	poolName := "usage-reload-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	site := func(access string) string {
		return fmt.Sprintf(`	llm_proxy {
		pool %s
		management_secret usage-admin-secret
		auth c1 {
			provider claude
			api_key sk-ant-one
			base_url %s
		}
%s	}`, poolName, up.URL, access)
	}
	body := `{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hello"}]}`
	loadConfig(t, t.TempDir(), site(""))
	resp, b := call(t, http.MethodPost, "/v1/messages", nil, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	before := reportedUsage(t, "anthropic", false, b)

	loadConfig(t, t.TempDir(), site("\t\taccess {\n\t\t\tkey alice alice-client-key\n\t\t}\n"))
	resp, b = call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": "alice-client-key"}, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	after := reportedUsage(t, "anthropic", false, b)

	rep := fetchUsage(t, poolName, "")
	clients := byName(t, rep.Clients, func(r usageRow) *string { return r.Client })
	if len(clients) != 2 || clients[""].Requests != 1 || clients[""].OutputTokens != before.Output ||
		clients["alice"].Requests != 1 || clients["alice"].OutputTokens != after.Output {
		t.Errorf("clients %+v", rep.Clients)
	}
	if got := rep.Totals.figures(); got.Requests != 2 || got.Input != before.Input+after.Input {
		t.Errorf("totals %+v", got)
	}
	if v, ok := scrape(t, "caddy_llm_proxy_usage_requests_total", map[string]string{"pool": poolName, "client": "", "auth": "c1"}); !ok || v != 1 {
		t.Errorf("unlabelled requests scraped %v (present %v)", v, ok)
	}
}
