package pool

import (
	"strconv"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// BenchmarkStateEncode measures one state document of 100,000 bindings
// over 10 credentials.
func BenchmarkStateEncode(b *testing.B) {
	p := newPool("state-bench")
	var auths []*auth.Auth
	for i := range 10 {
		auths = append(auths, rec("a"+strconv.Itoa(i), "claude"))
	}
	p.SetMembers(auths, nil)
	for i := range 100_000 {
		p.Sessions.BindFor("client-"+strconv.Itoa(i%50), "conv-"+strconv.Itoa(i), "m", "a"+strconv.Itoa(i%10))
	}
	now := time.Now()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		data, err := p.encodeState("inst", now)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "bytes/doc")
}

// BenchmarkStateParse measures reading the same document back.
func BenchmarkStateParse(b *testing.B) {
	p := newPool("state-bench")
	p.SetMembers([]*auth.Auth{rec("a0", "claude")}, nil)
	for i := range 100_000 {
		p.Sessions.Bind("conv-"+strconv.Itoa(i), "m", "a0")
	}
	data, err := p.encodeState("inst", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseState(data, "x/inst.json", "state-bench"); err != nil {
			b.Fatal(err)
		}
	}
}
