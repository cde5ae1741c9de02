package stackguard

import (
	"errors"
	"fmt"
)

// Immediate kinds of the opcodes whose operands are fixed.
const (
	immNone    = iota
	immU32     // one u32 index (local, global, table, data, element, memory)
	immU32x2   // two u32 indices
	immMemarg  // align u32 (bit 6: a memory index follows) and offset
	immLane    // memarg followed by a lane byte (SIMD load/store lane)
	immLaneIdx // one lane byte
	imm16      // 16 bytes (v128.const, i8x16.shuffle)
)

// effect is the operand stack effect of an instruction: the values it pops
// and pushes, and how its immediates are encoded.
type effect struct {
	ok        bool
	pop, push int8
	imm       uint8
}

var (
	// plain holds the one-byte opcodes whose effect is fixed. Control
	// instructions, calls and constants are handled by the decoder itself.
	plain [256]effect
	// prefixFC holds the 0xFC sub-opcodes: saturating truncations, bulk
	// memory and table instructions.
	prefixFC [18]effect
	// prefixFD holds the 0xFD sub-opcodes (fixed-width SIMD).
	prefixFD [256]effect
)

func set(t []effect, lo, hi int, pop, push int8, imm uint8) {
	for i := lo; i <= hi; i++ {
		t[i] = effect{ok: true, pop: pop, push: push, imm: imm}
	}
}

func init() {
	p := plain[:]
	set(p, 0x01, 0x01, 0, 0, immNone) // nop
	set(p, 0x1a, 0x1a, 1, 0, immNone) // drop
	set(p, 0x1b, 0x1b, 3, 1, immNone) // select
	set(p, 0x20, 0x20, 0, 1, immU32)  // local.get
	set(p, 0x21, 0x21, 1, 0, immU32)  // local.set
	set(p, 0x22, 0x22, 1, 1, immU32)  // local.tee
	set(p, 0x24, 0x24, 1, 0, immU32)  // global.set (global.get is special)
	set(p, 0x25, 0x25, 1, 1, immU32)  // table.get
	set(p, 0x26, 0x26, 2, 0, immU32)  // table.set
	set(p, 0x28, 0x35, 1, 1, immMemarg)
	set(p, 0x36, 0x3e, 2, 0, immMemarg)
	set(p, 0x3f, 0x3f, 0, 1, immU32)  // memory.size (memory index)
	set(p, 0x40, 0x40, 1, 1, immU32)  // memory.grow
	set(p, 0x45, 0x45, 1, 1, immNone) // i32.eqz
	set(p, 0x46, 0x4f, 2, 1, immNone) // i32 comparisons
	set(p, 0x50, 0x50, 1, 1, immNone) // i64.eqz
	set(p, 0x51, 0x66, 2, 1, immNone) // i64, f32, f64 comparisons
	set(p, 0x67, 0x69, 1, 1, immNone) // i32 clz ctz popcnt
	set(p, 0x6a, 0x78, 2, 1, immNone) // i32 binary
	set(p, 0x79, 0x7b, 1, 1, immNone) // i64 clz ctz popcnt
	set(p, 0x7c, 0x8a, 2, 1, immNone) // i64 binary
	set(p, 0x8b, 0x91, 1, 1, immNone) // f32 unary
	set(p, 0x92, 0x98, 2, 1, immNone) // f32 binary
	set(p, 0x99, 0x9f, 1, 1, immNone) // f64 unary
	set(p, 0xa0, 0xa6, 2, 1, immNone) // f64 binary
	set(p, 0xa7, 0xc4, 1, 1, immNone) // conversions, reinterpretations, sign extension
	set(p, 0xd1, 0xd1, 1, 1, immNone) // ref.is_null
	set(p, 0xd2, 0xd2, 0, 1, immU32)  // ref.func

	c := prefixFC[:]
	set(c, 0, 7, 1, 1, immNone)    // iNN.trunc_sat_fMM_{s,u}
	set(c, 8, 8, 3, 0, immU32x2)   // memory.init data memory
	set(c, 9, 9, 0, 0, immU32)     // data.drop
	set(c, 10, 10, 3, 0, immU32x2) // memory.copy
	set(c, 11, 11, 3, 0, immU32)   // memory.fill
	set(c, 12, 12, 3, 0, immU32x2) // table.init elem table
	set(c, 13, 13, 0, 0, immU32)   // elem.drop
	set(c, 14, 14, 3, 0, immU32x2) // table.copy
	set(c, 15, 15, 2, 1, immU32)   // table.grow
	set(c, 16, 16, 0, 1, immU32)   // table.size
	set(c, 17, 17, 3, 0, immU32)   // table.fill

	v := prefixFD[:]
	set(v, 0x00, 0x0a, 1, 1, immMemarg) // v128.load*
	set(v, 0x0b, 0x0b, 2, 0, immMemarg) // v128.store
	set(v, 0x0c, 0x0c, 0, 1, imm16)     // v128.const
	set(v, 0x0d, 0x0d, 2, 1, imm16)     // i8x16.shuffle
	set(v, 0x0e, 0x0e, 2, 1, immNone)   // i8x16.swizzle
	set(v, 0x0f, 0x14, 1, 1, immNone)   // splats
	for _, op := range []int{0x15, 0x16, 0x18, 0x19, 0x1b, 0x1d, 0x1f, 0x21} {
		set(v, op, op, 1, 1, immLaneIdx) // extract_lane
	}
	for _, op := range []int{0x17, 0x1a, 0x1c, 0x1e, 0x20, 0x22} {
		set(v, op, op, 2, 1, immLaneIdx) // replace_lane
	}
	set(v, 0x23, 0x4c, 2, 1, immNone)   // comparisons
	set(v, 0x4d, 0x4d, 1, 1, immNone)   // v128.not
	set(v, 0x4e, 0x51, 2, 1, immNone)   // and andnot or xor
	set(v, 0x52, 0x52, 3, 1, immNone)   // bitselect
	set(v, 0x53, 0x53, 1, 1, immNone)   // any_true
	set(v, 0x54, 0x57, 2, 1, immLane)   // load lane
	set(v, 0x58, 0x5b, 2, 0, immLane)   // store lane
	set(v, 0x5c, 0x5d, 1, 1, immMemarg) // load zero
	set(v, 0x5e, 0x64, 1, 1, immNone)   // demote promote abs neg popcnt all_true bitmask
	set(v, 0x65, 0x66, 2, 1, immNone)   // narrow
	set(v, 0x67, 0x6a, 1, 1, immNone)   // f32x4 rounding
	set(v, 0x6b, 0x73, 2, 1, immNone)   // i8x16 shifts, add, sub
	set(v, 0x74, 0x75, 1, 1, immNone)   // f64x2 ceil floor
	set(v, 0x76, 0x79, 2, 1, immNone)   // i8x16 min max
	set(v, 0x7a, 0x7a, 1, 1, immNone)   // f64x2.trunc
	set(v, 0x7b, 0x7b, 2, 1, immNone)   // i8x16.avgr_u
	set(v, 0x7c, 0x81, 1, 1, immNone)   // extadd_pairwise, i16x8 abs neg
	set(v, 0x82, 0x82, 2, 1, immNone)   // q15mulr_sat_s
	set(v, 0x83, 0x84, 1, 1, immNone)   // all_true bitmask
	set(v, 0x85, 0x86, 2, 1, immNone)   // narrow
	set(v, 0x87, 0x8a, 1, 1, immNone)   // extend
	set(v, 0x8b, 0x93, 2, 1, immNone)   // shifts, add, sub
	set(v, 0x94, 0x94, 1, 1, immNone)   // f64x2.nearest
	set(v, 0x95, 0x99, 2, 1, immNone)   // mul min max
	set(v, 0x9b, 0x9f, 2, 1, immNone)   // avgr_u extmul
	set(v, 0xa0, 0xa1, 1, 1, immNone)   // i32x4 abs neg
	set(v, 0xa3, 0xa4, 1, 1, immNone)   // all_true bitmask
	set(v, 0xa7, 0xaa, 1, 1, immNone)   // extend
	set(v, 0xab, 0xae, 2, 1, immNone)   // shifts add
	set(v, 0xb1, 0xb1, 2, 1, immNone)   // sub
	set(v, 0xb5, 0xba, 2, 1, immNone)   // mul min max dot
	set(v, 0xbc, 0xbf, 2, 1, immNone)   // extmul
	set(v, 0xc0, 0xc1, 1, 1, immNone)   // i64x2 abs neg
	set(v, 0xc3, 0xc4, 1, 1, immNone)   // all_true bitmask
	set(v, 0xc7, 0xca, 1, 1, immNone)   // extend
	set(v, 0xcb, 0xce, 2, 1, immNone)   // shifts add
	set(v, 0xd1, 0xd1, 2, 1, immNone)   // sub
	set(v, 0xd5, 0xdf, 2, 1, immNone)   // mul, comparisons, extmul
	set(v, 0xe0, 0xe1, 1, 1, immNone)   // f32x4 abs neg
	set(v, 0xe3, 0xe3, 1, 1, immNone)   // f32x4.sqrt
	set(v, 0xe4, 0xeb, 2, 1, immNone)   // f32x4 binary
	set(v, 0xec, 0xed, 1, 1, immNone)   // f64x2 abs neg
	set(v, 0xef, 0xef, 1, 1, immNone)   // f64x2.sqrt
	set(v, 0xf0, 0xf7, 2, 1, immNone)   // f64x2 binary
	set(v, 0xf8, 0xff, 1, 1, immNone)   // conversions
}

// unsupported names the opcodes that are refused outright, with the reason.
var unsupported = map[byte]string{
	0x06: "try (legacy exception handling)",
	0x07: "catch (legacy exception handling)",
	0x08: "throw (exception handling)",
	0x09: "rethrow (legacy exception handling)",
	0x0a: "throw_ref (exception handling)",
	0x12: "return_call (tail calls)",
	0x13: "return_call_indirect (tail calls)",
	0x14: "call_ref (typed function references)",
	0x15: "return_call_ref (tail calls)",
	0x18: "delegate (legacy exception handling)",
	0x19: "catch_all (legacy exception handling)",
	0x1f: "try_table (exception handling)",
	0xd3: "ref.as_non_null (typed function references)",
	0xd4: "br_on_null (typed function references)",
	0xd5: "ref.eq (garbage collection)",
	0xd6: "br_on_non_null (typed function references)",
	0xfb: "0xFB prefix (garbage collection)",
	0xfe: "0xFE prefix (threads)",
}

// errTypedRefs is wrapped, with ErrUnsupported, by the errors of
// Instrument for a module that writes a type in an encoding of the typed
// function references, garbage collection or exception handling proposals:
// (ref null ht) and (ref ht) (0x63 and 0x64 and a heap type), exnref
// (0x69), a rec group (0x4e), an imported table with an initializer (0x40).
// wazero's decoder accepts them even with its default features, but its
// compiler does not always: a typed select of (ref null func), written
// 0x1C 0x01 0x63 0x70, passes validation and makes wazero v1.12.0's
// compiler panic with an index out of range.
var errTypedRefs = errors.New("a type encoding of the typed function references, GC or exception handling proposals")

// errWazeroEncoding is wrapped, with ErrUnsupported, by the errors of
// Instrument for an instruction encoding that the specification allows
// but wazero reads differently, so that its instructions would not be the
// ones Instrument accounted for: a 0xFD sub-opcode in other than its
// shortest LEB128 encoding.
var errWazeroEncoding = errors.New("an encoding wazero reads differently")

// isTypedRef reports whether a value type starts with b, a prefix or type
// of errTypedRefs.
func isTypedRef(b byte) bool { return b == refNullable || b == refNonNullable || b == valExnref }

// typedRefError returns an error wrapping ErrUnsupported and errTypedRefs.
func typedRefError(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrUnsupported, errTypedRefs, fmt.Sprintf(format, args...))
}

// Value types. Only the single-byte types of WebAssembly 2.0 are accepted.
const (
	valI32       = 0x7f
	valI64       = 0x7e
	valF32       = 0x7d
	valF64       = 0x7c
	valV128      = 0x7b
	valFuncref   = 0x70
	valExternref = 0x6f
)

func validValType(t byte) bool {
	switch t {
	case valI32, valI64, valF32, valF64, valV128, valFuncref, valExternref:
		return true
	}
	return false
}

// slots is what one value of type t takes on wazero's native stack, in
// 8-byte slots.
func slots(t byte) uint64 {
	if t == valV128 {
		return 2
	}
	return 1
}
