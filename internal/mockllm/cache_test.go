package mockllm

import (
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func hashOf(seed maphash.Seed, raw string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	hashRaw(&h, raw)
	return h.Sum64()
}

func TestHashIgnoresCacheControl(t *testing.T) {
	seed := maphash.MakeSeed()
	same := [][2]string{
		{`{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}`, `{"role":"user","content":[{"type":"text","text":"hi"}]}`},
		{`{"cache_control":{"type":"ephemeral","ttl":"1h"},"type":"text","text":"hi"}`, `{"type":"text","text":"hi"}`},
		{`{"type":"text", "cache_control" : {"type":"ephemeral"} ,"text":"hi"}`, `{"type":"text" ,"text":"hi"}`},
		{`[{"text":"a","cache_control":{"t":"}"}},{"text":"b","cache_control":null}]`, `[{"text":"a"},{"text":"b"}]`},
	}
	for _, c := range same {
		if hashOf(seed, c[0]) != hashOf(seed, c[1]) {
			t.Errorf("hash(%s) != hash(%s)", c[0], c[1])
		}
	}
	// "cache_control" inside a string value is content, not a marker.
	different := [][2]string{
		{`{"text":"say \"cache_control\":1"}`, `{"text":"say \"\":1"}`},
		{`{"text":"a"}`, `{"text":"b"}`},
	}
	for _, c := range different {
		if hashOf(seed, c[0]) == hashOf(seed, c[1]) {
			t.Errorf("hash(%s) == hash(%s)", c[0], c[1])
		}
	}
}

func TestPromptCacheLookup(t *testing.T) {
	var p promptCache
	if k := p.lookupAndAdd([]uint64{1}, 10); k != 0 {
		t.Fatalf("empty cache: %d", k)
	}
	if k := p.lookupAndAdd([]uint64{1, 2, 3}, 10); k != 1 {
		t.Fatalf("turn 2: %d", k)
	}
	if k := p.lookupAndAdd([]uint64{1, 2, 3, 4, 5}, 10); k != 3 {
		t.Fatalf("turn 3: %d", k)
	}
	if k := p.lookupAndAdd([]uint64{1, 2, 3, 4, 5}, 10); k != 5 {
		t.Fatalf("replay: %d", k)
	}
	if k := p.lookupAndAdd([]uint64{9, 10}, 10); k != 0 {
		t.Fatalf("other conversation: %d", k)
	}
}

func BenchmarkChatNonStream(b *testing.B) {
	s := New(Options{MaxRecorded: -1})
	body := anthropicTurn(3, true)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", "k1")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkAnthropicStream(b *testing.B) {
	s := New(Options{MaxRecorded: -1})
	body := strings.Replace(anthropicTurn(3, true), "{", `{"stream":true,`, 1)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", "k1")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkPromptUsageLarge(b *testing.B) {
	s := New(Options{MaxRecorded: -1})
	// About 1 MB of conversation, like a long Claude Code session.
	var sb strings.Builder
	sb.WriteString(`{"model":"claude-sonnet-4-5","system":"sys","messages":[`)
	for i := range 200 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"role":"user","content":[{"type":"text","text":"`)
		sb.WriteString(strings.Repeat("lorem ipsum ", 420))
		sb.WriteString(`"}]}`)
	}
	sb.WriteString(`]}`)
	body := sb.String()
	c := &call{s: s, cred: s.cred("k1")}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		f := parseFields(body)
		c.promptUsage(&f, convAnthropic, 10)
	}
}
