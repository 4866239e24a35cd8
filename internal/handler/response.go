package handler

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// errorBodyLimit bounds an upstream error body: it is read whole, up to
// this size, for classification and for redaction, and what follows is
// dropped. Provider error bodies are a few hundred bytes.
const errorBodyLimit = 64 << 10

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

// Usage is the token counts one response reported. Each is the largest
// figure its body carried, never a sum: providers repeat or grow the
// figures from event to event.
type Usage struct {
	// Input is the prompt tokens neither read from nor written to the
	// provider's prompt cache: Anthropic's input_tokens, and OpenAI's,
	// the Responses API's and Gemini's prompt figures less their cached
	// tokens. Input + CacheRead + CacheWrite is the whole prompt in every
	// family. Output is as the provider counts it (Gemini's includes
	// thinking tokens).
	Input, Output int64
	// CacheRead is the prompt tokens served from the provider's prompt
	// cache, CacheWrite those written to it (Anthropic only).
	CacheRead, CacheWrite int64
}

// learnt is what copying a response body found out, returned to the
// attempt loop, which records it.
type learnt struct {
	// usage is the body's token counts; reported says it had any.
	usage    Usage
	reported bool
	// resourceID is the stored resource the response created (an OpenAI
	// response, an Anthropic message batch), when it was looked for.
	resourceID string
}

// mediaType is the media type of h's Content-Type, without parameters.
func mediaType(h http.Header) string {
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.TrimSpace(mt)
}

// isEventStream reports whether h declares a server-sent event stream
// (text/event-stream, whatever its parameters and case). It is the one
// test of "is this an event stream" in the handler.
func isEventStream(h http.Header) bool {
	return strings.EqualFold(mediaType(h), "text/event-stream")
}

// copyResponse sends the upstream response to the client. An event stream,
// or a body of unknown length, is flushed after every read so each event
// reaches the client as soon as it arrives, as reverse_proxy does. Error
// responses never come here: see readErrorBody.
//
// It returns what the body told (usage figures and, when resource is set,
// the ID of the stored resource it describes; see bodyScanner), read as the
// body went by, and the upstream read error if the upstream broke off; a
// client that went away is errClientWrite. What was learnt is returned
// whatever the error.
func copyResponse(w http.ResponseWriter, resp *http.Response, resource bool) (learnt, error) {
	defer resp.Body.Close()
	var scan bodyScanner
	scan.start(resp, resource)
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	flush := resp.ContentLength < 0 || isEventStream(resp.Header)
	if flush {
		_ = rc.Flush()
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return scan.finish(), errClientWrite
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return scan.finish(), errClientWrite
				}
			}
			// The chunk is read after it went out.
			scan.feed(buf[:n])
		}
		if rerr == io.EOF {
			return scan.finish(), nil
		}
		if rerr != nil {
			return scan.finish(), rerr
		}
	}
}

// readErrorBody reads an upstream error body (status 400 and above), at
// most errorBodyLimit bytes of it, closes it, and returns it with the
// credential's secrets redacted. An error may quote the key it was sent
// with; the client never sees it. A longer body is cut at the limit and
// its tail cleared of any beginning of a secret, so a key split by the cut
// cannot leak in part either.
func readErrorBody(resp *http.Response, a *auth.Auth) []byte {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit+1))
	resp.Body.Close()
	truncated := len(body) > errorBodyLimit
	if truncated {
		body = body[:errorBodyLimit]
	}
	body = redactSecrets(body, a)
	if truncated {
		body = trimSecretPrefix(body, a)
	}
	return body
}

// secrets are the values of a credential that must never reach a client.
// Very short values are not hunted for: they would match ordinary text.
func secrets(a *auth.Auth) [3]string {
	s := [...]string{a.APIKey, a.AccessToken, a.RefreshToken}
	for i := range s {
		if len(s[i]) < 8 {
			s[i] = ""
		}
	}
	return s
}

// redactSecrets replaces the credential's key or token wherever an upstream
// error body quotes it.
func redactSecrets(body []byte, a *auth.Auth) []byte {
	for _, secret := range secrets(a) {
		if secret != "" && bytes.Contains(body, []byte(secret)) {
			body = bytes.ReplaceAll(body, []byte(secret), []byte("[redacted]"))
		}
	}
	return body
}

// trimSecretPrefix cuts a truncated body's tail where it is the beginning
// of one of the credential's secrets.
func trimSecretPrefix(body []byte, a *auth.Auth) []byte {
	for _, secret := range secrets(a) {
		for n := min(len(secret)-1, len(body)); n > 0; n-- {
			if bytes.HasSuffix(body, []byte(secret[:n])) {
				body = body[:len(body)-n]
				break
			}
		}
	}
	return body
}

// writeBody answers with an upstream status and headers and a body that was
// read whole (an error body): its Content-Length is the body's own.
func writeBody(w http.ResponseWriter, status int, src http.Header, body []byte) {
	h := w.Header()
	copyHeader(h, src)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
