package mockllm

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// faultRequest is the JSON body of POST /_mock/faults. Delay is a Go
// duration string ("250ms") or a number of milliseconds.
type faultRequest struct {
	Key             string            `json:"key"`
	Status          int               `json:"status"`
	Headers         map[string]string `json:"headers"`
	Body            string            `json:"body"`
	Delay           json.RawMessage   `json:"delay"`
	DelayMS         int64             `json:"delay_ms"`
	Times           int               `json:"times"`
	DropAfterEvents int               `json:"drop_after_events"`
	Refuse          bool              `json:"refuse"`
	RevokedKey      bool              `json:"revoked_key"`
	StreamError     string            `json:"stream_error"`
	StreamAfter     int               `json:"stream_error_after"`
	StreamResetsIn  int               `json:"stream_resets_in"`
}

func (fr *faultRequest) fault() (Fault, error) {
	f := Fault{
		Status:           fr.Status,
		Headers:          fr.Headers,
		Body:             fr.Body,
		Delay:            time.Duration(fr.DelayMS) * time.Millisecond,
		Times:            fr.Times,
		DropAfterEvents:  fr.DropAfterEvents,
		Refuse:           fr.Refuse,
		RevokedKey:       fr.RevokedKey,
		StreamError:      fr.StreamError,
		StreamErrorAfter: fr.StreamAfter,
		StreamResetsIn:   fr.StreamResetsIn,
	}
	if len(fr.Delay) > 0 && string(fr.Delay) != "null" {
		var s string
		if err := json.Unmarshal(fr.Delay, &s); err == nil {
			d, err := time.ParseDuration(s)
			if err != nil {
				return f, err
			}
			f.Delay = d
		} else {
			ms, err := strconv.ParseFloat(string(fr.Delay), 64)
			if err != nil {
				return f, err
			}
			f.Delay = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return f, nil
}

// faultJSON is how GET /_mock/faults shows a fault.
type faultJSON struct {
	Fault
	Delay string `json:"delay,omitempty"`
}

// serveControl serves the /_mock/ endpoints:
//
//	GET    /_mock/requests  recorded requests (JSON array, oldest first)
//	POST   /_mock/reset     forget requests, stats and prompt caches
//	GET    /_mock/stats     per-credential stats (JSON object by label)
//	GET    /_mock/faults    configured faults (JSON object by key)
//	POST   /_mock/faults    set a fault: {"key": "...", "status": 429, ...}
//	DELETE /_mock/faults    clear all faults (?key=K: only K's)
//	GET    /_mock/health    liveness
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_mock/health":
		writeControlJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case "/_mock/requests":
		if r.Method == http.MethodGet {
			writeControlJSON(w, http.StatusOK, s.Requests())
			return
		}
	case "/_mock/reset":
		if r.Method == http.MethodPost {
			s.Reset()
			w.WriteHeader(http.StatusNoContent)
			return
		}
	case "/_mock/stats":
		if r.Method == http.MethodGet {
			writeControlJSON(w, http.StatusOK, s.Stats())
			return
		}
	case "/_mock/faults":
		switch r.Method {
		case http.MethodGet:
			out := make(map[string]faultJSON)
			for k, f := range s.Faults() {
				fj := faultJSON{Fault: f}
				if f.Delay > 0 {
					fj.Delay = f.Delay.String()
				}
				out[k] = fj
			}
			writeControlJSON(w, http.StatusOK, out)
			return
		case http.MethodPost:
			var fr faultRequest
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err == nil {
				err = json.Unmarshal(body, &fr)
			}
			var f Fault
			if err == nil {
				f, err = fr.fault()
			}
			if err == nil && fr.Key == "" {
				err = mockError(`"key" is required (a credential key, a label or "*")`)
			}
			if err != nil {
				writeControlJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			s.SetFault(fr.Key, f)
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodDelete:
			if k := r.URL.Query().Get("key"); k != "" {
				s.ClearFault(k)
			} else {
				s.ClearFaults()
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
	default:
		writeControlJSON(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint"})
		return
	}
	writeControlJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
}

func writeControlJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encoding failed"}`)
	}
	w.Header()["Content-Type"] = ctJSON
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
