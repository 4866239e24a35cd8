package llmload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Targets of SPEC section 11 for llm_proxy against reverse_proxy.
const (
	TargetP50DeltaUS      = 50.0 // p50 latency within +50 µs
	TargetThroughputRatio = 0.95 // throughput within 5%
	TargetCPURatio        = 1.25 // CPU per request within 25%
	TargetTTFBDeltaUS     = 50.0 // "the same" for time to first SSE byte: within the p50 budget
)

// Target is one endpoint of a comparison.
type Target struct {
	Name string
	URL  string
	PIDs []int // processes whose CPU time is charged to this target's runs
}

// ParseTarget parses NAME=URL[@PID[+PID...]].
func ParseTarget(s string) (Target, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return Target{}, fmt.Errorf("target %q: want NAME=URL[@PID]", s)
	}
	t := Target{Name: name, URL: rest}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		t.URL = rest[:i]
		for p := range strings.SplitSeq(rest[i+1:], "+") {
			pid, err := strconv.Atoi(p)
			if err != nil || pid <= 0 {
				return Target{}, fmt.Errorf("target %q: bad pid %q", s, p)
			}
			t.PIDs = append(t.PIDs, pid)
		}
	}
	if err := CheckLoopback(t.URL); err != nil {
		return Target{}, fmt.Errorf("target %q: %v", s, err)
	}
	return t, nil
}

// CompareConfig is a side-by-side comparison: every round runs the same
// load against each target in turn (alternating the order each round), for
// each mode (non-streaming, streaming).
type CompareConfig struct {
	Label    string
	Targets  []Target
	Baseline string // name of the target the others are compared with
	Rounds   int
	Streams  []bool // modes: false = non-streaming, true = streaming
	Warmup   int    // requests per target and mode before the first round (not recorded)
	Load     Config // URL is ignored; Workload.Stream is set per mode
}

// Row is one target and mode, over all rounds.
type Row struct {
	Target string `json:"target"`
	Stream bool   `json:"stream"`
	Runs   int    `json:"runs"`
	OK     int    `json:"ok"`
	Errors int    `json:"errors"`
	// Latency and TTFB pool the samples of every round.
	Latency Percentiles `json:"latency"`
	TTFB    Percentiles `json:"ttfb"`
	// Throughput and CPU are the median over rounds, with the spread.
	Throughput    float64 `json:"throughput_rps"`
	ThroughputMin float64 `json:"throughput_min_rps"`
	ThroughputMax float64 `json:"throughput_max_rps"`
	CPUPerReq     float64 `json:"cpu_us_per_request"`
	CPUPerReqMin  float64 `json:"cpu_us_per_request_min"`
	CPUPerReqMax  float64 `json:"cpu_us_per_request_max"`
	// P50Rounds is the p50 latency of each round, to show the noise.
	P50Rounds []float64 `json:"p50_us_by_round"`
}

// Comparison is a target against the baseline, for one mode.
type Comparison struct {
	Target          string  `json:"target"`
	Baseline        string  `json:"baseline"`
	Stream          bool    `json:"stream"`
	P50DeltaUS      float64 `json:"p50_delta_us"`
	P50Ratio        float64 `json:"p50_ratio"`
	P99DeltaUS      float64 `json:"p99_delta_us"`
	P99Ratio        float64 `json:"p99_ratio"`
	TTFBP50DeltaUS  float64 `json:"ttfb_p50_delta_us"`
	TTFBP50Ratio    float64 `json:"ttfb_p50_ratio"`
	ThroughputRatio float64 `json:"throughput_ratio"`
	CPUDeltaUS      float64 `json:"cpu_per_request_delta_us"`
	CPURatio        float64 `json:"cpu_per_request_ratio"`
	// Paired figures: the target and the baseline ran back to back in each
	// round, so the per-round difference or ratio cancels the drift of a
	// shared machine's background load; these are their medians over rounds,
	// and the verdicts use them.
	PairedP50DeltaUS      float64 `json:"paired_p50_delta_us"`
	PairedTTFBDeltaUS     float64 `json:"paired_ttfb_p50_delta_us"`
	PairedThroughputRatio float64 `json:"paired_throughput_ratio"`
	PairedCPURatio        float64 `json:"paired_cpu_per_request_ratio"`
	P50OK                 bool    `json:"p50_within_target"`
	ThroughputOK          bool    `json:"throughput_within_target"`
	CPUOK                 bool    `json:"cpu_within_target"`
	TTFBOK                bool    `json:"ttfb_within_target"`
}

// CompareResult is the outcome of Compare.
type CompareResult struct {
	Label       string       `json:"label,omitempty"`
	Rounds      int          `json:"rounds"`
	Concurrency int          `json:"concurrency"`
	PerRun      int          `json:"requests_per_run"`
	Rows        []Row        `json:"rows"`
	Comparisons []Comparison `json:"comparisons"`
	Runs        []*Result    `json:"runs"`
}

func modeName(stream bool) string {
	if stream {
		return "stream"
	}
	return "nonstream"
}

// Compare runs cfg. progress, when not nil, gets one line per run.
func Compare(ctx context.Context, cfg CompareConfig, progress io.Writer) (*CompareResult, error) {
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("no targets")
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	cfg.Rounds = min(cfg.Rounds, 100)
	if len(cfg.Streams) == 0 {
		cfg.Streams = []bool{false}
	}
	found := false
	for _, t := range cfg.Targets {
		found = found || t.Name == cfg.Baseline
	}
	if !found {
		return nil, fmt.Errorf("baseline %q is not a target", cfg.Baseline)
	}
	probe := cfg.Load
	probe.URL = cfg.Targets[0].URL
	if err := probe.normalize(); err != nil {
		return nil, err
	}
	clients := make(map[string]*http.Client, len(cfg.Targets))
	for _, t := range cfg.Targets {
		clients[t.Name] = NewClient(probe.Concurrency)
	}
	res := &CompareResult{Label: cfg.Label, Rounds: cfg.Rounds, Concurrency: probe.Concurrency, PerRun: probe.Requests}
	runOne := func(t Target, stream bool, seed uint64, requests int) (*Result, error) {
		lc := cfg.Load
		lc.URL = t.URL
		lc.Workload.Stream = stream
		lc.Workload.Seed = seed
		if requests > 0 {
			lc.Requests = requests
			lc.Conversations = max(lc.Conversations, (requests+max(lc.Turns, 1)-1)/max(lc.Turns, 1))
		}
		var watch *CPUWatch
		if len(t.PIDs) > 0 && requests == 0 {
			var err error
			if watch, err = StartCPUWatch(t.PIDs); err != nil {
				return nil, err
			}
		}
		r, err := Run(ctx, lc, clients[t.Name])
		if err != nil {
			return nil, err
		}
		if watch != nil {
			if r.CPU, err = watch.Stop(); err != nil {
				return nil, err
			}
		}
		return r, nil
	}

	if cfg.Warmup > 0 {
		for _, stream := range cfg.Streams {
			for _, t := range cfg.Targets {
				r, err := runOne(t, stream, cfg.Load.Workload.Seed+1_000_000, cfg.Warmup)
				if err != nil {
					return nil, err
				}
				if r.Errors > 0 {
					return nil, fmt.Errorf("warmup of %s (%s): %d errors, first: %s", t.Name, modeName(stream), r.Errors, r.ErrorNotes[0])
				}
			}
		}
	}
	for round := range cfg.Rounds {
		order := slices.Clone(cfg.Targets)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, stream := range cfg.Streams {
			for _, t := range order {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r, err := runOne(t, stream, cfg.Load.Workload.Seed+uint64(round), 0)
				if err != nil {
					return nil, err
				}
				r.Label = fmt.Sprintf("%s/%s/round%d", t.Name, modeName(stream), round+1)
				res.Runs = append(res.Runs, r)
				if progress != nil {
					fmt.Fprintf(progress, "  %-28s p50 %7.0fµs p99 %7.0fµs ttfb50 %7.0fµs %7.0f req/s cpu %6.1fµs/req errors %d\n",
						r.Label, r.Latency.P50, r.Latency.P99, r.TTFB.P50, r.Throughput, r.CPUPerRequest(), r.Errors)
				}
			}
		}
	}
	res.aggregate(cfg)
	return res, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (res *CompareResult) aggregate(cfg CompareConfig) {
	rows := map[string]*Row{}
	key := func(name string, stream bool) string { return name + "/" + modeName(stream) }
	for _, stream := range cfg.Streams {
		for _, t := range cfg.Targets {
			var lat, ttfb []time.Duration
			var thr, cpu []float64
			row := Row{Target: t.Name, Stream: stream}
			for _, r := range res.Runs {
				if !strings.HasPrefix(r.Label, key(t.Name, stream)+"/") {
					continue
				}
				row.Runs++
				row.OK += r.OK
				row.Errors += r.Errors
				lat = append(lat, r.latencies...)
				ttfb = append(ttfb, r.ttfbs...)
				thr = append(thr, r.Throughput)
				if c := r.CPUPerRequest(); c > 0 {
					cpu = append(cpu, c)
				}
				row.P50Rounds = append(row.P50Rounds, r.Latency.P50)
			}
			row.Latency = NewPercentiles(lat)
			row.TTFB = NewPercentiles(ttfb)
			row.Throughput = median(thr)
			if len(thr) > 0 {
				row.ThroughputMin, row.ThroughputMax = slices.Min(thr), slices.Max(thr)
			}
			row.CPUPerReq = median(cpu)
			if len(cpu) > 0 {
				row.CPUPerReqMin, row.CPUPerReqMax = slices.Min(cpu), slices.Max(cpu)
			}
			res.Rows = append(res.Rows, row)
			rows[key(t.Name, stream)] = &res.Rows[len(res.Rows)-1]
		}
	}
	for _, stream := range cfg.Streams {
		base := rows[key(cfg.Baseline, stream)]
		for _, t := range cfg.Targets {
			if t.Name == cfg.Baseline {
				continue
			}
			r := rows[key(t.Name, stream)]
			c := Comparison{
				Target: t.Name, Baseline: cfg.Baseline, Stream: stream,
				P50DeltaUS:      r.Latency.P50 - base.Latency.P50,
				P50Ratio:        ratio(r.Latency.P50, base.Latency.P50),
				P99DeltaUS:      r.Latency.P99 - base.Latency.P99,
				P99Ratio:        ratio(r.Latency.P99, base.Latency.P99),
				TTFBP50DeltaUS:  r.TTFB.P50 - base.TTFB.P50,
				TTFBP50Ratio:    ratio(r.TTFB.P50, base.TTFB.P50),
				ThroughputRatio: ratio(r.Throughput, base.Throughput),
				CPUDeltaUS:      r.CPUPerReq - base.CPUPerReq,
				CPURatio:        ratio(r.CPUPerReq, base.CPUPerReq),
			}
			var dp50, dttfb, thr, cpu []float64
			for round := range cfg.Rounds {
				suffix := "/round" + strconv.Itoa(round+1)
				a, b := res.run(key(t.Name, stream)+suffix), res.run(key(cfg.Baseline, stream)+suffix)
				if a == nil || b == nil {
					continue
				}
				dp50 = append(dp50, a.Latency.P50-b.Latency.P50)
				dttfb = append(dttfb, a.TTFB.P50-b.TTFB.P50)
				thr = append(thr, ratio(a.Throughput, b.Throughput))
				if ca, cb := a.CPUPerRequest(), b.CPUPerRequest(); ca > 0 && cb > 0 {
					cpu = append(cpu, ca/cb)
				}
			}
			c.PairedP50DeltaUS, c.PairedTTFBDeltaUS = median(dp50), median(dttfb)
			c.PairedThroughputRatio, c.PairedCPURatio = median(thr), median(cpu)
			c.P50OK = c.PairedP50DeltaUS <= TargetP50DeltaUS
			c.ThroughputOK = c.PairedThroughputRatio >= TargetThroughputRatio
			c.CPUOK = len(cpu) > 0 && c.PairedCPURatio <= TargetCPURatio
			c.TTFBOK = c.PairedTTFBDeltaUS <= TargetTTFBDeltaUS
			res.Comparisons = append(res.Comparisons, c)
		}
	}
}

// run returns the run with the given label, or nil.
func (res *CompareResult) run(label string) *Result {
	for _, r := range res.Runs {
		if r.Label == label {
			return r
		}
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// WriteText prints the comparison tables.
func (res *CompareResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "== %s: %d rounds, concurrency %d, %d requests per run (latency/TTFB pooled over rounds; req/s and CPU: median of rounds [min..max])\n",
		res.Label, res.Rounds, res.Concurrency, res.PerRun)
	fmt.Fprintf(w, "%-20s %-9s %9s %9s %9s %10s %10s %22s %24s %6s\n",
		"target", "mode", "p50 µs", "p90 µs", "p99 µs", "ttfb50 µs", "ttfb99 µs", "req/s", "cpu µs/req", "errors")
	for _, r := range res.Rows {
		fmt.Fprintf(w, "%-20s %-9s %9.0f %9.0f %9.0f %10.0f %10.0f %8.0f [%5.0f..%5.0f] %8.1f [%6.1f..%6.1f] %6d\n",
			r.Target, modeName(r.Stream), r.Latency.P50, r.Latency.P90, r.Latency.P99, r.TTFB.P50, r.TTFB.P99,
			r.Throughput, r.ThroughputMin, r.ThroughputMax, r.CPUPerReq, r.CPUPerReqMin, r.CPUPerReqMax, r.Errors)
	}
	fmt.Fprintf(w, "pooled vs baseline (all rounds' samples together; req/s and CPU from the medians above):\n")
	fmt.Fprintf(w, "%-20s %-9s %16s %16s %18s %12s %22s\n",
		"target", "mode", "p50 Δ", "p99 Δ", "ttfb50 Δ", "req/s ratio", "cpu/req ratio")
	for _, c := range res.Comparisons {
		fmt.Fprintf(w, "%-20s %-9s %+7.0fµs x%.3f %+7.0fµs x%.3f %+7.0fµs x%.3f %11.3f %9.3f (%+6.1fµs)\n",
			c.Target, modeName(c.Stream), c.P50DeltaUS, c.P50Ratio, c.P99DeltaUS, c.P99Ratio,
			c.TTFBP50DeltaUS, c.TTFBP50Ratio, c.ThroughputRatio, c.CPURatio, c.CPUDeltaUS)
	}
	fmt.Fprintf(w, "paired vs baseline (median over rounds of the back-to-back difference or ratio; SPEC 11 verdicts):\n")
	fmt.Fprintf(w, "%-20s %-9s %-20s %-22s %-22s %-22s\n",
		"target", "mode", "p50 Δ (≤+50µs)", "ttfb50 Δ (≤+50µs)", "req/s ratio (≥0.95)", "cpu/req ratio (≤1.25)")
	for _, c := range res.Comparisons {
		fmt.Fprintf(w, "%-20s %-9s %+8.0fµs %-9s %+8.0fµs %-11s %9.3f %-12s %9.3f %-12s\n",
			c.Target, modeName(c.Stream),
			c.PairedP50DeltaUS, verdict(c.P50OK),
			c.PairedTTFBDeltaUS, verdict(c.TTFBOK),
			c.PairedThroughputRatio, verdict(c.ThroughputOK),
			c.PairedCPURatio, verdict(c.CPUOK))
	}
}
