package llmproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/filestorage"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

// loginRun is `caddy llm-proxy login` running in process with pipes for
// its standard input and output.
type loginRun struct {
	stdin  io.WriteCloser
	lines  chan string
	output *strings.Builder
	done   chan error
}

func startLoginCommand(t *testing.T, args ...string) *loginRun {
	t.Helper()
	cmd := newLoginCommand()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	cmd.SetIn(inR)
	cmd.SetOut(outW)
	cmd.SetErr(outW)
	r := &loginRun{stdin: inW, lines: make(chan string, 100), output: new(strings.Builder), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		err := cmd.ExecuteContext(ctx)
		outW.Close()
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		inW.Close()
	})
	return r
}

// authorizeURL reads the command's output up to the authorize URL.
func (r *loginRun) authorizeURL(t *testing.T) string {
	t.Helper()
	for line := range r.lines {
		r.output.WriteString(line + "\n")
		if strings.HasPrefix(line, "http") && strings.Contains(line, "/authorize?") {
			return line
		}
	}
	t.Fatalf("no authorize URL in the output:\n%s", r.output)
	return ""
}

// wait waits for the command to end and returns the rest of its output
// and its error.
func (r *loginRun) wait(t *testing.T) (string, error) {
	t.Helper()
	var err error
	select {
	case err = <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not end; output:\n%s", r.output)
	}
	for line := range r.lines {
		r.output.WriteString(line + "\n")
	}
	return r.output.String(), err
}

func (r *loginRun) paste(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(r.stdin, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

// loginConfigFile writes a JSON config whose llm_proxy handler of pool
// "cli" sits in a subroute, with storage in dir and OAuth at the mock.
func loginConfigFile(t *testing.T, dir, mock, redirect, extra string) string {
	t.Helper()
	oauthClaude := fmt.Sprintf(`"token_url": %q, "authorize_url": %q`, mock+"/v1/oauth/token", mock+"/v1/oauth/authorize")
	if redirect != "" {
		oauthClaude += fmt.Sprintf(`, "redirect_uri": %q`, redirect)
	}
	cfg := fmt.Sprintf(`{
		"admin": {"listen": "localhost:12019"},
		"storage": {"module": "file_system", "root": %q},
		"apps": {"http": {"servers": {"srv": {
			"listen": [":8080"],
			"routes": [
				{"handle": [{"handler": "llm_proxy", "pool": "other"}]},
				{"handle": [{"handler": "subroute", "routes": [{"handle": [{
					"handler": "llm_proxy", "pool": "cli",
					"auths": [{"id": "inline-one", "provider": "claude", "api_key": "sk-ant-inline-0123"}],
					"oauth": {"claude": {%s}} %s
				}]}]}]}
			]
		}}}}
	}`, dir, oauthClaude, extra)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newOAuthMock(t *testing.T) (*mockllm.Server, string) {
	t.Helper()
	m := mockllm.New(mockllm.Options{OAuthAccounts: map[string]mockllm.OAuthAccount{
		"alice": {Provider: mockllm.OAuthClaude},
		"bob":   {Provider: mockllm.OAuthClaude},
	}})
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// redirectOf opens the authorize URL as a browser on another machine
// would, and returns where the provider sends it.
func redirectOf(t *testing.T, authorizeURL, label string) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authorizeURL + "&login_hint=" + label)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func readRecord(t *testing.T, dir, id string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "llm_proxy", "cli", "auths", id+".json"))
	if err != nil {
		t.Fatalf("record %s: %v", id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoginCommandPastedAnswer(t *testing.T) {
	mock, mockURL := newOAuthMock(t)
	dir := t.TempDir()
	cfg := loginConfigFile(t, dir, mockURL, "", "")
	run := startLoginCommand(t, "claude", "--pool", "cli", "--config", cfg, "--no-browser-listener", "--base-url", mockURL)
	authURL := run.authorizeURL(t)

	// Junk and an answer of another login are explained and skipped.
	other, _ := url.Parse(redirectOf(t, authURL, "bob"))
	q := other.Query()
	q.Set("state", "not-this-logins-state")
	other.RawQuery = q.Encode()
	run.paste(t, "")
	run.paste(t, "not a code at all")
	run.paste(t, other.String())
	loc := redirectOf(t, authURL, "alice")
	run.paste(t, loc)
	out, err := run.wait(t)
	if err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	tok, _ := mock.OAuthTokens("alice")
	rec := readRecord(t, dir, "claude-alice@example.com")
	if rec["type"] != "claude" || rec["access_token"] != tok.AccessToken || rec["refresh_token"] != tok.RefreshToken ||
		rec["base_url"] != mockURL || rec["email"] != "alice@example.com" {
		t.Fatalf("record %v", rec)
	}
	for _, want := range []string{"Paste again", "belongs to another login", `"claude-alice@example.com"`,
		"llm_proxy/cli/auths/claude-alice@example.com.json", "localhost:12019/llm_proxy/pools/cli/rescan"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	bob, _ := mock.OAuthTokens("bob")
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken, bob.AccessToken, queryOf(t, loc).Get("code")} {
		if secret != "" && strings.Contains(out, secret) {
			t.Fatalf("output shows a secret:\n%s", out)
		}
	}

	// A re-login of that credential with Claude's CODE#STATE keeps its
	// fields and replaces its tokens.
	b, _ := os.ReadFile(filepath.Join(dir, "llm_proxy", "cli", "auths", "claude-alice@example.com.json"))
	b = []byte(strings.Replace(string(b), "{", `{"priority": 7, "note": "kept",`, 1))
	if err := os.WriteFile(filepath.Join(dir, "llm_proxy", "cli", "auths", "claude-alice@example.com.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	run = startLoginCommand(t, "claude", "--pool", "cli", "--config", cfg, "--no-browser-listener", "--id", "claude-alice@example.com")
	q = queryOf(t, redirectOf(t, run.authorizeURL(t), "bob"))
	run.paste(t, q.Get("code")+"#"+q.Get("state"))
	if out, err := run.wait(t); err != nil || !strings.Contains(out, "other fields kept") {
		t.Fatalf("re-login: %v\n%s", err, out)
	}
	bob, _ = mock.OAuthTokens("bob")
	rec = readRecord(t, dir, "claude-alice@example.com")
	if rec["access_token"] != bob.AccessToken || rec["priority"] != 7.0 || rec["note"] != "kept" || rec["base_url"] != mockURL {
		t.Fatalf("re-login record %v", rec)
	}
}

func queryOf(t *testing.T, loc string) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestLoginCommandCatchesRedirect(t *testing.T) {
	mock, mockURL := newOAuthMock(t)
	dir := t.TempDir()
	port := freeLocalPort(t)
	cfg := loginConfigFile(t, dir, mockURL, fmt.Sprintf("http://localhost:%d/callback", port), "")
	run := startLoginCommand(t, "claude", "--pool", "cli", "--config", cfg, "--id", "caught")
	authURL := run.authorizeURL(t)

	// A request without this login's state does not end it.
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/callback?code=x&state=y", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("foreign redirect: %d", resp.StatusCode)
	}
	// The browser follows the provider's redirect to the listener.
	resp, err = http.Get(authURL + "&login_hint=alice")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Logged in") {
		t.Fatalf("browser page %d: %s", resp.StatusCode, page)
	}
	if out, err := run.wait(t); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	tok, _ := mock.OAuthTokens("alice")
	if rec := readRecord(t, dir, "caught"); rec["access_token"] != tok.AccessToken {
		t.Fatalf("record %v", rec)
	}
}

func freeLocalPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestLoginCommandRefusals(t *testing.T) {
	_, mockURL := newOAuthMock(t)
	dir := t.TempDir()
	cfg := loginConfigFile(t, dir, mockURL, "", "")
	if err := os.MkdirAll(filepath.Join(dir, "llm_proxy", "cli", "auths"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "llm_proxy", "cli", "auths", "keyed.json"), []byte(`{"provider":"claude","api_key":"sk-ant-x-0123456"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	badStorage := loginConfigFile(t, notADir, mockURL, "", "")
	handlerStorage := loginConfigFile(t, dir, mockURL, "", fmt.Sprintf(`, "storage": {"module": "file_system", "root": %q}`, notADir))

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"claude", "--config", cfg}, "--pool is required"},
		{[]string{"claude", "--pool", "nope", "--config", cfg}, `no llm_proxy pool "nope"; its pools: cli, other`},
		{[]string{"gemini", "--pool", "cli", "--config", cfg}, `provider "gemini" has no OAuth login; expected one of claude, codex`},
		{[]string{"claude", "--pool", "cli", "--config", cfg, "--id", "inline-one"}, "declared in the config (inline)"},
		{[]string{"claude", "--pool", "cli", "--config", cfg, "--id", "keyed"}, "holds an API key"},
		{[]string{"claude", "--pool", "cli", "--config", cfg, "--id", "../x"}, "not allowed"},
		{[]string{"claude", "--pool", "cli", "--config", cfg, "--base-url", "ftp://x"}, "base_url"},
		{[]string{"claude", "--pool", "cli", "--config", badStorage}, `storage of pool "cli" unusable`},
		{[]string{"claude", "--pool", "cli", "--config", handlerStorage}, `storage of pool "cli" unusable`},
		{[]string{"claude", "--pool", "cli", "--config", "-"}, "standard input"},
		{[]string{"claude", "codex", "--pool", "cli", "--config", cfg}, "name one provider"},
		{[]string{"claude", "--pool", "cli", "--config", filepath.Join(dir, "missing.json")}, "loading the config"},
	} {
		run := startLoginCommand(t, tc.args...)
		run.stdin.Close()
		out, err := run.wait(t)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q\n%s", tc.args, err, tc.want, out)
		}
		if strings.Contains(out, "/authorize?") && !strings.Contains(tc.want, "standard input") {
			t.Errorf("%v: printed a login URL before failing:\n%s", tc.args, out)
		}
	}

	// Standard input closed without an answer, nothing listening.
	run := startLoginCommand(t, "claude", "--pool", "cli", "--config", cfg, "--no-browser-listener")
	run.authorizeURL(t)
	run.stdin.Close()
	if _, err := run.wait(t); err == nil || !strings.Contains(err.Error(), "no answer pasted") {
		t.Fatalf("closed stdin: %v", err)
	}
}
