package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/clock"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/testutil"
)

// oauthAccounts are the fake OAuth server's accounts of the login tests.
func oauthAccounts() map[string]mockllm.OAuthAccount {
	return map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude},
		"bob":   {Provider: mockllm.OAuthClaude},
		"dave":  {Provider: mockllm.OAuthClaude},
		"carol": {Provider: mockllm.OAuthCodex},
	}
}

// oauthBlocks point a pool's claude and codex logins at the mock.
func oauthBlocks(mock string) string {
	return fmt.Sprintf(`oauth claude {
			token_url %[1]s/v1/oauth/token
			authorize_url %[1]s/v1/oauth/authorize
		}
		oauth codex {
			token_url %[1]s/oauth/token
			authorize_url %[1]s/oauth/authorize
		}`, mock)
}

// browse opens an authorize URL as the user's browser would, logged in as
// the account label, and returns where the provider redirects to (not
// followed).
func browse(t *testing.T, authorizeURL, label string) string {
	t.Helper()
	if label != "" {
		authorizeURL += "&login_hint=" + url.QueryEscape(label)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") == "" {
		t.Fatalf("authorize page answered %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// startLogin starts a login through the admin API and returns its ID and
// URL.
func startLogin(t *testing.T, c *adminClient, base, body string) (id, authorizeURL string) {
	t.Helper()
	b := c.do(http.MethodPost, base+"/logins", body, http.StatusCreated)
	var v map[string]string
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("start answer: %v: %s", err, b)
	}
	if v["login_id"] == "" || v["url"] == "" || v["expires_at"] == "" || v["provider"] == "" {
		t.Fatalf("start answer: %s", b)
	}
	return v["login_id"], v["url"]
}

func codeBody(pasted string) string {
	b, _ := json.Marshal(map[string]string{"code": pasted})
	return string(b)
}

func queryOf(t *testing.T, loc string) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// verifiers are the PKCE verifiers the mock's token endpoints received.
func verifiers(t *testing.T, up *upstream) []string {
	t.Helper()
	var out []string
	for _, r := range up.Requests() {
		switch r.Path {
		case "/v1/oauth/token":
			var m map[string]string
			if json.Unmarshal([]byte(r.Body), &m) == nil && m["code_verifier"] != "" {
				out = append(out, m["code_verifier"])
			}
		case "/oauth/token":
			if q, err := url.ParseQuery(r.Body); err == nil && q.Get("code_verifier") != "" {
				out = append(out, q.Get("code_verifier"))
			}
		}
	}
	return out
}

func TestAdminLoginEndToEnd(t *testing.T) {
	up := newUpstream(t, mockllm.Options{OAuthAccounts: oauthAccounts()})
	dir := t.TempDir()
	const secret = "login-secret-staple-battery"
	loadConfig(t, dir, fmt.Sprintf(`	handle /other/* {
		llm_proxy {
			pool login-other
			rescan_interval 0
			%[1]s
		}
	}
	handle /locked/* {
		llm_proxy {
			pool login-locked
			rescan_interval 0
			management_secret %[2]s
			%[1]s
		}
	}
	handle {
		llm_proxy {
			pool login-main
			rescan_interval 0
			%[1]s
		}
	}`, oauthBlocks(up.URL), secret))
	admin := &adminClient{t: t}
	base := "/llm_proxy/pools/login-main"

	// A fresh login, completed with the whole redirect URL: the record is
	// named after the account and serves at once.
	id, authURL := startLogin(t, admin, base, fmt.Sprintf(`{"provider":"claude","base_url":%q,"label":"Alice"}`, up.URL))
	if !strings.HasPrefix(authURL, up.URL+"/v1/oauth/authorize?") || !strings.Contains(authURL, "code_challenge_method=S256") {
		t.Fatalf("authorize URL %s", authURL)
	}
	b := admin.do(http.MethodPost, base+"/logins/"+id, codeBody(browse(t, authURL, "alice")), http.StatusCreated)
	if jsonField(t, b, "id") != "claude-alice@example.com" || jsonField(t, b, "kind") != "access_token" ||
		jsonField(t, b, "label") != "Alice" || jsonField(t, b, "email") != "alice@example.com" {
		t.Fatalf("completed view: %s", b)
	}
	alice, _ := up.OAuthTokens("alice")
	data, err := os.ReadFile(filepath.Join(dir, "llm_proxy", "login-main", "auths", "claude-alice@example.com.json"))
	if err != nil {
		t.Fatalf("record not in storage: %v", err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec["type"] != "claude" || rec["access_token"] != alice.AccessToken || rec["refresh_token"] != alice.RefreshToken ||
		rec["expired"] == nil || rec["last_refresh"] == nil || rec["account_id"] != "acct-alice" {
		t.Fatalf("stored record: %s", data)
	}
	if got := ask(t, ""); got != "alice" {
		t.Fatalf("served by %q, want the logged-in account", got)
	}
	// Replay of a used login.
	admin.do(http.MethodPost, base+"/logins/"+id, codeBody(browse(t, authURL, "alice")), http.StatusNotFound)

	// Re-login of a credential whose token died (Claude's CODE#STATE
	// form): its tokens are replaced, its settings kept, its cooldown
	// cleared, and it serves again in its tier.
	admin.do(http.MethodPost, base+"/auths", fmt.Sprintf(
		`{"id":"team/relog","provider":"claude","access_token":"oat-dead-0123456789","base_url":%q,"priority":5,"weight":2,"label":"R","note":"kept"}`, up.URL),
		http.StatusCreated)
	if got := ask(t, ""); got != "alice" {
		t.Fatalf("served by %q while the dead credential fails over", got)
	}
	id, authURL = startLogin(t, admin, base, `{"provider":"claude","id":"team/relog"}`)
	q := queryOf(t, browse(t, authURL, "bob"))
	b = admin.do(http.MethodPost, base+"/logins/"+id, codeBody(q.Get("code")+"#"+q.Get("state")), http.StatusCreated)
	if jsonField(t, b, "id") != "team/relog" || jsonField(t, b, "priority") != 5.0 || jsonField(t, b, "weight") != 2.0 ||
		jsonField(t, b, "label") != "R" || len(jsonField(t, b, "cooldowns").([]any)) != 0 {
		t.Fatalf("re-login view: %s", b)
	}
	data, _ = os.ReadFile(filepath.Join(dir, "llm_proxy", "login-main", "auths", "team", "relog.json"))
	bob, _ := up.OAuthTokens("bob")
	if !strings.Contains(string(data), `"note": "kept"`) || !strings.Contains(string(data), bob.AccessToken) {
		t.Fatalf("re-login record: %s", data)
	}
	if got := ask(t, ""); got != "bob" {
		t.Fatalf("served by %q, want the re-logged-in credential of the higher tier", got)
	}

	// The bare code; a codex login (its id_token and account kept).
	id, authURL = startLogin(t, admin, base, fmt.Sprintf(`{"provider":"claude","id":"dave","base_url":%q,"disabled":true}`, up.URL))
	b = admin.do(http.MethodPost, base+"/logins/"+id, codeBody(queryOf(t, browse(t, authURL, "dave")).Get("code")), http.StatusCreated)
	if jsonField(t, b, "id") != "dave" || jsonField(t, b, "disabled") != true {
		t.Fatalf("bare-code view: %s", b)
	}
	id, authURL = startLogin(t, admin, base, fmt.Sprintf(`{"provider":"codex","base_url":%q}`, up.URL+"/v1"))
	b = admin.do(http.MethodPost, base+"/logins/"+id, codeBody(browse(t, authURL, "carol")), http.StatusCreated)
	if jsonField(t, b, "id") != "codex-carol@example.com" || jsonField(t, b, "account_id") != "acct-carol" {
		t.Fatalf("codex view: %s", b)
	}
	resp, body := call(t, http.MethodPost, "/v1/responses", nil, `{"model":"gpt-5-codex","input":"hi"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mock-Credential") != "carol" {
		t.Fatalf("codex request: %d %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Credential"), body)
	}

	// Attacks. A state of another login is refused and ends the login.
	a, aURL := startLogin(t, admin, base, `{"provider":"claude","id":"victim"}`)
	_, otherURL := startLogin(t, admin, base, `{"provider":"claude","id":"attacker"}`)
	b = admin.do(http.MethodPost, base+"/logins/"+a, codeBody(browse(t, otherURL, "alice")), http.StatusBadRequest)
	if msg, _ := jsonField(t, b, "error").(string); !strings.Contains(msg, "state") {
		t.Fatalf("wrong-state error: %s", b)
	}
	admin.do(http.MethodPost, base+"/logins/"+a, codeBody(browse(t, aURL, "alice")), http.StatusNotFound)
	admin.do(http.MethodGet, base+"/auths/victim", "", http.StatusNotFound)

	// A login ID of another pool is unknown here, and stays usable there.
	o, oURL := startLogin(t, admin, "/llm_proxy/pools/login-other", fmt.Sprintf(`{"provider":"claude","base_url":%q}`, up.URL))
	loc := browse(t, oURL, "alice")
	admin.do(http.MethodPost, base+"/logins/"+o, codeBody(loc), http.StatusNotFound)
	admin.do(http.MethodPost, "/llm_proxy/pools/login-other/logins/"+o, codeBody(loc), http.StatusCreated)

	// Paste without a code: refused, the login stays.
	p, pURL := startLogin(t, admin, base, `{"provider":"claude","id":"patient"}`)
	admin.do(http.MethodPost, base+"/logins/"+p, codeBody("http://localhost:54545/callback"), http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins/"+p, `{"code":1}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins/"+p, `{"code":"x","verifier":"y"}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins/"+p, codeBody(browse(t, pURL, "alice")), http.StatusCreated)

	// Cancel.
	c, cURL := startLogin(t, admin, base, `{"provider":"claude"}`)
	admin.do(http.MethodDelete, base+"/logins/"+c, "", http.StatusOK)
	admin.do(http.MethodDelete, base+"/logins/"+c, "", http.StatusNotFound)
	admin.do(http.MethodPost, base+"/logins/"+c, codeBody(browse(t, cURL, "alice")), http.StatusNotFound)

	// Bad starts.
	admin.do(http.MethodPost, base+"/logins", `{"provider":"gemini"}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins", `{}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins", `{"provider":"claude","access_token":"x"}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins", `{"provider":"claude","id":"../etc"}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins", `{"provider":"claude","id":"dave","base_url":"ftp://x"}`, http.StatusBadRequest)
	admin.do(http.MethodPost, base+"/logins", `{"provider":"codex","id":"dave"}`, http.StatusConflict)
	admin.do(http.MethodPost, base+"/auths", `{"id":"keyed","provider":"claude","api_key":"sk-ant-three"}`, http.StatusCreated)
	admin.do(http.MethodPost, base+"/logins", `{"provider":"claude","id":"keyed"}`, http.StatusConflict)
	admin.do(http.MethodGet, base+"/logins", "", http.StatusMethodNotAllowed)
	admin.do(http.MethodPut, base+"/logins/x", "", http.StatusMethodNotAllowed)

	// Expired: ten minutes after the start, the login is gone, though the
	// provider's code would still be good.
	fake := clock.NewFake(time.Now())
	t.Cleanup(clock.Install(fake.Now))
	e, eURL := startLogin(t, admin, base, `{"provider":"claude","id":"late"}`)
	loc = browse(t, eURL, "alice")
	fake.Advance(10*time.Minute + time.Second)
	admin.do(http.MethodPost, base+"/logins/"+e, codeBody(loc), http.StatusNotFound)
	admin.do(http.MethodGet, base+"/auths/late", "", http.StatusNotFound)

	// A pool with a management secret needs it for every login route.
	locked := "/llm_proxy/pools/login-locked"
	right := &adminClient{t: t, secret: secret}
	admin.do(http.MethodPost, locked+"/logins", `{"provider":"claude"}`, http.StatusUnauthorized)
	l, lURL := startLogin(t, right, locked, fmt.Sprintf(`{"provider":"claude","base_url":%q}`, up.URL))
	loc = browse(t, lURL, "alice")
	admin.do(http.MethodPost, locked+"/logins/"+l, codeBody(loc), http.StatusUnauthorized)
	admin.do(http.MethodDelete, locked+"/logins/"+l, "", http.StatusUnauthorized)
	right.do(http.MethodPost, locked+"/logins/"+l, codeBody(loc), http.StatusCreated)

	// Seven logins reached the token endpoint; the refused ones never did.
	// No response ever showed a PKCE verifier or a token.
	vs := verifiers(t, up)
	if len(vs) != 7 {
		t.Fatalf("%d code exchanges seen, want 7", len(vs))
	}
	secrets := append(vs, alice.AccessToken, alice.RefreshToken, bob.AccessToken, bob.RefreshToken, secret)
	for _, label := range []string{"carol", "dave"} {
		tok, _ := up.OAuthTokens(label)
		secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
	}
	admin.noSecrets(secrets...)
	right.noSecrets(secrets...)
}

// loginCommand is `caddy llm-proxy login` running as its own process.
type loginCommand struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	output strings.Builder
	stderr strings.Builder
}

func runLoginCommand(t *testing.T, bin string, args ...string) *loginCommand {
	t.Helper()
	home := t.TempDir()
	c := &loginCommand{cmd: exec.Command(bin, append([]string{"llm-proxy", "login"}, args...)...), lines: make(chan string, 100)}
	c.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// authorizeURL reads the output up to the authorize URL.
func (c *loginCommand) authorizeURL(t *testing.T) string {
	t.Helper()
	for line := range c.lines {
		c.output.WriteString(line + "\n")
		if strings.HasPrefix(line, "http") && strings.Contains(line, "/authorize?") {
			return line
		}
	}
	_ = c.cmd.Wait()
	t.Fatalf("no authorize URL; output:\n%s\nstderr:\n%s", c.output.String(), c.stderr.String())
	return ""
}

// wait waits for the command to exit 0 and returns its output.
func (c *loginCommand) wait(t *testing.T) string {
	t.Helper()
	for line := range c.lines {
		c.output.WriteString(line + "\n")
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("login command: %v\noutput:\n%s\nstderr:\n%s", err, c.output.String(), c.stderr.String())
	}
	return c.output.String()
}

// TestLoginSubcommandEndToEnd logs in with the built binary, once with the
// answer pasted into its standard input and once with the browser's
// redirect caught by the command itself, then starts Caddy with the same
// config: both credentials serve.
func TestLoginSubcommandEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy")
	}
	up := newUpstream(t, mockllm.Options{OAuthAccounts: oauthAccounts()})
	bin := buildCaddy(t)
	storage := t.TempDir()
	callback := fmt.Sprintf("http://localhost:%d/callback", testutil.FreePort(t))
	body := fmt.Sprintf(`	llm_proxy {
		pool cli-login
		rescan_interval 0
		oauth claude {
			token_url %[1]s/v1/oauth/token
			authorize_url %[1]s/v1/oauth/authorize
			redirect_uri %[2]s
		}
	}`, up.URL, callback)
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	ports := &caddyProcess{admin: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), site: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))}
	if err := os.WriteFile(cfg, []byte(clusterConfig(ports, storage, body)), 0o600); err != nil {
		t.Fatal(err)
	}

	// Pasted: the browser ran elsewhere; the user copies its address bar.
	login := runLoginCommand(t, bin, "claude", "--pool", "cli-login", "--config", cfg, "--adapter", "caddyfile",
		"--no-browser-listener", "--base-url", up.URL)
	loc := browse(t, login.authorizeURL(t), "alice")
	if _, err := io.WriteString(login.stdin, loc+"\n"); err != nil {
		t.Fatal(err)
	}
	out := login.wait(t)
	alice, _ := up.OAuthTokens("alice")
	if !strings.Contains(out, "llm_proxy/cli-login/auths/claude-alice@example.com.json") ||
		strings.Contains(out, alice.AccessToken) || strings.Contains(out, alice.RefreshToken) {
		t.Fatalf("output:\n%s", out)
	}
	data, err := os.ReadFile(filepath.Join(storage, "llm_proxy", "cli-login", "auths", "claude-alice@example.com.json"))
	if err != nil || !strings.Contains(string(data), alice.AccessToken) {
		t.Fatalf("record: %v: %s", err, data)
	}

	// Caught: the browser on this machine follows the provider's redirect
	// to the command, which finishes by itself.
	login = runLoginCommand(t, bin, "claude", "--pool", "cli-login", "--config", cfg, "--adapter", "caddyfile",
		"--id", "bob", "--base-url", up.URL)
	authURL := login.authorizeURL(t)
	// The command listens before it prints the URL.
	resp, err := http.Get(authURL + "&login_hint=bob")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Logged in") {
		t.Fatalf("browser page %d: %s", resp.StatusCode, page)
	}
	login.wait(t)

	p := startCaddy(t, bin, storage, body)
	served := map[string]int{}
	for i := 0; i < 4; i++ {
		served[p.send(t, conversation("login", "", 1))]++
	}
	if served["alice"] != 2 || served["bob"] != 2 {
		t.Fatalf("served by %v, want both logged-in accounts", served)
	}
}
