//go:build !wasip1

package wapper

import (
	"os"
	"syscall"
	"unsafe"

	"wapper.dev/wapper/abi"
)

var nativeBauds = map[int32]uint32{
	1200: syscall.B1200, 2400: syscall.B2400, 4800: syscall.B4800, 9600: syscall.B9600,
	19200: syscall.B19200, 38400: syscall.B38400, 57600: syscall.B57600,
	115200: syscall.B115200, 230400: syscall.B230400,
}

func nativeOpenSerial(path string, baud, dataBits, parity, stopBits int32) (*os.File, error) {
	speed, ok := nativeBauds[baud]
	if !ok || dataBits < 5 || dataBits > 8 || parity < 0 || parity > 2 || stopBits < 1 || stopBits > 2 {
		return nil, abi.Errorf(abi.ErrInvalid, "serial settings %d %d/%d/%d", baud, dataBits, parity, stopBits)
	}
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var t syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		syscall.Close(fd)
		return nil, e
	}
	t.Iflag = 0
	t.Oflag = 0
	t.Lflag = 0
	t.Cflag = syscall.CREAD | syscall.CLOCAL | speed | [...]uint32{syscall.CS5, syscall.CS6, syscall.CS7, syscall.CS8}[dataBits-5]
	if parity != 0 {
		t.Cflag |= syscall.PARENB
		t.Iflag |= syscall.INPCK
		if parity == 1 {
			t.Cflag |= syscall.PARODD
		}
	}
	if stopBits == 2 {
		t.Cflag |= syscall.CSTOPB
	}
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[syscall.VMIN], t.Cc[syscall.VTIME] = 1, 0
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCSETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		syscall.Close(fd)
		return nil, e
	}
	return os.NewFile(uintptr(fd), path), nil
}
