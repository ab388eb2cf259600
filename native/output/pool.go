package output

import (
	"math/bits"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// poolAllocator is an arrow memory.Allocator that keeps freed large buffers for reuse.
// Each row group's builders and page buffers are megabytes; taking them fresh from the Go
// heap every time cost more in page faults and zeroing than writing the rows (measured:
// a third of the output stage's CPU was kernel time). Small buffers go to the Go heap.
type poolAllocator struct {
	mu    sync.Mutex
	free  [64][][]byte       // by size class (power of two), whole 64-byte aligned buffers
	owned map[uintptr][]byte // start of a handed-out buffer -> its whole buffer
}

const poolMin = 64 << 10 // smaller buffers are not worth pooling

func newPoolAllocator() *poolAllocator {
	return &poolAllocator{owned: map[uintptr][]byte{}}
}

func (p *poolAllocator) Allocate(size int) []byte {
	if size < poolMin {
		return alignedMake(size, size)
	}
	class := bits.Len(uint(size - 1))
	p.mu.Lock()
	var buf []byte
	if n := len(p.free[class]); n > 0 {
		buf = p.free[class][n-1]
		p.free[class] = p.free[class][:n-1]
	}
	p.mu.Unlock()
	if buf == nil {
		buf = alignedMake(1<<class, 1<<class)
	} else {
		clear(buf[:size]) // arrow expects zeroed memory, as from the Go heap
	}
	p.mu.Lock()
	p.owned[uintptr(unsafe.Pointer(&buf[0]))] = buf
	p.mu.Unlock()
	// The capacity is the size asked for: a Reallocate within it must see zeroes.
	return buf[:size:size]
}

func (p *poolAllocator) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size {
		return b[:size]
	}
	nb := p.Allocate(size)
	copy(nb, b)
	p.Free(b)
	return nb
}

func (p *poolAllocator) Free(b []byte) {
	if cap(b) < poolMin {
		return
	}
	key := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p.mu.Lock()
	defer p.mu.Unlock()
	buf, ok := p.owned[key]
	if !ok {
		return // not ours (or from the Go heap): the GC has it
	}
	delete(p.owned, key)
	class := bits.Len(uint(len(buf) - 1))
	p.free[class] = append(p.free[class], buf)
}

// alignedMake is memory.GoAllocator's allocation: 64-byte aligned.
func alignedMake(size, capacity int) []byte {
	buf := make([]byte, capacity+64)
	shift := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64)) % 64
	return buf[shift : shift+size : shift+capacity]
}

var _ memory.Allocator = (*poolAllocator)(nil)
