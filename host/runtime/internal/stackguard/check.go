package stackguard

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits of [Check] on declared locals. Every local of a function is a
// wasm.ValueType of 8 bytes in wazero's decoded module (its LocalTypes),
// kept for the life of the compiled module, and one SSA variable, one zero
// constant and one entry of every per-local table while it is compiled;
// yet a run of n locals takes one LEB128 number of at most 5 bytes.
const (
	// MaxFunctionLocals is the most locals one function may declare: the
	// limit of the WebAssembly JS API (which counts the parameters too),
	// enforced by V8, SpiderMonkey and JavaScriptCore. Real plugins stay
	// far below: the Go plugins declare at most 20 in one function, the
	// Rust ones at most 39.
	MaxFunctionLocals = 50_000
	// MaxModuleLocals is the most locals all the functions of a module may
	// declare together: 8 MiB of LocalTypes in wazero. Without it, 7-byte
	// bodies that each declare MaxFunctionLocals would make wazero keep
	// 57,000 times the module's size. The Go plugins (4 MB) declare about
	// 11,000 locals in all, the Rust ones (200 kB) about 1,800.
	MaxModuleLocals = 1 << 20
)

// errTooManyLocals is wrapped by the errors of Check for a function or a
// module over MaxFunctionLocals or MaxModuleLocals: the only modules
// wazero's decoder accepts that Check refuses.
var errTooManyLocals = errors.New("too many locals")

// Check reports an error for a module binary whose declared counts and
// lengths cannot be honest, before it is given to wazero: [Instrument]
// calls it first, and a caller that compiles a module without instrumenting
// it must call it itself.
//
// wazero's decoder (internal/wasm/binary) allocates every vector by the
// count the module declares before it reads a single element, and every
// byte string by its declared length, so a 14-byte module declaring 2^27
// imports makes CompileModule allocate 14 GiB, and larger counts kill the
// host with a fatal out-of-memory error. Check decodes the module the way
// wazero does, without allocating by any declared number, and refuses it
// unless
//
//   - every section fits in the module, in the order the format requires;
//   - every vector count fits in the bytes left in its section or function
//     body (each element takes at least one byte), and every element is
//     present there; in the "name" section, whose subsections 0 to 2
//     wazero reads without regard to their declared sizes, the bytes left
//     in the section;
//   - every byte-string length (names, data segment contents, code body
//     sizes, subsection sizes) fits in the bytes left;
//   - no function declares more than MaxFunctionLocals locals, and all of
//     them together no more than MaxModuleLocals.
//
// Then what wazero allocates to compile a module is a bounded multiple of
// its size: about 160 bytes a byte of module for the worst shape measured
// (a type section of 3-byte function types, of which wazero keeps 38), and
// under 70 for floods of imports, exports, bodies, data or element
// segments, or names (see TestCheckedAmplification). Check does not
// validate the module: apart from the limits on locals, it refuses only
// modules that wazero's decoder refuses too (TestCheckSpecBinaries and
// FuzzInstrument check it).
//
// Check guards the memory wazero's decoder takes, nothing else. wazero
// v1.12.0 panics on some small invalid modules, which Instrument refuses:
// a call to a function whose type index is out of range (in validation),
// and a typed select of (ref null func) (in the compiler). Check refuses
// the one we know of in the decoder itself: a local of a reference type
// whose heap type runs past the body ("makeslice: len out of range" in
// decodeCode). So wazero should only be given what Instrument returns.
//
// The allocations of wazero v1.12.0's decoder sized by the module, and what
// bounds each here:
//
//	decoder.go   DecodeModule        section payloads: each section fits in the module
//	value.go     decodeUTF8          make([]byte, size): import module and name, export
//	                                 name, custom section name, name-section names
//	value.go     decodeValueTypes    make([]ValueType, 0, num): parameters and results
//	                                 of every function type (rec groups included)
//	section.go   decodeTypeSection   append per type: vector and rec group counts
//	section.go   decodeImportSection make([]Import, vs)
//	section.go   decodeFunctionSection make([]uint32, vs)
//	section.go   decodeTableSection  make([]Table, vs)
//	section.go   decodeGlobalSection make([]Global, vs)
//	section.go   decodeExportSection make(map[string]*Export, vs), make([]Export, vs)
//	section.go   decodeElementSection make([]ElementSegment, vs)
//	element.go   decodeElementInitValueVector, decodeElementConstExprVector
//	                                 make([]ConstantExpression, vs)
//	section.go   decodeCodeSection   make([]Code, vs)
//	code.go      decodeCode          make([]ValueType, 0, sum of locals): the limits on
//	                                 locals; make([]byte, remaining): the body size
//	section.go   decodeDataSection   make([]DataSegment, vs)
//	data.go      decodeDataSegment   make([]byte, vs): the init length
//	section.go   decodeTagSection    make([]Tag, vs)
//	custom.go    decodeCustomSection make([]byte, limit): the section fits
//	names.go     decodeFunctionNames make(NameMap, functionCount)
//	names.go     decodeLocalNames    make(IndirectNameMap, functionCount) and
//	                                 make(NameMap, localCount) for every function
//	const_expr.go decodeConstantExpression make([]byte, bytes read): bounded by the input
//
// The memory section (at most one memory), the start and data count
// sections and limits allocate nothing by a declared number; Check reads
// them all the same so that its walk stays in step with wazero's.
func Check(wasm []byte) error {
	if len(wasm) < 8 || !bytes.Equal(wasm[:8], header) {
		return errors.New("stackguard: not a WebAssembly 1.0 binary module (bad magic or version)")
	}
	c := checker{}
	r := reader{b: wasm, pos: 8}
	lastRank := 0
	for !r.eof() {
		start := r.pos
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("stackguard: section %d at offset %d: size: %w", id, start, err)
		}
		if rem := len(wasm) - r.pos; uint64(size) > uint64(rem) {
			return fmt.Errorf("stackguard: section %d at offset %d declares %d bytes but only %d remain in the module", id, start, size, rem)
		}
		payload, _ := r.bytes(uint64(size))
		if int(id) >= len(sectionRank) || (id != secCustom && sectionRank[id] == 0) {
			return fmt.Errorf("stackguard: unknown section id %d at offset %d", id, start)
		}
		if id != secCustom {
			if sectionRank[id] <= lastRank {
				return fmt.Errorf("stackguard: section %d at offset %d is out of order or repeated", id, start)
			}
			lastRank = sectionRank[id]
		}
		c.sec = sectionNames[id]
		c.last = r.eof()
		if err := c.section(id, payload); err != nil {
			return fmt.Errorf("stackguard: %s section at offset %d: %w", c.sec, start, err)
		}
	}
	return nil
}

var sectionNames = [...]string{
	0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
	7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count", 13: "tag",
}

// Value types and prefixes of wazero's decoder beyond validValType.
const (
	valExnref      = 0x69
	refNullable    = 0x63 // (ref null ht)
	refNonNullable = 0x64 // (ref ht)
	typeRecGroup   = 0x4e
	heapFunc       = -16
	heapExtern     = -17
	heapExn        = -23
	limitsMaxFlag  = 0x01
	limitsFlagsMax = 0x03 // higher limits flags (memory64) are refused
)

// checker walks one module for Check.
type checker struct {
	sec      string // the section being checked, for errors
	last     bool   // the section ends the module
	nameSeen bool   // a "name" custom section was checked
	locals   uint64 // locals declared by the bodies checked so far
}

// count reads a vector count and checks it against the bytes left in r,
// which holds just the section or function body it belongs to.
func count(r *reader, what string) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, fmt.Errorf("count of %s: %w", what, err)
	}
	if rem := len(r.b) - r.pos; uint64(n) > uint64(rem) {
		return 0, fmt.Errorf("%d %s declared but only %d bytes remain", n, what, rem)
	}
	return n, nil
}

// str reads a length-prefixed byte string (a name, data segment contents)
// and checks its length against the bytes left in r.
func str(r *reader, what string) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("length of %s: %w", what, err)
	}
	if rem := len(r.b) - r.pos; uint64(n) > uint64(rem) {
		return nil, fmt.Errorf("%s of %d bytes declared but only %d bytes remain", what, n, rem)
	}
	return r.bytes(uint64(n))
}

func (c *checker) section(id byte, p []byte) error {
	r := &reader{b: p}
	var err error
	switch id {
	case secCustom:
		return c.custom(r)
	case secType:
		err = checkTypes(r)
	case secImport:
		err = checkImports(r)
	case secFunction:
		err = vec(r, "functions", func(int) error { _, err := r.u32(); return err })
	case 4: // table
		err = vec(r, "tables", func(int) error { return checkTable(r) })
	case 5: // memory
		err = vec(r, "memories", func(int) error { return checkLimits(r) })
	case 13: // tag
		err = vec(r, "tags", func(int) error { return checkTag(r) })
	case secGlobal:
		err = vec(r, "globals", func(int) error {
			if err := checkValueType(r); err != nil {
				return err
			}
			if err := checkMutability(r); err != nil {
				return err
			}
			return checkConstExpr(r)
		})
	case secExport:
		err = vec(r, "exports", func(int) error {
			if _, err := str(r, "export name"); err != nil {
				return err
			}
			kind, err := r.byte()
			if err != nil {
				return err
			}
			if kind > 0x04 {
				return fmt.Errorf("unknown export kind %#x", kind)
			}
			_, err = r.u32()
			return err
		})
	case 8: // start
		_, err = r.u32()
	case 9: // element
		err = vec(r, "element segments", func(int) error { return checkElement(r) })
	case 12: // data count
		if c.last && len(p) < 5 && unterminated(p) {
			// wazero takes the end of the module within the count for an
			// absent count: an empty or unterminated count that ends the
			// module passes.
			return nil
		}
		_, err = r.u32()
	case secCode:
		err = c.code(r)
	case 11: // data
		err = vec(r, "data segments", func(int) error { return checkData(r) })
	}
	if err != nil {
		return err
	}
	if !r.eof() {
		return fmt.Errorf("%d bytes after the section's contents", len(r.b)-r.pos)
	}
	return nil
}

// unterminated reports whether every byte of p has the LEB128
// continuation bit.
func unterminated(p []byte) bool {
	for _, b := range p {
		if b < 0x80 {
			return false
		}
	}
	return true
}

// vec reads a vector count, checks it, and calls elem for every element.
func vec(r *reader, what string, elem func(i int) error) error {
	n, err := count(r, what)
	if err != nil {
		return err
	}
	for i := range int(n) {
		if err := elem(i); err != nil {
			return fmt.Errorf("%s[%d]: %w", what, i, err)
		}
	}
	return nil
}

// checkValueType reads a value type as wazero's decodeValueTypes does.
func checkValueType(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	switch b {
	case valI32, valI64, valF32, valF64, valV128, valFuncref, valExternref, valExnref:
		return nil
	case refNullable, refNonNullable:
		return checkHeapType(r)
	}
	return fmt.Errorf("invalid value type %#x", b)
}

// checkHeapType reads the heap type of a reference type (an s33): an
// abstract type or a type index, as wazero's decodeRefType does.
func checkHeapType(r *reader) error {
	ht, err := r.sleb(33)
	if err != nil {
		return fmt.Errorf("heap type: %w", err)
	}
	if ht < 0 && ht != heapFunc && ht != heapExtern && ht != heapExn {
		return fmt.Errorf("unknown abstract heap type %d", ht)
	}
	return nil
}

func checkMutability(r *reader) error {
	m, err := r.byte()
	if err != nil {
		return err
	}
	if m > 1 {
		return fmt.Errorf("invalid mutability %#x", m)
	}
	return nil
}

func checkTypes(r *reader) error {
	funcType := func(i int) error {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("form %#x is not a function type", form)
		}
		for _, what := range []string{"parameters", "results"} {
			if err := vec(r, what, func(int) error { return checkValueType(r) }); err != nil {
				return err
			}
		}
		return nil
	}
	return vec(r, "types", func(i int) error {
		if r.pos < len(r.b) && r.b[r.pos] == typeRecGroup {
			r.pos++
			return vec(r, "types in the rec group", funcType)
		}
		return funcType(i)
	})
}

func checkLimits(r *reader) error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags > limitsFlagsMax {
		return fmt.Errorf("invalid limits flags %#x", flags)
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&limitsMaxFlag != 0 {
		_, err = r.u32()
	}
	return err
}

// checkTable reads a table type, with the initializer expression of the
// function references proposal (prefix 0x40 0x00), as wazero's decodeTable.
func checkTable(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	init := b == 0x40
	if init {
		if z, err := r.byte(); err != nil {
			return err
		} else if z != 0 {
			return fmt.Errorf("byte %#x after table prefix 0x40", z)
		}
		if b, err = r.byte(); err != nil {
			return err
		}
	}
	if b == refNullable || b == refNonNullable {
		if err := checkHeapType(r); err != nil {
			return err
		}
	}
	if err := checkLimits(r); err != nil {
		return err
	}
	if init {
		return checkConstExpr(r)
	}
	return nil
}

func checkTag(r *reader) error {
	attr, err := r.byte()
	if err != nil {
		return err
	}
	if attr != 0 {
		return fmt.Errorf("invalid tag attribute %#x", attr)
	}
	_, err = r.u32()
	return err
}

func checkImports(r *reader) error {
	return vec(r, "imports", func(int) error {
		if _, err := str(r, "import module name"); err != nil {
			return err
		}
		if _, err := str(r, "import name"); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // function
			_, err = r.u32()
		case 0x01:
			err = checkTable(r)
		case 0x02:
			err = checkLimits(r)
		case 0x03:
			if err = checkValueType(r); err == nil {
				err = checkMutability(r)
			}
		case 0x04:
			err = checkTag(r)
		default:
			err = fmt.Errorf("unknown import kind %#x", kind)
		}
		return err
	})
}

// checkConstExpr reads a constant expression as wazero's
// decodeConstantExpression does, up to and including its end.
func checkConstExpr(r *reader) error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b:
			return nil
		case 0x41:
			_, err = r.sleb(32)
		case 0x42:
			_, err = r.sleb(64)
		case 0x43:
			err = r.skip(4)
		case 0x44:
			err = r.skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			_, err = r.u32()
		case 0xd0: // ref.null: an abstract type byte or a type index
			var t byte
			if t, err = r.byte(); err == nil && t != valFuncref && t != valExternref && t != valExnref {
				r.pos--
				_, err = r.u32()
			}
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant expressions
		case 0xfd: // v128.const: wazero reads the sub-opcode as one byte
			var sub byte
			if sub, err = r.byte(); err == nil {
				if sub != 0x0c {
					return fmt.Errorf("opcode 0xFD %#x in a constant expression", sub)
				}
				err = r.skip(16)
			}
		default:
			return fmt.Errorf("opcode %#x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

// checkElement reads an element segment as wazero's decodeElementSegment.
func checkElement(r *reader) error {
	prefix, err := r.u32()
	if err != nil {
		return err
	}
	elemKind := func() error {
		k, err := r.byte()
		if err != nil {
			return err
		}
		if k != 0 {
			return fmt.Errorf("element kind %#x", k)
		}
		return nil
	}
	refType := func() error {
		b, err := r.byte()
		if err != nil {
			return err
		}
		switch b {
		case refNullable, refNonNullable:
			return checkHeapType(r)
		case valFuncref, valExternref:
			return nil
		}
		return fmt.Errorf("invalid element reference type %#x", b)
	}
	funcs := func() error {
		return vec(r, "function indices", func(int) error { _, err := r.u32(); return err })
	}
	exprs := func() error {
		return vec(r, "initializer expressions", func(int) error { return checkConstExpr(r) })
	}
	tableIdx := func() error { _, err := r.u32(); return err }
	var steps []func() error
	switch prefix {
	case 0:
		steps = []func() error{func() error { return checkConstExpr(r) }, funcs}
	case 1, 3:
		steps = []func() error{elemKind, funcs}
	case 2:
		steps = []func() error{tableIdx, func() error { return checkConstExpr(r) }, elemKind, funcs}
	case 4:
		steps = []func() error{func() error { return checkConstExpr(r) }, exprs}
	case 5, 7:
		steps = []func() error{refType, exprs}
	case 6:
		steps = []func() error{tableIdx, func() error { return checkConstExpr(r) }, refType, exprs}
	default:
		return fmt.Errorf("invalid element segment prefix %d", prefix)
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// checkData reads a data segment as wazero's decodeDataSegment.
func checkData(r *reader) error {
	prefix, err := r.u32()
	if err != nil {
		return err
	}
	switch prefix {
	case 0:
		err = checkConstExpr(r)
	case 1:
	case 2:
		if _, err = r.u32(); err == nil {
			err = checkConstExpr(r)
		}
	default:
		err = fmt.Errorf("invalid data segment prefix %d", prefix)
	}
	if err != nil {
		return err
	}
	_, err = str(r, "data segment contents")
	return err
}

// code checks the code section: body sizes and the locals of every body.
// The instructions are left to Instrument and wazero, which read them into
// nothing larger than the body.
func (c *checker) code(r *reader) error {
	return vec(r, "function bodies", func(i int) error {
		body, err := str(r, "body")
		if err != nil {
			return err
		}
		br := &reader{b: body}
		var sum uint64
		if err := vec(br, "local declarations", func(int) error {
			n, err := br.u32()
			if err != nil {
				return err
			}
			sum += uint64(n)
			return checkValueType(br)
		}); err != nil {
			return err
		}
		if sum > MaxFunctionLocals {
			return fmt.Errorf("%w: %d locals declared, more than the %d allowed for one function", errTooManyLocals, sum, MaxFunctionLocals)
		}
		c.locals += sum
		if c.locals > MaxModuleLocals {
			return fmt.Errorf("%w: %d locals declared by the first %d functions, more than the %d allowed for a module", errTooManyLocals, c.locals, i+1, MaxModuleLocals)
		}
		return nil
	})
}

// custom checks a custom section; for the "name" section, its
// subsections as wazero's decodeNameSection walks them.
func (c *checker) custom(r *reader) error {
	name, err := str(r, "custom section name")
	if err != nil {
		return err
	}
	if string(name) != "name" {
		return nil // wazero copies the rest of the section, at most its size
	}
	c.sec = `"name" custom`
	if c.nameSeen {
		return errors.New("repeated")
	}
	c.nameSeen = true
	if err := c.names(r); err != nil {
		return err
	}
	if !r.eof() {
		return fmt.Errorf("%d bytes after the last subsection", len(r.b)-r.pos)
	}
	return nil
}

// names checks the subsections of the "name" section. wazero reads the
// module name (0), function names (1) and local names (2) without regard
// to the size their subsection declares; it only subtracts that size from
// what is left of the section, and stops when nothing is. So do we, in
// the section: the counts are checked against the bytes left in the
// section, and, as in wazero, the walk must end at the section's end.
func (c *checker) names(r *reader) error {
	limit := uint64(len(r.b) - r.pos)
	nameMap := func(what string) error {
		return vec(r, what, func(int) error {
			if _, err := r.u32(); err != nil {
				return err
			}
			_, err := str(r, "name")
			return err
		})
	}
	for limit > 0 {
		if r.eof() {
			if c.last {
				return nil // wazero stops at the end of the module
			}
			return errors.New("subsection sizes run past the end of the section")
		}
		start := r.pos
		id, _ := r.byte()
		limit--
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("subsection %d at offset %d: size: %w", id, start, err)
		}
		limit -= uint64(r.pos - start - 1)
		switch id {
		case 0:
			_, err = str(r, "module name")
		case 1:
			err = nameMap("function names")
		case 2:
			err = vec(r, "functions with local names", func(int) error {
				if _, err := r.u32(); err != nil {
					return err
				}
				return nameMap("local names")
			})
		default:
			if rem := len(r.b) - r.pos; uint64(size) > uint64(rem) {
				err = fmt.Errorf("%d bytes declared but only %d bytes remain", size, rem)
			} else {
				r.pos += int(size)
			}
		}
		if err != nil {
			return fmt.Errorf("subsection %d at offset %d: %w", id, start, err)
		}
		limit -= uint64(size)
	}
	return nil
}
