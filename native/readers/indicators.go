package readers

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Indicator mirrors connectors.records.Indicator. Value is nil, string, bool, float64,
// an integer (int64, int, int32, or *big.Int for a count beyond int64, as Python's int is
// unbounded).
type Indicator struct {
	Code  string
	Value any
	Date  *time.Time
}

// IndicatorsJSON mirrors connectors.content.indicators_json: the list as compact JSON with
// sorted keys ({"code","date","value"}), byte for byte what Python's
// json.dumps(..., separators=(",", ":"), sort_keys=True) gives: its float repr, its
// string escaping with ensure_ascii, a date as its isoformat(). The content plaintext is
// compared byte for byte across engines, so nothing here may differ from Python.
func IndicatorsJSON(inds []Indicator) string {
	if len(inds) == 0 {
		return "[]"
	}
	b := make([]byte, 0, 64*len(inds))
	b = append(b, '[')
	for k, ind := range inds {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"code":`...)
		b = appendPyJSONString(b, ind.Code)
		b = append(b, `,"date":`...)
		if ind.Date == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = appendISODate(b, *ind.Date)
			b = append(b, '"')
		}
		b = append(b, `,"value":`...)
		b = appendPyJSONValue(b, ind.Value)
		b = append(b, '}')
	}
	b = append(b, ']')
	return string(b)
}

// appendPyJSONValue writes one scalar as json.dumps does.
func appendPyJSONValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendPyJSONString(b, x)
	case bool:
		if x {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case *big.Int:
		return x.Append(b, 10)
	case float64:
		return appendPyFloat(b, x)
	case float32:
		return appendPyFloat(b, float64(x))
	case time.Time:
		b = append(b, '"')
		b = appendISODate(b, x)
		return append(b, '"')
	case *time.Time:
		if x == nil {
			return append(b, "null"...)
		}
		b = append(b, '"')
		b = appendISODate(b, *x)
		return append(b, '"')
	}
	panic("readers: IndicatorsJSON: unsupported indicator value type")
}

// appendISODate writes date.isoformat(): YYYY-MM-DD, the year zero-padded to 4 digits.
func appendISODate(b []byte, t time.Time) []byte {
	y, m, d := t.Date()
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, int(m), 2)
	b = append(b, '-')
	return appendPadded(b, d, 2)
}

func appendPadded(b []byte, v, width int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// pyFloatRepr is Python's repr(float): the shortest digits that round-trip, exponent
// form exactly when the decimal point position is <= -4 or > 16, ".0" on integral values;
// json.dumps writes NaN and infinities as NaN/Infinity/-Infinity.
func pyFloatRepr(f float64) string { return string(appendPyFloat(nil, f)) }

func appendPyFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(b, "-0.0"...)
		}
		return append(b, "0.0"...)
	}
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64) // [-]d[.ddd]e±XX
	s := string(e)
	neg := false
	if s[0] == '-' {
		neg = true
		s = s[1:]
	}
	ei := strings.IndexByte(s, 'e')
	mant, expText := s[:ei], s[ei+1:]
	exp, _ := strconv.Atoi(expText)
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		// Go's 'e' form is Python's: at least two exponent digits, sign always.
		return append(b, e...)
	}
	digits := strings.Replace(mant, ".", "", 1)
	if neg {
		b = append(b, '-')
	}
	switch {
	case decpt <= 0:
		b = append(b, "0."...)
		for i := 0; i < -decpt; i++ {
			b = append(b, '0')
		}
		b = append(b, digits...)
	case decpt >= len(digits):
		b = append(b, digits...)
		for i := len(digits); i < decpt; i++ {
			b = append(b, '0')
		}
		b = append(b, ".0"...)
	default:
		b = append(b, digits[:decpt]...)
		b = append(b, '.')
		b = append(b, digits[decpt:]...)
	}
	return b
}

const hexLower = "0123456789abcdef"

// appendPyJSONString writes s as json.dumps(ensure_ascii=True) does: short escapes for
// \" \\ \n \r \t \b \f, \u00XX for other controls and everything outside space..~,
// surrogate pairs above U+FFFF. A byte that is not UTF-8 is written as the lone surrogate
// Python's "surrogateescape" decoding would have made of it (\udcXX).
func appendPyJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				b = append(b, `\"`...)
			case '\\':
				b = append(b, `\\`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			default:
				b = appendU4(b, rune(c))
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = appendU4(b, 0xdc00+rune(c))
		} else if r > 0xffff {
			r -= 0x10000
			b = appendU4(b, 0xd800+(r>>10))
			b = appendU4(b, 0xdc00+(r&0x3ff))
		} else {
			b = appendU4(b, r)
		}
		i += n
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendU4(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexLower[r>>12&0xf], hexLower[r>>8&0xf], hexLower[r>>4&0xf], hexLower[r&0xf])
}
