// Package standardise is the native port of connectors/standardise.py: the same rules,
// the same problems (field, reason, fatal) in the same order, value for value.
package standardise

import (
	"time"

	"joinedup/native/record"
)

// Standardiser holds the nickname table and per-value caches. Not safe for concurrent use:
// give each goroutine its own.
type Standardiser struct {
	today     time.Time
	nicknames map[string]string
}

// New loads the nickname table (connectors/data/nicknames.csv); `today` is the date after
// which a date of birth is in the future.
func New(nicknamesPath string, today time.Time) (*Standardiser, error) {
	panic("TODO(helper A)")
}

// Identity standardises one raw identity (identity field name -> raw value, nil = None),
// as connectors.standardise.standardise_identity(raw, mapping, today).
func (s *Standardiser) Identity(raw map[string]*string, mapping record.Mapping) (record.Identity, []record.Problem) {
	panic("TODO(helper A)")
}

// The per-value functions, exported so the encoder can cache their results per distinct
// value as connectors/columnar.py does. Each mirrors the Python function of the same name;
// an error's message is the Python ValueError's message (the reject reason).

// NameWords mirrors name_words.
func (s *Standardiser) NameWords(raw string) []string { panic("TODO(helper A)") }

// CanonicalGiven mirrors canonical_given.
func (s *Standardiser) CanonicalGiven(given string) string { panic("TODO(helper A)") }

// Phonetic mirrors phonetic (jellyfish Metaphone of the name without spaces).
func (s *Standardiser) Phonetic(name string) string { panic("TODO(helper A)") }

// ParseBirthDate mirrors parse_birth_date(raw, fmt, today); fmt nil = the common formats.
func (s *Standardiser) ParseBirthDate(raw string, format *string) (time.Time, error) {
	panic("TODO(helper A)")
}

// StandardPostcode mirrors standard_postcode: (postcode, sector, district); sector and
// district are nil when validate is false.
func StandardPostcode(raw string, validate bool) (string, *string, *string, error) {
	panic("TODO(helper A)")
}

// StandardNINO mirrors standard_nino.
func StandardNINO(raw string) (string, error) { panic("TODO(helper A)") }

// StandardNHSNumber mirrors standard_nhs_number.
func StandardNHSNumber(raw string) (string, error) { panic("TODO(helper A)") }

// StandardSex mirrors standard_sex (nil = unknown).
func StandardSex(raw string) (*string, error) { panic("TODO(helper A)") }

// StandardText mirrors standard_text (address, locality).
func StandardText(raw string) *string { panic("TODO(helper A)") }

// Blank mirrors _blank: nil, or only whitespace (Python's str.strip whitespace).
func Blank(v *string) bool { panic("TODO(helper A)") }

// UnusableReason mirrors unusable_reason.
func UnusableReason(id *record.Identity) *record.Problem { panic("TODO(helper A)") }
