package mockllm

import (
	"hash/maphash"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
)

// The prompt-cache simulation works on conversation prefixes. A request's
// conversation is a preamble (system prompt, instructions, leading
// system/developer messages) followed by items (messages, contents, input
// items). Prefix i is the preamble plus items[0..i]; its hash is computed
// incrementally over the raw item JSON with hash/maphash (a seeded,
// allocation-free, much faster stand-in for FNV-64 here). "cache_control"
// members are left out of the hash, because clients such as Claude Code move
// those markers from message to message between turns while the content
// (what a provider really caches) stays the same.
//
// Each credential remembers the hashes of every prefix it has served. A new
// request's cached part is its longest remembered prefix; at least one item
// must match, so a shared system prompt alone never counts as a hit.

// promptCache is one credential's set of served prefix hashes, bounded with
// first-in first-out eviction.
type promptCache struct {
	mu    sync.Mutex
	set   map[uint64]struct{}
	order []uint64
	next  int
}

// lookupAndAdd returns the length of the longest prefix of hashes that was
// seen before, then remembers all of them.
func (p *promptCache) lookupAndAdd(hashes []uint64, limit int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		p.set = make(map[uint64]struct{})
	}
	k := 0
	for i := len(hashes) - 1; i >= 0; i-- {
		if _, ok := p.set[hashes[i]]; ok {
			k = i + 1
			break
		}
	}
	for _, h := range hashes[k:] {
		if _, ok := p.set[h]; ok {
			continue
		}
		if len(p.order) < limit {
			p.order = append(p.order, h)
		} else {
			delete(p.set, p.order[p.next])
			p.order[p.next] = h
			p.next = (p.next + 1) % limit
		}
		p.set[h] = struct{}{}
	}
	return k
}

// usage is the token accounting of one request.
type usage struct {
	prompt   int // all prompt tokens
	cached   int // read from the simulated cache
	creation int // written to the cache
	input    int // neither read nor written (the new message)
	output   int
}

// conv accumulates the prefix hashes and sizes of one conversation.
type conv struct {
	h        maphash.Hash
	preBytes int
	hashes   []uint64
	cum      []int // cumulative item bytes
}

var convPool = sync.Pool{New: func() any { return new(conv) }}

func (cv *conv) addPre(raw string) {
	if raw == "" || raw == "null" {
		return
	}
	hashRaw(&cv.h, raw)
	_ = cv.h.WriteByte(0x1e)
	cv.preBytes += len(raw)
}

func (cv *conv) addItem(raw string) {
	hashRaw(&cv.h, raw)
	_ = cv.h.WriteByte(0x1f)
	cv.hashes = append(cv.hashes, cv.h.Sum64())
	prev := 0
	if n := len(cv.cum); n > 0 {
		prev = cv.cum[n-1]
	}
	cv.cum = append(cv.cum, prev+len(raw))
}

// addItems adds the elements of a JSON array (or a single non-array value
// as one item). With leadingSystem, leading elements whose role is system or
// developer go to the preamble.
func (cv *conv) addItems(raw string, leadingSystem bool) {
	if raw == "" || raw == "null" {
		return
	}
	if raw[0] != '[' {
		cv.addItem(raw)
		return
	}
	leading := leadingSystem
	gjson.Parse(raw).ForEach(func(_, v gjson.Result) bool {
		if leading {
			if role := v.Get("role").Str; role == "system" || role == "developer" {
				cv.addPre(v.Raw)
				return true
			}
			leading = false
		}
		cv.addItem(v.Raw)
		return true
	})
}

// convKind selects how a request's conversation is laid out.
type convKind uint8

const (
	convAnthropic convKind = iota // system + messages
	convChat                      // messages, leading system/developer messages as preamble
	convResponses                 // instructions + input
	convGemini                    // systemInstruction + contents
)

// tokens estimates the tokens of n bytes of JSON (about 4 bytes a token).
func tokens(n int) int {
	if n <= 0 {
		return 0
	}
	return (n + 3) / 4
}

// promptUsage runs the prompt-cache simulation for a generation request on
// c's credential, updates the credential's stats and returns the usage.
func (c *call) promptUsage(f *reqFields, kind convKind, output int) usage {
	cv := convPool.Get().(*conv)
	cv.h.SetSeed(c.s.seed)
	cv.preBytes = 0
	cv.hashes = cv.hashes[:0]
	cv.cum = cv.cum[:0]
	switch kind {
	case convAnthropic, convGemini:
		cv.addPre(f.system)
		cv.addItems(f.messages, false)
	case convChat:
		cv.addItems(f.messages, true)
	case convResponses:
		cv.addPre(f.instructions)
		cv.addItems(f.input, true)
	}

	n := len(cv.hashes)
	itemBytes := 0
	if n > 0 {
		itemBytes = cv.cum[n-1]
	}
	u := usage{prompt: max(1, tokens(cv.preBytes+itemBytes)), output: output}
	k := 0
	if n > 0 {
		k = cv.cache(c)
	}
	if k > 0 {
		u.cached = min(u.prompt, tokens(cv.preBytes+cv.cum[k-1]))
	}
	last := 0
	if k < n {
		last = cv.cum[n-1]
		if n > 1 {
			last -= cv.cum[n-2]
		}
	}
	u.input = min(u.prompt-u.cached, tokens(last))
	u.creation = u.prompt - u.cached - u.input
	if len(cv.hashes) <= 1<<12 {
		convPool.Put(cv)
	}

	st := c.cred
	if n > 1 {
		st.eligible.Add(1)
		if k > 0 {
			st.hits.Add(1)
		}
	}
	st.input.Add(int64(u.prompt))
	st.cacheRead.Add(int64(u.cached))
	st.cacheCreate.Add(int64(u.creation))
	st.output.Add(int64(output))
	return u
}

func (cv *conv) cache(c *call) int {
	return c.cred.cache.lookupAndAdd(cv.hashes, c.s.cacheEntries)
}

// countTokens estimates the prompt tokens of a request without touching the
// simulated cache.
func countTokens(f *reqFields) int {
	return max(1, tokens(len(f.system)+len(f.messages)+len(f.instructions)+len(f.input)+len(f.prompt)))
}

const cacheControlKey = `"cache_control"`

// hashRaw feeds raw JSON to h, leaving out "cache_control" object members.
func hashRaw(h *maphash.Hash, raw string) {
	for {
		lo, hi := findCacheControl(raw)
		if lo < 0 {
			_, _ = h.WriteString(raw)
			return
		}
		_, _ = h.WriteString(raw[:lo])
		raw = raw[hi:]
	}
}

// findCacheControl returns the span of the first "cache_control" member of
// an object in raw (with the comma that separates it from its neighbours),
// or -1, -1. A quote inside a JSON string is always escaped, so a key is
// recognised by the ',' or '{' before it and the ':' after it.
func findCacheControl(raw string) (int, int) {
	off := 0
	for {
		j := strings.Index(raw[off:], cacheControlKey)
		if j < 0 {
			return -1, -1
		}
		k := off + j
		off = k + len(cacheControlKey)
		p := k - 1
		for p >= 0 && isSpace(raw[p]) {
			p--
		}
		if p < 0 || (raw[p] != ',' && raw[p] != '{') {
			continue
		}
		q := skipSpace(raw, off)
		if q >= len(raw) || raw[q] != ':' {
			continue
		}
		end := skipValue(raw, skipSpace(raw, q+1))
		if end < 0 {
			return -1, -1
		}
		if raw[p] == ',' {
			return p, end
		}
		e := skipSpace(raw, end)
		if e < len(raw) && raw[e] == ',' {
			return k, skipSpace(raw, e+1)
		}
		return k, end
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at s[i],
// or -1 if it is malformed.
func skipValue(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				i = skipString(s, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		for i < len(s) {
			switch s[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the index just past the JSON string starting at s[i].
func skipString(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}
