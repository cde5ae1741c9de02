package runtime

import (
	"crypto/sha256"
	"sync"
	"weak"

	"wapper.dev/wapper/host/runtime/internal/stackguard"
)

// The wasm stack one call may use, in KiB of frames as the stack guard
// counts them (SPEC.md §9): by default the stacks of an instance take at
// most an eighth of its memory budget, and each call gets between
// MinStackKiB and DefaultStackKiB. Real plugins use under 8 KiB.
const (
	DefaultStackKiB = 128
	MinStackKiB     = 16
)

// defaultStackKiB is the stack of a call when the plugin sets none.
func defaultStackKiB(memoryMiB int) int {
	perCall := uint64(memoryMiB) << 20 / 8 / (2 * stackHandles) >> 10
	return int(min(max(perCall, MinStackKiB), DefaultStackKiB))
}

// stackHandles is how many exports the host calls on an instance. wazero
// keeps one native stack per export it calls and never shrinks it, and a
// stack that grew to U bytes takes up to 2·U of host memory.
var stackHandles = uint64(len(exportNames))

// stackReserve is the host memory the wasm stacks of one instance can
// take when each call may use stackKiB; it counts against memoryMiB.
func stackReserve(stackKiB int) uint64 { return stackHandles * 2 * uint64(stackKiB) << 10 }

// prepared is a module as the loader runs it: tables capped and the stack
// guard in place.
type prepared struct {
	wasm   []byte
	tables tableInfo
	err    error // a module the stack guard cannot instrument
}

// prepareCache keeps the modules prepared, keyed by content and stack
// budget, while something still uses them: instrumenting a Go plugin
// takes a tenth of a second and a load prepares its module twice (for the
// memory budget, then to compile). The references are weak: a prepared
// module is as large as the module, and once compiled nothing needs it,
// so it does not stay in the host's memory for good.
var prepareCache = struct {
	mu sync.Mutex // guards m
	m  map[[sha256.Size + 4]byte]weak.Pointer[prepared]
}{m: map[[sha256.Size + 4]byte]weak.Pointer[prepared]{}}

const prepareCacheSize = 16

// prepare caps the module's tables and instruments it with a stack budget
// of stackKiB. A decoding error is returned as err; problems the user must
// fix (a table too large, a feature the stack guard refuses) are in the
// result.
func prepare(wasm []byte, stackKiB int) (*prepared, error) {
	var key [sha256.Size + 4]byte
	sum := sha256.Sum256(wasm)
	copy(key[:], sum[:])
	key[sha256.Size], key[sha256.Size+1], key[sha256.Size+2], key[sha256.Size+3] = byte(stackKiB), byte(stackKiB>>8), byte(stackKiB>>16), byte(stackKiB>>24)
	prepareCache.mu.Lock()
	p := prepareCache.m[key].Value()
	prepareCache.mu.Unlock()
	if p != nil {
		return p, nil
	}
	bounded, tables, err := boundTables(wasm)
	if err != nil {
		return nil, err
	}
	p = &prepared{wasm: bounded, tables: tables}
	if len(tables.problems) == 0 {
		p.wasm, p.err = stackguard.Instrument(bounded, stackguard.BudgetForBytes(uint64(stackKiB)<<10))
	}
	prepareCache.mu.Lock()
	defer prepareCache.mu.Unlock()
	for k, w := range prepareCache.m {
		if w.Value() == nil {
			delete(prepareCache.m, k)
		}
	}
	if len(prepareCache.m) >= prepareCacheSize {
		for k := range prepareCache.m {
			delete(prepareCache.m, k)
			break
		}
	}
	prepareCache.m[key] = weak.Make(p)
	return p, nil
}
