package readers

// A JSON parser for the NHS reader that behaves like Python's json.loads(bytes) on what
// connectors/sources/nhs.py cares about: the same documents accepted (NaN and Infinity
// included, duplicate keys: the last wins), the same values, and for a bad file the same
// message: the UTF-8 decoding error ('utf-8' codec can't decode ...) or the
// JSONDecodeError of CPython 3.11's C scanner, positions counted in characters. It builds
// a flat tree of spans into the file's bytes (no map, no string until a value is needed),
// which is what makes the native reader fast.

import (
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"
)

type fhirKind uint8

const (
	fjAbsent fhirKind = iota // a key the object lacks (Python's dict.get gives None)
	fjNull
	fjFalse
	fjTrue
	fjNum
	fjStr
	fjArr
	fjObj
)

// fhirNode is one JSON value. Strings are spans of the file (between the quotes),
// decoded only when read; arrays and objects link their children.
type fhirNode struct {
	kind   fhirKind
	esc    bool   // the string value holds a backslash escape
	kesc   bool   // the member's key holds a backslash escape
	s, e   uint32 // string content or number span
	ks, ke uint32 // object member: its key's content span
	first  int32  // first child, -1 for none
	next   int32  // next sibling, -1 for none
}

// fhirDoc is a parsed file: its text (after a UTF-8 BOM) and its nodes (node 0 the root).
type fhirDoc struct {
	data  []byte
	nodes []fhirNode
}

// fhirMaxDepth is how deep Python's json.loads nests containers in the reader before it
// raises RecursionError (the recursion limit less the reader's own frames), measured by
// native/testdata/gen_readers_db.py.
var fhirMaxDepth = 987

// fhirParseError is a JSONDecodeError (pos in bytes of doc.data) or a decoding error.
type fhirParseError struct {
	msg     string
	pos     int
	decode  string // UnicodeDecodeError text when not empty
	tooDeep bool
}

type fhirParser struct {
	data  []byte
	nodes []fhirNode
	depth int
	err   *fhirParseError
}

// fhirParse decodes a file as json.loads(bytes) would, reusing nodes' storage.
func fhirParse(raw []byte, nodes []fhirNode) (*fhirDoc, *fhirParseError) {
	data := raw
	if len(data) >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf {
		data = data[3:] // json.loads(bytes) decodes with 'utf-8-sig'
	} else if fhirOtherEncoding(data) {
		return nil, &fhirParseError{decode: "input is not UTF-8 encoded (UTF-16 or UTF-32 is not read natively)"}
	}
	if msg := fhirCheckUTF8(data); msg != "" {
		return nil, &fhirParseError{decode: msg}
	}
	p := &fhirParser{data: data, nodes: nodes[:0]}
	idx := skipWS(data, 0)
	_, end := p.scanOnce(idx)
	if p.err != nil {
		return nil, p.err
	}
	end = skipWS(data, end)
	if end != len(data) {
		return nil, &fhirParseError{msg: "Extra data", pos: end}
	}
	return &fhirDoc{data: data, nodes: p.nodes}, nil
}

// fhirOtherEncoding is json.detect_encoding choosing UTF-16 or UTF-32.
func fhirOtherEncoding(b []byte) bool {
	if len(b) >= 2 && ((b[0] == 0xfe && b[1] == 0xff) || (b[0] == 0xff && b[1] == 0xfe)) {
		return true
	}
	if len(b) >= 4 {
		return b[0] == 0 || b[1] == 0
	}
	if len(b) == 2 {
		return b[0] == 0 || b[1] == 0
	}
	return false
}

func skipWS(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (p *fhirParser) fail(msg string, pos int) (int32, int) {
	if p.err == nil {
		p.err = &fhirParseError{msg: msg, pos: pos}
	}
	return -1, -1
}

func (p *fhirParser) add(n fhirNode) int32 {
	p.nodes = append(p.nodes, n)
	return int32(len(p.nodes) - 1)
}

// scanOnce is scan_once_unicode: the value at idx, and the index after it.
func (p *fhirParser) scanOnce(idx int) (int32, int) {
	d := p.data
	if idx >= len(d) {
		return p.fail("Expecting value", idx)
	}
	switch d[idx] {
	case '"':
		s, e, esc, next := p.scanString(idx + 1)
		if next < 0 {
			return -1, -1
		}
		return p.add(fhirNode{kind: fjStr, s: uint32(s), e: uint32(e), esc: esc, first: -1, next: -1}), next
	case '{':
		p.depth++
		if p.depth > fhirMaxDepth {
			p.err = &fhirParseError{tooDeep: true}
			return -1, -1
		}
		n, next := p.object(idx + 1)
		p.depth--
		return n, next
	case '[':
		p.depth++
		if p.depth > fhirMaxDepth {
			p.err = &fhirParseError{tooDeep: true}
			return -1, -1
		}
		n, next := p.array(idx + 1)
		p.depth--
		return n, next
	case 'n':
		if hasAt(d, idx, "null") {
			return p.add(fhirNode{kind: fjNull, first: -1, next: -1}), idx + 4
		}
	case 't':
		if hasAt(d, idx, "true") {
			return p.add(fhirNode{kind: fjTrue, first: -1, next: -1}), idx + 4
		}
	case 'f':
		if hasAt(d, idx, "false") {
			return p.add(fhirNode{kind: fjFalse, first: -1, next: -1}), idx + 5
		}
	case 'N':
		if hasAt(d, idx, "NaN") {
			return p.add(fhirNode{kind: fjNum, s: uint32(idx), e: uint32(idx + 3), first: -1, next: -1}), idx + 3
		}
	case 'I':
		if hasAt(d, idx, "Infinity") {
			return p.add(fhirNode{kind: fjNum, s: uint32(idx), e: uint32(idx + 8), first: -1, next: -1}), idx + 8
		}
	case '-':
		if hasAt(d, idx, "-Infinity") {
			return p.add(fhirNode{kind: fjNum, s: uint32(idx), e: uint32(idx + 9), first: -1, next: -1}), idx + 9
		}
	}
	return p.number(idx)
}

func hasAt(d []byte, idx int, lit string) bool {
	return len(d)-idx >= len(lit) && string(d[idx:idx+len(lit)]) == lit
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number is _match_number_unicode (only the span is kept: the reader needs a number's
// type, never its value).
func (p *fhirParser) number(start int) (int32, int) {
	d := p.data
	end := len(d) - 1
	idx := start
	if d[idx] == '-' {
		idx++
		if idx > end {
			return p.fail("Expecting value", start)
		}
	}
	if d[idx] >= '1' && d[idx] <= '9' {
		idx++
		for idx <= end && isDigit(d[idx]) {
			idx++
		}
	} else if d[idx] == '0' {
		idx++
	} else {
		return p.fail("Expecting value", start)
	}
	if idx < end && d[idx] == '.' && isDigit(d[idx+1]) {
		idx += 2
		for idx <= end && isDigit(d[idx]) {
			idx++
		}
	}
	if idx < end && (d[idx] == 'e' || d[idx] == 'E') {
		eStart := idx
		idx++
		if idx < end && (d[idx] == '-' || d[idx] == '+') {
			idx++
		}
		for idx <= end && isDigit(d[idx]) {
			idx++
		}
		if !isDigit(d[idx-1]) {
			idx = eStart
		}
	}
	return p.add(fhirNode{kind: fjNum, s: uint32(start), e: uint32(idx), first: -1, next: -1}), idx
}

// scanString is scanstring_unicode from just after the opening quote: the content span,
// whether it holds an escape, and the index after the closing quote (-1 on error).
func (p *fhirParser) scanString(end int) (s, e int, esc bool, next int) {
	d := p.data
	n := len(d)
	begin := end - 1
	s = end
	for {
		var c byte
		i := end
		for ; i < n; i++ {
			c = d[i]
			if c == '"' || c == '\\' {
				break
			}
			if c <= 0x1f {
				p.fail("Invalid control character at", i)
				return 0, 0, false, -1
			}
		}
		if i >= n {
			p.fail("Unterminated string starting at", begin)
			return 0, 0, false, -1
		}
		if c == '"' {
			return s, i, esc, i + 1
		}
		esc = true
		i++ // the escape's letter
		if i == n {
			p.fail("Unterminated string starting at", begin)
			return 0, 0, false, -1
		}
		c = d[i]
		if c != 'u' {
			end = i + 1
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			default:
				p.fail("Invalid \\escape", end-2)
				return 0, 0, false, -1
			}
			continue
		}
		i++
		end = i + 4
		if end >= n {
			p.fail("Invalid \\uXXXX escape", i-1)
			return 0, 0, false, -1
		}
		cp, ok := hex4(d[i:end])
		if !ok {
			p.fail("Invalid \\uXXXX escape", end-5)
			return 0, 0, false, -1
		}
		if cp >= 0xd800 && cp <= 0xdbff && end+6 < n && d[end] == '\\' && d[end+1] == 'u' {
			if _, ok := hex4(d[end+2 : end+6]); !ok {
				p.fail("Invalid \\uXXXX escape", end+1)
				return 0, 0, false, -1
			}
			if c2, _ := hex4(d[end+2 : end+6]); c2 >= 0xdc00 && c2 <= 0xdfff {
				end += 6
			}
		}
	}
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return r, true
}

func (p *fhirParser) object(idx int) (int32, int) {
	d := p.data
	end := len(d) - 1
	self := p.add(fhirNode{kind: fjObj, first: -1, next: -1})
	last := int32(-1)
	idx = skipWS(d, idx)
	if idx > end || d[idx] != '}' {
		for {
			if idx > end || d[idx] != '"' {
				return p.fail("Expecting property name enclosed in double quotes", idx)
			}
			ks, ke, kesc, next := p.scanString(idx + 1)
			if next < 0 {
				return -1, -1
			}
			idx = skipWS(d, next)
			if idx > end || d[idx] != ':' {
				return p.fail("Expecting ':' delimiter", idx)
			}
			idx = skipWS(d, idx+1)
			v, next := p.scanOnce(idx)
			if v < 0 {
				return -1, -1
			}
			node := &p.nodes[v]
			node.ks, node.ke, node.kesc = uint32(ks), uint32(ke), kesc
			if last < 0 {
				p.nodes[self].first = v
			} else {
				p.nodes[last].next = v
			}
			last = v
			idx = skipWS(d, next)
			if idx <= end && d[idx] == '}' {
				break
			}
			if idx > end || d[idx] != ',' {
				return p.fail("Expecting ',' delimiter", idx)
			}
			idx = skipWS(d, idx+1)
		}
	}
	return self, idx + 1
}

func (p *fhirParser) array(idx int) (int32, int) {
	d := p.data
	end := len(d) - 1
	self := p.add(fhirNode{kind: fjArr, first: -1, next: -1})
	last := int32(-1)
	idx = skipWS(d, idx)
	if idx > end || d[idx] != ']' {
		for {
			v, next := p.scanOnce(idx)
			if v < 0 {
				return -1, -1
			}
			if last < 0 {
				p.nodes[self].first = v
			} else {
				p.nodes[last].next = v
			}
			last = v
			idx = skipWS(d, next)
			if idx <= end && d[idx] == ']' {
				break
			}
			if idx > end || d[idx] != ',' {
				return p.fail("Expecting ',' delimiter", idx)
			}
			idx = skipWS(d, idx+1)
		}
	}
	return self, idx + 1
}

// message is the text Python's exception gives, positions in characters.
func (e *fhirParseError) message(data []byte) string {
	if e.decode != "" {
		return e.decode
	}
	pos := e.pos
	chars := fhirChars(data[:pos])
	line := strings.Count(string(data[:pos]), "\n") + 1
	col := chars + 1
	if nl := strings.LastIndexByte(string(data[:pos]), '\n'); nl >= 0 {
		col = fhirChars(data[nl+1:pos]) + 1
	}
	return fmt.Sprintf("%s: line %d column %d (char %d)", e.msg, line, col, chars)
}

// fhirChars counts the characters of validated (surrogatepass) UTF-8.
func fhirChars(b []byte) int {
	n := 0
	for _, c := range b {
		if c&0xc0 != 0x80 {
			n++
		}
	}
	return n
}

// fhirCheckUTF8 is bytes.decode('utf-8', 'surrogatepass'): "" when it decodes, else the
// UnicodeDecodeError's text for the first bad sequence (CPython's classification).
func fhirCheckUTF8(d []byte) string {
	n := len(d)
	i := 0
	cont := func(c byte) bool { return c&0xc0 == 0x80 }
	for i < n {
		c := d[i]
		if c < 0x80 {
			i++
			continue
		}
		if utf8.FullRune(d[i:]) {
			if _, size := utf8.DecodeRune(d[i:]); size > 1 {
				i += size
				continue
			}
		}
		// Invalid here: classify as CPython's decoder does.
		var reason string
		bad := 1 // bytes the error covers
		switch {
		case c < 0xc2:
			reason = "invalid start byte"
		case c < 0xe0:
			if n-i < 2 {
				reason, bad = "unexpected end of data", n-i
			} else {
				reason = "invalid continuation byte"
			}
		case c < 0xf0:
			if n-i < 3 {
				if n-i >= 2 && (!cont(d[i+1]) || (d[i+1] < 0xa0 && c == 0xe0) || (d[i+1] >= 0xa0 && c == 0xed)) {
					reason = "invalid continuation byte"
				} else {
					reason, bad = "unexpected end of data", n-i
				}
				break
			}
			c2, c3 := d[i+1], d[i+2]
			switch {
			case !cont(c2), c == 0xe0 && c2 < 0xa0:
				reason = "invalid continuation byte"
			case c == 0xed && c2 >= 0xa0:
				if cont(c3) {
					i += 3 // a surrogate: 'surrogatepass' lets it through
					continue
				}
				reason = "invalid continuation byte"
			default:
				reason, bad = "invalid continuation byte", 2
			}
		case c < 0xf5:
			if n-i < 4 {
				switch {
				case n-i < 2:
					reason, bad = "unexpected end of data", n-i
				case !cont(d[i+1]) || (d[i+1] < 0x90 && c == 0xf0) || (d[i+1] >= 0x90 && c == 0xf4):
					reason = "invalid continuation byte"
				case n-i < 3:
					reason, bad = "unexpected end of data", n-i
				case !cont(d[i+2]):
					reason, bad = "invalid continuation byte", 2
				default:
					reason, bad = "unexpected end of data", n-i
				}
				break
			}
			c2, c3, c4 := d[i+1], d[i+2], d[i+3]
			switch {
			case !cont(c2), c == 0xf0 && c2 < 0x90, c == 0xf4 && c2 >= 0x90:
				reason = "invalid continuation byte"
			case !cont(c3):
				reason, bad = "invalid continuation byte", 2
			case !cont(c4):
				reason, bad = "invalid continuation byte", 3
			}
		default:
			reason = "invalid start byte"
		}
		if bad == 1 {
			return fmt.Sprintf("'utf-8' codec can't decode byte 0x%02x in position %d: %s", c, i, reason)
		}
		return fmt.Sprintf("'utf-8' codec can't decode bytes in position %d-%d: %s", i, i+bad-1, reason)
	}
	return ""
}

// str decodes a string node's text (lone surrogates as WTF-8, as the 'surrogatepass'
// bytes Python would hold them as).
func (doc *fhirDoc) str(s, e uint32, esc bool) string {
	raw := doc.data[s:e]
	if !esc {
		return string(raw)
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		c = raw[i+1]
		i += 2
		switch c {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			cp, _ := hex4(raw[i : i+4])
			i += 4
			if cp >= 0xd800 && cp <= 0xdbff && i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if c2, ok := hex4(raw[i+2 : i+6]); ok && c2 >= 0xdc00 && c2 <= 0xdfff {
					cp = 0x10000 + (cp-0xd800)<<10 + (c2 - 0xdc00)
					i += 6
				}
			}
			if cp >= 0xd800 && cp <= 0xdfff {
				b.WriteByte(byte(0xe0 | cp>>12))
				b.WriteByte(byte(0x80 | (cp>>6)&0x3f))
				b.WriteByte(byte(0x80 | cp&0x3f))
			} else {
				b.WriteRune(cp)
			}
		default: // '"', '\\', '/'
			b.WriteByte(c)
		}
	}
	return b.String()
}

// keyIs reports whether member n's key is k.
func (doc *fhirDoc) keyIs(n *fhirNode, k string) bool {
	if !n.kesc {
		return string(doc.data[n.ks:n.ke]) == k
	}
	return doc.str(n.ks, n.ke, true) == k
}

// fhirView is the bytes as a string without a copy, for comparisons that do not keep it.
func fhirView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
