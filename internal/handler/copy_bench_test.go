package handler

import (
	"io"
	"net/http"
	"testing"
)

// discardWriter is a flushing ResponseWriter that keeps nothing, so the
// copy benchmarks measure the copy alone.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

// chunkReader returns one chunk per Read, as an upstream that flushes
// every SSE event does.
type chunkReader struct {
	chunks [][]byte
	cur    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if len(r.chunks) == 0 {
			return 0, io.EOF
		}
		r.cur, r.chunks = r.chunks[0], r.chunks[1:]
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (*chunkReader) Close() error { return nil }

// BenchmarkCopyResponse copies a 50-event Anthropic stream (one read per
// event) and a Responses JSON body whose ID is pinned.
func BenchmarkCopyResponse(b *testing.B) {
	events := anthropicStream50()
	sseChunks := make([][]byte, len(events))
	size := 0
	for i, e := range events {
		sseChunks[i] = []byte(e)
		size += len(e)
	}
	for _, bc := range []struct {
		name, ct string
		chunks   [][]byte
		size     int
		resource bool
	}{
		{"sse_50_events", "text/event-stream", sseChunks, size, false},
		{"responses_json", "application/json", [][]byte{[]byte(responsesJSON)}, len(responsesJSON), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchCopy(b, bc.ct, bc.chunks, bc.size, bc.resource)
		})
	}
}

func benchCopy(b *testing.B, ct string, chunks [][]byte, size int, resource bool) {
	w := &discardWriter{h: http.Header{}}
	h := http.Header{"Content-Type": {ct}}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		resp := &http.Response{StatusCode: 200, Header: h, ContentLength: -1, Body: &chunkReader{chunks: chunks}}
		if _, err := copyResponse(w, resp, resource); err != nil {
			b.Fatal(err)
		}
	}
}
