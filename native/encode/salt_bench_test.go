package encode

import "testing"

// BenchmarkSaltTables: building one new salt's tables (both stages), per salt.
func BenchmarkSaltTables(b *testing.B) {
	s := newSaltedPermutation([]byte("k"), 128)
	salt := uint64(1)
	for b.Loop() {
		salt = mix64(salt)
		s.row(salt)
	}
}

// BenchmarkSaltApply: one filter through a cached salt's permutation.
func BenchmarkSaltApply(b *testing.B) {
	s := newSaltedPermutation([]byte("k"), 128)
	t := s.row(7)
	in, out := make([]byte, 128), make([]byte, 128)
	for i := range in {
		in[i] = byte(i * 37)
	}
	for b.Loop() {
		s.apply(t, in, out)
	}
}

// The bucket sort of stageTables gives numpy's argsort of the full keys.
func TestStageTablesSort(t *testing.T) {
	for _, width := range []int{8, 64, 128, 256} {
		s := newSaltedPermutation([]byte("k"), width)
		inv, lut := make([]byte, width), make([]byte, width)
		for salt := uint64(0); salt < 300; salt++ {
			x := mix64(salt * 0x9E3779B97F4A7C15)
			s.stageTables(x, int(salt%2), inv, lut)
			pc := s.permConsts[salt%2]
			// inv[j] is the rank of key j (inv[argsort[i]] = i).
			perm := make([]int, width)
			for j, r := range inv {
				perm[r] = j
			}
			for i := 1; i < width; i++ {
				if mix64(x^pc[perm[i-1]]) >= mix64(x^pc[perm[i]]) {
					t.Fatalf("width %d salt %d: not sorted at %d", width, salt, i)
				}
			}
			seen := map[byte]bool{}
			for q, src := range inv {
				seen[src] = true
				if lut[q] != byte(mix64(x^s.lutConsts[salt%2][src])>>56) {
					t.Fatalf("width %d: lut %d", width, q)
				}
			}
			if len(seen) != width {
				t.Fatalf("width %d: not a permutation", width)
			}
		}
	}
}
