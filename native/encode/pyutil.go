package encode

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"joinedup/native/pystr"
)

// pyCompactUpper is "".join(v.split()).upper(): an unvalidated identifier kept as given.
// Python's upper is the full case mapping (ß -> SS), hence pyUpperSpecial.
func pyCompactUpper(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for _, r := range v {
		if pystr.IsSpace(r) {
			continue
		}
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteByte(byte(r))
			continue
		}
		if s, ok := pyUpperSpecial[r]; ok {
			b.WriteString(s)
			continue
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// pyJSONString appends s as json.dumps writes it (ensure_ascii: non-ASCII as \uXXXX,
// surrogate pairs above the BMP).
func pyJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r == '"':
			dst = append(dst, '\\', '"')
		case r == '\\':
			dst = append(dst, '\\', '\\')
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r == '\b':
			dst = append(dst, '\\', 'b')
		case r == '\f':
			dst = append(dst, '\\', 'f')
		case r < 0x20 || (r > 0x7f && r < 0x10000):
			dst = appendU4(dst, r)
		case r >= 0x10000:
			r -= 0x10000
			dst = appendU4(dst, 0xD800+(r>>10))
			dst = appendU4(dst, 0xDC00+(r&0x3FF))
		default:
			dst = append(dst, byte(r))
		}
	}
	return append(dst, '"')
}

func appendU4(dst []byte, r rune) []byte {
	h := strconv.FormatInt(int64(r), 16)
	dst = append(dst, '\\', 'u')
	for range 4 - len(h) {
		dst = append(dst, '0')
	}
	return append(dst, h...)
}
