//go:build wasip1

package wapper

import (
	"unsafe"

	"wapper.dev/wapper/abi"
)

// pinned keeps every buffer handed to the host by wapper_alloc alive until
// wapper_free. Go's collector does not move objects, so the address stays
// valid while the slice is referenced here.
var pinned = map[uintptr][]byte{}

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

// pack packs a result buffer from dispatch.go into an export's i64
// result; the buffer stays valid until the next call.
func pack(res []byte) uint64 {
	if len(res) == 0 {
		return 0
	}
	return abi.Pack(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(res)))), uint32(len(res)))
}

//go:wasmexport wapper_init
func wapperInit(ptr, n uint32) uint64 {
	b, err := arg(ptr, n)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callInit(b))
}

//go:wasmexport wapper_device_add
func wapperDeviceAdd(dev, ptr, n uint32) uint64 {
	b, err := arg(ptr, n)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callAdd(dev, b))
}

//go:wasmexport wapper_device_update
func wapperDeviceUpdate(dev, ptr, n uint32) uint64 {
	b, err := arg(ptr, n)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callUpdate(dev, b))
}

//go:wasmexport wapper_device_remove
func wapperDeviceRemove(dev uint32) uint64 { return pack(global.callRemove(dev)) }

//go:wasmexport wapper_read
func wapperRead(dev, prop uint32) uint64 { return pack(global.callRead(dev, prop)) }

//go:wasmexport wapper_write
func wapperWrite(dev, prop, ptr, n uint32) uint64 {
	b, err := arg(ptr, n)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callWrite(dev, prop, b))
}

//go:wasmexport wapper_device_state
func wapperDeviceState(dev uint32) uint64 { return pack(global.callState(dev)) }

//go:wasmexport wapper_read_batch
func wapperReadBatch(dev, ptr, count uint32) uint64 {
	if count > abi.MaxBatch {
		return pack(global.finish(Errorf(ErrTooLarge, "batch of %d handles exceeds %d", count, abi.MaxBatch), nil))
	}
	b, err := arg(ptr, count*4)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callReadBatch(dev, b))
}

//go:wasmexport wapper_read_many
func wapperReadMany(ptr, count uint32) uint64 {
	if count > abi.MaxBatch {
		return pack(global.finish(Errorf(ErrTooLarge, "read_many of %d requests exceeds %d", count, abi.MaxBatch), nil))
	}
	b, err := arg(ptr, count*abi.ReadReqSize)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callReadMany(b))
}

//go:wasmexport wapper_call_method
func wapperCallMethod(dev, ptr, n uint32) uint64 {
	b, err := arg(ptr, n)
	if err != nil {
		return pack(global.finish(err, nil))
	}
	return pack(global.callMethod(dev, b))
}

//go:wasmexport wapper_poll
func wapperPoll(dev, budgetMS uint32) uint64 { return pack(global.callPoll(dev, budgetMS)) }
