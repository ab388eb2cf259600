// Package encode is the native port of connectors/pseudonymise.py (scheme v2:
// IdentityEncoder, _ClkField, SaltedPermutation) and connectors/columnar.py
// (ColumnarEncoder: problems, the usable-row rule, the area JSON): the same linkage
// columns, bit for bit, from the same batch.
package encode

import (
	"joinedup/native/record"
	"joinedup/native/standardise"
)

// Encoder encodes batches. Not safe for concurrent use: give each goroutine its own.
type Encoder struct{}

// New builds an encoder for one extract.
func New(settings record.Settings, keys record.Keys, std *standardise.Standardiser, mapping record.Mapping) (*Encoder, error) {
	panic("TODO(helper B)")
}

// EncodeBatch mirrors ColumnarEncoder.encode_columns(batch.Columns).
func (e *Encoder) EncodeBatch(b *record.Batch) record.Encoded { panic("TODO(helper B)") }
