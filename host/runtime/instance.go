package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"wapper.dev/wapper/abi"
)

type instKey struct{}

// instance is one instantiation of a plugin's module. It is used by one
// goroutine at a time (the holder of its pool slot).
type instance struct {
	p    *Plugin
	id   int
	slot *slot // the pool slot the instance serves in
	mod  api.Module
	mem  api.Memory
	// ctx carries the instance for host functions. The watchdog cancels
	// it when a call outlives the plugin's timeout, which sets the
	// guest's stop flag (interrupt.go) so that the call traps; one
	// reusable timer per instance keeps the hot path free of allocations.
	ctx      context.Context
	cancel   context.CancelFunc
	watchdog *time.Timer
	timedOut atomic.Bool
	unarm    func() bool // stops the flag's setting (armStop)
	// deadline is when the call in progress times out; host functions
	// that block (device I/O) end before it.
	deadline time.Time
	stack    [8]uint64
	minor    uint32

	alloc, free, init, add, update, remove, read, write, state, batch, method, poll, marker api.Function

	// known maps device handles to the description version this instance
	// has been given.
	known map[uint32]known
	pend  []uint32 // sweep's scratch

	// args is a guest buffer from wapper_alloc that the instance keeps
	// for the small arguments of hot calls (callArgs), and argsCap its
	// size; argBuf is host scratch to encode them.
	args    uint32
	argsCap int
	argBuf  []byte
	// curDev is the device of the call in progress, for log tags.
	curDev *device

	// ioFail is the failure of the last device I/O call in the export
	// call in progress (nil when it worked), whose cause the export's
	// error carries (withCause).
	ioFail error

	dead   bool
	ext    map[any]any // per-instance state of host-function extensions
	closer []func()    // run when the instance is closed
}

// callErr is returned when a guest call killed the instance.
type callErr struct {
	plugin, export, reason string
	code                   abi.Code
	err                    error
}

func (e *callErr) Error() string {
	return fmt.Sprintf("plugin %s: %s: instance thrown away (%s): %v", e.plugin, e.export, e.reason, e.err)
}

func (e *callErr) Unwrap() error { return &abi.Error{Code: e.code, Message: e.err.Error()} }

// Reason of a failure that killed an instance.
const (
	reasonTrap      = "trap"
	reasonTimeout   = "timeout"
	reasonExit      = "exit"
	reasonPanic     = "panic"
	reasonMalformed = "malformed result"
)

// failed reports whether a call threw the instance away.
func (in *instance) failed() bool { return in.dead }

// newInstance creates an instance for slot s and initialises it.
func (p *Plugin) newInstance(s *slot) (_ *instance, err error) {
	in := &instance{p: p, id: s.id, slot: s, known: map[uint32]known{}}
	in.ctx, in.cancel = context.WithCancel(context.WithValue(p.stopCtx, instKey{}, in))
	in.watchdog = time.AfterFunc(time.Hour, func() { in.timedOut.Store(true); in.cancel() })
	in.watchdog.Stop()
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdout(&lineWriter{in: in, level: slog.LevelInfo}).
		WithStderr(&lineWriter{in: in, level: slog.LevelWarn}).
		WithSysWalltime().WithSysNanotime().
		WithNanosleep(in.sleep).
		WithRandSource(rand.Reader)
	// Instantiation, _initialize and the marker share one deadline of
	// twice the call timeout (SPEC.md §9): a Go runtime starts there. The
	// watchdog guards it as it guards every call, so WASI sleeps and device
	// I/O in _initialize end with it too.
	in.deadline = time.Now().Add(2 * p.timeout)
	in.watchdog.Reset(2 * p.timeout)
	mod, err := p.rt.InstantiateModule(withLinearMemory(in.ctx), p.compiled, cfg)
	if err != nil {
		in.close()
		return nil, fmt.Errorf("instantiate: %w", in.describe(err))
	}
	in.mod, in.mem = mod, mod.Memory()
	in.armStop(mod)
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	if err := in.runStart(); err != nil {
		return nil, err
	}
	fn := mod.ExportedFunction
	in.alloc, in.free, in.init = fn(abi.ExportAlloc), fn(abi.ExportFree), fn(abi.ExportInit)
	in.add, in.update, in.remove = fn(abi.ExportDeviceAdd), fn(abi.ExportDeviceUpdate), fn(abi.ExportDeviceRemove)
	in.read, in.write, in.state = fn(abi.ExportRead), fn(abi.ExportWrite), fn(abi.ExportState)
	in.batch, in.method, in.poll = fn(abi.ExportReadBatch), fn(abi.ExportMethod), fn(abi.ExportPoll)
	if f := fn(abi.ExportInitialize); f != nil {
		if err := f.CallWithStack(in.ctx, in.stack[:]); err != nil {
			return nil, fmt.Errorf("%s: %w", abi.ExportInitialize, in.describe(err))
		}
	}
	in.marker = fn(abi.ExportMarker)
	if err := in.marker.CallWithStack(in.ctx, in.stack[:]); err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportMarker, in.describe(err))
	}
	if !in.watchdog.Stop() {
		return nil, fmt.Errorf("%s: %w", abi.ExportMarker, describe(sys.NewExitError(sys.ExitCodeDeadlineExceeded)))
	}
	in.minor = uint32(in.stack[0])
	if p.skipInit {
		return in, nil
	}
	if _, err := in.callBuf(abi.ExportInit, in.init, p.initConfig, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportInit, err)
	}
	return in, nil
}

// sleep is the instance's WASI nanosleep (poll_oneoff with a clock). It
// ends early when the call's deadline passes or the instance is closed:
// wazero's own sleep ignores both, so a guest sleeping for an hour would
// hold its call, and the host's shutdown, for an hour.
func (in *instance) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.ctx.Done():
	}
}

// describe is the package's describe of the error's cause: a timeout seen
// by the watchdog is named as one even when the guest reports the trap of
// the stop flag it caused.
func (in *instance) describe(err error) error {
	return describe(in.cause(err))
}

// describe turns an error from a guest call into something a user can act
// on.
func describe(err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fmt.Errorf("call exceeded its deadline (limits.callTimeout)")
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("call cancelled")
		}
		return fmt.Errorf("plugin exited with code %d (see the plugin's stderr in the log)", exit.ExitCode())
	}
	return fmt.Errorf("trap: %w", err)
}

func reasonOf(err error) (string, abi.Code) {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return reasonTimeout, abi.ErrTimeout
		case sys.ExitCodeContextCanceled:
			return reasonExit, abi.ErrUnavailable
		}
		return reasonExit, abi.ErrInternal
	}
	return reasonTrap, abi.ErrInternal
}

func (in *instance) logger() *slog.Logger {
	l := in.p.log.With("instance", in.id)
	if d := in.curDev; d != nil {
		l = l.With("device", d.name())
	}
	return l
}

// kill throws the instance away after a failure and returns the error for
// the caller.
func (in *instance) kill(export, reason string, code abi.Code, err error) error {
	in.dead = true
	in.p.m.traps(reason).Inc()
	ce := &callErr{plugin: in.p.name, export: export, reason: reason, code: code, err: err}
	in.logger().Error("plugin instance failed; throwing it away", "export", export, "reason", reason, "err", err)
	in.close()
	return ce
}

func (in *instance) close() {
	if in.watchdog != nil {
		in.watchdog.Stop()
	}
	in.disarm()
	in.cancel() // wakes a guest sleeping in WASI
	for _, c := range in.closer {
		c()
	}
	in.closer = nil
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
}

// call runs an export under the plugin's deadline and returns the result
// payload, which aliases guest memory until the next call.
func (in *instance) call(export string, f api.Function) ([]byte, error) {
	in.ioFail = nil
	if err := in.rawCall(export, f); err != nil {
		return nil, err
	}
	r := in.stack[0]
	if r == 0 {
		return nil, nil
	}
	ptr, n := abi.Unpack(r)
	switch {
	case n == 0:
		return nil, in.kill(export, reasonMalformed, abi.ErrInternal, fmt.Errorf("result of length 0 (a result buffer holds at least its status byte)"))
	case n > abi.MaxMessage:
		return nil, in.kill(export, reasonMalformed, abi.ErrTooLarge, fmt.Errorf("result of %d bytes exceeds the ABI limit of %d", n, abi.MaxMessage))
	}
	buf, ok := in.mem.Read(ptr, n)
	if !ok {
		return nil, in.kill(export, reasonMalformed, abi.ErrInternal, fmt.Errorf("result %#x+%d is outside guest memory", ptr, n))
	}
	payload, err := abi.ParseResult(buf)
	if err != nil {
		code := abi.CodeOf(err)
		in.p.m.errors(export, code).Inc()
		if code == abi.ErrPanic {
			return nil, in.kill(export, reasonPanic, code, err)
		}
		// Copy the message: it aliases guest memory.
		return nil, in.withCause(&abi.Error{Code: code, Message: clipText(string(bytes.Clone([]byte(err.(*abi.Error).Message))))})
	}
	return payload, nil
}

// rawCall runs an export under the plugin's deadline, counted in
// wapper_plugin_calls_total and timed in
// wapper_plugin_call_duration_seconds; results stay on the stack.
func (in *instance) rawCall(export string, f api.Function) error {
	in.p.m.call(export).Inc()
	start := time.Now()
	in.deadline = start.Add(in.p.timeout)
	in.watchdog.Reset(in.p.timeout)
	err := f.CallWithStack(in.ctx, in.stack[:])
	in.p.m.callTime(export).observe(time.Since(start))
	if !in.watchdog.Stop() && err == nil {
		// The deadline passed as the call returned: the context is
		// cancelled, so the instance cannot be used again.
		err = sys.NewExitError(sys.ExitCodeDeadlineExceeded)
	}
	if err != nil {
		err = in.cause(err)
		reason, code := reasonOf(err)
		return in.kill(export, reason, code, describe(err))
	}
	return nil
}

// callBuf passes b in a guest buffer as the arguments at stack[pos],
// stack[pos+1] (pointer and byte length), calls the export and frees the
// buffer.
func (in *instance) callBuf(export string, f api.Function, b []byte, pos int) ([]byte, error) {
	return in.callBufN(export, f, b, pos, uint64(len(b)))
}

// callBufN is callBuf with n passed instead of the byte length.
func (in *instance) callBufN(export string, f api.Function, b []byte, pos int, n uint64) ([]byte, error) {
	args := in.stack // the caller's leading arguments
	ptr, err := in.put(b)
	if err != nil {
		return nil, err
	}
	copy(in.stack[:pos], args[:pos])
	in.stack[pos], in.stack[pos+1] = uint64(ptr), n
	payload, err := in.call(export, f)
	if in.dead {
		return payload, err
	}
	if payload != nil {
		payload = bytes.Clone(payload) // wapper_free may run guest code
	}
	in.stack[0] = uint64(ptr)
	if ferr := in.rawCall(abi.ExportFree, in.free); ferr != nil {
		return nil, ferr
	}
	return payload, err
}

// put copies b into a buffer from wapper_alloc.
func (in *instance) put(b []byte) (uint32, error) {
	ptr, err := in.allocate(len(b))
	if err != nil {
		return 0, err
	}
	if !in.mem.Write(ptr, b) {
		return 0, in.kill(abi.ExportAlloc, reasonMalformed, abi.ErrInternal, fmt.Errorf("wapper_alloc returned %#x, outside guest memory", ptr))
	}
	return ptr, nil
}

// allocate returns a guest buffer of n bytes from wapper_alloc.
func (in *instance) allocate(n int) (uint32, error) {
	if n > abi.MaxMessage {
		return 0, abi.Errorf(abi.ErrTooLarge, "buffer of %d bytes exceeds the ABI limit of %d", n, abi.MaxMessage)
	}
	in.stack[0] = uint64(n)
	if err := in.rawCall(abi.ExportAlloc, in.alloc); err != nil {
		return 0, err
	}
	ptr := uint32(in.stack[0])
	if ptr == 0 {
		return 0, abi.Errorf(abi.ErrTooLarge, "wapper_alloc(%d) returned 0", n)
	}
	return ptr, nil
}

// Bounds of the argument buffer an instance keeps (callArgs).
const (
	minArgs = 256      // 64 handles
	maxArgs = 64 << 10 // larger arguments get a buffer of their own
)

// callArgs is callBufN for the small arguments of hot calls (property
// handles, read requests): b goes into a buffer the instance keeps, so
// that the call is one guest call instead of three (wapper_alloc, the
// export, wapper_free). The guest must not keep an argument pointer
// (SPEC.md §9) and sees the same live wapper_alloc buffer each time. The
// payload aliases guest memory until the next call into the instance.
func (in *instance) callArgs(export string, f api.Function, b []byte, pos int, n uint64) ([]byte, error) {
	if len(b) > maxArgs {
		return in.callBufN(export, f, b, pos, n)
	}
	args := in.stack // the caller's leading arguments
	if len(b) > in.argsCap {
		if in.args != 0 {
			in.stack[0] = uint64(in.args)
			in.args, in.argsCap = 0, 0
			if err := in.rawCall(abi.ExportFree, in.free); err != nil {
				return nil, err
			}
		}
		size := max(minArgs, len(b))
		ptr, err := in.allocate(size)
		if err != nil {
			return nil, err
		}
		if _, ok := in.mem.Read(ptr, uint32(size)); !ok {
			return nil, in.kill(abi.ExportAlloc, reasonMalformed, abi.ErrInternal, fmt.Errorf("wapper_alloc returned %#x, outside guest memory", ptr))
		}
		in.args, in.argsCap = ptr, size
	}
	in.mem.Write(in.args, b) // in bounds: checked when it was allocated, and memory never shrinks
	copy(in.stack[:pos], args[:pos])
	in.stack[pos], in.stack[pos+1] = uint64(in.args), n
	return in.call(export, f)
}

// lineWriter turns a guest's stdout or stderr into log lines, under the
// plugin's log rate limit. A line longer than abi.MaxLogMessage is cut
// there, as the log host function cuts it: the rest of it is dropped.
type lineWriter struct {
	mu    sync.Mutex // guards buf and cut
	in    *instance
	level slog.Level
	buf   []byte
	cut   bool // the line in progress was logged cut: drop the rest of it
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		line, rest, eol := bytes.Cut(b, []byte{'\n'})
		b = rest
		if w.cut {
			w.cut = !eol
			continue
		}
		w.buf = append(w.buf, line[:min(len(line), abi.MaxLogMessage-len(w.buf))]...)
		if eol || len(w.buf) == abi.MaxLogMessage {
			w.in.p.logs.log(w.in, w.level, string(w.buf), "stream", streamName(w.level))
			w.buf = w.buf[:0]
			w.cut = !eol
		}
	}
	return n, nil
}

func streamName(l slog.Level) string {
	if l == slog.LevelInfo {
		return "stdout"
	}
	return "stderr"
}
