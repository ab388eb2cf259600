package readers

import (
	"strings"

	"joinedup/native/pystr"
	"joinedup/native/record"
)

// duplicateIDs mirrors connectors.sources.DuplicateIds: the first row with a (stripped)
// local id keeps it, every later one is rejected naming that first row.
type duplicateIDs struct {
	rejects   record.RejectSink
	firstRows map[string]int
}

func newDuplicateIDs(rejects record.RejectSink) *duplicateIDs {
	return &duplicateIDs{rejects: rejects, firstRows: make(map[string]int, 1024)}
}

// fresh is DuplicateIds.fresh: true when the row may go on; false (and a reject) for a
// duplicate. A row without an id passes (standardisation rejects it).
func (d *duplicateIDs) fresh(row int, localID *string) bool {
	if localID == nil {
		return true
	}
	key := pystr.Strip(*localID)
	if key == "" {
		return true
	}
	first, seen := d.firstRows[key]
	if !seen {
		// Cloned: the id is usually a slice of a whole row's text, which the map would
		// otherwise keep alive for the rest of the extract.
		d.firstRows[strings.Clone(key)] = row
		return true
	}
	if first == row {
		return true
	}
	d.rejects(record.Reject{Row: row, Field: "local_id", Reason: "duplicate local id (first at row " + itoa(first) + ")"})
	return false
}

// freshBatch is DuplicateIds.fresh_batch: record a whole batch when every id is there,
// not "" and new (to this batch too), keyed as given, unstripped; false, recording
// nothing, when some may be a duplicate (then fresh row by row). Ported as it is, not
// folded into fresh: a reader whose ids are not stripped gets Python's answer either way.
// Each id is recorded as it is checked and the batch's are taken back on a failure.
func (d *duplicateIDs) freshBatch(numbers []int, ids []*string) bool {
	for i, id := range ids {
		if id != nil && *id != "" {
			if _, seen := d.firstRows[*id]; !seen {
				d.firstRows[strings.Clone(*id)] = numbers[i]
				continue
			}
		}
		for _, done := range ids[:i] {
			delete(d.firstRows, *done)
		}
		return false
	}
	return true
}

// newUnique wraps a reader with connectors.sources._unique_batch: the duplicates of each
// batch are cut out of it and the batch boundaries stay, so a batch can shrink or be
// empty. Every kind's Python module has its own read_batches, so this is what
// connectors.sources.read_batches does for all of them.
func newUnique(r record.Reader, rejects record.RejectSink) record.Reader {
	return &unique{r: r, ids: newDuplicateIDs(rejects)}
}

type unique struct {
	r     record.Reader
	ids   *duplicateIDs
	sized bool
}

// rowEstimator is a reader that can guess, after its first batch, how many rows its
// input holds (to size the map of ids once).
type rowEstimator interface{ estimatedRows() int }

func (u *unique) Close() error { return u.r.Close() }

func (u *unique) Next() (*record.Batch, error) {
	b, err := u.r.Next()
	if b == nil || err != nil {
		return b, err
	}
	ids, ok := b.Columns["local_id"]
	if !ok {
		return b, nil
	}
	if !u.sized {
		// Growing a map of millions of ids step by step costs more than reading them.
		u.sized = true
		if e, ok := u.r.(rowEstimator); ok && len(u.ids.firstRows) == 0 {
			if n := e.estimatedRows(); n > 1024 {
				u.ids.firstRows = make(map[string]int, min(n+n/8, 1<<24))
			}
		}
	}
	if u.ids.freshBatch(b.RowNumbers, ids) {
		return b, nil
	}
	var keep []int // nil while every row so far is kept
	for i, row := range b.RowNumbers {
		if u.ids.fresh(row, ids[i]) {
			if keep != nil {
				keep = append(keep, i)
			}
			continue
		}
		if keep == nil {
			keep = make([]int, i, len(b.RowNumbers))
			for j := range keep {
				keep[j] = j
			}
		}
	}
	if keep == nil {
		return b, nil
	}
	out := &record.Batch{RowNumbers: make([]int, len(keep)), Columns: make(map[string][]*string, len(b.Columns))}
	for k, i := range keep {
		out.RowNumbers[k] = b.RowNumbers[i]
	}
	for name, values := range b.Columns {
		col := make([]*string, len(keep))
		for k, i := range keep {
			col[k] = values[i]
		}
		out.Columns[name] = col
	}
	if b.Indicators != nil {
		out.Indicators = make([]string, len(keep))
		for k, i := range keep {
			out.Indicators[k] = b.Indicators[i]
		}
	}
	return out, nil
}
