package mockllm

import (
	"net/http"
	"time"
)

// streamer writes a response one event at a time, flushing each, pausing
// between events, stopping when the client leaves and dropping the
// connection after an injected number of events.
type streamer struct {
	c      *call
	rc     *http.ResponseController
	bp     *[]byte
	buf    []byte
	events int
	timer  *time.Timer
	done   bool // the client went away; nothing more is written
}

// startStream writes the response headers with contentType and returns a
// streamer. Defer its finish (write may abort the handler with a panic).
func (c *call) startStream(contentType []string) *streamer {
	h := c.w.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = noCache
	h["X-Accel-Buffering"] = accelNoBuffer
	c.w.WriteHeader(http.StatusOK)
	st := &streamer{c: c, rc: http.NewResponseController(c.w), bp: getBuf()}
	st.buf = (*st.bp)[:0]
	return st
}

// finish releases the streamer's resources.
func (st *streamer) finish() {
	if st.timer != nil {
		st.timer.Stop()
	}
	*st.bp = st.buf
	putBuf(st.bp)
}

// event starts an SSE event named name ("" for a data-only event) in the
// buffer; append the data JSON to st.buf and call send.
func (st *streamer) event(name string) {
	st.buf = st.buf[:0]
	if name != "" {
		st.buf = append(st.buf, "event: "...)
		st.buf = append(st.buf, name...)
		st.buf = append(st.buf, '\n')
	}
	st.buf = append(st.buf, "data: "...)
}

// send terminates the SSE event in the buffer and writes it.
func (st *streamer) send() bool {
	st.buf = append(st.buf, '\n', '\n')
	return st.write()
}

// write waits the stream delay (after the first event), writes the buffer
// and flushes it. It reports whether the stream may go on; after the
// injected number of events it aborts the connection.
func (st *streamer) write() bool {
	if st.done {
		return false
	}
	c := st.c
	if c.reject.due(st.events) {
		st.writeReject()
		return false
	}
	if st.events > 0 && c.s.delay > 0 {
		if st.timer == nil {
			st.timer = time.NewTimer(c.s.delay)
		} else {
			st.timer.Reset(c.s.delay)
		}
		select {
		case <-c.ctx.Done():
			st.stop()
			return false
		case <-st.timer.C:
		}
	} else if c.ctx.Err() != nil {
		st.stop()
		return false
	}
	if _, err := c.w.Write(st.buf); err != nil {
		st.stop()
		return false
	}
	if err := st.rc.Flush(); err != nil {
		st.stop()
		return false
	}
	st.events++
	if c.drop > 0 && st.events >= c.drop {
		abort()
	}
	return true
}

// stop records that the client went away.
func (st *streamer) stop() {
	st.done = true
	st.c.cancelled()
}
