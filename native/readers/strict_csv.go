package readers

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// This file ports connectors/sources/_strict_csv.py: Python's csv module (excel dialect,
// strict=True) over a file opened with encoding="utf-8-sig", errors="surrogateescape",
// newline="", plus the header checks, the width and repeated-header checks per row and
// the UTF-8 check per chunk, with the same messages. The parser is hand-rolled because
// encoding/csv differs from Python's csv (a quote inside an unquoted field, `"a" b`,
// line counting, lone CR line ends, the field size limit), and the messages name lines.

// csvFieldLimit is csv.field_size_limit()'s default, counted in characters.
const csvFieldLimit = 131072

// csvError is a csv.Error: the text is Python's.
type csvError struct{ msg string }

func (e *csvError) Error() string { return e.msg }

const (
	stStartRecord = iota
	stStartField
	stInField
	stInQuoted
	stQuoteInQuoted
	stEatCRNL
)

// Bytes that end a run of plain characters in an unquoted / a quoted field.
var unquotedStop, quotedStop [256]bool

func init() {
	for _, c := range []byte{',', '\n', '\r'} {
		unquotedStop[c] = true
	}
	for _, c := range []byte{'"', '\n', '\r'} {
		quotedStop[c] = true
	}
}

// csvParser is CPython's Modules/_csv.c reader state machine over bytes. Python splits
// the text into lines at \n, \r\n and lone \r (newline=""), feeds each line's characters
// and then an end-of-line event, and counts lines as it fetches them (line_num); the
// structural characters are all ASCII, so working on the UTF-8 bytes is the same.
type csvParser struct {
	src      io.Reader
	buf      []byte
	pos, end int
	srcDone  bool
	ioErr    error
	consumed int64 // bytes read from src so far

	lineNum   int
	inLine    bool // a line has begun and its end-of-line event is still to come
	crPending bool // the line's last byte so far is \r: a \n next belongs to it

	state      int
	rec        []byte // the record's field bytes, one after the other
	ends       []int  // end offset in rec of each saved field
	fieldStart int
	// Characters of the current field counted so far (only once it is longer than the
	// limit in bytes): Python's limit counts characters, an undecodable byte as one.
	limitAt, limitRunes int
}

// csvReadSize is the parser's read buffer (a variable so that the tests can make every
// buffer boundary fall everywhere).
var csvReadSize = 256 << 10

func newCSVParser(src io.Reader, initial []byte) *csvParser {
	buf := make([]byte, max(csvReadSize, len(initial)))
	n := copy(buf, initial)
	return &csvParser{src: src, buf: buf, end: n}
}

func (p *csvParser) fill() bool {
	if p.srcDone {
		return false
	}
	for {
		n, err := p.src.Read(p.buf)
		p.pos, p.end = 0, n
		p.consumed += int64(n)
		if err != nil {
			p.srcDone = true
			if err != io.EOF {
				p.ioErr = err
			}
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// field returns the j-th field of the record just read.
func (p *csvParser) field(j int) []byte {
	start := 0
	if j > 0 {
		start = p.ends[j-1]
	}
	return p.rec[start:p.ends[j]]
}

// readRecord reads the next record into rec/ends: false at the end of the input, a
// *csvError (Python's message) for malformed CSV.
func (p *csvParser) readRecord() (bool, error) {
	p.rec, p.ends = p.rec[:0], p.ends[:0]
	p.fieldStart, p.limitAt, p.limitRunes = 0, 0, 0
	p.state = stStartRecord
	for {
		if p.pos >= p.end && !p.fill() {
			if p.ioErr != nil {
				return false, p.ioErr
			}
			if p.inLine {
				p.inLine, p.crPending = false, false
				if err := p.eol(); err != nil {
					return false, err
				}
				if p.state == stStartRecord {
					return true, nil
				}
			}
			if p.state == stInQuoted {
				if err := p.checkLimit(true); err != nil {
					return false, err
				}
				return false, &csvError{"unexpected end of data"}
			}
			return false, nil
		}
		if p.crPending {
			p.crPending = false
			if p.buf[p.pos] == '\n' {
				p.pos++
				if err := p.char('\n'); err != nil {
					return false, err
				}
			}
			p.inLine = false
			if err := p.eol(); err != nil {
				return false, err
			}
			if p.state == stStartRecord {
				return true, nil
			}
			continue
		}
		if !p.inLine {
			p.inLine = true
			p.lineNum++
		}
		// Runs of plain characters are copied at once; a plain character that starts a
		// field starts such a run, and the comma after one ends the field here (both
		// what char would do, without a call per byte).
		if (p.state == stStartField || p.state == stStartRecord) && !unquotedStop[p.buf[p.pos]] && p.buf[p.pos] != '"' {
			p.state = stInField
		}
		var stop *[256]bool
		switch p.state {
		case stInField:
			stop = &unquotedStop
		case stInQuoted:
			stop = &quotedStop
		}
		if stop != nil {
			i := p.pos
			for i < p.end && !stop[p.buf[i]] {
				i++
			}
			if i > p.pos {
				p.rec = append(p.rec, p.buf[p.pos:i]...)
				p.pos = i
				if len(p.rec)-p.fieldStart > csvFieldLimit {
					if err := p.checkLimit(false); err != nil {
						return false, err
					}
				}
				if i < p.end && p.buf[i] == ',' && p.state == stInField {
					p.pos++
					p.state = stStartField
					if err := p.saveField(); err != nil {
						return false, err
					}
				}
				continue
			}
		}
		c := p.buf[p.pos]
		p.pos++
		if err := p.char(c); err != nil {
			return false, err
		}
		switch c {
		case '\n':
			p.inLine = false
			if err := p.eol(); err != nil {
				return false, err
			}
			if p.state == stStartRecord {
				return true, nil
			}
		case '\r':
			p.crPending = true
		}
	}
}

// char is parse_process_char for one character of a line.
func (p *csvParser) char(c byte) error {
	switch p.state {
	case stStartRecord:
		if c == '\n' || c == '\r' {
			p.state = stEatCRNL
			return nil
		}
		p.state = stStartField
		fallthrough
	case stStartField:
		switch c {
		case '\n', '\r':
			p.state = stEatCRNL
			return p.saveField()
		case '"':
			p.state = stInQuoted
		case ',':
			return p.saveField()
		default:
			p.state = stInField
			return p.addChar(c)
		}
	case stInField:
		switch c {
		case '\n', '\r':
			p.state = stEatCRNL
			return p.saveField()
		case ',':
			p.state = stStartField
			return p.saveField()
		default:
			return p.addChar(c)
		}
	case stInQuoted:
		if c == '"' {
			p.state = stQuoteInQuoted
			return nil
		}
		return p.addChar(c)
	case stQuoteInQuoted:
		switch c {
		case '"':
			p.state = stInQuoted
			return p.addChar(c)
		case ',':
			p.state = stStartField
			return p.saveField()
		case '\n', '\r':
			p.state = stEatCRNL
			return p.saveField()
		default:
			return &csvError{`',' expected after '"'`}
		}
	case stEatCRNL:
		if c != '\n' && c != '\r' {
			return &csvError{"new-line character seen in unquoted field - do you need to open the file with newline=''?"}
		}
	}
	return nil
}

// eol is parse_process_char(EOL): the end of a line.
func (p *csvParser) eol() error {
	switch p.state {
	case stStartField, stInField, stQuoteInQuoted:
		p.state = stStartRecord
		return p.saveField()
	case stEatCRNL:
		p.state = stStartRecord
	}
	return nil
}

func (p *csvParser) addChar(c byte) error {
	p.rec = append(p.rec, c)
	if len(p.rec)-p.fieldStart > csvFieldLimit {
		return p.checkLimit(false)
	}
	return nil
}

func (p *csvParser) saveField() error {
	if len(p.rec)-p.fieldStart > csvFieldLimit {
		if err := p.checkLimit(true); err != nil {
			return err
		}
	}
	p.ends = append(p.ends, len(p.rec))
	p.fieldStart, p.limitAt, p.limitRunes = len(p.rec), len(p.rec), 0
	return nil
}

// checkLimit counts the current field's characters as Python decoded them (a byte that
// is not UTF-8 is one character); an incomplete sequence at the end waits for its next
// byte unless `final`. Python fails on adding the character past the limit.
func (p *csvParser) checkLimit(final bool) error {
	if p.limitAt < p.fieldStart {
		p.limitAt, p.limitRunes = p.fieldStart, 0
	}
	for p.limitAt < len(p.rec) {
		rest := p.rec[p.limitAt:]
		if !final && !utf8.FullRune(rest) {
			break
		}
		_, n := utf8.DecodeRune(rest)
		p.limitAt += n
		p.limitRunes++
		if p.limitRunes > csvFieldLimit {
			return &csvError{fmt.Sprintf("field larger than field limit (%d)", csvFieldLimit)}
		}
	}
	return nil
}

// csvTable is _strict_csv.CsvTable plus data_chunks' position (row number, last line).
type csvTable struct {
	path      string // as Python prints Path(input)
	header    []string
	rawHeader []string
	file      *os.File
	p         *csvParser
	rowNumber int
	last      int
}

func (t *csvTable) Close() error { return t.file.Close() }

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// openCSV is _strict_csv.open_csv: open `input`, check its header (then check(header),
// the reader's own checks); a *SourceError naming the file when it cannot be used.
func openCSV(input string, check func(header []string) error) (*csvTable, error) {
	path := pyPath(input)
	f, err := os.Open(path)
	if err == nil {
		if st, serr := f.Stat(); serr == nil && st.IsDir() {
			f.Close()
			err = &os.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
		}
	}
	if err != nil {
		return nil, &SourceError{Msg: path + ": cannot read: " + strerror(err)}
	}
	t, err := readHeader(f, path, check)
	if err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

func readHeader(f *os.File, path string, check func(header []string) error) (*csvTable, error) {
	// utf-8-sig: a byte order mark at the very start is not text.
	var head [3]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	initial := head[:n]
	if n == 3 && string(initial) == string(utf8BOM) {
		initial = nil
	}
	p := newCSVParser(f, initial)
	ok, err := p.readRecord()
	if err != nil {
		var ce *csvError
		if errors.As(err, &ce) {
			return nil, &SourceError{Msg: path + ": header (line 1): malformed CSV: " + ce.msg}
		}
		return nil, err
	}
	raw := make([]string, len(p.ends))
	anyName := false
	for j := range raw {
		raw[j] = string(p.field(j))
		if pystr.Strip(raw[j]) != "" {
			anyName = true
		}
	}
	if !ok || len(raw) == 0 || !anyName {
		return nil, &SourceError{Msg: path + ": empty file or no header row"}
	}
	if p.lineNum != 1 {
		return nil, &SourceError{Msg: fmt.Sprintf("%s: header spans lines 1-%d: an unterminated quote?", path, p.lineNum)}
	}
	if !utf8.Valid(p.rec) {
		return nil, &SourceError{Msg: path + ": not a readable UTF-8 CSV file: the header (line 1) holds bytes that are not UTF-8"}
	}
	header := make([]string, len(raw))
	var unnamed []string
	for j, h := range raw {
		header[j] = pystr.Strip(h)
		if header[j] == "" {
			unnamed = append(unnamed, strconv.Itoa(j+1))
		}
	}
	if len(unnamed) > 0 && len(header) > 1 {
		return nil, &SourceError{Msg: fmt.Sprintf("%s: header: column(s) %s have no name", path, strings.Join(unnamed, ", "))}
	}
	seen := make(map[string]int, len(header))
	var duplicated []string
	for k, name := range header {
		if first, dup := seen[name]; dup {
			duplicated = append(duplicated, fmt.Sprintf("%s (columns %d and %d)", pystr.Repr(name, pystr.SurrogateEscape), first, k+1))
			continue
		}
		seen[name] = k + 1
	}
	if len(duplicated) > 0 {
		return nil, &SourceError{Msg: fmt.Sprintf("%s: header: duplicate column name(s) %s", path, strings.Join(duplicated, ", "))}
	}
	if check != nil {
		if err := check(header); err != nil {
			return nil, err
		}
	}
	return &csvTable{path: path, header: header, rawHeader: raw, file: f, p: p, last: p.lineNum}, nil
}

// requireMappedColumns is require_mapped_columns: Mapping.check_columns' MappingError,
// raised as a SourceError by the CSV readers.
func requireMappedColumns(mapping record.Mapping, header []string, path string) error {
	have := make(map[string]bool, len(header))
	for _, h := range header {
		have[h] = true
	}
	var missing []string
	for _, spec := range mapping {
		for _, c := range spec.Columns {
			if !have[c] {
				missing = append(missing, c)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &SourceError{Msg: fmt.Sprintf("%s: mapped column(s) not found: %s", path, strings.Join(sortedSet(missing), ", "))}
}

// csvChunk holds up to `size` well-formed data rows: each row's text once (one string),
// its fields as offsets into it.
type csvChunk struct {
	width   int
	numbers []int
	texts   []string
	ends    []int32 // width per row
	badUTF8 string  // the message for the first row holding bytes that are not UTF-8
}

func (c *csvChunk) reset(width int) {
	c.width = width
	c.numbers = c.numbers[:0]
	c.texts = c.texts[:0]
	c.ends = c.ends[:0]
	c.badUTF8 = ""
}

func (c *csvChunk) len() int { return len(c.numbers) }

// value is field j of row i.
func (c *csvChunk) value(i, j int) string {
	base := i * c.width
	start := int32(0)
	if j > 0 {
		start = c.ends[base+j-1]
	}
	return c.texts[i][start:c.ends[base+j]]
}

// nextChunk is one step of data_chunks: up to `size` well-formed rows into c (false at
// the end of the file). A row of the wrong width or repeating the header goes to
// `rejects`; malformed CSV and bytes that are not UTF-8 are a *SourceError naming the row
// and line, the latter raised, as in Python, only once the chunk holding it is complete.
func (t *csvTable) nextChunk(size int, rejects record.RejectSink, c *csvChunk) (bool, error) {
	p, width := t.p, len(t.header)
	c.reset(width)
	for {
		ok, err := p.readRecord()
		if err != nil {
			var ce *csvError
			if errors.As(err, &ce) {
				return false, &SourceError{Msg: malformed(t.path, t.rowNumber+1, t.last+1, p.lineNum, ce.msg)}
			}
			return false, err
		}
		if !ok {
			break
		}
		n := len(p.ends)
		if n == width && !t.repeatsHeader() {
			t.rowNumber++
			c.numbers = append(c.numbers, t.rowNumber)
			text := string(p.rec)
			c.texts = append(c.texts, text)
			for _, e := range p.ends {
				c.ends = append(c.ends, int32(e))
			}
			if c.badUTF8 == "" && !utf8.ValidString(text) {
				c.badUTF8 = t.notUTF8(c, c.len()-1, t.last+1)
			}
			t.last = p.lineNum
			if c.len() >= size {
				break
			}
			continue
		}
		first, spanned := t.last+1, p.lineNum-t.last
		t.last = p.lineNum
		if n == 0 || (n == 1 && pystr.Strip(string(p.field(0))) == "") {
			continue // a blank line is not a row
		}
		t.rowNumber++
		switch {
		case n == width:
			rejects(record.Reject{Row: t.rowNumber, Field: "(row)", Reason: "repeats the header row (files joined together?)"})
		case spanned > 1:
			return false, &SourceError{Msg: fmt.Sprintf(
				"%s: row %d (lines %d-%d): a quoted field runs over %d lines and the row has %d values for %d columns: an unterminated quote?",
				t.path, t.rowNumber, first, first+spanned-1, spanned, n, width)}
		default:
			rejects(record.Reject{Row: t.rowNumber, Field: "(row)", Reason: fmt.Sprintf("%d values, the header has %d columns", n, width)})
		}
	}
	if c.badUTF8 != "" {
		return false, &SourceError{Msg: c.badUTF8}
	}
	return c.len() > 0, nil
}

func (t *csvTable) repeatsHeader() bool {
	for j, h := range t.rawHeader {
		if string(t.p.field(j)) != h {
			return false
		}
	}
	return true
}

// notUTF8 is _check_decoded's message for row i of the chunk (first line `line`).
func (t *csvTable) notUTF8(c *csvChunk, i, line int) string {
	for j, name := range t.header {
		v := c.value(i, j)
		for k := 0; k < len(v); {
			r, size := utf8.DecodeRuneInString(v[k:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Sprintf("%s: row %d (line %d), column %s: not UTF-8 text (byte 0x%02X); is the file in another encoding, e.g. Latin-1? Convert it to UTF-8",
					t.path, c.numbers[i], line, pystr.Repr(name, pystr.SurrogateEscape), v[k])
			}
			k += size
		}
	}
	return ""
}

// malformed is _strict_csv._malformed.
func malformed(path string, row, firstLine, line int, msg string) string {
	if strings.Contains(msg, "unexpected end of data") {
		return fmt.Sprintf("%s: row %d (line %d): unterminated quote: the quoted field runs to the end of the file (line %d)",
			path, row, firstLine, line)
	}
	if strings.Contains(msg, "field larger than field limit") {
		return fmt.Sprintf("%s: row %d (line %d): a field runs past line %d and over %d characters: an unterminated quote?",
			path, row, firstLine, line, csvFieldLimit)
	}
	spans := ""
	if line > firstLine {
		spans = fmt.Sprintf(" (the row runs from line %d to %d: an unterminated quote?)", firstLine, line)
	}
	return fmt.Sprintf("%s: row %d (line %d): malformed CSV: %s%s", path, row, firstLine, msg, spans)
}
