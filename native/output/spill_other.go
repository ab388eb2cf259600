//go:build !unix

package output

import "os"

// mapSpill reads a spill file (no mmap here).
func mapSpill(f *os.File) (data []byte, release func(), err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	data = make([]byte, st.Size())
	_, err = f.ReadAt(data, 0)
	return data, func() {}, err
}
