package readers

import (
	"fmt"
	"strings"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// The `csv` kind (connectors/sources/generic_csv.py): any CSV file with a user's mapping;
// without one, the columns named like the identity fields; without a local_id column the
// row number is the local id. No indicators.

func init() {
	register("csv", openGenericCSV)
}

func openGenericCSV(input string, mapping record.Mapping, size int, rejects record.RejectSink) (record.Reader, error) {
	path := pyPath(input)
	chosen := mapping
	check := func(header []string) error {
		if len(mapping) == 0 {
			chosen = identityNamed(header)
			if len(chosen) <= 1 {
				return &SourceError{Msg: fmt.Sprintf(
					"%s: no identity columns found (expected columns named like %s, or give --mapping)",
					path, strings.Join(record.IdentityFields[1:], ", "))}
			}
		}
		return requireMappedColumns(chosen, header, path)
	}
	t, err := openCSV(input, check)
	if err != nil {
		return nil, err
	}
	_, hasLocalID := chosen["local_id"]
	return &csvReader{t: t, size: size, rejects: rejects, pickers: columnPickers(chosen, t.header), rowLocalID: !hasLocalID}, nil
}

// identityNamed is generic_csv._identity_named: the header's columns named like an
// identity field, each mapped to itself.
func identityNamed(header []string) record.Mapping {
	have := make(map[string]bool, len(header))
	for _, h := range header {
		have[h] = true
	}
	m := record.Mapping{}
	for _, name := range record.IdentityFields {
		if have[name] {
			m[name] = record.FieldSpec{Columns: []string{name}, Validate: true}
		}
	}
	return m
}

// columnPicker is generic_csv._column_picker: one identity field's value per row, as
// FieldSpec.pick gives it (stripped, None when empty; several columns joined with a
// space, empty ones left out).
type columnPicker struct {
	name string
	idx  []int
}

func columnPickers(mapping record.Mapping, header []string) []columnPicker {
	at := make(map[string]int, len(header))
	for j := len(header) - 1; j >= 0; j-- {
		at[header[j]] = j // header.index(): the first
	}
	out := make([]columnPicker, 0, len(mapping))
	for name, spec := range mapping {
		idx := make([]int, len(spec.Columns))
		for k, c := range spec.Columns {
			idx[k] = at[c]
		}
		out = append(out, columnPicker{name: name, idx: idx})
	}
	return out
}

// pick cuts the field's column out of rows `rows` of the chunk (nil = all of them).
func (cp *columnPicker) pick(c *csvChunk, rows []int) []*string {
	n := c.len()
	if rows != nil {
		n = len(rows)
	}
	vals := make([]string, n)
	out := make([]*string, n)
	for k := 0; k < n; k++ {
		i := k
		if rows != nil {
			i = rows[k]
		}
		var v string
		if len(cp.idx) == 1 {
			v = pystr.Strip(c.value(i, cp.idx[0]))
		} else {
			v = cp.joined(c, i)
		}
		if v != "" {
			vals[k] = v
			out[k] = &vals[k]
		}
	}
	return out
}

func (cp *columnPicker) joined(c *csvChunk, i int) string {
	var parts [8]string
	p := parts[:0]
	size := 0
	for _, j := range cp.idx {
		if v := pystr.Strip(c.value(i, j)); v != "" {
			p = append(p, v)
			size += len(v) + 1
		}
	}
	switch len(p) {
	case 0:
		return ""
	case 1:
		return p[0]
	}
	var b strings.Builder
	b.Grow(size)
	for k, v := range p {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(v)
	}
	return b.String()
}

// csvReader yields data_chunks' chunks as batches (the read_batches of generic_csv,
// dwp and housing): identity columns cut per field, and for an agency kind each row's
// indicators JSON, a row whose indicator value is refused left out of its batch.
type csvReader struct {
	t          *csvTable
	size       int
	rejects    record.RejectSink
	pickers    []columnPicker
	rowLocalID bool         // the csv kind without a local_id column: the row number
	agency     *agencyState // nil for the csv kind
	chunk      csvChunk
	done       bool
}

func (r *csvReader) Close() error { return r.t.Close() }

// estimatedRows extrapolates the rows read so far over the file's size.
func (r *csvReader) estimatedRows() int {
	st, err := r.t.file.Stat()
	if err != nil || r.t.p.consumed <= 0 || r.t.rowNumber == 0 {
		return 0
	}
	return int(float64(st.Size()) / float64(r.t.p.consumed) * float64(r.t.rowNumber))
}

func (r *csvReader) Next() (*record.Batch, error) {
	if r.done {
		return nil, nil
	}
	ok, err := r.t.nextChunk(r.size, r.rejects, &r.chunk)
	if err != nil || !ok {
		r.done = true
		return nil, err
	}
	c := &r.chunk
	var rows []int // nil: every row of the chunk
	b := &record.Batch{Columns: make(map[string][]*string, len(r.pickers)+1)}
	if r.agency != nil {
		b.Indicators, rows = r.agency.indicators(c, r.rejects)
	}
	if rows == nil {
		b.RowNumbers = append([]int(nil), c.numbers...)
	} else {
		b.RowNumbers = make([]int, len(rows))
		for k, i := range rows {
			b.RowNumbers[k] = c.numbers[i]
		}
	}
	for k := range r.pickers {
		b.Columns[r.pickers[k].name] = r.pickers[k].pick(c, rows)
	}
	if r.rowLocalID {
		vals := make([]string, len(b.RowNumbers))
		ids := make([]*string, len(b.RowNumbers))
		for k, n := range b.RowNumbers {
			vals[k] = itoa(n)
			ids[k] = &vals[k]
		}
		b.Columns["local_id"] = ids
	}
	return b, nil
}
