package stackguard

// The test modules are written in WebAssembly text; `go generate` rebuilds
// the committed binaries with wabt's wat2wasm (Debian package wabt).
//go:generate wat2wasm -o testdata/bench.wasm testdata/bench.wat
//go:generate wat2wasm -o testdata/control.wasm testdata/control.wat
//go:generate wat2wasm -o testdata/recurse.wasm testdata/recurse.wat
//go:generate wat2wasm -o testdata/spectest.wasm testdata/spectest.wat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"wapper.dev/wapper/internal/testenv"
)

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatalf("%v (regenerate with `go generate`, which needs wabt's wat2wasm)", err)
	}
	return b
}

func newRuntime(t testing.TB) wazero.Runtime {
	r := wazero.NewRuntime(context.Background())
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func instantiate(t testing.TB, r wazero.Runtime, bin []byte) api.Module {
	t.Helper()
	m, err := r.InstantiateWithConfig(context.Background(), bin, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	return m
}

func mustInstrument(t testing.TB, bin []byte, budget uint32, opt options) []byte {
	t.Helper()
	out, err := instrument(bin, budget, opt)
	if err != nil {
		t.Fatalf("instrument: %v", err)
	}
	return out
}

func TestRecursionTrapsAtBudget(t *testing.T) {
	ctx := context.Background()
	bin := testdata(t, "recurse.wasm")
	var costs []uint64
	mustInstrument(t, bin, MaxBudget, options{strict: true, costs: &costs})
	for i, name := range []string{"rec", "rec_return"} {
		t.Run(name, func(t *testing.T) {
			c := costs[i]
			const frames = 100 // rec(n) makes n+1 frames
			t.Logf("cost of %s: %d slots; budget for %d frames: %d", name, c, frames, frames*c)
			for _, tc := range []struct {
				budget uint64
				ok     int // deepest argument that returns
			}{
				{frames * c, frames - 1},
				{frames*c + c - 1, frames - 1},
				{(frames + 1) * c, frames},
				{c, 0},
			} {
				r := newRuntime(t)
				m := instantiate(t, r, mustInstrument(t, bin, uint32(tc.budget), options{exportCounter: "counter"}))
				f := m.ExportedFunction(name)
				counter := m.ExportedGlobal("counter")
				// Twice: the counter must be back to zero after the first.
				for range 2 {
					res, err := f.Call(ctx, uint64(tc.ok))
					if err != nil || res[0] != uint64(tc.ok) {
						t.Fatalf("budget %d: %s(%d) = %v, %v; want %d", tc.budget, name, tc.ok, res, err, tc.ok)
					}
					if v := counter.Get(); v != 0 {
						t.Fatalf("budget %d: counter is %d after %s returned", tc.budget, v, name)
					}
				}
				_, err := f.Call(ctx, uint64(tc.ok+1))
				if err == nil || !strings.Contains(err.Error(), "unreachable") {
					t.Fatalf("budget %d: %s(%d) = %v, want the guard's unreachable trap", tc.budget, name, tc.ok+1, err)
				}
			}
			// A function that costs more than the whole budget never runs.
			r0 := newRuntime(t)
			f0 := instantiate(t, r0, mustInstrument(t, bin, uint32(c-1), options{})).ExportedFunction(name)
			if _, err := f0.Call(ctx, 0); err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("budget %d below the cost %d: %s(0) = %v, want unreachable", c-1, c, name, err)
			}
			// The public API, without the test exports, behaves the same.
			r := newRuntime(t)
			out, err := Instrument(bin, uint32(frames*c))
			if err != nil {
				t.Fatal(err)
			}
			f := instantiate(t, r, out).ExportedFunction(name)
			for range 3 {
				if res, err := f.Call(ctx, frames-1); err != nil || res[0] != frames-1 {
					t.Fatalf("%s(%d) = %v, %v", name, frames-1, res, err)
				}
			}
			if _, err := f.Call(ctx, frames); err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("%s(%d) = %v, want unreachable", name, frames, err)
			}
		})
	}
}

func TestControlFlowUnchanged(t *testing.T) {
	ctx := context.Background()
	bin := testdata(t, "control.wasm")
	out := mustInstrument(t, bin, 10000, options{strict: true, exportCounter: "counter"})
	plain, inst := instantiate(t, newRuntime(t), bin), instantiate(t, newRuntime(t), out)
	counter := inst.ExportedGlobal("counter")
	exports := []string{"nested", "br_func", "table", "indirect", "multi", "pair", "block_params", "void", "dead", "fact"}
	args := []int32{-100, -7, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 40, 101, 1 << 30}
	calls := 0
	for _, name := range exports {
		f1, f2 := plain.ExportedFunction(name), inst.ExportedFunction(name)
		if f1 == nil || f2 == nil {
			t.Fatalf("export %s missing", name)
		}
		for _, a := range args {
			for _, b := range args {
				r1, e1 := f1.Call(ctx, api.EncodeI32(a), api.EncodeI32(b))
				r2, e2 := f2.Call(ctx, api.EncodeI32(a), api.EncodeI32(b))
				calls++
				if fmt.Sprint(e1) != fmt.Sprint(e2) || !slices.Equal(r1, r2) {
					t.Fatalf("%s(%d, %d): original %v, %v; instrumented %v, %v", name, a, b, r1, e1, r2, e2)
				}
				if e1 != nil {
					t.Fatalf("%s(%d, %d): %v", name, a, b, e1)
				}
				if v := counter.Get(); v != 0 {
					t.Fatalf("%s(%d, %d): counter is %d after the call", name, a, b, v)
				}
			}
		}
	}
	t.Logf("%d calls return the same values", calls)
}

func TestRefusesUnsupported(t *testing.T) {
	// A module with one function of type [] -> [] and the given body.
	module := func(body ...byte) []byte {
		b := slices.Clone(header)
		b = appendSection(b, secType, []byte{1, 0x60, 0, 0})
		b = appendSection(b, secFunction, []byte{1, 0})
		code := appendULEB(nil, uint64(len(body)+1))
		code = append(code, 0) // no locals
		code = append(code, body...)
		return appendSection(b, secCode, append([]byte{1}, code...))
	}
	if _, err := Instrument(module(0x01, 0x0b), 100); err != nil {
		t.Fatalf("nop: %v", err)
	}
	for name, body := range map[string][]byte{
		"return_call":          {0x12, 0x00, 0x0b},
		"return_call_indirect": {0x41, 0x00, 0x13, 0x00, 0x00, 0x0b},
		"try_table":            {0x1f, 0x40, 0x00, 0x0b, 0x0b},
		"legacy try":           {0x06, 0x40, 0x0b, 0x0b},
		"throw":                {0x08, 0x00, 0x0b},
		"atomic.fence":         {0xfe, 0x03, 0x00, 0x0b},
		"relaxed SIMD":         {0xfd, 0x80, 0x02, 0x0b},
		"unknown opcode":       {0xc5, 0x0b},
	} {
		_, err := Instrument(module(body...), 100)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: got %v, want ErrUnsupported", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	for name, bin := range map[string][]byte{
		"empty":        nil,
		"bad magic":    []byte("\x00asm\x02\x00\x00\x00"),
		"truncated":    module(0x01, 0x0b)[:20],
		"missing end":  module(0x01),
		"bytes at end": module(0x0b, 0x01),
		"bad else":     module(0x05, 0x0b),
	} {
		if _, err := Instrument(bin, 100); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Instrument(module(0x0b), MaxBudget+1); err == nil {
		t.Error("budget above MaxBudget: no error")
	}
}

func TestSections(t *testing.T) {
	bin := testdata(t, "recurse.wasm")
	custom := func(name string, data string) []byte {
		p := appendULEB(nil, uint64(len(name)))
		p = append(p, name...)
		return appendSection(nil, secCustom, append(p, data...))
	}
	in := slices.Concat(bin, custom("producers", "x"), custom(".debug_info", "y"), custom("name", ""))
	out, err := Instrument(in, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var ids []byte
	r := reader{b: out, pos: 8}
	for !r.eof() {
		id, _ := r.byte()
		n, _ := r.u32()
		p, err := r.bytes(uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if id == secCustom {
			pr := reader{b: p}
			name, _ := pr.name()
			names = append(names, string(name))
		}
	}
	if want := []string{"producers", "name"}; !slices.Equal(names, want) {
		t.Errorf("custom sections %q, want %q", names, want)
	}
	// recurse.wasm has no global section: one is added before the export section.
	if want := []byte{1, 3, 6, 7, 10, 0, 0}; !slices.Equal(ids, want) {
		t.Errorf("sections %v, want %v", ids, want)
	}
	if _, err := wazero.NewRuntime(context.Background()).CompileModule(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	// A module without functions is returned as it is.
	empty := slices.Concat(header, custom("name", ""))
	if out, err := Instrument(empty, 10); err != nil || !slices.Equal(out, empty) {
		t.Errorf("module without code: %x, %v", out, err)
	}
}

func TestBudgetForBytes(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want uint32
	}{{0, 0}, {7, 0}, {8, 1}, {1 << 20, 1 << 17}, {1 << 40, MaxBudget}} {
		if got := BudgetForBytes(tc.n); got != tc.want {
			t.Errorf("BudgetForBytes(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// frameModule builds a module whose function f(depth i64, ...) recurses
// depth times and then calls the host function env.rec, while keeping
// values of type vt alive across the recursive call: nStack on the operand
// stack, nLocals in locals and nParams-1 extra parameters.
func frameModule(vt byte, nStack, nLocals, nParams int) []byte {
	// mk pushes a new value of type vt computed from parameter 0.
	mk := func(b []byte, i int) []byte {
		switch vt {
		case valI64:
			b = append(b, 0x20, 0, 0x42)
			b = appendSLEB(b, int64(i+1))
			return append(b, 0x7c)
		case valF64:
			b = append(b, 0x20, 0, 0xb9, 0x44)
			b = append(b, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f) // 1.0
			return append(b, 0xa0)
		default:
			b = append(b, 0x20, 0, 0x42)
			b = appendSLEB(b, int64(i+1))
			return append(b, 0x7c, 0xfd, 0x12) // i64x2.splat
		}
	}
	add := map[byte][]byte{valI64: {0x7c}, valF64: {0xa0}, valV128: {0xfd, 0xce, 0x01}}[vt]
	var body []byte
	for i := range nLocals {
		body = mk(body, i)
		body = append(body, 0x21)
		body = appendULEB(body, uint64(nParams+i))
	}
	for i := range nStack {
		body = mk(body, i)
	}
	// if depth == 0 { rec(); 0 } else { f(depth-1, params...) }
	body = append(body, 0x20, 0, 0x50, 0x04, valI64, 0x10, 0, 0x42, 0, 0x05, 0x20, 0, 0x42, 1, 0x7d)
	for j := 1; j < nParams; j++ {
		body = append(body, 0x20)
		body = appendULEB(body, uint64(j))
	}
	body = append(body, 0x10, 1, 0x0b)
	switch vt {
	case valF64:
		body = append(body, 0xb9)
	case valV128:
		body = append(body, 0xfd, 0x12)
	}
	for range nStack {
		body = append(body, add...)
	}
	for i := range nLocals {
		body = append(body, 0x20)
		body = appendULEB(body, uint64(nParams+i))
		body = append(body, add...)
	}
	for j := 1; j < nParams; j++ {
		body = append(body, 0x20)
		body = appendULEB(body, uint64(j))
		body = append(body, add...)
	}
	switch vt {
	case valF64:
		body = append(body, 0xb0)
	case valV128:
		body = append(body, 0xfd, 0x1d, 0)
	}
	body = append(body, 0x0b)

	b := slices.Clone(header)
	ft := []byte{2, 0x60, 0, 0, 0x60}
	ft = appendULEB(ft, uint64(nParams))
	ft = append(ft, valI64)
	for range nParams - 1 {
		ft = append(ft, vt)
	}
	ft = append(ft, 1, valI64)
	b = appendSection(b, secType, ft)
	b = appendSection(b, secImport, []byte{1, 3, 'e', 'n', 'v', 3, 'r', 'e', 'c', 0, 0})
	b = appendSection(b, secFunction, []byte{1, 1})
	b = appendSection(b, secExport, []byte{1, 1, 'f', 0, 1})
	var locals []byte
	if nLocals > 0 {
		locals = appendULEB([]byte{1}, uint64(nLocals))
		locals = append(locals, vt)
	} else {
		locals = []byte{0}
	}
	fb := append(locals, body...)
	code := appendULEB([]byte{1}, uint64(len(fb)))
	return appendSection(b, secCode, append(code, fb...))
}

// TestCostCoversWazeroFrames measures the native frame that wazero
// compiles for functions of various shapes (the distance between the stack
// pointers that a host function sees at two recursion depths) and checks
// that the cost of the instrumented function covers it.
func TestCostCoversWazeroFrames(t *testing.T) {
	ctx := context.Background()
	type shape struct{ stack, locals, params int }
	var shapes []shape
	for _, n := range []int{0, 1, 4, 8, 16, 32, 64, 256} {
		shapes = append(shapes, shape{n, 0, 1}, shape{0, n, 1})
		if n > 0 && n <= 32 {
			shapes = append(shapes, shape{0, 0, n})
		}
	}
	shapes = append(shapes, shape{16, 16, 16})
	worst, worstShape := 0.0, ""
	for _, vt := range []byte{valI64, valF64, valV128} {
		for _, s := range shapes {
			bin := frameModule(vt, s.stack, s.locals, s.params)
			var costs []uint64
			out := mustInstrument(t, bin, MaxBudget, options{strict: true, costs: &costs})
			r := newRuntime(t)
			var sp uintptr
			_, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
				WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
					sp = uintptr(unsafe.Pointer(unsafe.SliceData(stack)))
				}), nil, nil).Export("rec").Instantiate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f := instantiate(t, r, out).ExportedFunction("f")
			nargs := s.params
			if vt == valV128 {
				nargs = 1 + 2*(s.params-1) // a v128 is two words
			}
			args := make([]uint64, nargs)
			const depth = 1000
			args[0] = depth // grows the stack once, so that it does not move below
			if _, err := f.Call(ctx, args...); err != nil {
				t.Fatal(err)
			}
			args[0] = 0
			f.Call(ctx, args...)
			sp0 := sp
			args[0] = depth
			f.Call(ctx, args...)
			if sp0 == 0 || sp0 <= sp || (sp0-sp)%depth != 0 {
				t.Fatalf("%#x %+v: stack pointers %#x and %#x", vt, s, sp0, sp)
			}
			frame := uint64(sp0-sp) / depth
			if frame > costs[0]*SlotBytes {
				t.Errorf("value type %#x, %+v: frame of %d bytes, cost %d slots (%d bytes)", vt, s, frame, costs[0], costs[0]*SlotBytes)
			}
			if ratio := float64(frame) / float64(costs[0]*SlotBytes); ratio > worst {
				worst = ratio
				worstShape = fmt.Sprintf("value type %#x, %+v: frame %d slots, cost %d", vt, s, frame/SlotBytes, costs[0])
			}
		}
	}
	t.Logf("largest frame/cost ratio: %.2f (%s)", worst, worstShape)
}

// pluginRun runs a plugin's first calls and returns what they returned,
// with the bytes each result points to.
func pluginRun(t *testing.T, bin []byte, exports bool) (trace []string, peak uint64) {
	t.Helper()
	ctx := context.Background()
	r := newRuntime(t)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	// Stub every import other than WASI with a function that returns zeros.
	stubs := map[string]wazero.HostModuleBuilder{}
	for _, d := range cm.ImportedFunctions() {
		mod, name, _ := d.Import()
		if mod == wasi_snapshot_preview1.ModuleName {
			continue
		}
		if stubs[mod] == nil {
			stubs[mod] = r.NewHostModuleBuilder(mod)
		}
		n := len(d.ResultTypes())
		stubs[mod].NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			clear(stack[:n])
		}), d.ParamTypes(), d.ResultTypes()).Export(name)
	}
	for mod, b := range stubs {
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatalf("stub %s: %v", mod, err)
		}
	}
	m, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("plugin").WithStartFunctions())
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	var counter, peakG api.Global
	if exports {
		counter, peakG = m.ExportedGlobal("counter"), m.ExportedGlobal("peak")
	}
	call := func(name string, args ...uint64) uint64 {
		f := m.ExportedFunction(name)
		if f == nil {
			trace = append(trace, name+": not exported")
			return 0
		}
		res, err := f.Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if counter != nil && counter.Get() != 0 {
			t.Fatalf("%s: counter is %d after the call", name, counter.Get())
		}
		line := fmt.Sprintf("%s%v = %v", name, args, res)
		if len(res) == 1 && name != "wapper_alloc" {
			ptr, n := uint32(res[0]>>32), uint32(res[0])
			if b, ok := m.Memory().Read(ptr, n); ok && n > 0 {
				line += fmt.Sprintf(" %q", b)
			}
		}
		trace = append(trace, line)
		if len(res) == 0 {
			return 0
		}
		return res[0]
	}
	pass := func(s string) (uint64, uint64) {
		p := call("wapper_alloc", uint64(len(s)))
		if !m.Memory().Write(uint32(p), []byte(s)) {
			t.Fatalf("write %d bytes at %#x", len(s), p)
		}
		return p, uint64(len(s))
	}
	if m.ExportedFunction("_initialize") != nil {
		m.ExportedFunction("_initialize").Call(ctx)
		if counter != nil && counter.Get() != 0 {
			t.Fatalf("_initialize: counter is %d after the call", counter.Get())
		}
	}
	call("wapper_abi_v1")
	p, n := pass(`{}`)
	call("wapper_init", p, n)
	p, n = pass(`{"id":7,"namespace":"default","name":"thermo-1","model":"m","protocol":"virtual",
		"protocolConfig":{"seed":42},"properties":[
		{"handle":0,"name":"temperature","type":"DOUBLE","accessMode":"ReadOnly","minimum":"0","maximum":"100","visitor":{"kind":"sine","period":"60s"}},
		{"handle":1,"name":"switch","type":"BOOLEAN","accessMode":"ReadWrite","visitor":{"kind":"switch"}}]}`)
	call("wapper_device_add", 7, p, n)
	for range 3 {
		call("wapper_read", 7, 0)
		call("wapper_read", 7, 1)
	}
	call("wapper_device_state", 7)
	if peakG != nil {
		peak = peakG.Get()
	}
	return trace, peak
}

// pluginBudget is the budget the plugin test gives: 1 MiB of native stack.
var pluginBudget = BudgetForBytes(1 << 20)

func TestPlugins(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(t testing.TB) string
	}{
		{"virtual (Go)", func(t testing.TB) string { return testenv.Plugin(t, "virtual") }},
		{"nmea-rust (Rust)", func(t testing.TB) string { return testenv.Plugin(t, "nmea-rust") }},
		{"conformance-rust (Rust)", func(t testing.TB) string { return testenv.TestPlugin(t, "conformance-rust") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, err := os.ReadFile(tc.path(t))
			if err != nil {
				t.Fatal(err)
			}
			checkPlugin(t, bin)
		})
	}
}

func checkPlugin(t *testing.T, bin []byte) {
	want, _ := pluginRun(t, bin, false)
	out, err := Instrument(bin, pluginBudget)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := pluginRun(t, out, false)
	if !slices.Equal(got, want) {
		t.Fatalf("instrumented plugin:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var costs []uint64
	measured := mustInstrument(t, bin, pluginBudget, options{strict: true, exportCounter: "counter", exportPeak: "peak", costs: &costs})
	got, peak := pluginRun(t, measured, true)
	if !slices.Equal(got, want) {
		t.Fatalf("instrumented plugin (with peak):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	slices.Sort(costs)
	var sum uint64
	for _, c := range costs {
		sum += c
	}
	t.Logf("%d bytes -> %d bytes (+%.2f%%); %d functions, cost median %d, mean %d, max %d slots; peak %d slots (%d KiB) of %d",
		len(bin), len(out), 100*float64(len(out)-len(bin))/float64(len(bin)), len(costs),
		costs[len(costs)/2], sum/uint64(len(costs)), costs[len(costs)-1], peak, peak*SlotBytes>>10, pluginBudget)
	for _, l := range want {
		t.Log(l)
	}
}
