package readers

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// The vectors come from native/testdata/gen_readers_csv.py (the real Python readers).
const csvVectors = "../testdata/readers_csv_vectors.json"

type csvVectorFile struct {
	Cases []struct {
		Name    string            `json:"name"`
		Kind    string            `json:"kind"`
		Input   string            `json:"input"`
		Mapping record.Mapping    `json:"mapping"`
		Size    int               `json:"size"`
		Events  []json.RawMessage `json:"events"`
	} `json:"cases"`
	Indicators []struct {
		Indicators []struct {
			Code  string          `json:"code"`
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
			Date  *string         `json:"date"`
		} `json:"indicators"`
		JSON string `json:"json"`
	} `json:"indicators"`
	Unique []struct {
		Batches []struct {
			LocalIDs     []*string `json:"local_ids"`
			Kept         []int     `json:"kept"`
			RejectsSoFar int       `json:"rejects_so_far"`
		} `json:"batches"`
		Rejects [][]any `json:"rejects"`
	} `json:"unique"`
}

// batchList is a record.Reader over given batches.
type batchList struct{ batches []*record.Batch }

func (l *batchList) Next() (*record.Batch, error) {
	if len(l.batches) == 0 {
		return nil, nil
	}
	b := l.batches[0]
	l.batches = l.batches[1:]
	return b, nil
}

func (l *batchList) Close() error { return nil }

func TestUniqueMatchesPython(t *testing.T) {
	v := loadCSVVectors(t)
	for k, run := range v.Unique {
		var rejects [][]any
		list := &batchList{}
		row := 0
		for _, b := range run.Batches {
			batch := &record.Batch{Columns: map[string][]*string{"local_id": b.LocalIDs}}
			for range b.LocalIDs {
				row++
				batch.RowNumbers = append(batch.RowNumbers, row)
			}
			list.batches = append(list.batches, batch)
		}
		u := newUnique(list, func(r record.Reject) { rejects = append(rejects, []any{float64(r.Row), r.Field, r.Reason}) })
		for i, want := range run.Batches {
			b, err := u.Next()
			if err != nil || b == nil {
				t.Fatalf("run %d batch %d: %v %v", k, i, b, err)
			}
			if fmt.Sprint(b.RowNumbers) != fmt.Sprint(want.Kept) || len(rejects) != want.RejectsSoFar {
				t.Errorf("run %d batch %d: kept %v (%d rejects), python %v (%d)", k, i, b.RowNumbers, len(rejects), want.Kept, want.RejectsSoFar)
			}
		}
		if fmt.Sprint(rejects) != fmt.Sprint(run.Rejects) {
			t.Errorf("run %d: rejects %v, python %v", k, rejects, run.Rejects)
		}
	}
}

func loadCSVVectors(t testing.TB) *csvVectorFile {
	data, err := os.ReadFile(csvVectors)
	if err != nil {
		t.Fatalf("%v (run: cd /work/main && .venv/bin/python native/testdata/gen_readers_csv.py)", err)
	}
	var v csvVectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// event is one thing the caller sees: a batch, a reject or the error that ends the read.
type event struct {
	Batch *struct {
		Rows       []int                `json:"rows"`
		Columns    map[string][]*string `json:"columns"`
		Indicators *[]string            `json:"indicators"`
	} `json:"batch,omitempty"`
	Reject []any `json:"reject,omitempty"`
	Error  *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// canon renders an event as comparable text (empty and nil lists alike, None apart).
func canon(e event) string {
	var b strings.Builder
	switch {
	case e.Batch != nil:
		fmt.Fprintf(&b, "batch rows=%v", e.Batch.Rows)
		names := make([]string, 0, len(e.Batch.Columns))
		for n := range e.Batch.Columns {
			names = append(names, n)
		}
		sortStrings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "\n  %s:", n)
			for _, v := range e.Batch.Columns[n] {
				if v == nil {
					b.WriteString(" None")
				} else {
					b.WriteString(" " + strconv.Quote(*v))
				}
			}
		}
		if e.Batch.Indicators == nil {
			b.WriteString("\n  indicators: None")
		} else {
			for _, s := range *e.Batch.Indicators {
				b.WriteString("\n  ind " + s)
			}
		}
	case e.Reject != nil:
		fmt.Fprintf(&b, "reject %v", e.Reject)
	case e.Error != nil:
		fmt.Fprintf(&b, "error %s: %s", e.Error.Type, e.Error.Message)
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// runGo reads a case with the Go reader and returns its events in order.
func runGo(kind, input string, mapping record.Mapping, size int) []string {
	var out []string
	sink := func(r record.Reject) {
		out = append(out, canon(event{Reject: []any{float64(r.Row), r.Field, r.Reason}}))
	}
	fail := func(err error) {
		var se *SourceError
		var me *MappingError
		e := event{Error: &struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}{Message: err.Error()}}
		switch {
		case errors.As(err, &se):
			e.Error.Type = "source"
		case errors.As(err, &me):
			e.Error.Type = "mapping"
		default:
			e.Error.Type = fmt.Sprintf("other %T", err)
		}
		out = append(out, canon(e))
	}
	r, err := Open(kind, input, mapping, size, sink)
	if err != nil {
		fail(err)
		return out
	}
	defer r.Close()
	for {
		b, err := r.Next()
		if err != nil {
			fail(err)
			return out
		}
		if b == nil {
			return out
		}
		var e event
		e.Batch = &struct {
			Rows       []int                `json:"rows"`
			Columns    map[string][]*string `json:"columns"`
			Indicators *[]string            `json:"indicators"`
		}{Rows: b.RowNumbers, Columns: b.Columns}
		if b.Indicators != nil {
			inds := b.Indicators
			e.Batch.Indicators = &inds
		}
		if len(b.RowNumbers) != len(b.Indicators) && b.Indicators != nil {
			panic("indicators out of step with rows")
		}
		out = append(out, canon(e))
	}
}

func TestCSVReadersMatchPython(t *testing.T) {
	v := loadCSVVectors(t)
	if len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	passed := 0
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			want := make([]string, len(c.Events))
			for i, raw := range c.Events {
				var e event
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatal(err)
				}
				want[i] = canon(e)
			}
			got := runGo(c.Kind, c.Input, c.Mapping, c.Size)
			for i := 0; i < len(want) || i < len(got); i++ {
				var w, g string
				if i < len(want) {
					w = want[i]
				}
				if i < len(got) {
					g = got[i]
				}
				if w != g {
					t.Fatalf("event %d of %d/%d differs:\npython: %.3000s\ngo:     %.3000s", i, len(want), len(got), w, g)
				}
			}
			passed++
		})
	}
	t.Logf("%d of %d vector cases pass", passed, len(v.Cases))
}

// TestCSVReadersTinyBuffers replays the vectors with read buffers of a few bytes, so that
// a CR, a quote, a multi-byte character or the field limit falls across a refill.
func TestCSVReadersTinyBuffers(t *testing.T) {
	v := loadCSVVectors(t)
	defer func(n int) { csvReadSize = n }(csvReadSize)
	for _, size := range []int{1, 2, 3, 5, 64} {
		csvReadSize = size
		for _, c := range v.Cases {
			want := make([]string, len(c.Events))
			for i, raw := range c.Events {
				var e event
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatal(err)
				}
				want[i] = canon(e)
			}
			got := runGo(c.Kind, c.Input, c.Mapping, c.Size)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("buffer %d, %s: differs from Python", size, c.Name)
			}
		}
	}
}

func TestIndicatorsJSONMatchesPython(t *testing.T) {
	v := loadCSVVectors(t)
	for k, c := range v.Indicators {
		inds := make([]Indicator, len(c.Indicators))
		for i, ind := range c.Indicators {
			inds[i].Code = ind.Code
			if ind.Date != nil {
				d, err := time.Parse("2006-01-02", *ind.Date)
				if err != nil {
					t.Fatal(err)
				}
				inds[i].Date = &d
			}
			var s string
			_ = json.Unmarshal(ind.Value, &s)
			switch ind.Type {
			case "float":
				raw, _ := hex.DecodeString(s)
				var bits uint64
				for j := 7; j >= 0; j-- {
					bits = bits<<8 | uint64(raw[j])
				}
				inds[i].Value = math.Float64frombits(bits)
			case "str":
				inds[i].Value = s
			case "int":
				n, _ := new(big.Int).SetString(s, 10)
				if n.IsInt64() {
					inds[i].Value = n.Int64()
				} else {
					inds[i].Value = n
				}
			case "bool":
				var b bool
				_ = json.Unmarshal(ind.Value, &b)
				inds[i].Value = b
			case "none":
			}
		}
		if got := IndicatorsJSON(inds); got != c.JSON {
			t.Errorf("case %d:\npython: %s\ngo:     %s", k, c.JSON, got)
		}
	}
}

func TestPyHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"a//b/./c/": "a/b/c", "./x": "x", "": ".", "/": "/", "//a": "//a", "///a": "/a", "../a/../b": "../a/../b", ".": ".",
	} {
		if got := pyPath(in); got != want {
			t.Errorf("pyPath(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"it's": `"it's"`, `a"b'c`: `'a"b\'c'`, "a\tb\x01\u00a0\u200b\U0001F600é\\": `'a\tb\x01\xa0\u200b` + "\U0001F600é" + `\\'`,
	} {
		if got := pystr.Repr(in, pystr.SurrogateEscape); got != want {
			t.Errorf("pystr.Repr(%q, pystr.SurrogateEscape) = %s, want %s", in, got, want)
		}
	}
	if got := pystr.Strip("\x1c\u3000 a b\u00a0\u0085\t"); got != "a b" {
		t.Errorf("pyStrip: %q", got)
	}
}

// BenchmarkDWPRead reads a ~200k-row DWP extract made from the synthetic sample (rows
// repeated with fresh claimant ids) and reports rows/s.
func BenchmarkDWPRead(b *testing.B) {
	sample, err := os.ReadFile("../testdata/readers_csv/dwp_synth.csv")
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimRight(string(sample), "\n")+"\n", "\n")
	header, rows := lines[0], lines[1:len(lines)-1]
	const n = 200_000
	var sb strings.Builder
	sb.Grow(n * (len(sample) / len(rows)))
	sb.WriteString(header)
	for i := 0; i < n; i++ {
		row := rows[i%len(rows)]
		fmt.Fprintf(&sb, "CLM%08d", i+1)
		sb.WriteString(row[strings.IndexByte(row, ','):])
	}
	path := filepath.Join(b.TempDir(), "dwp.csv")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	mapping := dwpDefaultMapping()
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		rejected := 0
		r, err := Open("dwp", path, mapping, 20000, func(record.Reject) { rejected++ })
		if err != nil {
			b.Fatal(err)
		}
		total := 0
		for {
			batch, err := r.Next()
			if err != nil {
				b.Fatal(err)
			}
			if batch == nil {
				break
			}
			total += batch.Len()
		}
		r.Close()
		if total+rejected != n {
			b.Fatalf("read %d + %d rows of %d", total, rejected, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// dwpDefaultMapping is dwp.DEFAULT_MAPPING.
func dwpDefaultMapping() record.Mapping {
	dmy := "%d/%m/%Y"
	one := func(c string) record.FieldSpec { return record.FieldSpec{Columns: []string{c}, Validate: true} }
	return record.Mapping{
		"local_id": one("claimant_id"), "nino": one("nino"), "given_name": one("forename"),
		"middle_names": one("middle_names"), "family_name": one("surname"),
		"date_of_birth": {Columns: []string{"date_of_birth"}, Format: &dmy, Validate: true},
		"sex":           one("sex"), "postcode": one("postcode"),
		"address":  {Columns: []string{"address_line_1", "address_line_2"}, Validate: true},
		"locality": one("town"),
	}
}
