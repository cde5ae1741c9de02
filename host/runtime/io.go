package runtime

import (
	"context"
	"errors"
	"log/slog"

	"github.com/tetratelabs/wazero/api"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/cloud/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/hostio"
)

// Device I/O host functions (abi/SPEC.md §6.4): sockets, serial ports and
// GPIO lines, checked against the plugin's grants by package hostio. Each
// instance has its own handle table, closed with the instance.

type grantsKey struct{}

type tableKey struct{}

// WithGrants sets the MapperPlugin grants that the device I/O host
// functions check every open against. A plugin loaded without grants may
// open nothing.
func WithGrants(cfg *Config, g v1alpha1.Grants) error {
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

func init() {
	hostFuncs = append(hostFuncs,
		hostFunc{abi.ImportSockOpen, s(p(i32, i32, i32, i32), i32), hostSockOpen},
		hostFunc{abi.ImportSerialOpen, s(p(i32, i32, i32, i32, i32, i32, i32), i32), hostSerialOpen},
		hostFunc{abi.ImportIORead, s(p(i32, i32, i32, i32), i32), hostIORead},
		hostFunc{abi.ImportIOWrite, s(p(i32, i32, i32, i32), i32), hostIOWrite},
		hostFunc{abi.ImportIOClose, s(p(i32), i32), hostIOClose},
		hostFunc{abi.ImportGPIOOpen, s(p(i32, i32, i32, i32), i32), hostGPIOOpen},
		hostFunc{abi.ImportGPIORead, s(p(i32), i32), hostGPIORead},
		hostFunc{abi.ImportGPIOWrite, s(p(i32, i32), i32), hostGPIOWrite},
		hostFunc{abi.ImportGPIOWaitEdge, s(p(i32, i32, i32), i32), hostGPIOWaitEdge},
	)
}

// table returns the instance's handle table, creating it on first use.
func (in *instance) table() *hostio.Table {
	if t, ok := in.ext[tableKey{}].(*hostio.Table); ok {
		return t
	}
	g, _ := in.p.cfg.Ext[grantsKey{}].(*hostio.Grants)
	t := hostio.NewTable(g)
	if in.ext == nil {
		in.ext = map[any]any{}
	}
	in.ext[tableKey{}] = t
	in.closer = append(in.closer, t.CloseAll)
	return t
}

// ioResult stores a handle, count or level in stack[0], or the negated code
// of err. A refusal by the grants is logged and counted.
func (in *instance) ioResult(stack []uint64, n int32, err error, op string) {
	if err == nil {
		stack[0] = uint64(uint32(n))
		return
	}
	code := abi.CodeOf(err)
	var denied *hostio.DeniedError
	switch {
	case errors.As(err, &denied):
		in.p.m.m.Denials.WithLabelValues(in.p.name, denied.Kind).Inc()
		in.p.logs.log(in, slog.LevelWarn, "device I/O refused by grants", "op", op, "kind", denied.Kind, "resource", denied.Resource, "reason", denied.Reason)
	case code == abi.ErrTimeout || code == abi.ErrClosed:
		// Routine for a device that is slow or hangs up; the plugin sees it.
	default:
		in.logger().Debug("device I/O failed", "op", op, "code", code.String(), "err", err)
	}
	stack[0] = errno(code)
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
