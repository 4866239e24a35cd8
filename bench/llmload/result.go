package llmload

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Percentiles of a set of durations, in microseconds.
type Percentiles struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_us"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	Max  float64 `json:"max_us"`
}

// percentile returns the q-quantile (0..1) of sorted, by the nearest-rank
// method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return sorted[i]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// NewPercentiles summarises ds (which it sorts).
func NewPercentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Percentiles{
		N:    len(ds),
		Mean: us(sum) / float64(len(ds)),
		P50:  us(percentile(ds, 0.50)),
		P90:  us(percentile(ds, 0.90)),
		P99:  us(percentile(ds, 0.99)),
		Max:  us(ds[len(ds)-1]),
	}
}

// Stickiness is how conversations moved between credentials, as seen in
// the X-Mock-Credential response header.
type Stickiness struct {
	// LaterTurns counts turns after the first with a known credential.
	LaterTurns int `json:"later_turns"`
	// SameAsPrevious counts later turns served by the previous turn's credential.
	SameAsPrevious int `json:"same_as_previous"`
	// SameAsFirst counts later turns served by the first turn's credential.
	SameAsFirst int `json:"same_as_first"`
	// Conversations counts conversations with at least one turn.
	Conversations int `json:"conversations"`
	// NeverMoved counts conversations whose every turn had one credential.
	NeverMoved int `json:"never_moved"`
	// SameAsPreviousRate is SameAsPrevious / LaterTurns.
	SameAsPreviousRate float64 `json:"same_as_previous_rate"`
}

// Result is the outcome of one load run.
type Result struct {
	Label         string         `json:"label,omitempty"`
	URL           string         `json:"url"`
	API           string         `json:"api"`
	Stream        bool           `json:"stream"`
	Session       string         `json:"session"`
	Concurrency   int            `json:"concurrency"`
	Conversations int            `json:"conversations"`
	Turns         int            `json:"turns"`
	Requests      int            `json:"requests"`
	OK            int            `json:"ok"`
	Errors        int            `json:"errors"`
	ErrorsByKind  map[string]int `json:"errors_by_kind,omitempty"`
	ErrorNotes    []string       `json:"error_notes,omitempty"`
	Seconds       float64        `json:"seconds"`
	Throughput    float64        `json:"throughput_rps"`
	RequestBytes  int64          `json:"request_bytes_total"`
	ResponseBytes int64          `json:"response_bytes_total"`
	Latency       Percentiles    `json:"latency"`
	TTFB          Percentiles    `json:"ttfb"`
	Credentials   map[string]int `json:"credentials,omitempty"`
	Stickiness    Stickiness     `json:"stickiness"`
	// CPU is filled by the caller when it watched processes.
	CPU []ProcCPU `json:"cpu,omitempty"`
	// Cache is filled by the caller when it read the mock's stats.
	Cache *CacheStats `json:"cache,omitempty"`

	latencies []time.Duration
	ttfbs     []time.Duration
}

func summarize(cfg *Config, samples []sample, convs []convResult, elapsed time.Duration) *Result {
	r := &Result{
		URL:           cfg.URL,
		API:           cfg.Workload.API,
		Stream:        cfg.Workload.Stream,
		Session:       cfg.Workload.Session,
		Concurrency:   cfg.Concurrency,
		Conversations: len(convs),
		Turns:         cfg.Turns,
		Requests:      len(samples),
		Seconds:       elapsed.Seconds(),
		Credentials:   map[string]int{},
	}
	for _, s := range samples {
		r.RequestBytes += int64(s.sent)
		if s.cred != "" {
			r.Credentials[s.cred]++
		}
		if s.err != nil {
			r.Errors++
			kind := "transport"
			var he *httpError
			if errors.As(s.err, &he) {
				kind = strconv.Itoa(he.status)
			}
			if r.ErrorsByKind == nil {
				r.ErrorsByKind = map[string]int{}
			}
			r.ErrorsByKind[kind]++
			if len(r.ErrorNotes) < maxErrorNotes {
				r.ErrorNotes = append(r.ErrorNotes, s.err.Error())
			}
			continue
		}
		r.OK++
		r.ResponseBytes += s.bytes
		r.latencies = append(r.latencies, s.latency)
		r.ttfbs = append(r.ttfbs, s.ttfb)
	}
	if elapsed > 0 {
		r.Throughput = float64(r.OK) / elapsed.Seconds()
	}
	r.Latency = NewPercentiles(slices.Clone(r.latencies))
	r.TTFB = NewPercentiles(slices.Clone(r.ttfbs))
	st := &r.Stickiness
	for _, c := range convs {
		st.Conversations++
		moved := false
		for i := 1; i < len(c.creds); i++ {
			if c.creds[i] == "" || c.creds[0] == "" {
				continue
			}
			st.LaterTurns++
			if c.creds[i] == c.creds[i-1] {
				st.SameAsPrevious++
			}
			if c.creds[i] == c.creds[0] {
				st.SameAsFirst++
			} else {
				moved = true
			}
		}
		if !moved {
			st.NeverMoved++
		}
	}
	if st.LaterTurns > 0 {
		st.SameAsPreviousRate = float64(st.SameAsPrevious) / float64(st.LaterTurns)
	}
	return r
}

// CPUPerRequest is the CPU time (µs) the watched processes used per
// successful request, summed over processes; 0 when unknown.
func (r *Result) CPUPerRequest() float64 {
	if r.OK == 0 || len(r.CPU) == 0 {
		return 0
	}
	var sum float64
	for _, c := range r.CPU {
		sum += c.Seconds
	}
	return sum * 1e6 / float64(r.OK)
}

// WriteText prints a human-readable summary of r.
func (r *Result) WriteText(w io.Writer) {
	mode := "non-streaming"
	if r.Stream {
		mode = "streaming"
	}
	name := r.Label
	if name == "" {
		name = r.URL
	}
	fmt.Fprintf(w, "%s: %s %s, session=%s, %d conversations x %d turns, concurrency %d\n",
		name, r.API, mode, r.Session, r.Conversations, r.Turns, r.Concurrency)
	fmt.Fprintf(w, "  requests %d ok %d errors %d in %.2fs: %.0f req/s\n", r.Requests, r.OK, r.Errors, r.Seconds, r.Throughput)
	if r.Requests > 0 {
		fmt.Fprintf(w, "  mean request body %.1f KB\n", float64(r.RequestBytes)/float64(r.Requests)/1024)
	}
	fmt.Fprintf(w, "  latency  p50 %8.0fµs  p90 %8.0fµs  p99 %8.0fµs  max %8.0fµs\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(w, "  ttfb     p50 %8.0fµs  p90 %8.0fµs  p99 %8.0fµs\n", r.TTFB.P50, r.TTFB.P90, r.TTFB.P99)
	if len(r.CPU) > 0 {
		fmt.Fprintf(w, "  cpu      %.1fµs per request", r.CPUPerRequest())
		for _, c := range r.CPU {
			fmt.Fprintf(w, " (pid %d: %.2fs)", c.PID, c.Seconds)
		}
		fmt.Fprintln(w)
	}
	if len(r.Credentials) > 0 {
		keys := make([]string, 0, len(r.Credentials))
		for k := range r.Credentials {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "  served by")
		for _, k := range keys {
			fmt.Fprintf(w, " %s=%d", k, r.Credentials[k])
		}
		fmt.Fprintln(w)
		st := r.Stickiness
		fmt.Fprintf(w, "  later turns on the previous turn's credential: %d/%d (%.1f%%); conversations never moved: %d/%d\n",
			st.SameAsPrevious, st.LaterTurns, 100*st.SameAsPreviousRate, st.NeverMoved, st.Conversations)
	}
	if r.Cache != nil {
		c := r.Cache
		fmt.Fprintf(w, "  mock prompt cache: %d/%d eligible turns hit (%.2f%%); cache-read tokens %.1f%% of prompt tokens\n",
			c.HitTurns, c.EligibleTurns, 100*c.HitRate, 100*c.TokenHitRate)
	}
	for k, n := range r.ErrorsByKind {
		fmt.Fprintf(w, "  errors %s: %d\n", k, n)
	}
	for _, e := range r.ErrorNotes {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}
