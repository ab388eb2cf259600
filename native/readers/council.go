package readers

// The "council" kind: a port of connectors/sources/council.py for a SQLite file (the
// Python reader also takes a PostgreSQL DSN; the native engine reads SQLite only). It runs
// the very SQL SQLAlchemy compiles for SQLite, so SQLite itself decides the joins, the
// sums and which service rows are well typed, and then applies Python's conversions: the
// same row numbers, values, rejects, indicators and messages.

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"joinedup/native/pystr"
	"joinedup/native/record"
	"modernc.org/sqlite"
)

func init() { register("council", openCouncil) }

// councilIndicatorsJSON is swapped by the tests while IndicatorsJSON is not yet written.
var councilIndicatorsJSON = IndicatorsJSON

// councilTables is the SCHEMA's tables in SCHEMA.sorted_tables order (by name: no foreign
// keys), each with its columns in declaration order.
var councilTables = []struct {
	name    string
	columns []string
}{
	{"adult_social_care", []string{"case_ref", "person_ref", "care_act_status", "carer_assessment", "assessed_on"}},
	{"care_leavers", []string{"person_ref", "left_care_on", "recorded_on"}},
	{"ctax_accounts", []string{"account_ref", "person_ref", "ctax_arrears_gbp", "hb_overpayment_gbp", "as_at"}},
	{"residents", []string{"person_ref", "forename", "middle_names", "surname", "date_of_birth", "sex",
		"nhs_number", "ni_number", "address_line_1", "address_line_2", "town", "postcode", "updated_on"}},
	{"supporting_families", []string{"case_ref", "person_ref", "case_status", "opened_on"}},
}

// councilBadQueries is _sqlite_bad_service_rows: per typed service column (in _SERVICE_TABLES
// and column order), the field, the reason and the SQL SQLAlchemy compiles for it.
var councilBadQueries = []struct{ field, reason, sql string }{
	{"ctax_accounts.ctax_arrears_gbp", "missing or wrong type (expected numeric)",
		"SELECT DISTINCT ctax_accounts.person_ref \nFROM ctax_accounts \nWHERE (typeof(ctax_accounts.ctax_arrears_gbp) NOT IN ('integer', 'real'))"},
	{"ctax_accounts.hb_overpayment_gbp", "malformed or wrong type (expected numeric)",
		"SELECT DISTINCT ctax_accounts.person_ref \nFROM ctax_accounts \nWHERE NOT (ctax_accounts.hb_overpayment_gbp IS NULL OR typeof(ctax_accounts.hb_overpayment_gbp) IN ('integer', 'real'))"},
	{"ctax_accounts.as_at", "missing or wrong type (expected date)",
		"SELECT DISTINCT ctax_accounts.person_ref \nFROM ctax_accounts \nWHERE NOT (typeof(ctax_accounts.as_at) = 'text' AND date(ctax_accounts.as_at, '+0 days') = ctax_accounts.as_at)"},
	{"care_leavers.left_care_on", "malformed or wrong type (expected date)",
		"SELECT DISTINCT care_leavers.person_ref \nFROM care_leavers \nWHERE NOT (care_leavers.left_care_on IS NULL OR typeof(care_leavers.left_care_on) = 'text' AND date(care_leavers.left_care_on, '+0 days') = care_leavers.left_care_on)"},
	{"care_leavers.recorded_on", "missing or wrong type (expected date)",
		"SELECT DISTINCT care_leavers.person_ref \nFROM care_leavers \nWHERE NOT (typeof(care_leavers.recorded_on) = 'text' AND date(care_leavers.recorded_on, '+0 days') = care_leavers.recorded_on)"},
	{"adult_social_care.carer_assessment", "missing or wrong type (expected boolean)",
		"SELECT DISTINCT adult_social_care.person_ref \nFROM adult_social_care \nWHERE NOT (typeof(adult_social_care.carer_assessment) = 'integer' AND adult_social_care.carer_assessment IN (0, 1))"},
	{"adult_social_care.assessed_on", "missing or wrong type (expected date)",
		"SELECT DISTINCT adult_social_care.person_ref \nFROM adult_social_care \nWHERE NOT (typeof(adult_social_care.assessed_on) = 'text' AND date(adult_social_care.assessed_on, '+0 days') = adult_social_care.assessed_on)"},
	{"supporting_families.opened_on", "missing or wrong type (expected date)",
		"SELECT DISTINCT supporting_families.person_ref \nFROM supporting_families \nWHERE NOT (typeof(supporting_families.opened_on) = 'text' AND date(supporting_families.opened_on, '+0 days') = supporting_families.opened_on)"},
}

// councilQueryTail is _query(mapping, sqlite=True) after the identity columns.
const councilQueryTail = `ct.ctax_arrears_gbp, ct.hb_overpayment_gbp, ct.ctax_as_at, cl.cl_recorded_on, sc.care_eligible, sc.care_assessed, sc.carer, sc.sc_assessed_on, sf.sf_open_since AS sf_open_since 
FROM residents LEFT OUTER JOIN (SELECT ctax_accounts.person_ref AS person_ref, sum(ctax_accounts.ctax_arrears_gbp) AS ctax_arrears_gbp, sum(ctax_accounts.hb_overpayment_gbp) AS hb_overpayment_gbp, max(ctax_accounts.as_at) AS ctax_as_at 
FROM ctax_accounts 
WHERE typeof(ctax_accounts.ctax_arrears_gbp) IN ('integer', 'real') AND (ctax_accounts.hb_overpayment_gbp IS NULL OR typeof(ctax_accounts.hb_overpayment_gbp) IN ('integer', 'real')) AND typeof(ctax_accounts.as_at) = 'text' AND date(ctax_accounts.as_at, '+0 days') = ctax_accounts.as_at GROUP BY ctax_accounts.person_ref) AS ct ON ct.person_ref = residents.person_ref LEFT OUTER JOIN (SELECT care_leavers.person_ref AS person_ref, max(care_leavers.recorded_on) AS cl_recorded_on 
FROM care_leavers 
WHERE (care_leavers.left_care_on IS NULL OR typeof(care_leavers.left_care_on) = 'text' AND date(care_leavers.left_care_on, '+0 days') = care_leavers.left_care_on) AND typeof(care_leavers.recorded_on) = 'text' AND date(care_leavers.recorded_on, '+0 days') = care_leavers.recorded_on GROUP BY care_leavers.person_ref) AS cl ON cl.person_ref = residents.person_ref LEFT OUTER JOIN (SELECT adult_social_care.person_ref AS person_ref, max(CASE WHEN (adult_social_care.care_act_status = 'eligible') THEN 1 ELSE 0 END) AS care_eligible, max(CASE WHEN (adult_social_care.care_act_status = 'assessed') THEN 1 ELSE 0 END) AS care_assessed, max(CASE WHEN (adult_social_care.carer_assessment IS 1) THEN 1 ELSE 0 END) AS carer, max(adult_social_care.assessed_on) AS sc_assessed_on 
FROM adult_social_care 
WHERE typeof(adult_social_care.carer_assessment) = 'integer' AND adult_social_care.carer_assessment IN (0, 1) AND typeof(adult_social_care.assessed_on) = 'text' AND date(adult_social_care.assessed_on, '+0 days') = adult_social_care.assessed_on GROUP BY adult_social_care.person_ref) AS sc ON sc.person_ref = residents.person_ref LEFT OUTER JOIN (SELECT supporting_families.person_ref AS person_ref, max(CASE WHEN (supporting_families.case_status = 'open') THEN supporting_families.opened_on END) AS sf_open_since 
FROM supporting_families 
WHERE typeof(supporting_families.opened_on) = 'text' AND date(supporting_families.opened_on, '+0 days') = supporting_families.opened_on GROUP BY supporting_families.person_ref) AS sf ON sf.person_ref = residents.person_ref ORDER BY residents.person_ref`

const councilTablesSQL = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite~_%' ESCAPE '~' ORDER BY name"

// councilQuoteSafe are the bytes urllib.parse.quote(s, safe=" +/") leaves as they are.
func councilQuoteSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("_.-~ +/", c) >= 0
}

func councilQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if councilQuoteSafe(s[i]) {
			b.WriteByte(s[i])
		} else {
			fmt.Fprintf(&b, "%%%02X", s[i])
		}
	}
	return b.String()
}

// councilResolve is pathlib.Path(p).resolve() (non-strict: the part that exists is
// resolved, the rest appended).
func councilResolve(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	dir, base := filepath.Split(abs)
	dir = filepath.Clean(dir)
	if dir == abs || base == "" {
		return abs
	}
	return filepath.Join(councilResolve(dir), base)
}

// councilLocate is dsn_for, _describe and _open's file check: (where, database path).
func councilLocate(input string) (string, string, error) {
	var dsnDB string
	if strings.Contains(input, "://") {
		rest, ok := strings.CutPrefix(input, "sqlite:///")
		if !ok {
			where := input
			if u, err := url.Parse(input); err == nil {
				where = u.Redacted()
			}
			return "", "", &SourceError{Msg: where + ": the native connector reads SQLite database files only"}
		}
		dsnDB = rest
	} else {
		dsnDB = councilResolve(input)
	}
	if q := strings.IndexByte(dsnDB, '?'); q >= 0 {
		dsnDB = dsnDB[:q] // SQLAlchemy takes the rest as query arguments
	}
	db, err := url.PathUnescape(dsnDB)
	if err != nil {
		db = dsnDB
	}
	where := "sqlite:///" + councilQuote(db)
	if db == "" || db == ":memory:" {
		return "", "", &SourceError{Msg: where + ": no such SQLite database file"}
	}
	if st, err := os.Stat(db); err != nil || !st.Mode().IsRegular() {
		return "", "", &SourceError{Msg: where + ": no such SQLite database file"}
	}
	return where, db, nil
}

// councilDBError is str() of the SQLAlchemy error wrapping a sqlite3 one, after its class name.
func councilDBError(err error, stmt string) string {
	msg := err.Error()
	class := "OperationalError"
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code() & 0xff
		if code == 26 || code == 11 { // SQLITE_NOTADB, SQLITE_CORRUPT
			class = "DatabaseError"
		}
		msg = strings.TrimPrefix(msg, "sqlite: ")
		if i := strings.LastIndex(msg, " ("); i >= 0 && strings.HasSuffix(msg, ")") {
			msg = msg[:i]
		}
	}
	return fmt.Sprintf("%s: (sqlite3.%s) %s\n[SQL: %s]\n(Background on this error at: https://sqlalche.me/e/21/4xp6)", class, class, msg, stmt)
}

func openCouncil(input string, mapping record.Mapping, size int, rejects record.RejectSink) (record.Reader, error) {
	where, path, err := councilLocate(input)
	if err != nil {
		return nil, err
	}
	escaped := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+escaped+"?mode=rw")
	if err != nil {
		return nil, &SourceError{Msg: fmt.Sprintf("%s: cannot open database: %v", where, err)}
	}
	db.SetMaxOpenConns(1)
	r := &councilReader{db: db, where: where, mapping: mapping, size: max(size, 1), rejects: rejects}
	if err := r.checkSchema(); err != nil {
		db.Close()
		return nil, err
	}
	return r, nil
}

type councilReader struct {
	db      *sql.DB
	where   string
	mapping record.Mapping
	size    int
	rejects record.RejectSink

	rows    *sql.Rows
	names   []string // the identity columns selected (sorted, person_ref among them)
	bad     map[string][2]string
	row     int
	started bool
	done    bool
}

// checkSchema is _check_schema.
func (r *councilReader) checkSchema() error {
	rows, err := r.db.Query(councilTablesSQL)
	if err != nil {
		return &SourceError{Msg: r.where + ": cannot read the database: " + councilDBError(err, councilTablesSQL)}
	}
	have := map[string]bool{}
	for rows.Next() {
		var name any
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return &SourceError{Msg: r.where + ": cannot read the database: " + councilDBError(err, councilTablesSQL)}
		}
		if s, ok := name.(string); ok {
			have[s] = true
		}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return &SourceError{Msg: r.where + ": cannot read the database: " + councilDBError(err, councilTablesSQL)}
	}
	rows.Close()
	var missing []string
	for _, t := range councilTables {
		if !have[t.name] {
			missing = append(missing, t.name)
		}
	}
	if len(missing) > 0 {
		return &SourceError{Msg: fmt.Sprintf("%s: not a council database: missing table(s) %s", r.where, strings.Join(missing, ", "))}
	}
	for _, t := range councilTables {
		cols, err := r.columns(t.name)
		if err != nil {
			return &SourceError{Msg: r.where + ": cannot read the database: " + err.Error()}
		}
		needed := t.columns
		if t.name == "residents" {
			needed = []string{"person_ref"}
		}
		var lacking []string
		for _, c := range needed {
			if !cols[c] {
				lacking = append(lacking, c)
			}
		}
		if len(lacking) > 0 {
			sort.Strings(lacking)
			return &SourceError{Msg: fmt.Sprintf("%s: table %s lacks column(s) %s", r.where, t.name, strings.Join(lacking, ", "))}
		}
		if t.name == "residents" {
			var absent []string
			seen := map[string]bool{}
			for _, spec := range r.mapping {
				for _, c := range spec.Columns {
					if !cols[c] && !seen[c] {
						absent = append(absent, c)
						seen[c] = true
					}
				}
			}
			if len(absent) > 0 {
				sort.Strings(absent)
				return &SourceError{Msg: fmt.Sprintf("%s (table residents): mapped column(s) not found: %s", r.where, strings.Join(absent, ", "))}
			}
		}
	}
	return nil
}

// columns is inspector.get_columns' names (PRAGMA table_xinfo without hidden columns).
func (r *councilReader) columns(table string) (map[string]bool, error) {
	stmt := `PRAGMA main.table_xinfo("` + table + `")`
	rows, err := r.db.Query(stmt)
	if err != nil {
		return nil, errors.New(councilDBError(err, stmt))
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var cid, name, typ, notnull, dflt, pk, hidden any
		if err := rows.Scan(&cid, &name, &typ, &notnull, &dflt, &pk, &hidden); err != nil {
			return nil, errors.New(councilDBError(err, stmt))
		}
		if h, _ := hidden.(int64); h == 1 {
			continue
		}
		if s, ok := name.(string); ok {
			out[s] = true
		}
	}
	return out, rows.Err()
}

// start is the beginning of _stream: the residents with malformed service rows, then the query.
func (r *councilReader) start() error {
	r.bad = map[string][2]string{}
	for _, q := range councilBadQueries {
		rows, err := r.db.Query(q.sql)
		if err != nil {
			return &SourceError{Msg: r.where + ": query failed: " + councilDBError(err, q.sql)}
		}
		for rows.Next() {
			var person any
			if err := rows.Scan(&person); err != nil {
				rows.Close()
				return &SourceError{Msg: r.where + ": query failed: " + councilDBError(err, q.sql)}
			}
			key := councilPyStr(person)
			if _, ok := r.bad[key]; !ok {
				r.bad[key] = [2]string{q.field, q.reason}
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return &SourceError{Msg: r.where + ": query failed: " + councilDBError(err, q.sql)}
		}
	}
	set := map[string]bool{"person_ref": true}
	for _, spec := range r.mapping {
		for _, c := range spec.Columns {
			set[c] = true
		}
	}
	residents := map[string]bool{}
	for _, c := range councilTables[3].columns {
		residents[c] = true
	}
	r.names = r.names[:0]
	for c := range set {
		if !residents[c] {
			// SQLAlchemy's residents.c[name] raises KeyError for a column the SCHEMA lacks.
			return fmt.Errorf("KeyError: %s", pystr.Repr(c, pystr.WTF8))
		}
		r.names = append(r.names, c)
	}
	sort.Strings(r.names)
	var sel []string
	for _, c := range r.names {
		// The unary + keeps the value but drops the declared type, so that the driver
		// hands over what sqlite3 does (never a time.Time for a DATE-declared column).
		sel = append(sel, "+residents."+c+" AS id__"+c)
	}
	query := "SELECT " + strings.Join(sel, ", ") + ", " + councilQueryTail
	rows, err := r.db.Query(query)
	if err != nil {
		return &SourceError{Msg: r.where + ": query failed: " + councilDBError(err, query)}
	}
	r.rows = rows
	return nil
}

// councilPyStr is str() of the value sqlite3 gives (text decoded with surrogateescape,
// which maps bytes one to one: the bytes are the key).
func councilPyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return cnFloatRepr(x)
	case string:
		return x
	case []byte:
		return cnBytesRepr(x)
	}
	return fmt.Sprint(v)
}

// councilTypeName is type(value).__name__ for a sqlite3 value.
func councilTypeName(v any) string {
	switch v.(type) {
	case int64:
		return "int"
	case float64:
		return "float"
	case []byte:
		return "bytes"
	case string:
		return "str"
	}
	return "NoneType"
}

// councilFromISO is SQLAlchemy's SQLite DATE result processor (date.fromisoformat): the
// date, or the ValueError/TypeError text. Only the YYYY-MM-DD and YYYYMMDD forms are read.
func councilFromISO(v any) (*time.Time, string) {
	if v == nil {
		return nil, ""
	}
	s, ok := v.(string)
	if !ok {
		return nil, "fromisoformat: argument must be str"
	}
	bad := "Invalid isoformat string: " + pystr.Repr(s, pystr.WTF8)
	var y, m, d string
	switch {
	case len(s) == 10 && s[4] == '-' && s[7] == '-':
		y, m, d = s[:4], s[5:7], s[8:]
	case len(s) == 8:
		y, m, d = s[:4], s[4:6], s[6:]
	default:
		return nil, bad
	}
	for _, part := range []string{y, m, d} {
		for i := 0; i < len(part); i++ {
			if !isDigit(part[i]) {
				return nil, bad
			}
		}
	}
	yy, _ := strconv.Atoi(y)
	mm, _ := strconv.Atoi(m)
	dd, _ := strconv.Atoi(d)
	if yy < 1 {
		return nil, fmt.Sprintf("year %d is out of range", yy)
	}
	if mm < 1 || mm > 12 {
		return nil, "month must be in 1..12"
	}
	t := time.Date(yy, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	if dd < 1 || t.Day() != dd {
		return nil, "day is out of range for month"
	}
	return &t, ""
}

// councilMoney is the Numeric processor (Decimal("%.2f" % v)) then _money (round(float, 2)).
func councilMoney(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	default:
		return 0, false
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return f, true
	}
	out, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 2, 64), 64)
	return out, true
}

func councilTruthy(v any) bool {
	switch x := v.(type) {
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []byte:
		return len(x) > 0
	}
	return false
}

// Next is _stream and council._batches: `size` accepted residents per batch.
func (r *councilReader) Next() (*record.Batch, error) {
	if r.done {
		return nil, nil
	}
	if !r.started {
		r.started = true
		if err := r.start(); err != nil {
			r.finish()
			return nil, err
		}
	}
	width := len(r.names)
	dest := make([]any, width+9)
	ptrs := make([]any, len(dest))
	for i := range dest {
		ptrs[i] = &dest[i]
	}
	var numbers []int
	var natives [][]*string
	var inds []string
	personAt := sort.SearchStrings(r.names, "person_ref")
	for r.rows.Next() {
		if err := r.rows.Scan(ptrs...); err != nil {
			r.finish()
			return nil, &SourceError{Msg: r.where + ": query failed: " + councilDBError(err, "")}
		}
		n := r.row + 1
		native := make([]*string, width) // by position in r.names
		var problem *record.Reject
		for k, name := range r.names {
			v := dest[k]
			if name == "updated_on" { // the one Date column of residents: its processor runs
				t, msg := councilFromISO(v)
				if msg != "" {
					r.finish()
					return nil, &SourceError{Msg: fmt.Sprintf("%s: row %d (residents in person_ref order): unreadable value: %s", r.where, n, msg)}
				}
				if t != nil {
					s := t.Format("2006-01-02")
					native[k] = &s
				}
				continue
			}
			text, reason := councilIdentityValue(name, v)
			native[k] = text
			if reason != "" && problem == nil {
				problem = &record.Reject{Row: n, Field: "residents." + name, Reason: reason}
			}
		}
		// The service dates' processor (date.fromisoformat) runs for every row too.
		dates := [4]*time.Time{}
		for j, k := range [4]int{width + 2, width + 3, width + 7, width + 8} {
			t, msg := councilFromISO(dest[k])
			if msg != "" {
				r.finish()
				return nil, &SourceError{Msg: fmt.Sprintf("%s: row %d (residents in person_ref order): unreadable value: %s", r.where, n, msg)}
			}
			dates[j] = t
		}
		r.row = n
		if problem == nil {
			if person := native[personAt]; person != nil {
				if b, ok := r.bad[*person]; ok {
					problem = &record.Reject{Row: n, Field: b[0], Reason: b[1]}
				}
			}
		}
		if problem != nil {
			r.rejects(*problem)
			continue
		}
		numbers = append(numbers, n)
		natives = append(natives, native)
		inds = append(inds, councilIndicatorsJSON(councilIndicators(dest[width:], dates)))
		if len(numbers) >= r.size {
			return r.batch(numbers, natives, inds), nil
		}
	}
	if err := r.rows.Err(); err != nil {
		r.finish()
		return nil, &SourceError{Msg: r.where + ": query failed: " + councilDBError(err, "")}
	}
	r.finish()
	if len(numbers) > 0 {
		return r.batch(numbers, natives, inds), nil
	}
	return nil, nil
}

// councilIdentityValue is _identity_value: (text, "") or (nil, reason).
func councilIdentityValue(name string, v any) (*string, string) {
	switch x := v.(type) {
	case nil:
		return nil, ""
	case string:
		if !utf8.ValidString(x) {
			return nil, "not UTF-8 text"
		}
		return &x, ""
	case int64:
		if name != "date_of_birth" {
			s := strconv.FormatInt(x, 10)
			return &s, ""
		}
	}
	return nil, "stored as " + councilTypeName(v) + ", expected text"
}

// councilIndicators is _indicators on the aggregate columns (ctax_arrears_gbp,
// hb_overpayment_gbp, ctax_as_at, cl_recorded_on, care_eligible, care_assessed, carer,
// sc_assessed_on, sf_open_since) and the four dates already converted.
func councilIndicators(agg []any, dates [4]*time.Time) []Indicator {
	asAt, recorded, assessed, openSince := dates[0], dates[1], dates[2], dates[3]
	var out []Indicator
	if v, ok := councilMoney(agg[0]); ok {
		out = append(out, Indicator{Code: "council.ctax_arrears_gbp", Value: v, Date: asAt})
	}
	if v, ok := councilMoney(agg[1]); ok {
		out = append(out, Indicator{Code: "council.hb_overpayment_gbp", Value: v, Date: asAt})
	}
	if recorded != nil {
		out = append(out, Indicator{Code: "council.care_leaver", Value: true, Date: recorded})
	}
	if councilTruthy(agg[4]) {
		out = append(out, Indicator{Code: "council.care_act_need", Value: "eligible", Date: assessed})
	} else if councilTruthy(agg[5]) {
		out = append(out, Indicator{Code: "council.care_act_need", Value: "assessed", Date: assessed})
	}
	if councilTruthy(agg[6]) {
		out = append(out, Indicator{Code: "council.young_carer_or_carer", Value: true, Date: assessed})
	}
	if openSince != nil {
		out = append(out, Indicator{Code: "council.supporting_families", Value: true, Date: openSince})
	}
	return out
}

// batch is columns_picker on the batch's identity rows.
func (r *councilReader) batch(numbers []int, natives [][]*string, inds []string) *record.Batch {
	b := &record.Batch{RowNumbers: numbers, Columns: map[string][]*string{}, Indicators: inds}
	for field, spec := range r.mapping {
		at := make([]int, len(spec.Columns))
		for j, c := range spec.Columns {
			at[j] = sort.SearchStrings(r.names, c)
		}
		col := make([]*string, len(natives))
		for i, native := range natives {
			if len(at) == 1 {
				if v := native[at[0]]; v != nil && *v != "" {
					if s := pystr.Strip(*v); s == *v {
						col[i] = v // already stripped: shared, not copied
					} else if s != "" {
						col[i] = &s
					}
				}
				continue
			}
			var parts []string
			for _, j := range at {
				if v := native[j]; v != nil && *v != "" {
					if s := pystr.Strip(*v); s != "" {
						parts = append(parts, s)
					}
				}
			}
			if len(parts) > 0 {
				s := strings.Join(parts, " ")
				col[i] = &s
			}
		}
		b.Columns[field] = col
	}
	return b
}

func (r *councilReader) finish() {
	r.done = true
	if r.rows != nil {
		r.rows.Close()
		r.rows = nil
	}
	if r.db != nil {
		r.db.Close()
		r.db = nil
	}
}

func (r *councilReader) Close() error {
	r.finish()
	return nil
}
