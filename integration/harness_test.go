// Package integration runs a real Caddy (in process, through caddytest and
// its admin API) with the llm_proxy plugin in front of real HTTP upstreams on
// loopback: the bundled mock LLM server, or small purpose-built handlers.
// Every config change is a real reload through POST /load.
package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-llm-proxy/llmproxy"
	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// The ports of this test process's Caddy, chosen free in TestMain so that
// two test runs on one machine never meet.
var (
	adminAddr string // host:port of the admin API
	sitePort  int    // the site's HTTP port
	httpsPort int    // unused by the tests, but Caddy's https_port must not clash
	siteAddr  string // base URL of the site
)

// mockKeys are the upstream credentials the mock knows: key → label.
var mockKeys = map[string]string{
	"sk-ant-one":   "claude-1",
	"sk-ant-two":   "claude-2",
	"sk-ant-three": "claude-3",
	"sk-oai-one":   "openai-1",
	"sk-oai-two":   "openai-2",
	"gm-one":       "gemini-1",
	"oat-claude":   "claude-oauth",
	"oat-codex":    "codex-oauth",
}

// upstream is a running mock LLM server.
type upstream struct {
	*mockllm.Server
	URL string
}

func newUpstream(t *testing.T, opts mockllm.Options) *upstream {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = mockKeys
	}
	m := mockllm.New(opts)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return &upstream{Server: m, URL: srv.URL}
}

// loadConfig loads a Caddyfile through the admin API (a real reload when a
// config is already running). The site block body is placed inside
// the site block on this process's free port with storage in a temp dir.
func loadConfig(t *testing.T, storageDir, site string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{TestRequestTimeout: 20 * time.Second})
	tester.InitServer(caddyfile(storageDir, site), "caddyfile")
	return tester
}

func caddyfile(storageDir, site string) string {
	return fmt.Sprintf(`{
	admin %s
	http_port %d
	https_port %d
	grace_period 1m
	storage file_system {
		root %s
	}
}

%s {
%s
}
`, adminAddr, sitePort, httpsPort, storageDir, siteAddr, site)
}

// postLoad loads a raw Caddyfile through the admin API and returns the
// status and body, without failing the test on errors.
func postLoad(t *testing.T, cfg string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /load: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// call sends one request to Caddy and returns the response with its body
// read.
func call(t *testing.T, method, path string, headers map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, siteAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, path, err)
	}
	return resp, b
}

// jsonField returns a field of a JSON document by dotted path.
func jsonField(t *testing.T, b []byte, path ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// sseEvents splits an SSE body into its data payloads.
func sseEvents(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
			out = append(out, strings.TrimSpace(d))
		}
	}
	return out
}

func TestMain(m *testing.M) {
	adminPort := freePort()
	sitePort, httpsPort = freePort(), freePort()
	adminAddr = fmt.Sprintf("localhost:%d", adminPort)
	siteAddr = fmt.Sprintf("http://localhost:%d", sitePort)
	// caddytest starts its in-process Caddy on this admin port.
	caddytest.Default.AdminPort = adminPort
	os.Exit(m.Run())
}

// freePort returns a loopback port that was free a moment ago (TestMain has
// no testing.TB for testutil.FreePort).
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func mockllmOpts() mockllm.Options { return mockllm.Options{} }

// newTesterJSON loads a JSON config through the admin API.
func newTesterJSON(t *testing.T, cfg string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{TestRequestTimeout: 20 * time.Second})
	tester.InitServer(cfg, "json")
	return tester
}
