package wapper

import (
	"runtime/debug"

	"wapper.dev/wapper/abi"
)

// The exports' dispatch: each call runs one operation of an instance and
// returns the result buffer of ABI §3.1 (nil for "0", success without a
// payload). The wasm exports pack it into their i64 result; package sdktest
// reads it natively, as the host would.

// finish encodes err or payload into the instance's result buffer.
func (in *instance) finish(err error, payload []byte) []byte {
	if err == nil && len(payload) == 0 {
		return nil
	}
	in.result = in.result[:0]
	if err != nil {
		in.result = abi.AppendResult(in.result, abi.CodeOf(err), []byte(abi.MessageOf(err)))
	} else {
		in.result = abi.AppendResult(in.result, OK, payload)
	}
	return in.result
}

// guard converts a panic in the driver into an ErrPanic result.
func (in *instance) guard(res *[]byte) {
	if p := recover(); p != nil {
		*res = in.finish(panicError(p, debug.Stack()), nil)
	}
}

func (in *instance) callInit(cfg []byte) (res []byte) {
	defer in.guard(&res)
	return in.finish(in.opInit(cfg), nil)
}

func (in *instance) callAdd(dev uint32, desc []byte) (res []byte) {
	defer in.guard(&res)
	return in.finish(in.opAdd(dev, desc), nil)
}

func (in *instance) callUpdate(dev uint32, desc []byte) (res []byte) {
	defer in.guard(&res)
	return in.finish(in.opUpdate(dev, desc), nil)
}

func (in *instance) callRemove(dev uint32) (res []byte) {
	defer in.guard(&res)
	return in.finish(in.opRemove(dev), nil)
}

func (in *instance) callRead(dev, prop uint32) (res []byte) {
	defer in.guard(&res)
	v, err := in.opRead(dev, prop)
	switch {
	case err != nil:
		return in.finish(err, nil)
	case !v.IsValid():
		return in.finish(Errorf(ErrInternal, "Read returned no value and no error"), nil)
	case v.EncodedLen() >= abi.MaxMessage:
		return in.finish(Errorf(ErrTooLarge, "value of %d bytes exceeds the ABI limit of %d", v.EncodedLen(), abi.MaxMessage-1), nil)
	}
	in.result = append(in.result[:0], byte(OK))
	in.result = v.AppendEncode(in.result)
	return in.result
}

func (in *instance) callWrite(dev, prop uint32, val []byte) (res []byte) {
	defer in.guard(&res)
	return in.finish(in.opWrite(dev, prop, val), nil)
}

// callState reports the state byte and the reason. An unknown device is
// the error "not found" (ABI §3.1); a State that fails is unhealthy with
// the error's message.
func (in *instance) callState(dev uint32) (res []byte) {
	defer in.guard(&res)
	s, reason, err := in.opState(dev)
	if err != nil {
		return in.finish(err, nil)
	}
	return in.finish(nil, append([]byte{byte(s)}, reason...))
}

// callReadBatch reads the properties whose handles are in b (u32 each).
func (in *instance) callReadBatch(dev uint32, b []byte) (res []byte) {
	defer in.guard(&res)
	if len(b)/4 > abi.MaxBatch {
		return in.finish(Errorf(ErrTooLarge, "batch of %d handles exceeds %d", len(b)/4, abi.MaxBatch), nil)
	}
	handles, err := abi.ParseHandles(b)
	if err != nil {
		return in.finish(Errorf(ErrInvalid, "%v", err), nil)
	}
	out, err := in.opReadBatch(append(in.result[:0], byte(OK)), dev, handles)
	if err != nil {
		return in.finish(err, nil)
	}
	in.result = out
	return in.result
}

func (in *instance) callMethod(dev uint32, req []byte) (res []byte) {
	defer in.guard(&res)
	out, err := in.opMethod(dev, req)
	return in.finish(err, out)
}

func (in *instance) callPoll(dev, budgetMS uint32) (res []byte) {
	defer in.guard(&res)
	next, err := in.opPoll(dev, budgetMS)
	if err != nil || next == 0 {
		return in.finish(err, nil)
	}
	return in.finish(nil, abi.EncodePollNext(next))
}

// panicError turns a recovered panic into an ErrPanic error with a stack.
func panicError(r any, stack []byte) error {
	return Errorf(ErrPanic, "%v\n%s", r, stack)
}

// appendValueEntry appends a successful batch entry without an
// intermediate buffer: code, length, then the encoded value.
func appendValueEntry(dst []byte, v Value) []byte {
	n := v.EncodedLen()
	dst = append(dst, byte(OK), byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	return v.AppendEncode(dst)
}
