package main

import (
	"fmt"
	"runtime/debug"

	"joinedup/native/record"
)

// sink is where the pipeline delivers, in order: reader rejects and encoded batches
// (output.Writer in the program, a recorder in tests).
type sink interface {
	Reject(record.Reject) error
	WriteBatch(rowNumbers []int, indicators []string, enc *record.Encoded) error
}

// item is one step of the reader: a batch (nil at the end or on an error) and the rows
// the reader rejected while reading it, before it was handed over.
type item struct {
	batch   *record.Batch
	rejects []record.Reject
	err     error
	res     chan result
}

type result struct {
	enc record.Encoded
	err error
}

// pipeline reads batches in one goroutine, encodes them in `encoders` goroutines (one
// encoder each: they are not safe for concurrent use) and delivers them to out in batch
// order, from the calling goroutine.
//
// The rejects.csv order follows Python's (connectors.parallel.encode_in_order): with one
// worker Python writes batch j's problems after reading batch j and before reading j+1;
// with W > 1 it keeps 2W batches in flight, so it has read batch j+2W-1 (and written the
// reader's rejects met on the way) before it writes batch j. lookahead is that distance
// (0 for the one-worker order, which the program uses; 2W-1 for Python's W-worker one);
// a reader reject is delivered when its batch is "read" in that sense. The reading and
// encoding run ahead regardless: rejects travel with their batch.
//
// rejectsOf returns (and clears) the rejects the reader's sink collected; it is called
// only from the reading goroutine, right after each Next.
func pipeline(reader record.Reader, rejectsOf func() []record.Reject,
	encoders []func(*record.Batch) record.Encoded, lookahead int, out sink) error {
	work := make(chan *item, len(encoders))
	ordered := make(chan *item, 1) // the reader runs at most a batch ahead of what is needed
	stop := make(chan struct{})
	defer close(stop)

	go func() {
		defer close(work)
		defer close(ordered)
		for {
			b, err := reader.Next()
			it := &item{batch: b, rejects: rejectsOf(), err: err}
			if err == nil && b != nil {
				it.res = make(chan result, 1)
				select {
				case work <- it:
				case <-stop:
					return
				}
			}
			select {
			case ordered <- it:
			case <-stop:
				return
			}
			if err != nil || b == nil {
				return
			}
		}
	}()
	for _, encode := range encoders {
		go func() {
			for it := range work {
				it.res <- encodeSafely(encode, it.batch)
			}
		}()
	}

	var queue []*item
	pulled, written, eof := 0, 0, false
	pull := func() error {
		it, ok := <-ordered
		if !ok {
			return fmt.Errorf("reader stopped without an end")
		}
		for _, r := range it.rejects {
			if err := out.Reject(r); err != nil {
				return err
			}
		}
		if it.err != nil {
			return it.err
		}
		if it.batch == nil {
			eof = true
			return nil
		}
		queue = append(queue, it)
		pulled++
		return nil
	}
	for {
		for !eof && pulled <= written+lookahead {
			if err := pull(); err != nil {
				return err
			}
		}
		if len(queue) == 0 {
			return nil
		}
		it := queue[0]
		queue = queue[1:]
		r := <-it.res
		if r.err != nil {
			return r.err
		}
		if err := out.WriteBatch(it.batch.RowNumbers, it.batch.Indicators, &r.enc); err != nil {
			return err
		}
		written++
	}
}

// encodeSafely turns an encoder's panic into an error: a Go panic exits with status 2,
// which the job protocol reserves for source and mapping problems.
func encodeSafely(encode func(*record.Batch) record.Encoded, b *record.Batch) (r result) {
	defer func() {
		if p := recover(); p != nil {
			r.err = fmt.Errorf("encoder panic: %v\n%s", p, debug.Stack())
		}
	}()
	return result{enc: encode(b)}
}
