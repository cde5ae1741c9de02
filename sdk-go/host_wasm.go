//go:build wasip1

package wapper

import "unsafe"

//go:wasmimport wapper log
func wasmLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport wapper report
func wasmReport(dev, prop uint32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport wapper kv_get
func wasmKVGet(kp unsafe.Pointer, kn uint32, dp unsafe.Pointer, dcap uint32) int32

//go:wasmimport wapper kv_set
func wasmKVSet(kp unsafe.Pointer, kn uint32, vp unsafe.Pointer, vn uint32) int32

//go:wasmimport wapper kv_delete
func wasmKVDelete(kp unsafe.Pointer, kn uint32) int32

//go:wasmimport wapper secret_get
func wasmSecretGet(rp unsafe.Pointer, rn uint32, dp unsafe.Pointer, dcap uint32) int32

func hostSecretGet(ref string, dst []byte) int32 {
	return wasmSecretGet(unsafe.Pointer(unsafe.StringData(ref)), uint32(len(ref)), unsafe.Pointer(unsafe.SliceData(dst)), uint32(len(dst)))
}

func hostLog(level int32, msg string) {
	wasmLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func hostReport(dev, prop uint32, val []byte) int32 {
	return wasmReport(dev, prop, unsafe.Pointer(unsafe.SliceData(val)), uint32(len(val)))
}

func hostKVGet(key string, dst []byte) int32 {
	return wasmKVGet(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(dst)), uint32(len(dst)))
}

func hostKVSet(key string, val []byte) int32 {
	return wasmKVSet(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(val)), uint32(len(val)))
}

func hostKVDelete(key string) int32 {
	return wasmKVDelete(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)))
}
