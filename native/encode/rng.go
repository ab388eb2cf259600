package encode

import "math/bits"

// numpyRNG reproduces np.random.default_rng(seed) for a non-negative integer seed
// (SeedSequence -> PCG64, XSL-RR output) and the few draws SaltedPermutation makes:
// Generator.permutation(n) and Generator.integers(0, 2**63, dtype=uint64). The permutation
// tables of every salt derive from these draws, so they must match numpy's bit for bit.
type numpyRNG struct {
	stHi, stLo   uint64 // 128-bit LCG state
	incHi, incLo uint64
	hasU32       bool // numpy buffers the high half of a 64-bit draw for the next 32-bit one
	u32          uint32
}

const (
	pcgMulHi = 0x2360ED051FC65DA4
	pcgMulLo = 0x4385DF649FCCF645
)

// seedSequenceState is numpy SeedSequence(entropy).generate_state(4, np.uint64), the
// entropy given as little-endian 32-bit words (numpy's _int_to_uint32_array).
func seedSequenceState(entropy []uint32) [4]uint64 {
	const (
		initA, multA = 0x43b0d7e5, 0x931e8875
		initB, multB = 0x8b51f9dd, 0x58f38ded
		mixL, mixR   = 0xca01f9dd, 0x4973f715
	)
	hc := uint32(initA)
	hashmix := func(v uint32) uint32 {
		v ^= hc
		hc *= multA
		v *= hc
		v ^= v >> 16
		return v
	}
	mix := func(x, y uint32) uint32 {
		r := mixL*x - mixR*y
		r ^= r >> 16
		return r
	}
	var pool [4]uint32
	for i := range pool {
		var v uint32
		if i < len(entropy) {
			v = entropy[i]
		}
		pool[i] = hashmix(v)
	}
	for s := range pool {
		for d := range pool {
			if s != d {
				pool[d] = mix(pool[d], hashmix(pool[s]))
			}
		}
	}
	for s := len(pool); s < len(entropy); s++ {
		for d := range pool {
			pool[d] = mix(pool[d], hashmix(entropy[s]))
		}
	}
	hb := uint32(initB)
	var words [8]uint32
	for i := range words {
		v := pool[i%4]
		v ^= hb
		hb *= multB
		v *= hb
		v ^= v >> 16
		words[i] = v
	}
	var out [4]uint64
	for i := range out {
		out[i] = uint64(words[2*i]) | uint64(words[2*i+1])<<32
	}
	return out
}

// newNumpyRNG is np.random.default_rng(int.from_bytes(seed, "big")).
func newNumpyRNG(seedBE []byte) *numpyRNG {
	// The integer as little-endian 32-bit words, without high zero words ([0] for zero).
	var ent []uint32
	for end := len(seedBE); end > 0; end -= 4 {
		start := max(end-4, 0)
		var w uint32
		for _, b := range seedBE[start:end] {
			w = w<<8 | uint32(b)
		}
		ent = append(ent, w)
	}
	for len(ent) > 1 && ent[len(ent)-1] == 0 {
		ent = ent[:len(ent)-1]
	}
	if len(ent) == 0 {
		ent = []uint32{0}
	}
	st := seedSequenceState(ent)
	r := &numpyRNG{}
	// pcg_setseq_128_srandom_r(state = (st[0], st[1]), seq = (st[2], st[3]))
	seqHi, seqLo := st[2], st[3]
	r.incHi = seqHi<<1 | seqLo>>63
	r.incLo = seqLo<<1 | 1
	r.step()
	var c uint64
	r.stLo, c = bits.Add64(r.stLo, st[1], 0)
	r.stHi, _ = bits.Add64(r.stHi, st[0], c)
	r.step()
	return r
}

func (r *numpyRNG) step() {
	hi, lo := bits.Mul64(r.stLo, pcgMulLo)
	hi += r.stHi*pcgMulLo + r.stLo*pcgMulHi
	var c uint64
	r.stLo, c = bits.Add64(lo, r.incLo, 0)
	r.stHi, _ = bits.Add64(hi, r.incHi, c)
}

func (r *numpyRNG) next64() uint64 {
	r.step()
	x := r.stHi ^ r.stLo
	return bits.RotateLeft64(x, -int(r.stHi>>58))
}

func (r *numpyRNG) next32() uint32 {
	if r.hasU32 {
		r.hasU32 = false
		return r.u32
	}
	x := r.next64()
	r.hasU32, r.u32 = true, uint32(x>>32)
	return uint32(x)
}

// interval is numpy's random_interval: uniform in [0, max] by masked rejection.
func (r *numpyRNG) interval(maxV uint64) uint64 {
	if maxV == 0 {
		return 0
	}
	mask := maxV
	for _, s := range []uint{1, 2, 4, 8, 16, 32} {
		mask |= mask >> s
	}
	if maxV <= 0xffffffff {
		for {
			if v := uint64(r.next32()) & mask; v <= maxV {
				return v
			}
		}
	}
	for {
		if v := r.next64() & mask; v <= maxV {
			return v
		}
	}
}

// permutation is Generator.permutation(n): a Fisher-Yates shuffle of arange(n).
func (r *numpyRNG) permutation(n int) []int {
	a := make([]int, n)
	for i := range a {
		a[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.interval(uint64(i))
		a[i], a[j] = a[j], a[i]
	}
	return a
}

// below2p63 is Generator.integers(0, 2**63, dtype=np.uint64) for one value: numpy's
// Lemire draw with an exclusive bound of 2**63 never rejects and is the draw >> 1.
func (r *numpyRNG) below2p63() uint64 { return r.next64() >> 1 }
