// Package modcheck runs the loader checks on a wasm module before it is
// published, and reads the metadata the module itself declares.
//
// A Checker is the hook: the wapper CLI plugs in the host runtime's own
// check (the one the loader runs), so that `wapper push` refuses exactly
// the modules the host would refuse. Static is a structural fallback that
// needs no runtime: it reads the binary's import and export sections and
// checks the ABI marker and the required exports.
package modcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/registry/artifact"
)

// Checker checks a module and returns the metadata it declares; it fails
// with an error that says why when the module would not load.
type Checker func(ctx context.Context, wasm []byte) (artifact.Metadata, error)

// Required lists the exports every plugin must provide (abi/SPEC.md §3).
var Required = []string{
	abi.ExportMarker, abi.ExportAlloc, abi.ExportFree, abi.ExportInit,
	abi.ExportDeviceAdd, abi.ExportDeviceUpdate, abi.ExportDeviceRemove,
	abi.ExportRead, abi.ExportWrite, abi.ExportState,
}

// Static checks a module's structure without running it. The ABI minor
// stays unknown (-1) since only running the marker tells it.
func Static(_ context.Context, wasm []byte) (artifact.Metadata, error) {
	m := artifact.Metadata{ABIMinor: -1}
	exports, imports, err := sections(wasm)
	if err != nil {
		return m, err
	}
	m.Exports, m.Imports = exports, imports
	var problems []string
	if slices.Contains(exports, abi.ExportMarker) {
		m.ABIMajor = abi.Major
	} else {
		problems = append(problems, "module exports no wapper ABI marker ("+abi.ExportMarker+")")
	}
	for _, r := range Required {
		if r != abi.ExportMarker && !slices.Contains(exports, r) {
			problems = append(problems, "missing required export "+r)
		}
	}
	if !slices.Contains(exports, "memory") {
		problems = append(problems, "missing exported memory")
	}
	if len(problems) > 0 {
		return m, fmt.Errorf("module would not load: %s", strings.Join(problems, "; "))
	}
	return m, nil
}

var errTruncated = errors.New("truncated WebAssembly binary")

// sections returns the names of a module's exports and its imports as
// "module.name", each sorted.
func sections(b []byte) (exports, imports []string, err error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, nil, errors.New("not a WebAssembly module (no \\0asm header)")
	}
	if v := binary.LittleEndian.Uint32(b[4:8]); v != 1 {
		return nil, nil, fmt.Errorf("WebAssembly binary version %d is not a core module (version 1)", v)
	}
	r := &reader{b: b[8:]}
	for len(r.b) > 0 {
		id := r.byte()
		size := r.uleb()
		if r.err != nil || uint64(len(r.b)) < size {
			return nil, nil, errTruncated
		}
		sec := &reader{b: r.b[:size]}
		r.b = r.b[size:]
		switch id {
		case 2: // import
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				mod, name := sec.name(), sec.name()
				kind := sec.byte()
				switch kind {
				case 0: // func: type index
					sec.uleb()
					imports = append(imports, mod+"."+name)
				case 1: // table: reftype, limits
					sec.byte()
					sec.limits()
				case 2: // memory: limits
					sec.limits()
				case 3: // global: valtype, mut
					sec.byte()
					sec.byte()
				default:
					sec.err = fmt.Errorf("unknown import kind %d", kind)
				}
			}
		case 7: // export
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				name := sec.name()
				sec.byte()
				sec.uleb()
				exports = append(exports, name)
			}
		}
		if sec.err != nil {
			return nil, nil, fmt.Errorf("section %d: %w", id, sec.err)
		}
	}
	sort.Strings(exports)
	sort.Strings(imports)
	return slices.Compact(exports), slices.Compact(imports), nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = errTruncated
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uleb() uint64 {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("malformed LEB128")
	return 0
}

func (r *reader) name() string {
	n := r.uleb()
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errTruncated
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) limits() {
	if r.byte()&1 == 1 {
		r.uleb()
	}
	r.uleb()
}

// Names reduces entries such as "wapper_read (i32, i32) -> (i64)" to the
// bare name, so that lists from a checker that adds signatures fit the
// comma-separated annotations.
func Names(list []string) []string {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if i := strings.IndexAny(s, " ("); i >= 0 {
			s = s[:i]
		}
		if s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
