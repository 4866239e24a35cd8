package handler

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
)

// copyBuffers recycles the buffers responses are copied through.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// errClientWrite marks a failed write to the client (the client left).
var errClientWrite = errors.New("writing to client")

// copyHeader adds every non-hop-by-hop header of src to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k][:0:0], vv...)
	}
	stripHopHeaders(dst)
}

// copyResponse sends the upstream response to the client. Streams are
// flushed after every read so each SSE event reaches the client as soon as
// it arrives. prefix is body already read (for error responses). It returns
// the upstream read error, if the upstream broke off; a client that went
// away is errClientWrite. Prompt-cache usage in the body is reported for
// authID once the copy ends, and a stored resource's ID (an OpenAI response,
// an Anthropic message batch) to onResourceID (when set).
func (p *Proxy) copyResponse(w http.ResponseWriter, resp *http.Response, prefix []byte, authID string, onResourceID func(string)) error {
	defer resp.Body.Close()
	// The scanner reads each chunk after it went out (bodyscan.go).
	us := p.bodyScanner(resp, authID, onResourceID)
	defer us.finish()
	copyHeader(w.Header(), resp.Header)
	if prefix != nil {
		// The body was fully read (errors are small) or truncated at the limit.
		w.Header().Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	if len(prefix) > 0 {
		if _, err := w.Write(prefix); err != nil {
			return errClientWrite
		}
	}
	rc := http.NewResponseController(w)
	stream := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if stream {
		_ = rc.Flush()
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientWrite
			}
			if stream {
				if err := rc.Flush(); err != nil {
					return errClientWrite
				}
			}
			us.feed(buf[:n]) // usage
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
