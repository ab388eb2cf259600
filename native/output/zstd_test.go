package output

import (
	"testing"

	"github.com/klauspost/compress/zstd"
)

func (storeZstd) decode(t *testing.T, frame []byte) []byte {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(frame, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
