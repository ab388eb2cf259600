package encode

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// keyedHash is KeyedHash / hmac_int64: HMAC-SHA256 under one key, the token being the
// digest's first 8 bytes big-endian (kept as uint64: the signed int64 view is the same
// bits). crypto/hmac keeps the pre-keyed states after the first use, so Reset is cheap.
type keyedHash struct {
	h   hash.Hash
	in  []byte
	sum []byte
}

func newKeyedHash(key []byte) *keyedHash {
	return &keyedHash{h: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

// digest is the full HMAC of data (valid until the next call).
func (k *keyedHash) digest(data []byte) []byte {
	k.h.Reset()
	k.h.Write(data)
	k.sum = k.h.Sum(k.sum[:0])
	return k.sum
}

// token is hmac_int64(key, value) as uint64 bits.
func (k *keyedHash) token(value string) uint64 {
	k.in = append(k.in[:0], value...)
	return binary.BigEndian.Uint64(k.digest(k.in))
}

// mix64 is the splitmix64 finaliser _mix64 (wrapping uint64 arithmetic, as numpy's).
func mix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return x
}

// seedOf is _seed(key, label): hmac_int64 as unsigned.
func seedOf(key []byte, label string) uint64 { return newKeyedHash(key).token(label) }

// chain2 is _chain(a, parts) ^ _chain(b, parts): a match key (or salt) over parts.
func chain2(a, b uint64, parts []uint64) uint64 {
	for _, p := range parts {
		a = mix64(a ^ p)
		b = mix64(b ^ p)
	}
	return a ^ b
}

// tokenCache is a part's cache of value -> token, cleared when it outgrows its bound
// (as IdentityEncoder.part_token; tokens are pure, so the bound only limits memory).
type tokenCache struct {
	h     *keyedHash
	m     map[string]uint64
	limit int
}

func newTokenCache(key []byte, limit int) *tokenCache {
	return &tokenCache{h: newKeyedHash(key), m: make(map[string]uint64), limit: limit}
}

func (c *tokenCache) get(v string) uint64 {
	if t, ok := c.m[v]; ok {
		return t
	}
	if len(c.m) > c.limit {
		clear(c.m)
	}
	t := c.h.token(v)
	c.m[v] = t
	return t
}
