// Package readers reads the agency sources the native connector supports, batch by batch,
// with the same rows, values, rejects and errors as the Python readers
// (connectors/sources/*.py).
package readers

import (
	"fmt"

	"joinedup/native/record"
)

// SourceError: the input cannot be read as this kind of source (connectors.sources.SourceError).
type SourceError struct{ Msg string }

func (e *SourceError) Error() string { return e.Msg }

// MappingError: a mapped column is not in the input (connectors.mapping.MappingError).
type MappingError struct{ Msg string }

func (e *MappingError) Error() string { return e.Msg }

// Opener opens one kind's reader: `mapping` is already merged with the kind's default;
// rows it refuses go to `rejects` as they are met. Errors are *SourceError or
// *MappingError, returned before any batch (or from Next for a malformed structure the
// reader cannot read past, naming the row).
type Opener func(input string, mapping record.Mapping, batchSize int, rejects record.RejectSink) (record.Reader, error)

var openers = map[string]Opener{}

// register is called from each kind's file (init).
func register(kind string, open Opener) { openers[kind] = open }

// Kinds the native connector reads.
func Kinds() []string {
	out := make([]string, 0, len(openers))
	for k := range openers {
		out = append(out, k)
	}
	return out
}

// Open reads `input` as `kind`, rejecting later rows whose local id an earlier row had
// (connectors.sources.DuplicateIds: "duplicate local id (first at row N)", field "local_id").
func Open(kind, input string, mapping record.Mapping, batchSize int, rejects record.RejectSink) (record.Reader, error) {
	open, ok := openers[kind]
	if !ok {
		return nil, &SourceError{Msg: fmt.Sprintf("unknown source kind %q for the native connector", kind)}
	}
	r, err := open(input, mapping, batchSize, rejects)
	if err != nil {
		return nil, err
	}
	return newUnique(r, rejects), nil
}
