package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// steerKeys are four Claude logins of the mock, by key and label.
var steerKeys = map[string]string{"sk-ant-q1": "q1", "sk-ant-q2": "q2", "sk-ant-q3": "q3", "sk-ant-q4": "q4"}

// steerTurn sends turn n of the conversation with the session ID and
// returns the label of the credential that served it.
func steerTurn(t *testing.T, session string, turn int) string {
	t.Helper()
	resp, body := call(t, http.MethodPost, "/v1/messages", map[string]string{"anthropic-version": "2023-06-01"},
		conversation("steer-"+session, session, turn))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s turn %d: status %d: %s", session, turn, resp.StatusCode, body)
	}
	return resp.Header.Get("X-Mock-Credential")
}

// TestQuotaSteering: four subscriptions report 20/50/97/99% of their 5h
// window used. New conversations go only to the first two; conversations
// bound before the utilization rose stay where they are; the admin API
// shows each credential's quota object and the metrics its utilization.
func TestQuotaSteering(t *testing.T) {
	up := newUpstream(t, mockllm.Options{Keys: steerKeys})
	var site strings.Builder
	site.WriteString("\tllm_proxy {\n\t\tpool quota-steer\n\t\trescan_interval 0\n")
	for _, id := range []string{"q1", "q2", "q3", "q4"} {
		fmt.Fprintf(&site, "\t\tauth %s {\n\t\t\tprovider claude\n\t\t\tapi_key sk-ant-%s\n\t\t\tbase_url %s\n\t\t}\n", id, id, up.URL)
	}
	auths := site.String()
	// quota_headroom is left at its default, 0.05.
	dir := t.TempDir()
	loadConfig(t, dir, auths+"\t\trouting {\n\t\t\tsession_affinity on\n\t\t}\n\t}")

	// Before any quota is reported, round robin spreads eight
	// conversations over all four.
	bound := map[string]string{}
	per := map[string]int{}
	for i := range 8 {
		s := fmt.Sprintf("old-%d", i)
		bound[s] = steerTurn(t, s, 1)
		per[bound[s]]++
	}
	if len(per) != 4 {
		t.Fatalf("the first conversations did not reach all four credentials: %v", per)
	}

	// Their utilization rises; the upstream reports it on every response
	// from now on (set through the mock's control endpoint).
	for label, used := range map[string]float64{"q1": 0.2, "q2": 0.5, "q3": 0.97, "q4": 0.99} {
		resp, body := postJSON(t, up.URL+"/_mock/quota", fmt.Sprintf(`{"key":%q,"primary":%v,"secondary":0.1}`, label, used))
		if resp != http.StatusNoContent {
			t.Fatalf("setting the mock's quota: %d %s", resp, body)
		}
	}
	// The bound conversations go on where they are (which records every
	// credential's utilization)...
	for s, label := range bound {
		if got := steerTurn(t, s, 2); got != label {
			t.Fatalf("%s moved from %s to %s", s, label, got)
		}
	}
	// ...while new ones go only to the two with room, both of them.
	fresh := map[string]int{}
	for i := range 12 {
		fresh[steerTurn(t, fmt.Sprintf("new-%d", i), 1)]++
	}
	if len(fresh) != 2 || fresh["q1"] == 0 || fresh["q2"] == 0 {
		t.Fatalf("new conversations went to %v; want q1 and q2 only", fresh)
	}
	for s, label := range bound {
		if got := steerTurn(t, s, 3); got != label {
			t.Fatalf("%s moved from %s to %s after steering", s, label, got)
		}
	}

	// The admin API shows the quota object.
	admin := &adminClient{t: t}
	b := admin.do(http.MethodGet, "/llm_proxy/pools/quota-steer/auths/q3", "", http.StatusOK)
	var view struct {
		Quota struct {
			Status              string `json:"status"`
			RepresentativeClaim string `json:"representative_claim"`
			Windows             []struct {
				Name        string   `json:"name"`
				Utilization *float64 `json:"utilization"`
				Status      string   `json:"status"`
				ResetAt     string   `json:"reset_at"`
			} `json:"windows"`
		} `json:"quota"`
	}
	if err := json.Unmarshal(b, &view); err != nil {
		t.Fatalf("q3 view: %v: %s", err, b)
	}
	q := view.Quota
	if q.Status != "allowed" || q.RepresentativeClaim != "five_hour" || len(q.Windows) != 2 ||
		q.Windows[0].Name != "5h" || q.Windows[0].Utilization == nil || *q.Windows[0].Utilization != 0.97 ||
		q.Windows[0].ResetAt == "" || q.Windows[1].Name != "7d" || *q.Windows[1].Utilization != 0.1 {
		t.Fatalf("q3 quota: %s", b)
	}
	t.Logf("admin API view of q3:\n%s", b)
	admin.noSecrets("sk-ant-q")

	// The metrics show the utilization of every credential.
	for label, want := range map[string]float64{"q1": 0.2, "q2": 0.5, "q3": 0.97, "q4": 0.99} {
		wantMetric(t, "caddy_llm_proxy_quota_utilization", map[string]string{"pool": "quota-steer", "auth": label, "window": "5h"}, want)
	}

	// quota_headroom 0 turns steering off (the recorded quota survives the
	// reload): new conversations reach all four again.
	loadConfig(t, dir, auths+"\t\trouting {\n\t\t\tsession_affinity on\n\t\t\tquota_headroom 0\n\t\t}\n\t}")
	off := map[string]int{}
	for i := range 8 {
		off[steerTurn(t, fmt.Sprintf("off-%d", i), 1)]++
	}
	if len(off) != 4 {
		t.Fatalf("with quota_headroom 0, new conversations went to %v; want all four", off)
	}
}

// postJSON posts a JSON body to url and returns the status and body.
func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
