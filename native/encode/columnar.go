package encode

import (
	"strings"

	"joinedup/native/pystr"
	"joinedup/native/record"
	"joinedup/native/standardise"
)

// columnar is ColumnarEncoder's state: per identity field, a cache from raw value to its
// finished result (the problem if refused, else the part tokens and filter), so that the
// standardise functions and HMACs run once per distinct value. The nearly unique fields
// (NHS number, NINO, address) are computed per row, as Python computes them per distinct
// value of a batch without a cross-batch cache.
type columnar struct {
	e           *Encoder
	dobFormat   *string
	pcValidate  bool
	ninoAsGiven bool // mapping says validate = false: kept as given, compacted and upper-cased
	nhsAsGiven  bool

	given, family map[string]nameResult
	dob           map[string]dobResult
	postcode      map[string]pcResult
	sex           map[string]string // raw -> problem reason ("" = fine)
	locality      map[string]locResult
	address       map[string][]byte // per batch: raw -> filter (nil = no address)

	// Clean dates (exactly YYYY-MM-DD or DD/MM/YYYY in ASCII, as the mapping's format
	// allows: columnar.py's _DOB_SHAPES) are cached by date, not by raw value: a dense
	// table from 1900 to 2099, filled on first use.
	isoShape, ukShape bool
	dates             []dateEntry
}

type dateEntry struct {
	filled bool
	r      dobResult
}

const (
	denseFirstYear = 1900
	denseYears     = 200
)

type nameResult struct {
	problem     string // "" = none
	ok          bool
	token, phon uint64
	filter      []byte
}

type dobResult struct {
	problem string
	ok      bool
	v       [5]uint64 // dob, year, month, day, dm
}

type pcResult struct {
	problem    string
	ok         bool
	pc, sector uint64
	hasSector  bool
	area       string
}

type locResult struct {
	ok    bool
	token uint64
}

// columnarCacheLimit is columnar.py's _CACHE_LIMIT (per field); a var for the tests.
var columnarCacheLimit = 300_000

// areaNone is _AREA_NONE.
const areaNone = `{"postcode_district":null,"postcode_sector":null}`

const noLetters = "no letters after cleaning"

func newColumnar(e *Encoder) *columnar {
	c := &columnar{
		e: e, pcValidate: true,
		given: map[string]nameResult{}, family: map[string]nameResult{}, dob: map[string]dobResult{},
		postcode: map[string]pcResult{}, sex: map[string]string{}, locality: map[string]locResult{},
		address: map[string][]byte{},
	}
	if s, ok := e.mapping["date_of_birth"]; ok {
		c.dobFormat = s.Format
	}
	switch {
	case c.dobFormat == nil:
		c.isoShape, c.ukShape = true, true
	case *c.dobFormat == "%Y-%m-%d":
		c.isoShape = true
	case *c.dobFormat == "%d/%m/%Y":
		c.ukShape = true
	}
	if s, ok := e.mapping["postcode"]; ok {
		c.pcValidate = s.Validate
	}
	if s, ok := e.mapping["nino"]; ok && !s.Validate {
		c.ninoAsGiven = true
	}
	if s, ok := e.mapping["nhs_number"]; ok && !s.Validate {
		c.nhsAsGiven = true
	}
	return c
}

// bound clears a cache that has reached the limit before an insert.
func bound[V any](m map[string]V) {
	if len(m) >= columnarCacheLimit {
		clear(m)
	}
}

func (c *columnar) givenOf(v string) nameResult {
	if r, ok := c.given[v]; ok {
		return r
	}
	std, e := c.e.std, c.e
	var r nameResult
	if w := std.NameWords(v); len(w) == 0 {
		r.problem = noLetters
	} else {
		g := w[0]
		r = nameResult{ok: true, token: e.parts[pGCanon].get(std.CanonicalGiven(g)),
			phon: e.parts[pGPhon].get(std.Phonetic(g)), filter: e.clkGiven.value(g)}
	}
	bound(c.given)
	c.given[v] = r
	return r
}

func (c *columnar) familyOf(v string) nameResult {
	if r, ok := c.family[v]; ok {
		return r
	}
	std, e := c.e.std, c.e
	var r nameResult
	if w := std.NameWords(v); len(w) == 0 {
		r.problem = noLetters
	} else {
		f := strings.Join(w, " ")
		r = nameResult{ok: true, token: e.parts[pFam].get(f), phon: e.parts[pFPhon].get(std.Phonetic(f)),
			filter: e.clkFamily.value(f)}
	}
	bound(c.family)
	c.family[v] = r
	return r
}

// cleanDate reads a clean 10-character date in one of the shapes the mapping's format
// allows, as _parse_dates; ok is false for anything else (decided by dobOf's raw cache).
func (c *columnar) cleanDate(v string) (y, m, d int, ok bool) {
	if len(v) != 10 {
		return 0, 0, 0, false
	}
	num := func(at, width int) (int, bool) {
		n := 0
		for k := at; k < at+width; k++ {
			ch := v[k]
			if ch < '0' || ch > '9' {
				return 0, false
			}
			n = n*10 + int(ch-'0')
		}
		return n, true
	}
	var ok1, ok2, ok3 bool
	switch {
	case c.isoShape && v[4] == '-' && v[7] == '-':
		y, ok1 = num(0, 4)
		m, ok2 = num(5, 2)
		d, ok3 = num(8, 2)
	case c.ukShape && v[2] == '/' && v[5] == '/':
		d, ok1 = num(0, 2)
		m, ok2 = num(3, 2)
		y, ok3 = num(6, 4)
	default:
		return 0, 0, 0, false
	}
	ok = ok1 && ok2 && ok3 && y >= denseFirstYear && y < denseFirstYear+denseYears && m >= 1 && m <= 12 && d >= 1 && d <= 31
	return y, m, d, ok
}

func (c *columnar) dobOf(v string) dobResult {
	if y, m, d, ok := c.cleanDate(v); ok {
		// The same date in either clean shape gets the same result (a date, or the same
		// refusal: impossible, before 1900, in the future), so the standardiser is asked
		// once per date.
		if c.dates == nil {
			c.dates = make([]dateEntry, denseYears*12*31)
		}
		e := &c.dates[((y-denseFirstYear)*12+m-1)*31+d-1]
		if !e.filled {
			e.r, e.filled = c.parseDOB(v), true
		}
		return e.r
	}
	if r, ok := c.dob[v]; ok {
		return r
	}
	r := c.parseDOB(v)
	bound(c.dob)
	c.dob[v] = r
	return r
}

// parseDOB is _dob: the date's part tokens, or the problem.
func (c *columnar) parseDOB(v string) dobResult {
	var r dobResult
	if d, err := c.e.std.ParseBirthDate(v, c.dobFormat); err != nil {
		r.problem = err.Error()
	} else {
		var tmp row
		c.e.dobParts(&tmp, d)
		r.ok = true
		r.v = [5]uint64{tmp.v[pDOB], tmp.v[pYear], tmp.v[pMonth], tmp.v[pDay], tmp.v[pDM]}
	}
	return r
}

func (c *columnar) postcodeOf(v string) pcResult {
	if r, ok := c.postcode[v]; ok {
		return r
	}
	r := pcResult{area: areaNone}
	if pc, sector, district, err := standardise.StandardPostcode(v, c.pcValidate); err != nil {
		r.problem = err.Error()
	} else {
		e := c.e
		r.ok, r.pc = true, e.parts[pPC].get(pc)
		if sector != nil && *sector != "" {
			r.sector, r.hasSector = e.parts[pSector].get(*sector), true
		}
		// json.dumps({"postcode_district": district, "postcode_sector": sector}) (keys sorted).
		buf := []byte(`{"postcode_district":`)
		buf = appendJSONOrNull(buf, district)
		buf = append(buf, `,"postcode_sector":`...)
		buf = appendJSONOrNull(buf, sector)
		r.area = string(append(buf, '}'))
	}
	bound(c.postcode)
	c.postcode[v] = r
	return r
}

func appendJSONOrNull(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	return pyJSONString(dst, *s)
}

func (c *columnar) sexOf(v string) string {
	if r, ok := c.sex[v]; ok {
		return r
	}
	r := ""
	if _, err := standardise.StandardSex(v); err != nil {
		r = err.Error()
	}
	bound(c.sex)
	c.sex[v] = r
	return r
}

func (c *columnar) localityOf(v string) locResult {
	if r, ok := c.locality[v]; ok {
		return r
	}
	var r locResult
	if t := standardise.StandardText(v); t != nil && *t != "" {
		r = locResult{ok: true, token: c.e.parts[pLocality].get(*t)}
	}
	bound(c.locality)
	c.locality[v] = r
	return r
}

// identifier is _identifier for one value: its token, or the problem's reason.
func identifier(v string, asGiven bool, std func(string) (string, error), h *keyedHash) (uint64, string) {
	if asGiven {
		return h.token(pyCompactUpper(v)), ""
	}
	s, err := std(v)
	if err != nil {
		return 0, err.Error()
	}
	return h.token(s), ""
}

// The order in which a row's dropped fields are reported (_PROBLEM_ORDER).
const (
	prGiven = iota
	prFamily
	prDOB
	prPostcode
	prNINO
	prNHS
	prSex
	nProblemFields
)

var problemField = [nProblemFields]string{"given_name", "family_name", "date_of_birth", "postcode", "nino", "nhs_number", "sex"}

// EncodeBatch mirrors ColumnarEncoder.encode_columns(batch.Columns): standardise each row
// (blank values are missing), report dropped fields then the fatal problem, keep the
// usable rows (a local id, a given or family name, and a date of birth, NHS number, NINO,
// postcode or address) and encode them.
func (e *Encoder) EncodeBatch(b *record.Batch) record.Encoded {
	if e.col == nil {
		panic("encode: EncodeBatch needs a Standardiser")
	}
	c := e.col
	n := b.Len()
	column := func(f string) []*string { return b.Columns[f] }
	localC, givenC, familyC := column("local_id"), column("given_name"), column("family_name")
	dobC, pcC, ninoC, nhsC := column("date_of_birth"), column("postcode"), column("nino"), column("nhs_number")
	sexC, locC, addrC := column("sex"), column("locality"), column("address")
	// value returns row i's non-blank raw value.
	value := func(col []*string, i int) (string, bool) {
		if col == nil || col[i] == nil {
			return "", false
		}
		v := *col[i]
		if pystr.Strip(v) == "" {
			return "", false
		}
		return v, true
	}

	out := record.Encoded{Accepted: make([]bool, n), Problems: map[int][]record.Problem{},
		LocalIDs: make([]string, 0, n), AreaJSON: make([]string, 0, n)}
	clear(c.address)
	addrFilters := 0
	if addrC != nil {
		addrFilters = n
	}
	addr := e.addrScratch(addrFilters)
	rows := e.rows[:0]
	for i := range n {
		var r row
		var problems [nProblemFields]string
		localID := ""
		if v := localC; v != nil && v[i] != nil {
			localID = pystr.Strip(*v[i])
		}
		if v, ok := value(givenC, i); ok {
			g := c.givenOf(v)
			if g.ok {
				r.v[pGCanon], r.v[pGPhon], r.given = g.token, g.phon, g.filter
				r.ok |= 1<<pGCanon | 1<<pGPhon
			}
			problems[prGiven] = g.problem
		}
		if v, ok := value(familyC, i); ok {
			f := c.familyOf(v)
			if f.ok {
				r.v[pFam], r.v[pFPhon], r.family = f.token, f.phon, f.filter
				r.ok |= 1<<pFam | 1<<pFPhon
			}
			problems[prFamily] = f.problem
		}
		if v, ok := value(dobC, i); ok {
			d := c.dobOf(v)
			if d.ok {
				r.v[pDOB], r.v[pYear], r.v[pMonth], r.v[pDay], r.v[pDM] = d.v[0], d.v[1], d.v[2], d.v[3], d.v[4]
				r.ok |= 1<<pDOB | 1<<pYear | 1<<pMonth | 1<<pDay | 1<<pDM
			}
			problems[prDOB] = d.problem
		}
		area := areaNone
		if v, ok := value(pcC, i); ok {
			p := c.postcodeOf(v)
			if p.ok {
				r.v[pPC] = p.pc
				r.ok |= 1 << pPC
				if p.hasSector {
					r.v[pSector] = p.sector
					r.ok |= 1 << pSector
				}
			}
			area = p.area
			problems[prPostcode] = p.problem
		}
		if v, ok := value(ninoC, i); ok {
			t, problem := identifier(v, c.ninoAsGiven, standardise.StandardNINO, e.nino)
			if problem == "" {
				r.nino, r.ok = t, r.ok|okNINO
			}
			problems[prNINO] = problem
		}
		if v, ok := value(nhsC, i); ok {
			t, problem := identifier(v, c.nhsAsGiven, standardise.StandardNHSNumber, e.nhs)
			if problem == "" {
				r.nhs, r.ok = t, r.ok|okNHS
			}
			problems[prNHS] = problem
		}
		if v, ok := value(sexC, i); ok {
			problems[prSex] = c.sexOf(v)
		}
		if v, ok := value(locC, i); ok {
			if l := c.localityOf(v); l.ok {
				r.v[pLocality], r.ok = l.token, r.ok|1<<pLocality
			}
		}
		if v, ok := value(addrC, i); ok {
			f, seen := c.address[v]
			if !seen {
				if t := standardise.StandardText(v); t != nil && *t != "" {
					f, addr = addr[:e.width:e.width], addr[e.width:]
					e.clkAddress.words(f, *t)
				}
				c.address[v] = f
			}
			r.addr = f
		}

		// The usable-row rule (unusable_reason).
		hasName := r.ok&(1<<pGCanon|1<<pFam) != 0
		hasOther := r.ok&(1<<pDOB|1<<pPC|okNHS|okNINO) != 0 || r.addr != nil
		accepted := localID != "" && hasName && hasOther
		var found []record.Problem
		for f, reason := range problems {
			if reason != "" {
				found = append(found, record.Problem{Field: problemField[f], Reason: reason})
			}
		}
		switch {
		case localID == "":
			found = append(found, record.Problem{Field: "local_id", Reason: "missing local id", Fatal: true})
		case !hasName:
			found = append(found, record.Problem{Field: "name", Reason: "no given or family name", Fatal: true})
		case !hasOther:
			found = append(found, record.Problem{Field: "date_of_birth",
				Reason: "no valid date of birth, NHS number, NINO, postcode or address", Fatal: true})
		}
		if found != nil {
			out.Problems[i] = found
		}
		if accepted {
			out.Accepted[i] = true
			rows = append(rows, r)
			out.LocalIDs = append(out.LocalIDs, localID)
			out.AreaJSON = append(out.AreaJSON, area)
		}
	}
	e.rows = rows
	out.Ints, out.Binaries = e.finish(rows)
	return out
}
