package encode

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"joinedup/native/record"
	"joinedup/native/standardise"
)

// The vectors are written by native/testdata/gen_encode.py from the Python encoder.

type identJSON struct {
	LocalID    *string `json:"local_id"`
	NHSNumber  *string `json:"nhs_number"`
	NINO       *string `json:"nino"`
	Given      *string `json:"given"`
	GivenCanon *string `json:"given_canon"`
	GivenPhon  *string `json:"given_phon"`
	Middle     *string `json:"middle"`
	Family     *string `json:"family"`
	FamilyPhon *string `json:"family_phon"`
	DOB        *string `json:"dob"`
	Sex        *string `json:"sex"`
	Postcode   *string `json:"postcode"`
	PcSector   *string `json:"pc_sector"`
	PcDistrict *string `json:"pc_district"`
	Address    *string `json:"address"`
	Locality   *string `json:"locality"`
}

type batchJSON struct {
	Columns  map[string][]*string         `json:"columns"`
	Accepted []bool                       `json:"accepted"`
	Problems map[string][][]any           `json:"problems"`
	Encoded  map[string][]json.RawMessage `json:"encoded"`
	LocalIDs []string                     `json:"local_ids"`
	AreaJSON []string                     `json:"area_json"`
}

type vectors struct {
	Keys        map[string]string `json:"keys"`
	Permutation struct {
		Width  int          `json:"width"`
		Luts   string       `json:"luts"`
		Consts [][][]uint64 `json:"consts"`
	} `json:"permutation"`
	IdentitySets []struct {
		Name       string                       `json:"name"`
		Settings   record.Settings              `json:"settings"`
		Identities []identJSON                  `json:"identities"`
		Columns    map[string][]json.RawMessage `json:"columns"`
	} `json:"identity_sets"`
	ColumnarSets []struct {
		Name     string          `json:"name"`
		Mapping  record.Mapping  `json:"mapping"`
		Settings record.Settings `json:"settings"`
		Today    string          `json:"today"`
		Batches  []batchJSON     `json:"batches"`
	} `json:"columnar_sets"`
}

var loaded *vectors

func load(t testing.TB) *vectors {
	t.Helper()
	if loaded != nil {
		return loaded
	}
	raw, err := os.ReadFile("../testdata/encode_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	loaded = &v
	return loaded
}

func (v *vectors) keys(t testing.TB) record.Keys {
	keys := record.Keys{}
	for p, h := range v.Keys {
		k, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		keys[p] = k
	}
	return keys
}

func (j identJSON) identity(t testing.TB) record.Identity {
	id := record.Identity{
		LocalID: j.LocalID, NHSNumber: j.NHSNumber, NINO: j.NINO, Given: j.Given, GivenCanon: j.GivenCanon,
		GivenPhon: j.GivenPhon, Middle: j.Middle, Family: j.Family, FamilyPhon: j.FamilyPhon, Sex: j.Sex,
		Postcode: j.Postcode, PcSector: j.PcSector, PcDistrict: j.PcDistrict, Address: j.Address, Locality: j.Locality,
	}
	if j.DOB != nil {
		d, err := time.Parse("2006-01-02", *j.DOB)
		if err != nil {
			t.Fatal(err)
		}
		id.DOB = &d
	}
	return id
}

// compareColumns checks Go's columns against the Python ones (null, int64 or hex) and
// returns the number of cells compared.
func compareColumns(t *testing.T, want map[string][]json.RawMessage, ints map[string][]*int64, bins map[string][][]byte) int {
	t.Helper()
	got := map[string]bool{}
	for c := range ints {
		got[c] = true
	}
	for c := range bins {
		if got[c] {
			t.Errorf("column %s both int and binary", c)
		}
		got[c] = true
	}
	if len(got) != len(want) {
		t.Errorf("columns: got %d, want %d (%v)", len(got), len(want), keysOf(want))
	}
	cells := 0
	for c, values := range want {
		if !got[c] {
			t.Errorf("missing column %s", c)
			continue
		}
		bad := 0
		for i, raw := range values {
			cells++
			var wantStr string
			switch {
			case string(raw) == "null":
				wantStr = "null"
			case raw[0] == '"':
				if err := json.Unmarshal(raw, &wantStr); err != nil {
					t.Fatal(err)
				}
			default:
				wantStr = string(raw)
			}
			var gotStr string
			if strings.HasPrefix(c, "clk_") {
				col := bins[c]
				if len(col) != len(values) {
					t.Fatalf("%s: %d rows, want %d", c, len(col), len(values))
				}
				gotStr = "null"
				if col[i] != nil {
					gotStr = hex.EncodeToString(col[i])
				}
			} else {
				col := ints[c]
				if len(col) != len(values) {
					t.Fatalf("%s: %d rows, want %d", c, len(col), len(values))
				}
				gotStr = "null"
				if col[i] != nil {
					gotStr = strconv.FormatInt(*col[i], 10)
				}
			}
			if gotStr != wantStr {
				bad++
				if bad <= 3 {
					t.Errorf("%s row %d:\n got %s\nwant %s", c, i, gotStr, wantStr)
				}
			}
		}
		if bad > 3 {
			t.Errorf("%s: %d rows differ", c, bad)
		}
	}
	return cells
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestPermutationTablesMatchNumpy(t *testing.T) {
	v := load(t)
	sp := newSaltedPermutation(v.keys(t)["clk-salt"], v.Permutation.Width)
	luts, _ := hex.DecodeString(v.Permutation.Luts)
	if !bytes.Equal(sp.luts[:], luts) {
		t.Fatal("LUTs differ from numpy's")
	}
	for stage := range 2 {
		for i, c := range v.Permutation.Consts[stage][0] {
			if sp.permConsts[stage][i] != c {
				t.Fatalf("perm const %d/%d: %d, want %d", stage, i, sp.permConsts[stage][i], c)
			}
		}
		for i, c := range v.Permutation.Consts[stage][1] {
			if sp.lutConsts[stage][i] != c {
				t.Fatalf("lut const %d/%d: %d, want %d", stage, i, sp.lutConsts[stage][i], c)
			}
		}
	}
}

// (a) IdentityEncoder.encode_batch on standardised identities, per settings variant.
func TestIdentityVectors(t *testing.T) {
	v := load(t)
	keys := v.keys(t)
	for _, set := range v.IdentitySets {
		t.Run(set.Name, func(t *testing.T) {
			enc, err := New(set.Settings, keys, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]record.Identity, len(set.Identities))
			for i, j := range set.Identities {
				ids[i] = j.identity(t)
			}
			// Twice: the second time through the warm caches.
			for pass := range 2 {
				ints, bins := enc.EncodeIdentities(ids)
				cells := compareColumns(t, set.Columns, ints, bins)
				if pass == 0 {
					t.Logf("%d identities, %d cells", len(ids), cells)
				}
			}
		})
	}
}

// standardiserFor builds the standardise package's Standardiser, or skips the test while
// that package is still a stub.
func standardiserFor(t *testing.T, today time.Time) (std *standardise.Standardiser) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Skipf("standardise is not implemented yet: %v", r)
		}
	}()
	std, err := standardise.New(nicknamesPath, today)
	if err != nil {
		t.Fatal(err)
	}
	std.NameWords("probe") // panics while the per-value functions are stubs
	standardise.StandardPostcode("CT9 1AB", true)
	return std
}

// (b) ColumnarEncoder.encode_columns on raw batches.
func TestColumnarVectors(t *testing.T) {
	v := load(t)
	keys := v.keys(t)
	for _, set := range v.ColumnarSets {
		t.Run(set.Name, func(t *testing.T) {
			today, err := time.Parse("2006-01-02", set.Today)
			if err != nil {
				t.Fatal(err)
			}
			std := standardiserFor(t, today)
			enc, err := New(set.Settings, keys, std, set.Mapping)
			if err != nil {
				t.Fatal(err)
			}
			for bi, b := range set.Batches {
				n := len(b.Accepted)
				batch := &record.Batch{RowNumbers: make([]int, n), Columns: b.Columns}
				got := enc.EncodeBatch(batch)
				cells := checkBatch(t, fmt.Sprintf("batch %d", bi), b, got)
				t.Logf("batch %d: %d rows, %d accepted, %d with problems, %d cells", bi, n, len(got.LocalIDs), len(got.Problems), cells)
				// Again, through the warm caches.
				checkBatch(t, fmt.Sprintf("batch %d (again)", bi), b, enc.EncodeBatch(batch))
			}
		})
	}
}

func checkBatch(t *testing.T, name string, want batchJSON, got record.Encoded) int {
	t.Helper()
	for i, a := range want.Accepted {
		if got.Accepted[i] != a {
			t.Errorf("%s row %d: accepted %v, want %v", name, i, got.Accepted[i], a)
		}
	}
	wantProblems := map[string]string{}
	for i, ps := range want.Problems {
		wantProblems[i] = fmt.Sprint(ps)
	}
	gotProblems := map[string]string{}
	for i, ps := range got.Problems {
		var rows [][]any
		for _, p := range ps {
			rows = append(rows, []any{p.Field, p.Reason, p.Fatal})
		}
		gotProblems[strconv.Itoa(i)] = fmt.Sprint(rows)
	}
	for i, w := range wantProblems {
		if gotProblems[i] != w {
			t.Errorf("%s row %s problems:\n got %s\nwant %s", name, i, gotProblems[i], w)
		}
	}
	for i, g := range gotProblems {
		if _, ok := wantProblems[i]; !ok {
			t.Errorf("%s row %s: unexpected problems %s", name, i, g)
		}
	}
	if fmt.Sprint(got.LocalIDs) != fmt.Sprint(want.LocalIDs) || len(got.LocalIDs) != len(want.LocalIDs) {
		t.Errorf("%s local ids:\n got %q\nwant %q", name, got.LocalIDs, want.LocalIDs)
	}
	if strings.Join(got.AreaJSON, "\n") != strings.Join(want.AreaJSON, "\n") || len(got.AreaJSON) != len(want.AreaJSON) {
		t.Errorf("%s area json:\n got %q\nwant %q", name, got.AreaJSON, want.AreaJSON)
	}
	return compareColumns(t, want.Encoded, got.Ints, got.Binaries)
}

// BLIP cannot be compared bit for bit (it is random by design), so its statistics are:
// absent filters stay null, present ones get Binomial(N, f) flips at uniform positions, a
// position drawn twice flipping back, so a bit flips with probability (1 - (1-2f/N)^N)/2
// (about f - f^2; Python's blip() measured 0.04757 at f = 0.05, N = 1024) and the flips
// per filter vary about as much as Python's (variance 44.3 measured there); two runs differ.
func TestBlipFlipRate(t *testing.T) {
	v := load(t)
	keys := v.keys(t)
	set := v.IdentitySets[0]
	ids := make([]record.Identity, len(set.Identities))
	for i, j := range set.Identities {
		ids[i] = j.identity(t)
	}
	plainEnc, err := New(set.Settings, keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, plain := plainEnc.EncodeIdentities(ids)
	s := set.Settings
	s.Hardening, s.BlipF = "blip", 0.05
	enc, err := New(s, keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var counts []float64
	var first map[string][][]byte
	for run := range 20 {
		_, bins := enc.EncodeIdentities(ids)
		if run == 0 {
			first = bins
		}
		for c, col := range bins {
			for i, f := range col {
				if (f == nil) != (plain[c][i] == nil) {
					t.Fatalf("%s row %d: presence changed by BLIP", c, i)
				}
				if f == nil {
					continue
				}
				flips := 0
				for j := range f {
					for x := f[j] ^ plain[c][i][j]; x != 0; x &= x - 1 {
						flips++
					}
				}
				counts = append(counts, float64(flips))
			}
		}
	}
	const bits = 1024
	var mean, variance float64
	for _, c := range counts {
		mean += c
	}
	mean /= float64(len(counts))
	for _, c := range counts {
		variance += (c - mean) * (c - mean)
	}
	variance /= float64(len(counts) - 1)
	rate := mean / bits
	want := (1 - math.Pow(1-2*s.BlipF/bits, bits)) / 2
	sd := math.Sqrt(variance/float64(len(counts))) / bits
	t.Logf("flip rate %.5f over %d filters (expected %.5f, sd %.6f); flips per filter: variance %.1f",
		rate, len(counts), want, sd, variance)
	if math.Abs(rate-want) > 5*sd {
		t.Errorf("flip rate %.5f, want %.5f", rate, want)
	}
	if variance < 44.3*0.9 || variance > 44.3*1.1 {
		t.Errorf("variance of flips per filter %.1f, Python's is about 44.3", variance)
	}
	_, again := enc.EncodeIdentities(ids)
	if bytes.Equal(again["clk_given"][3], first["clk_given"][3]) && again["clk_given"][3] != nil {
		t.Error("two BLIP runs gave the same filter")
	}
}

func TestPyCompactUpper(t *testing.T) {
	for in, want := range map[string]string{"ab 12\t34": "AB1234", "straße": "STRASSE", "ﬁx\u00a0a": "FIXA", "é": "É"} {
		if got := pyCompactUpper(in); got != want {
			t.Errorf("pyCompactUpper(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPyJSONString(t *testing.T) {
	got := string(pyJSONString(nil, "a\"b\\c\n\x01é😀\x7f"))
	want := `"a\"b\\c\n\u0001\u00e9\ud83d\ude00` + "\x7f" + `"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// nicknamesPath is the Python connector's nickname table (the standardiser's input).
const nicknamesPath = "../../connectors/data/nicknames.csv"

// An empty batch, and a batch whose mapping has no column for most fields.
func TestEncodeBatchEdges(t *testing.T) {
	v := load(t)
	std := standardiserFor(t, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	enc, err := New(DefaultSettings(), v.keys(t), std, record.Mapping{})
	if err != nil {
		t.Fatal(err)
	}
	got := enc.EncodeBatch(&record.Batch{Columns: map[string][]*string{}})
	if len(got.Accepted) != 0 || len(got.LocalIDs) != 0 || len(got.Ints["mk_name_dob"]) != 0 || len(got.Binaries["clk_given"]) != 0 {
		t.Errorf("empty batch: %+v", got)
	}
	id, name, pc := "A", "Smith", "CT9 1AB"
	got = enc.EncodeBatch(&record.Batch{RowNumbers: []int{2, 3}, Columns: map[string][]*string{
		"local_id": {&id, nil}, "family_name": {&name, &name}, "postcode": {&pc, &pc}}})
	if !got.Accepted[0] || got.Accepted[1] || len(got.LocalIDs) != 1 || got.LocalIDs[0] != "A" {
		t.Fatalf("accepted %v, local ids %v", got.Accepted, got.LocalIDs)
	}
	if fmt.Sprint(got.Problems) != "map[1:[{local_id missing local id true}]]" {
		t.Errorf("problems %v", got.Problems)
	}
	if got.AreaJSON[0] != `{"postcode_district":"CT9","postcode_sector":"CT9 1"}` {
		t.Errorf("area %s", got.AreaJSON[0])
	}
	if got.Binaries["clk_family_pc"][0] == nil || got.Binaries["clk_given_pc"][0] != nil || got.Ints["mk_names_pc"][0] != nil {
		t.Error("a family name and a postcode: only the family filters, no names key")
	}
}

// Caches that overflow are cleared; the output must not change.
func TestTinyCaches(t *testing.T) {
	v := load(t)
	keys := v.keys(t)
	shrink := func(e *Encoder) {
		e.salting.limit = 3
		for _, c := range []*clkField{e.clkGiven, e.clkFamily, e.clkAddress} {
			c.valueLimit = 2
		}
		for _, c := range e.parts {
			if c != nil {
				c.limit = 1
			}
		}
	}
	for _, set := range v.IdentitySets[:2] {
		enc, err := New(set.Settings, keys, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		shrink(enc)
		ids := make([]record.Identity, len(set.Identities))
		for i, j := range set.Identities {
			ids[i] = j.identity(t)
		}
		ints, bins := enc.EncodeIdentities(ids)
		compareColumns(t, set.Columns, ints, bins)
	}
	saved := columnarCacheLimit
	defer func() { columnarCacheLimit = saved }()
	columnarCacheLimit = 2
	set := v.ColumnarSets[0]
	today, _ := time.Parse("2006-01-02", set.Today)
	enc, err := New(set.Settings, keys, standardiserFor(t, today), set.Mapping)
	if err != nil {
		t.Fatal(err)
	}
	shrink(enc)
	for bi, b := range set.Batches {
		checkBatch(t, fmt.Sprintf("batch %d", bi), b, enc.EncodeBatch(&record.Batch{RowNumbers: make([]int, len(b.Accepted)), Columns: b.Columns}))
	}
}
