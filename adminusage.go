package llmproxy

import "net/http"

// usage answers GET /llm_proxy/pools/<pool>/usage (SPEC section 16).
// Built by issue 15.
func (ps poolAdmin) usage(w http.ResponseWriter, r *http.Request) error {
	return apiError(http.StatusNotImplemented, "usage is not built yet")
}
