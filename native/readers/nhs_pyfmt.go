package readers

// Python's string semantics the council and NHS readers need to give the same values and
// messages as connectors/sources/{council,nhs}.py: str.strip(), repr() of the values a
// message quotes, str() of a SQLite value. (Prefixed cn: the CSV kinds share the package.)

import (
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cnIsSpace is Python's str.isspace for one code point (what str.strip() strips): Go's
// unicode.IsSpace lacks U+001C..U+001F.
func cnIsSpace(r rune) bool {
	switch {
	case r <= 0x20:
		return r == ' ' || (r >= 0x09 && r <= 0x0d) || (r >= 0x1c && r <= 0x1f)
	case r < 0x85:
		return false
	}
	return r == 0x85 || r == 0xa0 || r == 0x1680 || (r >= 0x2000 && r <= 0x200a) ||
		r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000
}

// cnStrip is Python's str.strip() on text held as (WTF-8) bytes: bytes that are not
// UTF-8 (a lone surrogate, an undecodable byte) are never whitespace.
func cnStrip(s string) string {
	i, j := 0, len(s)
	for i < j {
		c := s[i]
		if c < utf8.RuneSelf {
			if !cnIsSpace(rune(c)) {
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:j])
		if r == utf8.RuneError || !cnIsSpace(r) {
			break
		}
		i += n
	}
	for j > i {
		c := s[j-1]
		if c < utf8.RuneSelf {
			if !cnIsSpace(rune(c)) {
				break
			}
			j--
			continue
		}
		r, n := utf8.DecodeLastRuneInString(s[i:j])
		if r == utf8.RuneError || !cnIsSpace(r) {
			break
		}
		j -= n
	}
	return s[i:j]
}

// cnFloatRepr is Python's repr(float).
func cnFloatRepr(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX, shortest round-trip digits
	_, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}

	return s
}

// cnStrRepr is Python's repr(str) of text held as (WTF-8) bytes.
func cnStrRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			// A lone surrogate (three WTF-8 bytes) or an undecodable byte.
			if n == 1 && i+3 <= len(s) && s[i] == 0xed && s[i+1] >= 0xa0 {
				cp := rune(s[i]&0x0f)<<12 | rune(s[i+1]&0x3f)<<6 | rune(s[i+2]&0x3f)
				b.WriteString(`\u` + strconv.FormatInt(int64(cp), 16))
				i += 3
				continue
			}
			b.WriteString(`\x` + cnHex2(s[i]))
			i++
			continue
		}
		i += n
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x` + cnHex2(byte(r)))
		case r < 0x7f:
			b.WriteRune(r)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			b.WriteString(`\x` + cnHex2(byte(r)))
		case r <= 0xffff:
			b.WriteString(`\u` + cnPad(strconv.FormatInt(int64(r), 16), 4))
		default:
			b.WriteString(`\U` + cnPad(strconv.FormatInt(int64(r), 16), 8))
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// cnBytesRepr is Python's repr(bytes).
func cnBytesRepr(p []byte) string {
	quote := byte('\'')
	if strings.IndexByte(string(p), '\'') >= 0 && strings.IndexByte(string(p), '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteString("b")
	b.WriteByte(quote)
	for _, c := range p {
		switch {
		case c == quote || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x` + cnHex2(c))
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

func cnHex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

func cnPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}
