package handler

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/session"
)

// maxModelList bounds the upstream model list that is read whole to be
// rewritten; a longer one is passed on as sent.
const maxModelList = 8 << 20

// isModelList reports whether the request is the model listing, GET
// /v1/models (OpenAI's or Anthropic's) or GET /v1beta/models (Gemini's).
func isModelList(r *http.Request, route apifamily.Route) bool {
	return r.Method == http.MethodGet && route.Endpoint == apifamily.EndpointModels &&
		(r.URL.Path == "/v1/models" || route.Family == apifamily.Gemini && r.URL.Path == "/v1beta/models")
}

// readModelList reads a successful model list whole. When it cannot (too
// long, or the upstream broke off), resp.Body is set to replay what was read
// followed by the rest, and ok is false: the response is then copied as is.
func readModelList(resp *http.Response) (body []byte, ok bool) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxModelList+1))
	if err == nil && len(b) <= maxModelList {
		resp.Body.Close()
		return b, true
	}
	rest := io.Reader(resp.Body)
	if err != nil {
		rest = errReader{err}
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), rest), resp.Body}
	return nil, false
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// poolModelList rewrites an upstream's model list (OpenAI's or Anthropic's
// shape: a top-level "data" array of objects with an "id"; Gemini's: a
// "models" array of objects with a "name" "models/{id}") into the
// client-visible models of the pool: entries no credential in creds serves
// are dropped (excluded_models, models), and every model_alias client name
// not listed yet is added in the family's entry shape (on the last page of
// a paginated list). Only the models client may use are listed: a key
// limited to some models sees those alone, alias names included. Every
// other byte is kept. ok is false when body is not such a list.
func poolModelList(body []byte, fam apifamily.Family, creds []*auth.Auth, client access.Client) (out []byte, ok bool) {
	// The bounded walker, not gjson.ValidBytes: a recursive validator
	// overflows the stack on a deeply nested body.
	if len(body) == 0 || body[0] != '{' || !session.ForEachMember(body, func(_, _ []byte) bool { return true }) {
		return body, false
	}
	array, idKey, idPrefix, morePages := "data", "id", "", gjson.GetBytes(body, "has_more").Bool()
	if fam == apifamily.Gemini {
		array, idKey, idPrefix, morePages = "models", "name", "models/", gjson.GetBytes(body, "nextPageToken").String() != ""
	}
	data := gjson.GetBytes(body, array)
	start, end := data.Index, data.Index+len(data.Raw)
	if !data.IsArray() || start <= 0 || end > len(body) || string(body[start:end]) != data.Raw {
		return body, false
	}
	var entries [][]byte
	listed := map[string]bool{}
	data.ForEach(func(_, e gjson.Result) bool {
		id, _ := strings.CutPrefix(e.Get(idKey).String(), idPrefix)
		if client.Allows(id) && servedByAny(creds, id) {
			entries = append(entries, []byte(e.Raw))
			listed[strings.ToLower(id)] = true
		}
		return true
	})
	if !morePages {
		for _, name := range aliasNames(creds) {
			if !listed[strings.ToLower(name)] && client.Allows(name) {
				listed[strings.ToLower(name)] = true
				entries = append(entries, modelEntry(fam, name))
			}
		}
	}
	out = make([]byte, 0, len(body)+64*len(entries))
	out = append(out, body[:start]...)
	out = append(out, '[')
	out = append(out, bytes.Join(entries, []byte{','})...)
	out = append(out, ']')
	return append(out, body[end:]...), true
}

// servedByAny reports whether some credential serves the client-visible model.
func servedByAny(creds []*auth.Auth, model string) bool {
	for _, a := range creds {
		if a.ServesModel(model) {
			return true
		}
	}
	return false
}

// aliasNames returns the model_alias client names of creds, sorted.
func aliasNames(creds []*auth.Auth) []string {
	var names []string
	for _, a := range creds {
		for name := range a.ModelAlias {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// modelEntry is one model of a list in the family's shape.
func modelEntry(fam apifamily.Family, name string) []byte {
	q := quoteJSON(name)
	switch fam {
	case apifamily.Gemini:
		return slices.Concat([]byte(`{"name":`), quoteJSON("models/"+name), []byte(`,"displayName":`), q, []byte(`}`))
	case apifamily.Anthropic:
		return slices.Concat([]byte(`{"type":"model","id":`), q, []byte(`,"display_name":`), q, []byte(`,"created_at":"1970-01-01T00:00:00Z"}`))
	}
	return slices.Concat([]byte(`{"id":`), q, []byte(`,"object":"model","created":0,"owned_by":"llm_proxy"}`))
}

// modelLookup returns the model ID of a request for one model's metadata,
// GET /v1/models/{id} (OpenAI's or Anthropic's) or GET
// /v1beta/models/{model} (Gemini's).
func modelLookup(r *http.Request, route apifamily.Route) (id string, ok bool) {
	if r.Method != http.MethodGet || route.Endpoint != apifamily.EndpointModels {
		return "", false
	}
	prefix := "/v1/models/"
	if route.Family == apifamily.Gemini {
		prefix = "/v1beta/models/"
	}
	id, ok = strings.CutPrefix(r.URL.Path, prefix)
	return id, ok && id != ""
}

// serveModelLookup answers GET /v1/models/{id} without an upstream call
// when it can, and reports whether it did: a client key limited to some
// models gets 403 for a model it may not use (as the list hides it), and a
// model_alias client name of a credential of the route is answered with
// its entry in the family's shape, as the list shows it (the upstream does
// not know the name).
func (p *Proxy) serveModelLookup(w http.ResponseWriter, r *http.Request, route apifamily.Route, client access.Client) bool {
	id, ok := modelLookup(r, route)
	if !ok {
		return false
	}
	if !client.Allows(id) {
		apifamily.WriteError(w, route.Family, http.StatusForbidden, apifamily.KindPermission,
			fmt.Sprintf("this API key may not use model %q", id), 0)
		p.observeClient(client, http.StatusForbidden)
		return true
	}
	for _, name := range aliasNames(p.modelListCreds(route)) {
		if strings.EqualFold(name, id) {
			writeBody(w, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, modelEntry(route.Family, name))
			p.observeClient(client, http.StatusOK)
			return true
		}
	}
	return false
}
