package stackguard

import (
	"fmt"
)

// ctrl is one open block, loop or if of a function body (or the function
// itself, at the bottom of the stack).
type ctrl struct {
	base        int // operand stack height below the block's parameters
	params      int
	results     int
	isIf        bool
	unreachable bool // the rest of the block cannot be reached
}

// bodyStats is what the analysis of a body learned about its frame.
type bodyStats struct {
	localSlots uint64 // declared locals, in slots
	maxHeight  int    // most operand stack values alive at once
	callSlots  uint64 // largest call-site area (see cost)
	v128       bool   // a v128 value can be on the operand stack
	returns    int    // return instructions rewritten
}

// cost is the frame cost of a function in slots. See the package doc.
func (s *bodyStats) cost(sig *funcSig) uint64 {
	w := uint64(1)
	if s.v128 || sig.v128 {
		w = 2
	}
	return FrameOverhead + sig.paramSlots + s.localSlots + w*uint64(s.maxHeight) + s.callSlots
}

// funcBody rewrites one function body. It decodes every instruction,
// computes the operand stack height, replaces return with a branch to the
// wrapper block, and wraps the code in the prologue and epilogue.
type funcBody struct {
	m      *module
	fn     uint32 // function index, for errors
	sig    *funcSig
	strict bool

	r     reader
	ctrls []ctrl
	h     int
	stats bodyStats
	out   []byte // the rewritten instructions, up to the last copied byte
	last  int    // offset in r.b up to which the input was copied to out
}

func (f *funcBody) errorf(format string, args ...any) error {
	return fmt.Errorf("function %d, code offset %d: %s", f.fn, f.r.pos, fmt.Sprintf(format, args...))
}

func (f *funcBody) push(n int) {
	f.h += n
	if f.h > f.stats.maxHeight {
		f.stats.maxHeight = f.h
	}
}

func (f *funcBody) pop(n int) error {
	top := &f.ctrls[len(f.ctrls)-1]
	f.h -= n
	if f.h < top.base {
		if f.strict && !top.unreachable {
			return f.errorf("operand stack underflow")
		}
		f.h = top.base
	}
	return nil
}

// setUnreachable marks the rest of the current block as unreachable, after
// an unconditional branch: its stack is polymorphic.
func (f *funcBody) setUnreachable() {
	top := &f.ctrls[len(f.ctrls)-1]
	f.h = top.base
	top.unreachable = true
}

// blockType reads a block type: 0x40, a value type, or a type index (s33).
func (f *funcBody) blockType() (params, results int, err error) {
	v, err := f.r.sleb(33)
	if err != nil {
		return 0, 0, err
	}
	if v < 0 {
		if v == -0x40 { // 0x40: empty
			return 0, 0, nil
		}
		if t := byte(v & 0x7f); v >= -0x40 && isTypedRef(t) {
			return 0, 0, typedRefError("function %d, code offset %d: block type %#x", f.fn, f.r.pos, t)
		}
		t := byte(v & 0x7f)
		if v < -0x40 || !validValType(t) {
			return 0, 0, f.errorf("invalid block type %#x", t)
		}
		if t == valV128 {
			f.stats.v128 = true
		}
		return 0, 1, nil
	}
	if v >= int64(len(f.m.types)) {
		return 0, 0, f.errorf("block type index %d out of range", v)
	}
	t := &f.m.types[v]
	f.stats.v128 = f.stats.v128 || t.v128
	return t.params, t.results, nil
}

// memarg skips a memory argument: alignment flags, an optional memory
// index (multi-memory sets bit 6 of the flags), and the offset.
func (f *funcBody) memarg() error {
	a, err := f.r.u32()
	if err != nil {
		return err
	}
	if a&0x40 != 0 {
		if _, err := f.r.u32(); err != nil {
			return err
		}
	}
	_, err = f.r.uleb(64)
	return err
}

func (f *funcBody) imm(kind uint8) error {
	switch kind {
	case immNone:
		return nil
	case immU32:
		_, err := f.r.u32()
		return err
	case immU32x2:
		if _, err := f.r.u32(); err != nil {
			return err
		}
		_, err := f.r.u32()
		return err
	case immMemarg:
		return f.memarg()
	case immLane:
		if err := f.memarg(); err != nil {
			return err
		}
		return f.r.skip(1)
	case immLaneIdx:
		return f.r.skip(1)
	case imm16:
		return f.r.skip(16)
	}
	return f.errorf("internal error: immediate kind %d", kind)
}

func (f *funcBody) apply(e effect) error {
	if err := f.imm(e.imm); err != nil {
		return err
	}
	if err := f.pop(int(e.pop)); err != nil {
		return err
	}
	f.push(int(e.push))
	return nil
}

// call accounts for a call to a function of signature s: its operands, its
// results and the area the caller reserves for them.
func (f *funcBody) call(s *funcSig) error {
	if err := f.pop(s.params); err != nil {
		return err
	}
	f.push(s.results)
	if s.v128 {
		f.stats.v128 = true
	}
	area := max(s.paramSlots, s.resultSlots) + callOverhead
	f.stats.callSlots = max(f.stats.callSlots, area)
	return nil
}

// run decodes the instructions of the body, from the current position to
// the function's final end.
func (f *funcBody) run() error {
	f.ctrls = append(f.ctrls[:0], ctrl{results: f.sig.results})
	r := &f.r
	for {
		if r.eof() {
			return f.errorf("function body ends before its final end")
		}
		start := r.pos
		op := r.b[r.pos]
		r.pos++
		if e := plain[op]; e.ok {
			if err := f.apply(e); err != nil {
				return err
			}
			continue
		}
		switch op {
		case 0x00: // unreachable
			f.setUnreachable()
		case 0x02, 0x03, 0x04: // block, loop, if
			if op == 0x04 {
				if err := f.pop(1); err != nil {
					return err
				}
			}
			p, res, err := f.blockType()
			if err != nil {
				return err
			}
			if err := f.pop(p); err != nil {
				return err
			}
			f.ctrls = append(f.ctrls, ctrl{base: f.h, params: p, results: res, isIf: op == 0x04})
			f.push(p)
			if op == 0x03 {
				// Every iteration starts with: if stop { unreachable }.
				f.out = append(f.out, r.b[f.last:r.pos]...)
				f.out = append(f.out, 0x23)
				f.out = appendULEB(f.out, uint64(f.m.stop))
				f.out = append(f.out, 0x04, 0x40, 0x00, 0x0b)
				f.last = r.pos
				f.push(1) // the flag, on the stack for a moment
				f.h--
			}
		case 0x05: // else
			top := &f.ctrls[len(f.ctrls)-1]
			if len(f.ctrls) == 1 || !top.isIf {
				return f.errorf("else outside if")
			}
			if f.strict && !top.unreachable && f.h != top.base+top.results {
				return f.errorf("if branch leaves %d values, want %d", f.h-top.base, top.results)
			}
			top.isIf = false
			top.unreachable = false
			f.h = top.base
			f.push(top.params)
		case 0x0b: // end
			top := f.ctrls[len(f.ctrls)-1]
			if f.strict && !top.unreachable && f.h != top.base+top.results {
				return f.errorf("block leaves %d values, want %d", f.h-top.base, top.results)
			}
			f.ctrls = f.ctrls[:len(f.ctrls)-1]
			f.h = top.base
			f.push(top.results)
			if len(f.ctrls) == 0 {
				if !r.eof() {
					return f.errorf("%d bytes after the function's final end", len(r.b)-r.pos)
				}
				f.out = append(f.out, r.b[f.last:]...)
				f.last = len(r.b)
				return nil
			}
		case 0x0c: // br
			if _, err := r.u32(); err != nil {
				return err
			}
			f.setUnreachable()
		case 0x0d: // br_if
			if _, err := r.u32(); err != nil {
				return err
			}
			if err := f.pop(1); err != nil {
				return err
			}
		case 0x0e: // br_table
			n, err := r.u32()
			if err != nil {
				return err
			}
			for i := uint64(0); i <= uint64(n); i++ {
				if _, err := r.u32(); err != nil {
					return err
				}
			}
			if err := f.pop(1); err != nil {
				return err
			}
			f.setUnreachable()
		case 0x0f: // return: a branch to the wrapper block, whose end runs the epilogue
			f.out = append(f.out, r.b[f.last:start]...)
			f.out = append(f.out, 0x0c)
			f.out = appendULEB(f.out, uint64(len(f.ctrls)-1))
			f.last = r.pos
			f.stats.returns++
			f.setUnreachable()
		case 0x10: // call
			idx, err := r.u32()
			if err != nil {
				return err
			}
			if uint64(idx) >= uint64(len(f.m.funcs)) {
				return f.errorf("call to function %d out of range", idx)
			}
			if err := f.call(&f.m.types[f.m.funcs[idx]]); err != nil {
				return err
			}
		case 0x11: // call_indirect
			t, err := r.u32()
			if err != nil {
				return err
			}
			if _, err := r.u32(); err != nil { // table
				return err
			}
			if uint64(t) >= uint64(len(f.m.types)) {
				return f.errorf("call_indirect type %d out of range", t)
			}
			if err := f.pop(1); err != nil {
				return err
			}
			if err := f.call(&f.m.types[t]); err != nil {
				return err
			}
		case 0x1c: // select with types
			n, err := r.u32()
			if err != nil {
				return err
			}
			for range n {
				t, err := r.byte()
				if err != nil {
					return err
				}
				if isTypedRef(t) {
					return typedRefError("function %d, code offset %d: select of type %#x", f.fn, r.pos, t)
				}
				if !validValType(t) {
					return f.errorf("invalid value type %#x in select", t)
				}
				if t == valV128 {
					f.stats.v128 = true
				}
			}
			if err := f.pop(3); err != nil {
				return err
			}
			f.push(1)
		case 0x23: // global.get
			idx, err := r.u32()
			if err != nil {
				return err
			}
			if uint64(idx) >= uint64(len(f.m.globals)) {
				return f.errorf("global %d out of range", idx)
			}
			if f.m.globals[idx] == valV128 {
				f.stats.v128 = true
			}
			f.push(1)
		case 0x41:
			if _, err := r.sleb(32); err != nil {
				return err
			}
			f.push(1)
		case 0x42:
			if _, err := r.sleb(64); err != nil {
				return err
			}
			f.push(1)
		case 0x43:
			if err := r.skip(4); err != nil {
				return err
			}
			f.push(1)
		case 0x44:
			if err := r.skip(8); err != nil {
				return err
			}
			f.push(1)
		case 0xd0: // ref.null
			t, err := r.byte()
			if err != nil {
				return err
			}
			if t != valFuncref && t != valExternref {
				return typedRefError("function %d, code offset %d: ref.null of heap type %#x", f.fn, r.pos, t)
			}
			f.push(1)
		case 0xfc:
			sub, err := r.u32()
			if err != nil {
				return err
			}
			if int(sub) >= len(prefixFC) || !prefixFC[sub].ok {
				return fmt.Errorf("%w: function %d: opcode 0xFC %d", ErrUnsupported, f.fn, sub)
			}
			if err := f.apply(prefixFC[sub]); err != nil {
				return err
			}
		case 0xfd:
			// wazero reads the sub-opcode as one byte, and the second byte
			// of one above 127 as the next instruction: a nop when it is
			// 0x01, as in the shortest encoding. Any other encoding
			// (0x8E 0x00 for 14, say) wazero reads as other instructions.
			sub, err := r.u32()
			if err != nil {
				return err
			}
			if b := r.b[start+1]; b >= 0x80 && (r.pos-start != 3 || sub != uint32(b)) {
				return fmt.Errorf("%w: %w: function %d: opcode 0xFD %d written in %d bytes at code offset %d", ErrUnsupported, errWazeroEncoding, f.fn, sub, r.pos-start-1, start)
			}
			if int(sub) >= len(prefixFD) || !prefixFD[sub].ok {
				return fmt.Errorf("%w: function %d: opcode 0xFD %d", ErrUnsupported, f.fn, sub)
			}
			f.stats.v128 = true
			if err := f.apply(prefixFD[sub]); err != nil {
				return err
			}
		default:
			if why, ok := unsupported[op]; ok {
				return fmt.Errorf("%w: function %d uses %s", ErrUnsupported, f.fn, why)
			}
			return fmt.Errorf("%w: function %d: unknown opcode %#x at code offset %d", ErrUnsupported, f.fn, op, start)
		}
	}
}

// instrumentBody rewrites the body of function fn (its locals and
// expression, without the size prefix) and returns the new body and its cost.
func (m *module) instrumentBody(fn uint32, sig *funcSig, blockType, body []byte, budget uint32, opt options) ([]byte, uint64, error) {
	f := &funcBody{m: m, fn: fn, sig: sig, strict: opt.strict, r: reader{b: body}}
	n, err := f.r.u32()
	if err != nil {
		return nil, 0, fmt.Errorf("function %d: locals: %w", fn, err)
	}
	for range n {
		c, err := f.r.u32()
		if err != nil {
			return nil, 0, fmt.Errorf("function %d: locals: %w", fn, err)
		}
		t, err := f.r.byte()
		if err != nil {
			return nil, 0, fmt.Errorf("function %d: locals: %w", fn, err)
		}
		if isTypedRef(t) {
			return nil, 0, typedRefError("function %d: local of type %#x", fn, t)
		}
		if !validValType(t) {
			return nil, 0, fmt.Errorf("function %d: local of unsupported type %#x", fn, t)
		}
		if t == valV128 {
			f.stats.v128 = true
		}
		f.stats.localSlots += uint64(c) * slots(t)
	}
	localsEnd := f.r.pos
	f.last = localsEnd
	f.out = make([]byte, 0, len(body)+64)
	if err := f.run(); err != nil {
		return nil, 0, err
	}

	cost := f.stats.cost(sig)
	if cost > uint64(budget) {
		// The function can never run: any larger cost traps the same way,
		// and this one keeps the counter from wrapping around.
		cost = uint64(budget) + 1
	}
	g := uint64(m.counter)
	b := make([]byte, 0, len(body)+80+f.stats.returns)
	b = append(b, body[:localsEnd]...)
	// Prologue: counter += cost; if counter > budget | stop { unreachable }.
	b = append(b, 0x23)
	b = appendULEB(b, g)
	b = append(b, 0x41)
	b = appendSLEB(b, int64(int32(uint32(cost))))
	b = append(b, 0x6a, 0x24)
	b = appendULEB(b, g)
	b = append(b, 0x23)
	b = appendULEB(b, g)
	b = append(b, 0x41)
	b = appendSLEB(b, int64(int32(budget)))
	b = append(b, 0x4b, 0x23)
	b = appendULEB(b, uint64(m.stop))
	b = append(b, 0x72, 0x04, 0x40, 0x00, 0x0b)
	// Every CheckEvery calls: if tick == 0 { tick = CheckEvery; loop end }
	// else { tick -= 1 }. Entering a loop is where wazero checks for a
	// closed module (WithCloseOnContextDone) by a call out to Go, which
	// is also where Go's garbage collector can stop the goroutine: so a
	// guest that recurses without a loop is still stopped at its deadline
	// and never holds up the rest of the host.
	t := uint64(m.tick)
	b = append(b, 0x23)
	b = appendULEB(b, t)
	b = append(b, 0x45, 0x04, 0x40, 0x41)
	b = appendSLEB(b, CheckEvery)
	b = append(b, 0x24)
	b = appendULEB(b, t)
	b = append(b, 0x03, 0x40, 0x0b, 0x05, 0x23)
	b = appendULEB(b, t)
	b = append(b, 0x41, 0x01, 0x6b, 0x24)
	b = appendULEB(b, t)
	b = append(b, 0x0b)
	if opt.exportPeak != "" {
		// if counter > peak { peak = counter }
		p := g + 1
		b = append(b, 0x23)
		b = appendULEB(b, g)
		b = append(b, 0x23)
		b = appendULEB(b, p)
		b = append(b, 0x4b, 0x04, 0x40, 0x23)
		b = appendULEB(b, g)
		b = append(b, 0x24)
		b = appendULEB(b, p)
		b = append(b, 0x0b)
	}
	// The wrapper block; the original final end closes it.
	b = append(b, 0x02)
	b = append(b, blockType...)
	b = append(b, f.out...)
	// Epilogue: counter -= cost.
	b = append(b, 0x23)
	b = appendULEB(b, g)
	b = append(b, 0x41)
	b = appendSLEB(b, int64(int32(uint32(cost))))
	b = append(b, 0x6b, 0x24)
	b = appendULEB(b, g)
	b = append(b, 0x0b)
	return b, cost, nil
}
