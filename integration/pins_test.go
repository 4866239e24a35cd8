package integration

import (
	"fmt"
	"net/http"
	"testing"
)

// TestPinsAreNotSessions: the credential that created a stored response is
// remembered apart from the session bindings. The admin API counts only
// sessions, and dropping every session keeps the pin, so follow-ups still
// reach the account that holds the response.
func TestPinsAreNotSessions(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool pins-apart
		auth o1 {
			provider openai
			api_key sk-oai-one
			base_url %[1]s
		}
		auth o2 {
			provider openai
			api_key sk-oai-two
			base_url %[1]s
		}
		routing {
			session_affinity on
		}
	}`, up.URL))
	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/pins-apart"

	resp, body := call(t, http.MethodPost, "/v1/responses", map[string]string{"X-Session-Id": "sess-pins"}, `{"model":"gpt-5","input":"hello"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create: status %d: %s", resp.StatusCode, body)
	}
	id, _ := jsonField(t, body, "id").(string)
	owner := resp.Header.Get("X-Mock-Credential")
	if id == "" || owner == "" {
		t.Fatalf("no response ID or credential: %s", body)
	}
	if total, byAuth := sessionCounts(t, admin.do(http.MethodGet, base+"/sessions", "", http.StatusOK)); total != 1 {
		t.Fatalf("%d sessions (%v) after one conversation: the pin was counted as a session", total, byAuth)
	}
	admin.do(http.MethodDelete, base+"/sessions", "", http.StatusOK)
	if total, _ := sessionCounts(t, admin.do(http.MethodGet, base+"/sessions", "", http.StatusOK)); total != 0 {
		t.Fatalf("%d sessions after dropping them all", total)
	}
	// Round robin would move on; the follow-ups stay with the response.
	for i := range 3 {
		resp, body := call(t, http.MethodPost, "/v1/responses", nil,
			fmt.Sprintf(`{"model":"gpt-5","previous_response_id":%q,"input":"and then %d?"}`, id, i))
		if got := resp.Header.Get("X-Mock-Credential"); resp.StatusCode != http.StatusOK || got != owner {
			t.Fatalf("follow-up %d went to %q (status %d), want %q: %s", i, got, resp.StatusCode, owner, body)
		}
	}
}
