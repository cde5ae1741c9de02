// Package stackguard bounds the wasm call stack of a module by rewriting
// its binary, so that the stack counts against a plugin's memory limit.
//
// wazero keeps the native stack of each call into a module as a Go byte
// slice that doubles on demand until about 84 MB (callStackCeiling in
// internal/engine/wazevo/call_engine.go, not configurable), and holds the
// old copy while it grows. A guest that recurses deeply in each of its
// instances can therefore make the host allocate gigabytes that no
// linear-memory limit sees. Like the stack_limiter of Substrate's
// wasm-instrument, [Instrument] enforces a budget inside the guest instead.
//
// # The rewrite
//
// Instrument appends one mutable i32 global, the counter, after every
// other global (so existing global indices keep their meaning), and rewrites
// every defined function to
//
//	global.get $c; i32.const COST; i32.add; global.set $c
//	global.get $c; i32.const BUDGET; i32.gt_u; if; unreachable; end
//	block (result ...)   ;; the original body, each return turned into a br to this block
//	end
//	global.get $c; i32.const COST; i32.sub; global.set $c
//	end
//
// so a call chain whose frames cost more than the budget traps with
// unreachable before it makes the frame that would exceed it. Function
// indices do not change, so exports, tables, the start function and the
// "name" section stay valid; DWARF custom sections (".debug_*") are dropped
// because code offsets move.
//
// # Stopping a call
//
// Instrument also appends a second mutable i32 global, the stop flag,
// exported as [StopExport], and checks it where every call and every loop
// iteration begins: the prologue traps when counter > budget or the flag
// is non-zero, and each loop body starts with
//
//	global.get $stop; if; unreachable; end
//
// A host that sets the flag (api.MutableGlobal.Set) from another goroutine
// while a call runs makes the guest trap at its next call or loop
// iteration, so it can enforce a call's deadline without wazero's
// WithCloseOnContextDone, whose check exits to Go at every function entry
// and loop header. This relies on wazero's compiler (wazevo) reading a
// mutable, module-defined global with a load from the module's context
// on each global.get that a loop header or a call separates from the
// previous one: it does not keep globals in registers across blocks with
// several predecessors (ssa.Builder.FindValueInLinearPath) nor after a
// call (reloadAfterCall), and has no pass that hoists or merges loads
// across blocks. The tests check that loops, recursion and a start
// function are stopped.
//
// A start section would run inside wazero's instantiation, where the host
// holds no module yet and so cannot set the flag: Instrument removes it and
// exports the start function as [StartExport]. The host must call that
// export right after instantiation, before anything else, as wasm would
// have. Modules that already export either name are refused with
// [ErrUnsupported].
//
// # Unit and cost
//
// Budgets and costs are counted in slots of [SlotBytes] (8) bytes of
// wazero's native stack. The cost of a function is an upper bound of its
// native frame:
//
//	cost = FrameOverhead                       (16)
//	     + slots of the parameters
//	     + slots of the declared locals
//	     + w × the most values on the operand stack at once
//	     + the largest call area of its call sites, if it makes calls:
//	       max(slots of the callee's parameters, of its results) + 4
//
// where a v128 takes 2 slots and any other value 1, and w is 2 if a v128
// can be on the function's operand stack (it uses SIMD, or touches a v128
// local, global, parameter, result or block type), else 1. The operand
// stack height is computed exactly, by decoding every instruction with
// its stack effect, as the stack_limiter does.
//
// Why this bounds the frame: wazero's compiler (wazevo) turns locals and
// operand stack values into SSA values; a frame holds the return address
// and the caller's frame pointer, a spill slot for every value alive
// across a call or under register pressure (8 bytes, 16 for a v128), the
// callee-saved registers the function uses (8 bytes each, 16 for vector
// registers), and the stack-passed arguments and results of the calls it
// makes. The values alive at once are at most the parameters, the locals
// and the operand stack. FrameOverhead covers the return address, frame
// pointer, alignment, and the extra 8 bytes of each 16-byte vector
// register save (8 registers on amd64, 14 on arm64). A call to a host
// function also runs wazero's Go-call trampoline on the wasm stack (its
// own return address, frame pointer and a Go slice header for the
// arguments), hence the 4 extra slots per call area. Measured on amd64, a
// frame with N integer values alive across a call takes N+5 slots, and
// one with N floats alive takes about N+13; the tests check that the cost
// covers the real frame size for such shapes. The bound is deliberately
// coarse for small functions: a recursive function of one parameter
// costs 25 slots while wazero gives it a 4-slot frame. Real plugins cost
// about 30 slots a function (median 28 for a Go plugin, 30 for Rust).
//
// # Host memory
//
// A call chain that stays within budget B uses at most about 8·B bytes of
// native stack. wazero grows the stack to 2·len+need and copies it, so the
// Go heap behind one stack that uses U bytes is at most about 2·U once
// grown, and 3·U during the copy. wazero keeps one stack per
// [api.Function] handle (each grown stack is kept until the handle is
// garbage), so an instance whose host calls k different exports can hold
// k such stacks.
//
// # Limits
//
// The counter is not reset after a trap: the instance must be thrown away,
// as the sandbox does after any trap. Host functions that call back into
// the guest share the counter with the frames below them, which matches
// the memory they use. Modules that use tail calls, exception handling,
// threads, typed function references or garbage collection are refused
// with [ErrUnsupported]: a tail call or an exception leaves a frame without
// running its epilogue. So are the type encodings of those proposals
// ((ref null ht), (ref ht), exnref, rec groups), which wazero accepts with
// its default features but does not always compile: they never reach it.
//
// # Hostile modules
//
// Instrument first runs [Check], which refuses modules whose declared
// counts and lengths cannot be honest: wazero allocates by them before it
// reads the data they count, and would take gigabytes for a few bytes.
//
// [api.Function]: https://pkg.go.dev/github.com/tetratelabs/wazero/api#Function
package stackguard

import (
	"errors"
	"math"
)

const (
	// SlotBytes is the size of the unit of budgets and costs.
	SlotBytes = 8
	// FrameOverhead is the fixed part of every function's cost, in slots.
	FrameOverhead = 16
	// MaxBudget is the largest budget Instrument accepts. It keeps the
	// counter from wrapping around: the counter never exceeds
	// 2·MaxBudget+1.
	MaxBudget = math.MaxInt32
	// callOverhead is what a call site adds to its arguments and results,
	// in slots: wazero's Go-call trampoline frame.
	callOverhead = 4
	// CheckEvery is how many calls a guest makes between two entries
	// into an empty loop that the rewrite adds to every function's
	// prologue: wazero checks for a closed module only at loop headers,
	// so without it a guest that recurses without loops would never be
	// stopped, nor let Go's garbage collector stop the world.
	CheckEvery = 1 << 16
)

// Names of the exports Instrument adds.
const (
	// StopExport is the stop flag, a mutable i32 global: non-zero makes
	// the guest trap with unreachable at its next call or loop iteration.
	StopExport = "wapper:stackguard.stop"
	// StartExport is the module's start function, when it has one, which
	// the host must call right after instantiation.
	StartExport = "wapper:stackguard.start"
)

// ErrUnsupported is wrapped by the errors of Instrument for modules that
// use an instruction or type it cannot account for.
var ErrUnsupported = errors.New("stackguard: unsupported")

// Instrument returns a copy of the module binary wasm in which every
// defined function adds its cost to a counter on entry, subtracts it on
// exit, and traps with unreachable when the counter would exceed budget
// (in slots; see [BudgetForBytes]); it also adds the stop flag and moves
// the start function to an export (see the package doc). A module that
// defines no function is returned unchanged: it runs no guest code, and
// has no flag. It fails on a malformed module, on a
// budget above [MaxBudget], on a module [Check] refuses (it runs it
// first), and, wrapping [ErrUnsupported], on a module that uses tail calls,
// exceptions or other features it does not handle. It does not validate
// the module: wazero does that when compiling the result. A module wazero
// accepts with its default features is accepted here, unless it declares
// more locals than Check allows or writes a type in an encoding of the
// typed function references or GC proposals (see the package doc).
func Instrument(wasm []byte, budget uint32) (out []byte, err error) {
	return instrument(wasm, budget, options{})
}

// BudgetForBytes returns the budget, in slots, for n bytes of wasm native
// stack, at most MaxBudget. The Go heap wazero may take for that stack is
// up to about three times n (see the package doc).
func BudgetForBytes(n uint64) uint32 {
	s := n / SlotBytes
	if s > MaxBudget {
		return MaxBudget
	}
	return uint32(s)
}
