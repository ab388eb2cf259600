package standardise

import (
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"joinedup/native/pystr"
)

// The date rules of standardise.parse_date: the mapping's strptime format, else ISO
// (with an optional time), UK d/m/Y, compact YYYYMMDD, then the text formats. The
// regular expressions of the Python module are hand-written here; they use Python's \d
// (any Unicode decimal digit, which int() reads) and so do these.

var (
	errImpossible   = errors.New("impossible date")
	errUnrecognised = errors.New("unrecognised date format")
	errBefore1900   = errors.New("date of birth before 1900")
	errFuture       = errors.New("date of birth in the future")
)

const earliestBirthYear = 1900

var textDateFormats = []string{"%d %b %Y", "%d %B %Y", "%Y/%m/%d", "%d/%m/%y"}

// pyDate is a Python datetime.date (proleptic Gregorian, years 1..9999).
type pyDate struct{ y, m, d int }

func (d pyDate) time() time.Time { return time.Date(d.y, time.Month(d.m), d.d, 0, 0, 0, 0, time.UTC) }

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

var daysBeforeMonth = [13]int{0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334}

func daysInMonth(y, m int) int {
	if m == 2 && isLeap(y) {
		return 29
	}
	return [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
}

// validDate is whether datetime.date(y, m, d) would be accepted.
func validDate(y, m, d int) bool {
	return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m)
}

// toOrdinal is date.toordinal() (1 = 0001-01-01); the date must be valid.
func toOrdinal(y, m, d int) int {
	p := y - 1
	doy := daysBeforeMonth[m] + d
	if m > 2 && isLeap(y) {
		doy++
	}
	return p*365 + p/4 - p/100 + p/400 + doy
}

// fromOrdinal is date.fromordinal(n); ok is false where Python raises ValueError.
func fromOrdinal(n int) (pyDate, bool) {
	if n < 1 || n > 3652059 {
		return pyDate{}, false
	}
	// Python's _ord2ymd.
	n--
	n400, n := n/146097, n%146097
	year := n400*400 + 1
	n100, n := n/36524, n%36524
	n4, n := n/1461, n%1461
	n1, n := n/365, n%365
	year += n100*100 + n4*4 + n1
	if n1 == 4 || n100 == 4 {
		return pyDate{year - 1, 12, 31}, true
	}
	leap := n1 == 3 && (n4 != 24 || n100 == 3)
	month := (n + 50) >> 5
	preceding := daysBeforeMonth[month]
	if month > 2 && leap {
		preceding++
	}
	if preceding > n {
		month--
		preceding = daysBeforeMonth[month]
		if month > 2 && leap {
			preceding++
		}
	}
	return pyDate{year, month, n - preceding + 1}, true
}

// weekday is date.weekday() (Monday = 0).
func weekday(y, m, d int) int { return (toOrdinal(y, m, d) + 6) % 7 }

// digitsAt reads a run of exactly `width` decimal digits at s[i:]; value, end, ok.
func digitsAt(s string, i, width int) (int, int, bool) {
	v := 0
	for k := 0; k < width; k++ {
		if i >= len(s) {
			return 0, 0, false
		}
		var dv, n int
		if c := s[i]; c < utf8.RuneSelf {
			if c < '0' || c > '9' {
				return 0, 0, false
			}
			dv, n = int(c-'0'), 1
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			if dv = pystr.Decimal(r); dv < 0 {
				return 0, 0, false
			}
			n = size
		}
		v = v*10 + dv
		i += n
	}
	return v, i, true
}

// digits12 is (\d{1,2}) followed by something that is not a digit (what every use
// here needs, so the greedy match never has to give a digit back).
func digits12(s string, i int) (int, int, bool) {
	v, j, ok := digitsAt(s, i, 1)
	if !ok {
		return 0, 0, false
	}
	if v2, k, ok2 := digitsAt(s, j, 1); ok2 {
		return v*10 + v2, k, true
	}
	return v, j, true
}

// matchISO is _ISO: ^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$ ('.' is anything but \n;
// '$' also matches before a final \n, which a stripped value cannot end with).
func matchISO(s string) (y, m, d int, ok bool) {
	y, i, ok := digitsAt(s, 0, 4)
	if !ok || i >= len(s) || s[i] != '-' {
		return 0, 0, 0, false
	}
	if m, i, ok = digits12(s, i+1); !ok || i >= len(s) || s[i] != '-' {
		return 0, 0, 0, false
	}
	if d, i, ok = digits12(s, i+1); !ok {
		return 0, 0, 0, false
	}
	if i == len(s) {
		return y, m, d, true
	}
	if s[i] != 'T' && s[i] != ' ' {
		return 0, 0, 0, false
	}
	rest := s[i+1:]
	if nl := strings.IndexByte(rest, '\n'); nl >= 0 && nl != len(rest)-1 {
		return 0, 0, 0, false
	}
	return y, m, d, true
}

// matchUK is _UK: ^(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{4})$.
func matchUK(s string) (y, m, d int, ok bool) {
	isSep := func(i int) bool { return i < len(s) && (s[i] == '/' || s[i] == '-' || s[i] == '.') }
	d, i, ok := digits12(s, 0)
	if !ok || !isSep(i) {
		return 0, 0, 0, false
	}
	if m, i, ok = digits12(s, i+1); !ok || !isSep(i) {
		return 0, 0, 0, false
	}
	if y, i, ok = digitsAt(s, i+1, 4); !ok || !endOrFinalNewline(s, i) {
		return 0, 0, 0, false
	}
	return y, m, d, true
}

// matchCompact is _COMPACT: ^(\d{4})(\d{2})(\d{2})$.
func matchCompact(s string) (y, m, d int, ok bool) {
	y, i, ok := digitsAt(s, 0, 4)
	if !ok {
		return
	}
	if m, i, ok = digitsAt(s, i, 2); !ok {
		return
	}
	if d, i, ok = digitsAt(s, i, 2); !ok || !endOrFinalNewline(s, i) {
		return 0, 0, 0, false
	}
	return y, m, d, true
}

func endOrFinalNewline(s string, i int) bool {
	return i == len(s) || (i == len(s)-1 && s[i] == '\n')
}

// parseDate is parse_date(raw, fmt).
func (s *Standardiser) parseDate(raw, format string) (pyDate, error) {
	text := pystr.Strip(raw)
	if format != "" {
		f, err := s.compiledFormat(format)
		if err == nil {
			if d, ok := f.parse(text); ok {
				return d, nil
			}
		}
		if be, ok := err.(*BadFormatError); ok {
			panic(be) // Python raises re.error here, which is not a ValueError
		}
		return pyDate{}, formatError(format)
	}
	if d, err, ok := parseNumericDate(text); ok {
		return d, err
	}
	for _, tf := range textDateFormats {
		f, _ := s.compiledFormat(tf)
		if d, ok := f.parse(text); ok {
			return d, nil
		}
	}
	return pyDate{}, errUnrecognised
}

// parseNumericDate tries _ISO, _UK and _COMPACT in turn; ok is false when none matches.
func parseNumericDate(text string) (pyDate, error, bool) {
	for _, match := range [...]func(string) (int, int, int, bool){matchISO, matchUK, matchCompact} {
		if y, m, d, ok := match(text); ok {
			if !validDate(y, m, d) {
				return pyDate{}, errImpossible, true
			}
			return pyDate{y, m, d}, nil, true
		}
	}
	return pyDate{}, nil, false
}

// parseCleanDate reads the clean values of the common mapping formats without strptime
// (as connectors/columnar.py's _parse_dates does): exactly "YYYY-MM-DD" for "%Y-%m-%d",
// "DD/MM/YYYY" for "%d/%m/%Y" or "YYYYMMDD" for "%Y%m%d", in ASCII digits, with the month
// 01-12 and the day 01-31. strptime matches such a value whole, so it is the date when
// that date exists (valid) and refused when not. ok is false for anything else.
func parseCleanDate(text, format string) (d pyDate, valid, ok bool) {
	var yAt, mAt, dAt int
	switch format {
	case "%Y-%m-%d":
		if len(text) != 10 || text[4] != '-' || text[7] != '-' {
			return d, false, false
		}
		yAt, mAt, dAt = 0, 5, 8
	case "%d/%m/%Y":
		if len(text) != 10 || text[2] != '/' || text[5] != '/' {
			return d, false, false
		}
		yAt, mAt, dAt = 6, 3, 0
	case "%Y%m%d":
		if len(text) != 8 {
			return d, false, false
		}
		yAt, mAt, dAt = 0, 4, 6
	default:
		return d, false, false
	}
	num := func(at, width int) int {
		v := 0
		for k := at; k < at+width; k++ {
			c := text[k]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, m, dd := num(yAt, 4), num(mAt, 2), num(dAt, 2)
	if y < 0 || m < 1 || m > 12 || dd < 1 || dd > 31 {
		return d, false, false
	}
	if !validDate(y, m, dd) {
		return d, false, true
	}
	return pyDate{y, m, dd}, true, true
}

// formatError is `ValueError(f"not a valid date in format {fmt}")`.
func formatError(format string) error { return errors.New("not a valid date in format " + format) }

// BadFormatError is a strptime format Python's re module refuses to compile (a directive
// used twice): Python raises re.error, not ValueError, so standardise_identity fails
// rather than dropping the date. The mapping loader fails the same way first.
type BadFormatError struct{ Msg string }

func (e *BadFormatError) Error() string { return e.Msg }

// ---------------------------------------------------------------- strptime

// elemKind is one piece of a compiled strptime format.
type elemKind uint8

const (
	elLiteral elemKind = iota // one character, matched case-insensitively as re.IGNORECASE does
	elSpaces                  // \s+ (a run of whitespace in the format)
	elDirective
)

type elem struct {
	kind elemKind
	r    rune // elLiteral: the character; elDirective: the directive letter
	slot int  // elDirective: capture slot
}

// strptimeFormat is a format compiled as _strptime.TimeRE.compile would: a sequence of
// literals, whitespace runs and directives, matched with the same backtracking order.
type strptimeFormat struct {
	elems []elem
	names []rune // directive letter per capture slot, in pattern order (groupdict order)
}

// The directives' alternatives, in the order Python's regex tries them. An atom is 'D'
// (\d), a digit (itself), ' ' (a space), or "[ab]" (ASCII range a-b).
var directiveAlts = map[rune][]string{
	'd': {"3[01]", "[12]D", "0[19]", "[19]", " [19]"},
	'H': {"2[03]", "[01]D", "D"},
	'I': {"1[02]", "0[19]", "[19]"},
	'G': {"DDDD"},
	'j': {"36[06]", "3[05]D", "[12]DD", "0[19]D", "00[19]", "[19]D", "0[19]", "[19]"},
	'm': {"1[02]", "0[19]", "[19]"},
	'M': {"[05]D", "D"},
	'S': {"6[01]", "[05]D", "D"},
	'U': {"5[03]", "[04]D", "D"},
	'W': {"5[03]", "[04]D", "D"},
	'w': {"[06]"},
	'u': {"[17]"},
	'V': {"5[03]", "0[19]", "[14]D", "D"},
	'y': {"DD"},
	'Y': {"DDDD"},
}

// Names in the C locale, longest first as TimeRE.__seqToRE orders them (a stable sort
// by length of calendar's order).
var (
	fullWeekdays = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
	abbrWeekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	fullMonths   = []string{"january", "february", "march", "april", "may", "june", "july", "august",
		"september", "october", "november", "december"}
	abbrMonths = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
	amPm       = []string{"am", "pm"}
	// %Z: {"utc", "gmt", time.tzname[0]} (+ tzname[1] with daylight saving); the
	// connector runs with TZ=UTC (and a mapping format with %Z never validates).
	tzNames = []string{"utc", "gmt"}
)

func byLength(names []string) []string {
	out := append([]string(nil), names...)
	// stable insertion sort, longest first
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

var nameAlts = map[rune][]string{
	'A': byLength(fullWeekdays), 'a': byLength(abbrWeekdays), 'B': byLength(fullMonths),
	'b': byLength(abbrMonths), 'p': byLength(amPm), 'Z': byLength(tzNames),
}

// Locale composites (C locale): %c, %x, %X.
var composites = map[rune]string{'c': "%a %b %d %H:%M:%S %Y", 'x': "%m/%d/%y", 'X': "%H:%M:%S"}

// regexSpecial is what TimeRE.pattern escapes; after '%' it makes a bad directive.
const regexSpecial = `\.^$*+?(){}[]|`

var errBadDirective = errors.New("bad directive")

// compileFormat is TimeRE.pattern + re.compile: ValueError (errBadDirective) for an
// unknown directive or a stray '%', BadFormatError for a directive used twice.
func compileFormat(format string) (*strptimeFormat, error) {
	f := &strptimeFormat{}
	if err := f.add(format); err != nil {
		return nil, err
	}
	seen := map[rune]bool{}
	for _, n := range f.names {
		if seen[n] {
			return nil, &BadFormatError{Msg: "redefinition of group name '" + string(n) + "' in format " + format}
		}
		seen[n] = true
	}
	return f, nil
}

func (f *strptimeFormat) add(format string) error {
	rs := []rune(format)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case pystr.IsSpace(r):
			for i+1 < len(rs) && pystr.IsSpace(rs[i+1]) {
				i++
			}
			f.elems = append(f.elems, elem{kind: elSpaces})
		case r == '%':
			if i+1 >= len(rs) {
				return errBadDirective // stray %
			}
			i++
			d := rs[i]
			switch {
			case d == '%':
				f.elems = append(f.elems, elem{kind: elLiteral, r: '%'})
			case composites[d] != "":
				if err := f.add(composites[d]); err != nil {
					return err
				}
			case directiveAlts[d] != nil || nameAlts[d] != nil || d == 'f' || d == 'z':
				f.elems = append(f.elems, elem{kind: elDirective, r: d, slot: len(f.names)})
				f.names = append(f.names, d)
			default: // includes whitespace and regex specials, which Python escapes first
				return errBadDirective
			}
		default:
			f.elems = append(f.elems, elem{kind: elLiteral, r: r})
		}
	}
	return nil
}

// simpleLower is Python's _sre.unicode_tolower.
func simpleLower(r rune) rune {
	if r < 0x80 {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}
	return unicode.ToLower(r)
}

// reExtraCases is re._casefix._EXTRA_CASES: lower-case characters that re.IGNORECASE also
// takes as equal (i and dotless i, s and long s, ...).
var reExtraCases = map[rune][]rune{
	105: {305}, 115: {383}, 181: {956}, 305: {105}, 383: {115}, 837: {953, 8126}, 912: {8147},
	944: {8163}, 946: {976}, 949: {1013}, 952: {977}, 953: {837, 8126}, 954: {1008}, 956: {181},
	960: {982}, 961: {1009}, 962: {963}, 963: {962}, 966: {981}, 976: {946}, 977: {952},
	981: {966}, 982: {960}, 1008: {954}, 1009: {961}, 1013: {949}, 1074: {7296}, 1076: {7297},
	1086: {7298}, 1089: {7299}, 1090: {7300, 7301}, 1098: {7302}, 1123: {7303}, 7296: {1074},
	7297: {1076}, 7298: {1086}, 7299: {1089}, 7300: {1090, 7301}, 7301: {1090, 7300},
	7302: {1098}, 7303: {1123}, 7304: {42571}, 7777: {7835}, 7835: {7777}, 8126: {837, 953},
	8147: {912}, 8163: {944}, 42571: {7304}, 64261: {64262}, 64262: {64261},
}

// eqIgnoreCase is whether input character x matches pattern character p under
// re.IGNORECASE (sre_compile's LITERAL handling).
func eqIgnoreCase(x, p rune) bool {
	if x == p {
		return true
	}
	if x < 0x80 && p < 0x80 {
		return simpleLower(x) == simpleLower(p) && isASCIILetter(p)
	}
	lp := simpleLower(p)
	if lp == p && unicode.ToUpper(p) == p && unicode.ToTitle(p) == p { // not cased
		return false
	}
	lx := simpleLower(x)
	if lx == lp {
		return true
	}
	for _, e := range reExtraCases[lp] {
		if lx == e {
			return true
		}
	}
	return false
}

func isASCIILetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// matchAtom matches one atom of a directive alternative at s[i:]; the end, or -1.
func matchAtom(s string, i int, atom string) (int, int) {
	if i >= len(s) {
		return -1, 0
	}
	if atom[0] == '[' { // ASCII range [lo hi]
		c := s[i]
		if c >= atom[1] && c <= atom[2] {
			return i + 1, 4
		}
		return -1, 4
	}
	if atom[0] == 'D' {
		r, n := utf8.DecodeRuneInString(s[i:])
		if pystr.Decimal(r) >= 0 {
			return i + n, 1
		}
		return -1, 1
	}
	if s[i] == atom[0] {
		return i + 1, 1
	}
	return -1, 1
}

// candidates appends the ends directive e can match at s[i:], in Python's order.
func candidates(dst []int, s string, i int, d rune) []int {
	if alts := directiveAlts[d]; alts != nil {
	alt:
		for _, a := range alts {
			j := i
			for k := 0; k < len(a); {
				end, n := matchAtom(s, j, a[k:])
				if end < 0 {
					continue alt
				}
				j, k = end, k+n
			}
			dst = append(dst, j)
		}
		return dst
	}
	if names := nameAlts[d]; names != nil {
	name:
		for _, nm := range names {
			j := i
			for k := 0; k < len(nm); k++ {
				if j >= len(s) {
					continue name
				}
				r, n := utf8.DecodeRuneInString(s[j:])
				if !eqIgnoreCase(r, rune(nm[k])) {
					continue name
				}
				j += n
			}
			dst = append(dst, j)
		}
		return dst
	}
	switch d {
	case 'f': // [0-9]{1,6}, greedy
		j := i
		for j < len(s) && j-i < 6 && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		for ; j > i; j-- {
			dst = append(dst, j)
		}
	case 'z':
		dst = zCandidates(dst, s, i)
	}
	return dst
}

// zCandidates: [+-]\d\d:?[0-5]\d(:?[0-5]\d(\.\d{1,6})?)?|(?-i:Z)
func zCandidates(dst []int, s string, i int) []int {
	digit := func(j int) int { // \d at j: end or -1
		if j >= len(s) {
			return -1
		}
		r, n := utf8.DecodeRuneInString(s[j:])
		if pystr.Decimal(r) >= 0 {
			return j + n
		}
		return -1
	}
	d05 := func(j int) int { // [0-5]\d
		if j < len(s) && s[j] >= '0' && s[j] <= '5' {
			return digit(j + 1)
		}
		return -1
	}
	optColon := func(j int) []int { // :? greedy
		if j < len(s) && s[j] == ':' {
			return []int{j + 1, j}
		}
		return []int{j}
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		j := digit(i + 1)
		if j >= 0 {
			j = digit(j)
		}
		if j >= 0 {
			for _, c := range optColon(j) {
				k := d05(c)
				if k < 0 {
					continue
				}
				// optional group, tried first
				for _, c2 := range optColon(k) {
					k2 := d05(c2)
					if k2 < 0 {
						continue
					}
					if k2 < len(s) && s[k2] == '.' {
						e := k2 + 1
						var ends []int
						for len(ends) < 6 {
							if n := digit(e); n >= 0 {
								e = n
								ends = append(ends, e)
							} else {
								break
							}
						}
						for x := len(ends) - 1; x >= 0; x-- {
							dst = append(dst, ends[x])
						}
					}
					dst = append(dst, k2)
				}
				dst = append(dst, k)
			}
		}
	}
	if i < len(s) && s[i] == 'Z' {
		dst = append(dst, i+1)
	}
	return dst
}

// match finds the first match in Python's backtracking order (not anchored at the end)
// and fills caps with each slot's [start, end).
func (f *strptimeFormat) match(s string, k, i int, caps [][2]int) (int, bool) {
	if k == len(f.elems) {
		return i, true
	}
	e := f.elems[k]
	switch e.kind {
	case elLiteral:
		if i >= len(s) {
			return 0, false
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !eqIgnoreCase(r, e.r) {
			return 0, false
		}
		return f.match(s, k+1, i+n, caps)
	case elSpaces:
		var ends []int
		for j := i; j < len(s); {
			r, n := utf8.DecodeRuneInString(s[j:])
			if !pystr.IsSpace(r) {
				break
			}
			j += n
			ends = append(ends, j)
		}
		for x := len(ends) - 1; x >= 0; x-- {
			if end, ok := f.match(s, k+1, ends[x], caps); ok {
				return end, true
			}
		}
		return 0, false
	default:
		var buf [8]int
		for _, j := range candidates(buf[:0], s, i, e.r) {
			caps[e.slot] = [2]int{i, j}
			if end, ok := f.match(s, k+1, j, caps); ok {
				return end, true
			}
		}
		return 0, false
	}
}

// intOf is int() of a matched run of decimal digits.
func intOf(s string) int {
	v := 0
	for _, r := range s {
		v = v*10 + pystr.Decimal(r)
	}
	return v
}

func indexOf(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	return -1
}

// lowerName is str.lower() of a matched name for the locale lists' .index(): a match
// with a non-ASCII character (long s, dotless i, ...) lower-cases to something not in
// the lists, which Python refuses with ValueError.
func lowerName(s string) (string, bool) {
	if !isASCII(s) {
		return "", false
	}
	return strings.ToLower(s), true
}

// parse is datetime.strptime(text, format).date(); ok false wherever Python raises
// ValueError.
func (f *strptimeFormat) parse(text string) (pyDate, bool) {
	var capBuf [16][2]int
	caps := capBuf[:0]
	if len(f.names) <= len(capBuf) {
		caps = capBuf[:len(f.names)]
	} else {
		caps = make([][2]int, len(f.names))
	}
	end, ok := f.match(text, 0, 0, caps)
	if !ok || end != len(text) {
		return pyDate{}, false
	}
	const none = -1 << 31
	year, isoYear := none, none
	month, day := 1, 1
	hour, minute, second := 0, 0, 0
	isoWeek, weekOfYear, weekOfYearStart := none, none, none
	wday, julian := none, none
	var gmtoffUS int64
	hasGmtoff := false
	ampm := ""
	for slot, n := range f.names {
		if n == 'p' {
			ampm, _ = lowerName(text[caps[slot][0]:caps[slot][1]])
		}
	}
	for slot, n := range f.names {
		g := text[caps[slot][0]:caps[slot][1]]
		switch n {
		case 'y':
			year = intOf(g)
			if year <= 68 {
				year += 2000
			} else {
				year += 1900
			}
		case 'Y':
			year = intOf(g)
		case 'G':
			isoYear = intOf(g)
		case 'm':
			month = intOf(g)
		case 'B', 'b', 'A', 'a':
			l, ok := lowerName(g)
			if !ok {
				return pyDate{}, false
			}
			switch n {
			case 'B':
				month = indexOf(fullMonths, l) + 1
			case 'b':
				month = indexOf(abbrMonths, l) + 1
			case 'A':
				wday = indexOf(fullWeekdays, l)
			case 'a':
				wday = indexOf(abbrWeekdays, l)
			}
		case 'd':
			day = intOf(strings.TrimPrefix(g, " "))
		case 'H':
			hour = intOf(g)
		case 'I':
			hour = intOf(g)
			if ampm == "" || ampm == "am" {
				if hour == 12 {
					hour = 0
				}
			} else if ampm == "pm" && hour != 12 {
				hour += 12
			}
		case 'M':
			minute = intOf(g)
		case 'S':
			second = intOf(g)
		case 'w':
			wday = intOf(g)
			if wday == 0 {
				wday = 6
			} else {
				wday--
			}
		case 'u':
			wday = intOf(g) - 1
		case 'j':
			julian = intOf(g)
		case 'U', 'W':
			weekOfYear = intOf(g)
			if n == 'U' {
				weekOfYearStart = 6
			} else {
				weekOfYearStart = 0
			}
		case 'V':
			isoWeek = intOf(g)
		case 'z':
			us, ok := parseZ(g)
			if !ok {
				return pyDate{}, false
			}
			gmtoffUS, hasGmtoff = us, true
		}
	}
	if year == none && isoYear != none {
		if isoWeek == none || wday == none || julian != none {
			return pyDate{}, false
		}
	} else if weekOfYear == none && isoWeek != none {
		return pyDate{}, false
	}
	leapYearFix := false
	if year == none && month == 2 && day == 29 {
		year, leapYearFix = 1904, true
	} else if year == none {
		year = 1900
	}
	if julian == none && wday != none {
		if weekOfYear != none {
			if !validDate(year, 1, 1) {
				return pyDate{}, false
			}
			julian = julianFromUW(year, weekOfYear, wday, weekOfYearStart == 0)
		} else if isoYear != none && isoWeek != none {
			var ok bool
			if year, julian, ok = julianFromV(isoYear, isoWeek, wday+1); !ok {
				return pyDate{}, false
			}
		}
		if julian != none && julian <= 0 {
			year--
			if isLeap(year) {
				julian += 366
			} else {
				julian += 365
			}
		}
	}
	if julian == none {
		if !validDate(year, month, day) {
			return pyDate{}, false
		}
	} else {
		if !validDate(year, 1, 1) {
			return pyDate{}, false
		}
		d, ok := fromOrdinal(julian - 1 + toOrdinal(year, 1, 1))
		if !ok {
			return pyDate{}, false
		}
		year, month, day = d.y, d.m, d.d
	}
	if wday == none && !validDate(year, month, day) {
		return pyDate{}, false
	}
	if leapYearFix {
		year = 1900
	}
	// datetime(year, month, day, hour, minute, second, fraction, tz)
	if !validDate(year, month, day) || hour > 23 || minute > 59 || second > 59 {
		return pyDate{}, false
	}
	if hasGmtoff && (gmtoffUS >= 86400e6 || gmtoffUS <= -86400e6) {
		return pyDate{}, false
	}
	return pyDate{year, month, day}, true
}

// parseZ is _strptime's %z arithmetic: the offset in microseconds; ok false where it
// raises ValueError.
func parseZ(z string) (int64, bool) {
	if z == "Z" {
		return 0, true
	}
	rs := []rune(z)
	if rs[3] == ':' {
		rs = append(rs[:3:3], rs[4:]...)
		if len(rs) > 5 {
			if rs[5] != ':' {
				return 0, false
			}
			rs = append(rs[:5:5], rs[6:]...)
		}
	}
	num := func(part []rune) (int64, bool) {
		if len(part) == 0 {
			return 0, false
		}
		var v int64
		for _, r := range part {
			dv := pystr.Decimal(r)
			if dv < 0 {
				return 0, false
			}
			v = v*10 + int64(dv)
		}
		return v, true
	}
	sub := func(lo, hi int) []rune {
		if lo > len(rs) {
			lo = len(rs)
		}
		if hi > len(rs) {
			hi = len(rs)
		}
		return rs[lo:hi]
	}
	hours, ok1 := num(sub(1, 3))
	minutes, ok2 := num(sub(3, 5))
	if !ok1 || !ok2 {
		return 0, false
	}
	var seconds int64
	if p := sub(5, 7); len(p) > 0 {
		var ok bool
		if seconds, ok = num(p); !ok {
			return 0, false
		}
	}
	rem := sub(8, len(rs))
	var frac int64
	if len(rem) > 0 {
		var ok bool
		if frac, ok = num(rem); !ok {
			return 0, false
		}
	}
	for k := len(rem); k < 6; k++ {
		frac *= 10
	}
	us := (hours*3600+minutes*60+seconds)*1e6 + frac
	if rs[0] == '-' {
		us = -us
	}
	return us, true
}

// julianFromUW is _calc_julian_from_U_or_W; year must be valid.
func julianFromUW(year, weekOfYear, dayOfWeek int, weekStartsMon bool) int {
	firstWeekday := weekday(year, 1, 1)
	if !weekStartsMon {
		firstWeekday = (firstWeekday + 1) % 7
		dayOfWeek = (dayOfWeek + 1) % 7
	}
	week0Length := (7 - firstWeekday) % 7
	if weekOfYear == 0 {
		return 1 + dayOfWeek - firstWeekday
	}
	return 1 + week0Length + 7*(weekOfYear-1) + dayOfWeek
}

// julianFromV is _calc_julian_from_V: (year, julian); ok false where Python raises.
func julianFromV(isoYear, isoWeek, isoWeekday int) (int, int, bool) {
	if !validDate(isoYear, 1, 4) {
		return 0, 0, false
	}
	correction := weekday(isoYear, 1, 4) + 1 + 3
	ordinal := isoWeek*7 + isoWeekday - correction
	if ordinal < 1 {
		ordinal += toOrdinal(isoYear, 1, 1)
		isoYear--
		if !validDate(isoYear, 1, 1) {
			return 0, 0, false
		}
		ordinal -= toOrdinal(isoYear, 1, 1)
	}
	return isoYear, ordinal, true
}
