package oauth

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// seen is one request a test token endpoint received.
type seen struct {
	method, contentType string
	body                string
}

// answer is how a test token endpoint replies.
type answer struct {
	status  int
	headers map[string]string
	body    string
}

// endpoint is a test token endpoint that records requests and replies with
// reply's answer.
type endpoint struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newEndpoint(t *testing.T, reply func(s seen) answer) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s := seen{method: r.Method, contentType: r.Header.Get("Content-Type"), body: string(b)}
		e.mu.Lock()
		e.reqs = append(e.reqs, s)
		e.mu.Unlock()
		a := reply(s)
		for k, v := range a.headers {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		if a.status == 0 {
			a.status = http.StatusOK
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) requests() []seen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]seen(nil), e.reqs...)
}

// jwt builds an unsigned JWT carrying claims.
func jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(b) + ".sig"
}

var t0 = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// claudeAt and codexAt are the provider defaults pointed at a test server.
func claudeAt(url string) Endpoints {
	ep := ClaudeDefaults()
	ep.TokenURL = url + "/v1/oauth/token"
	return ep
}

func codexAt(url string) Endpoints {
	ep := CodexDefaults()
	ep.TokenURL = url + "/oauth/token"
	return ep
}
