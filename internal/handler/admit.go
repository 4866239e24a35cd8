package handler

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

// admit checks the client key against the access providers, in order, and
// sets {http.auth.user.id} to the matched key's label. Without providers
// every client is admitted to every model. A refused client gets 401 in
// its API's shape and ok is false.
func (p *Proxy) admit(w http.ResponseWriter, r *http.Request, fam apifamily.Family) (client access.Client, ok bool) {
	if len(p.Access) == 0 {
		return access.Client{}, true
	}
	key := auth.ClientKey(r)
	msg := "missing API key"
	if key != "" {
		msg = "invalid API key"
		for _, ap := range p.Access {
			client, err := access.Authenticate(ap, key)
			if err == nil {
				if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
					repl.Set("http.auth.user.id", client.Label)
				}
				return client, true
			}
		}
	}
	apifamily.WriteError(w, fam, http.StatusUnauthorized, apifamily.KindAuthentication, msg, 0)
	return access.Client{}, false
}

// permitted checks a parsed request against the models its client may use
// and answers 403 in the client's API shape, before any upstream call,
// when the client may not send it. A client limited to some models:
//   - may send requests that name no model and run none (the model list,
//     stored responses);
//   - must name an allowed model in every generation request (a body
//     without a model would let the upstream pick one);
//   - may not use Anthropic message batches, whose requests each name a
//     model of their own.
func permitted(w http.ResponseWriter, r *http.Request, req *parsed, client access.Client) bool {
	if len(client.Models) == 0 {
		return true
	}
	fam := req.route.Family
	var msg string
	switch {
	case fam == apifamily.Anthropic && strings.HasPrefix(r.URL.Path, "/v1/messages/batches"):
		msg = "message batches are not available to this API key, which is limited to some models"
	case req.model != "" && !client.Allows(req.model):
		msg = fmt.Sprintf("this API key may not use model %q", req.model)
	case req.model == "" && req.route.Generation:
		msg = "this API key is limited to some models: name one in the request"
	default:
		return true
	}
	apifamily.WriteError(w, fam, http.StatusForbidden, apifamily.KindPermission, msg, 0)
	return false
}

// ClientObserver is an Observer that also counts requests per client: the
// label of the key that was admitted.
type ClientObserver interface {
	// ClientRequest is called once per request of a labelled client that
	// reached credential selection or was refused for its model (403).
	ClientRequest(pool, client string, status int)
}

// observeClient reports a request of client to the Observer, when it
// counts clients and access is configured.
func (p *Proxy) observeClient(client access.Client, status int) {
	if co, ok := p.Observer.(ClientObserver); ok && client.Label != "" {
		co.ClientRequest(p.Pool.Name(), client.Label, status)
	}
}
