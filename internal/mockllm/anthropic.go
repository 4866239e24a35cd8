package mockllm

import "net/http"

// appendAnthropicUsage appends an Anthropic usage object.
func appendAnthropicUsage(b []byte, u *usage, output int) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, u.input)
	b = append(b, `,"cache_creation_input_tokens":`...)
	b = appendInt(b, u.creation)
	b = append(b, `,"cache_read_input_tokens":`...)
	b = appendInt(b, u.cached)
	b = append(b, `,"cache_creation":{"ephemeral_5m_input_tokens":`...)
	b = appendInt(b, u.creation)
	b = append(b, `,"ephemeral_1h_input_tokens":0},"output_tokens":`...)
	b = appendInt(b, output)
	return append(b, `,"service_tier":"standard"}`...)
}

// appendAnthropicMessageHead appends the start of a message object, up to
// and including `"content":`.
func appendAnthropicMessageHead(b []byte, id, model string) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","type":"message","role":"assistant","model":`...)
	b = appendString(b, model)
	return append(b, `,"content":`...)
}

// anthropicMessages serves POST /v1/messages.
func (c *call) anthropicMessages() {
	f := parseFields(c.body)
	if f.model == "" {
		c.writeError(http.StatusBadRequest, "model: Field required")
		return
	}
	rp := c.s.replyFor(f.model)
	u := c.promptUsage(&f, convAnthropic, rp.tokens)
	id := newID("msg_01", 22)

	if !f.stream {
		bp := getBuf()
		b := appendAnthropicMessageHead((*bp)[:0], id, f.model)
		b = append(b, `[{"type":"text","text":"`...)
		b = append(b, rp.text...)
		b = append(b, `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":`...)
		b = appendAnthropicUsage(b, &u, u.output)
		b = append(b, '}')
		*bp = b
		c.writeBody(http.StatusOK, b)
		putBuf(bp)
		return
	}

	st := c.startStream(ctSSE)
	defer st.finish()
	st.event("message_start")
	st.buf = append(st.buf, `{"type":"message_start","message":`...)
	st.buf = appendAnthropicMessageHead(st.buf, id, f.model)
	st.buf = append(st.buf, `[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	st.buf = appendAnthropicUsage(st.buf, &u, 1)
	st.buf = append(st.buf, "}}"...)
	if !st.send() {
		return
	}
	st.event("content_block_start")
	st.buf = append(st.buf, `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`...)
	if !st.send() {
		return
	}
	for _, d := range rp.deltas {
		st.event("content_block_delta")
		st.buf = append(st.buf, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`...)
		st.buf = append(st.buf, d...)
		st.buf = append(st.buf, `"}}`...)
		if !st.send() {
			return
		}
	}
	st.event("content_block_stop")
	st.buf = append(st.buf, `{"type":"content_block_stop","index":0}`...)
	if !st.send() {
		return
	}
	st.event("message_delta")
	st.buf = append(st.buf, `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":`...)
	st.buf = appendAnthropicUsage(st.buf, &u, u.output)
	st.buf = append(st.buf, '}')
	if !st.send() {
		return
	}
	st.event("message_stop")
	st.buf = append(st.buf, `{"type":"message_stop"}`...)
	st.send()
}

// anthropicCountTokens serves POST /v1/messages/count_tokens.
func (c *call) anthropicCountTokens() {
	f := parseFields(c.body)
	if f.model == "" {
		c.writeError(http.StatusBadRequest, "model: Field required")
		return
	}
	bp := getBuf()
	b := append((*bp)[:0], `{"input_tokens":`...)
	b = appendInt(b, countTokens(&f))
	b = append(b, '}')
	*bp = b
	c.writeBody(http.StatusOK, b)
	putBuf(bp)
}
