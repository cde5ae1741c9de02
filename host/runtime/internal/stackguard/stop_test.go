package stackguard

//go:generate wat2wasm -o testdata/stop.wasm testdata/stop.wat
//go:generate wat2wasm -o testdata/stopstart.wasm testdata/stopstart.wat

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// stopEngines are the wazero engines the stop flag is for: the compiler
// (wazevo), whose loads of the flag the tests check. wazero's interpreter
// would read the flag as a Go data race, so a host uses it with
// WithCloseOnContextDone instead.
var stopEngines = []struct {
	name string
	cfg  func() wazero.RuntimeConfig
}{
	{"compiler", wazero.NewRuntimeConfigCompiler},
}

// stopRuntime returns a runtime whose env.started calls started: the
// guests of stop.wat call it once before they run forever.
func stopRuntime(t *testing.T, cfg wazero.RuntimeConfig, started func()) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { r.Close(ctx) })
	if _, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(context.Context) { started() }).Export("started").
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// spinSafely prepares the test for guests spinning in compiled code with
// no context to check: such a guest never reaches a Go safepoint, so a
// GC phase that needs every P waits for it forever, and so does the
// goroutine that would set the flag when no P is left to run it (seen
// twice in CI: a GC worker in mark termination's forEachP, on the only
// other P of a 2-core machine). The GC is finished and turned off while
// the guests spin, and spare Ps let the test's goroutines run beside a
// spinning guest and a waiting GC worker.
func spinSafely(t *testing.T) {
	gc := debug.SetGCPercent(-1)
	runtime.GC() // finish any cycle under way before a guest spins
	procs := runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0)+2))
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(gc)
	})
}

func stopFlag(t *testing.T, m api.Module) api.MutableGlobal {
	t.Helper()
	g, ok := m.ExportedGlobal(StopExport).(api.MutableGlobal)
	if !ok {
		t.Fatalf("the instrumented module exports no mutable global %q", StopExport)
	}
	if g.Type() != api.ValueTypeI32 || g.Get() != 0 {
		t.Fatalf("stop flag: type %v, value %d; want an i32 at 0", g.Type(), g.Get())
	}
	return g
}

// TestStopFlag runs guests that never end and sets the stop flag from
// another goroutine once they run: each must trap with unreachable, with
// no help from wazero (no WithCloseOnContextDone, no context deadline).
// wazevo must load the flag anew at every loop iteration and call.
func TestStopFlag(t *testing.T) {
	spinSafely(t)
	out := mustInstrument(t, testdata(t, "stop.wasm"), BudgetForBytes(1<<20), options{strict: true})
	for _, eng := range stopEngines {
		for _, fn := range []string{"spin", "count", "fib60"} {
			t.Run(eng.name+"/"+fn, func(t *testing.T) {
				started := make(chan struct{}, 1)
				r := stopRuntime(t, eng.cfg(), func() { started <- struct{}{} })
				m := instantiate(t, r, out)
				stop := stopFlag(t, m)
				done := make(chan error, 1)
				go func() {
					_, err := m.ExportedFunction(fn).Call(context.Background())
					done <- err
				}()
				select {
				case <-started:
				case err := <-done:
					t.Fatalf("%s returned before it started: %v", fn, err)
				}
				stop.Set(1)
				err := <-done
				if err == nil || !strings.Contains(err.Error(), "unreachable") {
					t.Fatalf("%s after the stop flag was set: %v, want the unreachable trap", fn, err)
				}
				// The flag stays set: every later call traps at once.
				if _, err := m.ExportedFunction("one").Call(context.Background()); err == nil {
					t.Fatal("a call after the stop returned; want a trap")
				}
			})
		}
	}
}

// TestStopFlagZeroRunsNormally checks that a flag at zero changes nothing.
func TestStopFlagZeroRunsNormally(t *testing.T) {
	out := mustInstrument(t, testdata(t, "stop.wasm"), BudgetForBytes(1<<20), options{strict: true})
	m := instantiate(t, stopRuntime(t, wazero.NewRuntimeConfig(), func() {}), out)
	stopFlag(t, m)
	res, err := m.ExportedFunction("one").Call(context.Background())
	if err != nil || len(res) != 1 || res[0] != 1 {
		t.Fatalf("one() = %v, %v; want [1]", res, err)
	}
}

// TestStopStart checks that a start function does not run inside
// instantiation, where nothing could stop it, but from StartExport, where
// the stop flag does.
func TestStopStart(t *testing.T) {
	spinSafely(t)
	out := mustInstrument(t, testdata(t, "stopstart.wasm"), BudgetForBytes(1<<20), options{strict: true})
	for _, eng := range stopEngines {
		t.Run(eng.name, func(t *testing.T) {
			calling := false // set before StartExport is called
			started := make(chan struct{}, 1)
			r := stopRuntime(t, eng.cfg(), func() {
				if !calling {
					panic("the start function ran during instantiation")
				}
				started <- struct{}{}
			})
			m := instantiate(t, r, out)
			stop := stopFlag(t, m)
			start := m.ExportedFunction(StartExport)
			if start == nil {
				t.Fatalf("the start function is not exported as %q", StartExport)
			}
			calling = true
			done := make(chan error, 1)
			go func() {
				_, err := start.Call(context.Background())
				done <- err
			}()
			select {
			case <-started:
			case err := <-done:
				t.Fatalf("start returned before it started: %v", err)
			}
			stop.Set(1)
			if err := <-done; err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("start after the stop flag was set: %v, want the unreachable trap", err)
			}
		})
	}
}

// TestStopReservedNames checks that a module cannot bring its own flag or
// start export: the host would set or call the module's instead.
func TestStopReservedNames(t *testing.T) {
	for _, name := range []string{StopExport, StartExport} {
		// (func (export name)) with an empty body.
		bin := mod(
			sec(secType, u(1), []byte{0x60, 0, 0}),
			sec(secFunction, u(1), u(0)),
			sec(secExport, u(1), u(uint64(len(name))), []byte(name), []byte{0x00}, u(0)),
			sec(secCode, u(1), u(2), []byte{0x00, 0x0b}),
		)
		if _, err := Instrument(bin, 1000); !errors.Is(err, ErrUnsupported) {
			t.Errorf("a module exporting %q: %v, want ErrUnsupported", name, err)
		}
	}
}

// TestStopKeepsExports checks the export section the rewrite writes: the
// module's exports, then the start function and the flag.
func TestStopKeepsExports(t *testing.T) {
	out := mustInstrument(t, testdata(t, "stop.wasm"), 1000, options{})
	c, err := wazero.NewRuntime(context.Background()).CompileModule(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"spin", "count", "fib60", "one"} {
		if c.ExportedFunctions()[fn] == nil {
			t.Errorf("export %s is gone", fn)
		}
	}
	if c.ExportedFunctions()[StartExport] != nil {
		t.Errorf("a module without a start section exports %q", StartExport)
	}
	if bytes.Contains(out, []byte(StartExport)) {
		t.Errorf("the rewrite names %q without a start section", StartExport)
	}
}
