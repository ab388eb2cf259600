// Package pystr is the one home of the Python str semantics that more than one package
// of the native program needs to match the Python connector byte for byte: str.isspace,
// str.strip, unicodedata.decimal (what re's \d and int() accept), str.isprintable and
// repr(str).
//
// Python here is CPython 3.11, whose Unicode database is version 14.0.0. Go's unicode
// package is 15.0.0 (checked by a test, so a Go upgrade that moves it is noticed): the
// two agree on every code point assigned in 14.0 (property, category and digit value),
// and differ only on the code points Unicode 15.0 assigned, which Python 3.11 holds as
// unassigned (Cn): see unicode15.
package pystr

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// spaceByte marks the bytes below 0x80 that Python counts as whitespace: \t \n \v \f \r,
// space and the separators U+001C..U+001F (which Go's unicode.IsSpace lacks).
var spaceByte = [256]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true,
	0x1c: true, 0x1d: true, 0x1e: true, 0x1f: true}

// IsSpaceByte is str.isspace() for an ASCII character (false for any byte >= 0x80).
func IsSpaceByte(c byte) bool { return spaceByte[c] }

// IsSpace is str.isspace() for one code point (str.split, str.strip, re's \s): the
// bidirectional classes WS, B and S or category Zs, which is Go's unicode.IsSpace plus
// U+001C..U+001F. No code point Unicode 15 added is whitespace.
func IsSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return spaceByte[r]
	}
	switch r {
	case 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// Strip is str.strip() (no arguments) of text held as UTF-8 bytes. Bytes that are not
// UTF-8 (an undecodable byte, or the three WTF-8 bytes of a lone surrogate) are never
// whitespace, as the surrogate escape or lone surrogate Python holds for them is not:
// the strip stops there. (They decode to utf8.RuneError, which like a real U+FFFD is
// not whitespace, so text whose invalid bytes were already replaced by U+FFFD strips
// the same way.)
func Strip(s string) string {
	start := 0
	for start < len(s) {
		c := s[start]
		if c < utf8.RuneSelf {
			if !spaceByte[c] {
				break
			}
			start++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[start:])
		if !IsSpace(r) {
			break
		}
		start += n
	}
	end := len(s)
	for end > start {
		c := s[end-1]
		if c < utf8.RuneSelf {
			if !spaceByte[c] {
				break
			}
			end--
			continue
		}
		r, n := utf8.DecodeLastRuneInString(s[start:end])
		if !IsSpace(r) {
			break
		}
		end -= n
	}
	return s[start:end]
}

// IsBlank is `not s.strip()`: s is empty or all whitespace.
func IsBlank(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !spaceByte[c] {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !IsSpace(r) {
			return false
		}
		i += n
	}
	return true
}

// unicode15 is every code point assigned in Unicode 15.0 (Go) but not in 14.0 (Python
// 3.11), computed by comparing unicode.In(L, M, N, P, S, Z, Cc, Cf, Co, Cs) with
// unicodedata.category(chr(c)) != "Cn". Among them are the Kawi (U+11F50..U+11F59)
// and Nag Mundari (U+1E4F0..U+1E4F9) digits.
var unicode15 = [...]struct{ lo, hi rune }{
	{0x0cf3, 0x0cf3}, {0x0ece, 0x0ece}, {0x10efd, 0x10eff}, {0x1123f, 0x11241},
	{0x11b00, 0x11b09}, {0x11f00, 0x11f10}, {0x11f12, 0x11f3a}, {0x11f3e, 0x11f59},
	{0x1342f, 0x1342f}, {0x13439, 0x13455}, {0x1b132, 0x1b132}, {0x1b155, 0x1b155},
	{0x1d2c0, 0x1d2d3}, {0x1df25, 0x1df2a}, {0x1e030, 0x1e06d}, {0x1e08f, 0x1e08f},
	{0x1e4d0, 0x1e4f9}, {0x1f6dc, 0x1f6dc}, {0x1f774, 0x1f776}, {0x1f77b, 0x1f77f},
	{0x1f7d9, 0x1f7d9}, {0x1fa75, 0x1fa77}, {0x1fa87, 0x1fa88}, {0x1faad, 0x1faaf},
	{0x1fabb, 0x1fabd}, {0x1fabf, 0x1fabf}, {0x1face, 0x1facf}, {0x1fada, 0x1fadb},
	{0x1fae8, 0x1fae8}, {0x1faf7, 0x1faf8}, {0x2b739, 0x2b739}, {0x31350, 0x323af},
}

// newInUnicode15 reports whether Python 3.11 holds r as unassigned (Cn) where Go's
// tables give it a category.
func newInUnicode15(r rune) bool {
	if r < 0x0cf3 {
		return false
	}
	for _, rg := range unicode15 {
		if r < rg.lo {
			return false
		}
		if r <= rg.hi {
			return true
		}
	}
	return false
}

// Decimal is unicodedata.decimal(chr(r), -1): the value of a decimal digit (category Nd,
// what re's \d matches in a str pattern and int() reads), or -1. The Kawi and Nag Mundari
// digits, new in Unicode 15, are not digits to Python 3.11.
func Decimal(r rune) int {
	if r < utf8.RuneSelf {
		if r >= '0' && r <= '9' {
			return int(r - '0')
		}
		return -1
	}
	if !unicode.Is(unicode.Nd, r) || newInUnicode15(r) {
		return -1
	}
	// Every Nd range of Go's table starts at a zero and runs in tens.
	for _, rg := range unicode.Nd.R16 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return -1
}

// IsPrintable is str.isprintable() for one non-ASCII code point: not in Cc, Cf, Cs, Co,
// Cn, Zl, Zp or Zs (so in L, M, N, P or S, and assigned in Unicode 14).
func IsPrintable(r rune) bool {
	if r >= 0xd800 && r <= 0xdfff {
		return false
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S) && !newInUnicode15(r)
}

// Invalid says how text held as bytes represents what Python held as lone surrogates.
type Invalid int

const (
	// SurrogateEscape: text decoded with errors="surrogateescape" (the CSV readers). Each
	// byte that is not UTF-8 is the surrogate U+DC80..U+DCFF, including each of the three
	// bytes a lone surrogate would take in WTF-8.
	SurrogateEscape Invalid = iota
	// WTF8: text from a JSON parser or SQLite (the NHS and council readers). A lone
	// surrogate is held as its three WTF-8 bytes (ED A0..BF xx) and repr shows it as
	// \udxxx; any other byte that is not UTF-8 is shown as \x and its value.
	WTF8
)

const hexLower = "0123456789abcdef"

// Repr is repr(str) of s: single quotes unless the text holds ' and no ", backslash
// escapes for the characters that are not printable (\t \n \r, then \xhh, \uhhhh or
// \Uhhhhhhhh), invalid bytes shown as inv says.
func Repr(s string, inv Invalid) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, quote)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			switch {
			case inv == SurrogateEscape:
				r = 0xdc00 + rune(s[i])
			case i+3 <= len(s) && s[i] == 0xed && s[i+1] >= 0xa0:
				// A lone surrogate (three WTF-8 bytes).
				r = rune(s[i]&0x0f)<<12 | rune(s[i+1]&0x3f)<<6 | rune(s[i+2]&0x3f)
				n = 3
			default:
				b = append(b, '\\', 'x', hexLower[s[i]>>4], hexLower[s[i]&0xf])
				i++
				continue
			}
		}
		i += n
		switch {
		case r == rune(quote) || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r < 0x20 || r == 0x7f:
			b = append(b, '\\', 'x', hexLower[r>>4], hexLower[r&0xf])
		case r < 0x7f:
			b = append(b, byte(r))
		case IsPrintable(r):
			b = utf8.AppendRune(b, r)
		case r <= 0xff:
			b = append(b, '\\', 'x', hexLower[r>>4], hexLower[r&0xf])
		case r <= 0xffff:
			b = appendHex(b, 'u', r, 4)
		default:
			b = appendHex(b, 'U', r, 8)
		}
	}
	return string(append(b, quote))
}

func appendHex(b []byte, letter byte, r rune, digits int) []byte {
	b = append(b, '\\', letter)
	for k := digits - 1; k >= 0; k-- {
		b = append(b, hexLower[(r>>(4*k))&0xf])
	}
	return b
}
