// Package standardise is the native port of connectors/standardise.py: the same rules,
// the same problems (field, reason, fatal) in the same order, value for value.
//
// Python's Unicode behaviour (str.strip/split whitespace, str.upper, NFKD accent folding,
// isalnum/isdigit, re's \d) comes from tables generated from the Python the connector
// runs (pytables.go), so both engines agree even where Go's Unicode version differs.
package standardise

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// cacheLimit bounds each per-value cache, as the lru_caches of the Python module do
// (200,000 entries); a full cache is emptied rather than evicted entry by entry.
const cacheLimit = 200_000

type dateResult struct {
	d   pyDate
	err error
}

type dateKey struct{ raw, format string }

// Standardiser holds the nickname table and per-value caches. Not safe for concurrent use:
// give each goroutine its own.
type Standardiser struct {
	todayKey  int // today as yyyymmdd, for comparing dates without time.Time
	nicknames map[string]string

	names     map[string][]string
	phonetics map[string]string
	texts     map[string]*string
	dates     map[dateKey]dateResult
	formats   map[string]formatResult
}

type formatResult struct {
	f   *strptimeFormat
	err error
}

// New loads the nickname table (connectors/data/nicknames.csv); `today` is the date after
// which a date of birth is in the future (the zero time: the current local date, as
// Python's date.today()).
func New(nicknamesPath string, today time.Time) (*Standardiser, error) {
	nick, err := loadNicknames(nicknamesPath)
	if err != nil {
		return nil, err
	}
	if today.IsZero() {
		today = time.Now()
	}
	y, m, d := today.Date()
	return &Standardiser{
		todayKey:  y*10000 + int(m)*100 + d,
		nicknames: nick,
		names:     map[string][]string{},
		phonetics: map[string]string{},
		texts:     map[string]*string{},
		dates:     map[dateKey]dateResult{},
		formats:   map[string]formatResult{},
	}, nil
}

// loadNicknames reads the table as csv.DictReader would: a header row naming the
// "nickname" and "canonical" columns, later rows overriding earlier ones.
func loadNicknames(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ni, ci := -1, -1
	for i, h := range header {
		switch h {
		case "nickname":
			ni = i
		case "canonical":
			ci = i
		}
	}
	if ni < 0 || ci < 0 {
		return nil, fmt.Errorf("%s: needs nickname and canonical columns", path)
	}
	out := map[string]string{}
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(row) == 0 || ni >= len(row) || ci >= len(row) {
			continue // DictReader would give None; no name standardises to that
		}
		out[row[ni]] = row[ci]
	}
	return out, nil
}

// Identity standardises one raw identity (identity field name -> raw value, nil = None),
// as connectors.standardise.standardise_identity(raw, mapping, today). A nil mapping is
// None. Like ParseBirthDate it panics on a date format Python's re cannot compile.
func (s *Standardiser) Identity(raw map[string]*string, mapping record.Mapping) (record.Identity, []record.Problem) {
	var out record.Identity
	var problems []record.Problem
	// One allocation holds every string the identity points to.
	vals := new(struct {
		localID, given, givenCanon, givenPhon, middle, family, familyPhon string
		postcode, sector, district, nino, nhs, sex, address               string
		dob                                                               time.Time
	})
	drop := func(field, reason string) {
		problems = append(problems, record.Problem{Field: field, Reason: reason})
	}
	get := func(name string) (string, bool) { // the raw value, and whether it is not blank
		v := raw[name]
		if v == nil || pystr.IsBlank(*v) {
			return "", false
		}
		return *v, true
	}

	if v, ok := get("local_id"); ok {
		vals.localID = pystr.Strip(v)
		out.LocalID = &vals.localID
	}

	givenRaw, givenOK := get("given_name")
	middleRaw, middleOK := get("middle_names")
	var givenWords, middleWords []string
	if givenOK {
		givenWords = s.NameWords(givenRaw)
	}
	if middleOK {
		middleWords = s.NameWords(middleRaw)
	}
	if len(givenWords) > 0 {
		vals.given = givenWords[0]
		out.Given = &vals.given
		vals.givenCanon = s.CanonicalGiven(vals.given)
		out.GivenCanon = &vals.givenCanon
		vals.givenPhon = s.Phonetic(vals.given)
		out.GivenPhon = &vals.givenPhon
		if len(givenWords) > 1 {
			middleWords = append(append([]string(nil), givenWords[1:]...), middleWords...)
		}
	} else if givenOK {
		drop("given_name", "no letters after cleaning")
	}
	if len(middleWords) > 0 {
		vals.middle = joinWords(middleWords)
		out.Middle = &vals.middle
	}
	if v, ok := get("family_name"); ok {
		if words := s.NameWords(v); len(words) > 0 {
			vals.family = joinWords(words)
			out.Family = &vals.family
			vals.familyPhon = s.Phonetic(vals.family)
			out.FamilyPhon = &vals.familyPhon
		} else {
			drop("family_name", "no letters after cleaning")
		}
	}

	if v, ok := get("date_of_birth"); ok {
		var format *string
		if spec, ok := mapping["date_of_birth"]; ok {
			format = spec.Format
		}
		if d, err := s.ParseBirthDate(v, format); err != nil {
			drop("date_of_birth", err.Error())
		} else {
			vals.dob = d
			out.DOB = &vals.dob
		}
	}

	if v, ok := get("postcode"); ok {
		validate := true
		if spec, ok := mapping["postcode"]; ok {
			validate = spec.Validate
		}
		if pc, sector, district, area, err := standardPostcode(v, validate); err != nil {
			drop("postcode", err.Error())
		} else {
			vals.postcode = pc
			out.Postcode = &vals.postcode
			if area {
				vals.sector, vals.district = sector, district
				out.PcSector, out.PcDistrict = &vals.sector, &vals.district
			}
		}
	}

	for _, name := range [...]string{"nino", "nhs_number", "sex"} {
		v, ok := get(name)
		if !ok {
			continue
		}
		if spec, ok := mapping[name]; ok && !spec.Validate && name != "sex" {
			kept := compactUpper(v) // kept as given, unvalidated
			if name == "nino" {
				vals.nino = kept
				out.NINO = &vals.nino
			} else {
				vals.nhs = kept
				out.NHSNumber = &vals.nhs
			}
			continue
		}
		switch name {
		case "nino":
			if n, err := StandardNINO(v); err != nil {
				drop(name, err.Error())
			} else {
				vals.nino = n
				out.NINO = &vals.nino
			}
		case "nhs_number":
			if n, err := StandardNHSNumber(v); err != nil {
				drop(name, err.Error())
			} else {
				vals.nhs = n
				out.NHSNumber = &vals.nhs
			}
		case "sex":
			if x, err := StandardSex(v); err != nil {
				drop(name, err.Error())
			} else if x != nil {
				vals.sex = *x
				out.Sex = &vals.sex
			}
		}
	}

	if v, ok := get("address"); ok { // nearly every address is distinct: not cached
		if t, ok := standardText(v); ok {
			vals.address = t
			out.Address = &vals.address
		}
	}
	if v, ok := get("locality"); ok {
		out.Locality = s.standardText(v)
	}

	if p, ok := unusableReason(&out); ok {
		problems = append(problems, p)
	}
	return out, problems
}

// The per-value functions, exported so the encoder can cache their results per distinct
// value as connectors/columnar.py does. Each mirrors the Python function of the same name;
// an error's message is the Python ValueError's message (the reject reason).

// NameWords mirrors name_words. The slice is cached and shared: do not modify it.
func (s *Standardiser) NameWords(raw string) []string {
	if w, ok := s.names[raw]; ok {
		return w
	}
	w := nameWords(raw)
	if len(s.names) >= cacheLimit {
		clear(s.names)
	}
	s.names[raw] = w
	return w
}

// CanonicalGiven mirrors canonical_given.
func (s *Standardiser) CanonicalGiven(given string) string {
	if c, ok := s.nicknames[given]; ok {
		return c
	}
	return given
}

// Phonetic mirrors phonetic (jellyfish Metaphone of the name without spaces).
func (s *Standardiser) Phonetic(name string) string {
	if p, ok := s.phonetics[name]; ok {
		return p
	}
	p := metaphone(strings.ReplaceAll(name, " ", ""))
	if len(s.phonetics) >= cacheLimit {
		clear(s.phonetics)
	}
	s.phonetics[name] = p
	return p
}

// standardText is StandardText with the per-value cache standard_text has in Python.
func (s *Standardiser) standardText(raw string) *string {
	if t, ok := s.texts[raw]; ok {
		return t
	}
	t := StandardText(raw)
	if len(s.texts) >= cacheLimit/2 {
		clear(s.texts)
	}
	s.texts[raw] = t
	return t
}

// compiledFormat compiles a strptime format once.
func (s *Standardiser) compiledFormat(format string) (*strptimeFormat, error) {
	if r, ok := s.formats[format]; ok {
		return r.f, r.err
	}
	f, err := compileFormat(format)
	if len(s.formats) >= 1000 {
		clear(s.formats)
	}
	s.formats[format] = formatResult{f, err}
	return f, err
}

// ParseDate mirrors parse_date(raw, fmt); fmt nil or "" = the common formats.
func (s *Standardiser) ParseDate(raw string, format *string) (time.Time, error) {
	d, err := s.parseDateCached(raw, format)
	if err != nil {
		return time.Time{}, err
	}
	return d.time(), nil
}

func (s *Standardiser) parseDateCached(raw string, format *string) (pyDate, error) {
	f := ""
	if format != nil {
		f = *format
	}
	if f == "" { // the numeric patterns are cheaper to run than to cache
		if d, err, ok := parseNumericDate(pystr.Strip(raw)); ok {
			return d, err
		}
	} else if d, valid, ok := parseCleanDate(pystr.Strip(raw), f); ok {
		if !valid {
			return pyDate{}, formatError(f)
		}
		return d, nil
	}
	key := dateKey{raw, f}
	if r, ok := s.dates[key]; ok {
		return r.d, r.err
	}
	d, err := s.parseDate(raw, f)
	if len(s.dates) >= cacheLimit {
		clear(s.dates)
	}
	s.dates[key] = dateResult{d, err}
	return d, err
}

// ParseBirthDate mirrors parse_birth_date(raw, fmt, today); fmt nil = the common formats.
// A format Python's re module cannot compile (a directive used twice) panics with a
// *BadFormatError, as Python raises re.error out of standardise_identity.
func (s *Standardiser) ParseBirthDate(raw string, format *string) (time.Time, error) {
	d, err := s.parseDateCached(raw, format)
	if err != nil {
		return time.Time{}, err
	}
	if d.y < earliestBirthYear {
		return time.Time{}, errBefore1900
	}
	if d.y*10000+d.m*100+d.d > s.todayKey {
		return time.Time{}, errFuture
	}
	return d.time(), nil
}

var (
	errNotUKPostcode   = errors.New("not a UK postcode")
	errPostcodeChars   = errors.New("postcode has characters other than letters and digits")
	errNINO            = errors.New("not a valid NINO format")
	errNot10Digits     = errors.New("not 10 digits")
	errCheckDigit      = errors.New("invalid check digit")
	errSex             = errors.New("unrecognised sex code")
	ninoBadPrefixes    = map[string]bool{"BG": true, "GB": true, "KN": true, "NK": true, "NT": true, "TN": true, "ZZ": true}
	nhsWeights         = [9]int{10, 9, 8, 7, 6, 5, 4, 3, 2}
	sexM, sexF, sexX   = "M", "F", "X"
	sexCodes           = map[string]*string{"m": &sexM, "male": &sexM, "1": &sexM, "man": &sexM, "f": &sexF, "female": &sexF, "2": &sexF, "woman": &sexF, "x": &sexX, "other": &sexX, "i": &sexX, "indeterminate": &sexX, "9": nil, "u": nil, "unknown": nil, "0": nil, "n": nil, "not known": nil}
	problemNoLocalID   = record.Problem{Field: "local_id", Reason: "missing local id", Fatal: true}
	problemNoName      = record.Problem{Field: "name", Reason: "no given or family name", Fatal: true}
	problemNoIdentifer = record.Problem{Field: "date_of_birth", Reason: "no valid date of birth, NHS number, NINO, postcode or address", Fatal: true}
)

func isUpperASCII(c byte) bool { return c >= 'A' && c <= 'Z' }
func isDigitASCII(c byte) bool { return c >= '0' && c <= '9' }

// StandardPostcode mirrors standard_postcode: (postcode, sector, district); sector and
// district are nil when validate is false.
func StandardPostcode(raw string, validate bool) (string, *string, *string, error) {
	pc, sector, district, area, err := standardPostcode(raw, validate)
	if err != nil || !area {
		return pc, nil, nil, err
	}
	return pc, &sector, &district, nil
}

// standardPostcode is StandardPostcode without the pointers (area: sector and district
// are set).
func standardPostcode(raw string, validate bool) (pc, sector, district string, area bool, err error) {
	// The common case, short ASCII, is compacted on the stack.
	if len(raw) <= 16 && isASCII(raw) {
		var buf [16]byte
		b := buf[:0]
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if pystr.IsSpaceByte(c) {
				continue
			}
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		if k, ok := postcodeOutward(b); ok {
			var pcb [16]byte
			p := append(append(append(pcb[:0], b[:k]...), ' '), b[k:]...)
			if raw == string(p) {
				pc = raw // already standard: no copy
			} else {
				pc = string(p)
			}
			return pc, pc[:k+2], pc[:k], true, nil
		}
		if validate {
			return "", "", "", false, errNotUKPostcode
		}
		if len(b) == 0 { // every other ASCII character is a letter or a digit, or not alnum
			return "", "", "", false, errPostcodeChars
		}
		for _, c := range b {
			if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return "", "", "", false, errPostcodeChars
			}
		}
		return string(b), "", "", false, nil
	}
	compact := compactUpper(raw)
	if k, ok := postcodeOutward(compact); ok {
		pc = compact[:k] + " " + compact[k:]
		return pc, pc[:k+2], pc[:k], true, nil
	}
	if validate {
		return "", "", "", false, errNotUKPostcode
	}
	if !isPyAlnum(compact) {
		return "", "", "", false, errPostcodeChars
	}
	return compact, "", "", false, nil
}

// postcodeOutward matches ^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$ (the inward code
// is the last three characters); k is the outward code's length.
func postcodeOutward[T string | []byte](c T) (k int, ok bool) {
	n := len(c)
	if n < 5 || n > 7 {
		return 0, false
	}
	in, out := c[n-3:], c[:n-3]
	if !(isDigitASCII(in[0]) && isUpperASCII(in[1]) && isUpperASCII(in[2])) {
		return 0, false
	}
	switch len(out) {
	case 2: // A9
		ok = isUpperASCII(out[0]) && isDigitASCII(out[1])
	case 3: // A9X or AA9
		ok = isUpperASCII(out[0]) && (isDigitASCII(out[1]) && (isUpperASCII(out[2]) || isDigitASCII(out[2])) ||
			isUpperASCII(out[1]) && isDigitASCII(out[2]))
	case 4: // AA9X
		ok = isUpperASCII(out[0]) && isUpperASCII(out[1]) && isDigitASCII(out[2]) &&
			(isUpperASCII(out[3]) || isDigitASCII(out[3]))
	}
	return n - 3, ok
}

// ninoFirst and ninoSecond are the NINO prefix letter classes [A-CEGHJ-PR-TW-Z] and
// [A-CEGHJ-NPR-TW-Z].
func ninoFirst(c byte) bool {
	return isUpperASCII(c) && !strings.ContainsRune("DFIQUV", rune(c))
}

func ninoSecond(c byte) bool {
	return isUpperASCII(c) && !strings.ContainsRune("DFIOQUV", rune(c))
}

// StandardNINO mirrors standard_nino: ^([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])(\d{6})([A-D]?)$
// on the upper-cased value without whitespace (\d is any decimal digit, kept as it is).
func StandardNINO(raw string) (string, error) {
	c := compactUpper(raw)
	if len(c) < 8 || !ninoFirst(c[0]) || !ninoSecond(c[1]) || ninoBadPrefixes[c[:2]] {
		return "", errNINO
	}
	i := 2
	for k := 0; k < 6; k++ {
		_, j, ok := digitsAt(c, i, 1)
		if !ok {
			return "", errNINO
		}
		i = j
	}
	stem := c[:i]
	if i < len(c) && c[i] >= 'A' && c[i] <= 'D' {
		i++
	}
	if i != len(c) {
		return "", errNINO
	}
	return stem, nil
}

// StandardNHSNumber mirrors standard_nhs_number: spaces and hyphens removed, 10 digits
// (str.isdigit, so also superscripts and other digit forms, which then fail the
// ASCII-only check-digit test), modulus 11.
func StandardNHSNumber(raw string) (string, error) {
	if !strings.ContainsAny(raw, " -") {
		if err := nhsCheck(raw); err != nil {
			return "", err
		}
		return raw, nil
	}
	var stack [32]byte
	b := stack[:0]
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c != ' ' && c != '-' {
			b = append(b, c)
		}
	}
	if err := nhsCheck(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// nhsCheck is standard_nhs_number's tests on the value without spaces and hyphens.
func nhsCheck[T string | []byte](digits T) error {
	n, ascii := 0, true
	for _, r := range string(digits) {
		n++
		if !isPyDigitRune(r) {
			return errNot10Digits
		}
		if r >= 0x80 {
			ascii = false
		}
	}
	if n != 10 {
		return errNot10Digits
	}
	if !ascii || len(digits) != 10 {
		return errCheckDigit
	}
	total := 0
	for i, w := range nhsWeights {
		total += int(digits[i]-'0') * w
	}
	check := 11 - total%11
	if check == 11 {
		check = 0
	}
	if check == 10 || check != int(digits[9]-'0') {
		return errCheckDigit
	}
	return nil
}

// StandardSex mirrors standard_sex (nil = unknown). Only ASCII letters and the KELVIN
// SIGN lower-case to ASCII in Python, and every code is ASCII.
func StandardSex(raw string) (*string, error) {
	key := pystr.Strip(raw)
	if !isASCII(key) {
		key = strings.ReplaceAll(key, "\u212a", "k")
		if !isASCII(key) {
			return nil, errSex
		}
	}
	x, ok := sexCodes[strings.ToLower(key)]
	if !ok {
		return nil, errSex
	}
	return x, nil
}

// Blank mirrors _blank: nil, or only whitespace (Python's str.strip whitespace).
func Blank(v *string) bool { return v == nil || pystr.IsBlank(*v) }

// UnusableReason mirrors unusable_reason.
func UnusableReason(id *record.Identity) *record.Problem {
	if p, ok := unusableReason(id); ok {
		return &p
	}
	return nil
}

func unusableReason(id *record.Identity) (record.Problem, bool) {
	empty := func(p *string) bool { return p == nil || *p == "" }
	switch {
	case empty(id.LocalID):
		return problemNoLocalID, true
	case empty(id.Given) && empty(id.Family):
		return problemNoName, true
	case id.DOB == nil && empty(id.NHSNumber) && empty(id.NINO) && empty(id.Postcode) && empty(id.Address):
		return problemNoIdentifer, true
	}
	return record.Problem{}, false
}
