package llmload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcCPU is the CPU time a process used during a run.
type ProcCPU struct {
	PID     int     `json:"pid"`
	Seconds float64 `json:"seconds"` // utime + stime
}

// ReadCPUTicks returns utime + stime of pid, in clock ticks, from
// /proc/<pid>/stat.
func ReadCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

// parseStatTicks extracts utime + stime (fields 14 and 15) from the text of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its closing parenthesis.
func parseStatTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat times")
	}
	return ut + st, nil
}

// CPUWatch samples the CPU time of processes before and after a run.
type CPUWatch struct {
	pids   []int
	before []int64
}

// StartCPUWatch reads the current CPU times of pids.
func StartCPUWatch(pids []int) (*CPUWatch, error) {
	w := &CPUWatch{pids: pids, before: make([]int64, len(pids))}
	for i, p := range pids {
		t, err := ReadCPUTicks(p)
		if err != nil {
			return nil, fmt.Errorf("reading cpu of pid %d: %v", p, err)
		}
		w.before[i] = t
	}
	return w, nil
}

// Stop returns the CPU time each process used since StartCPUWatch.
func (w *CPUWatch) Stop() ([]ProcCPU, error) {
	out := make([]ProcCPU, len(w.pids))
	for i, p := range w.pids {
		t, err := ReadCPUTicks(p)
		if err != nil {
			return nil, fmt.Errorf("reading cpu of pid %d: %v", p, err)
		}
		out[i] = ProcCPU{PID: p, Seconds: float64(t-w.before[i]) / clockTicks}
	}
	return out, nil
}

// MockStats is the part of the mock upstream's GET /_mock/stats the load
// tool uses, by credential label.
type MockStats map[string]struct {
	EligibleTurns   int64 `json:"eligible_turns"`
	CacheHitTurns   int64 `json:"cache_hit_turns"`
	InputTokens     int64 `json:"input_tokens"`
	CacheReadTokens int64 `json:"cache_read_tokens"`
	Requests        int64 `json:"requests"`
}

// CacheStats is the simulated prompt cache's view of a run, over all
// credentials.
type CacheStats struct {
	EligibleTurns int64   `json:"eligible_turns"`
	HitTurns      int64   `json:"cache_hit_turns"`
	HitRate       float64 `json:"cache_hit_rate"`
	InputTokens   int64   `json:"input_tokens"`
	ReadTokens    int64   `json:"cache_read_tokens"`
	TokenHitRate  float64 `json:"cache_read_token_rate"`
	// ByCredential is the hit rate of each credential label.
	ByCredential map[string]float64 `json:"by_credential"`
}

// CacheDelta computes the cache figures between two snapshots.
func CacheDelta(before, after MockStats) *CacheStats {
	c := &CacheStats{ByCredential: map[string]float64{}}
	for label, a := range after {
		b := before[label]
		el, hit := a.EligibleTurns-b.EligibleTurns, a.CacheHitTurns-b.CacheHitTurns
		c.EligibleTurns += el
		c.HitTurns += hit
		c.InputTokens += a.InputTokens - b.InputTokens
		c.ReadTokens += a.CacheReadTokens - b.CacheReadTokens
		if el > 0 {
			c.ByCredential[label] = float64(hit) / float64(el)
		}
	}
	if c.EligibleTurns > 0 {
		c.HitRate = float64(c.HitTurns) / float64(c.EligibleTurns)
	}
	if c.InputTokens > 0 {
		c.TokenHitRate = float64(c.ReadTokens) / float64(c.InputTokens)
	}
	return c
}

var controlClient = &http.Client{Timeout: 10 * time.Second}

// FetchMockStats reads GET <mock>/_mock/stats.
func FetchMockStats(ctx context.Context, mockURL string) (MockStats, error) {
	if err := CheckLoopback(mockURL); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(mockURL, "/")+"/_mock/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := controlClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /_mock/stats: %s", resp.Status)
	}
	var st MockStats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decoding /_mock/stats: %v", err)
	}
	return st, nil
}

// ResetMock calls POST <mock>/_mock/reset.
func ResetMock(ctx context.Context, mockURL string) error {
	if err := CheckLoopback(mockURL); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(mockURL, "/")+"/_mock/reset", nil)
	if err != nil {
		return err
	}
	resp, err := controlClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST /_mock/reset: %s", resp.Status)
	}
	return nil
}
