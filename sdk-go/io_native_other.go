//go:build !wasip1 && !linux

package wapper

import (
	"os"

	"wapper.dev/wapper/abi"
)

func nativeOpenSerial(path string, baud, dataBits, parity, stopBits int32) (*os.File, error) {
	return nil, abi.Errorf(abi.ErrUnsupported, "native serial ports are supported on Linux only")
}
