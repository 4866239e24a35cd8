package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// adminDo sends one admin request to a Caddy process; safe to call from
// any goroutine.
func (p *caddyProcess) adminDo(method, path, contentType, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+p.admin+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// allAtOnce runs one admin request on every process at the same moment
// and fails the test unless each answers 200.
func allAtOnce(t *testing.T, procs []*caddyProcess, req func(p *caddyProcess) (int, []byte, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	start := make(chan struct{})
	for i, p := range procs {
		wg.Go(func() {
			<-start
			status, b, err := req(p)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d: %s", status, b)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", procs[i].admin, err)
		}
	}
}

// maskedSecrets returns the masked secret of every credential of pool on
// process p.
func (p *caddyProcess) maskedSecrets(t *testing.T, pool string) map[string]string {
	t.Helper()
	status, b, err := p.adminDo(http.MethodGet, "/llm_proxy/pools/"+pool+"/auths", "", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s: %d %v %s", p.admin, status, err, b)
	}
	out := map[string]string{}
	for id, v := range authViews(t, b) {
		out[id] = fmt.Sprint(v["masked_secret"])
	}
	return out
}

// Two Caddy processes on one file_system storage refresh each due OAuth
// credential once between them: the stored records (Claude and Codex)
// after both rescan at the same moment, the inline credential after both
// load it at the same moment. The process that comes second takes the
// first one's tokens over from storage.
func TestOAuthRefreshOnceAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts two Caddy processes")
	}
	up := newUpstream(t, mockllm.Options{OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude}, "bob": {Provider: mockllm.OAuthCodex}, "carol": {Provider: mockllm.OAuthClaude},
	}})
	bin := buildCaddy(t)
	storage := t.TempDir()
	const pool = "cluster-oauth"
	body := func(inline string) string {
		return fmt.Sprintf("\tllm_proxy {\n\t\tpool %s\n\t\t%s\n%s\t}", pool, oauthBlocks(up.URL), inline)
	}
	procs := []*caddyProcess{startCaddy(t, bin, storage, body("")), startCaddy(t, bin, storage, body(""))}

	// Records due at once (their tokens expire within refresh_lead), as
	// a login tool or an operator puts them into the shared storage.
	exp := oauth.FormatTime(time.Now().Add(30 * time.Minute))
	writeRecord(t, storage, pool, "alice", oauthRecord("alice", up.URL, time.Now().Add(30*time.Minute)))
	writeRecord(t, storage, pool, "bob", fmt.Sprintf(`{"type":"codex","access_token":"mock-at-bob","refresh_token":"mock-rt-bob","account_id":"acct-bob","email":"bob@example.com","expired":%q,"base_url":%q}`, exp, up.URL))
	allAtOnce(t, procs, func(p *caddyProcess) (int, []byte, error) {
		return p.adminDo(http.MethodPost, "/llm_proxy/pools/"+pool+"/rescan", "", "")
	})

	// An inline credential without an expiry, loaded by both at once.
	inline := fmt.Sprintf("\t\tauth carol {\n\t\t\tprovider claude\n\t\t\taccess_token mock-at-carol\n\t\t\trefresh_token mock-rt-carol\n\t\t\tbase_url %s\n\t\t}\n", up.URL)
	allAtOnce(t, procs, func(p *caddyProcess) (int, []byte, error) {
		return p.adminDo(http.MethodPost, "/load", "text/caddyfile", clusterConfig(p, storage, body(inline)))
	})
	http.DefaultClient.CloseIdleConnections()

	// Both processes end up holding each account's latest token.
	labels := []string{"alice", "bob", "carol"}
	eventually(t, "both processes to hold the latest tokens", func() bool {
		for _, p := range procs {
			masked := p.maskedSecrets(t, pool)
			for _, label := range labels {
				tok, _ := up.OAuthTokens(label)
				if tok.RefreshToken == "mock-rt-"+label || masked[label] != "…"+tok.AccessToken[len(tok.AccessToken)-4:] {
					return false
				}
			}
		}
		return true
	})
	for _, label := range labels {
		if s := up.OAuthStats()[label]; s.Refreshes != 1 || s.Rejected != 0 {
			t.Errorf("%s: %+v; want exactly one refresh and no spent refresh token sent", label, s)
		}
	}
	for _, p := range procs {
		for i := 0; i < 4; i++ {
			if cred := p.send(t, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`); cred != "alice" && cred != "carol" {
				t.Fatalf("%s: served by %q", p.site, cred)
			}
		}
	}
}
