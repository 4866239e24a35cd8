// Package stablehash holds the hashes whose values must be the same in
// every process, on every machine and with every Go version: rendezvous
// picks (Caddy instances agree on a session's credential without talking)
// and message-hash session IDs (a conversation keeps its ID across
// restarts). They are never seeded; hashes that need not agree across
// processes use hash/maphash instead.
package stablehash

// FNV is the state of a 64-bit FNV-1a hash. Start from Offset, add bytes,
// and read the hash as uint64(h).
type FNV uint64

// Offset is the FNV-1a offset basis: the state of an empty input.
const Offset FNV = 14695981039346656037

const prime = 1099511628211

// Add hashes b into the state.
func (h *FNV) Add(b []byte) {
	x := uint64(*h)
	for _, c := range b {
		x ^= uint64(c)
		x *= prime
	}
	*h = FNV(x)
}

// AddByte hashes one byte into the state.
func (h *FNV) AddByte(c byte) {
	*h = FNV((uint64(*h) ^ uint64(c)) * prime)
}

// String returns the 64-bit FNV-1a hash of s.
func String(s string) uint64 {
	x := uint64(Offset)
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= prime
	}
	return x
}

// Mix is the SplitMix64 finaliser: a bijection on uint64 in which every
// input bit affects every output bit. It spreads FNV-1a's weak low bits
// and combines two hashes into one.
func Mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
