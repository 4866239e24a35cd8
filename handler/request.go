package handler

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-proxy/llmproxy/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/session"
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

	// createsResource marks a request whose answer is a stored resource
	// that later requests refer to by ID (POST /v1/responses, POST
	// /v1/messages/batches); resource is the ID of the stored resource this
	// request refers to (previous_response_id, /v1/responses/{id}...,
	// /v1/messages/batches/{id}...).
	createsResource bool
	resource        string
}

var errTooLarge = errors.New("request body too large")

// readBody reads at most max bytes of the request body; a longer body is
// errTooLarge.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, errTooLarge
	}
	if r.ContentLength > 0 {
		// The server holds the body to its declared length: read it into
		// a buffer of exactly that size, in one allocation.
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// parse reads and examines the request. affinity says whether to look for a
// session ID.
func parse(r *http.Request, route apifamily.Route, max int64, affinity bool) (*parsed, error) {
	body, err := readBody(r, max)
	if err != nil {
		return nil, err
	}
	p := &parsed{route: route, body: body, model: route.Model}
	if p.model == "" && len(body) > 0 {
		p.model = apifamily.BodyModel(body)
	}
	p.bind = session.BindingModel(p.model)
	p.createsResource, p.resource = storedResource(r, route, body)
	if affinity {
		p.ids = session.Extract(r.Header, body)
	}
	return p, nil
}

// storedResource tells whether a request creates a stored resource, and
// which stored resource it refers to.
func storedResource(r *http.Request, route apifamily.Route, body []byte) (creates bool, id string) {
	path := r.URL.Path
	switch route.Family {
	case apifamily.OpenAI:
		if r.Method == http.MethodPost && path == "/v1/responses" {
			if len(body) > 0 {
				id = gjson.GetBytes(body, "previous_response_id").String()
			}
			return true, id
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
