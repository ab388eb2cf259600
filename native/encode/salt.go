package encode

import (
	"encoding/binary"
	"slices"
	"sort"
)

// saltedPermutation is SaltedPermutation: per salt, two keyed byte stages (a byte
// permutation, and for each output byte one of 256 keyed 8-bit permutations) around the
// fixed transposeWords. Each salt's tables are drawn once and kept (bounded).
type saltedPermutation struct {
	width int
	// luts[j<<8|v]: byte v through 8-bit permutation j.
	luts [256 * 256]byte
	// Per stage: the odd constants of the byte order and the constants of the LUT choice.
	permConsts, lutConsts [2][]uint64
	index                 map[uint64]int32 // salt -> its row in tables
	// Per salt, 2 x width entries: for each output byte of stage 0 then stage 1, its LUT
	// number << 8 | its source byte (one load per byte in apply).
	tables []uint16
	limit  int
	// Scratch of one table build and one apply (256-byte arrays: byte indexes need no
	// bounds checks).
	keys     []uint64
	sorted   []uint64
	perm     []int
	inv, lut []byte
	in, tmp  [256]byte
}

// saltBudget bounds the memory of the salts' tables (4 x width bytes each: 512 B at 1024
// bits, so 131,072 salts; Python keeps up to 600,000 per encoder). When full, the tables
// are dropped and rebuilt as salts come back: that costs time, never a different output.
const saltBudget = 64 << 20

func newSaltedPermutation(key []byte, width int) *saltedPermutation {
	seed := newKeyedHash(key).digest([]byte("bit-permutations"))
	rng := newNumpyRNG(seed)
	s := &saltedPermutation{width: width, limit: saltBudget / (4 * width)}
	for j := range 256 {
		p := rng.permutation(8)
		// packbits(byte_bits[:, p]): output bit i (MSB first) is input bit p[i] (MSB first).
		for v := range 256 {
			var out byte
			for i, src := range p {
				if v&(0x80>>src) != 0 {
					out |= 0x80 >> i
				}
			}
			s.luts[j<<8|v] = out
		}
	}
	for stage := range 2 {
		s.permConsts[stage] = make([]uint64, width)
		s.lutConsts[stage] = make([]uint64, width)
		for i := range width {
			s.permConsts[stage][i] = rng.below2p63()*2 + 1
		}
		for i := range width {
			s.lutConsts[stage][i] = rng.below2p63() * 2
		}
	}
	s.index = make(map[uint64]int32)
	s.keys = make([]uint64, width)
	s.sorted = make([]uint64, width)
	s.perm = make([]int, width)
	s.inv = make([]byte, width)
	s.lut = make([]byte, width)
	return s
}

// row returns the tables of one salt (2 x width entries), building them if new. The slice
// is valid until the next call.
func (s *saltedPermutation) row(salt uint64) []uint16 {
	size := 2 * s.width
	if r, ok := s.index[salt]; ok {
		off := int(r) * size
		return s.tables[off : off+size : off+size]
	}
	if len(s.index) >= s.limit {
		clear(s.index)
		s.tables = s.tables[:0]
	}
	r := len(s.index)
	s.index[salt] = int32(r)
	s.tables = slices.Grow(s.tables, size)[:(r+1)*size]
	t := s.tables[r*size : (r+1)*size : (r+1)*size]
	for stage := range 2 {
		s.stageTables(salt, stage, s.inv, s.lut)
		for q, src := range s.inv {
			t[stage*s.width+q] = uint16(s.lut[q])<<8 | uint16(src)
		}
	}
	return t
}

// stageTables is _stage_tables for one salt: perm = argsort(mix64(salt ^ permConsts)),
// stored by destination (byte q of the output is source byte inv[q] through LUT
// lut[inv[q]]). The keys are distinct (mix64 is a bijection, the constants distinct), so
// any sort gives numpy's argsort. They are uniform, so a bucket pass on the top byte and
// an insertion sort of the nearly sorted result is the fast sort; the byte index rides in
// the low byte of each key, and a full sort on the whole keys is the fallback when two
// keys share their top 56 bits (never seen: odds about w^2 / 2^57).
func (s *saltedPermutation) stageTables(salt uint64, stage int, inv, lutOut []byte) {
	w := s.width
	pc, lc := s.permConsts[stage], s.lutConsts[stage]
	keys, sorted := s.keys[:w], s.sorted[:w]
	var counts [257]int32
	for j := range keys {
		k := mix64(salt^pc[j])&^0xFF | uint64(j)
		keys[j] = k
		counts[k>>56+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	for _, k := range keys {
		b := k >> 56
		sorted[counts[b]] = k
		counts[b]++
	}
	for i := 1; i < w; i++ {
		k := sorted[i]
		j := i
		for ; j > 0 && sorted[j-1] > k; j-- {
			sorted[j] = sorted[j-1]
		}
		sorted[j] = k
	}
	perm := s.perm[:w]
	exact := true
	for i, k := range sorted {
		perm[i] = int(k & 0xFF)
		if i > 0 && k>>8 == sorted[i-1]>>8 {
			exact = false
		}
	}
	if !exact {
		for j := range w {
			keys[j] = mix64(salt ^ pc[j])
			perm[j] = j
		}
		sort.Slice(perm, func(a, b int) bool { return keys[perm[a]] < keys[perm[b]] })
	}
	// inv[perm[i]] = i; lutOut[q] = lut[inv[q]].
	for i, p := range perm {
		inv[p] = byte(i)
	}
	for q := range w {
		lutOut[q] = byte(mix64(salt^lc[inv[q]]) >> 56)
	}
}

// apply moves one filter (width bytes) by a salt's tables into out: byte stage 0,
// transposeWords, byte stage 1.
func (s *saltedPermutation) apply(t []uint16, in, out []byte) {
	w := s.width
	stage0, stage1 := t[:w], t[w:2*w]
	src, tmp, luts := &s.in, &s.tmp, &s.luts
	copy(src[:], in[:w])
	for q, e := range stage0 {
		tmp[byte(q)] = luts[e&0xFF00|uint16(src[byte(e)])]
	}
	transposeWords(tmp[:w])
	out = out[:w]
	for q, e := range stage1 {
		out[q] = luts[e&0xFF00|uint16(tmp[byte(e)])]
	}
}

// transposeWords is transpose_words on one filter: each 8-byte word as an 8 x 8 bit
// matrix (big-endian, bits most significant first) transposed by three delta swaps.
func transposeWords(f []byte) {
	for i := 0; i+8 <= len(f); i += 8 {
		x := binary.BigEndian.Uint64(f[i:])
		t := (x ^ (x >> 7)) & 0x00AA00AA00AA00AA
		x ^= t ^ (t << 7)
		t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCC
		x ^= t ^ (t << 14)
		t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0
		x ^= t ^ (t << 28)
		binary.BigEndian.PutUint64(f[i:], x)
	}
}
