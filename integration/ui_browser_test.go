package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// The status page test drives the real Chromium over the DevTools
// protocol (chromedp) against the in-process Caddy. It is skipped when no
// browser is installed, unless UI_REQUIRE_BROWSER=1 (CI sets it). With
// UPDATE_SCREENSHOTS=1 it writes docs/status-page.png.

const (
	uiTeamPool   = "claude-team"
	uiBulkPool   = "load-test-200"
	uiSecret     = "ui-browser-secret-7f3a"
	uiBulkCount  = 200
	uiEvilLabel  = `<img src=x onerror="document.title='pwned'">`
	uiEvilModel  = `claude-<img src=x onerror="document.title='pwned by model'">`
	uiPageBudget = 90 * time.Second
)

// uiLoadConfig is loadConfig with the admin endpoint set up as an
// operator sets it up for the status page: a browser's navigation to it
// carries Sec-Fetch-Mode but neither Origin nor Referer, which Caddy's
// admin endpoint refuses unless its origins allow the empty origin ""
// (README: "The status page").
func uiLoadConfig(t *testing.T, storageDir, site string) {
	t.Helper()
	cfg := caddyfile(storageDir, site)
	plain := "\tadmin " + adminAddr + "\n"
	if !strings.Contains(cfg, plain) {
		t.Fatalf("the harness's admin line changed: %s", cfg)
	}
	_, port, _ := strings.Cut(adminAddr, ":")
	cfg = strings.Replace(cfg, plain, fmt.Sprintf("\tadmin %s {\n\t\torigins localhost:%s 127.0.0.1:%s [::1]:%s \"\"\n\t}\n", adminAddr, port, port, port), 1)
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{TestRequestTimeout: 20 * time.Second})
	tester.InitServer(cfg, "caddyfile")
	t.Cleanup(func() {
		// Later tests expect the harness's plain admin endpoint.
		caddytest.NewTester(t).InitServer(caddyfile(t.TempDir(), "\trespond 204"), "caddyfile")
	})
}

// findBrowser returns the Chromium binary, or skips the test when there is
// none and UI_REQUIRE_BROWSER is not 1.
func uiFindBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("UI_REQUIRE_BROWSER") == "1" {
		t.Fatal("UI_REQUIRE_BROWSER=1 but neither chromium nor chromium-browser is in PATH")
	}
	t.Skip("no chromium or chromium-browser in PATH (set UI_REQUIRE_BROWSER=1 to fail instead)")
	return ""
}

// newBrowser starts a headless Chromium and returns a tab context.
func uiBrowser(t *testing.T) context.Context {
	t.Helper()
	path := uiFindBrowser(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.WindowSize(1440, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// run runs browser actions with a deadline.
func uiRun(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, uiPageBudget)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page into T.
func uiEval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, uiPageBudget)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds.
func uiWait(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, uiPageBudget)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		t.Fatalf("waiting for %s (%s): %v; the page shows:\n%s", what, cond, err, text)
	}
}

// waitRenders waits until the page has rendered n more times: a refresh
// that started after this call has finished.
func uiWaitRenders(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	now := uiEval[string](t, ctx, `document.body.dataset.renders || "0"`)
	start, _ := strconv.Atoi(now)
	uiWait(t, ctx, "a refresh", fmt.Sprintf(`Number(document.body.dataset.renders || 0) >= %d`, start+n))
}

// uiRow is what the page shows for one credential.
type uiRow struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	StateText string `json:"stateText"`
	Who       string `json:"who"`
	Quota     string `json:"quota"`
	Requests  string `json:"requests"`
	Failovers string `json:"failovers"`
	Cache     string `json:"cache"`
	Tokens    string `json:"tokens"`
	Sessions  string `json:"sessions"`
}

func uiPageRows(t *testing.T, ctx context.Context, pool string) map[string]uiRow {
	t.Helper()
	js := fmt.Sprintf(`[...document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]')].map(tr => ({
		id: tr.dataset.id, state: tr.dataset.state,
		stateText: tr.querySelector('.c-state').textContent,
		who: tr.querySelector('.c-id').textContent,
		quota: tr.querySelector('.c-quota').textContent,
		requests: tr.querySelector('.c-requests').textContent,
		failovers: tr.querySelector('.c-failovers').textContent,
		cache: tr.querySelector('.c-cache').textContent,
		tokens: tr.querySelector('.c-tokens').textContent,
		sessions: tr.querySelector('.c-sessions').textContent,
	}))`, pool)
	rows := uiEval[[]uiRow](t, ctx, js)
	out := make(map[string]uiRow, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

// load sends Claude requests through Caddy from two client keys and a few
// sessions until stopped.
type uiLoad struct {
	stop chan struct{}
	wg   sync.WaitGroup
	sent atomic.Int64
}

func uiStartLoad(workers int) *uiLoad {
	l := &uiLoad{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key := []string{"alice-key-1", "bob-key-1"}[(w+i)%2]
				uiSend(key, fmt.Sprintf("ui-session-%d", (w*7+i)%5))
				l.sent.Add(1)
			}
		}()
	}
	return l
}

func (l *uiLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// sendOne sends one request and returns the status (0 on a transport
// error).
func uiSend(key, session string) int {
	body := `{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hello from the status page test"}]}`
	req, err := http.NewRequest(http.MethodPost, siteAddr+"/v1/messages", strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("x-api-key", key)
	req.Header.Set("X-Session-ID", session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestStatusPageInBrowser(t *testing.T) {
	ctx := uiBrowser(t)
	up := newUpstream(t, mockllmOpts())
	dir := t.TempDir()
	for i, label := range []string{"team account 1", "team account 2", "team account 3"} {
		writeRecord(t, dir, uiTeamPool, fmt.Sprintf("c%d", i+1), fmt.Sprintf(
			`{"provider":"claude","api_key":%q,"base_url":%q,"label":%q}`,
			[]string{"sk-ant-one", "sk-ant-two", "sk-ant-three"}[i], up.URL, label))
	}
	for i := range uiBulkCount {
		label := fmt.Sprintf("bulk %03d", i)
		if i == 7 {
			label = uiEvilLabel // record fields are attacker-influenced: it must show as text
		}
		writeRecord(t, dir, uiBulkPool, fmt.Sprintf("bulk-%03d", i), fmt.Sprintf(
			`{"provider":"openai","api_key":"sk-oai-bulk-%03d","base_url":%q,"label":%q}`, i, up.URL, label))
	}
	uiLoadConfig(t, dir, fmt.Sprintf(`	handle /bulk/* {
		llm_proxy {
			pool %[2]s
			rescan_interval 0
		}
	}
	handle {
		llm_proxy {
			pool %[1]s
			rescan_interval 0
			management_secret %[3]s
			routing {
				session_affinity on
			}
			access {
				key alice alice-key-1
				key bob bob-key-1
			}
		}
	}`, uiTeamPool, uiBulkPool, uiSecret))
	// c1 and c3 report subscription windows; c2 will be rate limited.
	up.SetQuota("sk-ant-one", mockllm.Quota{Primary: 0.42, Secondary: 0.17})
	up.SetQuota("sk-ant-three", mockllm.Quota{Primary: 0.93, Secondary: 0.61})

	ld := uiStartLoad(3)
	defer func() {
		select {
		case <-ld.stop:
		default:
			ld.halt()
		}
	}()

	admin := &adminClient{t: t, secret: uiSecret}
	teamAuths := func() map[string]map[string]any {
		return authViews(t, admin.do(http.MethodGet, "/llm_proxy/pools/"+uiTeamPool+"/auths", "", http.StatusOK))
	}

	// The page opens with the protected pool locked and the open one shown.
	pageURL := "http://" + adminAddr + "/llm_proxy/ui"
	uiRun(t, ctx, "opening the page", chromedp.Navigate(pageURL))
	uiWait(t, ctx, "the locked pool", fmt.Sprintf(`(() => { const s = document.querySelector('section[data-pool=%q]'); return s && !s.querySelector('form.unlock').hidden; })()`, uiTeamPool))
	uiWait(t, ctx, "200 credentials", fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length === %d`, uiBulkPool, uiBulkCount))
	if n := uiEval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length`, uiTeamPool)); n != 0 {
		t.Fatalf("locked pool shows %d credentials", n)
	}

	// While locked, automatic refreshes do not ask for the pool again (each
	// try would be a refused request in Caddy's log).
	asked := fmt.Sprintf(`performance.getEntriesByType("resource").filter(e => e.name.includes("/pools/%s/auths")).length`, uiTeamPool)
	askedBefore := uiEval[int](t, ctx, asked)
	uiWaitRenders(t, ctx, 2)
	if n := uiEval[int](t, ctx, asked); n != askedBefore {
		t.Fatalf("the locked pool was asked %d more times", n-askedBefore)
	}

	// A wrong secret is refused; the right one unlocks the pool.
	sel := fmt.Sprintf(`section[data-pool=%q] form.unlock`, uiTeamPool)
	uiRun(t, ctx, "entering a wrong secret",
		chromedp.SendKeys(chromedp.CSS(sel+` input[type=password]`), "not-the-secret"),
		chromedp.Click(chromedp.CSS(sel+` button[type=submit]`)))
	uiWait(t, ctx, "the refusal", fmt.Sprintf(`document.querySelector(%q).textContent.includes("wrong management secret")`, sel))
	uiEval[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).value = ""`, sel+` input[type=password]`))
	uiRun(t, ctx, "entering the secret",
		chromedp.SendKeys(chromedp.CSS(sel+` input[type=password]`), uiSecret),
		chromedp.Click(chromedp.CSS(sel+` button[type=submit]`)))
	uiWait(t, ctx, "the unlocked pool", fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length === 3`, uiTeamPool))

	// Rate limit c2 for its 5-hour window: it cools for every model.
	up.SetFault("sk-ant-two", mockllm.Fault{Status: http.StatusTooManyRequests, Times: 1, Headers: map[string]string{
		"anthropic-ratelimit-unified-5h-status": "rejected",
		"anthropic-ratelimit-unified-5h-reset":  strconv.FormatInt(time.Now().Add(2*time.Hour).Unix(), 10),
	}})
	uiWait(t, ctx, "c2 cooling", fmt.Sprintf(`(() => { const r = document.querySelector('section[data-pool=%q] tr[data-id="c2"]'); return r && r.dataset.state === "cooling"; })()`, uiTeamPool))
	if got := teamAuths()["c2"]["state"]; got != "cooling" {
		t.Fatalf("admin API: c2 is %v, page says cooling", got)
	}
	row := uiPageRows(t, ctx, uiTeamPool)["c2"]
	if !strings.Contains(row.StateText, "cooling until") || !strings.Contains(row.StateText, "in 1h") {
		t.Fatalf("c2 state text: %q", row.StateText)
	}
	if q := uiPageRows(t, ctx, uiTeamPool)["c3"].Quota; !strings.Contains(q, "93%") || !strings.Contains(q, "61%") {
		t.Fatalf("c3 quota: %q", q)
	}
	if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		uiWaitRenders(t, ctx, 1)
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join("..", "docs", "status-page.png")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The numbers: with the load stopped, the page's next refresh shows
	// what the admin API and the mock's own counters say.
	ld.halt()
	if ld.sent.Load() == 0 {
		t.Fatal("the load sent nothing")
	}
	uiWaitRenders(t, ctx, 2)
	rows := uiPageRows(t, ctx, uiTeamPool)
	views := teamAuths()
	stats := up.Stats()
	live := uiEval[bool](t, ctx, fmt.Sprintf(`[...document.querySelectorAll('section[data-pool=%q] table.creds th')].some(th => th.textContent === "Requests 1h")`, uiTeamPool))
	var usage struct {
		Auths []struct {
			Auth      string `json:"auth"`
			Client    string `json:"client"`
			Model     string `json:"model"`
			Requests  int64  `json:"requests"`
			Failovers int64  `json:"failovers"`
		} `json:"auths"`
	}
	if live {
		if err := json.Unmarshal(admin.do(http.MethodGet, "/llm_proxy/pools/"+uiTeamPool+"/usage?since=1h", "", http.StatusOK), &usage); err != nil {
			t.Fatal(err)
		}
	}
	var totalPage int64
	for i, label := range []string{"claude-1", "claude-2", "claude-3"} {
		id := fmt.Sprintf("c%d", i+1)
		r, v := rows[id], views[id]
		succ, fail := int64(v["successes"].(float64)), int64(v["failures"].(float64))
		if got := stats[label].Requests; got != succ+fail {
			t.Fatalf("%s: the mock saw %d requests, the admin API counts %d successes + %d failures", id, got, succ, fail)
		}
		if r.Sessions != fmt.Sprint(v["sessions"]) {
			t.Fatalf("%s: page shows %s sessions, admin API %v", id, r.Sessions, v["sessions"])
		}
		wantReq, wantFail := succ, fail
		if live {
			wantReq, wantFail = 0, 0
			for _, u := range usage.Auths {
				if u.Auth == id && u.Client == "" && u.Model == "" {
					wantReq, wantFail = u.Requests, u.Failovers
				}
			}
		} else if r.Cache != "\u2014" || r.Tokens != "\u2014" {
			t.Fatalf("%s: without usage, cache %q and tokens %q should be dashes", id, r.Cache, r.Tokens)
		}
		if r.Requests != uiCount(wantReq) || r.Failovers != uiCount(wantFail) {
			t.Fatalf("%s: page shows %s requests / %s failovers, want %d / %d (live usage: %v)", id, r.Requests, r.Failovers, wantReq, wantFail, live)
		}
		n, _ := strconv.ParseInt(r.Requests, 10, 64)
		totalPage += n
	}
	if !live && totalPage == 0 {
		t.Fatal("the page shows no requests at all")
	}
	summary := uiEval[string](t, ctx, fmt.Sprintf(`document.querySelector('section[data-pool=%q] .summary').textContent`, uiTeamPool))
	if !strings.Contains(summary, "3 total") || !strings.Contains(summary, "2 available") || !strings.Contains(summary, "1 cooling") {
		t.Fatalf("summary: %q", summary)
	}

	// Reset the cooling credential from the page.
	uiRun(t, ctx, "clicking Reset on c2", chromedp.Click(chromedp.CSS(fmt.Sprintf(`section[data-pool=%q] tr[data-id="c2"] button[data-act=reset]`, uiTeamPool))))
	uiWait(t, ctx, "c2 serving", fmt.Sprintf(`document.querySelector('section[data-pool=%q] tr[data-id="c2"]').dataset.state === "serving"`, uiTeamPool))
	if got := teamAuths()["c2"]["state"]; got != "serving" {
		t.Fatalf("after Reset, the admin API says c2 is %v", got)
	}

	// Disable c1 from the page: requests no longer reach it.
	uiRun(t, ctx, "clicking Disable on c1", chromedp.Click(chromedp.CSS(fmt.Sprintf(`section[data-pool=%q] tr[data-id="c1"] button[data-act=disable]`, uiTeamPool))))
	uiWait(t, ctx, "c1 disabled", fmt.Sprintf(`document.querySelector('section[data-pool=%q] tr[data-id="c1"]').dataset.state === "disabled"`, uiTeamPool))
	if v := teamAuths()["c1"]; v["state"] != "disabled" || v["disabled"] != true {
		t.Fatalf("after Disable, the admin API shows c1 as %v", v["state"])
	}
	before := up.Stats()
	for i := range 20 {
		if st := uiSend("alice-key-1", fmt.Sprintf("after-disable-%d", i)); st != http.StatusOK {
			t.Fatalf("request after disabling c1: status %d", st)
		}
	}
	after := up.Stats()
	if after["claude-1"].Requests != before["claude-1"].Requests {
		t.Fatalf("disabled c1 still got requests: %d → %d", before["claude-1"].Requests, after["claude-1"].Requests)
	}
	if got := after["claude-2"].Requests + after["claude-3"].Requests - before["claude-2"].Requests - before["claude-3"].Requests; got != 20 {
		t.Fatalf("c2 and c3 got %d of the 20 requests", got)
	}
	// The button now says Enable, and enabling works.
	uiRun(t, ctx, "clicking Enable on c1", chromedp.Click(chromedp.CSS(fmt.Sprintf(`section[data-pool=%q] tr[data-id="c1"] button[data-act=enable]`, uiTeamPool))))
	uiWait(t, ctx, "c1 serving", fmt.Sprintf(`document.querySelector('section[data-pool=%q] tr[data-id="c1"]').dataset.state === "serving"`, uiTeamPool))

	// A client names the model: a rate limit for a hostile model name puts
	// that name on the operator's page, as text.
	up.SetFault(mockllm.AnyKey, mockllm.Fault{Status: http.StatusTooManyRequests, Times: 1, Headers: map[string]string{"Retry-After": "3600"}})
	body := fmt.Sprintf(`{"model":%q,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, uiEvilModel)
	call(t, http.MethodPost, "/v1/messages", map[string]string{"x-api-key": "bob-key-1", "anthropic-version": "2023-06-01"}, body)
	uiWait(t, ctx, "the hostile model's cooldown", fmt.Sprintf(`[...document.querySelectorAll('section[data-pool=%q] .c-state')].some(td => td.textContent.includes(%q))`, uiTeamPool, uiEvilModel))

	// The attacker-named record shows as text; no element came of it.
	bulk := uiPageRows(t, ctx, uiBulkPool)
	if len(bulk) != uiBulkCount {
		t.Fatalf("bulk pool shows %d rows, want %d", len(bulk), uiBulkCount)
	}
	if !strings.Contains(bulk["bulk-007"].Who, uiEvilLabel) {
		t.Fatalf("bulk-007 shows %q, want its label as text", bulk["bulk-007"].Who)
	}
	if n := uiEval[int](t, ctx, `document.querySelectorAll('main img').length`); n != 0 {
		t.Fatalf("the page holds %d <img> elements", n)
	}
	if title := uiEval[string](t, ctx, `document.title`); title != "llm_proxy status" {
		t.Fatalf("document.title is %q: a label ran as script", title)
	}

	// Filtering: every bulk row matching "bulk-01" (10 of them), none of
	// the team pool; clearing it shows all again.
	uiRun(t, ctx, "filtering", chromedp.SendKeys(chromedp.CSS("#filter"), "bulk-01"))
	uiWait(t, ctx, "the filtered rows", fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length === 10`, uiBulkPool))
	uiWaitRenders(t, ctx, 1) // a refresh keeps the filter
	if n := uiEval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length`, uiBulkPool)); n != 10 {
		t.Fatalf("after a refresh the filter shows %d rows", n)
	}
	if n := uiEval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length`, uiTeamPool)); n != 0 {
		t.Fatalf("filter leaves %d team rows", n)
	}
	if focused := uiEval[string](t, ctx, `document.activeElement.id`); focused != "filter" {
		t.Fatalf("a refresh moved the focus to %q", focused)
	}
	uiEval[string](t, ctx, `document.querySelector("#filter").value = "bulk-0"`)
	uiRun(t, ctx, "widening the filter", chromedp.SendKeys(chromedp.CSS("#filter"), "\b"))
	uiWait(t, ctx, "all rows", fmt.Sprintf(`document.querySelectorAll('section[data-pool=%q] table.creds tbody tr[data-id]').length === %d`, uiBulkPool, uiBulkCount))

	// A refresh keeps the scroll position and the focused button.
	uiEval[int](t, ctx, fmt.Sprintf(`(document.querySelector(%q).focus(), window.scrollTo(0, 3000), window.scrollY)`,
		fmt.Sprintf(`section[data-pool=%q] tr[data-id="bulk-150"] button[data-act=disable]`, uiBulkPool)))
	scrolled := uiEval[int](t, ctx, `window.scrollY`)
	uiWaitRenders(t, ctx, 2)
	if y := uiEval[int](t, ctx, `window.scrollY`); y != scrolled || scrolled == 0 {
		t.Fatalf("scrolled to %d, after two refreshes at %d", scrolled, y)
	}
	if got := uiEval[string](t, ctx, `document.activeElement.closest("tr") ? document.activeElement.closest("tr").dataset.id + " " + document.activeElement.dataset.act : ""`); got != "bulk-150 disable" {
		t.Fatalf("after two refreshes the focus is on %q", got)
	}

	// Sorting by credential, descending.
	uiRun(t, ctx, "sorting by credential, descending",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`section[data-pool=%q] th[data-sort=id]`, uiBulkPool))))
	if first := uiEval[string](t, ctx, fmt.Sprintf(`document.querySelector('section[data-pool=%q] table.creds tbody tr[data-id]').dataset.id`, uiBulkPool)); first != "bulk-199" {
		t.Fatalf("sorted descending, the first row is %q", first)
	}

	// Nothing secret is in the page: neither the management secret nor
	// any upstream key.
	html := uiEval[string](t, ctx, `document.documentElement.outerHTML`)
	for _, s := range append(mockSecrets(uiSecret, "sk-oai-bulk-"), "alice-key-1", "bob-key-1") {
		if strings.Contains(html, s) {
			t.Fatalf("the page shows %q", s)
		}
	}
	admin.noSecrets(mockSecrets(uiSecret)...)
}

// fmtCount is how the page writes a count below 10000.
func uiCount(n int64) string {
	if n >= 10000 {
		return fmt.Sprintf("%.1fk", float64(n)/1000)
	}
	return strconv.FormatInt(n, 10)
}

// TestStatusPageLoginInBrowser logs a subscription in from the page: a new
// login, then a login again to the credential it made, each completed by
// pasting where the provider's page sent the browser.
func TestStatusPageLoginInBrowser(t *testing.T) {
	ctx := uiBrowser(t)
	up := newUpstream(t, mockllm.Options{OAuthAccounts: oauthAccounts()})
	dir := t.TempDir()
	const poolName = "ui-login"
	uiLoadConfig(t, dir, fmt.Sprintf(`	llm_proxy {
		pool %s
		rescan_interval 0
		%s
	}`, poolName, oauthBlocks(up.URL)))
	sec := fmt.Sprintf(`section[data-pool=%q]`, poolName)
	uiRun(t, ctx, "opening the page", chromedp.Navigate("http://"+adminAddr+"/llm_proxy/ui"))
	uiWait(t, ctx, "the empty pool", fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.includes("This pool has no credentials.")`, sec))

	// login starts from the open panel, follows the URL the page shows as
	// alice, and pastes where the provider sent the browser.
	login := func(what string) {
		t.Helper()
		uiRun(t, ctx, what+": starting", chromedp.Click(chromedp.CSS(sec+` .login button.primary`)))
		uiWait(t, ctx, what+": the authorize link", fmt.Sprintf(`!!document.querySelector(%q)`, sec+` .login a[href]`))
		href := uiEval[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).href`, sec+` .login a[href]`))
		if !strings.HasPrefix(href, up.URL+"/v1/oauth/authorize?") {
			t.Fatalf("%s: the page links to %s", what, href)
		}
		uiRun(t, ctx, what+": pasting",
			chromedp.SendKeys(chromedp.CSS(sec+` .login input[type=text]`), browse(t, href, "alice")),
			chromedp.Click(chromedp.CSS(sec+` .login button.primary`)))
		uiWait(t, ctx, what+": the confirmation", fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.startsWith("Logged in: claude-alice@example.com")`, sec+` .note.ok`))
	}

	uiRun(t, ctx, "opening a new login", chromedp.Click(chromedp.CSS(sec+` .head button`)))
	login("new login")
	const id = "claude-alice@example.com"
	uiWait(t, ctx, "the new credential", fmt.Sprintf(`(() => { const r = document.querySelector(%q); return r && r.dataset.state === "serving"; })()`, sec+` tr[data-id="`+id+`"]`))
	first, _ := up.OAuthTokens("alice")

	// Logging in again to the credential replaces its tokens.
	uiRun(t, ctx, "opening a login again", chromedp.Click(chromedp.CSS(sec+` tr[data-id="`+id+`"] button[data-act=login]`)))
	login("login again")
	admin := &adminClient{t: t}
	views := authViews(t, admin.do(http.MethodGet, "/llm_proxy/pools/"+poolName+"/auths", "", http.StatusOK))
	if len(views) != 1 || views[id]["kind"] != "access_token" || views[id]["email"] != "alice@example.com" {
		t.Fatalf("after two logins: %v", views)
	}
	if again, _ := up.OAuthTokens("alice"); again == first {
		t.Fatal("logging in again did not replace the tokens")
	}
	html := uiEval[string](t, ctx, `document.documentElement.outerHTML`)
	if again, _ := up.OAuthTokens("alice"); strings.Contains(html, again.AccessToken) || strings.Contains(html, again.RefreshToken) {
		t.Fatal("the page shows a token")
	}
}

// TestStatusPageWithoutUsage: when the usage route fails (a build without
// it answers 501), the page shows the lifetime counts, labelled so, and
// dashes for the usage columns.
func TestStatusPageWithoutUsage(t *testing.T) {
	ctx := uiBrowser(t)
	up := newUpstream(t, mockllmOpts())
	const poolName = "ui-no-usage"
	uiLoadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool %s
		rescan_interval 0
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
	}`, poolName, up.URL))
	up.SetFault("sk-ant-two", mockllm.Fault{Status: http.StatusInternalServerError, Times: 2})
	for i := range 7 {
		if st := uiSend("", fmt.Sprintf("no-usage-%d", i)); st != http.StatusOK {
			t.Fatalf("request %d: status %d", i, st)
		}
	}
	// The page's own fetch of .../usage answers 501 as the route did
	// before it was built; everything else goes to Caddy.
	notBuilt := `(() => {
		const real = window.fetch;
		window.fetch = (url, init) => String(url).includes("/usage?")
			? Promise.resolve(new Response('{"error":"usage is not built yet"}', {status: 501, headers: {"Content-Type": "application/json"}}))
			: real(url, init);
	})()`
	uiRun(t, ctx, "stubbing the usage route", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: notBuilt})
		return chromedp.Void{}, err
	}, chromedp.Navigate("http://"+adminAddr+"/llm_proxy/ui"))
	sec := fmt.Sprintf(`section[data-pool=%q]`, poolName)
	uiWait(t, ctx, "two rows", fmt.Sprintf(`document.querySelectorAll(%q).length === 2`, sec+` table.creds tbody tr[data-id]`))

	heads := uiEval[[]string](t, ctx, fmt.Sprintf(`[...document.querySelectorAll(%q)].map(th => th.textContent)`, sec+` table.creds th`))
	if !strings.Contains(strings.Join(heads, "|"), "Successes (lifetime)|Failures (lifetime)|Cache hit 1h") {
		t.Fatalf("headers without usage: %q", heads)
	}
	note := uiEval[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).textContent`, sec+` .usage-note`))
	if !strings.Contains(note, "usage is not built yet") || !strings.Contains(note, "lifetime") {
		t.Fatalf("usage note: %q", note)
	}
	admin := &adminClient{t: t}
	views := authViews(t, admin.do(http.MethodGet, "/llm_proxy/pools/"+poolName+"/auths", "", http.StatusOK))
	rows := uiPageRows(t, ctx, poolName)
	var failures int64
	for _, id := range []string{"c1", "c2"} {
		v, r := views[id], rows[id]
		succ, fail := int64(v["successes"].(float64)), int64(v["failures"].(float64))
		failures += fail
		if r.Requests != uiCount(succ) || r.Failovers != uiCount(fail) || r.Cache != "\u2014" || r.Tokens != "\u2014" {
			t.Fatalf("%s: page shows %+v, admin API %d successes, %d failures", id, r, succ, fail)
		}
	}
	if faults := up.Stats()["claude-2"].Faults; failures != faults || faults == 0 {
		t.Fatalf("the mock answered c2 with %d 500s, the page shows %d failures", faults, failures)
	}
	if got := uiEval[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).textContent`, sec+` table.clients tbody`)); !strings.Contains(got, "unavailable \u2014") {
		t.Fatalf("clients without usage: %q", got)
	}
}

// TestStatusPageNavigationNeedsEmptyOrigin pins down what README and the
// AdminAPI doc tell operators: Caddy's admin endpoint refuses a browser's
// navigation to the page (Sec-Fetch-Mode without Origin or Referer) with
// its default origins, and serves it once the empty origin is allowed; the
// page's own requests carry a same-origin Referer and pass either way.
func TestStatusPageNavigationNeedsEmptyOrigin(t *testing.T) {
	site := `	llm_proxy {
		pool ui-origins
		rescan_interval 0
	}`
	get := func(path string, headers map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+adminAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	navigate := map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none", "Sec-Fetch-Dest": "document"}
	fromPage := map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Referer": "http://" + adminAddr + "/llm_proxy/ui"}
	crossSite := map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}

	loadConfig(t, t.TempDir(), site)
	if got := get("/llm_proxy/ui", navigate); got != http.StatusForbidden {
		t.Fatalf("default origins: a navigation got %d; if Caddy now allows it, drop the origins advice from README and AdminAPI", got)
	}
	if got := get("/llm_proxy/ui/api/pools", fromPage); got != http.StatusOK {
		t.Fatalf("default origins: the page's request got %d", got)
	}

	uiLoadConfig(t, t.TempDir(), site)
	for _, tc := range []struct {
		path    string
		headers map[string]string
		want    int
	}{
		{"/llm_proxy/ui", navigate, http.StatusOK},
		{"/llm_proxy/ui/api/pools", fromPage, http.StatusOK},
		{"/llm_proxy/ui/api/pools", crossSite, http.StatusForbidden},
		{"/llm_proxy/ui/api/pools", map[string]string{"Sec-Fetch-Mode": "no-cors", "Referer": ""}, http.StatusBadRequest},
	} {
		if got := get(tc.path, tc.headers); got != tc.want {
			t.Fatalf("origins with \"\": GET %s with %v: %d, want %d", tc.path, tc.headers, got, tc.want)
		}
	}
}
