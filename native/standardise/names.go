package standardise

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"joinedup/native/pystr"
)

var titles = map[string]bool{}
var suffixes = map[string]bool{}

func init() {
	for _, w := range strings.Fields("mr mrs ms miss mx dr prof rev revd sir dame lady lord master fr sr sister") {
		titles[w] = true
	}
	for _, w := range strings.Fields("jr jnr junior sr snr senior ii iii iv") {
		suffixes[w] = true
	}
}

// addressWord is standard_text's _ADDRESS_WORDS: the street-type abbreviations it
// expands ("no" to nothing). A switch, not a map: most words are not in it.
func addressWord(w string) (string, bool) {
	switch w {
	case "rd":
		return "road", true
	case "st":
		return "street", true
	case "ave", "av":
		return "avenue", true
	case "ln":
		return "lane", true
	case "dr":
		return "drive", true
	case "ct":
		return "court", true
	case "cres":
		return "crescent", true
	case "cl":
		return "close", true
	case "pl":
		return "place", true
	case "sq":
		return "square", true
	case "gdns":
		return "gardens", true
	case "gr":
		return "grove", true
	case "tce", "ter":
		return "terrace", true
	case "pde":
		return "parade", true
	case "hse":
		return "house", true
	case "apt", "apartment":
		return "flat", true
	case "no":
		return "", true
	}
	return "", false
}

// nameWords is name_words: accents folded (NFKD without combining marks), lower case,
// anything but a-z, whitespace and '-' dropped, split on runs of whitespace and '-',
// leading titles and trailing suffixes removed. The folding and lower-casing of non-ASCII
// code points comes from Python's own tables (foldRuns).
func nameWords(raw string) []string {
	buf := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c >= 'a' && c <= 'z':
				buf = append(buf, c)
			case c >= 'A' && c <= 'Z':
				buf = append(buf, c+('a'-'A'))
			case c == '-' || pystr.IsSpaceByte(c):
				buf = append(buf, ' ')
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(raw[i:])
		i += n
		v := foldValue(r)
		for j := 0; j < len(v); j++ {
			switch d := v[j]; {
			case d >= 'a' && d <= 'z':
				buf = append(buf, d)
			case d == ' ' || d == '-':
				buf = append(buf, ' ')
			}
		}
	}
	words := strings.Fields(string(buf))
	for len(words) > 0 && titles[words[0]] {
		words = words[1:]
	}
	for len(words) > 0 && suffixes[words[len(words)-1]] {
		words = words[:len(words)-1]
	}
	if len(words) == 0 {
		return nil
	}
	return words
}

// StandardText mirrors standard_text (address, locality): folded, lower case, anything
// but a-z and 0-9 a word break, street words expanded; nil when nothing is left.
func StandardText(raw string) *string {
	s, ok := standardText(raw)
	if !ok {
		return nil
	}
	return &s
}

func standardText(raw string) (string, bool) {
	var stack [256]byte
	buf := stack[:0]
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
				buf = append(buf, c)
			case c >= 'A' && c <= 'Z':
				buf = append(buf, c+('a'-'A'))
			default:
				buf = append(buf, ' ')
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(raw[i:])
		i += n
		v := foldValue(r)
		for j := 0; j < len(v); j++ {
			switch d := v[j]; {
			case d >= 'a' && d <= 'z' || d >= '0' && d <= '9':
				buf = append(buf, d)
			default:
				buf = append(buf, ' ')
			}
		}
	}
	// The words, street words expanded ("no" dropped), joined by one space. Python
	// expands only when some word is a street word, which gives the same result.
	var outStack [256]byte
	out := outStack[:0]
	for i := 0; i < len(buf); {
		if buf[i] == ' ' {
			i++
			continue
		}
		j := i
		for j < len(buf) && buf[j] != ' ' {
			j++
		}
		w := buf[i:j]
		i = j
		if e, ok := addressWord(string(w)); ok {
			if e == "" {
				continue
			}
			if len(out) > 0 {
				out = append(out, ' ')
			}
			out = append(out, e...)
			continue
		}
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, w...)
	}
	if len(out) == 0 {
		return "", false
	}
	return string(out), true
}

// metaphone is jellyfish's Metaphone as the installed (Rust) jellyfish computes it:
// upper case, NFKD, then the rules below, character by character.
func metaphone(s string) string {
	if s == "" {
		return ""
	}
	var v []rune
	var up string
	if isASCII(s) {
		b := []byte(s)
		for i, c := range b {
			if c >= 'a' && c <= 'z' {
				b[i] = c - ('a' - 'A')
			}
		}
		up = string(b)
		v = make([]rune, len(b))
		for i, c := range b {
			v[i] = rune(c)
		}
	} else {
		up = pyUpper(s)
		v = []rune(norm.NFKD.String(up))
	}
	if strings.HasPrefix(up, "KN") || strings.HasPrefix(up, "GN") || strings.HasPrefix(up, "PN") ||
		strings.HasPrefix(up, "WR") || strings.HasPrefix(up, "AE") {
		v = v[1:]
	}
	isVowel := func(c rune) bool { return c == 'A' || c == 'E' || c == 'I' || c == 'O' || c == 'U' }
	isIEY := func(c rune) bool { return c == 'I' || c == 'E' || c == 'Y' }
	ret := make([]byte, 0, len(v)+2)
	for i := 0; i < len(v); i++ {
		c := v[i]
		next, nextnext := '*', '*'
		if i+1 < len(v) {
			next = v[i+1]
		}
		if i+2 < len(v) {
			nextnext = v[i+2]
		}
		// skip doubles except for CC
		if c == next && c != 'C' {
			continue
		}
		switch c {
		case 'A', 'E', 'I', 'O', 'U':
			if i == 0 || v[i-1] == ' ' {
				ret = append(ret, byte(c))
			}
		case 'B':
			if (i == 0 || v[i-1] != 'M') || next != '*' {
				ret = append(ret, 'B')
			}
		case 'C':
			if next == 'I' && nextnext == 'A' || next == 'H' {
				i++
				ret = append(ret, 'X')
			} else if isIEY(next) {
				i++
				ret = append(ret, 'S')
			} else {
				ret = append(ret, 'K')
			}
		case 'D':
			if next == 'G' && isIEY(nextnext) {
				i += 2
				ret = append(ret, 'J')
			} else {
				ret = append(ret, 'T')
			}
		case 'F', 'J', 'L', 'M', 'N', 'R':
			ret = append(ret, byte(c))
		case 'G':
			if isIEY(next) {
				ret = append(ret, 'J')
			} else if (next == 'H' && !isVowel(nextnext)) || (next == 'N' && nextnext == '*') {
				// jellyfish 1.3.0 (the installed one) keeps a final GH silent; 1.2.1 did not
				i++
			} else {
				ret = append(ret, 'K')
			}
		case 'H':
			if i == 0 || isVowel(next) || !isVowel(v[i-1]) {
				ret = append(ret, 'H')
			}
		case 'K':
			if i == 0 || v[i-1] != 'C' {
				ret = append(ret, 'K')
			}
		case 'P':
			if next == 'H' {
				i++
				ret = append(ret, 'F')
			} else {
				ret = append(ret, 'P')
			}
		case 'Q':
			ret = append(ret, 'K')
		case 'S':
			if next == 'H' {
				i++
				ret = append(ret, 'X')
			} else if next == 'I' && (nextnext == 'O' || nextnext == 'A') {
				i += 2
				ret = append(ret, 'X')
			} else {
				ret = append(ret, 'S')
			}
		case 'T':
			if next == 'I' && (nextnext == 'O' || nextnext == 'A') {
				ret = append(ret, 'X')
			} else if next == 'H' {
				i++
				ret = append(ret, '0')
			} else if next != 'C' || nextnext != 'H' {
				ret = append(ret, 'T')
			}
		case 'V':
			ret = append(ret, 'F')
		case 'W':
			if i == 0 && next == 'H' {
				i++
				ret = append(ret, 'W')
			} else if isVowel(next) {
				ret = append(ret, 'W')
			}
		case 'X':
			if i == 0 {
				if next == 'H' || (next == 'I' && (nextnext == 'O' || nextnext == 'A')) {
					ret = append(ret, 'X')
				} else {
					ret = append(ret, 'S')
				}
			} else {
				ret = append(ret, 'K', 'S')
			}
		case 'Y':
			if isVowel(next) {
				ret = append(ret, 'Y')
			}
		case 'Z':
			ret = append(ret, 'S')
		case ' ':
			if len(ret) > 0 && ret[len(ret)-1] != ' ' {
				ret = append(ret, ' ')
			}
		}
	}
	return string(ret)
}
