package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"wapper.dev/wapper/host/runtime/internal/stackguard"
)

// How a guest call is stopped at its deadline (DESIGN.md §5).
//
// The stack guard's rewrite gives every module a stop flag, a global the
// guest checks where every call and every loop iteration begins (see
// package stackguard). When an instance's context ends (its call timed
// out, it is being closed, or the plugin is), the host sets the flag and
// the guest traps at its next check; the host then names the trap after
// what ended the context. This costs the guest a load and a branch per
// check, where wazero's WithCloseOnContextDone makes the compiled code
// exit to Go at every function entry and loop header, which multiplied the
// CPU time of a tight loop by fifty and of a reading by four.
//
// The flag is read by wazero's compiler with plain loads from native code.
// Its interpreter, used where the compiler is not, would read it as a Go
// data race: there the runtime must keep WithCloseOnContextDone.
//
// The flag is not enough on its own, so it is off (stopByFlag): Go cannot
// preempt a goroutine that runs wazero's compiled code, so a guest that
// loops without exiting to Go holds off every stop-the-world of the
// garbage collector, and while the collector waits for it no other
// goroutine runs, the watchdog that would set the flag included: the host
// freezes until the guest ends by itself (TestGuestStoppedAtDeadline hangs
// so with stopByFlag on, and passes with GOGC=off).
// WithCloseOnContextDone's exits to Go at every loop header are also what
// lets the collector in. wazero 1.12 makes none at function entries, so the
// stack guard's prologue enters an empty loop once every
// stackguard.CheckEvery calls: a guest that recurses without loops
// (fib(60)) is stopped at its deadline and lets the collector in too.
// Turning the flag on needs the guest to exit to Go now and then by itself
// at loop headers as well (for instance a countdown at each check whose
// expiry runs memory.grow 0, which wazero serves in Go).

// stopByFlag reports whether the plugins' runtimes stop guests with the
// stop flag instead of WithCloseOnContextDone. It needs wazero's compiler
// (amd64, arm64: the interpreter would race on the flag) and guests that
// yield to Go (see above), so it is off.
const stopByFlag = false

// runtimeConfig is the wazero configuration of a plugin's runtime.
func runtimeConfig(pages uint32, cache wazero.CompilationCache) wazero.RuntimeConfig {
	return wazero.NewRuntimeConfig().
		WithCloseOnContextDone(!stopByFlag).
		WithMemoryLimitPages(pages).
		WithCompilationCache(cache)
}

// armStop makes the end of the instance's context set the stop flag of
// mod. A module without the flag defines no function, so it runs no guest
// code that could need stopping.
func (in *instance) armStop(mod api.Module) {
	if !stopByFlag {
		return
	}
	flag, ok := mod.ExportedGlobal(stackguard.StopExport).(api.MutableGlobal)
	if !ok {
		return
	}
	in.unarm = context.AfterFunc(in.ctx, func() { flag.Set(1) })
}

// disarm undoes armStop, before the instance is closed.
func (in *instance) disarm() {
	if in.unarm != nil {
		in.unarm()
		in.unarm = nil
	}
}

// runStart calls the module's start function, which the stack guard took
// out of instantiation so that the stop flag can stop it.
func (in *instance) runStart() error {
	f := in.mod.ExportedFunction(stackguard.StartExport)
	if f == nil {
		return nil
	}
	if err := f.CallWithStack(in.ctx, in.stack[:]); err != nil {
		return fmt.Errorf("start function: %w", in.describe(err))
	}
	return nil
}

// cause returns the error of a guest call as what made it fail: a call
// that outlived its deadline failed for that reason, whatever it trapped
// with, and a trap after the instance's context ended is the stop flag
// (or wazero's close) cancelling the call. A proc_exit keeps its code.
func (in *instance) cause(err error) error {
	if in.timedOut.Load() {
		return sys.NewExitError(sys.ExitCodeDeadlineExceeded)
	}
	var exit *sys.ExitError
	if in.ctx.Err() != nil && !errors.As(err, &exit) {
		return sys.NewExitError(sys.ExitCodeContextCanceled)
	}
	return err
}
