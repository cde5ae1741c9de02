package hostio

import (
	"context"
	"os"
	"time"

	"wapper.dev/wapper/abi"
)

// SerialConfig is a serial line's framing.
type SerialConfig struct {
	// Baud is the bit rate, one of the standard rates (50 to 4000000).
	Baud int
	// DataBits is 5 to 8.
	DataBits int
	// Parity is abi.ParityNone, abi.ParityOdd or abi.ParityEven.
	Parity int
	// StopBits is 1 or 2.
	StopBits int
}

func (c SerialConfig) validate() error {
	switch {
	case c.DataBits < 5 || c.DataBits > 8:
		return abi.Errorf(abi.ErrInvalid, "serial data bits %d (want 5 to 8)", c.DataBits)
	case c.Parity < abi.ParityNone || c.Parity > abi.ParityEven:
		return abi.Errorf(abi.ErrInvalid, "serial parity %d (want 0 none, 1 odd, 2 even)", c.Parity)
	case c.StopBits != 1 && c.StopBits != 2:
		return abi.Errorf(abi.ErrInvalid, "serial stop bits %d (want 1 or 2)", c.StopBits)
	}
	if _, ok := baudRates[c.Baud]; !ok {
		return abi.Errorf(abi.ErrInvalid, "serial baud rate %d is not a standard rate (such as 9600, 19200, 115200)", c.Baud)
	}
	return nil
}

// OpenSerial opens a serial port after checking the grants, in raw mode
// with the given framing, without becoming its controlling terminal. The
// port is non-blocking underneath, so reads and writes honour their
// timeouts.
func (t *Table) OpenSerial(ctx context.Context, path string, cfg SerialConfig, timeout time.Duration) (int32, error) {
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if err := t.reserve(); err != nil {
		return 0, err
	}
	clean, err := t.grants.CheckSerial(path)
	if err != nil {
		return 0, err
	}
	if timeout <= 0 {
		return 0, abi.Errorf(abi.ErrTimeout, "open %s: no time left before the call's deadline", clean)
	}
	f, err := openSerial(clean, cfg)
	if err != nil {
		return 0, ioError("open serial port "+clean, err)
	}
	return t.add(&serialPort{f: f, path: clean}), nil
}

// serialPort is an open serial device; f is non-blocking and registered
// with Go's poller, so deadlines work.
type serialPort struct {
	f    *os.File
	path string
}

func (s *serialPort) target() string { return s.path }

func (s *serialPort) kind() string { return "serial port" }

func (s *serialPort) close() error { return s.f.Close() }

func (s *serialPort) read(p []byte, dl time.Time) (int, error) {
	if err := s.f.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	return s.f.Read(p)
}

func (s *serialPort) write(p []byte, dl time.Time) (int, error) {
	if err := s.f.SetWriteDeadline(dl); err != nil {
		return 0, err
	}
	return s.f.Write(p)
}
