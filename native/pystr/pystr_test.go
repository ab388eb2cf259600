package pystr

import (
	"testing"
	"unicode"
)

// The tables here assume Go's Unicode 15.0.0 (see unicode15): a Go whose unicode package
// moved on needs unicode15 recomputed.
func TestGoUnicodeVersion(t *testing.T) {
	if unicode.Version != "15.0.0" {
		t.Fatalf("Go's unicode is %s: recompute unicode15 against Python 3.11's 14.0.0", unicode.Version)
	}
}

func TestStrip(t *testing.T) {
	for _, tc := range [][2]string{
		{"\x1c\u3000 a b\u00a0\u0085\t", "a b"},
		{" \x1f\u2028\u205f", ""},
		{"\u200b a \u200b", "\u200b a \u200b"}, // U+200B is not whitespace
		{" \xff a \xff ", "\xff a \xff"},       // an undecodable byte is not whitespace
		{" \xed\xa0\x80 ", "\xed\xa0\x80"},     // nor a lone surrogate in WTF-8
		{" \ufffd ", "\ufffd"},
	} {
		if got := Strip(tc[0]); got != tc[1] {
			t.Errorf("Strip(%q) = %q, want %q", tc[0], got, tc[1])
		}
		if got := IsBlank(tc[0]); got != (tc[1] == "") {
			t.Errorf("IsBlank(%q) = %v", tc[0], got)
		}
	}
}

func TestDecimal(t *testing.T) {
	// Python 3.11: int('\u0662') == 2; '\U00011f52'.isdigit() is False and int() of it
	// a ValueError (Kawi, Unicode 15).
	for r, want := range map[rune]int{'7': 7, 'a': -1, 0x0662: 2, 0xff19: 9, 0x1d7ce: 0,
		0x11f52: -1, 0x1e4f3: -1, 0x2460: -1} {
		if got := Decimal(r); got != want {
			t.Errorf("Decimal(%U) = %d, want %d", r, got, want)
		}
	}
}

// TestRepr: the wants are Python 3.11's repr() of the same text (a byte that is not UTF-8
// read with surrogateescape, or held by a JSON parser or SQLite as described by WTF8).
func TestRepr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		inv  Invalid
		want string
	}{
		{"it's", SurrogateEscape, `"it's"`},
		{`it's "x"`, SurrogateEscape, `'it\'s "x"'`},
		{"a\tb\n\x00\x7f\\", SurrogateEscape, `'a\tb\n\x00\x7f\\'`},
		{"é\u00a0\u00ad\u2028\U0001F600\U000E0001", SurrogateEscape, `'é\xa0\xad\u2028` + "\U0001F600" + `\U000e0001'`},
		{"a\xffb", SurrogateEscape, `'a\udcffb'`},
		{"a\xed\xa0\x80", SurrogateEscape, `'a\udced\udca0\udc80'`},
		{"a\xed\xa0\x80", WTF8, `'a\ud800'`},
		{"a\xffé", WTF8, `'a\xffé'`}, // no Python text: the readers' own rendering of a stray byte
		// Unicode 15 additions are unassigned to Python 3.11, so not printable.
		{"\U00011f04\U0001fa75", SurrogateEscape, `'\U00011f04\U0001fa75'`},
		{"\u0cf3", WTF8, `'\u0cf3'`},
	} {
		if got := Repr(tc.in, tc.inv); got != tc.want {
			t.Errorf("Repr(%q, %d) = %s, want %s", tc.in, tc.inv, got, tc.want)
		}
	}
}
