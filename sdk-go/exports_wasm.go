//go:build wasip1

package wapper

import (
	"runtime/debug"
	"unsafe"

	"wapper.dev/wapper/abi"
)

// pinned keeps every buffer handed to the host by wapper_alloc alive until
// wapper_free. Go's collector does not move objects, so the address stays
// valid while the slice is referenced here.
var pinned = map[uintptr][]byte{}

// result is the buffer of the last result; it stays valid until the next
// call, as the ABI allows.
var result []byte

//go:wasmexport wapper_abi_v1
func wapperABIv1() uint32 { return abi.Minor }

// spare holds freed buffers for reuse, so the host's argument buffers do
// not feed the garbage collector on every call.
var spare [][]byte

const maxSpare = 8

//go:wasmexport wapper_alloc
func wapperAlloc(size uint32) uint32 {
	if size > abi.MaxMessage {
		return 0
	}
	var b []byte
	for i, s := range spare {
		if uint32(cap(s)) > size {
			b = s[:size]
			spare[i] = spare[len(spare)-1]
			spare = spare[:len(spare)-1]
			break
		}
	}
	if b == nil {
		b = make([]byte, size, max(size+1, 64)) // capacity ≥ 1 so even size 0 has an address
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b[:1])))
	pinned[p] = b
	return uint32(p)
}

//go:wasmexport wapper_free
func wapperFree(ptr uint32) {
	b, ok := pinned[uintptr(ptr)]
	if !ok {
		return
	}
	delete(pinned, uintptr(ptr))
	if len(spare) < maxSpare && cap(b) <= 64<<10 {
		spare = append(spare, b)
	}
}

// arg returns the host-written buffer at ptr. It must have come from
// wapper_alloc; anything else is refused rather than read.
func arg(ptr, n uint32) ([]byte, error) {
	b, ok := pinned[uintptr(ptr)]
	if !ok || uint32(len(b)) < n {
		return nil, Errorf(ErrInvalid, "buffer %#x+%d was not allocated with wapper_alloc", ptr, n)
	}
	return b[:n], nil
}

// finish encodes err or payload into the result buffer and packs it.
func finish(err error, payload []byte) uint64 {
	if err == nil && len(payload) == 0 {
		return 0
	}
	result = result[:0]
	if err != nil {
		result = abi.AppendResult(result, abi.CodeOf(err), []byte(abi.MessageOf(err)))
	} else {
		result = abi.AppendResult(result, OK, payload)
	}
	return abi.Pack(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(result)))), uint32(len(result)))
}

// guard converts a panic in the driver into an ErrPanic result.
func guard(r *uint64) {
	if p := recover(); p != nil {
		*r = finish(panicError(p, debug.Stack()), nil)
	}
}

//go:wasmexport wapper_init
func wapperInit(ptr, n uint32) (r uint64) {
	defer guard(&r)
	b, err := arg(ptr, n)
	if err == nil {
		err = opInit(b)
	}
	return finish(err, nil)
}

//go:wasmexport wapper_device_add
func wapperDeviceAdd(dev, ptr, n uint32) (r uint64) {
	defer guard(&r)
	b, err := arg(ptr, n)
	if err == nil {
		err = opAdd(dev, b)
	}
	return finish(err, nil)
}

//go:wasmexport wapper_device_update
func wapperDeviceUpdate(dev, ptr, n uint32) (r uint64) {
	defer guard(&r)
	b, err := arg(ptr, n)
	if err == nil {
		err = opUpdate(dev, b)
	}
	return finish(err, nil)
}

//go:wasmexport wapper_device_remove
func wapperDeviceRemove(dev uint32) (r uint64) {
	defer guard(&r)
	return finish(opRemove(dev), nil)
}

//go:wasmexport wapper_read
func wapperRead(dev, prop uint32) (r uint64) {
	defer guard(&r)
	v, err := opRead(dev, prop)
	if err != nil {
		return finish(err, nil)
	}
	if !v.IsValid() {
		return finish(Errorf(ErrInternal, "Read returned no value and no error"), nil)
	}
	if v.EncodedLen() >= abi.MaxMessage {
		return finish(Errorf(ErrTooLarge, "value of %d bytes exceeds the ABI limit of %d", v.EncodedLen(), abi.MaxMessage-1), nil)
	}
	result = append(result[:0], byte(OK))
	result = v.AppendEncode(result)
	return abi.Pack(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(result)))), uint32(len(result)))
}

//go:wasmexport wapper_write
func wapperWrite(dev, prop, ptr, n uint32) (r uint64) {
	defer guard(&r)
	b, err := arg(ptr, n)
	if err == nil {
		err = opWrite(dev, prop, b)
	}
	return finish(err, nil)
}

//go:wasmexport wapper_device_state
func wapperDeviceState(dev uint32) (r uint64) {
	defer guard(&r)
	if _, err := lookup(dev); err != nil {
		return finish(err, nil)
	}
	s, err := opState(dev)
	if err != nil {
		// A state the plugin cannot tell is unhealthy, with the reason.
		return finish(nil, append([]byte{byte(StateUnhealthy)}, abi.MessageOf(err)...))
	}
	return finish(nil, []byte{byte(s)})
}

//go:wasmexport wapper_read_batch
func wapperReadBatch(dev, ptr, count uint32) (r uint64) {
	defer guard(&r)
	if count > abi.MaxBatch {
		return finish(Errorf(ErrTooLarge, "batch of %d handles exceeds %d", count, abi.MaxBatch), nil)
	}
	b, err := arg(ptr, count*4)
	if err != nil {
		return finish(err, nil)
	}
	handles, err := abi.ParseHandles(b)
	if err != nil {
		return finish(Errorf(ErrInvalid, "%v", err), nil)
	}
	out, err := opReadBatch(append(result[:0], byte(OK)), dev, handles)
	if err != nil {
		return finish(err, nil)
	}
	result = out
	return abi.Pack(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(result)))), uint32(len(result)))
}

//go:wasmexport wapper_call_method
func wapperCallMethod(dev, ptr, n uint32) (r uint64) {
	defer guard(&r)
	b, err := arg(ptr, n)
	if err != nil {
		return finish(err, nil)
	}
	out, err := opMethod(dev, b)
	if err == nil && len(out) == 0 {
		return 0
	}
	return finish(err, out)
}

//go:wasmexport wapper_poll
func wapperPoll(dev, budgetMS uint32) (r uint64) {
	defer guard(&r)
	next, err := opPoll(dev, budgetMS)
	if err != nil || next == 0 {
		return finish(err, nil)
	}
	return finish(nil, abi.EncodePollNext(next))
}
