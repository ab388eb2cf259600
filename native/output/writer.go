// Package output writes the split extract of the native connector: linkage.parquet,
// content.parquet, keymap.parquet and rejects.csv, as connectors/extract.py's
// _write_extract, _Writers, _Refs and _write_batch and connectors/content.py's
// encrypt_batch write them for scheme v2 (keyed refs, rows in ref order, padded content).
package output

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"

	"joinedup/native/record"
)

// Buckets is connectors.extract.BUCKETS: rows are spilled to one file per first hex
// digit of their ref, and each bucket is sorted on its own at the end, so memory is
// bounded by 1/16 of the extract rather than all of it.
const Buckets = 16

// DefaultRowGroupRows bounds a parquet row group (and the arrow records built to write
// it): large enough for DuckDB's and pyarrow's scans, small enough to bound memory.
const DefaultRowGroupRows = 1 << 16

// minChunk is the fewest rows a sealing goroutine gets: fewer cost more to hand out than
// to encrypt.
const minChunk = 1024

// Config says what one extract is written with (the job's fields).
type Config struct {
	OutDir      string
	Source      string
	Kind        string
	ExtractID   string
	Columns     []string // the job's linkage_columns; "ref" first
	RefKey      []byte
	ContentKey  []byte
	SizeClasses []int // content.SIZE_CLASSES as the job gives them; empty = no padding
	// Parallelism is how many goroutines seal a batch's content (0 = GOMAXPROCS).
	Parallelism int
	// RowGroupRows bounds the parquet row groups (0 = DefaultRowGroupRows).
	RowGroupRows int
}

// Counts are _write_extract's counts.
type Counts struct {
	Read          int64 `json:"read"`
	Accepted      int64 `json:"accepted"`
	Rejected      int64 `json:"rejected"`
	FieldsDropped int64 `json:"fields_dropped"`
}

// column is one linkage column after "ref": an int64 column or a binary (clk_*) one.
type column struct {
	name   string
	binary bool
}

// Writer writes one extract. Calls must come from one goroutine, in batch order (the
// refs' repeat counter and the rejects' order depend on it).
type Writer struct {
	cfg      Config
	cols     []column
	nInt     int
	refs     *Refs
	counts   Counts
	rejectsF *os.File
	rejectsW *bufio.Writer
	rejects  csvWriter
	pq       *parquetFiles
	buckets  [Buckets]*spill
	sealers  []*contentSealer
	chunks   [][Buckets][]byte // per sealing goroutine, per bucket: encoded rows
	rawRefs  []byte
	nonces   []byte
	problems []int
	done     bool
}

// spill is one bucket's temporary file of encoded rows (see encodeRow for the layout).
type spill struct {
	path string
	f    *os.File
	w    *bufio.Writer
}

// Create opens the output files in cfg.OutDir (which should be empty).
func Create(cfg Config) (*Writer, error) {
	if len(cfg.Columns) == 0 || cfg.Columns[0] != "ref" {
		return nil, fmt.Errorf("linkage columns must start with \"ref\", got %v", cfg.Columns)
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = runtime.GOMAXPROCS(0)
	}
	if cfg.RowGroupRows <= 0 {
		cfg.RowGroupRows = DefaultRowGroupRows
	}
	w := &Writer{cfg: cfg, refs: NewRefs(cfg.RefKey, cfg.Source)}
	for _, c := range cfg.Columns[1:] {
		col := column{name: c, binary: isBinaryColumn(c)}
		if !col.binary {
			w.nInt++
		}
		w.cols = append(w.cols, col)
	}
	for range cfg.Parallelism {
		s, err := newContentSealer(cfg.ContentKey, cfg.ExtractID, cfg.Source, cfg.Kind, cfg.SizeClasses)
		if err != nil {
			return nil, err
		}
		w.sealers = append(w.sealers, s)
	}
	w.chunks = make([][Buckets][]byte, cfg.Parallelism)

	f, err := os.OpenFile(filepath.Join(cfg.OutDir, "rejects.csv"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	w.rejectsF, w.rejectsW = f, bufio.NewWriterSize(f, 64<<10)
	w.rejects = csvWriter{w: w.rejectsW}
	if err := w.rejects.strings("row_number", "field", "reason", "action"); err != nil {
		w.Abort()
		return nil, err
	}
	if w.pq, err = openParquet(cfg.OutDir, LinkageSchema(cfg.Columns), cfg.RowGroupRows); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// Counts so far.
func (w *Writer) Counts() Counts { return w.counts }

// Reject records a row the reader refused: read, rejected, on file as it comes.
func (w *Writer) Reject(r record.Reject) error {
	w.counts.Read++
	w.counts.Rejected++
	return w.rejects.row(r.Row, r.Field, r.Reason, "rejected")
}

// WriteBatch writes one encoded batch: its problems to rejects.csv (rows in order), its
// accepted rows' refs, linkage, content and keymap rows to the buckets. rowNumbers and
// indicators are the reader's batch's (indicators nil for a kind without them).
func (w *Writer) WriteBatch(rowNumbers []int, indicators []string, enc *record.Encoded) error {
	if len(enc.Accepted) != len(rowNumbers) {
		return fmt.Errorf("encoded batch has %d rows, the batch %d", len(enc.Accepted), len(rowNumbers))
	}
	// Problems in row order (Python's dict holds them in the order the rows come).
	w.problems = w.problems[:0]
	for i := range enc.Problems {
		w.problems = append(w.problems, i)
	}
	sort.Ints(w.problems)
	for _, i := range w.problems {
		if i < 0 || i >= len(rowNumbers) {
			return fmt.Errorf("problem for row index %d of a batch of %d", i, len(rowNumbers))
		}
		ps := enc.Problems[i]
		action := "field_dropped"
		if !enc.Accepted[i] {
			action = "rejected"
		} else {
			w.counts.FieldsDropped += int64(len(ps))
		}
		for _, p := range ps {
			if err := w.rejects.row(rowNumbers[i], p.Field, p.Reason, action); err != nil {
				return err
			}
		}
	}
	n := len(enc.LocalIDs)
	w.counts.Read += int64(len(rowNumbers))
	w.counts.Accepted += int64(n)
	w.counts.Rejected += int64(len(rowNumbers) - n)
	if n == 0 {
		return nil
	}

	var kept []string
	if indicators != nil {
		if len(indicators) != len(rowNumbers) {
			return fmt.Errorf("batch has %d rows and %d indicator lists", len(rowNumbers), len(indicators))
		}
		kept = make([]string, 0, n)
		for i, ok := range enc.Accepted {
			if ok {
				kept = append(kept, indicators[i])
			}
		}
	}
	if len(kept) != n && kept != nil || len(enc.AreaJSON) != n {
		return fmt.Errorf("batch has %d accepted rows, %d areas, %d indicator lists", n, len(enc.AreaJSON), len(kept))
	}
	ints := make([][]*int64, 0, w.nInt)
	bins := make([][][]byte, 0, len(w.cols)-w.nInt)
	for _, c := range w.cols {
		var l int
		var ok bool
		if c.binary {
			var v [][]byte
			v, ok = enc.Binaries[c.name]
			bins, l = append(bins, v), len(v)
		} else {
			var v []*int64
			v, ok = enc.Ints[c.name]
			ints, l = append(ints, v), len(v)
		}
		if !ok {
			return fmt.Errorf("encoded batch has no linkage column %q", c.name)
		}
		if l != n {
			return fmt.Errorf("linkage column %q has %d values for %d accepted rows", c.name, l, n)
		}
	}

	// Refs in row order (the repeat counter is sequential), then nonces in one draw.
	w.rawRefs = slices.Grow(w.rawRefs[:0], n*RefBytes)[:n*RefBytes]
	for j, lid := range enc.LocalIDs {
		copy(w.rawRefs[j*RefBytes:], w.refs.Next(lid))
	}
	w.nonces = slices.Grow(w.nonces[:0], n*NonceBytes)[:n*NonceBytes]
	if _, err := rand.Read(w.nonces); err != nil {
		return err
	}

	// Seal and encode rows in contiguous chunks, one goroutine each; the chunks are then
	// appended in order, so each bucket holds its rows in batch order.
	p := min(w.cfg.Parallelism, (n+minChunk-1)/minChunk)
	size := (n + p - 1) / p
	var wg sync.WaitGroup
	for c := range p {
		lo, hi := c*size, min(n, (c+1)*size)
		enc1 := func() {
			out := &w.chunks[c]
			for b := range out {
				out[b] = out[b][:0]
			}
			s := w.sealers[c]
			var ref [2 * RefBytes]byte
			for j := lo; j < hi; j++ {
				raw := w.rawRefs[j*RefBytes : (j+1)*RefBytes]
				hex.Encode(ref[:], raw)
				ind := ""
				if kept != nil {
					ind = kept[j]
				}
				b := raw[0] >> 4
				out[b] = w.encodeRow(out[b], s, j, raw, ref[:], ind, enc, ints, bins)
			}
		}
		if p == 1 {
			enc1()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); enc1() }()
	}
	wg.Wait()
	for b := range Buckets {
		for c := range p {
			if len(w.chunks[c][b]) == 0 {
				continue
			}
			s, err := w.bucket(b)
			if err != nil {
				return err
			}
			if _, err := s.w.Write(w.chunks[c][b]); err != nil {
				return err
			}
		}
	}
	return nil
}

// encodeRow appends one row in the spill layout: ref (12 bytes), nonce (12), uvarint
// ciphertext length + ciphertext, uvarint local id length + local id, then per linkage
// column in order: int64 as a flag byte (0 null, 1 value) + 8 bytes little-endian;
// binary as uvarint(length+1) (0 null) + bytes.
func (w *Writer) encodeRow(dst []byte, s *contentSealer, j int, raw, ref []byte, ind string,
	enc *record.Encoded, ints [][]*int64, bins [][][]byte) []byte {
	nonce := w.nonces[j*NonceBytes : (j+1)*NonceBytes]
	dst = append(dst, raw...)
	dst = append(dst, nonce...)
	plain := s.plaintext(ref, enc.AreaJSON[j], ind)
	dst = binary.AppendUvarint(dst, uint64(len(plain)+s.aead.Overhead()))
	// AAD "<extract_id>|<ref>" binds the row to its extract and ref.
	s.aad = append(append(s.aad[:0], s.aadPre...), ref...)
	dst = s.aead.Seal(dst, nonce, plain, s.aad)
	lid := enc.LocalIDs[j]
	dst = binary.AppendUvarint(dst, uint64(len(lid)))
	dst = append(dst, lid...)
	ii, bi := 0, 0
	for _, c := range w.cols {
		if c.binary {
			v := bins[bi][j]
			bi++
			if v == nil {
				dst = append(dst, 0)
				continue
			}
			dst = binary.AppendUvarint(dst, uint64(len(v))+1)
			dst = append(dst, v...)
			continue
		}
		v := ints[ii][j]
		ii++
		if v == nil {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(*v))
	}
	return dst
}

func (w *Writer) bucket(b int) (*spill, error) {
	if s := w.buckets[b]; s != nil {
		return s, nil
	}
	path := filepath.Join(w.cfg.OutDir, fmt.Sprintf(".bucket-%02d", b))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	s := &spill{path: path, f: f, w: bufio.NewWriterSize(f, 256<<10)}
	w.buckets[b] = s
	return s, nil
}

// Close appends the buckets in order, each sorted by ref (so the files are in ref
// order), removes them, and closes (and syncs) the four files.
func (w *Writer) Close() error {
	if w.done {
		return errors.New("output: writer already closed")
	}
	err := w.finish()
	if err != nil {
		w.Abort()
		return err
	}
	w.done = true
	return nil
}

func (w *Writer) finish() error {
	if err := w.rejectsW.Flush(); err != nil {
		return err
	}
	if err := w.rejectsF.Sync(); err != nil {
		return err
	}
	if err := w.rejectsF.Close(); err != nil {
		return err
	}
	w.rejectsF = nil
	pq := w.pq
	w.pq = nil // writeAll closes the files
	// One goroutine per parquet file takes the sorted buckets in order, so the three files
	// are written at once and the next bucket is read and sorted meanwhile; at most three
	// buckets (3/16 of the extract) are in memory.
	return pq.writeAll(func(yield func(*sortedBucket) bool) error {
		for b := range Buckets {
			s := w.buckets[b]
			if s == nil {
				continue
			}
			if err := s.w.Flush(); err != nil {
				return err
			}
			data, release, err := mapSpill(s.f)
			if err != nil {
				return err
			}
			s.f.Close()
			os.Remove(s.path)
			w.buckets[b] = nil
			rows, err := w.parseBucket(data)
			if err != nil {
				release()
				return fmt.Errorf("bucket %d: %w", b, err)
			}
			// The refs are unique in practice; ties keep spill order, as Python's stable sort.
			slices.SortFunc(rows, func(a, b spillRow) int {
				if c := bytes.Compare(a.ref[:], b.ref[:]); c != 0 {
					return c
				}
				return a.at - b.at
			})
			sb := &sortedBucket{data: data, release: release}
			for lo := 0; lo < len(rows); lo += w.cfg.RowGroupRows {
				sb.groups = append(sb.groups, newRowGroup(rows[lo:min(len(rows), lo+w.cfg.RowGroupRows)]))
			}
			if !yield(sb) {
				return nil
			}
		}
		return nil
	}, w.cols)
}

// spillRow locates one row in a bucket's data.
type spillRow struct {
	ref     [RefBytes]byte
	at      int // row start (ref, then nonce)
	ct, ctN int // ciphertext
	lid, lN int // local id
	rest    int // linkage columns
	restLen int
}

func (w *Writer) parseBucket(data []byte) ([]spillRow, error) {
	rows := make([]spillRow, 0, len(data)/1024+1)
	for at := 0; at < len(data); {
		var r spillRow
		r.at = at
		if at+2*RefBytes > len(data) {
			return nil, errors.New("truncated row")
		}
		copy(r.ref[:], data[at:])
		pos := at + RefBytes + NonceBytes
		var err error
		if r.ct, r.ctN, err = lenPrefixed(data, pos); err != nil {
			return nil, err
		}
		if r.lid, r.lN, err = lenPrefixed(data, r.ct+r.ctN); err != nil {
			return nil, err
		}
		r.rest = r.lid + r.lN
		pos = r.rest
		for _, c := range w.cols {
			if pos >= len(data) {
				return nil, errors.New("truncated row")
			}
			if !c.binary {
				if data[pos] == 0 {
					pos++
				} else {
					pos += 9
				}
				continue
			}
			v, k := binary.Uvarint(data[pos:])
			if k <= 0 {
				return nil, errors.New("bad length")
			}
			pos += k
			if v > 0 {
				pos += int(v - 1)
			}
		}
		if pos > len(data) {
			return nil, errors.New("truncated row")
		}
		r.restLen = pos - r.rest
		rows = append(rows, r)
		at = pos
	}
	return rows, nil
}

func lenPrefixed(data []byte, pos int) (start, n int, err error) {
	if pos >= len(data) {
		return 0, 0, errors.New("truncated row")
	}
	v, k := binary.Uvarint(data[pos:])
	if k <= 0 || pos+k+int(v) > len(data) {
		return 0, 0, errors.New("bad length")
	}
	return pos + k, int(v), nil
}

// Abort closes what is open and removes the spill files (the caller discards out_dir).
func (w *Writer) Abort() {
	w.done = true
	if w.rejectsF != nil {
		w.rejectsF.Close()
		w.rejectsF = nil
	}
	for b, s := range w.buckets {
		if s != nil {
			s.f.Close()
			os.Remove(s.path)
			w.buckets[b] = nil
		}
	}
	if w.pq != nil {
		w.pq.abort()
		w.pq = nil
	}
}
