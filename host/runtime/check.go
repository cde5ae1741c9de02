package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime/internal/stackguard"
)

// sig is a function signature in wasm value types.
type sig struct{ params, results []api.ValueType }

func (s sig) String() string {
	return "(" + typeList(s.params) + ") -> (" + typeList(s.results) + ")"
}

func typeList(ts []api.ValueType) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = api.ValueTypeName(t)
	}
	return strings.Join(parts, ", ")
}

func (s sig) matches(d api.FunctionDefinition) bool {
	return equalTypes(s.params, d.ParamTypes()) && equalTypes(s.results, d.ResultTypes())
}

func equalTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func s(params []api.ValueType, results ...api.ValueType) sig { return sig{params, results} }

func p(ts ...api.ValueType) []api.ValueType { return ts }

// requiredExports and optionalExports are the export table of SPEC.md §3.
var requiredExports = map[string]sig{
	abi.ExportMarker:       s(p(), i32),
	abi.ExportAlloc:        s(p(i32), i32),
	abi.ExportFree:         s(p(i32)),
	abi.ExportInit:         s(p(i32, i32), i64),
	abi.ExportDeviceAdd:    s(p(i32, i32, i32), i64),
	abi.ExportDeviceUpdate: s(p(i32, i32, i32), i64),
	abi.ExportDeviceRemove: s(p(i32), i64),
	abi.ExportRead:         s(p(i32, i32), i64),
	abi.ExportWrite:        s(p(i32, i32, i32, i32), i64),
	abi.ExportState:        s(p(i32), i64),
}

var optionalExports = map[string]sig{
	abi.ExportReadBatch:  s(p(i32, i32, i32), i64),
	abi.ExportReadMany:   s(p(i32, i32), i64),
	abi.ExportMethod:     s(p(i32, i32, i32), i64),
	abi.ExportPoll:       s(p(i32, i32), i64),
	abi.ExportInitialize: s(p()),
}

// ModuleInfo is what Check learned about a module.
type ModuleInfo struct {
	// ABIMajor is the major version of the marker; ABIMinor the minor the
	// marker returned (-1 when the module could not be instantiated).
	ABIMajor, ABIMinor int
	// Size is the module's size in bytes.
	Size int
	// Exports and Imports list every function with its signature, sorted.
	Exports []string
	Imports []string
	// Optional names the optional ABI exports the module provides.
	Optional []string
	// MemoryMinPages is the initial size of the module's memory in 64 KiB
	// pages.
	MemoryMinPages uint32
	// TableMaxElements is the sum of the maxima of the module's tables,
	// once the loader capped them (a table with no maximum keeps its
	// initial size); each element costs the host 8 bytes, counted against
	// limits.memoryMiB.
	TableMaxElements uint64
	// Problems lists every reason the loader refuses the module; empty
	// when it loads.
	Problems []string
}

// Has reports whether the module exports the named optional function.
func (m *ModuleInfo) Has(export string) bool {
	for _, o := range m.Optional {
		if o == export {
			return true
		}
	}
	return false
}

var markerRE = regexp.MustCompile(`^wapper_abi_v([0-9]+)$`)

// wasiFuncs lists the WASI preview1 functions the host provides.
var wasiFuncs = func() map[string]bool {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	c, err := wasi_snapshot_preview1.NewBuilder(r).Compile(ctx)
	if err != nil {
		panic(err)
	}
	out := map[string]bool{}
	for name := range c.ExportedFunctions() {
		out[name] = true
	}
	return out
}()

// Check runs the loader's checks on a module without instantiating it:
// the ABI marker, required and optional exports with their signatures, the
// memory export, and every import against what the host provides. It
// returns the info it gathered and, when the module would be refused, an
// error naming every problem.
func Check(ctx context.Context, wasm []byte) (*ModuleInfo, error) {
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	return checkWith(ctx, r, wasm)
}

// Verify runs the whole load path on a module without a device: Check,
// then compilation and one instantiation under the default limits with
// WASI and the host functions, _initialize, and the ABI marker, whose minor
// version it records. wapper_init is not called, since it needs the
// plugin's config. It is the loader's verdict for `wapper plugin inspect`
// and `wapper push`.
func Verify(ctx context.Context, wasm []byte) (*ModuleInfo, error) {
	info, err := Check(ctx, wasm)
	if err != nil {
		return info, err
	}
	e, err := NewEngine(EngineOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return info, err
	}
	defer e.Close(ctx)
	p, err := e.load(ctx, Config{Name: "verify", Wasm: wasm, Instances: 1}, true)
	if err != nil {
		info.Problems = append(info.Problems, err.Error())
		return info, info.err()
	}
	defer p.Close(ctx)
	info.ABIMinor = p.info.ABIMinor
	return info, nil
}

func checkWith(ctx context.Context, r wazero.Runtime, wasm []byte) (*ModuleInfo, error) {
	info, compiled, err := compileChecked(ctx, r, wasm, DefaultStackKiB)
	if compiled != nil {
		compiled.Close(ctx)
	}
	return info, err
}

// compileChecked compiles a module and checks it; on success the caller
// owns the compiled module.
func compileChecked(ctx context.Context, r wazero.Runtime, wasm []byte, stackKiB int) (*ModuleInfo, wazero.CompiledModule, error) {
	info := &ModuleInfo{ABIMinor: -1, Size: len(wasm)}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		info.Problems = append(info.Problems, "not a WebAssembly module (no \\0asm header)")
		return info, nil, info.err()
	}
	prep, err := prepare(wasm, stackKiB)
	if err != nil {
		info.Problems = append(info.Problems, "invalid or truncated module: "+err.Error())
		return info, nil, info.err()
	}
	info.TableMaxElements = prep.tables.maxElements
	if len(prep.tables.problems) > 0 {
		info.Problems = append(info.Problems, prep.tables.problems...)
		return info, nil, info.err()
	}
	if prep.err != nil {
		if errors.Is(prep.err, stackguard.ErrUnsupported) {
			info.Problems = append(info.Problems, "the host cannot bound this module's stack: "+prep.err.Error())
		} else {
			info.Problems = append(info.Problems, "invalid or truncated module: "+prep.err.Error())
		}
		return info, nil, info.err()
	}
	compiled, err := compile(ctx, r, prep.wasm)
	if err != nil {
		if strings.Contains(err.Error(), "over limit") {
			info.Problems = append(info.Problems, "the module's initial memory is larger than limits.memoryMiB allows once its tables and wasm stacks are counted: "+err.Error())
			return info, nil, info.err()
		}
		info.Problems = append(info.Problems, "invalid or truncated module: "+err.Error())
		return info, nil, info.err()
	}
	inspect(info, compiled)
	if err := info.err(); err != nil {
		compiled.Close(ctx)
		return info, nil, err
	}
	return info, compiled, nil
}

func inspect(info *ModuleInfo, compiled wazero.CompiledModule) {
	exports := compiled.ExportedFunctions()
	for name, d := range exports {
		info.Exports = append(info.Exports, name+sigOf(d).String())
		if m := markerRE.FindStringSubmatch(name); m != nil {
			var major int
			fmt.Sscan(m[1], &major)
			if major == abi.Major || info.ABIMajor != abi.Major {
				info.ABIMajor = major
			}
		}
	}
	switch {
	case info.ABIMajor == 0:
		info.Problems = append(info.Problems, "module exports no wapper ABI marker ("+abi.Marker+"); is it a wapper plugin built with sdk-go or sdk-rust?")
	case info.ABIMajor != abi.Major:
		info.Problems = append(info.Problems, fmt.Sprintf("ABI major %d is not supported by this host (speaks %d)", info.ABIMajor, abi.Major))
	default:
		checkExports(info, exports)
	}
	if _, start := exports["_start"]; start && exports[abi.ExportInitialize] == nil {
		// Go's default build mode: the exports would run before the Go
		// runtime is initialized and trap (runtime.notInitialized).
		info.Problems = append(info.Problems, "the module is a WASI command (it exports _start and no "+abi.ExportInitialize+
			"), so its exports would run before its runtime is initialized; rebuild it as a reactor: "+
			"GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (Rust: crate-type = [\"cdylib\"])")
	}
	if _, ok := compiled.ExportedMemories()["memory"]; !ok {
		info.Problems = append(info.Problems, `module exports no linear memory named "memory"`)
	}
	for _, m := range compiled.ExportedMemories() {
		info.MemoryMinPages = m.Min()
	}
	for _, m := range compiled.ImportedMemories() {
		mod, name, _ := m.Import()
		info.Problems = append(info.Problems, fmt.Sprintf("imports memory %s.%s; plugins must define and export their own memory", mod, name))
	}
	for _, d := range compiled.ImportedFunctions() {
		mod, name, _ := d.Import()
		info.Imports = append(info.Imports, mod+"."+name+sigOf(d).String())
		checkImport(info, mod, name, d)
	}
	sort.Strings(info.Exports)
	sort.Strings(info.Imports)
	sort.Strings(info.Optional)
}

func checkExports(info *ModuleInfo, exports map[string]api.FunctionDefinition) {
	names := make([]string, 0, len(requiredExports))
	for n := range requiredExports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want := requiredExports[n]
		d, ok := exports[n]
		switch {
		case !ok:
			info.Problems = append(info.Problems, fmt.Sprintf("missing required export %s%s", n, want))
		case !want.matches(d):
			info.Problems = append(info.Problems, fmt.Sprintf("export %s has signature %s, want %s", n, sigOf(d), want))
		}
	}
	for n, want := range optionalExports {
		d, ok := exports[n]
		if !ok {
			continue
		}
		if !want.matches(d) {
			info.Problems = append(info.Problems, fmt.Sprintf("optional export %s has signature %s, want %s", n, sigOf(d), want))
			continue
		}
		info.Optional = append(info.Optional, n)
	}
}

func checkImport(info *ModuleInfo, mod, name string, d api.FunctionDefinition) {
	switch mod {
	case abi.ImportModule:
		hf, ok := hostFuncByName(name)
		switch {
		case !ok:
			info.Problems = append(info.Problems, fmt.Sprintf("imports %s.%s, which this host does not provide (ABI %d.%d); the plugin may need a newer wapper-host", mod, name, abi.Major, abi.Minor))
		case !hf.sig.matches(d):
			info.Problems = append(info.Problems, fmt.Sprintf("imports %s.%s with signature %s, the host provides %s", mod, name, sigOf(d), hf.sig))
		}
	case wasi_snapshot_preview1.ModuleName:
		if !wasiFuncs[name] {
			info.Problems = append(info.Problems, fmt.Sprintf("imports %s.%s, which is not a WASI preview1 function", mod, name))
		}
	default:
		info.Problems = append(info.Problems, fmt.Sprintf("imports %s.%s; plugins may import only %q and %q", mod, name, abi.ImportModule, wasi_snapshot_preview1.ModuleName))
	}
}

func sigOf(d api.FunctionDefinition) sig { return sig{d.ParamTypes(), d.ResultTypes()} }

func (info *ModuleInfo) err() error {
	if len(info.Problems) == 0 {
		return nil
	}
	errs := make([]error, len(info.Problems))
	for i, p := range info.Problems {
		errs[i] = errors.New(p)
	}
	return &RefusedError{Problems: info.Problems, err: errors.Join(errs...)}
}

// RefusedError is returned for a module the loader refuses.
type RefusedError struct {
	Problems []string
	err      error
}

func (e *RefusedError) Error() string {
	if len(e.Problems) == 1 {
		return "module refused: " + e.Problems[0]
	}
	return "module refused:\n  " + strings.Join(e.Problems, "\n  ")
}

// Unwrap returns the joined problems.
func (e *RefusedError) Unwrap() error { return e.err }

// compile is r.CompileModule with a panic in wazero, which fuzzing found
// for some malformed modules, turned into an error: a module must never
// take the host down.
func compile(ctx context.Context, r wazero.Runtime, wasm []byte) (compiled wazero.CompiledModule, err error) {
	defer func() {
		if v := recover(); v != nil {
			compiled, err = nil, fmt.Errorf("the WebAssembly compiler failed on it: %v", v)
		}
	}()
	return r.CompileModule(ctx, wasm)
}
