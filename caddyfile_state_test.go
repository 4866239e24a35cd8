package llmproxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestCaddyfileStateSyncErrors: bad state_sync values fail at adapt time
// naming their line.
func TestCaddyfileStateSyncErrors(t *testing.T) {
	auth := "\t\tauth a {\n\t\t\tprovider claude\n\t\t\tapi_key k\n\t\t}\n"
	wrap := func(body string) string { return ":8080 {\n\tllm_proxy {\n" + body + "\t}\n}\n" }
	for _, tc := range []struct {
		name, cfg, want string
		line            int
	}{
		{"not a duration", wrap(auth + "\t\tstate_sync sometimes\n"), `bad state_sync "sometimes": want a duration such as 2s, or off`, 7},
		{"zero", wrap(auth + "\t\tstate_sync 0\n"), `bad state_sync "0"`, 7},
		{"negative", wrap(auth + "\t\tstate_sync -1s\n"), `bad state_sync "-1s"`, 7},
		{"no value", wrap(auth + "\t\tstate_sync\n"), `wrong argument count`, 7},
		{"two values", wrap(auth + "\t\tstate_sync 1s 2s\n"), `wrong argument count`, 7},
		{"twice", wrap(auth + "\t\tstate_sync 1s\n\t\tstate_sync 2s\n"), `duplicate state_sync option`, 8},
		{"block", wrap(auth + "\t\tstate_sync 1s {\n\t\t\tx\n\t\t}\n"), `state_sync takes no block`, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.cfg), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("adapt succeeded; want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			if !strings.HasSuffix(err.Error(), fmt.Sprintf("at Caddyfile:%d", tc.line)) {
				t.Fatalf("error %q does not name line %d", err, tc.line)
			}
		})
	}
}

// TestStateSyncSetting: JSON 0 is the default, negative is off.
func TestStateSyncSetting(t *testing.T) {
	for _, tc := range []struct {
		json caddy.Duration
		want time.Duration
	}{
		{0, DefaultStateSync},
		{caddy.Duration(time.Second), time.Second},
		{-1, 0},
	} {
		h := &Handler{StateSync: tc.json}
		if got := h.stateSync(); got != tc.want {
			t.Errorf("state_sync %v: %v, want %v", tc.json, got, tc.want)
		}
	}
}
