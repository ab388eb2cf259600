package encode

import (
	"encoding/binary"
	"unicode/utf8"

	"joinedup/native/pystr"
)

// maxK is _ClkField._MAX_K: positions drawn per bigram in length-hiding mode.
const maxK = 64

// clkField is _ClkField in length-hiding ("target") mode, the only one scheme v2 uses:
// a value of b distinct bigrams (padded with "_", in order of first occurrence) sets the
// first target/b positions of each bigram (the first target%b bigrams one more; 1..64),
// so every filter has about `target` bits set whatever the value's length. Bit p is
// byte p>>3, most significant bit first (numpy's packbits layout).
type clkField struct {
	h      *keyedHash
	bits   int
	width  int
	target int
	// bigram (two code points, first << 21 | second) -> its 64 positions (mod bits).
	bigrams map[uint64]*[maxK]uint16
	// Per distinct value, its filter (given and family names repeat heavily).
	values     map[string][]byte
	valueLimit int
	grams      []uint64 // scratch
	in         []byte
}

// clkValueLimit is _ClkField._VALUE_LIMIT.
const clkValueLimit = 400_000

func newClkField(key []byte, bits, k, target int) *clkField {
	_ = k // the per-field k only sets `target` in length-hiding mode
	return &clkField{
		h: newKeyedHash(key), bits: bits, width: bits / 8, target: target,
		bigrams: make(map[uint64]*[maxK]uint16), values: make(map[string][]byte),
		valueLimit: clkValueLimit,
	}
}

// positions of one bigram: HMAC(key, counter || bigram) for counters 0..7, each digest
// eight big-endian 32-bit positions, modulo the filter size (_add_bigrams).
func (c *clkField) positions(g uint64) *[maxK]uint16 {
	if p, ok := c.bigrams[g]; ok {
		return p
	}
	p := new([maxK]uint16)
	for block := range maxK / 8 {
		c.in = append(c.in[:0], byte(block))
		c.in = utf8.AppendRune(c.in, rune(g>>21))
		c.in = utf8.AppendRune(c.in, rune(g&0x1FFFFF))
		d := c.h.digest(c.in)
		for j := range 8 {
			p[block*8+j] = uint16(binary.BigEndian.Uint32(d[4*j:]) % uint32(c.bits))
		}
	}
	c.bigrams[g] = p
	return p
}

// fill sets, into f (zeroed, width bytes), the filter of distinct bigrams `grams`
// (_filters_from_ids for one value).
func (c *clkField) fill(f []byte, grams []uint64) {
	b := len(grams)
	if b == 0 {
		return
	}
	base, extra := c.target/b, c.target%b
	for r, g := range grams {
		k := base
		if r < extra {
			k++
		}
		k = min(max(k, 1), maxK)
		p := c.positions(g)
		for _, pos := range p[:k] {
			f[pos>>3] |= 0x80 >> (pos & 7)
		}
	}
}

// addGrams appends to grams the distinct bigrams of one word padded with "_" that are
// not yet in grams (first occurrence order, as _grams / _word_grams).
func addGrams(grams []uint64, word string) []uint64 {
	prev := uint64('_')
	add := func(g uint64) {
		for _, x := range grams {
			if x == g {
				return
			}
		}
		grams = append(grams, g)
	}
	for _, r := range word {
		add(prev<<21 | uint64(r))
		prev = uint64(r)
	}
	add(prev<<21 | '_')
	return grams
}

// value is the filter of one name (value_index + gather): cached per distinct value; the
// returned slice is shared and must not be modified.
func (c *clkField) value(v string) []byte {
	if f, ok := c.values[v]; ok {
		return f
	}
	if len(c.values) >= c.valueLimit {
		clear(c.values)
	}
	c.grams = addGrams(c.grams[:0], v)
	f := make([]byte, c.width)
	c.fill(f, c.grams)
	c.values[v] = f
	return f
}

// words fills f (zeroed) with the filter of a multi-word text (encode_words in
// length-hiding mode): one filter of all its words' distinct bigrams, each word padded,
// words split on Python's whitespace.
func (c *clkField) words(f []byte, text string) {
	c.grams = c.grams[:0]
	start := -1
	for i, r := range text {
		if pystr.IsSpace(r) {
			if start >= 0 {
				c.grams = addGrams(c.grams, text[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		c.grams = addGrams(c.grams, text[start:])
	}
	c.fill(f, c.grams)
}
