package readers

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// The agency CSV readers (connectors/sources/_agency_csv.py): DWP and housing.

// badValue is _agency_csv.BadValue: an indicator column's value of the wrong type; the
// row is rejected naming the column.
type badValue struct {
	column, reason string
}

// agencyKind describes one agency CSV kind.
type agencyKind struct {
	name    string   // as the "not a ... extract" message says it
	columns []string // INDICATOR_COLUMNS: required, and all its indicators read
	// indicators is the module's indicators(row), given the row's values of `columns`.
	indicators func(vals []string) ([]Indicator, *badValue)
}

// memoLimit: distinct indicator tuples kept before the memo is cleared (_MEMO_LIMIT).
const memoLimit = 200_000

// openAgencyCSV is read_csv_batches: the header checked for the kind's and the mapping's
// columns, then data_chunks' chunks as batches with each row's indicators JSON.
func openAgencyCSV(kind *agencyKind, input string, mapping record.Mapping, size int, rejects record.RejectSink) (record.Reader, error) {
	path := pyPath(input)
	check := func(header []string) error {
		have := make(map[string]bool, len(header))
		for _, h := range header {
			have[h] = true
		}
		var missing []string
		for _, c := range kind.columns {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return &SourceError{Msg: fmt.Sprintf("%s: not a %s extract: missing column(s) %s",
				path, kind.name, strings.Join(sortedSet(missing), ", "))}
		}
		return requireMappedColumns(mapping, header, path)
	}
	t, err := openCSV(input, check)
	if err != nil {
		return nil, err
	}
	at := make([]int, len(kind.columns))
	for k, c := range kind.columns {
		for j, h := range t.header {
			if h == c {
				at[k] = j
				break
			}
		}
	}
	st := &agencyState{kind: kind, at: at, vals: make([]string, len(at)), memo: map[string]memoEntry{}}
	return &csvReader{t: t, size: size, rejects: rejects, pickers: columnPickers(mapping, t.header), agency: st}, nil
}

type memoEntry struct {
	json string
	bad  *badValue
}

// agencyState turns rows into indicators JSON. A row's indicators depend only on its
// indicator columns, and whole tuples of those repeat across rows: each distinct tuple is
// computed once (as Python's _batches does; the memo changes no output).
type agencyState struct {
	kind *agencyKind
	at   []int // header index of each indicator column
	vals []string
	key  []byte
	memo map[string]memoEntry
}

// indicators gives each kept row's JSON and the kept rows (nil when all are), sending a
// reject for each refused row in row order.
func (s *agencyState) indicators(c *csvChunk, rejects record.RejectSink) ([]string, []int) {
	if len(s.memo) > memoLimit {
		clear(s.memo)
	}
	n := c.len()
	found := make([]string, 0, n)
	var keep []int
	for i := 0; i < n; i++ {
		key := s.key[:0]
		for k, j := range s.at {
			v := c.value(i, j)
			s.vals[k] = v
			key = binary.AppendUvarint(key, uint64(len(v)))
			key = append(key, v...)
		}
		s.key = key
		e, ok := s.memo[string(key)]
		if !ok {
			inds, bad := s.kind.indicators(s.vals)
			if bad != nil {
				e.bad = bad
			} else {
				e.json = IndicatorsJSON(inds)
			}
			s.memo[string(key)] = e
		}
		if e.bad != nil {
			rejects(record.Reject{Row: c.numbers[i], Field: e.bad.column, Reason: e.bad.reason})
			if keep == nil {
				keep = make([]int, i, n)
				for k := range keep {
					keep[k] = k
				}
			}
			continue
		}
		found = append(found, e.json)
		if keep != nil {
			keep = append(keep, i)
		}
	}
	return found, keep
}

// isoDate is _agency_csv.iso_date: nil when empty, a badValue when not a date.
func isoDate(vals []string, k int, column string) (*time.Time, *badValue) {
	v := pystr.Strip(vals[k])
	if v == "" {
		return nil, nil
	}
	d, ok := pyFromISOFormat(v)
	if !ok {
		return nil, &badValue{column, "not a date (YYYY-MM-DD)"}
	}
	return &d, nil
}

// number is _agency_csv.number: int(text), else float(text) (finite); nil when empty.
func number(vals []string, k int, column string) (any, *badValue) {
	text := pystr.Strip(vals[k])
	if text == "" {
		return nil, nil
	}
	ascii, ok := pyNumericASCII(text)
	if ok {
		if v, ok := pyInt(ascii); ok {
			return v, nil
		}
	}
	var f float64
	if ok {
		f, ok = pyFloat(ascii)
	}
	if !ok {
		return nil, &badValue{column, "not a number"}
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, &badValue{column, "not a finite number"}
	}
	return f, nil
}

// yes is _agency_csv.yes: Y/YES/TRUE/1 (any case) or N/NO/FALSE/0/empty.
func yes(vals []string, k int, column string) (bool, *badValue) {
	switch pyUpper(pystr.Strip(vals[k])) {
	case "Y", "YES", "TRUE", "1":
		return true, nil
	case "", "N", "NO", "FALSE", "0":
		return false, nil
	}
	return false, &badValue{column, "not a yes/no value (Y or N)"}
}

// pyUpper is str.upper() as far as it matters here: ASCII, and the non-ASCII letters
// whose upper case is all ASCII (ſ -> S); any other non-ASCII letter gives "\x00", which
// matches no yes/no word, as Python's upper case of it would not.
func pyUpper(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch r {
		case 0xdf:
			b = append(b, "SS"...)
		case 0x131:
			b = append(b, 'I')
		case 0x17f:
			b = append(b, 'S')
		case 0xfb00:
			b = append(b, "FF"...)
		case 0xfb01:
			b = append(b, "FI"...)
		case 0xfb02:
			b = append(b, "FL"...)
		case 0xfb03:
			b = append(b, "FFI"...)
		case 0xfb04:
			b = append(b, "FFL"...)
		case 0xfb05, 0xfb06:
			b = append(b, "ST"...)
		default:
			return "\x00"
		}
	}
	return string(b)
}

// pyNumericASCII is _PyUnicode_TransformDecimalAndSpaceToASCII, which int() and float()
// apply first: a Unicode decimal digit becomes its ASCII digit, a space a space; any
// other non-ASCII character makes the text no number.
func pyNumericASCII(s string) (string, bool) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			b = append(b, byte(r))
		case pystr.IsSpace(r):
			b = append(b, ' ')
		default:
			d := pystr.Decimal(r)
			if d < 0 {
				return "", false
			}
			b = append(b, '0'+byte(d))
		}
	}
	return string(b), true
}

// maxStrDigits is sys.get_int_max_str_digits(): int() refuses longer decimal text (and
// number() then tries float()).
const maxStrDigits = 4300

// pyInt is int(text) in base 10 on ASCII text: [sign] digits with single underscores
// between them. An int64 when it fits, else a *big.Int.
func pyInt(s string) (any, bool) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if i >= len(s) {
		return nil, false
	}
	digits := 0
	prev := byte(0)
	for k := i; k < len(s); k++ {
		c := s[k]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '_' && prev >= '0' && prev <= '9' && k+1 < len(s):
		default:
			return nil, false
		}
		prev = c
	}
	if prev == '_' || digits == 0 || digits > maxStrDigits {
		return nil, false
	}
	clean := strings.ReplaceAll(s, "_", "")
	if s[0] == '+' {
		clean = clean[1:]
	}
	if v, err := strconv.ParseInt(clean, 10, 64); err == nil {
		return v, true
	}
	v, ok := new(big.Int).SetString(clean, 10)
	return v, ok
}

// pyFloat is float(text) on ASCII text: single underscores only between digits, then
// [sign] (inf | infinity | nan | digits[.digits][e[sign]digits]), case-insensitive words.
func pyFloat(s string) (float64, bool) {
	if strings.IndexByte(s, '_') >= 0 {
		b := make([]byte, 0, len(s))
		prev := byte(0)
		for k := 0; k < len(s); k++ {
			c := s[k]
			isDigit := c >= '0' && c <= '9'
			if c == '_' {
				if !(prev >= '0' && prev <= '9') {
					return 0, false
				}
			} else {
				if prev == '_' && !isDigit {
					return 0, false
				}
				b = append(b, c)
			}
			prev = c
		}
		if prev == '_' {
			return 0, false
		}
		s = string(b)
	}
	body, neg := s, false
	if body != "" && (body[0] == '+' || body[0] == '-') {
		neg = body[0] == '-'
		body = body[1:]
	}
	switch strings.ToLower(body) {
	case "inf", "infinity":
		if neg {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case "nan":
		return math.NaN(), true
	}
	k, mantDigits := 0, 0
	for k < len(body) && body[k] >= '0' && body[k] <= '9' {
		k++
		mantDigits++
	}
	if k < len(body) && body[k] == '.' {
		k++
		for k < len(body) && body[k] >= '0' && body[k] <= '9' {
			k++
			mantDigits++
		}
	}
	if mantDigits == 0 {
		return 0, false
	}
	if k < len(body) && (body[k] == 'e' || body[k] == 'E') {
		k++
		if k < len(body) && (body[k] == '+' || body[k] == '-') {
			k++
		}
		expDigits := 0
		for k < len(body) && body[k] >= '0' && body[k] <= '9' {
			k++
			expDigits++
		}
		if expDigits == 0 {
			return 0, false
		}
	}
	if k != len(body) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return 0, false
		}
	}
	return f, true
}

// pyFromISOFormat is date.fromisoformat (CPython 3.11's C parser): on the UTF-8 text of
// length 7, 8 or 10, YYYY[-]MM[-]DD or YYYY[-]Www[[-]D]; it does not check that the
// parse used the whole text, hence "20200102xy" is 2020-01-02.
func pyFromISOFormat(s string) (time.Time, bool) {
	n := len(s)
	if n != 7 && n != 8 && n != 10 {
		return time.Time{}, false
	}
	at := func(i int) byte {
		if i < n {
			return s[i]
		}
		return 0
	}
	p := 0
	digits := func(count int) (int, bool) {
		v := 0
		for k := 0; k < count; k++ {
			c := at(p)
			p++
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok := digits(4)
	if !ok {
		return time.Time{}, false
	}
	sep := at(p) == '-'
	if sep {
		p++
	}
	if at(p) == 'W' {
		p++
		week, ok := digits(2)
		if !ok {
			return time.Time{}, false
		}
		day := 1
		if p < n {
			if sep {
				c := at(p)
				p++
				if c != '-' {
					return time.Time{}, false
				}
			}
			if day, ok = digits(1); !ok {
				return time.Time{}, false
			}
		}
		return isoWeekDate(year, week, day)
	}
	month, ok := digits(2)
	if !ok {
		return time.Time{}, false
	}
	if sep {
		c := at(p)
		p++
		if c != '-' {
			return time.Time{}, false
		}
	}
	day, ok := digits(2)
	if !ok {
		return time.Time{}, false
	}
	if year < 1 || month < 1 || month > 12 || day < 1 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // past the month's end
	}
	return t, true
}

// isoWeekDate is CPython's iso_to_ymd, then date()'s year range check.
func isoWeekDate(year, week, day int) (time.Time, bool) {
	if year < 1 {
		return time.Time{}, false // CPython's arithmetic gives no valid date for year 0
	}
	jan1 := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	firstWeekday := (int(jan1.Weekday()) + 6) % 7 // Monday = 0
	if week <= 0 || week >= 53 {
		leap := year%4 == 0 && (year%100 != 0 || year%400 == 0)
		if !(week == 53 && (firstWeekday == 3 || (firstWeekday == 2 && leap))) {
			return time.Time{}, false
		}
	}
	if day <= 0 || day >= 8 {
		return time.Time{}, false
	}
	monday := jan1.AddDate(0, 0, -firstWeekday)
	if firstWeekday > 3 {
		monday = monday.AddDate(0, 0, 7)
	}
	t := monday.AddDate(0, 0, (week-1)*7+day-1)
	if t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, false
	}
	return t, true
}
