package standardise

import (
	"sort"
	"testing"
	"unicode"

	"joinedup/native/pystr"
)

// TestDecimalMatchesPythonTable: pystr.Decimal (Go's Nd table without the digits Unicode
// 15 added) gives, for every code point, the value Python 3.11's unicodedata gives, as
// written to decimalZeros by gen_standardise.py.
func TestDecimalMatchesPythonTable(t *testing.T) {
	python := func(r rune) int {
		if r < 0x80 {
			if r >= '0' && r <= '9' {
				return int(r - '0')
			}
			return -1
		}
		i := sort.Search(len(decimalZeros), func(i int) bool { return decimalZeros[i] > r })
		if i > 0 && r-decimalZeros[i-1] <= 9 {
			return int(r - decimalZeros[i-1])
		}
		return -1
	}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if got, want := pystr.Decimal(r), python(r); got != want {
			t.Fatalf("pystr.Decimal(%U) = %d, Python 3.11 %d", r, got, want)
		}
	}
}
