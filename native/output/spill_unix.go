//go:build unix

package output

import (
	"os"
	"syscall"
)

// mapSpill maps a spill file read-only: its rows are read once, straight from the page
// cache, without a copy into (and page faults on) a fresh heap buffer.
func mapSpill(f *os.File) (data []byte, release func(), err error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return nil, func() {}, err
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() { syscall.Munmap(data) }, nil
}
