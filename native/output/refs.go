package output

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
)

// RefBytes is the length of a ref before hex encoding (connectors.extract: 12 bytes).
const RefBytes = 12

// Refs mirrors connectors.extract._Refs: ref = HMAC-SHA256(ref key, "source|local id|n")
// truncated to 12 bytes, n counting earlier rows with that local id, so a re-extract in
// the same project gives a record the same ref and nobody without the key can invert it.
// Not safe for concurrent use (the repeat counter is the extract's, in row order).
type Refs struct {
	mac     hash.Hash
	prefix  string
	seen    map[string]int32 // local id -> rows seen before the next one
	msg     []byte
	sum     []byte
	scratch [RefBytes]byte
}

// NewRefs keys the refs of one source's extract.
func NewRefs(key []byte, source string) *Refs {
	return &Refs{
		mac:    hmac.New(sha256.New, key),
		prefix: source + "|",
		seen:   map[string]int32{},
	}
}

// Next is the raw 12-byte ref of the next row with this local id (valid until the next call).
func (r *Refs) Next(localID string) []byte {
	n, ok := r.seen[localID]
	if !ok {
		// Clone: the id may be a slice of a reader's large buffer, which the map would pin.
		r.seen[strings.Clone(localID)] = 1
	} else {
		r.seen[localID] = n + 1
	}
	m := append(r.msg[:0], r.prefix...)
	m = append(m, localID...)
	m = append(m, '|')
	m = strconv.AppendInt(m, int64(n), 10)
	r.msg = m
	r.mac.Reset()
	r.mac.Write(m)
	r.sum = r.mac.Sum(r.sum[:0])
	copy(r.scratch[:], r.sum[:RefBytes])
	return r.scratch[:]
}

// Of returns the hex refs of a batch of local ids (as _Refs.__call__ does).
func (r *Refs) Of(localIDs []string) []string {
	out := make([]string, len(localIDs))
	for i, lid := range localIDs {
		out[i] = hex.EncodeToString(r.Next(lid))
	}
	return out
}
