package encode

import (
	crand "crypto/rand"
	"math"
	"math/rand/v2"
)

// blipper is blip(): each present filter gets Binomial(bits, f) flips at uniform positions
// (a position drawn twice flips back, so the effective rate is about f - f^2/2). It must
// not be reproducible by anyone, so it is seeded from the OS (ChaCha8: a CSPRNG).
type blipper struct {
	rng  *rand.Rand
	logQ float64 // log(1 - f)
	f    float64
}

func newBlipper(f float64) *blipper {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic("encode: no OS randomness for BLIP: " + err.Error())
	}
	return &blipper{rng: rand.New(rand.NewChaCha8(seed)), logQ: math.Log1p(-f), f: f}
}

// binomial draws Binomial(n, f) exactly: the number of successes in n Bernoulli(f)
// trials, found by jumping geometric gaps between successes (about n*f draws, not n).
func (b *blipper) binomial(n int) int {
	count, pos := 0, -1
	for {
		u := b.rng.Float64() // [0, 1): 1-u in (0, 1]
		gap := math.Floor(math.Log(1-u) / b.logQ)
		if gap >= float64(n) {
			return count
		}
		pos += int(gap) + 1
		if pos >= n {
			return count
		}
		count++
	}
}

// flip flips the bits of one filter in place.
func (b *blipper) flip(f []byte) {
	bits := len(f) * 8
	for range b.binomial(bits) {
		p := b.rng.IntN(bits)
		f[p>>3] ^= 0x80 >> (p & 7)
	}
}
