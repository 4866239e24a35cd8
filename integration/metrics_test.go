package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricsText is the admin /metrics endpoint's exposition.
func metricsText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v %s", resp.StatusCode, err, b)
	}
	return string(b)
}

// scrape reads the admin /metrics endpoint and returns the value of the
// sample of name whose labels include labels; ok is false when there is
// none.
func scrape(t *testing.T, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(metricsText(t)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		series, value, found := strings.Cut(line, " ")
		if !found || !strings.HasPrefix(series, name+"{") {
			continue
		}
		match := true
		for k, lv := range labels {
			if !strings.Contains(series, k+"="+strconv.Quote(lv)) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		return f, true
	}
	return 0, false
}

// wantMetric fails unless the sample exists with value want.
func wantMetric(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	v, ok := scrape(t, name, labels)
	if !ok || v != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
	}
}

// TestMetricsTwoTurnConversation sends a two-turn conversation with session
// affinity through Caddy and reads the outcome back from the admin metrics
// endpoint, before and after a reload.
func TestMetricsTwoTurnConversation(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	const poolName = "metrics-two-turn"
	site := func(extra string) string {
		return fmt.Sprintf(`	llm_proxy {
		pool %s
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
		auth c3 {
			provider claude
			api_key sk-ant-three
			base_url %[2]s
		}
		routing {
			session_affinity on
		}
%s	}`, poolName, up.URL, extra)
	}
	loadConfig(t, t.TempDir(), site(""))

	// Counters are per process and pool state outlives a test under -count,
	// so counters are checked as changes from their values before turn 1,
	// for a session of its own.
	type series struct {
		name   string
		labels map[string]string
		grew   func(requests float64) float64 // expected change
	}
	var cred string // the mock's label of the credential that served
	seriesFor := func(authID string) []series {
		n := func(n float64) float64 { return n }
		return []series{
			{"caddy_llm_proxy_requests_total", map[string]string{"pool": poolName, "auth": authID, "status": "200"}, n},
			{"caddy_llm_proxy_affinity_decisions_total", map[string]string{"pool": poolName, "decision": "miss"}, func(float64) float64 { return 1 }},
			{"caddy_llm_proxy_affinity_decisions_total", map[string]string{"pool": poolName, "decision": "hit"}, func(n float64) float64 { return n - 1 }},
			{"caddy_llm_proxy_attempts_total", map[string]string{"pool": poolName, "auth": authID, "outcome": "success"}, n},
			{"caddy_llm_proxy_upstream_ttfb_seconds_count", map[string]string{"pool": poolName, "auth": authID}, n},
			{"caddy_llm_proxy_prompt_cache_read_tokens_total", map[string]string{"pool": poolName, "auth": authID},
				func(float64) float64 { return float64(up.Stats()[cred].CacheReadTokens) }},
			{"caddy_llm_proxy_prompt_cache_write_tokens_total", map[string]string{"pool": poolName, "auth": authID},
				func(float64) float64 { return float64(up.Stats()[cred].CacheCreationTokens) }},
		}
	}
	baseline := map[string][]float64{}
	for _, id := range []string{"c1", "c2", "c3"} {
		for _, m := range seriesFor(id) {
			v, _ := scrape(t, m.name, m.labels)
			baseline[id] = append(baseline[id], v)
		}
	}

	session := "metrics-session-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	headers := map[string]string{"X-Claude-Code-Session-Id": session, "anthropic-version": "2023-06-01"}
	turn1 := `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hello there"}]}`
	resp1, body1 := call(t, http.MethodPost, "/v1/messages", headers, turn1)
	if resp1.StatusCode != http.StatusOK {
		t.Fatalf("turn 1: %d %s", resp1.StatusCode, body1)
	}
	cred = resp1.Header.Get("X-Mock-Credential")
	reply, _ := jsonField(t, body1, "content").([]any)
	if len(reply) == 0 {
		t.Fatalf("turn 1: no content: %s", body1)
	}
	replyText, _ := reply[0].(map[string]any)["text"].(string)

	// Turn 2 streams; its prefix is cached on the credential of turn 1.
	turn2 := fmt.Sprintf(`{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":[`+
		`{"role":"user","content":"hello there"},{"role":"assistant","content":%q},{"role":"user","content":"and more"}]}`, replyText)
	resp2, body2 := call(t, http.MethodPost, "/v1/messages", headers, turn2)
	if resp2.StatusCode != http.StatusOK {
		t.Fatalf("turn 2: %d %s", resp2.StatusCode, body2)
	}
	if got := resp2.Header.Get("X-Mock-Credential"); got != cred {
		t.Fatalf("turn 2 went to %s, turn 1 to %s", got, cred)
	}
	var cacheRead float64
	for _, ev := range sseEvents(body2) {
		if !strings.Contains(ev, `"message_start"`) {
			continue
		}
		v, _ := jsonField(t, []byte(ev), "message", "usage", "cache_read_input_tokens").(float64)
		cacheRead = v
	}
	if cacheRead <= 0 {
		t.Fatalf("turn 2 read nothing from the mock's cache: %s", body2)
	}
	stats := up.Stats()[cred]
	if float64(stats.CacheReadTokens) != cacheRead {
		t.Fatalf("mock counted %d cache-read tokens, the stream said %v", stats.CacheReadTokens, cacheRead)
	}

	// The credential IDs are c1..c3; the mock names them claude-1..3.
	authID := "c" + strings.TrimPrefix(cred, "claude-")
	base := baseline[authID]
	check := func(requests float64) {
		t.Helper()
		for i, m := range seriesFor(authID) {
			v, ok := scrape(t, m.name, m.labels)
			if want := m.grew(requests); !ok || v-base[i] != want {
				t.Errorf("%s%v grew by %v (present %v), want %v", m.name, m.labels, v-base[i], ok, want)
			}
		}
		wantMetric(t, "caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "total"}, 3)
		wantMetric(t, "caddy_llm_proxy_credentials", map[string]string{"pool": poolName, "state": "available"}, 3)
		if strings.Contains(metricsText(t), session) {
			t.Error("a session ID shows up in the metrics")
		}
	}
	check(2)
	if t.Failed() {
		return
	}

	// A reload keeps the counters, and the new config keeps counting.
	loadConfig(t, t.TempDir(), site("\t\tmax_request_body 16MB\n"))
	check(2)
	turn3 := strings.Replace(turn2, `"and more"}]`, `"and more"},{"role":"assistant","content":"ok"},{"role":"user","content":"last"}]`, 1)
	resp3, body3 := call(t, http.MethodPost, "/v1/messages", headers, turn3)
	if resp3.StatusCode != http.StatusOK || resp3.Header.Get("X-Mock-Credential") != cred {
		t.Fatalf("turn 3: %d from %s: %s", resp3.StatusCode, resp3.Header.Get("X-Mock-Credential"), body3)
	}
	check(3)
}
