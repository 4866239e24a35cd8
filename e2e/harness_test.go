//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
	"github.com/caddy-llm-proxy/llmproxy/internal/testutil"
)

const (
	clientKey = "e2e-client-key"

	// cliTimeout bounds one CLI invocation; a healthy one takes a second or two.
	cliTimeout = 45 * time.Second
	// startTimeout bounds the start of the mock and of Caddy.
	startTimeout = 20 * time.Second
)

// mockKeys are the upstream keys the mock accepts, as label=key pairs.
const mockKeys = "claude-1=sk-ant-one,claude-2=sk-ant-two,claude-3=sk-ant-three," +
	"openai-1=sk-oai-one,openai-2=sk-oai-two,openai-3=sk-oai-three," +
	"gemini-1=gm-key-one,gemini-2=gm-key-two,gemini-3=gm-key-three"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// repoRoot is the module root (the parent of this package's directory).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above %s: %v", wd, err)
	}
	return root
}

// requireCLI returns the path of a CLI installed by install-clis.sh, or skips
// the test (fails it when E2E_REQUIRE_CLIS=1) when it is not installed.
func requireCLI(t *testing.T, name, overrideEnv string) string {
	t.Helper()
	var tried []string
	if p := os.Getenv(overrideEnv); p != "" {
		if isExecutable(p) {
			return p
		}
		tried = append(tried, overrideEnv+"="+p)
	} else {
		prefix := os.Getenv("E2E_NPM_PREFIX")
		if prefix == "" {
			prefix = filepath.Join("e2e", ".npm")
		}
		if !filepath.IsAbs(prefix) {
			prefix = filepath.Join(repoRoot(t), prefix)
		}
		p := filepath.Join(prefix, "node_modules", ".bin", name)
		if isExecutable(p) {
			return p
		}
		tried = append(tried, p)
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		tried = append(tried, name+" on $PATH")
	}
	msg := fmt.Sprintf("%s CLI not installed (tried %s); run e2e/install-clis.sh", name, strings.Join(tried, ", "))
	if os.Getenv("E2E_REQUIRE_CLIS") == "1" {
		t.Fatal(msg + " (E2E_REQUIRE_CLIS=1)")
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// binaries builds caddy (with the plugin) and mockllm once per test binary.
func binaries(t *testing.T) (caddyBin, mockBin string) {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "llmproxy-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"caddy", "mockllm"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, pkg), "./cmd/"+pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "caddy"), filepath.Join(buildDir, "mockllm")
}

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a background process stopped on test cleanup; its output is
// logged when the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, env []string, dir string, stdout io.Writer, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Dir = dir
	p.cmd.Stderr = p.out
	if stdout != nil {
		p.cmd.Stdout = io.MultiWriter(p.out, stdout)
	} else {
		p.cmd.Stdout = p.out
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace period.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// baseEnv is a minimal environment for child processes: nothing of the
// caller's API keys, proxies or config directories leaks in.
func baseEnv(home string) []string {
	env := []string{
		"HOME=" + home,
		"TMPDIR=" + filepath.Join(home, "tmp"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"NO_PROXY=127.0.0.1,localhost",
		"no_proxy=127.0.0.1,localhost",
		"NO_COLOR=1",
		"TERM=dumb",
		"LANG=C.UTF-8",
	}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p) // codex's launcher is a node script
	} else {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	return env
}

func newHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	for _, d := range []string{"tmp", ".config", ".cache", filepath.Join(".local", "share"), filepath.Join(".local", "state")} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

// mock is a running cmd/mockllm.
type mock struct {
	URL string
}

func startMock(t *testing.T, bin string, extraArgs ...string) *mock {
	t.Helper()
	home := newHome(t)
	lines := make(chan string, 16)
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() { _ = pw.Close() })
	args := append([]string{"-listen", "127.0.0.1:0", "-keys", mockKeys}, extraArgs...)
	p := startProc(t, "mockllm", baseEnv(home), home, pw, bin, args...)
	deadline := time.After(startTimeout)
	for {
		select {
		case l := <-lines:
			if u, ok := strings.CutPrefix(l, "mockllm listening on "); ok {
				return &mock{URL: strings.TrimSpace(u)}
			}
		case <-p.done:
			t.Fatalf("mockllm exited before listening: %v\n%s", p.err, p.out.String())
		case <-deadline:
			t.Fatalf("mockllm did not report its address\n%s", p.out.String())
		}
	}
}

// mockRequest is one entry of GET /_mock/requests.
type mockRequest struct {
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	RawQuery   string      `json:"raw_query"`
	Header     http.Header `json:"header"`
	Body       string      `json:"body"`
	Key        string      `json:"key"`
	Credential string      `json:"credential"`
}

func (m *mock) requests(t *testing.T) []mockRequest {
	t.Helper()
	resp, err := http.Get(m.URL + "/_mock/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []mockRequest
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode /_mock/requests: %v", err)
	}
	return out
}

// stats returns the mock's per-credential counts, by credential label.
func (m *mock) stats(t *testing.T) map[string]mockllm.CredentialStats {
	t.Helper()
	resp, err := http.Get(m.URL + "/_mock/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]mockllm.CredentialStats{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode /_mock/stats: %v", err)
	}
	return out
}

// assertUsageMatchesMock checks the default pool's usage report (SPEC 16)
// against what the mock counted for each credential after a real CLI's
// run: every request the mock answered is counted once, under the client
// key's label, and the tokens are the ones the mock reported. The report's
// input is the prompt outside the cache and the mock's the whole prompt;
// OpenAI shapes report no cache writes, so the report's are at most the
// mock's. mockLabel maps the pool's credential IDs to the mock's labels.
func assertUsageMatchesMock(t *testing.T, c *caddy, m *mock, upstreamRequests int, mockLabel map[string]string) {
	t.Helper()
	resp, err := http.Get(c.Admin + "/llm_proxy/pools/default/usage?since=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var report pool.UsageReport
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("usage report: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&report); err != nil {
		t.Fatalf("decode the usage report: %v", err)
	}
	if report.Totals.Requests != uint64(upstreamRequests) {
		t.Errorf("usage report counts %d requests; the mock answered %d", report.Totals.Requests, upstreamRequests)
	}
	if len(report.Clients) != 1 || !strings.HasPrefix(report.Clients[0].Client, "key-") || report.Clients[0].Requests != report.Totals.Requests {
		t.Errorf("usage per client %+v: want one row for the client key's label (key-...)", report.Clients)
	}
	stats := m.stats(t)
	for _, row := range report.Auths {
		label := mockLabel[row.Auth]
		s := stats[label]
		if int64(row.Requests) != s.Requests || int64(row.InputTokens+row.CacheReadTokens+row.CacheWriteTokens) != s.InputTokens ||
			int64(row.CacheReadTokens) != s.CacheReadTokens || int64(row.CacheWriteTokens) > s.CacheCreationTokens ||
			int64(row.OutputTokens) != s.OutputTokens {
			t.Errorf("credential %s: usage report %+v, the mock reported %+v", row.Auth, row, s)
		}
		delete(stats, label)
	}
	for label, s := range stats {
		if s.Requests > 0 {
			t.Errorf("credential %s: the mock answered %+v that the usage report lacks", label, s)
		}
	}
}

// auth is one inline credential of the Caddyfile: an API key, or with
// refresh set, an OAuth access token (key) and its refresh token.
type auth struct {
	id, provider, key string
	refresh           string
}

// caddy is a running Caddy with llm_proxy.
type caddy struct {
	URL   string
	Admin string // the admin endpoint, http://127.0.0.1:<port>
	p     *proc
	// How it was started, so that restart runs it again as the same
	// instance (same HOME, so the same instance.uuid, and same storage).
	env      []string
	dir, bin string
	args     []string
}

// startCaddy writes a Caddyfile with the given credentials pointing at the
// mock, session affinity on and the client key check, runs
// `caddy run --adapter caddyfile` and waits until the site answers.
// Extra lines go inside the llm_proxy block.
func startCaddy(t *testing.T, bin string, m *mock, auths []auth, extra ...string) *caddy {
	t.Helper()
	dir := t.TempDir()
	home := newHome(t)
	storage := filepath.Join(dir, "storage")
	adminPort, sitePort := testutil.FreePort(t), testutil.FreePort(t)
	for sitePort == adminPort {
		sitePort = testutil.FreePort(t)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tstorage file_system {\n\t\troot %s\n\t}\n}\n\n", adminPort, storage)
	fmt.Fprintf(&b, "http://127.0.0.1:%d {\n", sitePort)
	b.WriteString("\tlog {\n\t\toutput stderr\n\t\tformat json\n\t}\n")
	b.WriteString("\tllm_proxy {\n")
	for _, a := range auths {
		secret := "api_key " + a.key
		if a.refresh != "" {
			secret = "access_token " + a.key + "\n\t\t\trefresh_token " + a.refresh
		}
		fmt.Fprintf(&b, "\t\tauth %s {\n\t\t\tprovider %s\n\t\t\t%s\n\t\t\tbase_url %s\n\t\t}\n", a.id, a.provider, secret, m.URL)
	}
	for _, line := range extra {
		b.WriteString("\t\t" + strings.ReplaceAll(line, "\n", "\n\t\t") + "\n")
	}
	b.WriteString("\t\trouting {\n\t\t\tsession_affinity on\n\t\t}\n")
	fmt.Fprintf(&b, "\t\taccess {\n\t\t\tapi_keys %s\n\t\t}\n", clientKey)
	b.WriteString("\t}\n}\n")

	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- Caddyfile ----\n%s", b.String())
		}
	})

	c := &caddy{
		URL: fmt.Sprintf("http://127.0.0.1:%d", sitePort), Admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		env: baseEnv(home), dir: dir, bin: bin, args: []string{"run", "--config", cfg, "--adapter", "caddyfile"},
	}
	c.p = startProc(t, "caddy", c.env, c.dir, nil, c.bin, c.args...)
	c.waitReady(t)
	return c
}

// restart stops Caddy gracefully (SIGTERM) and starts it again as the same
// instance, as an operator's restart or a deploy does.
func (c *caddy) restart(t *testing.T) {
	t.Helper()
	c.p.stop()
	c.p = startProc(t, "caddy (restarted)", c.env, c.dir, nil, c.bin, c.args...)
	c.waitReady(t)
}

// waitReady waits until Caddy's site answers.
func (c *caddy) waitReady(t *testing.T) {
	t.Helper()
	p := c.p
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		if p.exited() {
			t.Fatalf("caddy exited during start: %v\n%s", p.err, p.out.String())
		}
		// Any HTTP answer from the site (401 without a client key) means
		// the config is loaded and the listener is up.
		resp, err := client.Get(c.URL + "/v1/models")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy not ready after %s (last error: %v)\n%s", startTimeout, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cliResult is the outcome of one CLI run.
type cliResult struct {
	stdout, stderr string
	err            error
}

// runCLI runs one CLI invocation with a timeout, killing its process group
// on expiry, and logs its output on test failure.
func runCLI(t *testing.T, label string, env []string, dir, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", cliTimeout, err)
	}
	res := cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
	t.Logf("%s: %s %s -> err=%v in %s", label, filepath.Base(bin), strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s stdout ----\n%s\n---- %s stderr ----\n%s", label, res.stdout, label, res.stderr)
		}
	})
	return res
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID(t *testing.T) string {
	t.Helper()
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		t.Fatal(err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// assertNoClientKey fails if any recorded upstream request carries the
// client key in a header, the query or the body.
func assertNoClientKey(t *testing.T, reqs []mockRequest) {
	t.Helper()
	for i, r := range reqs {
		where := ""
		for name, vals := range r.Header {
			for _, v := range vals {
				if strings.Contains(v, clientKey) {
					where = "header " + name
				}
			}
		}
		switch {
		case strings.Contains(r.RawQuery, clientKey):
			where = "query"
		case strings.Contains(r.Body, clientKey):
			where = "body"
		case r.Key == clientKey:
			where = "credential"
		}
		if where != "" {
			t.Errorf("upstream request #%d %s %s carries the client key in its %s", i, r.Method, r.Path, where)
		}
	}
}

// describe is a one-line summary of a recorded request for the test log.
func describe(r mockRequest, session string) string {
	var body struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal([]byte(r.Body), &body)
	q := ""
	if r.RawQuery != "" {
		q = "?" + r.RawQuery
	}
	return fmt.Sprintf("%s %s%s credential=%s model=%s stream=%s session=%q body=%dB",
		r.Method, r.Path, q, r.Credential, body.Model, strconv.FormatBool(body.Stream), session, len(r.Body))
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// rig starts the mock and a Caddy in front of it with the given pool, and
// makes a throwaway home with a work directory for a CLI.
func rig(t *testing.T, pool []auth) (m *mock, c *caddy, home, work string) {
	t.Helper()
	caddyBin, mockBin := binaries(t)
	m = startMock(t, mockBin)
	c = startCaddy(t, caddyBin, m, pool)
	home = newHome(t)
	work = filepath.Join(home, "work")
	mkdir(t, work)
	return m, c, home, work
}
