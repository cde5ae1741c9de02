//go:build !linux

package hostio

import (
	"os"

	"wapper.dev/wapper/abi"
)

var baudRates = map[int]uint32{50: 0, 75: 0, 110: 0, 134: 0, 150: 0, 200: 0, 300: 0, 600: 0, 1200: 0,
	1800: 0, 2400: 0, 4800: 0, 9600: 0, 19200: 0, 38400: 0, 57600: 0, 115200: 0, 230400: 0}

func openSerial(path string, cfg SerialConfig) (*os.File, error) {
	return nil, abi.Errorf(abi.ErrUnsupported, "serial ports are supported on Linux only")
}
