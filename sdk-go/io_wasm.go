//go:build wasip1

package wapper

import "unsafe"

//go:wasmimport wapper sock_open
func wasmSockOpen(kind int32, ap unsafe.Pointer, an uint32, ms uint32) int32

//go:wasmimport wapper serial_open
func wasmSerialOpen(pp unsafe.Pointer, pn uint32, baud, dataBits, parity, stopBits int32, ms uint32) int32

//go:wasmimport wapper io_read
func wasmIORead(h int32, dp unsafe.Pointer, dcap uint32, ms uint32) int32

//go:wasmimport wapper io_write
func wasmIOWrite(h int32, sp unsafe.Pointer, sn uint32, ms uint32) int32

//go:wasmimport wapper io_close
func wasmIOClose(h int32) int32

//go:wasmimport wapper gpio_open
func wasmGPIOOpen(np unsafe.Pointer, nn uint32, mode int32, ms uint32) int32

//go:wasmimport wapper gpio_read
func wasmGPIORead(h int32) int32

//go:wasmimport wapper gpio_write
func wasmGPIOWrite(h, level int32) int32

//go:wasmimport wapper gpio_wait_edge
func wasmGPIOWaitEdge(h, edge int32, ms uint32) int32

//go:wasmimport wapper dgram_open
func wasmDgramOpen(ap unsafe.Pointer, an uint32) int32

//go:wasmimport wapper dgram_send
func wasmDgramSend(h int32, ap unsafe.Pointer, an uint32, sp unsafe.Pointer, sn uint32, ms uint32) int32

//go:wasmimport wapper dgram_recv
func wasmDgramRecv(h int32, dp unsafe.Pointer, dcap uint32, fp unsafe.Pointer, fcap uint32, ms uint32) int32

func dgramOpen(addr string) int32 {
	return wasmDgramOpen(unsafe.Pointer(unsafe.StringData(addr)), uint32(len(addr)))
}

func dgramSend(h int32, addr string, p []byte, ms uint32) int32 {
	return wasmDgramSend(h, unsafe.Pointer(unsafe.StringData(addr)), uint32(len(addr)), unsafe.Pointer(unsafe.SliceData(p)), uint32(len(p)), ms)
}

func dgramRecv(h int32, p, from []byte, ms uint32) int32 {
	return wasmDgramRecv(h, unsafe.Pointer(unsafe.SliceData(p)), uint32(len(p)), unsafe.Pointer(unsafe.SliceData(from)), uint32(len(from)), ms)
}

func ioSockOpen(kind int32, addr string, ms uint32) int32 {
	return wasmSockOpen(kind, unsafe.Pointer(unsafe.StringData(addr)), uint32(len(addr)), ms)
}

func ioSerialOpen(path string, baud, dataBits, parity, stopBits int32, ms uint32) int32 {
	return wasmSerialOpen(unsafe.Pointer(unsafe.StringData(path)), uint32(len(path)), baud, dataBits, parity, stopBits, ms)
}

func ioRead(h int32, p []byte, ms uint32) int32 {
	return wasmIORead(h, unsafe.Pointer(unsafe.SliceData(p)), uint32(len(p)), ms)
}

func ioWrite(h int32, p []byte, ms uint32) int32 {
	return wasmIOWrite(h, unsafe.Pointer(unsafe.SliceData(p)), uint32(len(p)), ms)
}

func ioClose(h int32) int32 { return wasmIOClose(h) }

func gpioOpen(name string, mode int32, ms uint32) int32 {
	return wasmGPIOOpen(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), mode, ms)
}

func gpioRead(h int32) int32 { return wasmGPIORead(h) }

func gpioWrite(h, level int32) int32 { return wasmGPIOWrite(h, level) }

func gpioWaitEdge(h, edge int32, ms uint32) int32 { return wasmGPIOWaitEdge(h, edge, ms) }
