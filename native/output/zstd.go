package output

import (
	"encoding/binary"
	"sync"

	"github.com/apache/arrow-go/v18/parquet/compress"
)

// storeZstd wraps arrow's zstd codec so that pages of random bytes (the clk_* filters,
// the int64 tokens: keyed hashes do not compress) are written as zstd frames of raw
// blocks instead of being run through the compressor: the file still says (and is)
// zstd, as Python's, but such pages cost a copy instead of a failed compression
// (measured: zstd was a quarter of the parquet stage's CPU, for a ratio of 1.00).
// Whether a page compresses is judged from its first sampleBytes.
type storeZstd struct {
	compress.Codec
}

const (
	sampleBytes  = 16 << 10
	rawBlockMax  = 128 << 10 // zstd's largest block
	minSavedFrac = 0.03      // compress when the sample shrinks by at least this much
)

var registerZstd sync.Once

// useStoreZstd installs storeZstd as the zstd codec (the parquet writer finds codecs in a
// package-level table).
func useStoreZstd() {
	registerZstd.Do(func() {
		orig, err := compress.GetCodec(compress.Codecs.Zstd)
		if err != nil {
			return
		}
		compress.RegisterCodec(compress.Codecs.Zstd, storeZstd{orig})
	})
}

func (z storeZstd) Encode(dst, src []byte) []byte {
	return z.EncodeLevel(dst, src, compress.DefaultCompressionLevel)
}

func (z storeZstd) EncodeLevel(dst, src []byte, level int) []byte {
	if len(src) >= 4<<10 {
		sample := src[:min(len(src), sampleBytes)]
		c := z.Codec.EncodeLevel(nil, sample, level)
		if float64(len(c)) > float64(len(sample))*(1-minSavedFrac) {
			return rawZstdFrame(dst[:0], src)
		}
	}
	return z.Codec.EncodeLevel(dst, src, level)
}

func (z storeZstd) CompressBound(n int64) int64 {
	return max(z.Codec.CompressBound(n), rawFrameLen(n))
}

func rawFrameLen(n int64) int64 {
	blocks := max(1, (n+rawBlockMax-1)/rawBlockMax)
	return 4 + 1 + 8 + 3*blocks + n
}

// rawZstdFrame appends src as one zstd frame (RFC 8878): magic number, a frame header
// with Single_Segment_flag and an 8-byte Frame_Content_Size, then raw blocks.
func rawZstdFrame(dst, src []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0xFD2FB528)
	dst = append(dst, 0xE0) // FCS_Field_Size 8 bytes, single segment, no checksum, no dictionary
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(src)))
	for {
		n := min(len(src), rawBlockMax)
		last := uint32(0)
		if n == len(src) {
			last = 1
		}
		h := last | 0<<1 | uint32(n)<<3 // Block_Type 0: Raw_Block
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
		dst = append(dst, src[:n]...)
		src = src[n:]
		if last == 1 {
			return dst
		}
	}
}
