// Command llmload drives many concurrent multi-turn LLM conversations
// against a loopback endpoint and reports latency, time to first byte,
// throughput, errors and the credential that served each request.
//
//	llmload [run] -url http://127.0.0.1:8080 -key K -conversations 200 -turns 6 -concurrency 16 [-stream] [-mock URL -mock-reset]
//	llmload compare -target llm_proxy=URL@PID -target reverse_proxy=URL@PID -baseline reverse_proxy -rounds 3 -modes nonstream,stream
//	llmload freeports N
//
// run prints a summary (and -json FILE writes it as JSON); with -mock it
// reads the mock upstream's /_mock/stats before and after and reports the
// prompt-cache hit rate of the run. compare alternates the same load
// between targets for several rounds and reports each target and its
// ratios to the baseline, with the CPU time of the given processes per
// request. freeports prints N free loopback TCP ports.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/bench/llmload"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runCmd(ctx, args)
	case "compare":
		err = compareCmd(ctx, args)
	case "freeports":
		err = freePorts(args)
	default:
		err = fmt.Errorf("unknown command %q (want run, compare or freeports)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmload:", err)
		os.Exit(1)
	}
}

// loadFlags registers the flags shared by run and compare.
func loadFlags(fs *flag.FlagSet, c *llmload.Config) {
	fs.StringVar(&c.Key, "key", "", "client key (x-api-key for anthropic, Authorization: Bearer for openai)")
	fs.IntVar(&c.Conversations, "conversations", 100, "conversations to run")
	fs.IntVar(&c.Turns, "turns", 6, "turns per conversation")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "conversations in flight at once")
	fs.IntVar(&c.Requests, "requests", 0, "stop after this many requests (0: conversations*turns)")
	fs.DurationVar(&c.Duration, "duration", 5*time.Minute, "stop after this long")
	fs.DurationVar(&c.Think, "think", 0, "most a conversation pauses between turns (uniformly random from 0)")
	w := &c.Workload
	fs.StringVar(&w.API, "api", llmload.APIAnthropic, "API family: anthropic (/v1/messages) or openai (/v1/chat/completions)")
	fs.StringVar(&w.Model, "model", "", "model (default claude-sonnet-4-5, or gpt-5 for openai)")
	fs.StringVar(&w.Session, "session", llmload.SessionMetadata,
		"session signal: metadata (Claude Code metadata.user_id / prompt_cache_key), header, none (message-hash fallback)")
	fs.IntVar(&w.SystemBytes, "system-bytes", 4096, "system prompt size")
	fs.IntVar(&w.UserBytes, "user-bytes", 600, "size of each user message")
	fs.IntVar(&w.AssistantBytes, "assistant-bytes", 900, "size of each assistant message in the history")
	fs.Uint64Var(&w.Seed, "seed", 1, "workload seed (the same seed replays the same conversations)")
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg llmload.Config
	loadFlags(fs, &cfg)
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "target base URL (loopback only)")
	stream := fs.Bool("stream", false, "request streaming (SSE) responses")
	label := fs.String("label", "", "name of the run in the output")
	jsonOut := fs.String("json", "", "write the result as JSON to this file (- for stdout)")
	mock := fs.String("mock", "", "mock upstream URL: report its prompt-cache stats for the run")
	reset := fs.Bool("mock-reset", false, "POST /_mock/reset before the run (needs -mock)")
	pids := fs.String("pids", "", "comma-separated process IDs whose CPU time per request to report")
	minHit := fs.Float64("min-cache-hit", -1, "fail unless the mock's cache hit rate is at least this (0..1)")
	maxHit := fs.Float64("max-cache-hit", 2, "fail unless the mock's cache hit rate is at most this (0..1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Workload.Stream = *stream
	var before llmload.MockStats
	if *mock != "" {
		if *reset {
			if err := llmload.ResetMock(ctx, *mock); err != nil {
				return err
			}
		}
		var err error
		if before, err = llmload.FetchMockStats(ctx, *mock); err != nil {
			return err
		}
	}
	var watch *llmload.CPUWatch
	if *pids != "" {
		var ps []int
		for p := range strings.SplitSeq(*pids, ",") {
			var n int
			if _, err := fmt.Sscan(p, &n); err != nil {
				return fmt.Errorf("-pids: bad pid %q", p)
			}
			ps = append(ps, n)
		}
		var err error
		if watch, err = llmload.StartCPUWatch(ps); err != nil {
			return err
		}
	}
	r, err := llmload.Run(ctx, cfg, nil)
	if err != nil {
		return err
	}
	r.Label = *label
	if watch != nil {
		if r.CPU, err = watch.Stop(); err != nil {
			return err
		}
	}
	if *mock != "" {
		after, err := llmload.FetchMockStats(ctx, *mock)
		if err != nil {
			return err
		}
		r.Cache = llmload.CacheDelta(before, after)
	}
	r.WriteText(os.Stdout)
	if err := writeJSON(*jsonOut, r); err != nil {
		return err
	}
	if r.OK == 0 {
		return errors.New("no request succeeded")
	}
	if r.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed", r.Errors, r.Requests)
	}
	if r.Cache != nil && (r.Cache.HitRate < *minHit || r.Cache.HitRate > *maxHit) {
		return fmt.Errorf("cache hit rate %.4f outside [%.4g, %.4g]", r.Cache.HitRate, *minHit, *maxHit)
	}
	return nil
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func compareCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var cfg llmload.CompareConfig
	loadFlags(fs, &cfg.Load)
	var targets multiFlag
	fs.Var(&targets, "target", "NAME=URL[@PID[+PID]] (repeat; PIDs are charged the CPU time of the runs)")
	fs.StringVar(&cfg.Baseline, "baseline", "reverse_proxy", "target the others are compared with")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "rounds (each runs every target once per mode)")
	modes := fs.String("modes", "nonstream,stream", "modes: nonstream, stream or both")
	fs.IntVar(&cfg.Warmup, "warmup", 200, "warm-up requests per target and mode (not recorded)")
	fs.StringVar(&cfg.Label, "label", "comparison", "name of the comparison in the output")
	jsonOut := fs.String("json", "", "write the result as JSON to this file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range targets {
		t, err := llmload.ParseTarget(s)
		if err != nil {
			return err
		}
		cfg.Targets = append(cfg.Targets, t)
	}
	for m := range strings.SplitSeq(*modes, ",") {
		switch strings.TrimSpace(m) {
		case "nonstream":
			cfg.Streams = append(cfg.Streams, false)
		case "stream":
			cfg.Streams = append(cfg.Streams, true)
		default:
			return fmt.Errorf("-modes: unknown mode %q", m)
		}
	}
	res, err := llmload.Compare(ctx, cfg, os.Stdout)
	if err != nil {
		return err
	}
	res.WriteText(os.Stdout)
	if err := writeJSON(*jsonOut, res); err != nil {
		return err
	}
	for _, r := range res.Rows {
		if r.Errors > 0 {
			return fmt.Errorf("%s (%v stream): %d failed requests", r.Target, r.Stream, r.Errors)
		}
	}
	return nil
}

// freePorts prints N distinct free loopback ports (all held open until
// every one is found, so they differ). They are drawn at random below the
// usual ephemeral range (32768+), so outgoing connections do not take them
// before the server binds them; port 0 is the fallback.
func freePorts(args []string) error {
	n := 1
	if len(args) > 0 {
		if _, err := fmt.Sscan(args[0], &n); err != nil || n < 1 || n > 64 {
			return fmt.Errorf("freeports: want a count from 1 to 64")
		}
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []string
	for range n {
		var ln net.Listener
		for try := 0; try < 200 && ln == nil; try++ {
			ln, _ = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		}
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return err
			}
		}
		lns = append(lns, ln)
		ports = append(ports, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	}
	fmt.Println(strings.Join(ports, " "))
	return nil
}
