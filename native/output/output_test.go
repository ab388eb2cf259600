package output

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"joinedup/native/record"
)

// The vectors come from native/testdata/gen_output.py (the Python connector's own code).
type vectors struct {
	Refs []struct {
		Key      string   `json:"key"`
		Source   string   `json:"source"`
		LocalIDs []string `json:"local_ids"`
		Split    int      `json:"split"`
		Refs     []string `json:"refs"`
	} `json:"refs"`
	Content []struct {
		Key        string   `json:"key"`
		ExtractID  string   `json:"extract_id"`
		Kind       string   `json:"kind"`
		Source     string   `json:"source"`
		Refs       []string `json:"refs"`
		Area       []string `json:"area"`
		Indicators []string `json:"indicators"`
		Classes    []int    `json:"classes"`
		Plaintexts []string `json:"plaintexts"`
	} `json:"content"`
	CSV struct {
		Rows [][]string `json:"rows"`
		Text string     `json:"text"`
	} `json:"csv"`
	LinkageColumns         []string `json:"linkage_columns"`
	ExtendedLinkageColumns []string `json:"extended_linkage_columns"`
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	data, err := os.ReadFile("../testdata/output_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRefs(t *testing.T) {
	for _, c := range loadVectors(t).Refs {
		key, _ := hex.DecodeString(c.Key)
		r := NewRefs(key, c.Source)
		got := append(r.Of(c.LocalIDs[:c.Split]), r.Of(c.LocalIDs[c.Split:])...)
		if !slices.Equal(got, c.Refs) {
			t.Errorf("source %q: refs\n%v\nwant\n%v", c.Source, got, c.Refs)
		}
	}
}

func TestPlaintexts(t *testing.T) {
	for _, c := range loadVectors(t).Content {
		key, _ := hex.DecodeString(c.Key)
		s, err := newContentSealer(key, c.ExtractID, c.Source, c.Kind, c.Classes)
		if err != nil {
			t.Fatal(err)
		}
		for i, ref := range c.Refs {
			ind := ""
			if c.Indicators != nil {
				ind = c.Indicators[i]
			}
			got := PaddedPlaintext(c.ExtractID, c.Source, c.Kind, ref, c.Area[i], ind, c.Classes)
			if got != c.Plaintexts[i] {
				t.Errorf("kind %q row %d:\n%q\nwant\n%q", c.Kind, i, got, c.Plaintexts[i])
			}
			// The sealed row opens to the same bytes under the AAD Python uses.
			nonce := make([]byte, NonceBytes)
			p := s.plaintext([]byte(ref), c.Area[i], ind)
			ct := s.aead.Seal(nil, nonce, p, []byte(c.ExtractID+"|"+ref))
			block, _ := aes.NewCipher(key)
			g, _ := cipher.NewGCM(block)
			plain, err := g.Open(nil, nonce, ct, []byte(c.ExtractID+"|"+ref))
			if err != nil || string(plain) != c.Plaintexts[i] {
				t.Errorf("kind %q row %d: sealed row does not open to the plaintext (%v)", c.Kind, i, err)
			}
		}
	}
}

func TestPaddedLen(t *testing.T) {
	for _, c := range []struct{ n, want int }{{0, 1024}, {1024, 1024}, {1025, 4096}, {16384, 16384}, {16385, 32768}, {32768, 32768}} {
		if got := PaddedLen(c.n, SizeClasses); got != c.want {
			t.Errorf("PaddedLen(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	if got := PaddedLen(7, nil); got != 7 {
		t.Errorf("PaddedLen without classes = %d", got)
	}
}

func TestCSV(t *testing.T) {
	v := loadVectors(t).CSV
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	c := csvWriter{w: bw}
	for _, r := range v.Rows {
		if err := c.strings(r...); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	if buf.String() != v.Text {
		t.Errorf("csv\n%q\nwant\n%q", buf.String(), v.Text)
	}
}

// A hand-made extract (standing in for the encoder's batches).
type testRow struct {
	ints map[string]*int64
	bins map[string][]byte
	area string
	ind  string
}

type testBatch struct {
	rows []int
	inds []string
	enc  record.Encoded
}

func makeBatches(rng *rand.Rand, columns []string, nBatches, size int, withInd bool, want map[string]testRow) []testBatch {
	var out []testBatch
	row := 0
	for range nBatches {
		b := testBatch{enc: record.Encoded{
			Problems: map[int][]record.Problem{},
			Ints:     map[string][]*int64{},
			Binaries: map[string][][]byte{},
		}}
		for i := range size {
			row++
			b.rows = append(b.rows, row)
			ind := fmt.Sprintf(`[{"code":"C%d","date":"2024-01-0%d","value":"v\u00e9 %d"}]`, row%7, 1+row%9, row)
			if row%5 == 0 {
				ind = "[]"
			}
			b.inds = append(b.inds, ind)
			accepted := row%11 != 0
			b.enc.Accepted = append(b.enc.Accepted, accepted)
			switch {
			case !accepted:
				b.enc.Problems[i] = []record.Problem{
					{Field: "postcode", Reason: "bad postcode 'X, Y'", Fatal: false},
					{Field: "name", Reason: "no given or family name", Fatal: true},
				}
			case row%13 == 0:
				b.enc.Problems[i] = []record.Problem{{Field: "date_of_birth", Reason: `in the "future"`}}
			}
			if !accepted {
				continue
			}
			lid := fmt.Sprintf("id-%d", row)
			if row%17 == 0 {
				lid = fmt.Sprintf("dup-%d", row%3) // repeats: refs count them
			}
			tr := testRow{ints: map[string]*int64{}, bins: map[string][]byte{}}
			for _, c := range columns[1:] {
				null := rng.IntN(6) == 0
				if isBinaryColumn(c) {
					var v []byte
					if !null {
						v = make([]byte, 128)
						for k := range v {
							v[k] = byte(rng.Uint32())
						}
					}
					b.enc.Binaries[c] = append(b.enc.Binaries[c], v)
					tr.bins[c] = v
				} else {
					var v *int64
					if !null {
						x := int64(rng.Uint64())
						v = &x
					}
					b.enc.Ints[c] = append(b.enc.Ints[c], v)
					tr.ints[c] = v
				}
			}
			tr.area = fmt.Sprintf(`{"postcode_district":"AB%d","postcode_sector":"AB%d %d"}`, row%9, row%9, row%10)
			if row%4 == 0 {
				tr.area = `{"postcode_district":null,"postcode_sector":null}`
			}
			tr.ind = "[]"
			if withInd {
				tr.ind = ind
			}
			b.enc.LocalIDs = append(b.enc.LocalIDs, lid)
			b.enc.AreaJSON = append(b.enc.AreaJSON, tr.area)
			if want != nil {
				want[fmt.Sprintf("%s#%d", lid, row)] = tr
			}
		}
		if !withInd {
			b.inds = nil
		}
		out = append(out, b)
	}
	return out
}

func TestWriteExtract(t *testing.T) {
	v := loadVectors(t)
	columns := v.LinkageColumns
	dir := t.TempDir()
	refKey, contentKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	cfg := Config{
		OutDir: dir, Source: "dwp", Kind: "dwp", ExtractID: "0123456789abcdef0123456789abcdef",
		Columns: columns, RefKey: refKey, ContentKey: contentKey, SizeClasses: SizeClasses,
		Parallelism: 3, RowGroupRows: 700,
	}
	w, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]testRow{}
	batches := makeBatches(rand.New(rand.NewPCG(1, 2)), columns, 3, 3000, true, want)
	var wantCSV strings.Builder
	wantCSV.WriteString("row_number,field,reason,action\r\n")
	if err := w.Reject(record.Reject{Row: 0, Field: "local_id", Reason: "duplicate local id (first at row 1)"}); err != nil {
		t.Fatal(err)
	}
	wantCSV.WriteString("0,local_id,duplicate local id (first at row 1),rejected\r\n")
	var lids []string
	for _, b := range batches {
		if err := w.WriteBatch(b.rows, b.inds, &b.enc); err != nil {
			t.Fatal(err)
		}
		for i, r := range b.rows {
			if ps, ok := b.enc.Problems[i]; ok {
				for _, p := range ps {
					action := "field_dropped"
					if !b.enc.Accepted[i] {
						action = "rejected"
					}
					reason := p.Reason
					if strings.ContainsAny(reason, `,"`) {
						reason = `"` + strings.ReplaceAll(reason, `"`, `""`) + `"`
					}
					fmt.Fprintf(&wantCSV, "%d,%s,%s,%s\r\n", r, p.Field, reason, action)
				}
			}
		}
		lids = append(lids, b.enc.LocalIDs...)
	}
	counts := w.Counts()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantCounts := Counts{Read: 9001, Accepted: int64(len(lids)), Rejected: 9001 - int64(len(lids)), FieldsDropped: 0}
	for _, b := range batches {
		for i, ps := range b.enc.Problems {
			if b.enc.Accepted[i] {
				wantCounts.FieldsDropped += int64(len(ps))
			}
		}
	}
	if counts != wantCounts {
		t.Errorf("counts %+v, want %+v", counts, wantCounts)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "rejects.csv"))
	if string(got) != wantCSV.String() {
		t.Errorf("rejects.csv differs:\n%.600q\nwant\n%.600q", got, wantCSV.String())
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"content.parquet", "keymap.parquet", "linkage.parquet", "rejects.csv"}) {
		t.Errorf("out_dir holds %v", names)
	}

	// The refs the rows should have, by local id and occurrence.
	refs := NewRefs(refKey, "dwp").Of(lids)
	refRow := map[string]string{} // ref -> key into want
	k := 0
	for _, b := range batches {
		j := 0
		for i, ok := range b.enc.Accepted {
			if ok {
				refRow[refs[k]] = fmt.Sprintf("%s#%d", b.enc.LocalIDs[j], b.rows[i])
				j++
				k++
			}
		}
	}
	checkWithPython(t, dir, cfg, refRow, want)
}

// checkWithPython reads the extract with the Python connector's code (schemas, order,
// decryption, DuckDB) and compares every row with what was written.
func checkWithPython(t *testing.T, dir string, cfg Config, refRow map[string]string, want map[string]testRow) {
	py := "/work/main/.venv/bin/python"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no Python connector environment")
	}
	cols, _ := json.Marshal(cfg.Columns)
	cmd := exec.Command(py, "native/testdata/check_output.py", dir, cfg.ExtractID, hex.EncodeToString(cfg.ContentKey), string(cols))
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check_output.py: %v\n%s", err, stderr.String())
	}
	var res struct {
		Linkage   []map[string]any `json:"linkage"`
		LocalIDs  []string         `json:"local_ids"`
		Docs      []map[string]any `json:"docs"`
		RowGroups int              `json:"row_groups"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.Linkage) != len(refRow) || len(res.Docs) != len(refRow) {
		t.Fatalf("python read %d rows, %d docs; wrote %d", len(res.Linkage), len(res.Docs), len(refRow))
	}
	if len(refRow) > 1000 && res.RowGroups < Buckets {
		t.Errorf("%d row groups", res.RowGroups)
	}
	for i, row := range res.Linkage {
		ref := row["ref"].(string)
		key, ok := refRow[ref]
		if !ok {
			t.Fatalf("row %d: unknown ref %s", i, ref)
		}
		if lid := strings.SplitN(key, "#", 2)[0]; res.LocalIDs[i] != lid {
			t.Errorf("row %d: keymap local id %q, want %q", i, res.LocalIDs[i], lid)
		}
		tr := want[key]
		for _, c := range cfg.Columns[1:] {
			gotV := row[c]
			if isBinaryColumn(c) {
				if v := tr.bins[c]; v == nil && gotV != nil || v != nil && gotV != hex.EncodeToString(v) {
					t.Fatalf("row %d %s: %v, want %x", i, c, gotV, v)
				}
				continue
			}
			if v := tr.ints[c]; v == nil && gotV != nil || v != nil && (gotV == nil || gotV.(json.Number).String() != fmt.Sprint(*v)) {
				t.Fatalf("row %d %s: %v, want %v", i, c, gotV, v)
			}
		}
		var wantDoc map[string]any
		d := json.NewDecoder(strings.NewReader(PaddedPlaintext(cfg.ExtractID, cfg.Source, cfg.Kind, ref, tr.area, tr.ind, nil)))
		d.UseNumber()
		if err := d.Decode(&wantDoc); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Docs[i], wantDoc) {
			t.Fatalf("row %d: doc %v, want %v", i, res.Docs[i], wantDoc)
		}
	}
}

func TestEmptyExtract(t *testing.T) {
	v := loadVectors(t)
	dir := t.TempDir()
	cfg := Config{OutDir: dir, Source: "s", Kind: "nhs", ExtractID: "e", Columns: v.ExtendedLinkageColumns,
		RefKey: []byte("r"), ContentKey: make([]byte, 32), SizeClasses: SizeClasses}
	w, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	enc := record.Encoded{Accepted: []bool{false}, Problems: map[int][]record.Problem{0: {{Field: "local_id", Reason: "missing local id", Fatal: true}}}}
	if err := w.WriteBatch([]int{2}, []string{"[]"}, &enc); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "rejects.csv"))
	if string(got) != "row_number,field,reason,action\r\n2,local_id,missing local id,rejected\r\n" {
		t.Errorf("rejects.csv %q", got)
	}
	if w.Counts() != (Counts{Read: 1, Rejected: 1}) {
		t.Errorf("counts %+v", w.Counts())
	}
	checkWithPython(t, dir, cfg, map[string]string{}, nil)
}

func TestMissingColumn(t *testing.T) {
	v := loadVectors(t)
	w, err := Create(Config{OutDir: t.TempDir(), Source: "s", Kind: "k", ExtractID: "e", Columns: v.LinkageColumns,
		RefKey: []byte("r"), ContentKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	enc := record.Encoded{Accepted: []bool{true}, LocalIDs: []string{"a"}, AreaJSON: []string{"{}"}}
	if err := w.WriteBatch([]int{1}, nil, &enc); err == nil || !strings.Contains(err.Error(), "no linkage column") {
		t.Errorf("err = %v", err)
	}
}

// BenchmarkOutput measures the output stage alone (refs, sealing, spill, sort, parquet)
// on batches shaped like the encoder's (dwp columns, 128-byte filters): rows/s (wall) and
// CPU µs/row (all goroutines, kernel included).
func BenchmarkOutput(b *testing.B) {
	v := loadVectors(b)
	const batches, size = 10, 20000
	data := makeBatches(rand.New(rand.NewPCG(3, 4)), v.LinkageColumns, batches, size, true, nil)
	runtime.GC()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	rows := 0
	for range b.N {
		w, err := Create(Config{OutDir: b.TempDir(), Source: "dwp", Kind: "dwp", ExtractID: "e", Columns: v.LinkageColumns,
			RefKey: []byte("r"), ContentKey: make([]byte, 32), SizeClasses: SizeClasses})
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range data {
			if err := w.WriteBatch(d.rows, d.inds, &d.enc); err != nil {
				b.Fatal(err)
			}
			rows += len(d.rows)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(rows), "cpu-us/row")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestRawZstdFrame(t *testing.T) {
	for _, n := range []int{0, 1, 5000, rawBlockMax, rawBlockMax + 1, 3*rawBlockMax + 17} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i * 7919 >> 3)
		}
		frame := rawZstdFrame(nil, src)
		if int64(len(frame)) > rawFrameLen(int64(n)) {
			t.Errorf("n=%d: frame %d > bound %d", n, len(frame), rawFrameLen(int64(n)))
		}
		got := storeZstd{}.decode(t, frame)
		if !bytes.Equal(got, src) {
			t.Errorf("n=%d: raw frame does not decode to its input", n)
		}
	}
}
