package standardise

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// Python's notion of Unicode (whitespace, upper case, isalnum, isdigit, \d), from the
// tables in pytables.go, because Go's unicode package differs in places (its IsSpace
// lacks \x1c-\x1f, ToUpper has no multi-rune mappings such as ß -> SS) and in version.

type foldRun struct {
	lo, hi rune
	val    string
}

type runeRange struct{ lo, hi rune }

// isPySpace is Python's str.isspace() for one code point (str.split, str.strip, re \s).
func isPySpace(r rune) bool {
	if r < 0x80 {
		return r == ' ' || (r >= '\t' && r <= '\r') || (r >= 0x1c && r <= 0x1f)
	}
	switch r {
	case 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// asciiSpace marks the ASCII bytes Python counts as whitespace.
var asciiSpace = [128]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true,
	0x1c: true, 0x1d: true, 0x1e: true, 0x1f: true}

// pyStrip is Python's str.strip() (no arguments).
func pyStrip(s string) string {
	start := 0
	for start < len(s) {
		c := s[start]
		if c < utf8.RuneSelf {
			if !asciiSpace[c] {
				break
			}
			start++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[start:])
		if !isPySpace(r) {
			break
		}
		start += n
	}
	end := len(s)
	for end > start {
		c := s[end-1]
		if c < utf8.RuneSelf {
			if !asciiSpace[c] {
				break
			}
			end--
			continue
		}
		r, n := utf8.DecodeLastRuneInString(s[start:end])
		if !isPySpace(r) {
			break
		}
		end -= n
	}
	return s[start:end]
}

// isBlank is `not s.strip()`.
func isBlank(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !asciiSpace[c] {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !isPySpace(r) {
			return false
		}
		i += n
	}
	return true
}

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
		if c >= utf8.RuneSelf || asciiSpace[c] || (c >= 'a' && c <= 'z') {
			ascii = false
			break
		}
	}
	if ascii {
		return raw
	}
	b := make([]byte, 0, len(raw)+4)
	for _, r := range raw {
		if isPySpace(r) {
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

// decimalValue is the value of a decimal digit (re's \d, int()), or -1.
func decimalValue(r rune) int {
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
