package handler

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// firstByteWriter is a discardWriter that notes when the first byte went
// out.
type firstByteWriter struct {
	discardWriter
	first time.Time
}

func (w *firstByteWriter) Write(b []byte) (int, error) {
	if w.first.IsZero() {
		w.first = time.Now()
	}
	return len(b), nil
}

// BenchmarkTimeToFirstByte measures, per response, the time from the
// upstream response to the first byte written to the client, and the
// whole copy, for a 50-event Anthropic stream (one read per event) whose
// head is held back (message_start, then content_block_start releases
// it), for the same stream copied directly as before hold-back, and for a
// stream whose first event already carries output.
func BenchmarkTimeToFirstByte(b *testing.B) {
	events := anthropicStream50()
	chunks := make([][]byte, len(events))
	for i, e := range events {
		chunks[i] = []byte(e)
	}
	outputFirst := chunks[1:]
	a := &auth.Auth{Fields: auth.Fields{APIKey: "sk-ant-bench-0123456789"}}
	for _, bc := range []struct {
		name   string
		chunks [][]byte
		hold   bool
	}{
		{"direct", chunks, false},
		{"holdback", chunks, true},
		{"holdback_output_first", outputFirst, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := http.Header{"Content-Type": {"text/event-stream"}}
			w := &firstByteWriter{discardWriter: discardWriter{h: http.Header{}}}
			var ttfb time.Duration
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.first = time.Time{}
				resp := &http.Response{StatusCode: 200, Header: h, ContentLength: -1, Body: &chunkReader{chunks: bc.chunks}}
				start := time.Now()
				if bc.hold {
					if _, rejected := holdBackResponse(resp, a, time.Minute); rejected {
						b.Fatal("rejected")
					}
				}
				if _, err := copyResponse(w, resp, false); err != nil {
					b.Fatal(err)
				}
				ttfb += w.first.Sub(start)
			}
			b.ReportMetric(float64(ttfb.Nanoseconds())/float64(b.N), "ns-ttfb/op")
		})
	}
}
