package shm

import (
	"sync/atomic"
	"unsafe"
)

// mem is the mapped table (or a heap buffer in tests). It is the only place that turns offsets into
// pointers; every access is bounds-checked against the mapping and 8-byte aligned by layout.
type mem []byte

func (m mem) word(off int) *uint64 {
	if off < 0 || off+8 > len(m) || off%8 != 0 {
		panic("shm: word offset out of bounds") // a layout bug, never data-driven: offsets come from validated sizes
	}
	return (*uint64)(unsafe.Pointer(&m[off]))
}

func (m mem) load(off int) uint64          { return atomic.LoadUint64(m.word(off)) }
func (m mem) store(off int, v uint64)      { atomic.StoreUint64(m.word(off), v) }
func (m mem) add(off int, d uint64) uint64 { return atomic.AddUint64(m.word(off), d) }
func (m mem) cas(off int, old, v uint64) bool {
	return atomic.CompareAndSwapUint64(m.word(off), old, v)
}

// storeString writes s (truncated to n-1 bytes) as a length byte plus text into the n-byte field
// at off, one atomic word at a time, so concurrent readers see no torn words.
func (m mem) storeString(off, n int, s string) {
	if len(s) > n-1 {
		s = s[:n-1]
	}
	var buf [256]byte
	buf[0] = byte(len(s))
	copy(buf[1:], s)
	for i := 0; i < n; i += 8 {
		var w uint64
		for j := 0; j < 8; j++ {
			w |= uint64(buf[i+j]) << (8 * j)
		}
		m.store(off+i, w)
	}
}

// loadString reads a field written by storeString; a length byte out of range (a tampered file)
// is clamped to the field.
func (m mem) loadString(off, n int) string {
	var buf [256]byte
	for i := 0; i < n; i += 8 {
		w := m.load(off + i)
		for j := 0; j < 8; j++ {
			buf[i+j] = byte(w >> (8 * j))
		}
	}
	l := int(buf[0])
	if l > n-1 {
		l = n - 1
	}
	return string(buf[1 : 1+l])
}

// heapMem returns an 8-byte aligned heap buffer, for tests under the race detector.
func heapMem(size int) mem {
	words := make([]uint64, (size+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)[:size]
}
