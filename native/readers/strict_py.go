package readers

import (
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Python's string semantics the CSV readers' output and messages depend on.

// pyIsSpace is str.isspace() for one code point (Python 3.11, Unicode 14): it differs
// from unicode.IsSpace by U+001C..U+001F.
func pyIsSpace(r rune) bool {
	switch {
	case r <= 0x20:
		return r == ' ' || (r >= '\t' && r <= '\r') || (r >= 0x1c && r <= 0x1f)
	case r < 0x85:
		return false
	}
	switch r {
	case 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// pyStrip is str.strip(). A byte that is not UTF-8 is not space (Python would hold a
// lone surrogate for it).
func pyStrip(s string) string {
	start := 0
	for start < len(s) {
		c := s[start]
		if c < utf8.RuneSelf {
			if !pyIsSpace(rune(c)) {
				break
			}
			start++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[start:])
		if (r == utf8.RuneError && n == 1) || !pyIsSpace(r) {
			break
		}
		start += n
	}
	end := len(s)
	for end > start {
		c := s[end-1]
		if c < utf8.RuneSelf {
			if !pyIsSpace(rune(c)) {
				break
			}
			end--
			continue
		}
		r, n := utf8.DecodeLastRuneInString(s[start:end])
		if (r == utf8.RuneError && n == 1) || !pyIsSpace(r) {
			break
		}
		end -= n
	}
	return s[start:end]
}

// pyRepr is repr(str) for the column names messages quote: single quotes unless the text
// holds ' and no ", backslash escapes for the non-printable characters.
func pyRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	b := []byte{quote}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = 0xdc00 + rune(s[i]) // surrogateescape
		}
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
		case pyPrintable(r):
			b = utf8.AppendRune(b, r)
		case r <= 0xff:
			b = append(b, '\\', 'x', hexLower[r>>4], hexLower[r&0xf])
		case r <= 0xffff:
			b = appendRawU(b, 'u', r, 4)
		default:
			b = appendRawU(b, 'U', r, 8)
		}
		i += n
	}
	return string(append(b, quote))
}

func appendRawU(b []byte, letter byte, r rune, digits int) []byte {
	b = append(b, '\\', letter)
	for k := digits - 1; k >= 0; k-- {
		b = append(b, hexLower[(r>>(4*k))&0xf])
	}
	return b
}

// pyPrintable is str.isprintable() for one non-ASCII code point: not in Cc, Cf, Cs, Co,
// Cn, Zl, Zp, Zs.
func pyPrintable(r rune) bool {
	if r >= 0xd800 && r <= 0xdfff {
		return false
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}

// pyPath is str(pathlib.Path(input)) on POSIX: empty and "." parts and repeated or
// trailing slashes dropped ("..", unlike filepath.Clean, kept), exactly two leading
// slashes kept, "." for nothing. Python opens and names the file by it.
func pyPath(input string) string {
	if input == "" {
		return "."
	}
	lead := ""
	if strings.HasPrefix(input, "/") {
		lead = "/"
		if strings.HasPrefix(input, "//") && !strings.HasPrefix(input, "///") {
			lead = "//"
		}
	}
	var parts []string
	for _, part := range strings.Split(input, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	out := lead + strings.Join(parts, "/")
	if out == "" {
		return "."
	}
	return out
}

// strerror is what Python prints for an OSError (exc.strerror): the C library's text,
// which Go's errno table spells in lower case.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// sortedSet is sorted(set(items)) (byte order is code point order in UTF-8).
func sortedSet(items []string) []string {
	seen := make(map[string]bool, len(items))
	out := make([]string, 0, len(items))
	for _, s := range items {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
