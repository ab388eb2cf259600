package standardise

import (
	"sort"
	"strings"
	"unicode/utf8"

	"joinedup/native/pystr"
)

// Python's notion of Unicode (upper case, isalnum, isdigit), from the tables in
// pytables.go, because Go's unicode package differs in places (ToUpper has no multi-rune
// mappings such as ß -> SS) and in version. Whitespace, str.strip() and \d are
// joinedup/native/pystr's (IsSpace, Strip, IsBlank, Decimal), shared with the readers;
// pyunicode_test.go checks pystr.Decimal against this file's decimalZeros.

type foldRun struct {
	lo, hi rune
	val    string
}

type runeRange struct{ lo, hi rune }

// upperRune appends Python's str.upper() of one code point.
func upperRune(b []byte, r rune) []byte {
	if r < 0x80 {
		if r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		return append(b, byte(r))
	}
	i := sort.Search(len(upperKeys), func(i int) bool { return upperKeys[i] >= r })
	if i < len(upperKeys) && upperKeys[i] == r {
		return append(b, upperVals[i]...)
	}
	return utf8.AppendRune(b, r)
}

// compactUpper is `"".join(raw.split()).upper()`.
func compactUpper(raw string) string {
	ascii := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c >= utf8.RuneSelf || pystr.IsSpaceByte(c) || (c >= 'a' && c <= 'z') {
			ascii = false
			break
		}
	}
	if ascii {
		return raw
	}
	b := make([]byte, 0, len(raw)+4)
	for _, r := range raw {
		if pystr.IsSpace(r) {
			continue
		}
		b = upperRune(b, r)
	}
	return string(b)
}

// pyUpper is Python's str.upper().
func pyUpper(s string) string {
	b := make([]byte, 0, len(s)+4)
	for _, r := range s {
		b = upperRune(b, r)
	}
	return string(b)
}

func inRanges(rs []runeRange, r rune) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].hi >= r })
	return i < len(rs) && rs[i].lo <= r
}

// isPyAlnum is Python's str.isalnum() (False for the empty string).
func isPyAlnum(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x80 {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		} else if !inRanges(alnumRanges, r) {
			return false
		}
	}
	return true
}

// isPyDigitRune is Python's str.isdigit() for one code point.
func isPyDigitRune(r rune) bool {
	if r < 0x80 {
		return r >= '0' && r <= '9'
	}
	return inRanges(digitRanges, r)
}

// foldValue is the reduced folded, lower-cased form of a non-ASCII code point (see
// foldRuns) and whether it is listed; unlisted code points reduce to "\x00".
func foldValue(r rune) string {
	i := sort.Search(len(foldRuns), func(i int) bool { return foldRuns[i].hi >= r })
	if i < len(foldRuns) && foldRuns[i].lo <= r {
		return foldRuns[i].val
	}
	return "\x00"
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// joinWords is " ".join(words) without the strings.Join call for one word.
func joinWords(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words, " ")
}
