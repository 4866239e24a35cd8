package llmproxy

import "net/http"

// serveUI answers GET /llm_proxy/ui, the operator's status page (SPEC
// section 16), and the routes below it. Built by issue 15.
func (a AdminAPI) serveUI(w http.ResponseWriter, r *http.Request, rest string) error {
	return apiError(http.StatusNotFound, "the status page is not built yet")
}
