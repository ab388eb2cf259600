package readers

// The "nhs" kind: a port of connectors/sources/nhs.py (FHIR R4 Bundles, one file or a
// directory of *.json read in name order; a Patient is a row, EpisodeOfCare and Condition
// resources referencing it give its indicators). Same files, same row numbers, values,
// rejects and error texts; each Bundle is parsed by nhs_json.go into a flat tree rather
// than Python objects, which is where the speed comes from.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

func init() { register("nhs", openNHS) }

const (
	nhsNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"
	nhsDateReason   = "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)"
)

// nhsPatientFields is PATIENT_FIELDS: the flattened Patient, in flat_values order.
var nhsPatientFields = []string{
	"id", "nhs_number", "given", "middle_names", "family", "birthDate", "gender",
	"address_line", "city", "postalCode",
}

var nhsServiceTypes = map[string][2]string{
	"secondary-mental-health": {"nhs.secondary_mental_health", "discharged"},
	"talking-therapies":       {"nhs.talking_therapies", "completed"},
	"drug-alcohol":            {"nhs.drug_alcohol", "completed"},
}

var nhsLTCGroups = map[string]string{
	"44054006": "diabetes", "46635009": "diabetes", "73211009": "diabetes",
	"13645005": "copd", "195967001": "asthma",
	"279039007": "msk", "69896004": "msk", "396275006": "msk",
	"53741008": "heart", "84114007": "heart", "84757009": "epilepsy",
}

var nhsActiveEpisode = map[string]bool{"active": true, "waitlist": true, "onhold": true, "planned": true}
var nhsActiveCondition = map[string]bool{"active": true, "recurrence": true, "relapse": true}

// nhsBundleHead is _BUNDLE_HEAD (a bytes pattern: \s is ASCII whitespace, \v included).
var nhsBundleHead = regexp.MustCompile(`"resourceType"[ \t\n\r\f\v]*:[ \t\n\r\f\v]*"Bundle"`)

// nhsIndicatorsJSON is swapped by the tests while IndicatorsJSON is not yet written.
var nhsIndicatorsJSON = IndicatorsJSON

// nhsMalformed is nhs.Malformed: an element of the wrong JSON type.
type nhsMalformed struct{ field, reason string }

func (m *nhsMalformed) Error() string { return m.field + ": " + m.reason }

func nhsSourceErr(format string, args ...any) error {
	return &SourceError{Msg: fmt.Sprintf(format, args...)}
}

// pyPath is str(pathlib.Path(p)): duplicate slashes and "." parts dropped, no trailing slash.
func nhsPyPath(p string) string {
	if p == "" {
		return "."
	}
	prefix := ""
	if strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "///") {
		prefix = "//"
	} else if strings.HasPrefix(p, "/") {
		prefix = "/"
	}
	var parts []string
	for _, part := range strings.Split(p, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	out := prefix + strings.Join(parts, "/")
	if out == "" {
		return "."
	}
	return out
}

// pyStrerror is the C library's message for an OS error, as Python's exc.strerror gives it.
func cnStrerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return err.Error()
}

// nhsFiles is _files.
func nhsFiles(input string) ([]string, error) {
	path := nhsPyPath(input)
	if st, err := os.Stat(input); err == nil && st.IsDir() {
		entries, err := os.ReadDir(input)
		if err != nil {
			return nil, nhsSourceErr("%s: cannot read: %s", path, cnStrerror(err))
		}
		var files []string
		for _, e := range entries {
			name := e.Name()
			if dot := strings.LastIndexByte(name, '.'); dot <= 0 || name[dot:] != ".json" {
				continue
			}
			full := filepath.Join(path, name)
			if st, err := os.Stat(full); err != nil || !st.Mode().IsRegular() {
				continue
			}
			if path == "." {
				files = append(files, name)
			} else {
				files = append(files, path+"/"+name)
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, nhsSourceErr("%s: no *.json FHIR Bundles in this directory", path)
		}
		return files, nil
	}
	if _, err := os.Stat(input); err != nil {
		return nil, nhsSourceErr("%s: cannot read: no such file or directory", path)
	}
	return []string{path}, nil
}

func nhsCheckHead(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nhsSourceErr("%s: cannot read: %s", path, cnStrerror(err))
	}
	defer f.Close()
	head := make([]byte, 65536)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nhsSourceErr("%s: cannot read: %s", path, cnStrerror(err))
	}
	if !nhsBundleHead.Match(head[:n]) {
		return nhsSourceErr("%s: not a FHIR Bundle (no \"resourceType\": \"Bundle\")", path)
	}
	return nil
}

// nhsLoad is _load: the file parsed and checked to be a Bundle with a list of entries.
func nhsLoad(path string, nodes []fhirNode) (*fhirDoc, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nhsSourceErr("%s: cannot read: %s", path, cnStrerror(err))
	}
	doc, perr := fhirParse(raw, nodes)
	if perr != nil {
		if perr.tooDeep {
			return nil, nhsSourceErr("%s: JSON nested too deeply to be a FHIR Bundle", path)
		}
		data := raw
		if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
			data = data[3:]
		}
		return nil, nhsSourceErr("%s: not valid JSON: %s", path, perr.message(data))
	}
	root := &doc.nodes[0]
	if root.kind != fjObj {
		return nil, nhsSourceErr("%s: not a FHIR Bundle (resourceType is %s)", path, pystr.Repr(doc.pyTypeName(0), pystr.WTF8))
	}
	rt := doc.get(0, "resourceType")
	if rt < 0 || doc.nodes[rt].kind != fjStr || doc.text(rt) != "Bundle" {
		return nil, nhsSourceErr("%s: not a FHIR Bundle (resourceType is %s)", path, doc.repr(rt))
	}
	if e := doc.get(0, "entry"); e >= 0 && doc.nodes[e].kind != fjArr {
		return nil, nhsSourceErr("%s: Bundle.entry is not a list", path)
	}
	return doc, nil
}

// pyTypeName is type(value).__name__ of what json.loads makes of node n.
func (doc *fhirDoc) pyTypeName(n int32) string {
	switch doc.nodes[n].kind {
	case fjNull:
		return "NoneType"
	case fjFalse, fjTrue:
		return "bool"
	case fjStr:
		return "str"
	case fjArr:
		return "list"
	case fjObj:
		return "dict"
	}
	node := &doc.nodes[n]
	if t := string(doc.data[node.s:node.e]); strings.ContainsAny(t, ".eEN") || strings.HasSuffix(t, "Infinity") {
		return "float"
	}
	return "int"
}

// get is dict.get on object node o: the last member named k, -1 when none.
func (doc *fhirDoc) get(o int32, k string) int32 {
	found := int32(-1)
	for c := doc.nodes[o].first; c >= 0; c = doc.nodes[c].next {
		if doc.keyIs(&doc.nodes[c], k) {
			found = c
		}
	}
	return found
}

func (doc *fhirDoc) kind(n int32) fhirKind {
	if n < 0 {
		return fjAbsent
	}
	return doc.nodes[n].kind
}

func (doc *fhirDoc) text(n int32) string {
	node := &doc.nodes[n]
	return doc.str(node.s, node.e, node.esc)
}

// repr is Python's repr() of the value (None when absent).
func (doc *fhirDoc) repr(n int32) string {
	switch doc.kind(n) {
	case fjAbsent, fjNull:
		return "None"
	case fjFalse:
		return "False"
	case fjTrue:
		return "True"
	case fjStr:
		return pystr.Repr(doc.text(n), pystr.WTF8)
	case fjNum:
		node := &doc.nodes[n]
		return nhsNumberRepr(string(doc.data[node.s:node.e]))
	case fjArr:
		var parts []string
		for c := doc.nodes[n].first; c >= 0; c = doc.nodes[c].next {
			parts = append(parts, doc.repr(c))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	var parts []string
	seen := map[string]int{}
	for c := doc.nodes[n].first; c >= 0; c = doc.nodes[c].next {
		node := &doc.nodes[c]
		k := doc.str(node.ks, node.ke, node.kesc)
		item := pystr.Repr(k, pystr.WTF8) + ": " + doc.repr(c)
		if at, ok := seen[k]; ok {
			parts[at] = item // a repeated key keeps its first place, its last value
			continue
		}
		seen[k] = len(parts)
		parts = append(parts, item)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// nhsNumberRepr is repr() of the int or float json.loads makes of a number's text.
func nhsNumberRepr(t string) string {
	switch t {
	case "NaN":
		return "nan"
	case "Infinity":
		return "inf"
	case "-Infinity":
		return "-inf"
	}
	if !strings.ContainsAny(t, ".eE") {
		t = strings.TrimPrefix(t, "-0")
		if t == "" {
			return "0"
		}
		return strings.TrimLeft(t, "+")
	}
	f, _ := strconv.ParseFloat(t, 64)
	return cnFloatRepr(f)
}

// nhsJSONType is _json_type.
func nhsJSONType(k fhirKind) string {
	switch k {
	case fjFalse, fjTrue:
		return "true/false"
	case fjNum:
		return "a number"
	case fjObj:
		return "an object"
	case fjArr:
		return "a list"
	case fjStr:
		return "a string"
	}
	return "null"
}

// str is _string: (stripped text, present); a wrong type is *nhsMalformed.
func (doc *fhirDoc) pyString(n int32, field func() string) (string, bool, error) {
	switch doc.kind(n) {
	case fjAbsent, fjNull:
		return "", false, nil
	case fjStr:
		node := &doc.nodes[n]
		var t string
		if node.esc {
			t = pystr.Strip(doc.str(node.s, node.e, true))
		} else {
			t = pystr.Strip(string(doc.data[node.s:node.e]))
		}
		return t, t != "", nil
	}
	return "", false, &nhsMalformed{field(), "must be a string, not " + nhsJSONType(doc.kind(n))}
}

// list is _list: the children of a list (none when absent).
func (doc *fhirDoc) list(n int32, field func() string) ([]int32, error) {
	switch doc.kind(n) {
	case fjAbsent, fjNull:
		return nil, nil
	case fjArr:
		var out []int32
		for c := doc.nodes[n].first; c >= 0; c = doc.nodes[c].next {
			out = append(out, c)
		}
		return out, nil
	}
	return nil, &nhsMalformed{field(), "must be a list, not " + nhsJSONType(doc.kind(n))}
}

// object is _object: the node itself, or -1 for an absent/null (empty) object.
func (doc *fhirDoc) object(n int32, field func() string) (int32, error) {
	switch doc.kind(n) {
	case fjAbsent, fjNull:
		return -1, nil
	case fjObj:
		return n, nil
	}
	return -1, &nhsMalformed{field(), "must be an object, not " + nhsJSONType(doc.kind(n))}
}

// member is get() on an object that may be empty (-1).
func (doc *fhirDoc) member(o int32, k string) int32 {
	if o < 0 {
		return -1
	}
	return doc.get(o, k)
}

func (doc *fhirDoc) objects(n int32, field func() string) ([]int32, error) {
	items, err := doc.list(n, field)
	if err != nil {
		return nil, err
	}
	for k, v := range items {
		o, err := doc.object(v, func() string { return field() + "[" + strconv.Itoa(k) + "]" })
		if err != nil {
			return nil, err
		}
		items[k] = o
	}
	return items, nil
}

func (doc *fhirDoc) strings(n int32, field func() string) ([]string, error) {
	items, err := doc.list(n, field)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, v := range items {
		s, ok, err := doc.pyString(v, func() string { return field() + "[" + strconv.Itoa(k) + "]" })
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}

func nhsFixed(s string) func() string { return func() string { return s } }

func nhsIndexed(prefix string, k int, suffix string) func() string {
	return func() string { return prefix + "[" + strconv.Itoa(k) + "]" + suffix }
}

// nhsFlat is a flat_values tuple: ok[i] false for None.
type nhsFlat struct {
	v  [10]string
	ok [10]bool
}

func (f *nhsFlat) set(i int, s string, ok bool) { f.v[i], f.ok[i] = s, ok }

// flatten is flatten_patient (flat_values gives the same values and the same Malformed).
func (doc *fhirDoc) flatten(p int32, flat *nhsFlat) error {
	*flat = nhsFlat{}
	// One pass for the elements read (dict.get: the last of a repeated key).
	var id, ident, name, birth, gender, addr int32 = -1, -1, -1, -1, -1, -1
	for c := doc.nodes[p].first; c >= 0; c = doc.nodes[c].next {
		node := &doc.nodes[c]
		var k string
		if node.kesc {
			k = doc.str(node.ks, node.ke, true)
		} else {
			k = fhirView(doc.data[node.ks:node.ke])
		}
		switch k {
		case "id":
			id = c
		case "identifier":
			ident = c
		case "name":
			name = c
		case "birthDate":
			birth = c
		case "gender":
			gender = c
		case "address":
			addr = c
		}
	}
	s, ok, err := doc.pyString(id, nhsFixed("Patient.id"))
	if err != nil {
		return err
	}
	flat.set(0, s, ok)
	idents, err := doc.objects(ident, nhsFixed("Patient.identifier"))
	if err != nil {
		return err
	}
	for k, o := range idents {
		system, sok, err := doc.pyString(doc.member(o, "system"), nhsIndexed("Patient.identifier", k, ".system"))
		if err != nil {
			return err
		}
		value, vok, err := doc.pyString(doc.member(o, "value"), nhsIndexed("Patient.identifier", k, ".value"))
		if err != nil {
			return err
		}
		if sok && system == nhsNumberSystem && !flat.ok[1] {
			flat.set(1, value, vok)
		}
	}
	names, err := doc.objects(name, nhsFixed("Patient.name"))
	if err != nil {
		return err
	}
	type checkedName struct {
		use, family     string
		useOK, familyOK bool
		given           []string
	}
	var chosen, first *checkedName
	for k, o := range names {
		var c checkedName
		if c.use, c.useOK, err = doc.pyString(doc.member(o, "use"), nhsIndexed("Patient.name", k, ".use")); err != nil {
			return err
		}
		if c.given, err = doc.strings(doc.member(o, "given"), nhsIndexed("Patient.name", k, ".given")); err != nil {
			return err
		}
		if c.family, c.familyOK, err = doc.pyString(doc.member(o, "family"), nhsIndexed("Patient.name", k, ".family")); err != nil {
			return err
		}
		if first == nil {
			first = &c
		}
		if chosen == nil && c.useOK && c.use == "official" {
			chosen = &c
		}
	}
	if chosen == nil {
		chosen = first
	}
	if chosen != nil {
		if len(chosen.given) > 0 {
			flat.set(2, chosen.given[0], true)
		}
		if len(chosen.given) > 1 {
			flat.set(3, strings.Join(chosen.given[1:], " "), true)
		}
		flat.set(4, chosen.family, chosen.familyOK)
	}
	if s, ok, err = doc.pyString(birth, nhsFixed("Patient.birthDate")); err != nil {
		return err
	}
	flat.set(5, s, ok)
	if s, ok, err = doc.pyString(gender, nhsFixed("Patient.gender")); err != nil {
		return err
	}
	flat.set(6, s, ok)
	addrs, err := doc.objects(addr, nhsFixed("Patient.address"))
	if err != nil {
		return err
	}
	type checkedAddress struct {
		use, city, postcode       string
		useOK, cityOK, postcodeOK bool
		line                      []string
	}
	var home, firstAddr *checkedAddress
	for k, o := range addrs {
		var a checkedAddress
		if a.use, a.useOK, err = doc.pyString(doc.member(o, "use"), nhsIndexed("Patient.address", k, ".use")); err != nil {
			return err
		}
		if a.line, err = doc.strings(doc.member(o, "line"), nhsIndexed("Patient.address", k, ".line")); err != nil {
			return err
		}
		if a.city, a.cityOK, err = doc.pyString(doc.member(o, "city"), nhsIndexed("Patient.address", k, ".city")); err != nil {
			return err
		}
		if a.postcode, a.postcodeOK, err = doc.pyString(doc.member(o, "postalCode"), nhsIndexed("Patient.address", k, ".postalCode")); err != nil {
			return err
		}
		if firstAddr == nil {
			firstAddr = &a
		}
		if home == nil && a.useOK && a.use == "home" {
			home = &a
		}
	}
	if home == nil {
		home = firstAddr
	}
	if home != nil {
		line := strings.Join(home.line, " ")
		flat.set(7, line, line != "")
		flat.set(8, home.city, home.cityOK)
		flat.set(9, home.postcode, home.postcodeOK)
	}
	return nil
}

// nhsDate is _date: a FHIR date or dateTime (a partial date counts from its first day).
func (doc *fhirDoc) date(n int32, field string) (*time.Time, error) {
	text, ok, err := doc.pyString(n, nhsFixed(field))
	if err != nil || !ok {
		return nil, err
	}
	if t, good := nhsParseDate(text); good {
		return &t, nil
	}
	return nil, &nhsMalformed{field, nhsDateReason}
}

// nhsParseDate is _FHIR_DATE.match and date(): \d is any Unicode decimal digit, as in
// Python's str patterns (and int() reads them).
func nhsParseDate(text string) (time.Time, bool) {
	rs := []rune(text)
	digits := func(at, n int) (int, bool) {
		if at+n > len(rs) {
			return 0, false
		}
		v := 0
		for _, r := range rs[at : at+n] {
			d := pystr.Decimal(r)
			if d < 0 {
				return 0, false
			}
			v = v*10 + d
		}
		return v, true
	}
	year, ok := digits(0, 4)
	if !ok {
		return time.Time{}, false
	}
	at, month, day := 4, 1, 1
	if at < len(rs) && rs[at] == '-' {
		if m, ok := digits(at+1, 2); ok {
			month, at = m, at+3
			if at < len(rs) && rs[at] == '-' {
				if d, ok := digits(at+1, 2); ok {
					day, at = d, at+3
				}
			}
		}
	}
	if at < len(rs) {
		if rs[at] != 'T' {
			return time.Time{}, false
		}
		for _, r := range rs[at:] {
			if r == '\n' {
				return time.Time{}, false
			}
		}
	}
	if year < 1 || month < 1 || month > 12 || day < 1 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, false
	}
	return t, true
}

// codes is _codes: the non-blank codes of a CodeableConcept (all checked).
func (doc *fhirDoc) codes(concept int32, field string) ([]string, error) {
	o, err := doc.object(concept, nhsFixed(field))
	if err != nil {
		return nil, err
	}
	codings, err := doc.objects(doc.member(o, "coding"), nhsFixed(field+".coding"))
	if err != nil {
		return nil, err
	}
	var out []string
	for k, c := range codings {
		s, ok, err := doc.pyString(doc.member(c, "code"), nhsIndexed(field+".coding", k, ".code"))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}

func (doc *fhirDoc) episode(r int32, asAt *time.Time) (*Indicator, error) {
	status, statusOK, err := doc.pyString(doc.get(r, "status"), nhsFixed("EpisodeOfCare.status"))
	if err != nil {
		return nil, err
	}
	period, err := doc.object(doc.get(r, "period"), nhsFixed("EpisodeOfCare.period"))
	if err != nil {
		return nil, err
	}
	start, err := doc.date(doc.member(period, "start"), "EpisodeOfCare.period.start")
	if err != nil {
		return nil, err
	}
	end, err := doc.date(doc.member(period, "end"), "EpisodeOfCare.period.end")
	if err != nil {
		return nil, err
	}
	types, err := doc.list(doc.get(r, "type"), nhsFixed("EpisodeOfCare.type"))
	if err != nil {
		return nil, err
	}
	for k, concept := range types {
		codes, err := doc.codes(concept, "EpisodeOfCare.type["+strconv.Itoa(k)+"]")
		if err != nil {
			return nil, err
		}
		for _, code := range codes {
			st, ok := nhsServiceTypes[code]
			if !ok {
				continue
			}
			switch {
			case statusOK && nhsActiveEpisode[status]:
				return &Indicator{Code: st[0], Value: "active", Date: nhsOrDate(asAt, start)}, nil
			case statusOK && status == "finished":
				return &Indicator{Code: st[0], Value: st[1], Date: nhsOrDate(end, asAt)}, nil
			}
			return nil, nil // cancelled / entered-in-error
		}
	}
	return nil, nil
}

func nhsOrDate(a, b *time.Time) *time.Time {
	if a != nil {
		return a
	}
	return b
}

func (doc *fhirDoc) condition(r int32) (*Indicator, error) {
	status, err := doc.codes(doc.get(r, "clinicalStatus"), "Condition.clinicalStatus")
	if err != nil {
		return nil, err
	}
	codes, err := doc.codes(doc.get(r, "code"), "Condition.code")
	if err != nil {
		return nil, err
	}
	recorded, err := doc.date(doc.get(r, "recordedDate"), "Condition.recordedDate")
	if err != nil {
		return nil, err
	}
	onset, err := doc.date(doc.get(r, "onsetDateTime"), "Condition.onsetDateTime")
	if err != nil {
		return nil, err
	}
	if len(status) > 0 {
		active := false
		for _, s := range status {
			active = active || nhsActiveCondition[s]
		}
		if !active {
			return nil, nil
		}
	}
	for _, code := range codes {
		if group, ok := nhsLTCGroups[code]; ok {
			return &Indicator{Code: "nhs.long_term_condition", Value: group, Date: nhsOrDate(recorded, onset)}, nil
		}
	}
	return nil, nil
}

// refID is _ref_id: the Patient id a reference names ("" for none).
func (doc *fhirDoc) refID(n int32, field string) (string, error) {
	o, err := doc.object(n, nhsFixed(field))
	if err != nil {
		return "", err
	}
	ref, _, err := doc.pyString(doc.member(o, "reference"), nhsFixed(field+".reference"))
	if err != nil {
		return "", err
	}
	for _, prefix := range []string{"urn:uuid:", "Patient/"} {
		if strings.HasPrefix(ref, prefix) {
			return ref[len(prefix):], nil
		}
	}
	return ref, nil
}

// nhsReader streams the patients of the files in order, batch by batch.
type nhsReader struct {
	files   []string
	fileNo  int
	doc     *fhirDoc // the file being read
	nodes   []fhirNode
	rows    []int32 // its Patients still to read
	found   map[string][]Indicator
	spoiled map[string][2]string
	row     int
	size    int
	rejects record.RejectSink
	specs   []nhsSpec
	done    bool
}

// nhsSpec is one mapped field: the indices of its columns in nhsPatientFields.
type nhsSpec struct {
	name string
	at   []int
}

func openNHS(input string, mapping record.Mapping, size int, rejects record.RejectSink) (record.Reader, error) {
	files, err := nhsFiles(input)
	if err != nil {
		return nil, err
	}
	var missing []string
	known := map[string]int{}
	for i, f := range nhsPatientFields {
		known[f] = i
	}
	var specs []nhsSpec
	seen := map[string]bool{}
	for _, name := range record.IdentityFields {
		spec, ok := mapping[name]
		if !ok {
			continue
		}
		s := nhsSpec{name: name}
		for _, c := range spec.Columns {
			at, ok := known[c]
			if !ok && !seen[c] {
				missing = append(missing, c)
				seen[c] = true
			}
			s.at = append(s.at, at)
		}
		specs = append(specs, s)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, nhsSourceErr("%s (FHIR Patient fields): mapped column(s) not found: %s", input, strings.Join(missing, ", "))
	}
	for _, f := range files {
		if err := nhsCheckHead(f); err != nil {
			return nil, err
		}
	}
	r := &nhsReader{files: files, size: size, rejects: rejects, specs: specs}
	if size < 1 {
		r.size = 1
	}
	if err := r.openFile(); err != nil {
		return nil, err
	}
	return r, nil
}

// openFile loads files[fileNo] and reads its evidence (the first half of _stream's loop).
func (r *nhsReader) openFile() error {
	path := r.files[r.fileNo]
	doc, err := nhsLoad(path, r.nodes)
	if err != nil {
		return err
	}
	r.doc, r.nodes = doc, doc.nodes
	asAt, err := doc.date(doc.get(0, "timestamp"), "Bundle.timestamp")
	if err != nil {
		return nhsSourceErr("%s: %s", path, err)
	}
	r.rows = r.rows[:0]
	r.found = map[string][]Indicator{}
	r.spoiled = map[string][2]string{}
	name := filepath.Base(path)
	entries := doc.get(0, "entry")
	if entries < 0 {
		return nil
	}
	n := 0
	for e := doc.nodes[entries].first; e >= 0; e = doc.nodes[e].next {
		n++
		if doc.nodes[e].kind != fjObj {
			return nhsSourceErr("%s: entry %d: must be an object, not %s", path, n, nhsJSONType(doc.nodes[e].kind))
		}
		res := doc.get(e, "resource")
		if doc.kind(res) != fjObj {
			return nhsSourceErr("%s: entry %d: resource must be an object, not %s", path, n, nhsJSONType(doc.kind(res)))
		}
		rt := doc.get(res, "resourceType")
		if doc.kind(rt) != fjStr {
			return nhsSourceErr("%s: entry %d: resource has no resourceType", path, n)
		}
		node := &doc.nodes[rt]
		var kind string
		if node.esc {
			kind = doc.str(node.s, node.e, true)
		} else {
			kind = fhirView(doc.data[node.s:node.e])
		}
		var refField string
		switch kind {
		case "Patient":
			r.rows = append(r.rows, res)
			continue
		case "EpisodeOfCare":
			refField = "patient"
		case "Condition":
			refField = "subject"
		default:
			continue
		}
		pid, err := doc.refID(doc.get(res, refField), kind+"."+refField)
		if err != nil {
			return nhsSourceErr("%s: entry %d: %s", path, n, err)
		}
		var ind *Indicator
		if kind == "EpisodeOfCare" {
			ind, err = doc.episode(res, asAt)
		} else {
			ind, err = doc.condition(res)
		}
		if err != nil {
			bad := err.(*nhsMalformed)
			if _, ok := r.spoiled[pid]; !ok {
				r.spoiled[pid] = [2]string{bad.field, fmt.Sprintf("%s (%s entry %d)", bad.reason, name, n)}
			}
			continue
		}
		if ind != nil {
			r.found[pid] = append(r.found[pid], *ind)
		}
	}
	return nil
}

// Next gathers the next `size` accepted patients (the second half of _stream's loop and
// nhs._batches), moving on to the next file when one is done.
func (r *nhsReader) Next() (*record.Batch, error) {
	if r.done {
		return nil, nil
	}
	var numbers []int
	var flats []nhsFlat
	var inds [][]Indicator
	var flat nhsFlat
	for {
		for len(r.rows) > 0 {
			p := r.rows[0]
			r.rows = r.rows[1:]
			r.row++
			if err := r.doc.flatten(p, &flat); err != nil {
				bad := err.(*nhsMalformed)
				r.rejects(record.Reject{Row: r.row, Field: bad.field, Reason: bad.reason})
				continue
			}
			pid := ""
			if flat.ok[0] {
				pid = flat.v[0]
				if sp, ok := r.spoiled[pid]; ok {
					r.rejects(record.Reject{Row: r.row, Field: sp[0], Reason: sp[1]})
					continue
				}
			}
			numbers = append(numbers, r.row)
			flats = append(flats, flat)
			inds = append(inds, r.found[pid])
			if len(numbers) >= r.size {
				return r.batch(numbers, flats, inds), nil
			}
		}
		r.fileNo++
		if r.fileNo >= len(r.files) {
			r.done = true
			r.doc = nil
			if len(numbers) > 0 {
				return r.batch(numbers, flats, inds), nil
			}
			return nil, nil
		}
		if err := r.openFile(); err != nil {
			r.done = true
			return nil, err
		}
	}
}

// batch is tuple_columns_picker and the indicators' content JSON.
func (r *nhsReader) batch(numbers []int, flats []nhsFlat, inds [][]Indicator) *record.Batch {
	b := &record.Batch{RowNumbers: numbers, Columns: map[string][]*string{}, Indicators: make([]string, len(numbers))}
	store := make([]string, 0, len(flats)*len(r.specs))
	for _, spec := range r.specs {
		col := make([]*string, len(flats))
		for i := range flats {
			f := &flats[i]
			if len(spec.at) == 1 {
				if f.ok[spec.at[0]] {
					store = append(store, f.v[spec.at[0]])
					col[i] = &store[len(store)-1]
				}
				continue
			}
			var parts []string
			for _, j := range spec.at {
				if f.ok[j] {
					if p := pystr.Strip(f.v[j]); p != "" {
						parts = append(parts, p)
					}
				}
			}
			if len(parts) > 0 {
				store = append(store, strings.Join(parts, " "))
				col[i] = &store[len(store)-1]
			}
		}
		b.Columns[spec.name] = col
	}
	empty := ""
	for i, list := range inds {
		if len(list) == 0 {
			if empty == "" {
				empty = nhsIndicatorsJSON(nil)
			}
			b.Indicators[i] = empty
			continue
		}
		b.Indicators[i] = nhsIndicatorsJSON(list)
	}
	return b
}

func (r *nhsReader) Close() error {
	r.done, r.doc, r.nodes = true, nil, nil
	return nil
}
