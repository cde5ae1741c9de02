package runtime

import (
	"errors"
	"fmt"
)

// MaxTableElements is the largest size a plugin's table may reach.
// wazero keeps a table as a Go slice of 8-byte references and grows it on
// table.grow without a limit of its own, so a table with no maximum lets
// one instruction make the host allocate gigabytes. A Go plugin's function
// table holds every function the linker kept, a few tens of thousands.
const MaxTableElements = 1 << 20

// tableElementBytes is what wazero spends on one table element.
const tableElementBytes = 8

// tableInfo is what the loader learned about a module's tables.
type tableInfo struct {
	// maxElements is the sum of the maxima of every table the module
	// defines, after boundTables capped them.
	maxElements uint64
	problems    []string
}

// bytes is the most host memory the tables of one instance can take.
func (t tableInfo) bytes() uint64 { return t.maxElements * tableElementBytes }

// boundTables gives every table of a module a maximum the host can afford
// and returns the module with its table section rewritten. wazero keeps a
// table as a Go slice and grows it without a limit of its own, so one
// table.grow on a table with no maximum could make the host allocate
// gigabytes and die. A table with no maximum (Go's linker declares none,
// and Go never grows its table) is capped at its initial size; a maximum
// above MaxTableElements is lowered to it. table.grow past the cap fails
// in the guest with -1, as the spec allows. A table whose initial size is
// over the bound, or an imported table, is a problem. wazero's compiled
// module does not expose tables, so this reads the binary; a module wazero
// compiles is well formed, so decoding errors only come with modules
// wazero refuses anyway.
func boundTables(wasm []byte) ([]byte, tableInfo, error) {
	var info tableInfo
	if len(wasm) < 8 {
		return wasm, info, nil
	}
	r := &reader{b: wasm, pos: 8}
	for r.pos < len(r.b) {
		start := r.pos
		id, err := r.byte()
		if err != nil {
			return nil, info, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, info, err
		}
		if uint64(r.pos)+uint64(size) > uint64(len(r.b)) {
			return nil, info, errors.New("section runs past the end of the module")
		}
		body := r.b[r.pos : r.pos+int(size)]
		r.pos += int(size)
		switch id {
		case 2:
			if err := info.imports(&reader{b: body}); err != nil {
				return nil, info, err
			}
		case 4:
			sec, err := info.tables(&reader{b: body})
			if err != nil {
				return nil, info, err
			}
			out := append([]byte{}, wasm[:start]...)
			out = append(out, 4)
			out = appendU32(out, uint32(len(sec)))
			out = append(out, sec...)
			return append(out, wasm[r.pos:]...), info, nil
		}
	}
	return wasm, info, nil
}

// imports notes imported tables: the host exports none, so a module that
// imports one could not be instantiated anyway.
func (info *tableInfo) imports(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for range n {
		if err := r.skipName(); err != nil {
			return err
		}
		if err := r.skipName(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // func: type index
			_, err = r.u32()
		case 0x01: // table
			info.problems = append(info.problems, "imports a table; the host provides none")
			if _, err = r.byte(); err == nil {
				_, _, err = r.limits()
			}
		case 0x02: // memory: limits
			_, _, err = r.limits()
		case 0x03: // global: value type, mutability
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		case 0x04: // tag: attribute, type index
			if _, err = r.byte(); err == nil {
				_, err = r.u32()
			}
		default:
			err = fmt.Errorf("unknown import kind %#x", kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// tables reads a table section and returns it with every maximum capped.
func (info *tableInfo) tables(r *reader) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for i := range n {
		ref, err := r.byte()
		if err != nil {
			return nil, err
		}
		lo, hi, err := r.limits()
		if err != nil {
			return nil, err
		}
		if lo > MaxTableElements {
			info.problems = append(info.problems, fmt.Sprintf("table %d starts with %d elements, above the host's bound of %d (each element is 8 bytes of host memory)", i, lo, MaxTableElements))
		}
		capped := lo
		if hi != nil {
			capped = max(lo, min(*hi, MaxTableElements))
		}
		info.maxElements += uint64(capped)
		out = append(out, ref, 0x01)
		out = appendU32(out, lo)
		out = appendU32(out, capped)
	}
	if r.pos != len(r.b) {
		return nil, errors.New("table section has trailing bytes")
	}
	return out, nil
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// reader decodes the parts of the wasm binary format the table scan needs.
type reader struct {
	b   []byte
	pos int
}

var errShort = errors.New("module ends in the middle of a section")

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// u32 reads an unsigned LEB128 number of at most 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("LEB128 number longer than 32 bits")
}

func (r *reader) skipName() error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	if uint64(r.pos)+uint64(n) > uint64(len(r.b)) {
		return errShort
	}
	r.pos += int(n)
	return nil
}

// limits reads a limits pair; max is nil when none is declared. Flags for
// 64-bit or shared limits are refused: wazero does not support them for
// the features the host enables.
func (r *reader) limits() (min uint32, max *uint32, err error) {
	flag, err := r.byte()
	if err != nil {
		return 0, nil, err
	}
	if flag > 0x03 {
		return 0, nil, fmt.Errorf("unsupported limits flag %#x", flag)
	}
	if min, err = r.u32(); err != nil {
		return 0, nil, err
	}
	if flag&0x01 != 0 {
		m, err := r.u32()
		if err != nil {
			return 0, nil, err
		}
		max = &m
	}
	return min, max, nil
}
