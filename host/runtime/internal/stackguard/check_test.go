package stackguard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"wapper.dev/wapper/internal/testenv"
)

// mod builds a module from its sections, each an id and its payload.
func mod(secs ...[]byte) []byte {
	b := slices.Clone(header)
	for _, s := range secs {
		b = appendSection(b, s[0], s[1:])
	}
	return b
}

// sec concatenates a section id and payload parts: bytes, LEB128 numbers
// (uint64, written unsigned) and strings.
func sec(id byte, parts ...any) []byte {
	b := []byte{id}
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = append(b, byte(p))
		case byte:
			b = append(b, p)
		case []byte:
			b = append(b, p...)
		case uint64:
			b = appendULEB(b, p)
		case string:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("sec: %T", p))
		}
	}
	return b
}

// u is a LEB128 number for sec.
func u(v uint64) uint64 { return v }

// nameSec builds a "name" custom section from its subsections.
func nameSec(subs ...[]byte) []byte {
	b := sec(secCustom, 4, "name")
	for _, s := range subs {
		b = appendSection(b, s[0], s[1:])
	}
	return b
}

// localsModule is a module of n functions of type [] -> [] that each
// declare locals i32 locals.
func localsModule(n int, locals uint64) []byte {
	funcs := appendULEB(nil, uint64(n))
	code := appendULEB(nil, uint64(n))
	body := appendULEB([]byte{1}, locals)
	body = append(body, valI32, 0x0b)
	for range n {
		funcs = append(funcs, 0)
		code = appendULEB(code, uint64(len(body)))
		code = append(code, body...)
	}
	return mod(sec(secType, 1, 0x60, 0, 0), sec(secFunction, funcs), sec(secCode, code))
}

// hostile are modules whose declared counts make wazero's decoder allocate
// far more than their size, one for every allocation site; want holds what
// Check's error must say.
var hostile = []struct {
	name string
	bin  []byte
	want []string
}{
	{"section size 2^32-1", append(slices.Clone(header), secType, 0xff, 0xff, 0xff, 0xff, 0x0f),
		[]string{"section 1 ", "declares 4294967295 bytes"}},
	{"custom section size 2^31", append(slices.Clone(header), secCustom, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 'x'),
		[]string{"section 0 ", "declares 2147483648 bytes"}},
	{"custom section name 2^31", mod(sec(secCustom, u(1<<31), "x")),
		[]string{"custom section", "custom section name of 2147483648 bytes"}},
	{"2^30 types", mod(sec(secType, u(1<<30))), []string{"type section", "1073741824 types"}},
	{"2^32-1 parameters", mod(sec(secType, 1, 0x60, u(1<<32-1))), []string{"type section", "4294967295 parameters"}},
	{"2^31 results", mod(sec(secType, 1, 0x60, 0, u(1<<31))), []string{"type section", "2147483648 results"}},
	{"rec group of 2^28 types", mod(sec(secType, 1, typeRecGroup, u(1<<28))), []string{"type section", "268435456 types in the rec group"}},
	{"2^27 imports", mod(sec(secImport, u(1<<27))), []string{"import section", "134217728 imports"}},
	{"import module name 2^31", mod(sec(secImport, 1, u(1<<31))), []string{"import section", "import module name of 2147483648 bytes"}},
	{"import name 2^31", mod(sec(secImport, 1, 1, "m", u(1<<31))), []string{"import section", "import name of 2147483648 bytes"}},
	{"2^30 functions", mod(sec(secFunction, u(1<<30))), []string{"function section", "1073741824 functions"}},
	{"2^30 tables", mod(sec(4, u(1<<30))), []string{"table section", "1073741824 tables"}},
	{"2^30 memories", mod(sec(5, u(1<<30))), []string{"memory section", "1073741824 memories"}},
	{"2^30 tags", mod(sec(13, u(1<<30))), []string{"tag section", "1073741824 tags"}},
	{"2^30 globals", mod(sec(secGlobal, u(1<<30))), []string{"global section", "1073741824 globals"}},
	{"2^27 exports", mod(sec(secExport, u(1<<27))), []string{"export section", "134217728 exports"}},
	{"export name 2^31", mod(sec(secExport, 1, u(1<<31))), []string{"export section", "export name of 2147483648 bytes"}},
	{"2^28 element segments", mod(sec(9, u(1<<28))), []string{"element section", "268435456 element segments"}},
	{"element of 2^30 function indices", mod(sec(9, 1, 0, 0x41, 0, 0x0b, u(1<<30))), []string{"element section", "1073741824 function indices"}},
	{"element of 2^30 expressions", mod(sec(9, 1, 5, valFuncref, u(1<<30))), []string{"element section", "1073741824 initializer expressions"}},
	{"2^28 function bodies", mod(sec(secCode, u(1<<28))), []string{"code section", "268435456 function bodies"}},
	{"body of 2^31 bytes", mod(sec(secCode, 1, u(1<<31))), []string{"code section", "body of 2147483648 bytes"}},
	{"2^27 local declarations", mod(sec(secCode, 1, 4, u(1<<27))), []string{"code section", "134217728 local declarations"}},
	// Not an allocation: wazero's decoder panics on it (makeslice: len
	// out of range) as the heap type runs past the body.
	{"local heap type past the body", append(mod(sec(secType, 1, 0x60, 0, 0), sec(secFunction, 1, 0)),
		secCode, 10, 1, 4, 1, 1, refNullable, 0x80, 0x80, 0x80, 0x80, 0x00), []string{"code section", "local declarations[0]: heap type"}},
	{"2^32-1 locals", localsModule(1, 1<<32-1), []string{"code section", "4294967295 locals declared", "50000"}},
	{"50001 locals", localsModule(1, MaxFunctionLocals+1), []string{"code section", "50001 locals declared", "50000"}},
	{"21 functions of 50000 locals", localsModule(21, MaxFunctionLocals), []string{"code section", "1050000 locals declared by the first 21 functions", "1048576"}},
	{"2^28 data segments", mod(sec(11, u(1<<28))), []string{"data section", "268435456 data segments"}},
	{"data segment of 2^31 bytes", mod(sec(11, 1, 1, u(1<<31))), []string{"data section", "data segment contents of 2147483648 bytes"}},
	{"active data segment of 2^32-1 bytes", mod(sec(11, 1, 0, 0x41, 0, 0x0b, u(1<<32-1), "x")), []string{"data section", "data segment contents of 4294967295 bytes"}},
	{"module name 2^31", mod(nameSec(sec(0, u(1<<31)))), []string{`"name" custom section`, "module name of 2147483648 bytes"}},
	{"2^30 function names", mod(nameSec(sec(1, u(1<<30)))), []string{`"name" custom section`, "1073741824 function names"}},
	{"2^30 functions with local names", mod(nameSec(sec(2, u(1<<30)))), []string{`"name" custom section`, "1073741824 functions with local names"}},
	{"2^30 local names", mod(nameSec(sec(2, 1, 0, u(1<<30)))), []string{`"name" custom section`, "1073741824 local names"}},
	{"function name 2^31", mod(nameSec(sec(1, 1, 0, u(1<<31)))), []string{`"name" custom section`, "name of 2147483648 bytes"}},
}

func TestCheckRefusesDishonestCounts(t *testing.T) {
	// A name section whose last subsection claims more than the section.
	hs := slices.Clone(hostile)
	n := mod(nameSec())
	n = append(n, 9, 0x80, 0x80, 0x80, 0x80, 0x08)
	n[9] = byte(len(n) - 10) // the section's size covers the subsection header only
	hs = append(hs, struct {
		name string
		bin  []byte
		want []string
	}{"name subsection claiming 2^31 bytes", n, []string{`"name" custom section`, "2147483648 bytes declared but only 0 bytes remain"}})

	// The control: wazero alone, on a 13-byte module declaring 2^20
	// imports, allocates more than the fuzz test allows (112 MiB; 2^27
	// imports make it 14 GiB). Check refuses it.
	t.Run("wazero without Check", func(t *testing.T) {
		ctx := context.Background()
		r := wazero.NewRuntime(ctx)
		defer r.Close(ctx)
		bin := mod(sec(secImport, u(1<<20)))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := r.CompileModule(ctx, bin)
		runtime.ReadMemStats(&after)
		d := after.TotalAlloc - before.TotalAlloc
		t.Logf("wazero allocated %d MiB for %d bytes: %v", d>>20, len(bin), err)
		if d < fuzzAllocLimit {
			t.Errorf("wazero allocated only %d bytes", d)
		}
		if err := Check(bin); err == nil {
			t.Error("Check accepts it")
		}
	})

	for _, tc := range hs {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := Check(tc.bin)
			_, ierr := Instrument(tc.bin, 1000)
			runtime.ReadMemStats(&after)
			// The fastest of a few runs, against a loaded machine.
			elapsed := time.Hour
			for range 5 {
				start := time.Now()
				Check(tc.bin)
				Instrument(tc.bin, 1000)
				elapsed = min(elapsed, time.Since(start))
			}
			if err == nil {
				t.Fatalf("%d-byte module accepted", len(tc.bin))
			}
			t.Logf("%d bytes: %v", len(tc.bin), err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if ierr == nil || ierr.Error() != err.Error() {
				t.Errorf("Instrument: %v, want Check's error", ierr)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
				t.Errorf("Check and Instrument allocated %d bytes", d)
			}
			if elapsed > 10*time.Millisecond {
				t.Errorf("Check and Instrument took %v", elapsed)
			}
		})
	}
}

// honestModule is a module that uses every section and most of the
// grammar of wazero's decoder, with honest counts.
func honestModule() []byte {
	names := nameSec(
		sec(0, 1, "m"),
		sec(1, 1, 0, 1, "f"),
		sec(2, 1, 0, 1, 0, 1, "x"),
		sec(7, 1, 0, 1, "g"), // global names: skipped by wazero
	)
	return mod(
		sec(secType, 3, 0x60, 0, 0, 0x60, 1, valI32, 1, valI32, 0x60, 2, refNullable, 0x70, valV128, 0),
		sec(secImport, 2, 3, "env", 1, "f", 0, 1, 3, "env", 1, "t", 4, 0, 0),
		sec(secFunction, 1, 0),
		sec(4, 2, valFuncref, 0, 1, 0x40, 0, refNullable, 0x70, 0, 1, 0xd0, 0x70, 0x0b),
		sec(5, 1, 1, 1, 2),
		sec(13, 1, 0, 0),
		sec(secGlobal, 2, valI32, 1, 0x41, 0x2a, 0x0b, valV128, 0, 0xfd, 0x0c, make([]byte, 16), 0x0b),
		sec(secExport, 2, 1, "f", 0, 1, 1, "g", 3, 0),
		sec(8, 1),
		sec(9, 4,
			0, 0x41, 0, 0x0b, 1, 1,
			1, 0, 1, 0,
			5, valFuncref, 2, 0xd2, 1, 0x0b, 0xd0, 0x70, 0x0b,
			6, 1, 0x41, 0, 0x0b, refNullable, 0x70, 1, 0xd2, 0, 0x0b),
		sec(12, 2),
		sec(secCode, 1, 6, 2, 1, valI32, 1, valF64, 0x0b),
		sec(11, 2, 0, 0x41, 0, 0x0b, 2, "hi", 1, 3, "abc"),
		names,
	)
}

// TestCheckAcceptsHonestModules checks that Check accepts modules that use
// every section and the whole grammar of wazero's decoder, and that
// wazero compiles them.
func TestCheckAcceptsHonestModules(t *testing.T) {
	ctx := context.Background()
	all := api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling | experimental.CoreFeaturesTypedFunctionReferences |
		experimental.CoreFeaturesExtendedConst
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(all))
	defer r.Close(ctx)
	full := honestModule()
	if err := Check(full); err != nil {
		t.Fatal(err)
	}
	if cm, err := r.CompileModule(ctx, full); err != nil {
		t.Fatalf("wazero: %v", err)
	} else {
		cm.Close(ctx)
	}

	// Quirks of wazero's decoder that Check follows.
	quirks := map[string][]byte{
		// The data count section is empty and ends the module: wazero takes
		// the end of the module for an absent count...
		"empty data count at the end": mod(sec(12)),
		// ... or within the count.
		"unterminated data count at the end": mod(sec(12, 0xe8, 0xe8, 0xe8, 0xe8)),
		// wazero reads the known name subsections without regard to their
		// sizes; it only needs the sizes to add up.
		"name subsection sizes that only add up": mod(nameSec(sec(0, 1, "m", 0x00), sec(1, 0))),
		// Name subsection sizes that add up to more than the section, in
		// the last section: wazero stops at the end of the module.
		"name subsections past the last section": mod(sec(secCustom, 4, "name", 1, 5, 0)),
		"exactly MaxFunctionLocals":              localsModule(1, MaxFunctionLocals),
		"MaxModuleLocals in all":                 localsModule(20, MaxFunctionLocals),
	}
	for name, bin := range quirks {
		t.Run(name, func(t *testing.T) {
			if err := Check(bin); err != nil {
				t.Errorf("Check: %v", err)
			}
			cm, err := r.CompileModule(ctx, bin)
			if err != nil {
				t.Fatalf("wazero: %v", err)
			}
			cm.Close(ctx)
		})
	}

	// Everything else Check refuses, wazero refuses too.
	for name, bin := range map[string][]byte{
		"empty data count not at the end":          mod(sec(12), sec(secCode, 0)),
		"name subsection sizes that do not add up": mod(nameSec(sec(0, 1, "m"), sec(1, 0, 0))),
		"name subsections past a section":          mod(sec(secCustom, 4, "name", 1, 5, 0), sec(secType, 0)),
		"repeated name section":                    mod(nameSec(), nameSec()),
		"sections out of order":                    mod(sec(secFunction, 0), sec(secType, 0)),
		"bytes after a section's contents":         mod(sec(secType, 0, 0)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := Check(bin); err == nil {
				t.Error("Check accepts it")
			} else {
				t.Log(err)
			}
			if cm, err := r.CompileModule(ctx, bin); err == nil {
				cm.Close(ctx)
				t.Error("wazero accepts it")
			}
		})
	}
}

// TestCheckSpecBinaries checks Check against wazero's decoder on every
// binary of the spec tests shipped with wazero, for every proposal it
// supports: Check accepts every module wazero compiles, and refuses only
// modules wazero refuses, apart from the limits on locals.
func TestCheckSpecBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("the spec test suites take a while; run without -short")
	}
	ctx := context.Background()
	base := filepath.Dir(wazeroSpecDir(t)) // .../spectest/v2
	all := api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall |
		experimental.CoreFeaturesExtendedConst | experimental.CoreFeaturesExceptionHandling |
		experimental.CoreFeaturesTypedFunctionReferences
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(all))
	defer r.Close(ctx)
	files, err := filepath.Glob(filepath.Join(filepath.Dir(base), "*", "testdata", "*.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var valid, refused, bothRefuse int
	for _, f := range files {
		bin, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(filepath.Base(filepath.Dir(filepath.Dir(f))), filepath.Base(f))
		cerr := Check(bin)
		cm, werr := r.CompileModule(ctx, bin)
		if werr == nil {
			cm.Close(ctx)
			valid++
			if cerr != nil {
				t.Errorf("%s: wazero compiles it but Check refuses it: %v", name, cerr)
			}
			continue
		}
		if cerr != nil {
			refused++
			if errors.Is(cerr, errTooManyLocals) {
				t.Logf("%s: %v", name, cerr)
			}
			continue
		}
		bothRefuse++
	}
	if len(files) < 5000 {
		t.Errorf("only %d spec binaries", len(files))
	}
	t.Logf("%d binaries: %d that wazero compiles, all accepted; of the rest Check refuses %d and leaves %d to wazero",
		len(files), valid, refused, bothRefuse)
}

// TestCheckPlugins checks that the real plugins pass Check, and are far
// from the limits on locals.
func TestCheckPlugins(t *testing.T) {
	files := []string{testenv.Plugin(t, "virtual"), testenv.Plugin(t, "nmea-rust")}
	more, _ := filepath.Glob(filepath.Join(testenv.Root(), "bin", "*", "*.wasm"))
	for _, f := range more {
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	for _, f := range files {
		bin, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(bin); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		n, most, total := localStats(bin)
		t.Logf("%s: %d bytes, %d functions, at most %d locals in one, %d in all", filepath.Base(f), len(bin), n, most, total)
		if most > MaxFunctionLocals/100 || total > MaxModuleLocals/50 {
			t.Errorf("%s: close to the limits on locals", f)
		}
	}
}

// localStats returns the number of bodies of a module that passed Check,
// the most locals one declares and their sum.
func localStats(bin []byte) (n uint32, most, total uint64) {
	r := reader{b: bin, pos: 8}
	for !r.eof() {
		id, _ := r.byte()
		size, _ := r.u32()
		p, _ := r.bytes(uint64(size))
		if id != secCode {
			continue
		}
		cr := &reader{b: p}
		n, _ = cr.u32()
		for range n {
			sz, _ := cr.u32()
			body, _ := cr.bytes(uint64(sz))
			br := &reader{b: body}
			d, _ := br.u32()
			var s uint64
			for range d {
				k, _ := br.u32()
				checkValueType(br)
				s += uint64(k)
			}
			most = max(most, s)
			total += s
		}
	}
	return n, most, total
}

// TestCheckedAmplification measures what wazero allocates to compile
// modules that pass Check but are made of the smallest elements of one
// kind, for the package doc's figures, and bounds it.
func TestCheckedAmplification(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles large modules")
	}
	ctx := context.Background()
	const n = 20000
	rep := func(f func(b []byte, i int) []byte) []byte {
		b := appendULEB(nil, n)
		for i := range n {
			b = f(b, i)
		}
		return b
	}
	ft := sec(secType, 1, 0x60, 0, 0)
	body := sec(secCode, 1, 2, 0, 0x0b)
	for _, tc := range []struct {
		name string
		bin  []byte
	}{
		{"3-byte types", mod(sec(secType, rep(func(b []byte, _ int) []byte { return append(b, 0x60, 0, 0) })))},
		{"5-byte imports", mod(ft, sec(secImport, rep(func(b []byte, _ int) []byte { return append(b, 1, 'm', 0, 0, 0) })))},
		{"exports", mod(ft, sec(secFunction, 1, 0), sec(secExport, rep(func(b []byte, i int) []byte {
			s := fmt.Sprint(i)
			return append(append(appendULEB(b, uint64(len(s))), s...), 0, 0)
		})), body)},
		{"3-byte bodies", mod(ft, sec(secFunction, rep(func(b []byte, _ int) []byte { return append(b, 0) })),
			sec(secCode, rep(func(b []byte, _ int) []byte { return append(b, 2, 0, 0x0b) })))},
		{"element expressions", mod(ft, sec(secFunction, 1, 0), sec(4, 1, valFuncref, 0, 0),
			sec(9, 1, 5, valFuncref, rep(func(b []byte, _ int) []byte { return append(b, 0xd2, 0, 0x0b) })), body)},
		{"data segments", mod(sec(5, 1, 0, 1), sec(11, rep(func(b []byte, _ int) []byte { return append(b, 1, 0) })))},
		{"function names", mod(nameSec(sec(1, rep(func(b []byte, i int) []byte { return append(appendULEB(b, uint64(i)), 0) }))))},
		{"local names", mod(nameSec(sec(2, rep(func(b []byte, i int) []byte { return append(appendULEB(b, uint64(i)), 0) }))))},
		{"locals", localsModule(20, MaxFunctionLocals)},
	} {
		if err := Check(tc.bin); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r := wazero.NewRuntime(ctx)
		var before, after, kept runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		cm, err := r.CompileModule(ctx, tc.bin)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		runtime.GC()
		runtime.ReadMemStats(&kept)
		total := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(tc.bin))
		live := float64(int64(kept.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(tc.bin))
		t.Logf("%-20s %7d bytes: wazero allocates %4.0f bytes a byte and keeps %5.0f", tc.name, len(tc.bin), total, live)
		if tc.name == "locals" {
			if d := after.TotalAlloc - before.TotalAlloc; d > 2*MaxModuleLocals*8 {
				t.Errorf("%s: %d bytes allocated", tc.name, d)
			}
		} else if total > 250 {
			t.Errorf("%s: %.0f bytes allocated a byte of module", tc.name, total)
		}
		cm.Close(ctx)
		r.Close(ctx)
	}
}

// TestRefusesTypedRefs checks that Instrument refuses, wrapping
// ErrUnsupported and errTypedRefs, the type encodings of the typed function
// references, GC and exception handling proposals that wazero compiles
// with its default features, so that they never reach wazero's compiler.
func TestRefusesTypedRefs(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	fn := func(types, locals []byte, body ...byte) []byte {
		b := append(appendULEB(nil, uint64(len(locals)+len(body))), locals...)
		b = append(b, body...)
		return mod(sec(secType, types), sec(secFunction, 1, 0), sec(secCode, 1, b))
	}
	noLocals := []byte{0}
	unit := []byte{1, 0x60, 0, 0}
	for name, bin := range map[string][]byte{
		"rec group":                 fn([]byte{1, typeRecGroup, 1, 0x60, 0, 0}, noLocals, 0x0b),
		"parameter (ref null func)": fn([]byte{1, 0x60, 1, refNullable, valFuncref, 0}, noLocals, 0x0b),
		"parameter (ref func)":      fn([]byte{1, 0x60, 1, refNonNullable, valFuncref, 0}, noLocals, 0x0b),
		"results (ref null ...)":    fn([]byte{1, 0x60, 0, 2, refNullable, valFuncref, refNullable, valExternref}, noLocals, 0xd0, 0x70, 0xd0, 0x6f, 0x0b),
		"local (ref null func)":     fn(unit, []byte{1, 1, refNullable, valFuncref}, 0x0b),
		"local (ref null 0)":        fn(unit, []byte{1, 1, refNullable, 0}, 0x0b),
		"local exnref":              fn(unit, []byte{1, 1, valExnref}, 0x0b),
		"block (ref null func)":     fn(unit, noLocals, 0x02, refNullable, valFuncref, 0xd0, 0x70, 0x0b, 0x1a, 0x0b),
		// This one makes wazero v1.12.0's compiler panic with an index out
		// of range (its interpreter refuses it).
		"select (ref null func)": fn(unit, noLocals, 0xd0, 0x70, 0xd0, 0x70, 0x41, 0, 0x1c, 1, refNullable, valFuncref, 0x1a, 0x0b),
		"global (ref null extern)": mod(sec(secType, unit), sec(secFunction, 1, 0),
			sec(secGlobal, 1, refNullable, valExternref, 0, 0xd0, 0x6f, 0x0b), sec(secCode, 1, 2, 0, 0x0b)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := Check(bin); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if cm, err := r.CompileModule(ctx, bin); err == nil {
				cm.Close(ctx)
			} else if !strings.HasPrefix(name, "select") {
				t.Errorf("wazero's interpreter refuses it: %v", err)
			}
			_, err := Instrument(bin, 1000)
			if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errTypedRefs) {
				t.Fatalf("Instrument: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestWazeroDivergences checks Instrument on modules that wazero v1.12.0
// reads differently from the specification, or panics on.
func TestWazeroDivergences(t *testing.T) {
	// One function [v128] -> [v128] with the given body.
	simd := func(body ...byte) []byte {
		b := append(appendULEB(nil, uint64(len(body)+1)), 0)
		b = append(b, body...)
		return mod(sec(secType, 1, 0x60, 1, valV128, 1, valV128), sec(secFunction, 1, 0), sec(secCode, 1, b))
	}
	// i64x2.add (0xFD 206): wazero reads the opcode as the byte 0xCE and
	// the 0x01 after it as a nop.
	if _, err := Instrument(simd(0x20, 0, 0x20, 0, 0xfd, 0xce, 0x01, 0x0b), 100); err != nil {
		t.Errorf("i64x2.add: %v", err)
	}
	for name, body := range map[string][]byte{
		// i8x16.swizzle (0xFD 14) written in two bytes: wazero reads
		// 0xFD 0x8E (i16x8.extadd_pairwise_i8x16_s), then unreachable.
		"padded swizzle": {0x20, 0, 0x20, 0, 0xfd, 0x8e, 0x00, 0x0b},
		// 0xFD 4174: wazero reads i64x2.add, then local.get 0.
		"0xFD 4174": {0x20, 0, 0x20, 0, 0xfd, 0xce, 0x20, 0x00, 0x1a, 0x0b},
	} {
		_, err := Instrument(simd(body...), 100)
		if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errWazeroEncoding) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A call to a function whose type index is out of range makes
	// wazero's validation panic; Instrument refuses the module.
	bin := mod(sec(secType, 1, 0x60, 0, 0), sec(secFunction, 2, 0, 48), sec(secCode, 2, 4, 0, 0x10, 1, 0x0b, 2, 0, 0x0b))
	if err := Check(bin); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := Instrument(bin, 100); err == nil || !strings.Contains(err.Error(), "type index 48 out of range") {
		t.Errorf("Instrument: %v", err)
	}
}
