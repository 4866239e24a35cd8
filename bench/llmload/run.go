package llmload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hard limits, so that every loop is bounded in count and time whatever the
// flags say.
const (
	MaxRequests    = 5_000_000
	MaxDuration    = 30 * time.Minute
	MaxConcurrency = 4096
	MaxTurns       = 1000
	requestTimeout = 2 * time.Minute
	maxErrorNotes  = 5
)

// Config is one load run.
type Config struct {
	URL           string // base URL, e.g. http://127.0.0.1:8080 (loopback only)
	Key           string // client key: x-api-key (Anthropic) or Authorization: Bearer (OpenAI)
	Conversations int
	Turns         int // turns per conversation
	Concurrency   int // conversations in flight at once
	Requests      int // stop after this many requests (0: Conversations*Turns)
	Duration      time.Duration
	// Think is the most a conversation pauses between two turns (uniformly
	// random from 0, like a user reading the answer); 0: no pause.
	Think    time.Duration
	Workload Workload
}

// CheckLoopback returns an error unless rawURL is an http(s) URL whose host
// is a loopback address or localhost.
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("parsing %q: %v", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", rawURL)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only loopback targets are allowed", rawURL)
	}
	return nil
}

func (c *Config) normalize() error {
	c.Workload = c.Workload.withDefaults()
	if err := c.Workload.Validate(); err != nil {
		return err
	}
	if err := CheckLoopback(c.URL); err != nil {
		return err
	}
	c.URL = strings.TrimSuffix(c.URL, "/")
	if c.Conversations <= 0 {
		c.Conversations = 1
	}
	c.Turns = min(max(c.Turns, 1), MaxTurns)
	c.Concurrency = min(max(c.Concurrency, 1), MaxConcurrency)
	total := c.Conversations * c.Turns
	if c.Requests <= 0 || c.Requests > total {
		c.Requests = total
	}
	c.Requests = min(c.Requests, MaxRequests)
	c.Think = min(max(c.Think, 0), time.Minute)
	if c.Duration <= 0 || c.Duration > MaxDuration {
		c.Duration = MaxDuration
	}
	return nil
}

// sample is the outcome of one request.
type sample struct {
	latency time.Duration
	ttfb    time.Duration
	bytes   int64
	sent    int
	status  int
	cred    string
	err     error
}

// convResult is what one conversation saw.
type convResult struct {
	creds []string // served credential per turn ("" when unknown or failed)
}

// Run drives the configured load against cfg.URL with client (nil: a fresh
// keep-alive client sized for the concurrency) and returns its result.
func Run(ctx context.Context, cfg Config, client *http.Client) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if client == nil {
		client = NewClient(cfg.Concurrency)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	w := cfg.Workload
	system := w.systemPrompt()
	var (
		nextConv atomic.Int64
		budget   atomic.Int64
		mu       sync.Mutex
		samples  = make([]sample, 0, cfg.Requests)
		convs    = make([]convResult, 0, cfg.Conversations)
		wg       sync.WaitGroup
	)
	budget.Store(int64(cfg.Requests))
	start := time.Now()
	for range min(cfg.Concurrency, cfg.Conversations) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]sample, 0, 64)
			var localConvs []convResult
			for ctx.Err() == nil {
				i := int(nextConv.Add(1)) - 1
				if i >= cfg.Conversations {
					break
				}
				conv := w.NewConversation(i, system)
				cr := convResult{creds: make([]string, 0, cfg.Turns)}
				for t := 0; t < cfg.Turns && ctx.Err() == nil; t++ {
					if budget.Add(-1) < 0 {
						break
					}
					s := doTurn(ctx, client, &cfg, conv)
					if ctx.Err() != nil && s.err != nil {
						break // the run's time is up; not the target's fault
					}
					local = append(local, s)
					cr.creds = append(cr.creds, s.cred)
					if s.err != nil {
						break // a broken conversation is not continued
					}
					conv.Advance()
					if cfg.Think > 0 && t+1 < cfg.Turns {
						pause(ctx, rand.N(cfg.Think))
					}
				}
				if len(cr.creds) > 0 {
					localConvs = append(localConvs, cr)
				}
				if budget.Load() <= 0 {
					break
				}
			}
			mu.Lock()
			samples = append(samples, local...)
			convs = append(convs, localConvs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return summarize(&cfg, samples, convs, elapsed), nil
}

// pause sleeps for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// NewClient returns an HTTP client with enough idle keep-alive connections
// for concurrency requests in flight and no transparent compression.
func NewClient(concurrency int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// httpError is a response with an error status.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string {
	return "HTTP " + strconv.Itoa(e.status) + ": " + e.body
}

// doTurn sends the conversation's next turn and reads the whole response.
func doTurn(ctx context.Context, client *http.Client, cfg *Config, conv *Conversation) sample {
	body := conv.NextBody()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+cfg.Workload.Path(), bytes.NewReader(body))
	if err != nil {
		return sample{err: err}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "llmload/1 (claude-cli style)")
	switch cfg.Workload.API {
	case APIAnthropic:
		h.Set("Anthropic-Version", "2023-06-01")
		h.Set("Anthropic-Beta", "prompt-caching-2024-07-31")
		if cfg.Key != "" {
			h.Set("X-Api-Key", cfg.Key)
		}
		if cfg.Workload.Session == SessionHeader {
			h.Set("X-Claude-Code-Session-Id", conv.SessionID())
		}
	case APIOpenAI:
		if cfg.Key != "" {
			h.Set("Authorization", "Bearer "+cfg.Key)
		}
		if cfg.Workload.Session == SessionHeader {
			h.Set("Session-Id", conv.SessionID())
		}
	}
	if cfg.Workload.Stream {
		h.Set("Accept", "text/event-stream")
	}

	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return sample{err: err, latency: time.Since(start), sent: len(body)}
	}
	defer resp.Body.Close()
	s := sample{status: resp.StatusCode, cred: resp.Header.Get("X-Mock-Credential"), sent: len(body)}
	if resp.StatusCode >= 400 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
		s.latency = time.Since(start)
		s.err = &httpError{status: resp.StatusCode, body: strings.TrimSpace(string(msg))}
		return s
	}
	sse := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	s.ttfb, s.bytes, err = readBody(resp.Body, sse, start)
	s.latency = time.Since(start)
	s.err = err
	return s
}

// readBody reads a response body to the end. The time to first byte is
// taken at the first body byte, or for SSE at the first "data:" line.
func readBody(body io.Reader, sse bool, start time.Time) (ttfb time.Duration, n int64, err error) {
	if !sse {
		var buf [32 << 10]byte
		for {
			k, rerr := body.Read(buf[:])
			if k > 0 && ttfb == 0 {
				ttfb = time.Since(start)
			}
			n += int64(k)
			if rerr == io.EOF {
				return ttfb, n, nil
			}
			if rerr != nil {
				return ttfb, n, rerr
			}
		}
	}
	br := bufio.NewReaderSize(body, 16<<10)
	for {
		line, rerr := br.ReadSlice('\n')
		if ttfb == 0 && bytes.HasPrefix(line, []byte("data:")) {
			ttfb = time.Since(start)
		}
		n += int64(len(line))
		if rerr == io.EOF {
			return ttfb, n, nil
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return ttfb, n, rerr
		}
	}
}
