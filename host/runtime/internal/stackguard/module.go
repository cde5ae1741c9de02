package stackguard

import (
	"bytes"
	"errors"
	"fmt"
)

// funcSig is a function type reduced to what the rewrite needs.
type funcSig struct {
	params, results         int
	paramSlots, resultSlots uint64
	resultTypes             []byte
	v128                    bool // a parameter or result is a v128
}

// module is what Instrument learns about a module before rewriting it.
type module struct {
	types   []funcSig
	funcs   []uint32 // type index of every function, imported ones first
	globals []byte   // value type of every global, imported ones first
	nImport uint32   // imported functions
	counter uint32   // index of the counter global that Instrument adds
	stop    uint32   // index of the stop flag global that Instrument adds
	tick    uint32   // index of the call countdown global that Instrument adds
}

type section struct {
	id      byte
	raw     []byte // the whole section, header included
	payload []byte
}

// Section ids and their required order (custom sections aside).
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secCode     = 10
)

// sectionRank is the place of each non-custom section id in the order the
// binary format requires: type, import, function, table, memory, tag,
// global, export, start, element, data count, code, data. Zero marks an
// unknown id.
var sectionRank = [14]int{
	1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13,
}

// options are knobs for the tests.
type options struct {
	// strict makes the stack-height analysis fail on operand stack
	// underflow or a block that leaves the wrong number of values in
	// reachable code, which only a wrong stack effect table can cause in
	// a module wazero accepts.
	strict bool
	// exportCounter, if set, exports the counter global under this name.
	exportCounter string
	// exportPeak, if set, adds a global that records the highest value
	// the counter reached and exports it under this name.
	exportPeak string
	// costs, if set, receives the cost of every defined function.
	costs *[]uint64
}

var header = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

func instrument(wasm []byte, budget uint32, opt options) ([]byte, error) {
	if budget > MaxBudget {
		return nil, fmt.Errorf("stackguard: budget %d is above the maximum %d", budget, MaxBudget)
	}
	if err := Check(wasm); err != nil {
		return nil, err
	}
	var secs []section
	seen := map[byte]bool{}
	r := reader{b: wasm, pos: 8}
	for !r.eof() {
		start := r.pos
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("stackguard: section at offset %d: %w", start, err)
		}
		payload, err := r.bytes(uint64(size))
		if err != nil {
			return nil, fmt.Errorf("stackguard: section %d at offset %d runs past the end of the module", id, start)
		}
		if int(id) >= len(sectionRank) || (id != secCustom && sectionRank[id] == 0) {
			return nil, fmt.Errorf("stackguard: unknown section id %d at offset %d", id, start)
		}
		if id != secCustom {
			if seen[id] {
				return nil, fmt.Errorf("stackguard: duplicate section id %d at offset %d", id, start)
			}
			seen[id] = true
		}
		secs = append(secs, section{id: id, raw: wasm[start:r.pos], payload: payload})
	}

	m := &module{}
	var typeSec, globalSec, codeSec, exportSec, startSec *section
	for i := range secs {
		s := &secs[i]
		var err error
		switch s.id {
		case secType:
			typeSec = s
			err = m.parseTypes(s.payload)
		case secImport:
			err = m.parseImports(s.payload)
		case secFunction:
			err = m.parseFunctions(s.payload)
		case secGlobal:
			globalSec = s
			err = m.parseGlobals(s.payload)
		case secExport:
			exportSec = s
			err = checkReserved(s.payload)
		case secStart:
			startSec = s
		case secCode:
			codeSec = s
		}
		if err != nil {
			return nil, fmt.Errorf("stackguard: section %d: %w", s.id, err)
		}
	}
	nDefined := len(m.funcs) - int(m.nImport)
	if nDefined == 0 && codeSec == nil {
		return bytes.Clone(wasm), nil
	}
	if codeSec == nil {
		return nil, fmt.Errorf("stackguard: %d functions are declared but the code section is missing", nDefined)
	}
	m.counter = uint32(len(m.globals))
	m.stop = m.counter + 1
	if opt.exportPeak != "" {
		m.stop++ // the peak is right after the counter
	}
	m.tick = m.stop + 1

	// The wrapper block of a function with several results needs a type
	// [] -> [results]; append the ones the type section lacks.
	var newTypes []byte
	nNewTypes := 0
	wrapper := map[string][]byte{}
	blockType := func(s *funcSig) []byte {
		switch len(s.resultTypes) {
		case 0:
			return []byte{0x40}
		case 1:
			return s.resultTypes
		}
		key := string(s.resultTypes)
		if bt, ok := wrapper[key]; ok {
			return bt
		}
		idx := -1
		for i := range m.types {
			if t := &m.types[i]; t.params == 0 && bytes.Equal(t.resultTypes, s.resultTypes) {
				idx = i
				break
			}
		}
		if idx < 0 {
			idx = len(m.types) + nNewTypes
			nNewTypes++
			newTypes = append(newTypes, 0x60, 0x00)
			newTypes = appendULEB(newTypes, uint64(len(s.resultTypes)))
			newTypes = append(newTypes, s.resultTypes...)
		}
		bt := appendSLEB(nil, int64(idx))
		wrapper[key] = bt
		return bt
	}

	cr := reader{b: codeSec.payload}
	n, err := cr.u32()
	if err != nil {
		return nil, fmt.Errorf("stackguard: code section: %w", err)
	}
	if int64(n) != int64(nDefined) {
		return nil, fmt.Errorf("stackguard: the code section has %d bodies for %d declared functions", n, nDefined)
	}
	code := appendULEB(make([]byte, 0, len(codeSec.payload)+len(codeSec.payload)/16+64), uint64(n))
	for i := range n {
		fn := m.nImport + i
		size, err := cr.u32()
		if err != nil {
			return nil, fmt.Errorf("stackguard: function %d: %w", fn, err)
		}
		body, err := cr.bytes(uint64(size))
		if err != nil {
			return nil, fmt.Errorf("stackguard: function %d: body runs past the code section", fn)
		}
		sig := &m.types[m.funcs[fn]]
		nb, cost, err := m.instrumentBody(fn, sig, blockType(sig), body, budget, opt)
		if err != nil {
			if errors.Is(err, ErrUnsupported) {
				return nil, err
			}
			return nil, fmt.Errorf("stackguard: %w", err)
		}
		if opt.costs != nil {
			*opt.costs = append(*opt.costs, cost)
		}
		code = appendULEB(code, uint64(len(nb)))
		code = append(code, nb...)
	}
	if !cr.eof() {
		return nil, fmt.Errorf("stackguard: %d bytes after the last function body", len(cr.b)-cr.pos)
	}

	// The counter, the peak if asked for, the stop flag and the call
	// countdown, each (global (mut i32) (i32.const 0)), after every other
	// global.
	counter := []byte{valI32, 0x01, 0x41, 0x00, 0x0b}
	added := uint64(m.tick-m.counter) + 1
	var globals []byte
	if globalSec != nil {
		gr := reader{b: globalSec.payload}
		cnt, _ := gr.u32() // parsed before
		globals = appendULEB(nil, uint64(cnt)+added)
		globals = append(globals, globalSec.payload[gr.pos:]...)
	} else {
		globals = appendULEB(nil, added)
	}
	for range added {
		globals = append(globals, counter...)
	}

	var exports []byte
	type export struct {
		name string
		idx  uint32
	}
	extra := []export{{StopExport, m.stop}}
	var startExport []byte // the start function, exported instead of run at instantiation
	if startSec != nil {
		sr := reader{b: startSec.payload}
		fn, err := sr.u32()
		if err != nil || !sr.eof() {
			return nil, fmt.Errorf("stackguard: malformed start section")
		}
		startExport = appendULEB(appendName(nil, StartExport), 0)
		startExport = appendULEB(startExport, uint64(fn))
	}
	if opt.exportCounter != "" {
		extra = append(extra, export{opt.exportCounter, m.counter})
	}
	if opt.exportPeak != "" {
		extra = append(extra, export{opt.exportPeak, m.counter + 1})
	}
	{
		var cnt uint32
		var rest []byte
		if exportSec != nil {
			er := reader{b: exportSec.payload}
			cnt, err = er.u32()
			if err != nil {
				return nil, fmt.Errorf("stackguard: export section: %w", err)
			}
			rest = exportSec.payload[er.pos:]
		}
		n := uint64(cnt) + uint64(len(extra))
		if startExport != nil {
			n++
		}
		exports = appendULEB(nil, n)
		exports = append(exports, rest...)
		exports = append(exports, startExport...)
		for _, e := range extra {
			exports = appendName(exports, e.name)
			exports = append(exports, 0x03)
			exports = appendULEB(exports, uint64(e.idx))
		}
	}

	out := make([]byte, 0, len(wasm)+len(code)-len(codeSec.payload)+len(newTypes)+64)
	out = append(out, header...)
	addedGlobals, addedExports := false, false
	for i := range secs {
		s := &secs[i]
		if s.id != secCustom {
			rank := sectionRank[s.id]
			if globalSec == nil && !addedGlobals && rank > sectionRank[secGlobal] {
				out = appendSection(out, secGlobal, globals)
				addedGlobals = true
			}
			if exportSec == nil && !addedExports && rank > sectionRank[secExport] {
				out = appendSection(out, secExport, exports)
				addedExports = true
			}
		}
		switch s.id {
		case secCustom:
			if isDebugSection(s.payload) {
				continue // DWARF addresses code offsets that moved
			}
			out = append(out, s.raw...)
		case secType:
			if nNewTypes == 0 {
				out = append(out, s.raw...)
				continue
			}
			tr := reader{b: typeSec.payload}
			cnt, _ := tr.u32()
			p := appendULEB(nil, uint64(cnt)+uint64(nNewTypes))
			p = append(p, typeSec.payload[tr.pos:]...)
			p = append(p, newTypes...)
			out = appendSection(out, secType, p)
		case secGlobal:
			out = appendSection(out, secGlobal, globals)
			addedGlobals = true
		case secExport:
			out = appendSection(out, secExport, exports)
			addedExports = true
		case secStart:
			continue // exported as StartExport
		case secCode:
			out = appendSection(out, secCode, code)
		default:
			out = append(out, s.raw...)
		}
	}
	return out, nil
}

// isDebugSection reports whether a custom section's name starts with
// ".debug_" (DWARF).
func isDebugSection(payload []byte) bool {
	r := reader{b: payload}
	name, err := r.name()
	return err == nil && bytes.HasPrefix(name, []byte(".debug_"))
}

func (m *module) parseTypes(p []byte) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := range n {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form == typeRecGroup {
			return typedRefError("type %d is a rec group", i)
		}
		if form != 0x60 {
			return fmt.Errorf("%w: type %d has form %#x (only function types of WebAssembly 2.0 are supported)", ErrUnsupported, i, form)
		}
		var s funcSig
		for k := range 2 {
			cnt, err := r.u32()
			if err != nil {
				return err
			}
			ts, err := r.bytes(uint64(cnt))
			if err != nil {
				return err
			}
			var sl uint64
			for _, t := range ts {
				if isTypedRef(t) {
					return typedRefError("type %d uses value type %#x", i, t)
				}
				if !validValType(t) {
					return fmt.Errorf("%w: type %d uses value type %#x", ErrUnsupported, i, t)
				}
				sl += slots(t)
				if t == valV128 {
					s.v128 = true
				}
			}
			if k == 0 {
				s.params, s.paramSlots = len(ts), sl
			} else {
				s.results, s.resultSlots, s.resultTypes = len(ts), sl, ts
			}
		}
		m.types = append(m.types, s)
	}
	if !r.eof() {
		return errors.New("bytes after the last type")
	}
	return nil
}

func (m *module) typeIndex(r *reader) (uint32, error) {
	t, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(t) >= uint64(len(m.types)) {
		return 0, fmt.Errorf("type index %d out of range", t)
	}
	return t, nil
}

func skipLimits(r *reader) error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.uleb(64); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err = r.uleb(64)
	}
	return err
}

func (m *module) parseImports(p []byte) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for range n {
		if _, err := r.name(); err != nil {
			return err
		}
		if _, err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // function
			t, err := m.typeIndex(&r)
			if err != nil {
				return err
			}
			m.funcs = append(m.funcs, t)
			m.nImport++
		case 0x01: // table
			t, err := r.byte()
			if err != nil {
				return err
			}
			if t == 0x40 || isTypedRef(t) {
				return typedRefError("an imported table has type %#x", t)
			}
			if err := skipLimits(&r); err != nil {
				return err
			}
		case 0x02: // memory
			if err := skipLimits(&r); err != nil {
				return err
			}
		case 0x03: // global
			t, err := r.byte()
			if err != nil {
				return err
			}
			if isTypedRef(t) {
				return typedRefError("an imported global has type %#x", t)
			}
			if _, err := r.byte(); err != nil {
				return err
			}
			m.globals = append(m.globals, t)
		case 0x04: // tag
			if _, err := r.byte(); err != nil {
				return err
			}
			if _, err := m.typeIndex(&r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown import kind %#x", kind)
		}
	}
	if !r.eof() {
		return errors.New("bytes after the last import")
	}
	return nil
}

func (m *module) parseFunctions(p []byte) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for range n {
		t, err := m.typeIndex(&r)
		if err != nil {
			return err
		}
		m.funcs = append(m.funcs, t)
	}
	if !r.eof() {
		return errors.New("bytes after the last function")
	}
	return nil
}

func (m *module) parseGlobals(p []byte) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := range n {
		t, err := r.byte()
		if err != nil {
			return err
		}
		if isTypedRef(t) {
			return typedRefError("global %d has type %#x", i, t)
		}
		if _, err := r.byte(); err != nil { // mutability
			return err
		}
		// Check accepted the module, so its initializer decodes the same.
		if err := checkConstExpr(&r); err != nil {
			return err
		}
		m.globals = append(m.globals, t)
	}
	if !r.eof() {
		return errors.New("bytes after the last global")
	}
	return nil
}

// appendName appends a name (its byte length, then its bytes).
func appendName(b []byte, name string) []byte {
	b = appendULEB(b, uint64(len(name)))
	return append(b, name...)
}

// checkReserved refuses an export section that already uses StopExport or
// StartExport, the names Instrument adds.
func checkReserved(p []byte) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for range n {
		name, err := r.name()
		if err != nil {
			return err
		}
		if string(name) == StopExport || string(name) == StartExport {
			return fmt.Errorf("%w: the module exports %q, a name the stack guard reserves", ErrUnsupported, name)
		}
		if _, err := r.byte(); err != nil {
			return err
		}
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}
