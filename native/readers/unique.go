package readers

import "joinedup/native/record"

// newUnique wraps a reader with duplicate local id rejection. TODO(helper C): port
// connectors.sources.DuplicateIds / _unique_batch exactly.
func newUnique(r record.Reader, rejects record.RejectSink) record.Reader { return r }
