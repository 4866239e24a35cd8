package handler

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// parsed is everything the handler learns from a client request before it
// picks a credential. The body is read once and kept for session extraction
// and for replay to each credential tried.
type parsed struct {
	route apifamily.Route
	model string // as requested; cooldowns are kept per this name
	bind  string // model for session bindings (thinking suffix stripped)
	body  []byte
	ids   session.IDs
	// client is the admitted client key; the model list shows it only
	// the models it may use.
	client access.Client

	// createsResource marks a request whose answer is a stored resource
	// that later requests refer to by ID (POST /v1/responses, POST
	// /v1/messages/batches); resource is the ID of the stored resource this
	// request refers to (previous_response_id, /v1/responses/{id}...,
	// /v1/messages/batches/{id}...).
	createsResource bool
	resource        string
}

var errTooLarge = errors.New("request body too large")

// requestError is a request refused before any upstream call, answered with
// 400 in the client's API shape; its message is for the client.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

// initialBodyBuffer bounds what is allocated for a body before its bytes
// arrive: a client that declares a large Content-Length and sends little
// costs at most this much, and the buffer grows with the data.
const initialBodyBuffer = 64 << 10

// readBody reads at most max bytes of the request body; a longer body is
// errTooLarge. Memory grows with the bytes received, not with the declared
// length; a body of up to 64 KiB with a Content-Length is read into one
// buffer of exactly its size.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, errTooLarge
	}
	if r.ContentLength > 0 {
		return readDeclared(r.Body, r.ContentLength)
	}
	return readUnknown(r.Body, max)
}

// readDeclared reads exactly n bytes (the server holds the body to its
// declared length) into a buffer that starts at min(n, 64 KiB) and doubles,
// up to n, as it fills.
func readDeclared(body io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, min(n, initialBodyBuffer))
	read := 0
	for {
		m, err := io.ReadFull(body, buf[read:])
		read += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if int64(read) == n {
			return buf, nil
		}
		grown := make([]byte, min(2*int64(len(buf)), n))
		copy(grown, buf)
		buf = grown
	}
}

// readUnknown reads a body of unknown length (chunked) up to max bytes; the
// buffer grows as data arrives.
func readUnknown(body io.Reader, max int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(body, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// parse reads and examines the request. affinity says whether to look for a
// session ID. A request the gateway refuses to forward is a *requestError.
func parse(r *http.Request, route apifamily.Route, max int64, affinity bool) (*parsed, error) {
	if hasEncodedSlash(r.URL.RawPath) {
		// The decoded path passed the route check, but the client meant
		// an ID holding '/': never send it on as something else.
		return nil, &requestError{"the request path holds an encoded '/' (%2F); IDs and model names cannot contain '/'"}
	}
	body, err := readBody(r, max)
	if err != nil {
		return nil, err
	}
	p := &parsed{route: route, body: body, model: route.Model}
	if p.model == "" && len(body) > 0 {
		if countModelKeys(body) > 1 {
			return nil, &requestError{`the request body names "model" more than once`}
		}
		p.model = apifamily.BodyModel(body)
	}
	if err := apifamily.CheckModel(p.model); err != nil {
		return nil, &requestError{err.Error()}
	}
	p.bind = session.BindingModel(p.model)
	p.createsResource, p.resource = storedResource(r, route, body)
	if affinity {
		p.ids = session.Extract(r.Header, body)
	}
	return p, nil
}

// hasEncodedSlash reports whether an escaped path holds %2F or %2f.
func hasEncodedSlash(escaped string) bool {
	for i := strings.IndexByte(escaped, '%'); i >= 0 && i+2 < len(escaped); {
		if escaped[i+1] == '2' && (escaped[i+2] == 'F' || escaped[i+2] == 'f') {
			return true
		}
		j := strings.IndexByte(escaped[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// storedResource tells whether a request creates a stored resource, and
// which stored resource it refers to. The route check has made sure that
// the IDs in the path are single, safe segments.
func storedResource(r *http.Request, route apifamily.Route, body []byte) (creates bool, id string) {
	path := r.URL.Path
	switch route.Family {
	case apifamily.OpenAI:
		switch path {
		case "/v1/responses", "/v1/responses/compact", "/v1/responses/input_tokens":
			if len(body) > 0 {
				if v := gjson.GetBytes(body, "previous_response_id"); v.Type == gjson.String && len(v.Str) <= apifamily.MaxIDLen {
					id = v.Str
				}
			}
			return r.Method == http.MethodPost && path == "/v1/responses", id
		}
		if rest, ok := strings.CutPrefix(path, "/v1/responses/"); ok {
			// GET, DELETE, cancel or input_items of a stored response.
			id, _, _ = strings.Cut(rest, "/")
		}
	case apifamily.Anthropic:
		if path == "/v1/messages/batches" {
			return r.Method == http.MethodPost, ""
		}
		if rest, ok := strings.CutPrefix(path, "/v1/messages/batches/"); ok {
			// A batch, its results, cancel or delete.
			id, _, _ = strings.Cut(rest, "/")
		}
	}
	return false, id
}
