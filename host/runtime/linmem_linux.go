package runtime

import (
	"context"
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// Linear memory outside the Go heap. wazero's default memory is a Go
// slice that memory.grow reallocates and copies, so a Go guest growing its
// heap to N MiB copies several times N, leaves the old copies to the Go
// collector, and keeps the host's heap, and RSS, at several times what the
// guests use. Here each memory reserves its maximum as address space once
// (PROT_NONE, no RSS) and grows in place by making the next pages
// readable and writable: no copy, and the host pays only for pages the
// guest touches. The reservation is returned when wazero frees the
// memory, which it does when the module is closed, never under a running
// call (the runtime defers it while a call closed by its context unwinds).

// withLinearMemory makes the modules instantiated with ctx use mmap-backed
// linear memory.
func withLinearMemory(ctx context.Context) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(newMappedMemory))
}

// mappedMemory is one reservation.
type mappedMemory struct {
	mu   sync.Mutex // guards buf; wazero grows a memory from one call at a time, and frees it once
	buf  []byte     // the whole reservation, len = committed bytes
	max  uint64
	fail bool // the reservation failed: fall back to a Go slice
}

func newMappedMemory(_, max uint64) experimental.LinearMemory {
	m := &mappedMemory{max: max}
	if max == 0 {
		return m
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		m.fail = true
		return m
	}
	m.buf = b[:0]
	return m
}

// Reallocate makes the memory size bytes long, or returns nil when it
// cannot.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size > m.max {
		return nil
	}
	if m.fail || m.max == 0 {
		// No reservation: grow a Go slice, as wazero itself would.
		if size > uint64(cap(m.buf)) {
			nb := make([]byte, size, max(size, uint64(cap(m.buf))*5/4))
			copy(nb, m.buf)
			m.buf = nb
		}
		m.buf = m.buf[:size]
		return m.buf
	}
	cur := uint64(len(m.buf))
	if size > cur {
		full := m.buf[:m.max]
		if err := syscall.Mprotect(full[cur:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			return nil
		}
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free returns the reservation.
func (m *mappedMemory) Free() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.fail && m.max > 0 && m.buf != nil {
		_ = syscall.Munmap(m.buf[:m.max])
	}
	m.buf = nil
}
