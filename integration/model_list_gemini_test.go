package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestModelListGemini: GET /v1beta/models through the plugin is Gemini's
// model list: the upstream's models the pool's Gemini credentials serve
// (without the excluded ones) plus every alias as "models/<alias>", only
// those a limited key may use; GET /v1beta/models/{alias} is answered
// without an upstream call, and a limited key gets 403 in Gemini's shape
// for any other model.
func TestModelListGemini(t *testing.T) {
	up := newUpstream(t, mockllmOpts())
	loadConfig(t, t.TempDir(), fmt.Sprintf(`	llm_proxy {
		pool model-list-gemini
		auth g1 {
			provider gemini
			api_key gm-one
			base_url %s
			excluded_models *-pro
			model_alias fast gemini-2.5-flash
		}
		access {
			key intern intern-key-1 {
				models fast *-lite
			}
			key lead lead-key-1
		}
	}`, up.URL))
	names := func(b []byte) string {
		var out []string
		for _, r := range gjson.GetBytes(b, "models.#.name").Array() {
			out = append(out, r.String())
		}
		return strings.Join(out, ",")
	}
	lead := map[string]string{"x-goog-api-key": "lead-key-1"}
	intern := map[string]string{"x-goog-api-key": "intern-key-1"}

	before := len(up.Requests())
	resp, b := call(t, http.MethodGet, "/v1beta/models", lead, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lead list: %d: %s", resp.StatusCode, b)
	}
	if got, want := names(b), "models/gemini-2.5-flash,models/gemini-2.5-flash-lite,models/gemini-embedding-001,models/fast"; got != want {
		t.Fatalf("lead list %s, want %s", got, want)
	}
	if gjson.GetBytes(b, `models.#(name=="models/fast").displayName`).String() != "fast" || resp.Header.Get("Content-Length") != fmt.Sprint(len(b)) {
		t.Fatalf("alias entry not in Gemini's shape or bad length: %s", b)
	}
	if n := len(up.Requests()) - before; n != 1 {
		t.Fatalf("%d upstream calls for the list, want 1", n)
	}
	if r := up.Requests()[before]; r.Path != "/v1beta/models" {
		t.Fatalf("upstream path %s", r.Path)
	}

	resp, b = call(t, http.MethodGet, "/v1beta/models", intern, "")
	if got, want := names(b), "models/gemini-2.5-flash-lite,models/fast"; resp.StatusCode != http.StatusOK || got != want {
		t.Fatalf("intern list %d %s, want %s: %s", resp.StatusCode, got, want, b)
	}

	for _, tc := range []struct {
		name, path string
		headers    map[string]string
		status     int
		field      []string
		want       string
	}{
		{"alias", "/v1beta/models/fast", lead, 200, []string{"name"}, "models/fast"},
		{"limited key alias", "/v1beta/models/fast", intern, 200, []string{"displayName"}, "fast"},
		{"limited key, upstream name of its alias", "/v1beta/models/gemini-2.5-flash", intern, 403, []string{"error", "status"}, "PERMISSION_DENIED"},
		{"wrong key", "/v1beta/models/fast", map[string]string{"x-goog-api-key": "nope"}, 401, []string{"error", "status"}, "UNAUTHENTICATED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.Requests())
			resp, b := call(t, http.MethodGet, tc.path, tc.headers, "")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if got := jsonField(t, b, tc.field...); got != tc.want {
				t.Fatalf("%v = %v, want %q: %s", tc.field, got, tc.want, b)
			}
			if n := len(up.Requests()) - before; n != 0 {
				t.Fatalf("%d upstream calls, want 0", n)
			}
		})
	}
}
