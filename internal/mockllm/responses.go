package mockllm

import (
	"net/http"
	"strconv"
	"time"
)

// respIDs are the identifiers of one Responses API answer.
type respIDs struct {
	resp, msg string
	created   int64
	model     string
}

// appendResponsesUsage appends a Responses API usage object.
func appendResponsesUsage(b []byte, u *usage) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, u.prompt)
	b = append(b, `,"input_tokens_details":{"cached_tokens":`...)
	b = appendInt(b, u.cached)
	b = append(b, `},"output_tokens":`...)
	b = appendInt(b, u.output)
	b = append(b, `,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":`...)
	b = appendInt(b, u.prompt+u.output)
	return append(b, '}')
}

// appendOutputMessage appends the assistant message output item.
func appendOutputMessage(b []byte, ids *respIDs, rp *reply, done bool) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, ids.msg...)
	if !done {
		return append(b, `","type":"message","status":"in_progress","content":[],"role":"assistant"}`...)
	}
	b = append(b, `","type":"message","status":"completed","content":[`...)
	b = appendOutputText(b, rp.text)
	return append(b, `],"role":"assistant"}`...)
}

// appendOutputText appends an output_text content part.
func appendOutputText(b []byte, text string) []byte {
	b = append(b, `{"type":"output_text","annotations":[],"logprobs":[],"text":"`...)
	b = append(b, text...)
	return append(b, `"}`...)
}

// appendResponse appends a response object; u == nil means in progress.
func appendResponse(b []byte, ids *respIDs, rp *reply, u *usage) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, ids.resp...)
	b = append(b, `","object":"response","created_at":`...)
	b = strconv.AppendInt(b, ids.created, 10)
	if u == nil {
		b = append(b, `,"status":"in_progress"`...)
	} else {
		b = append(b, `,"status":"completed"`...)
	}
	b = append(b, `,"background":false,"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":`...)
	b = appendString(b, ids.model)
	b = append(b, `,"output":[`...)
	if u != nil {
		b = appendOutputMessage(b, ids, rp, true)
	}
	b = append(b, `],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"service_tier":"default","store":false,"temperature":1.0,"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":`...)
	if u == nil {
		b = append(b, "null"...)
	} else {
		b = appendResponsesUsage(b, u)
	}
	return append(b, `,"user":null,"metadata":{}}`...)
}

// responses serves POST /v1/responses and POST /backend-api/codex/responses.
func (c *call) responses() {
	f := parseFields(c.body)
	if f.model == "" {
		c.writeError(http.StatusBadRequest, "Missing required parameter: 'model'.")
		return
	}
	rp := c.s.replyFor(f.model)
	u := c.promptUsage(&f, convResponses, rp.tokens)
	ids := respIDs{
		resp:    newID("resp_", 48),
		msg:     newID("msg_", 48),
		created: time.Now().Unix(),
		model:   f.model,
	}

	if !f.stream {
		bp := getBuf()
		b := appendResponse((*bp)[:0], &ids, rp, &u)
		*bp = b
		c.writeBody(http.StatusOK, b)
		putBuf(bp)
		return
	}

	st := c.startStream(ctSSE)
	defer st.finish()
	seq := 0
	begin := func(name string) {
		st.event(name)
		st.buf = append(st.buf, `{"type":"`...)
		st.buf = append(st.buf, name...)
		st.buf = append(st.buf, `","sequence_number":`...)
		st.buf = appendInt(st.buf, seq)
		seq++
	}
	part := func() {
		st.buf = append(st.buf, `,"item_id":"`...)
		st.buf = append(st.buf, ids.msg...)
		st.buf = append(st.buf, `","output_index":0,"content_index":0`...)
	}

	begin("response.created")
	st.buf = append(st.buf, `,"response":`...)
	st.buf = appendResponse(st.buf, &ids, rp, nil)
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	begin("response.in_progress")
	st.buf = append(st.buf, `,"response":`...)
	st.buf = appendResponse(st.buf, &ids, rp, nil)
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	begin("response.output_item.added")
	st.buf = append(st.buf, `,"output_index":0,"item":`...)
	st.buf = appendOutputMessage(st.buf, &ids, rp, false)
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	begin("response.content_part.added")
	part()
	st.buf = append(st.buf, `,"part":`...)
	st.buf = appendOutputText(st.buf, "")
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	for _, d := range rp.deltas {
		begin("response.output_text.delta")
		part()
		st.buf = append(st.buf, `,"delta":"`...)
		st.buf = append(st.buf, d...)
		st.buf = append(st.buf, `","logprobs":[]}`...)
		if !st.send() {
			return
		}
	}
	begin("response.output_text.done")
	part()
	st.buf = append(st.buf, `,"text":"`...)
	st.buf = append(st.buf, rp.text...)
	st.buf = append(st.buf, `","logprobs":[]}`...)
	if !st.send() {
		return
	}
	begin("response.content_part.done")
	part()
	st.buf = append(st.buf, `,"part":`...)
	st.buf = appendOutputText(st.buf, rp.text)
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	begin("response.output_item.done")
	st.buf = append(st.buf, `,"output_index":0,"item":`...)
	st.buf = appendOutputMessage(st.buf, &ids, rp, true)
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	begin("response.completed")
	st.buf = append(st.buf, `,"response":`...)
	st.buf = appendResponse(st.buf, &ids, rp, &u)
	st.buf = append(st.buf, '}')
	st.send()
}
