package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
)

// Device I/O host functions (abi/SPEC.md §6.4): sockets, serial ports and
// GPIO lines, checked against the plugin's grants by package hostio. Each
// instance has its own handle table, closed with the instance.

type grantsKey struct{}

type tableKey struct{}

type secretsKey struct{}

// WithGrants sets the MapperPlugin grants that the device I/O host
// functions check every open against. A plugin loaded without grants may
// open nothing.
func WithGrants(cfg *Config, g grant.Set) error {
	pg, err := hostio.ParseGrants(g)
	if err != nil {
		return err
	}
	SetGrants(cfg, pg)
	return nil
}

// SetGrants is WithGrants for grants already parsed.
func SetGrants(cfg *Config, g *hostio.Grants) {
	if cfg.Ext == nil {
		cfg.Ext = map[any]any{}
	}
	cfg.Ext[grantsKey{}] = g
}

// SetSecrets gives the plugin's instances the host's secrets: those the
// grants let it read with secret_get, and those its TLS grants name.
func SetSecrets(cfg *Config, s hostio.Secrets) {
	if cfg.Ext == nil {
		cfg.Ext = map[any]any{}
	}
	cfg.Ext[secretsKey{}] = s
}

func init() {
	hostFuncs = append(hostFuncs,
		hostFunc{abi.ImportSecretGet, s(p(i32, i32, i32, i32), i32), hostSecretGet},
		hostFunc{abi.ImportSockOpen, s(p(i32, i32, i32, i32), i32), hostSockOpen},
		hostFunc{abi.ImportSerialOpen, s(p(i32, i32, i32, i32, i32, i32, i32), i32), hostSerialOpen},
		hostFunc{abi.ImportIORead, s(p(i32, i32, i32, i32), i32), hostIORead},
		hostFunc{abi.ImportIOWrite, s(p(i32, i32, i32, i32), i32), hostIOWrite},
		hostFunc{abi.ImportIOClose, s(p(i32), i32), hostIOClose},
		hostFunc{abi.ImportGPIOOpen, s(p(i32, i32, i32, i32), i32), hostGPIOOpen},
		hostFunc{abi.ImportGPIORead, s(p(i32), i32), hostGPIORead},
		hostFunc{abi.ImportGPIOWrite, s(p(i32, i32), i32), hostGPIOWrite},
		hostFunc{abi.ImportGPIOWaitEdge, s(p(i32, i32, i32), i32), hostGPIOWaitEdge},
		hostFunc{abi.ImportDgramOpen, s(p(i32, i32), i32), hostDgramOpen},
		hostFunc{abi.ImportDgramSend, s(p(i32, i32, i32, i32, i32, i32), i32), hostDgramSend},
		hostFunc{abi.ImportDgramRecv, s(p(i32, i32, i32, i32, i32, i32), i32), hostDgramRecv},
	)
}

// table returns the instance's handle table, creating it on first use.
func (in *instance) table() *hostio.Table {
	if t, ok := in.ext[tableKey{}].(*hostio.Table); ok {
		return t
	}
	g, _ := in.p.cfg.Ext[grantsKey{}].(*hostio.Grants)
	var opts []hostio.Option
	if sec, ok := in.p.cfg.Ext[secretsKey{}].(hostio.Secrets); ok {
		opts = append(opts, hostio.WithSecrets(sec))
	}
	t := hostio.NewTable(g, opts...)
	if in.ext == nil {
		in.ext = map[any]any{}
	}
	in.ext[tableKey{}] = t
	in.closer = append(in.closer, t.CloseAll)
	return t
}

// ioResult stores a handle, count or level in stack[0], or the negated code
// of err. A failure is remembered, until an I/O call works again, for the
// error of the export call in progress (see instance.withCause) and for the
// device's state reason; a
// refusal by the grants is also logged, once and then summed up at most
// every repeatEvery per device and resource, and counted.
func (in *instance) ioResult(stack []uint64, n int32, err error, op string) {
	if err == nil {
		stack[0] = uint64(uint32(n))
		// A later I/O call that works makes an earlier failure history
		// (closing a handle after a failure does not count).
		if op != abi.ImportIOClose {
			in.ioFail = nil
			if d := in.curDev; d != nil {
				d.setCause("")
			}
		}
		return
	}
	code := abi.CodeOf(err)
	if (op != abi.ImportGPIOWaitEdge && op != abi.ImportDgramRecv) || code != abi.ErrTimeout { // no edge or datagram in time is routine
		in.ioFail = err
		if d := in.curDev; d != nil {
			d.setCause(causeText(err))
		}
	}
	var denied *hostio.DeniedError
	switch {
	case errors.As(err, &denied):
		in.p.m.m.Denials.WithLabelValues(in.p.name, denied.Kind).Inc()
		dev := ""
		if d := in.curDev; d != nil {
			dev = d.name()
		}
		first, n, since := in.p.denials.note(dev + "\x00" + denied.Kind + "\x00" + denied.Resource)
		switch {
		case first:
			in.p.logs.log(in, slog.LevelWarn, "device I/O refused by grants", "op", op, "kind", denied.Kind, "resource", denied.Resource, "reason", denied.Detail())
		case n > 0:
			in.p.logs.log(in, slog.LevelWarn, "device I/O refused by grants", "op", op, "kind", denied.Kind, "resource", denied.Resource, "reason", denied.Detail(),
				"repeated", fmt.Sprintf("%d times in %s", n, since.Round(time.Second)))
		}
	case code == abi.ErrTimeout || code == abi.ErrClosed:
		// Routine for a device that is slow or hangs up; the plugin sees it.
	default:
		in.logger().Debug("device I/O failed", "op", op, "code", code.String(), "err", err)
	}
	stack[0] = errno(code)
}

// causeText is the host's account of a failed device I/O call, as it is
// added to errors and state reasons: "connect tcp://127.0.0.1:1502:
// connection refused", "denied: tcp://10.0.0.5:502 is not in grants.network
// [tcp://127.0.0.1:1502]". It is at most maxCauseText bytes.
func causeText(err error) string {
	var denied *hostio.DeniedError
	var s string
	switch {
	case errors.As(err, &denied):
		s = denied.Error()
	default:
		s = abi.MessageOf(err)
		if s == "" {
			s = abi.CodeOf(err).String()
		}
	}
	return clipTo(s, maxCauseText)
}

// maxCauseText bounds the host's cause added to a plugin's error text.
const maxCauseText = 512

// causeFits reports whether the cause of a failed I/O call with code
// cause explains an export's error with code got: the same code, or a
// code a plugin gives a failed exchange with its device.
func causeFits(got, cause abi.Code) bool {
	if got == cause {
		return true
	}
	switch got {
	case abi.ErrInternal, abi.ErrTimeout, abi.ErrUnavailable, abi.ErrDenied,
		abi.ErrLimit, abi.ErrClosed, abi.ErrIO:
		return true
	}
	return false
}

// withCause returns the error of an export, whose message has been cut to
// MaxGuestText already, with the host's cause of the last device I/O call
// that failed during the export call added, so that the device status,
// REST and the log say why ("connection refused"), not only the plugin's
// summary of it. The plugin's code is kept.
func (in *instance) withCause(e *abi.Error) *abi.Error {
	if in.ioFail == nil || !causeFits(e.Code, abi.CodeOf(in.ioFail)) {
		return e
	}
	cause := causeText(in.ioFail)
	if strings.Contains(e.Message, cause) {
		return e
	}
	return &abi.Error{Code: e.Code, Message: e.Message + " (host: " + cause + ")"}
}

// repeatEvery is how often a repeated warning is summed up.
const repeatEvery = time.Minute

// maxRepeatKeys bounds the warnings repeats tracks; past it, it forgets
// them all (and logs each once more).
const maxRepeatKeys = 1024

// repeats rate-limits identical warnings: the first of each key is logged,
// the next ones counted and summed up when one comes repeatEvery or more
// after the last line. It is safe for concurrent use.
type repeats struct {
	mu   sync.Mutex
	now  func() time.Time
	seen map[string]*repeat
}

type repeat struct {
	logged time.Time
	n      int
}

func newRepeats() *repeats { return &repeats{now: time.Now, seen: map[string]*repeat{}} }

// note records one occurrence of key. It reports first for the first one;
// otherwise n > 0 when a summary of n occurrences over the last since is
// due (the one just noted included), and n == 0 when it stays quiet.
func (r *repeats) note(key string) (first bool, n int, since time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	e := r.seen[key]
	if e == nil {
		if len(r.seen) >= maxRepeatKeys {
			clear(r.seen)
		}
		r.seen[key] = &repeat{logged: now}
		return true, 0, 0
	}
	e.n++
	since = now.Sub(e.logged)
	if since < repeatEvery {
		return false, 0, 0
	}
	n = e.n
	e.n, e.logged = 0, now
	return false, n, since
}

// guestString copies a string argument out of guest memory.
func guestString(mem api.Memory, ptr, n uint64) (string, bool) {
	b, ok := guestBytes(mem, ptr, n, 4096)
	if !ok {
		return "", false
	}
	return string(b), true
}

func hostSockOpen(ctx context.Context, in *instance, mem api.Memory, stack []uint64) {
	addr, ok := guestString(mem, stack[1], stack[2])
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	h, err := in.table().Dial(ctx, uint32(stack[0]), addr, hostio.Timeout(in.deadline, uint32(stack[3])))
	in.ioResult(stack, h, err, abi.ImportSockOpen)
}

func hostDgramOpen(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	addr, ok := guestString(mem, stack[0], stack[1])
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	h, err := in.table().OpenDatagram(addr)
	in.ioResult(stack, h, err, abi.ImportDgramOpen)
}

func hostDgramSend(ctx context.Context, in *instance, mem api.Memory, stack []uint64) {
	addr, ok1 := guestString(mem, stack[1], stack[2])
	src, ok2 := guestBytes(mem, stack[3], stack[4], abi.MaxMessage)
	if !ok1 || !ok2 {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	n, err := in.table().SendTo(ctx, int32(stack[0]), addr, src, hostio.Timeout(in.deadline, uint32(stack[5])))
	in.ioResult(stack, int32(n), err, abi.ImportDgramSend)
}

// hostDgramRecv is dgram_recv: the datagram goes to dst and its sender,
// as text and a zero byte, to from, which must hold abi.MaxAddrText bytes.
func hostDgramRecv(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	dst, ok1 := guestBytes(mem, stack[1], stack[2], abi.MaxMessage)
	from, ok2 := guestBytes(mem, stack[3], stack[4], abi.MaxMessage)
	if !ok1 || !ok2 || len(from) < abi.MaxAddrText {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	n, sender, err := in.table().RecvFrom(int32(stack[0]), dst, hostio.Timeout(in.deadline, uint32(stack[5])))
	if err == nil {
		copy(from, append([]byte(sender.String()), 0))
	}
	in.ioResult(stack, int32(n), err, abi.ImportDgramRecv)
}

// hostSecretGet is secret_get: like kv_get, it returns the value's length
// and copies the value only when it fits.
func hostSecretGet(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	ref, ok := guestString(mem, stack[0], stack[1])
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	v, err := in.table().Secret(ref)
	if err == nil && uint32(len(v)) <= uint32(stack[3]) && !mem.Write(uint32(stack[2]), v) {
		err = abi.Errorf(abi.ErrInvalid, "secret_get: the destination is outside the guest's memory")
	}
	clear(v)
	in.ioResult(stack, int32(len(v)), err, abi.ImportSecretGet)
}

func hostSerialOpen(ctx context.Context, in *instance, mem api.Memory, stack []uint64) {
	path, ok := guestString(mem, stack[0], stack[1])
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	cfg := hostio.SerialConfig{
		Baud: int(int32(stack[2])), DataBits: int(int32(stack[3])),
		Parity: int(int32(stack[4])), StopBits: int(int32(stack[5])),
	}
	h, err := in.table().OpenSerial(ctx, path, cfg, hostio.Timeout(in.deadline, uint32(stack[6])))
	in.ioResult(stack, h, err, abi.ImportSerialOpen)
}

func hostIORead(ctx context.Context, in *instance, mem api.Memory, stack []uint64) {
	// The destination aliases guest memory: the guest is blocked in this
	// call, so nothing else touches it.
	dst, ok := guestBytes(mem, stack[1], stack[2], abi.MaxMessage)
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	n, err := in.table().Read(int32(stack[0]), dst, hostio.Timeout(in.deadline, uint32(stack[3])))
	in.ioResult(stack, int32(n), err, abi.ImportIORead)
}

func hostIOWrite(ctx context.Context, in *instance, mem api.Memory, stack []uint64) {
	src, ok := guestBytes(mem, stack[1], stack[2], abi.MaxMessage)
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	n, err := in.table().Write(int32(stack[0]), src, hostio.Timeout(in.deadline, uint32(stack[3])))
	in.ioResult(stack, int32(n), err, abi.ImportIOWrite)
}

func hostIOClose(_ context.Context, in *instance, _ api.Memory, stack []uint64) {
	err := in.table().Close(int32(stack[0]))
	in.ioResult(stack, 0, err, abi.ImportIOClose)
}

func hostGPIOOpen(ctx context.Context, in *instance, mem api.Memory, stack []uint64) {
	name, ok := guestString(mem, stack[0], stack[1])
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	h, err := in.table().OpenGPIO(ctx, name, uint32(stack[2]), hostio.Timeout(in.deadline, uint32(stack[3])))
	in.ioResult(stack, h, err, abi.ImportGPIOOpen)
}

func hostGPIORead(_ context.Context, in *instance, _ api.Memory, stack []uint64) {
	v, err := in.table().GPIORead(int32(stack[0]))
	in.ioResult(stack, v, err, abi.ImportGPIORead)
}

func hostGPIOWrite(_ context.Context, in *instance, _ api.Memory, stack []uint64) {
	err := in.table().GPIOWrite(int32(stack[0]), uint32(stack[1]))
	in.ioResult(stack, 0, err, abi.ImportGPIOWrite)
}

func hostGPIOWaitEdge(ctx context.Context, in *instance, _ api.Memory, stack []uint64) {
	v, err := in.table().GPIOWaitEdge(int32(stack[0]), uint32(stack[1]), hostio.Timeout(in.deadline, uint32(stack[2])))
	in.ioResult(stack, v, err, abi.ImportGPIOWaitEdge)
}
