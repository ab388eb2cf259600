// Package encode is the native port of connectors/pseudonymise.py (scheme v2:
// IdentityEncoder, _ClkField, SaltedPermutation) and connectors/columnar.py
// (ColumnarEncoder: problems, the usable-row rule, the area JSON): the same linkage
// columns, bit for bit, from the same batch.
//
// The Python encoder works column-wise with numpy; this one works row by row (each row's
// parts, match keys and salted filters at once, with the per-value results cached), which
// gives the same values because every step is a pure function of the row's values and the
// keys. Only BLIP hardening is random (and must be: it is seeded from the OS).
package encode

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"joinedup/native/record"
	"joinedup/native/standardise"
)

// The parts of a row (PART_GROUPS, plus the order-free "names"): a row holds each part's
// secret token and a validity bit. "middle" and "district" are tokenised by the Python
// encoder but feed no match key, salt or column, so they are not computed here.
type part uint8

const (
	pGCanon part = iota
	pFam
	pGPhon
	pFPhon
	pDOB
	pYear
	pMonth
	pDay
	pDM
	pPC
	pSector
	pLocality
	pNames
	nParts
	// Validity bits of the identifier tokens, after the parts'.
	okNHS  = 1 << nParts
	okNINO = 1 << (nParts + 1)
)

var partByName = map[string]part{
	"g_canon": pGCanon, "fam": pFam, "g_phon": pGPhon, "f_phon": pFPhon, "dob": pDOB,
	"year": pYear, "month": pMonth, "day": pDay, "dm": pDM, "pc": pPC, "sector": pSector,
	"locality": pLocality, "names": pNames,
}

// partGroup is each part's key group ("part/<group>"); g_phon and f_phon share one.
var partGroup = [...]string{
	pGCanon: "given_canon", pFam: "family", pGPhon: "name_phon", pFPhon: "name_phon", pDOB: "dob",
	pYear: "year", pMonth: "month", pDay: "day", pDM: "daymonth", pPC: "postcode", pSector: "sector",
	pLocality: "locality",
}

// namesConst is _NAMES_CONST.
const namesConst = 0x6A09E667F3BCC908

type mkSpec struct {
	name  string
	parts []string
}

// matchKeys and extraMatchKeys are MATCH_KEYS and EXTRA_MATCH_KEYS.
var matchKeys = []mkSpec{
	{"mk_name_dob", []string{"g_canon", "fam", "dob"}},
	{"mk_names_dobt", []string{"names", "year", "dm"}},
	{"mk_given_dob", []string{"g_phon", "dob"}},
	{"mk_family_dob", []string{"f_phon", "dob"}},
	{"mk_names_yob", []string{"names", "year"}},
	{"mk_names_ym", []string{"names", "year", "month"}},
	{"mk_names_md", []string{"names", "month", "day"}},
	{"mk_names_yd", []string{"names", "year", "day"}},
	{"mk_names_pc", []string{"names", "pc"}},
	{"mk_names_locality", []string{"names", "locality"}},
	{"mk_dob_pc", []string{"dob", "pc"}},
	{"mk_dob_sector", []string{"dob", "sector"}},
}

var extraMatchKeys = []mkSpec{
	{"mk_names", []string{"names"}},
	{"mk_given_pc", []string{"g_phon", "pc"}},
	{"mk_family_pc", []string{"f_phon", "pc"}},
	{"mk_dob_locality", []string{"dob", "locality"}},
	{"mk_given_locality", []string{"g_phon", "locality"}},
	{"mk_family_locality", []string{"f_phon", "locality"}},
}

// ClkColumns is CLK_COLUMNS: the filters a deployment may publish.
var ClkColumns = []string{"clk_given", "clk_family", "clk_address", "clk_given_pc", "clk_family_pc", "clk_address_dob"}

// The unsalted filters a published one is made from.
const (
	srcGiven = iota
	srcFamily
	srcAddress
)

type saltedSpec struct {
	column string
	source int
	salt   []string
	which  int
}

// saltedFilters is SALTED_FILTERS in its dict order (the order decides which column's
// salt number a salt group uses: its first column's).
var saltedFilters = []saltedSpec{
	{"clk_given", srcGiven, []string{"year", "dm"}, 0},
	{"clk_family", srcFamily, []string{"year", "dm"}, 0},
	{"clk_address_dob", srcAddress, []string{"year", "dm"}, 0},
	{"clk_address", srcAddress, []string{"pc"}, 1},
	{"clk_given_pc", srcGiven, []string{"pc"}, 2},
	{"clk_family_pc", srcFamily, []string{"pc"}, 2},
}

// namePostcodeSalts is NAME_POSTCODE_SALTS (overrides keep their key's dict position).
var namePostcodeSalts = map[string][]saltedSpec{
	"postcode": nil,
	"postcode+other-name": {
		{"clk_given_pc", srcGiven, []string{"pc", "f_phon"}, 2},
		{"clk_family_pc", srcFamily, []string{"pc", "g_phon"}, 3},
	},
}

// typicalBigrams is _TYPICAL_BIGRAMS: the length-hiding filters set about k times this.
var typicalBigrams = map[string]int{"given": 7, "family": 7, "address": 20}

// DefaultSettings are EncodingSettings() (scheme v2).
func DefaultSettings() record.Settings {
	return record.Settings{
		ClkBits: 1024, ClkK: 20, ClkKFields: map[string]int{"address": 10}, Hardening: "none",
		BlipF: 0.02, Filters: slices.Clone(ClkColumns), NamePostcodeSalt: "postcode",
	}
}

// LinkageColumns is settings.linkage_columns: "ref", the tokens, the match keys, the
// filters (and the extra match keys when on).
func LinkageColumns(s record.Settings) []string {
	out := []string{"ref", "tk_nhs", "tk_nino"}
	for _, m := range matchKeys {
		out = append(out, m.name)
	}
	out = append(out, ClkColumns...)
	if s.ExtraMatchKeys {
		for _, m := range extraMatchKeys {
			out = append(out, m.name)
		}
	}
	return out
}

type compiledMK struct {
	name  string
	parts []part
	mask  uint32
	a, b  uint64
}

type saltCol struct {
	column string
	source int
}

type compiledSalt struct {
	parts []part
	mask  uint32
	a, b  uint64
	cols  []saltCol // the published columns of the group
}

// row is one row's encoding inputs: part tokens (uint64 bits of the int64 tokens) with
// validity bits, identifier tokens and the unsalted filters (nil = absent).
type row struct {
	v                   [nParts]uint64
	ok                  uint32
	nhs, nino           uint64
	given, family, addr []byte
}

// Encoder encodes batches. Not safe for concurrent use: give each goroutine its own.
type Encoder struct {
	settings record.Settings
	std      *standardise.Standardiser
	mapping  record.Mapping

	parts                           [nParts]*tokenCache // by part (g_phon and f_phon share one cache)
	nhs, nino                       *keyedHash
	mks                             []compiledMK
	salts                           []compiledSalt
	unpublished                     []string
	salting                         *saltedPermutation
	clkGiven, clkFamily, clkAddress *clkField
	width                           int
	blip                            *blipper

	dates map[int32][5]uint64 // yyyymmdd -> dob, year, month, day, dm tokens
	col   *columnar           // the ColumnarEncoder state (caches per raw value)
	rows  []row               // scratch
	addr  []byte              // scratch: per-row address filters
}

// partCacheLimit is _CACHE_LIMIT of pseudonymise.py.
const partCacheLimit = 300_000

// withDefaults fills what a settings document left out (zero values, nil list and map)
// with EncodingSettings' defaults, as EncodingSettings.from_dict does for missing keys. An
// explicit empty filters list (non-nil) publishes no filter.
func withDefaults(s record.Settings) record.Settings {
	d := DefaultSettings()
	if s.ClkBits == 0 {
		s.ClkBits = d.ClkBits
	}
	if s.ClkK == 0 {
		s.ClkK = d.ClkK
	}
	if s.ClkKFields == nil {
		s.ClkKFields = d.ClkKFields
	}
	if s.Hardening == "" {
		s.Hardening = d.Hardening
	}
	if s.BlipF == 0 {
		s.BlipF = d.BlipF
	}
	if s.Filters == nil {
		s.Filters = d.Filters
	}
	if s.NamePostcodeSalt == "" {
		s.NamePostcodeSalt = d.NamePostcodeSalt
	}
	return s
}

func validate(s record.Settings) error {
	if s.ClkBits <= 0 || s.ClkBits%64 != 0 {
		return errors.New("clk_bits must be a positive multiple of 64")
	}
	if s.ClkBits > 2048 {
		return errors.New("clk_bits must be at most 2048 for scheme v2 (byte-salted filters)")
	}
	ks := []int{s.ClkK}
	for f, k := range s.ClkKFields {
		if f != "name" && f != "given" && f != "family" && f != "address" {
			return fmt.Errorf("clk_k_fields: unknown field %q", f)
		}
		ks = append(ks, k)
	}
	for _, k := range ks {
		if k < 1 || k > 64 {
			return errors.New("clk_k values must be integers in 1..64")
		}
	}
	if s.Hardening != "none" && s.Hardening != "blip" {
		return errors.New("hardening must be 'none' or 'blip'")
	}
	if s.Hardening == "blip" && !(s.BlipF > 0 && s.BlipF < 0.5) {
		return errors.New("blip_f must be in (0, 0.5)")
	}
	seen := map[string]bool{}
	for _, f := range s.Filters {
		if !slices.Contains(ClkColumns, f) || seen[f] {
			return fmt.Errorf("filters must be a list of distinct names among %v", ClkColumns)
		}
		seen[f] = true
	}
	if _, ok := namePostcodeSalts[s.NamePostcodeSalt]; !ok {
		return fmt.Errorf("name_postcode_salt must be one of postcode, postcode+other-name")
	}
	return nil
}

// New builds an encoder for one extract. `std` may be nil for EncodeIdentities alone;
// EncodeBatch needs it.
func New(settings record.Settings, keys record.Keys, std *standardise.Standardiser, mapping record.Mapping) (*Encoder, error) {
	settings = withDefaults(settings)
	if err := validate(settings); err != nil {
		return nil, fmt.Errorf("encoding settings: %w", err)
	}
	key := func(purpose string) ([]byte, error) {
		k, ok := keys[purpose]
		if !ok {
			return nil, fmt.Errorf("encode: no %q key", purpose)
		}
		return k, nil
	}
	e := &Encoder{settings: settings, std: std, mapping: mapping, width: settings.ClkBits / 8,
		dates: map[int32][5]uint64{}}
	groups := map[string]*tokenCache{}
	for p := range pNames {
		g := partGroup[p]
		if groups[g] == nil {
			k, err := key("part/" + g)
			if err != nil {
				return nil, err
			}
			groups[g] = newTokenCache(k, partCacheLimit)
		}
		e.parts[p] = groups[g]
	}
	for _, t := range []struct {
		dst     **keyedHash
		purpose string
	}{{&e.nhs, "token/nhs_number"}, {&e.nino, "token/nino"}} {
		k, err := key(t.purpose)
		if err != nil {
			return nil, err
		}
		*t.dst = newKeyedHash(k)
	}
	mkKey, err := key("match-key")
	if err != nil {
		return nil, err
	}
	specs := matchKeys
	if settings.ExtraMatchKeys {
		specs = append(slices.Clone(matchKeys), extraMatchKeys...)
	}
	for _, m := range specs {
		c := compiledMK{name: m.name, a: seedOf(mkKey, "A|"+m.name), b: seedOf(mkKey, "B|"+m.name)}
		for _, n := range m.parts {
			c.parts = append(c.parts, partByName[n])
			c.mask |= 1 << partByName[n]
		}
		e.mks = append(e.mks, c)
	}
	saltKey, err := key("clk-salt")
	if err != nil {
		return nil, err
	}
	var saltSeeds [4][2]uint64
	for i := range saltSeeds {
		saltSeeds[i] = [2]uint64{seedOf(saltKey, fmt.Sprintf("salt%d|A", i)), seedOf(saltKey, fmt.Sprintf("salt%d|B", i))}
	}
	// salted_filters (overrides in place), grouped by salt in order of first appearance.
	salted := slices.Clone(saltedFilters)
	for _, o := range namePostcodeSalts[settings.NamePostcodeSalt] {
		for i := range salted {
			if salted[i].column == o.column {
				salted[i] = o
			}
		}
	}
	published := func(c string) bool { return slices.Contains(settings.Filters, c) }
	groupOf := map[string]int{}
	var groupWhich []int
	var groupCols [][]saltCol
	var groupParts [][]string
	for _, s := range salted {
		key := fmt.Sprint(s.salt)
		g, ok := groupOf[key]
		if !ok {
			g = len(groupWhich)
			groupOf[key] = g
			groupWhich = append(groupWhich, s.which)
			groupCols = append(groupCols, nil)
			groupParts = append(groupParts, s.salt)
		}
		if published(s.column) {
			groupCols[g] = append(groupCols[g], saltCol{s.column, s.source})
		}
	}
	for g, cols := range groupCols {
		if len(cols) == 0 {
			continue
		}
		c := compiledSalt{a: saltSeeds[groupWhich[g]][0], b: saltSeeds[groupWhich[g]][1], cols: cols}
		for _, n := range groupParts[g] {
			c.parts = append(c.parts, partByName[n])
			c.mask |= 1 << partByName[n]
		}
		e.salts = append(e.salts, c)
	}
	for _, c := range ClkColumns {
		if !published(c) {
			e.unpublished = append(e.unpublished, c)
		}
	}
	e.salting = newSaltedPermutation(saltKey, e.width)
	kFor := func(f string) int {
		if k, ok := settings.ClkKFields[f]; ok {
			return k
		}
		return settings.ClkK
	}
	for _, f := range []struct {
		dst  **clkField
		name string
	}{{&e.clkGiven, "given"}, {&e.clkFamily, "family"}, {&e.clkAddress, "address"}} {
		k, err := key("clk/" + f.name)
		if err != nil {
			return nil, err
		}
		*f.dst = newClkField(k, settings.ClkBits, kFor(f.name), kFor(f.name)*typicalBigrams[f.name])
	}
	if settings.Hardening == "blip" {
		e.blip = newBlipper(settings.BlipF)
	}
	if std != nil {
		e.col = newColumnar(e)
	}
	return e, nil
}

// dobParts sets a date's parts: iso date, year, month, day and sorted day/month.
// The tokens are cached per date (as ColumnarEncoder._dob_parts).
func (e *Encoder) dobParts(r *row, d time.Time) {
	y, m, day := d.Date()
	key := int32(y*10000 + int(m)*100 + day)
	if v, ok := e.dates[key]; ok {
		r.v[pDOB], r.v[pYear], r.v[pMonth], r.v[pDay], r.v[pDM] = v[0], v[1], v[2], v[3], v[4]
		r.ok |= 1<<pDOB | 1<<pYear | 1<<pMonth | 1<<pDay | 1<<pDM
		return
	}
	var buf [10]byte
	iso := appendDate(buf[:0], y, int(m), day)
	r.v[pDOB] = e.parts[pDOB].get(string(iso))
	r.v[pYear] = e.parts[pYear].get(string(iso[:4]))
	r.v[pMonth] = e.parts[pMonth].get(string(iso[5:7]))
	r.v[pDay] = e.parts[pDay].get(string(iso[8:10]))
	lo, hi := day, int(m)
	if int(m) < day {
		lo, hi = int(m), day
	}
	var dm [4]byte
	dm[0], dm[1], dm[2], dm[3] = byte('0'+lo/10), byte('0'+lo%10), byte('0'+hi/10), byte('0'+hi%10)
	r.v[pDM] = e.parts[pDM].get(string(dm[:]))
	r.ok |= 1<<pDOB | 1<<pYear | 1<<pMonth | 1<<pDay | 1<<pDM
	if len(e.dates) >= partCacheLimit {
		clear(e.dates)
	}
	e.dates[key] = [5]uint64{r.v[pDOB], r.v[pYear], r.v[pMonth], r.v[pDay], r.v[pDM]}
}

// appendDate appends YYYY-MM-DD (date.isoformat, the year zero-padded to 4 digits).
func appendDate(dst []byte, y, m, d int) []byte {
	dst = append(dst, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	dst = append(dst, byte('0'+m/10), byte('0'+m%10), '-')
	return append(dst, byte('0'+d/10), byte('0'+d%10))
}

// EncodeIdentities mirrors IdentityEncoder.encode_batch: the linkage columns (all but
// "ref") of standardised identities, every row kept. Ints holds tk_* and mk_*, Binaries
// clk_*; nil entries are nulls.
func (e *Encoder) EncodeIdentities(ids []record.Identity) (map[string][]*int64, map[string][][]byte) {
	rows := e.rows[:0]
	need := 0
	for i := range ids {
		if a := ids[i].Address; a != nil && *a != "" {
			need++
		}
	}
	addr := e.addrScratch(need)
	for i := range ids {
		id := &ids[i]
		var r row
		set := func(p part, v *string) {
			if v != nil {
				r.v[p] = e.parts[p].get(*v)
				r.ok |= 1 << p
			}
		}
		set(pGCanon, id.GivenCanon)
		set(pFam, id.Family)
		set(pGPhon, id.GivenPhon)
		set(pFPhon, id.FamilyPhon)
		set(pPC, id.Postcode)
		set(pSector, id.PcSector)
		set(pLocality, id.Locality)
		if id.DOB != nil {
			e.dobParts(&r, *id.DOB)
		}
		if id.NHSNumber != nil {
			r.nhs, r.ok = e.nhs.token(*id.NHSNumber), r.ok|okNHS
		}
		if id.NINO != nil {
			r.nino, r.ok = e.nino.token(*id.NINO), r.ok|okNINO
		}
		if id.Given != nil {
			r.given = e.clkGiven.value(*id.Given)
		}
		if id.Family != nil {
			r.family = e.clkFamily.value(*id.Family)
		}
		if id.Address != nil && *id.Address != "" {
			r.addr, addr = addr[:e.width:e.width], addr[e.width:]
			e.clkAddress.words(r.addr, *id.Address)
		}
		rows = append(rows, r)
	}
	e.rows = rows
	return e.finish(rows)
}

// addrScratch returns zeroed room for n address filters.
func (e *Encoder) addrScratch(n int) []byte {
	size := n * e.width
	if cap(e.addr) < size {
		e.addr = make([]byte, size)
	}
	s := e.addr[:size]
	clear(s)
	return s
}

// finish mirrors IdentityEncoder.finish: identifier tokens, match keys (the XOR of two
// keyed chains over the parts; null unless every part is valid) and the salted filters
// (null unless the row has the filter and its salt).
func (e *Encoder) finish(rows []row) (map[string][]*int64, map[string][][]byte) {
	n := len(rows)
	ints := make(map[string][]*int64, len(e.mks)+2)
	intCol := func(name string) ([]*int64, []int64) {
		col, vals := make([]*int64, n), make([]int64, n)
		ints[name] = col
		return col, vals
	}
	nhsCol, nhsVals := intCol("tk_nhs")
	ninoCol, ninoVals := intCol("tk_nino")
	for i := range rows {
		r := &rows[i]
		if r.ok&okNHS != 0 {
			nhsVals[i] = int64(r.nhs)
			nhsCol[i] = &nhsVals[i]
		}
		if r.ok&okNINO != 0 {
			ninoVals[i] = int64(r.nino)
			ninoCol[i] = &ninoVals[i]
		}
		// names: the two phonetic parts in sorted order (a given/family swap keeps it).
		if both := uint32(1<<pGPhon | 1<<pFPhon); r.ok&both == both {
			lo, hi := r.v[pGPhon], r.v[pFPhon]
			if hi < lo {
				lo, hi = hi, lo
			}
			r.v[pNames] = mix64(mix64(lo^namesConst) ^ hi)
			r.ok |= 1 << pNames
		}
	}
	var buf [8]uint64
	for _, m := range e.mks {
		col, vals := intCol(m.name)
		for i := range rows {
			r := &rows[i]
			if r.ok&m.mask != m.mask {
				continue
			}
			values := buf[:len(m.parts)]
			for j, p := range m.parts {
				values[j] = r.v[p]
			}
			vals[i] = int64(chain2(m.a, m.b, values))
			col[i] = &vals[i]
		}
	}
	bins := make(map[string][][]byte, len(ClkColumns))
	for _, c := range e.unpublished {
		bins[c] = make([][]byte, n)
	}
	w := e.width
	for _, g := range e.salts {
		cols := make([][][]byte, len(g.cols))
		backing := make([][]byte, len(g.cols))
		for j, c := range g.cols {
			cols[j] = make([][]byte, n)
			backing[j] = make([]byte, n*w)
			bins[c.column] = cols[j]
		}
		for i := range rows {
			r := &rows[i]
			if r.ok&g.mask != g.mask {
				continue
			}
			values := buf[:len(g.parts)]
			for j, p := range g.parts {
				values[j] = r.v[p]
			}
			var t []uint16
			for j, c := range g.cols {
				src := r.given
				switch c.source {
				case srcFamily:
					src = r.family
				case srcAddress:
					src = r.addr
				}
				if src == nil {
					continue
				}
				if t == nil {
					t = e.salting.row(chain2(g.a, g.b, values))
				}
				out := backing[j][i*w : (i+1)*w : (i+1)*w]
				e.salting.apply(t, src, out)
				if e.blip != nil {
					e.blip.flip(out)
				}
				cols[j][i] = out
			}
		}
	}
	return ints, bins
}
