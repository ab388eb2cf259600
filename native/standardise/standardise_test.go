package standardise

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// The vectors are what connectors/standardise.py returns for each input; write them with
//
//	cd /work/main && .venv/bin/python native/testdata/gen_standardise.py

type result struct {
	OK  json.RawMessage `json:"ok"`
	Err *string         `json:"err"`
}

type vectors struct {
	Today          string                    `json:"today"`
	Nicknames      string                    `json:"nicknames"`
	Mappings       map[string]record.Mapping `json:"mappings"`
	NameWords      [][2]json.RawMessage      `json:"name_words"`
	StandardText   [][2]json.RawMessage      `json:"standard_text"`
	CanonicalGiven [][2]string               `json:"canonical_given"`
	Phonetic       [][2]string               `json:"phonetic"`
	Dates          [][3]json.RawMessage      `json:"dates"`
	Postcodes      [][3]json.RawMessage      `json:"postcodes"`
	NINOs          [][2]json.RawMessage      `json:"ninos"`
	NHS            [][2]json.RawMessage      `json:"nhs"`
	Sexes          [][2]json.RawMessage      `json:"sexes"`
	Blanks         [][2]json.RawMessage      `json:"blanks"`
	Strips         [][2]string               `json:"strips"`
	Uppers         [][2]string               `json:"uppers"`
	Identities     []struct {
		Raw      map[string]*string `json:"raw"`
		Mapping  string             `json:"mapping"`
		Out      map[string]*string `json:"out"`
		Problems [][3]any           `json:"problems"`
	} `json:"identities"`
}

func load(t testing.TB) (*vectors, *Standardiser) {
	t.Helper()
	path := filepath.Join("..", "testdata", "standardise_vectors.json")
	if p := os.Getenv("STANDARDISE_VECTORS"); p != "" {
		path = p // a larger throw-away set: gen_standardise.py --big <path>
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	today, err := time.Parse("2006-01-02", v.Today)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(filepath.Join("..", "..", v.Nicknames), today)
	if err != nil {
		t.Fatal(err)
	}
	return &v, s
}

// checker counts cases and reports the first few mismatches of each kind.
type checker struct {
	t      *testing.T
	kind   string
	n, bad int
}

func (c *checker) check(ok bool, format string, args ...any) {
	c.n++
	if ok {
		return
	}
	c.bad++
	if c.bad <= 8 {
		c.t.Errorf("%s: "+format, append([]any{c.kind}, args...)...)
	}
}

func (c *checker) done() int {
	if c.bad > 0 {
		c.t.Errorf("%s: %d of %d cases differ from Python", c.kind, c.bad, c.n)
	} else {
		c.t.Logf("%s: %d cases agree with Python", c.kind, c.n)
	}
	return c.n - c.bad
}

func str(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(err)
	}
	return s
}

func strPtr(raw json.RawMessage) *string {
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(err)
	}
	return s
}

func show(p *string) string {
	if p == nil {
		return "None"
	}
	return fmt.Sprintf("%q", *p)
}

// got formats a Go result like the vectors' {"ok": ...} / {"err": ...}.
func got(v any, err error) string {
	if err != nil {
		b, _ := json.Marshal(map[string]string{"err": err.Error()})
		return string(b)
	}
	b, _ := json.Marshal(map[string]any{"ok": v})
	return string(b)
}

func want(raw json.RawMessage) string {
	var r map[string]any
	if err := json.Unmarshal(raw, &r); err != nil {
		panic(err)
	}
	b, _ := json.Marshal(r)
	return string(b)
}

func TestAgainstPython(t *testing.T) {
	v, s := load(t)
	total := 0

	c := &checker{t: t, kind: "name_words"}
	for _, tc := range v.NameWords {
		var w []string
		if err := json.Unmarshal(tc[1], &w); err != nil {
			t.Fatal(err)
		}
		g := s.NameWords(str(tc[0]))
		c.check(len(g) == len(w) && (len(g) == 0 || reflect.DeepEqual(g, w)), "%q: got %q want %q", str(tc[0]), g, w)
	}
	total += c.done()

	c = &checker{t: t, kind: "standard_text"}
	for _, tc := range v.StandardText {
		in, w := str(tc[0]), strPtr(tc[1])
		g := StandardText(in)
		c.check(show(g) == show(w), "%q: got %s want %s", in, show(g), show(w))
	}
	total += c.done()

	c = &checker{t: t, kind: "canonical_given"}
	for _, tc := range v.CanonicalGiven {
		g := s.CanonicalGiven(tc[0])
		c.check(g == tc[1], "%q: got %q want %q", tc[0], g, tc[1])
	}
	total += c.done()

	c = &checker{t: t, kind: "phonetic"}
	for _, tc := range v.Phonetic {
		g := s.Phonetic(tc[0])
		c.check(g == tc[1], "%q: got %q want %q", tc[0], g, tc[1])
	}
	total += c.done()

	c = &checker{t: t, kind: "parse_birth_date"}
	for _, tc := range v.Dates {
		raw, format := str(tc[0]), strPtr(tc[1])
		d, err := parseBirthDateRecover(s, raw, format)
		var gv any
		if err == nil {
			gv = d.Format("2006-01-02")
		}
		g, w := got(gv, err), want(tc[2])
		c.check(g == w, "%q format %s: got %s want %s", raw, show(format), g, w)
	}
	total += c.done()

	c = &checker{t: t, kind: "standard_postcode"}
	for _, tc := range v.Postcodes {
		raw := str(tc[0])
		var validate bool
		_ = json.Unmarshal(tc[1], &validate)
		pc, sector, district, err := StandardPostcode(raw, validate)
		g, w := got([]*string{&pc, sector, district}, err), want(tc[2])
		c.check(g == w, "%q validate=%v: got %s want %s", raw, validate, g, w)
	}
	total += c.done()

	for _, k := range []struct {
		kind string
		vs   [][2]json.RawMessage
		fn   func(string) (any, error)
	}{
		{"standard_nino", v.NINOs, func(x string) (any, error) { return StandardNINO(x) }},
		{"standard_nhs_number", v.NHS, func(x string) (any, error) { return StandardNHSNumber(x) }},
		{"standard_sex", v.Sexes, func(x string) (any, error) { return StandardSex(x) }},
	} {
		c = &checker{t: t, kind: k.kind}
		for _, tc := range k.vs {
			raw := str(tc[0])
			r, err := k.fn(raw)
			g, w := got(r, err), want(tc[1])
			c.check(g == w, "%q: got %s want %s", raw, g, w)
		}
		total += c.done()
	}

	c = &checker{t: t, kind: "_blank"}
	for _, tc := range v.Blanks {
		raw := str(tc[0])
		var w bool
		_ = json.Unmarshal(tc[1], &w)
		c.check(Blank(&raw) == w, "%q: got %v want %v", raw, !w, w)
	}
	c.check(Blank(nil), "nil is blank")
	total += c.done()

	c = &checker{t: t, kind: "str.strip"}
	for _, tc := range v.Strips {
		c.check(pystr.Strip(tc[0]) == tc[1], "%q: got %q want %q", tc[0], pystr.Strip(tc[0]), tc[1])
	}
	total += c.done()

	c = &checker{t: t, kind: "join(split()).upper()"}
	for _, tc := range v.Uppers {
		c.check(compactUpper(tc[0]) == tc[1], "%q: got %q want %q", tc[0], compactUpper(tc[0]), tc[1])
	}
	total += c.done()

	c = &checker{t: t, kind: "standardise_identity"}
	for i, tc := range v.Identities {
		mapping := v.Mappings[tc.Mapping]
		ident, problems := s.Identity(tc.Raw, mapping)
		g := identityMap(&ident)
		var gp [][3]any
		for _, p := range problems {
			gp = append(gp, [3]any{p.Field, p.Reason, p.Fatal})
		}
		gj, _ := json.Marshal(map[string]any{"out": g, "problems": gp})
		wj, _ := json.Marshal(map[string]any{"out": tc.Out, "problems": tc.Problems})
		if len(tc.Problems) == 0 {
			wj, _ = json.Marshal(map[string]any{"out": tc.Out, "problems": nil})
		}
		c.check(string(gj) == string(wj), "#%d %v mapping %s:\n got %s\nwant %s", i, tc.Raw, tc.Mapping, gj, wj)
	}
	total += c.done()
	t.Logf("%d vector cases agree with Python", total)
}

// parseBirthDateRecover gives the *BadFormatError panic (Python's re.error) as an error
// "re.error", as the vectors record it.
func parseBirthDateRecover(s *Standardiser, raw string, format *string) (d time.Time, err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(*BadFormatError); !ok {
				panic(r)
			}
			err = errors.New("re.error")
		}
	}()
	return s.ParseBirthDate(raw, format)
}

func identityMap(id *record.Identity) map[string]*string {
	m := map[string]*string{
		"local_id": id.LocalID, "nhs_number": id.NHSNumber, "nino": id.NINO, "given": id.Given,
		"given_canon": id.GivenCanon, "given_phon": id.GivenPhon, "middle": id.Middle,
		"family": id.Family, "family_phon": id.FamilyPhon, "sex": id.Sex, "postcode": id.Postcode,
		"pc_sector": id.PcSector, "pc_district": id.PcDistrict, "address": id.Address,
		"locality": id.Locality,
	}
	if id.DOB != nil {
		d := id.DOB.Format("2006-01-02")
		m["dob"] = &d
	}
	for k, v := range m { // the vectors list only the fields that are not None
		if v == nil {
			delete(m, k)
		}
	}
	return m
}

func TestBadFormatPanics(t *testing.T) {
	s, err := New(filepath.Join("..", "..", "connectors", "data", "nicknames.csv"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, ok := recover().(*BadFormatError); !ok {
			t.Fatal("want a *BadFormatError panic")
		}
	}()
	f := "%Y %Y"
	_, _ = s.ParseBirthDate("1990 1990", &f)
}

// identities are the raw identities of the vectors, for the throughput measures.
func identities(b testing.TB) (*Standardiser, []map[string]*string, []record.Mapping) {
	v, s := load(b)
	raws := make([]map[string]*string, len(v.Identities))
	maps := make([]record.Mapping, len(v.Identities))
	for i, tc := range v.Identities {
		raws[i], maps[i] = tc.Raw, v.Mappings[tc.Mapping]
	}
	return s, raws, maps
}

// BenchmarkIdentity: go test ./standardise -bench Identity -run '^$'. The vectors'
// identities are nasty and few (so the caches are warm after the first pass);
// BenchmarkIdentityCold uses distinct values every time.
func BenchmarkIdentity(b *testing.B) {
	s, raws, maps := identities(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Identity(raws[i%len(raws)], maps[i%len(raws)])
	}
}

// BenchmarkIdentityCold standardises clean, distinct identities (as a real source has:
// distinct dates, NHS numbers, addresses; names repeat).
func BenchmarkIdentityCold(b *testing.B) {
	s, _, _ := identities(b)
	given := []string{"Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy"}
	family := []string{"Smith", "Jones", "Williams", "Taylor", "O'Brien", "Davies", "Evans", "Wilson"}
	rows := make([]map[string]*string, 100_000)
	p := func(s string) *string { return &s }
	for i := range rows {
		rows[i] = map[string]*string{
			"local_id":      p(fmt.Sprintf("id%07d", i)),
			"given_name":    p(given[i%len(given)]),
			"family_name":   p(family[i%len(family)]),
			"date_of_birth": p(fmt.Sprintf("%02d/%02d/%04d", i%28+1, i%12+1, 1930+i%80)),
			"sex":           p("F"),
			"postcode":      p(fmt.Sprintf("CT%d %dAB", i%20, i%10)),
			"nhs_number":    p("9434765919"),
			"address":       p(fmt.Sprintf("%d High St", i)),
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Identity(rows[i%len(rows)], nil)
	}
}

// TestCleanDateFastPath: the strptime shortcut for clean values of the common mapping
// formats agrees with the strptime port (which the vectors check against Python).
func TestCleanDateFastPath(t *testing.T) {
	n := 0
	for _, format := range []string{"%Y-%m-%d", "%d/%m/%Y", "%Y%m%d"} {
		f, err := compileFormat(format)
		if err != nil {
			t.Fatal(err)
		}
		for _, y := range []int{0, 1, 99, 1899, 1900, 1904, 2000, 2023, 2024, 2100, 9999} {
			for m := 0; m <= 13; m++ {
				for d := 0; d <= 32; d++ {
					var text string
					switch format {
					case "%Y-%m-%d":
						text = fmt.Sprintf("%04d-%02d-%02d", y, m, d)
					case "%d/%m/%Y":
						text = fmt.Sprintf("%02d/%02d/%04d", d, m, y)
					default:
						text = fmt.Sprintf("%04d%02d%02d", y, m, d)
					}
					fd, valid, ok := parseCleanDate(text, format)
					if !ok {
						continue
					}
					n++
					sd, sok := f.parse(text)
					if valid != sok || fd != sd {
						t.Errorf("%s %q: fast %v %v, strptime %v %v", format, text, fd, valid, sd, sok)
					}
				}
			}
		}
	}
	t.Logf("%d clean dates agree", n)
}

// BenchmarkParseBirthDateFormat: distinct clean dates in a mapping's format.
func BenchmarkParseBirthDateFormat(b *testing.B) {
	s, err := New(filepath.Join("..", "..", "connectors", "data", "nicknames.csv"), time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC))
	if err != nil {
		b.Fatal(err)
	}
	for _, format := range []string{"%d/%m/%Y", "%d-%b-%Y"} {
		vals := make([]string, 30_000)
		for i := range vals {
			d := time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i)
			if format == "%d/%m/%Y" {
				vals[i] = d.Format("02/01/2006")
			} else {
				vals[i] = d.Format("02-Jan-2006")
			}
		}
		f := format
		b.Run(format, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := s.ParseBirthDate(vals[i%len(vals)], &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
