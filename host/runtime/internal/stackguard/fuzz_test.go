package stackguard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/tetratelabs/wazero"
)

// fuzzAllocLimit is the most that wazero may allocate to compile one fuzz
// input that Check accepts, or its instrumented version.
const fuzzAllocLimit = 64 << 20

// FuzzInstrument checks that Check and Instrument never panic; that wazero
// never allocates more than fuzzAllocLimit to compile a module that Check
// accepts; that every module wazero compiles is accepted (but for the
// encodings of errTypedRefs and errWazeroEncoding), passes the strict
// stack-height analysis, and comes out as a module that wazero compiles
// too; and that Check refuses only modules that wazero refuses, apart from
// the limits on locals.
//
// Any input is handed to wazero once Check accepts it. An input Check
// refuses is handed to wazero only if it is wazeroSafe, to see that wazero
// refuses it too.
func FuzzInstrument(f *testing.F) {
	for _, name := range []string{"recurse.wasm", "control.wasm", "bench.wasm", "spectest.wasm"} {
		f.Add(testdata(f, name), uint32(1000))
	}
	for _, vt := range []byte{valI64, valF64, valV128} {
		f.Add(frameModule(vt, 3, 2, 3), uint32(60))
	}
	f.Add(header, uint32(0))
	f.Add([]byte{}, uint32(MaxBudget))
	f.Add(honestModule(), uint32(100))
	f.Add(localsModule(2, MaxFunctionLocals), uint32(100))
	for _, h := range hostile {
		f.Add(h.bin, uint32(100))
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	f.Cleanup(func() { r.Close(ctx) })
	// compile compiles bin with wazero, checks what it allocated, and
	// turns a panic of wazero into an errWazeroPanic.
	compile := func(t *testing.T, bin []byte) (cm wazero.CompiledModule, err error) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			runtime.ReadMemStats(&after)
			if d := after.TotalAlloc - before.TotalAlloc; d > fuzzAllocLimit {
				t.Errorf("wazero allocated %d MiB to compile a %d-byte module (error: %v)", d>>20, len(bin), err)
			}
			if p := recover(); p != nil {
				err = fmt.Errorf("%w: %v", errWazeroPanic, p)
				r = wazero.NewRuntime(ctx) // the old one may be left in any state
			}
		}()
		return r.CompileModule(ctx, bin)
	}
	f.Fuzz(func(t *testing.T, bin []byte, budget uint32) {
		out, err := Instrument(bin, budget)
		if budget > MaxBudget {
			if err == nil {
				t.Fatalf("budget %d accepted", budget)
			}
			return
		}
		if cerr := Check(bin); cerr != nil {
			if err == nil {
				t.Fatalf("Check refuses the module but Instrument accepts it: %v", cerr)
			}
			if errors.Is(cerr, errTooManyLocals) || !wazeroSafe(bin) {
				return
			}
			if cm, werr := compile(t, bin); werr == nil {
				cm.Close(ctx)
				t.Fatalf("wazero compiles the module but Check refuses it: %v", cerr)
			}
			return
		}
		cm, cerr := compile(t, bin)
		if errors.Is(cerr, errWazeroPanic) {
			// wazero v1.12.0 panics on some invalid modules (a call to a
			// function whose type index is out of range, say). The host
			// only gives wazero what Instrument returns.
			if err == nil {
				if cm, err := compile(t, out); errors.Is(err, errWazeroPanic) {
					t.Fatalf("wazero panics on the instrumented module: %v", err)
				} else if err == nil {
					cm.Close(ctx)
				}
			}
			return
		}
		if cerr != nil {
			return // not a valid module: an error or any output is fine
		}
		cm.Close(ctx)
		if errors.Is(err, errTypedRefs) || errors.Is(err, errWazeroEncoding) {
			return // refused by design, though wazero compiles it
		}
		if err != nil {
			t.Fatalf("wazero compiles the module but Instrument fails: %v", err)
		}
		if _, err := instrument(bin, budget, options{strict: true}); err != nil {
			t.Fatalf("strict analysis: %v", err)
		}
		if err := Check(out); err != nil {
			t.Fatalf("the instrumented module fails Check: %v", err)
		}
		cm, err = compile(t, out)
		if err != nil {
			t.Fatalf("the instrumented module does not compile: %v", err)
		}
		cm.Close(ctx)
	})
}

// errWazeroPanic marks a panic of wazero in CompileModule.
var errWazeroPanic = errors.New("wazero panics")

// wazeroSafe reports whether bin can be given to wazero's decoder in a
// fuzz test although Check refuses it: it is small and its LEB128
// numbers, wherever they start, are at most its length (or 256), so no
// count it declares can be large.
func wazeroSafe(bin []byte) bool {
	if len(bin) > 4<<10 {
		return false
	}
	limit := uint64(max(len(bin), 256))
	for i := range bin {
		r := reader{b: bin, pos: i}
		if v, err := r.uleb(32); err == nil && v > limit {
			return false
		}
	}
	return true
}
