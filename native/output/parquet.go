package output

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func isBinaryColumn(c string) bool { return strings.HasPrefix(c, "clk_") }

// LinkageSchema mirrors connectors.extract.linkage_schema: "ref" (string, not null), then
// nullable binary clk_* filters and nullable int64 tokens / match keys.
func LinkageSchema(columns []string) *arrow.Schema {
	fields := []arrow.Field{{Name: "ref", Type: arrow.BinaryTypes.String, Nullable: false}}
	for _, c := range columns[1:] {
		t := arrow.DataType(arrow.PrimitiveTypes.Int64)
		if isBinaryColumn(c) {
			t = arrow.BinaryTypes.Binary
		}
		fields = append(fields, arrow.Field{Name: c, Type: t, Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// ContentSchema mirrors connectors.extract.CONTENT_SCHEMA (all nullable, as pa.schema's default).
var ContentSchema = arrow.NewSchema([]arrow.Field{
	{Name: "ref", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "nonce", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "ciphertext", Type: arrow.BinaryTypes.Binary, Nullable: true},
}, nil)

// KeymapSchema mirrors connectors.extract.KEYMAP_SCHEMA.
var KeymapSchema = arrow.NewSchema([]arrow.Field{
	{Name: "local_id", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "ref", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// zstdLevel is Arrow C++'s (pyarrow's) default zstd level.
const zstdLevel = 1

// syncFile buffers a parquet file's writes and syncs it on Close (pqarrow closes its sink).
type syncFile struct {
	f *os.File
	w *bufio.Writer
}

func (s *syncFile) Write(p []byte) (int, error) { return s.w.Write(p) }

func (s *syncFile) Close() error {
	err := s.w.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	return errors.Join(err, s.f.Close())
}

// parquetFiles are the three parquet writers, with _Writers' settings: linkage zstd
// without dictionaries (tokens, keys and filters hardly repeat); content's nonces and
// ciphertexts neither compressed nor dictionary-encoded (random bytes); keymap zstd with
// pyarrow's defaults.
type parquetFiles struct {
	linkageSchema            *arrow.Schema
	linkage, content, keymap *pqarrow.FileWriter
	files                    []*syncFile
	mem                      memory.Allocator
}

func openParquet(dir string, linkageSchema *arrow.Schema, rowGroupRows int) (*parquetFiles, error) {
	useStoreZstd()
	p := &parquetFiles{linkageSchema: linkageSchema, mem: newPoolAllocator()}
	arrowProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())
	open := func(name string, schema *arrow.Schema, opts ...parquet.WriterProperty) (*pqarrow.FileWriter, error) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, err
		}
		sf := &syncFile{f: f, w: bufio.NewWriterSize(f, 1<<20)}
		p.files = append(p.files, sf)
		opts = append(opts, parquet.WithMaxRowGroupLength(int64(rowGroupRows)), parquet.WithAllocator(p.mem))
		return pqarrow.NewFileWriter(schema, sf, parquet.NewWriterProperties(opts...), arrowProps)
	}
	var err error
	if p.linkage, err = open("linkage.parquet", linkageSchema,
		parquet.WithCompression(compress.Codecs.Zstd), parquet.WithCompressionLevel(zstdLevel),
		parquet.WithDictionaryDefault(false)); err != nil {
		p.abort()
		return nil, err
	}
	if p.content, err = open("content.parquet", ContentSchema,
		parquet.WithDictionaryDefault(false),
		parquet.WithCompressionFor("ref", compress.Codecs.Zstd),
		parquet.WithCompressionLevelFor("ref", zstdLevel)); err != nil {
		p.abort()
		return nil, err
	}
	if p.keymap, err = open("keymap.parquet", KeymapSchema,
		parquet.WithCompression(compress.Codecs.Zstd), parquet.WithCompressionLevel(zstdLevel)); err != nil {
		p.abort()
		return nil, err
	}
	return p, nil
}

// sortedBucket is one bucket's spilled rows in ref order, cut into row groups.
type sortedBucket struct {
	data    []byte
	groups  []rowGroup
	users   atomic.Int32 // writers not done with data
	release func()       // unmaps data
}

// rowGroup is up to RowGroupRows rows of a bucket and their hex refs, which all three
// files share.
type rowGroup struct {
	rows []spillRow
	refs *array.String
}

func newRowGroup(rows []spillRow) rowGroup {
	m := len(rows)
	hexRefs := make([]byte, 2*RefBytes*m)
	offsets := make([]int32, m+1)
	for i := range rows {
		hex.Encode(hexRefs[2*RefBytes*i:], rows[i].ref[:])
		offsets[i+1] = int32(2 * RefBytes * (i + 1))
	}
	data := array.NewData(arrow.BinaryTypes.String, m, []*memory.Buffer{
		nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets)), memory.NewBufferBytes(hexRefs),
	}, nil, 0, 0)
	defer data.Release()
	return rowGroup{rows: rows, refs: array.NewStringData(data)}
}

// writeAll writes the buckets that produce yields, in order, one goroutine per file, then
// closes the files. Each row group becomes one parquet row group in each file, as each
// bucket's write_table does in Python.
func (p *parquetFiles) writeAll(produce func(yield func(*sortedBucket) bool) error, cols []column) error {
	writers := []func(data []byte, g rowGroup) error{
		func(data []byte, g rowGroup) error { return p.writeLinkage(data, g.rows, cols, g.refs) },
		func(data []byte, g rowGroup) error { return p.writeContent(data, g.rows, g.refs) },
		func(data []byte, g rowGroup) error { return p.writeKeymap(data, g.rows, g.refs) },
	}
	chans := make([]chan *sortedBucket, len(writers))
	errs := make([]error, len(writers)+2)
	var wg sync.WaitGroup
	var failed sync.Once
	stop := make(chan struct{})
	for k, write := range writers {
		chans[k] = make(chan *sortedBucket, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sb := range chans[k] {
				for _, g := range sb.groups {
					if errs[k] == nil {
						errs[k] = write(sb.data, g)
					}
					g.refs.Release()
				}
				if sb.users.Add(-1) == 0 {
					sb.release()
				}
				if errs[k] != nil {
					failed.Do(func() { close(stop) })
				}
			}
		}()
	}
	errs[len(writers)] = produce(func(sb *sortedBucket) bool {
		sb.users.Store(int32(len(writers)))
		for _, g := range sb.groups {
			for range len(writers) - 1 {
				g.refs.Retain()
			}
		}
		for _, ch := range chans {
			ch <- sb // writers drain their channel even after an error (and release the refs)
		}
		select {
		case <-stop:
			return false
		default:
			return true
		}
	})
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	errs[len(writers)+1] = p.close()
	return errors.Join(errs...)
}

func writeRecord(fw *pqarrow.FileWriter, schema *arrow.Schema, cols []arrow.Array, n int) error {
	rec := array.NewRecordBatch(schema, cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	defer rec.Release()
	return fw.Write(rec)
}

func (p *parquetFiles) writeContent(data []byte, rows []spillRow, refs *array.String) error {
	nonces := array.NewBinaryBuilder(p.mem, arrow.BinaryTypes.Binary)
	cts := array.NewBinaryBuilder(p.mem, arrow.BinaryTypes.Binary)
	defer nonces.Release()
	defer cts.Release()
	nonces.Reserve(len(rows))
	nonces.ReserveData(len(rows) * NonceBytes)
	cts.Reserve(len(rows))
	total := 0
	for i := range rows {
		total += rows[i].ctN
	}
	cts.ReserveData(total)
	for i := range rows {
		r := &rows[i]
		nonces.Append(data[r.at+RefBytes : r.at+RefBytes+NonceBytes])
		cts.Append(data[r.ct : r.ct+r.ctN])
	}
	refs.Retain()
	return writeRecord(p.content, ContentSchema, []arrow.Array{refs, nonces.NewArray(), cts.NewArray()}, len(rows))
}

func (p *parquetFiles) writeKeymap(data []byte, rows []spillRow, refs *array.String) error {
	ids := array.NewStringBuilder(p.mem)
	defer ids.Release()
	ids.Reserve(len(rows))
	total := 0
	for i := range rows {
		total += rows[i].lN
	}
	ids.ReserveData(total)
	for i := range rows {
		r := &rows[i]
		ids.BinaryBuilder.Append(data[r.lid : r.lid+r.lN])
	}
	refs.Retain()
	return writeRecord(p.keymap, KeymapSchema, []arrow.Array{ids.NewArray(), refs}, len(rows))
}

func (p *parquetFiles) writeLinkage(data []byte, rows []spillRow, cols []column, refs *array.String) error {
	m := len(rows)
	ints := make([]*array.Int64Builder, len(cols))
	bins := make([]*array.BinaryBuilder, len(cols))
	for k, c := range cols {
		if c.binary {
			bins[k] = array.NewBinaryBuilder(p.mem, arrow.BinaryTypes.Binary)
			bins[k].Reserve(m)
			defer bins[k].Release()
		} else {
			ints[k] = array.NewInt64Builder(p.mem)
			ints[k].Reserve(m)
			defer ints[k].Release()
		}
	}
	// Exact data sizes first: growing the builders would copy each column again.
	sizes := make([]int, len(cols))
	for i := range rows {
		pos := rows[i].rest
		for k, c := range cols {
			if !c.binary {
				if data[pos] == 0 {
					pos++
				} else {
					pos += 9
				}
				continue
			}
			v, n := binary.Uvarint(data[pos:])
			pos += n
			if v > 0 {
				sizes[k] += int(v - 1)
				pos += int(v - 1)
			}
		}
	}
	for k, c := range cols {
		if c.binary {
			bins[k].ReserveData(sizes[k])
		}
	}
	for i := range rows {
		pos := rows[i].rest
		for k, c := range cols {
			if !c.binary {
				if data[pos] == 0 {
					ints[k].UnsafeAppendBoolToBitmap(false)
					pos++
				} else {
					ints[k].UnsafeAppend(int64(binary.LittleEndian.Uint64(data[pos+1:])))
					pos += 9
				}
				continue
			}
			v, n := binary.Uvarint(data[pos:])
			pos += n
			if v == 0 {
				bins[k].AppendNull()
				continue
			}
			bins[k].Append(data[pos : pos+int(v-1)])
			pos += int(v - 1)
		}
	}
	arrays := make([]arrow.Array, 0, len(cols)+1)
	refs.Retain()
	arrays = append(arrays, refs)
	for k, c := range cols {
		if c.binary {
			arrays = append(arrays, bins[k].NewArray())
		} else {
			arrays = append(arrays, ints[k].NewArray())
		}
	}
	return writeRecord(p.linkage, p.linkageSchema, arrays, m)
}

func (p *parquetFiles) close() error {
	var errs []error
	for _, fw := range []*pqarrow.FileWriter{p.linkage, p.content, p.keymap} {
		if fw != nil {
			errs = append(errs, fw.Close())
		}
	}
	return errors.Join(errs...)
}

// abort closes the files without caring whether they are complete.
func (p *parquetFiles) abort() {
	p.close()
	for _, f := range p.files {
		f.f.Close()
	}
}
