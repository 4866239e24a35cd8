package mockllm

import "net/http"

// geminiModels are listed by GET /v1beta/models.
var geminiModels = []string{"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-embedding-001"}

// appendGeminiUsage appends a Gemini usageMetadata object.
func appendGeminiUsage(b []byte, u *usage) []byte {
	b = append(b, `{"promptTokenCount":`...)
	b = appendInt(b, u.prompt)
	b = append(b, `,"candidatesTokenCount":`...)
	b = appendInt(b, u.output)
	b = append(b, `,"totalTokenCount":`...)
	b = appendInt(b, u.prompt+u.output)
	if u.cached > 0 {
		b = append(b, `,"cachedContentTokenCount":`...)
		b = appendInt(b, u.cached)
	}
	b = append(b, `,"promptTokensDetails":[{"modality":"TEXT","tokenCount":`...)
	b = appendInt(b, u.prompt)
	b = append(b, `}]`...)
	if u.cached > 0 {
		b = append(b, `,"cacheTokensDetails":[{"modality":"TEXT","tokenCount":`...)
		b = appendInt(b, u.cached)
		b = append(b, `}]`...)
	}
	return append(b, '}')
}

// appendGeminiChunk appends a GenerateContentResponse carrying text; with
// u set it is the final one (finishReason and usageMetadata).
func appendGeminiChunk(b []byte, text, model, respID string, u *usage) []byte {
	b = append(b, `{"candidates":[{"content":{"parts":[{"text":"`...)
	b = append(b, text...)
	b = append(b, `"}],"role":"model"}`...)
	if u != nil {
		b = append(b, `,"finishReason":"STOP"`...)
	}
	b = append(b, `,"index":0}]`...)
	if u != nil {
		b = append(b, `,"usageMetadata":`...)
		b = appendGeminiUsage(b, u)
	}
	b = append(b, `,"modelVersion":`...)
	b = appendString(b, model)
	b = append(b, `,"responseId":"`...)
	b = append(b, respID...)
	return append(b, `"}`...)
}

// geminiGenerate serves :generateContent and :streamGenerateContent (SSE
// with ?alt=sse, else a progressively written JSON array).
func (c *call) geminiGenerate(stream bool) {
	f := parseFields(c.body)
	model := c.model
	if len(model) > 7 && model[:7] == "models/" {
		model = model[7:]
	}
	if model == "" {
		c.writeError(http.StatusBadRequest, "model is required")
		return
	}
	if f.messages == "" || f.messages == "[]" {
		c.writeError(http.StatusBadRequest, "* GenerateContentRequest.contents: contents is not specified")
		return
	}
	rp := c.s.replyFor(model)
	u := c.promptUsage(&f, convGemini, rp.tokens)
	respID := newID("", 22)

	if !stream {
		bp := getBuf()
		b := appendGeminiChunk((*bp)[:0], rp.text, model, respID, &u)
		*bp = b
		c.writeBody(http.StatusOK, b)
		putBuf(bp)
		return
	}

	sse := c.r.URL.Query().Get("alt") == "sse"
	ct := ctJSON
	if sse {
		ct = ctSSE
	}
	st := c.startStream(ct)
	defer st.finish()
	for i, d := range rp.deltas {
		last := i == len(rp.deltas)-1
		var up *usage
		if last {
			up = &u
		}
		if sse {
			st.event("")
			st.buf = appendGeminiChunk(st.buf, d, model, respID, up)
			if !st.send() {
				return
			}
			continue
		}
		st.buf = st.buf[:0]
		if i == 0 {
			st.buf = append(st.buf, '[')
		} else {
			st.buf = append(st.buf, ",\r\n"...)
		}
		st.buf = appendGeminiChunk(st.buf, d, model, respID, up)
		if last {
			st.buf = append(st.buf, ']')
		}
		if !st.write() {
			return
		}
	}
}

// geminiCountTokens serves :countTokens.
func (c *call) geminiCountTokens() {
	f := parseFields(c.body)
	n := countTokens(&f)
	bp := getBuf()
	b := append((*bp)[:0], `{"totalTokens":`...)
	b = appendInt(b, n)
	b = append(b, `,"promptTokensDetails":[{"modality":"TEXT","tokenCount":`...)
	b = appendInt(b, n)
	b = append(b, `}]}`...)
	*bp = b
	c.writeBody(http.StatusOK, b)
	putBuf(bp)
}

func appendGeminiModel(b []byte, name string) []byte {
	b = append(b, `{"name":"models/`...)
	b = appendEscaped(b, name)
	b = append(b, `","version":"001","displayName":`...)
	b = appendString(b, name)
	return append(b, `,"inputTokenLimit":1048576,"outputTokenLimit":65536,"supportedGenerationMethods":["generateContent","countTokens"]}`...)
}

// geminiListModels serves GET /v1beta/models.
func (c *call) geminiListModels() {
	bp := getBuf()
	b := append((*bp)[:0], `{"models":[`...)
	for i, m := range geminiModels {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendGeminiModel(b, m)
	}
	b = append(b, `]}`...)
	*bp = b
	c.writeBody(http.StatusOK, b)
	putBuf(bp)
}

// geminiGetModel serves GET /v1beta/models/{model}.
func (c *call) geminiGetModel() {
	bp := getBuf()
	b := appendGeminiModel((*bp)[:0], c.model)
	*bp = b
	c.writeBody(http.StatusOK, b)
	putBuf(bp)
}
