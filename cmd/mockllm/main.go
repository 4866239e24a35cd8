// Command mockllm runs the mock LLM upstream (package internal/mockllm) as a
// standalone HTTP server for the demo, manual tests and benchmarks.
//
//	mockllm -listen 127.0.0.1:0 -keys a=sk-test-a,b=sk-test-b -stream-delay 20ms
//	mockllm -oauth alice=claude,bob=codex:1h
//
// -oauth enables the fake OAuth server with subscription accounts
// (label=provider[:access token lifetime]); each account's first refresh
// token is mock-rt-<label> and its first access token mock-at-<label>, and
// GET /_mock/oauth/accounts shows the latest ones.
//
// It prints "mockllm listening on http://ADDR" on stdout once it accepts
// connections, and shuts down gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/mockllm"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9090", "address to listen on (port 0 picks a free port)")
	keys := flag.String("keys", "", "accepted keys as label=key,label2=key2 (empty: accept any key)")
	delay := flag.Duration("stream-delay", 0, "pause between two streamed events")
	deltas := flag.Int("deltas", mockllm.DefaultDeltas, "text deltas per streamed reply")
	maxRecorded := flag.Int("max-recorded", mockllm.DefaultMaxRecorded, "requests kept for /_mock/requests (0 disables recording)")
	quiet := flag.Bool("quiet", false, "no per-request log lines on stderr")
	oauthAccounts := flag.String("oauth", "", "fake OAuth accounts as label=claude|codex[:lifetime],... (empty: no OAuth server)")
	flag.Parse()

	keyMap, err := parseKeys(*keys)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockllm:", err)
		os.Exit(2)
	}
	accounts, err := parseOAuth(*oauthAccounts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockllm:", err)
		os.Exit(2)
	}
	opts := mockllm.Options{Keys: keyMap, StreamDelay: *delay, Deltas: *deltas, MaxRecorded: *maxRecorded, OAuthAccounts: accounts}
	if *maxRecorded <= 0 {
		opts.MaxRecorded = -1
	}

	var handler http.Handler = mockllm.New(opts)
	logger := log.New(os.Stderr, "mockllm: ", log.LstdFlags|log.Lmicroseconds)
	if !*quiet {
		handler = logRequests(handler, logger)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Fatal(err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger,
	}
	fmt.Printf("mockllm listening on http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Fatal(err)
		}
	case <-ctx.Done():
		stop()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			// Streams with long delays may outlive the grace period.
			_ = srv.Close()
		}
		if !*quiet {
			logger.Print("stopped")
		}
	}
}

// parseKeys parses "label=key,label2=key2". An entry without "=" is a key
// labelled with itself.
func parseKeys(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := make(map[string]string)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		label, key, ok := strings.Cut(entry, "=")
		if !ok {
			key, label = entry, entry
		}
		label, key = strings.TrimSpace(label), strings.TrimSpace(key)
		if key == "" {
			return nil, fmt.Errorf("-keys: empty key in %q", entry)
		}
		if label == "" {
			label = key
		}
		out[key] = label
	}
	return out, nil
}

// parseOAuth parses "label=provider[:lifetime],...", provider being claude
// or codex and lifetime a Go duration.
func parseOAuth(s string) (map[string]mockllm.OAuthAccount, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := make(map[string]mockllm.OAuthAccount)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		label, spec, ok := strings.Cut(entry, "=")
		label = strings.TrimSpace(label)
		if !ok || label == "" {
			return nil, fmt.Errorf("-oauth: %q is not label=provider[:lifetime]", entry)
		}
		if _, dup := out[label]; dup {
			return nil, fmt.Errorf("-oauth: account %q given twice", label)
		}
		provider, lifetime, hasLifetime := strings.Cut(strings.TrimSpace(spec), ":")
		if provider != mockllm.OAuthClaude && provider != mockllm.OAuthCodex {
			return nil, fmt.Errorf("-oauth: account %q: provider %q is not claude or codex", label, provider)
		}
		acct := mockllm.OAuthAccount{Provider: provider}
		if hasLifetime {
			d, err := time.ParseDuration(lifetime)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("-oauth: account %q: lifetime %q is not a positive duration", label, lifetime)
			}
			acct.Lifetime = d
		}
		out[label] = acct
	}
	return out, nil
}

// statusWriter remembers the status of a response; Unwrap lets
// http.ResponseController reach Flush and Hijack.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs one line per request after it is served.
func logRequests(next http.Handler, logger *log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			outcome := ""
			if v != nil {
				outcome = " (connection dropped)"
			}
			cred := w.Header().Get("X-Mock-Credential")
			logger.Printf("%s %s -> %d cred=%q %s%s", r.Method, r.URL.RequestURI(), sw.status, cred, time.Since(start).Round(time.Microsecond), outcome)
			if v != nil {
				panic(v) // let net/http abort the connection
			}
		}()
		next.ServeHTTP(sw, r)
	})
}
