// Package record holds the types every stage of the native connector shares. They mirror
// the Python connector's (connectors/records.py, connectors/mapping.py,
// connectors/standardise.py, connectors/columnar.py) so that both engines write the same
// extract from the same source.
package record

import "time"

// IdentityFields mirrors connectors.records.IDENTITY_FIELDS (the mapping targets).
var IdentityFields = []string{
	"local_id", "nhs_number", "nino", "given_name", "middle_names", "family_name",
	"date_of_birth", "sex", "postcode", "address", "locality",
}

// FieldSpec mirrors connectors.mapping.FieldSpec: the source columns of one identity
// field (joined with a space when several), an optional strptime date format, and
// whether a postcode is checked against the UK format.
type FieldSpec struct {
	Columns  []string `json:"columns"`
	Format   *string  `json:"format"`
	Validate bool     `json:"validate"`
}

// Mapping is a resolved mapping (the kind's default merged with the user's override):
// identity field name -> spec. The Python side resolves and validates it.
type Mapping map[string]FieldSpec

// Batch is what a reader yields: a batch of rows as identity columns, as
// connectors.sources.read_batches yields them (after duplicate local ids are rejected).
type Batch struct {
	RowNumbers []int
	// Identity field name -> one raw value per row (FieldSpec.pick semantics); nil = None.
	// Only the mapped fields are present.
	Columns map[string][]*string
	// Per row, the content's "indicators" list as compact sorted JSON, exactly as
	// connectors.content.indicators_json gives it; nil for a kind without indicators.
	Indicators []string
}

// Len is the number of rows in the batch.
func (b *Batch) Len() int { return len(b.RowNumbers) }

// Reject is a row a reader refuses (connectors.records.RowReject).
type Reject struct {
	Row    int
	Field  string
	Reason string
}

// RejectSink receives the rows a reader refuses, in order.
type RejectSink func(Reject)

// Reader yields batches; Next returns (nil, nil) at the end.
type Reader interface {
	Next() (*Batch, error)
	Close() error
}

// Problem mirrors connectors.standardise.Problem.
type Problem struct {
	Field  string
	Reason string
	Fatal  bool
}

// Identity mirrors connectors.standardise.StandardIdentity (nil = None).
type Identity struct {
	LocalID    *string
	NHSNumber  *string
	NINO       *string
	Given      *string
	GivenCanon *string
	GivenPhon  *string
	Middle     *string
	Family     *string
	FamilyPhon *string
	DOB        *time.Time // a date (UTC midnight)
	Sex        *string
	Postcode   *string
	PcSector   *string
	PcDistrict *string
	Address    *string
	Locality   *string
}

// Settings mirrors connectors.pseudonymise.EncodingSettings for scheme "v2" (the only
// scheme the native engine writes). The Python side validates it.
type Settings struct {
	ClkBits          int            `json:"clk_bits"`
	ClkK             int            `json:"clk_k"`
	ClkKFields       map[string]int `json:"clk_k_fields"`
	Hardening        string         `json:"hardening"` // "none" | "blip"
	BlipF            float64        `json:"blip_f"`
	ExtraMatchKeys   bool           `json:"extra_match_keys"`
	Filters          []string       `json:"filters"`
	NamePostcodeSalt string         `json:"name_postcode_salt"`
}

// Keys holds the derived keys the connector needs, by purpose ("token/nhs_number",
// "part/dob", "match-key", "clk-salt", "clk/given", "ref", "content", ...), as
// connectors.keys.KeyRing.key(purpose) gives them.
type Keys map[string][]byte

// Encoded is one encoded batch (connectors.columnar.EncodedBatch).
type Encoded struct {
	Accepted []bool            // per input row
	Problems map[int][]Problem // input row index -> problems (dropped fields, then fatal)
	// Linkage columns of the accepted rows, all but "ref": int64 columns (tokens, match
	// keys) and binary columns (clk_*). A nil entry is a null.
	Ints     map[string][]*int64
	Binaries map[string][][]byte
	LocalIDs []string // accepted rows
	AreaJSON []string // accepted rows: the content's "area" object as compact sorted JSON
}
