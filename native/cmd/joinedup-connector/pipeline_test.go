package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"joinedup/native/record"
)

// fakeReader yields batches of one row each; before batch k its sink gets rejects[k],
// and trailing rejects come with the end.
type fakeReader struct {
	rejects [][]int // per batch, then one more list for the end
	k       int
	sink    record.RejectSink
	failAt  int
}

func (f *fakeReader) Next() (*record.Batch, error) {
	for _, r := range f.rejects[f.k] {
		f.sink(record.Reject{Row: r, Field: "local_id", Reason: "duplicate"})
	}
	if f.k == f.failAt {
		return nil, errors.New("bad row")
	}
	if f.k == len(f.rejects)-1 {
		return nil, nil
	}
	f.k++
	return &record.Batch{RowNumbers: []int{1000 + f.k - 1}}, nil
}

func (f *fakeReader) Close() error { return nil }

type recorder struct{ events []string }

func (r *recorder) Reject(x record.Reject) error {
	r.events = append(r.events, fmt.Sprintf("R%d", x.Row))
	return nil
}

func (r *recorder) WriteBatch(rows []int, _ []string, enc *record.Encoded) error {
	r.events = append(r.events, fmt.Sprintf("B%d:%s", rows[0], enc.LocalIDs[0]))
	return nil
}

// python is connectors.extract + connectors.parallel.encode_in_order's order of writes,
// transliterated: the oracle.
func python(rejects [][]int, workers int) []string {
	var out []string
	emit := func(rs []int) {
		for _, r := range rs {
			out = append(out, fmt.Sprintf("R%d", r))
		}
	}
	batch := func(k int) string { return fmt.Sprintf("B%d:id%d", 1000+k, 1000+k) }
	n := len(rejects) - 1
	if workers <= 1 {
		for k := range n {
			emit(rejects[k])
			out = append(out, batch(k))
		}
		emit(rejects[n])
		return out
	}
	var pending []int
	for k := range n {
		emit(rejects[k])
		pending = append(pending, k)
		if len(pending) >= 2*workers {
			out = append(out, batch(pending[0]))
			pending = pending[1:]
		}
	}
	emit(rejects[n])
	for _, k := range pending {
		out = append(out, batch(k))
	}
	return out
}

func TestPipelineOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 60 {
		n := rng.IntN(12)
		rejects := make([][]int, n+1)
		row := 0
		for k := range rejects {
			for range rng.IntN(3) {
				rejects[k] = append(rejects[k], row)
				row++
			}
		}
		for _, workers := range []int{1, 2, 3} {
			var pending []record.Reject
			encs := make([]func(*record.Batch) record.Encoded, workers)
			for i := range encs {
				encs[i] = func(b *record.Batch) record.Encoded {
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					return record.Encoded{LocalIDs: []string{fmt.Sprintf("id%d", b.RowNumbers[0])}}
				}
			}
			// The program's order (lookahead 0) is Python's one-worker order for any
			// number of workers; lookahead 2W-1 gives Python's W-worker order.
			for _, pyWorkers := range []int{1, workers} {
				look := 0
				if pyWorkers > 1 {
					look = 2*pyWorkers - 1
				}
				fr := &fakeReader{rejects: rejects, failAt: -1}
				fr.sink = func(r record.Reject) { pending = append(pending, r) }
				rec := &recorder{}
				err := pipeline(fr, func() []record.Reject { r := pending; pending = nil; return r }, encs, look, rec)
				if err != nil {
					t.Fatal(err)
				}
				if want := python(rejects, pyWorkers); !slices.Equal(rec.events, want) {
					t.Fatalf("trial %d, %d workers (python %d):\n%v\nwant\n%v", trial, workers, pyWorkers, rec.events, want)
				}
			}
		}
	}
}

func TestPipelineErrors(t *testing.T) {
	fr := &fakeReader{rejects: [][]int{{1}, {2}, {3}, nil}, failAt: 2}
	var pending []record.Reject
	fr.sink = func(r record.Reject) { pending = append(pending, r) }
	enc := func(b *record.Batch) record.Encoded { return record.Encoded{LocalIDs: []string{"x"}} }
	rec := &recorder{}
	err := pipeline(fr, func() []record.Reject { r := pending; pending = nil; return r },
		[]func(*record.Batch) record.Encoded{enc}, 0, rec)
	if err == nil || err.Error() != "bad row" {
		t.Errorf("err = %v", err)
	}
	// An encoder panic is an error, not a crash (a crash would exit 2).
	fr = &fakeReader{rejects: [][]int{nil, nil}, failAt: -1}
	fr.sink = func(record.Reject) {}
	boom := func(*record.Batch) record.Encoded { panic("TODO") }
	err = pipeline(fr, func() []record.Reject { return nil }, []func(*record.Batch) record.Encoded{boom, boom}, 3, rec)
	if err == nil {
		t.Error("an encoder panic passed silently")
	}
}
