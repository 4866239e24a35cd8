package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caddy-llm-proxy/llmproxy/internal/testutil"
)

// caddyProcess is a Caddy binary with the plugin running on its own ports.
type caddyProcess struct {
	admin, site string
	cmd         *exec.Cmd
	log         *os.File
}

func buildCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/caddy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building caddy: %v\n%s", err, out)
	}
	return bin
}

func clusterConfig(p *caddyProcess, storage, body string) string {
	return fmt.Sprintf("{\n\tadmin %s\n\tstorage file_system {\n\t\troot %s\n\t}\n}\n\nhttp://%s {\n%s\n}\n", p.admin, storage, p.site, body)
}

func startCaddy(t *testing.T, bin, storage, body string) *caddyProcess {
	t.Helper()
	dir := t.TempDir()
	p := &caddyProcess{
		admin: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		site:  fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
	}
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(clusterConfig(p, storage, body)), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.log, err = os.Create(filepath.Join(dir, "caddy.log")); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(p.log.Name())
			t.Logf("caddy %s log:\n%s", p.site, b)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + p.admin + "/config/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy on %s did not start", p.admin)
		}
	}
	return p
}

func (p *caddyProcess) reload(t *testing.T, storage, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.admin+"/load", strings.NewReader(clusterConfig(p, storage, body)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("reload %s: %d %s", p.admin, resp.StatusCode, b)
	}
	// The old server closes its idle keep-alive connections after a
	// reload; a request racing that close would get EOF. Start afresh.
	http.DefaultClient.CloseIdleConnections()
}

func (p *caddyProcess) send(t *testing.T, body string) string {
	t.Helper()
	resp, err := http.Post("http://"+p.site+"/v1/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d: %s", p.site, resp.StatusCode, b)
	}
	return resp.Header.Get("X-Mock-Credential")
}

// TestRendezvousAgreesAcrossProcesses runs three real Caddy processes with
// the same config and no shared state: each session lands on the same
// credential whichever process serves it, and removing a credential moves
// only its own sessions.
func TestRendezvousAgreesAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts three Caddy processes")
	}
	up := newUpstream(t, mockllmOpts())
	bin := buildCaddy(t)
	storage := t.TempDir()
	all := affinitySite("cluster", up.URL, "rendezvous", "one", "two", "three")
	procs := []*caddyProcess{startCaddy(t, bin, storage, all), startCaddy(t, bin, storage, all), startCaddy(t, bin, storage, all)}

	type sess struct{ id, topic, cred string }
	var sessions []sess
	for i := 0; i < 45; i++ {
		s := sess{topic: fmt.Sprintf("cluster-%d", i)}
		if i%3 != 0 { // every third one relies on the message hash
			s.id = uuid.NewString()
		}
		sessions = append(sessions, s)
	}
	spread := map[string]int{}
	for i := range sessions {
		s := &sessions[i]
		for turn := 1; turn <= 3; turn++ {
			got := procs[(i+turn)%3].send(t, conversation(s.topic, s.id, turn))
			if turn == 1 {
				s.cred = got
				spread[got]++
			} else if got != s.cred {
				t.Fatalf("session %d: turn %d on %s went to %s, turn 1 went to %s", i, turn, procs[(i+turn)%3].site, got, s.cred)
			}
		}
	}
	if len(spread) != 3 {
		t.Fatalf("sessions not spread over the three credentials: %v", spread)
	}

	// Remove claude-2 everywhere: only its sessions move, and all processes
	// agree on where they go.
	rest := affinitySite("cluster", up.URL, "rendezvous", "one", "three")
	for _, p := range procs {
		p.reload(t, storage, rest)
	}
	moved := 0
	for i, s := range sessions {
		var first string
		for turn := 4; turn <= 6; turn++ {
			got := procs[(i+turn)%3].send(t, conversation(s.topic, s.id, turn))
			if turn == 4 {
				first = got
			} else if got != first {
				t.Fatalf("session %d: processes disagree after the removal: %s vs %s", i, first, got)
			}
		}
		if s.cred == "claude-2" {
			moved++
			if first == "claude-2" {
				t.Fatalf("session %d still on the removed credential", i)
			}
		} else if first != s.cred {
			t.Fatalf("session %d on %s moved to %s though its credential stayed", i, s.cred, first)
		}
	}
	if moved != spread["claude-2"] {
		t.Fatalf("%d sessions moved, want %d", moved, spread["claude-2"])
	}
}
