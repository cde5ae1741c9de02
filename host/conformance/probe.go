package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"wapper.dev/wapper/abi"
)

// Probe watches a plugin's exports from the host side, through a wazero
// function listener installed when the module is compiled: the guest's
// memory size after every call, the buffers wapper_alloc hands out and
// wapper_free takes back, and how often each export ran per instance. It
// sees every SDK the same way and needs nothing from the guest.
//
// An Engine compiles a module once and keeps the listeners of that first
// compilation, so use one Probe for every Load of a module on an Engine,
// and Reset it between measurements.
type Probe struct {
	mu sync.Mutex // guards memory, last and calls
	// memory is the memory size of each instance after its last call.
	memory map[api.Module]uint32
	last   api.Module
	// calls counts export calls per instance and export name.
	calls map[api.Module]map[string]int
	// live maps each instance's allocated buffers to their sizes.
	live     map[api.Module]map[uint32]uint32
	pending  map[api.Module]uint32 // size asked of wapper_alloc in progress
	allocs   int
	zeroSize int // wapper_alloc(0) calls
	frees    int
	problems []string
}

// NewProbe returns an empty Probe.
func NewProbe() *Probe {
	p := &Probe{}
	p.Reset()
	return p
}

// Reset forgets everything observed so far.
func (p *Probe) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.memory = map[api.Module]uint32{}
	p.calls = map[api.Module]map[string]int{}
	p.live = map[api.Module]map[uint32]uint32{}
	p.pending = map[api.Module]uint32{}
	p.last = nil
	p.allocs, p.zeroSize, p.frees = 0, 0, 0
	p.problems = nil
}

// Context returns ctx with the probe installed; pass it to
// runtime.Engine.Load (the listener is attached when the module compiles).
func (p *Probe) Context(ctx context.Context) context.Context {
	return experimental.WithFunctionListenerFactory(ctx, p)
}

// NewFunctionListener implements experimental.FunctionListenerFactory: it
// listens to the wapper_* exports only.
func (p *Probe) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	for _, n := range def.ExportNames() {
		if strings.HasPrefix(n, "wapper_") {
			return listener{p: p, name: n}
		}
	}
	return nil
}

type listener struct {
	p    *Probe
	name string
}

func (l listener) Before(_ context.Context, mod api.Module, _ api.FunctionDefinition, params []uint64, _ experimental.StackIterator) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls[mod]
	if c == nil {
		c = map[string]int{}
		p.calls[mod] = c
	}
	c[l.name]++
	switch l.name {
	case abi.ExportAlloc:
		p.pending[mod] = uint32(params[0])
	case abi.ExportFree:
		ptr := uint32(params[0])
		p.frees++
		if _, ok := p.live[mod][ptr]; !ok {
			p.problem("wapper_free(%#x) of a buffer wapper_alloc did not hand out", ptr)
		}
		delete(p.live[mod], ptr)
	}
}

func (l listener) After(_ context.Context, mod api.Module, _ api.FunctionDefinition, results []uint64) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := mod.Memory(); m != nil {
		p.memory[mod] = m.Size()
	}
	p.last = mod
	if l.name != abi.ExportAlloc {
		return
	}
	size, ptr := p.pending[mod], uint32(results[0])
	delete(p.pending, mod)
	p.allocs++
	if size == 0 {
		p.zeroSize++
	}
	if ptr == 0 {
		p.problem("wapper_alloc(%d) returned 0", size)
		return
	}
	live := p.live[mod]
	if live == nil {
		live = map[uint32]uint32{}
		p.live[mod] = live
	}
	end := uint64(ptr) + uint64(max(size, 1))
	for q, n := range live {
		if uint64(ptr) < uint64(q)+uint64(max(n, 1)) && uint64(q) < end {
			p.problem("wapper_alloc(%d) returned %#x, overlapping the live buffer %#x+%d", size, ptr, q, n)
		}
	}
	if mem := mod.Memory(); mem != nil && end > uint64(mem.Size()) {
		p.problem("wapper_alloc(%d) returned %#x, past the end of memory (%d bytes)", size, ptr, mem.Size())
	}
	live[ptr] = size
}

func (l listener) Abort(_ context.Context, mod api.Module, _ api.FunctionDefinition, _ error) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pending, mod)
	p.last = mod
}

func (p *Probe) problem(format string, args ...any) {
	if len(p.problems) < 20 {
		p.problems = append(p.problems, fmt.Sprintf(format, args...))
	}
}

// Memory returns the memory size in bytes of the instance called last,
// as it was after that call.
func (p *Probe) Memory() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.memory[p.last]
}

// Instances returns how many instances the probe has seen called.
func (p *Probe) Instances() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// Calls returns how often the instance called last ran the export.
func (p *Probe) Calls(export string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[p.last][export]
}

// Buffers returns the wapper_alloc and wapper_free calls seen, the
// wapper_alloc(0) calls among them, and the buffers still live in the
// instance called last.
func (p *Probe) Buffers() (allocs, frees, zeroSize, live int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocs, p.frees, p.zeroSize, len(p.live[p.last])
}

// Problems returns the buffer misuse the probe saw.
func (p *Probe) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}
