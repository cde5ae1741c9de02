package runtime

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero/api"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/kv"
)

// hostFunc is one import of module "wapper". fn reads its arguments from
// stack and writes its result to stack[0].
type hostFunc struct {
	name string
	sig  sig
	fn   func(ctx context.Context, in *instance, mem api.Memory, stack []uint64)
}

// hostFuncs is the import table of module "wapper". Files that add host
// functions (device I/O) append to it from init functions.
var hostFuncs = []hostFunc{
	{abi.ImportLog, s(p(i32, i32, i32)), hostLog},
	{abi.ImportClock, s(p(i32), i64), hostClock},
	{abi.ImportKVGet, s(p(i32, i32, i32, i32), i32), hostKVGet},
	{abi.ImportKVSet, s(p(i32, i32, i32, i32), i32), hostKVSet},
	{abi.ImportKVDelete, s(p(i32, i32), i32), hostKVDelete},
	{abi.ImportReport, s(p(i32, i32, i32, i32), i32), hostReport},
}

func hostFuncByName(name string) (hostFunc, bool) {
	for _, f := range hostFuncs {
		if f.name == name {
			return f, true
		}
	}
	return hostFunc{}, false
}

// errno encodes a failure as the negated code a host function returns.
func errno(c abi.Code) uint64 { return uint64(uint32(-int32(c))) }

// guestBytes returns memory[ptr:ptr+n], or false when out of bounds or
// over limit. The slice aliases guest memory; copy what outlives the call.
// Only the low 32 bits of an i32 stack slot are meaningful.
func guestBytes(mem api.Memory, ptr, n uint64, limit int) ([]byte, bool) {
	if uint32(n) > uint32(limit) {
		return nil, false
	}
	return mem.Read(uint32(ptr), uint32(n))
}

func hostLog(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	level := int32(stack[0])
	n := uint32(stack[2])
	if n > abi.MaxLogMessage {
		n = abi.MaxLogMessage
	}
	msg, ok := mem.Read(uint32(stack[1]), n)
	if !ok {
		return
	}
	in.p.logs.log(in, slog.Level(level*4), string(msg))
}

func hostClock(_ context.Context, in *instance, _ api.Memory, stack []uint64) {
	switch uint32(stack[0]) {
	case abi.ClockRealtime:
		stack[0] = uint64(time.Now().UnixNano())
	case abi.ClockMonotonic:
		stack[0] = uint64(time.Since(in.p.e.epoch).Nanoseconds())
	default:
		stack[0] = errno(abi.ErrInvalid)
	}
}

func hostKVGet(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	key, ok := guestBytes(mem, stack[0], stack[1], abi.MaxKVKey)
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	if in.p.kv == nil {
		stack[0] = errno(abi.ErrNotFound)
		return
	}
	val, found, err := in.p.kv.Get(key)
	switch {
	case err != nil:
		in.logger().Error("kv get failed", "err", err)
		stack[0] = errno(abi.ErrIO)
	case !found:
		stack[0] = errno(abi.ErrNotFound)
	case uint32(len(val)) <= uint32(stack[3]):
		if !mem.Write(uint32(stack[2]), val) {
			stack[0] = errno(abi.ErrInvalid)
			return
		}
		stack[0] = uint64(len(val))
	default:
		stack[0] = uint64(len(val))
	}
}

func hostKVSet(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	key, ok1 := guestBytes(mem, stack[0], stack[1], abi.MaxKVKey)
	val, ok2 := guestBytes(mem, stack[2], stack[3], abi.MaxKVValue)
	switch {
	case uint32(stack[1]) > abi.MaxKVKey || uint32(stack[3]) > abi.MaxKVValue:
		stack[0] = errno(abi.ErrTooLarge)
		return
	case !ok1 || !ok2:
		stack[0] = errno(abi.ErrInvalid)
		return
	case in.p.kv == nil:
		stack[0] = errno(abi.ErrUnsupported)
		return
	}
	if err := in.p.kv.Set(key, val); err != nil {
		if errors.Is(err, kv.ErrTooLarge) {
			in.p.logs.log(in, slog.LevelWarn, "kv set refused", "err", err)
			stack[0] = errno(abi.ErrTooLarge)
			return
		}
		in.logger().Error("kv set failed", "err", err)
		stack[0] = errno(abi.ErrIO)
		return
	}
	stack[0] = 0
}

func hostKVDelete(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	key, ok := guestBytes(mem, stack[0], stack[1], abi.MaxKVKey)
	switch {
	case !ok:
		stack[0] = errno(abi.ErrInvalid)
	case in.p.kv == nil:
		stack[0] = 0
	default:
		if err := in.p.kv.Delete(key); err != nil {
			in.logger().Error("kv delete failed", "err", err)
			stack[0] = errno(abi.ErrIO)
			return
		}
		stack[0] = 0
	}
}

func hostReport(_ context.Context, in *instance, mem api.Memory, stack []uint64) {
	dev, prop := uint32(stack[0]), uint32(stack[1])
	raw, ok := guestBytes(mem, stack[2], stack[3], abi.MaxMessage)
	if !ok {
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	v, err := abi.DecodeValue(raw)
	if err != nil {
		in.p.logs.log(in, slog.LevelWarn, "plugin reported a malformed value", "device", dev, "property", prop, "err", err)
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	d := in.p.device(dev)
	var pd *abi.Property
	if d != nil {
		pd = d.cur.Load().desc.Property(prop)
	}
	if pd == nil {
		stack[0] = errno(abi.ErrNotFound)
		return
	}
	if v, err = convertFor(pd, v); err != nil {
		in.p.logs.log(in, slog.LevelWarn, "plugin reported a value of the wrong type", "device", dev, "property", prop, "err", err)
		stack[0] = errno(abi.ErrInvalid)
		return
	}
	in.p.m.reports.Inc()
	if in.p.cfg.Report != nil {
		in.p.cfg.Report(Reading{Device: dev, Property: prop, Value: v, Time: time.Now()})
	}
	stack[0] = 0
}
