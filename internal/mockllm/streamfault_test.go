package mockllm

import (
	"strings"
	"testing"
)

func TestFaultStreamError(t *testing.T) {
	s, ts := newTest(t, Options{Keys: map[string]string{"sk-1": "one"}})
	stream := strings.Replace(anthropicBody, `"messages"`, `"stream":true,"messages"`, 1)

	s.SetFault("sk-1", Fault{StreamError: StreamOverloaded, StreamErrorAfter: 1, Times: 1})
	ev := readSSE(t, do(t, "POST", ts.URL+"/v1/messages", stream, "x-api-key: sk-1"))
	if got := strings.Join(names(ev), ","); got != "message_start,error" || get(decode(t, ev[1].data), "error", "type") != "overloaded_error" {
		t.Fatalf("events %s: %+v", got, ev)
	}
	s.SetFault("sk-1", Fault{StreamError: StreamRateLimit, Times: 1})
	ev = readSSE(t, do(t, "POST", ts.URL+"/v1/messages", stream, "x-api-key: sk-1"))
	if len(ev) != 1 || get(decode(t, ev[0].data), "error", "type") != "rate_limit_error" {
		t.Fatalf("events %+v", ev)
	}

	responses := `{"model":"gpt-5-codex","input":"hi","stream":true}`
	s.SetFault("sk-1", Fault{StreamError: StreamUsageLimit, StreamErrorAfter: 2, StreamResetsIn: 90, Times: 1})
	ev = readSSE(t, do(t, "POST", ts.URL+"/v1/responses", responses, "Authorization: Bearer sk-1"))
	if got := strings.Join(names(ev), ","); got != "response.created,response.in_progress,response.failed" {
		t.Fatalf("events %s", got)
	}
	failed := decode(t, ev[2].data)
	if get(failed, "response", "error", "code") != "usage_limit_reached" || num(get(failed, "response", "error", "resets_in_seconds")) != 90 {
		t.Fatalf("response.failed %v", failed)
	}
	// The fault was used up: the next stream is whole.
	ev = readSSE(t, do(t, "POST", ts.URL+"/v1/responses", responses, "Authorization: Bearer sk-1"))
	if names(ev)[len(ev)-1] != "response.completed" {
		t.Fatalf("events %v", names(ev))
	}
}
