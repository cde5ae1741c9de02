package wapper

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"wapper.dev/wapper/abi"
)

// Device I/O: sockets, serial ports and GPIO lines through the host (ABI
// §6.4). The host checks every open against the MapperPlugin's grants; a
// refusal is an error with code ErrDenied. Handles belong to the instance
// and die with it, so keep a Conn in Device.Data and reopen it when a call
// fails with ErrClosed or ErrNotFound.
//
// A call into the plugin has a deadline (the MapperPlugin's
// limits.callTimeout), and the host never lets an I/O call outlive it.
// Without a deadline of its own, a read or write waits at most the host
// default of 5 s.

// IOError is a failed device I/O call. Its code is the host's; abi.CodeOf
// finds it, so a Driver method can return the error as it is. A timeout
// satisfies net.Error's Timeout and errors.Is(err, os.ErrDeadlineExceeded).
type IOError struct {
	// Op is the operation ("connect", "read", "open serial port", ...).
	Op string
	// Target is what it was applied to ("tcp://10.0.0.5:502", "/dev/ttyUSB0").
	Target string
	// Code is the host's status code.
	Code Code
}

func (e *IOError) Error() string {
	msg := e.Op + " " + e.Target + ": " + e.Code.String()
	switch e.Code {
	case ErrDenied:
		msg += " (the MapperPlugin's spec.grants does not allow it; see the host log)"
	case ErrLimit:
		msg += " (too many open handles in this instance)"
	}
	return msg
}

// Unwrap returns the ABI error carrying the code.
func (e *IOError) Unwrap() error { return &abi.Error{Code: e.Code, Message: e.Error()} }

// Timeout reports whether the call timed out.
func (e *IOError) Timeout() bool { return e.Code == ErrTimeout }

// Temporary reports whether retrying may help (a timeout).
func (e *IOError) Temporary() bool { return e.Code == ErrTimeout }

// Is makes a timeout match os.ErrDeadlineExceeded.
func (e *IOError) Is(target error) bool {
	return target == os.ErrDeadlineExceeded && e.Code == ErrTimeout
}

func ioErr(op, target string, c int32) error {
	return &IOError{Op: op, Target: target, Code: Code(-c)}
}

// timeoutMS converts a deadline to the timeout_ms of a host call: 0 (the
// host default) for no deadline, at least 1 otherwise.
func timeoutMS(deadline time.Time) (uint32, bool) {
	if deadline.IsZero() {
		return 0, true
	}
	return durationMS(time.Until(deadline))
}

func durationMS(d time.Duration) (uint32, bool) {
	if d <= 0 {
		return 0, false
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxInt32 {
		ms = math.MaxInt32
	}
	return uint32(ms), true
}

// deadlines are a stream's read and write deadlines.
type deadlines struct{ rd, wd time.Time }

// SetDeadline sets the read and write deadlines; the zero time means the
// host default for each call.
func (d *deadlines) SetDeadline(t time.Time) error { d.rd, d.wd = t, t; return nil }

// SetReadDeadline sets the read deadline.
func (d *deadlines) SetReadDeadline(t time.Time) error { d.rd = t; return nil }

// SetWriteDeadline sets the write deadline.
func (d *deadlines) SetWriteDeadline(t time.Time) error { d.wd = t; return nil }

// stream is a byte stream behind a host handle.
type stream struct {
	deadlines
	h      int32
	target string
	closed bool
}

func (s *stream) Read(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	ms, ok := timeoutMS(s.rd)
	if !ok {
		return 0, &IOError{Op: "read", Target: s.target, Code: ErrTimeout}
	}
	if len(p) > abi.MaxMessage {
		p = p[:abi.MaxMessage]
	}
	n := ioRead(s.h, p, ms)
	switch {
	case n >= 0:
		return int(n), nil
	case n == -int32(ErrClosed):
		return 0, io.EOF
	}
	return 0, ioErr("read", s.target, n)
}

func (s *stream) Write(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		ms, ok := timeoutMS(s.wd)
		if !ok {
			return written, &IOError{Op: "write", Target: s.target, Code: ErrTimeout}
		}
		chunk := p[:min(len(p), abi.MaxMessage)]
		n := ioWrite(s.h, chunk, ms)
		if n < 0 {
			return written, ioErr("write", s.target, n)
		}
		written += int(n)
		p = p[n:]
	}
	return written, nil
}

func (s *stream) Close() error {
	if s.closed {
		return net.ErrClosed
	}
	s.closed = true
	if c := ioClose(s.h); c < 0 && c != -int32(ErrNotFound) {
		return ioErr("close", s.target, c)
	}
	return nil
}

// Conn is a TCP, UDP or TLS connection through the host. It implements
// net.Conn, so code written against net.Conn (protocol clients, bufio)
// works inside a plugin. It is not safe for concurrent use, which a plugin
// never needs.
type Conn struct {
	stream
	network, addr string
}

var _ net.Conn = (*Conn)(nil)

// Dial connects to addr ("host:port") over network "tcp", "udp" or "tls"
// (also "tcp4", "tcp6", "udp4", "udp6", treated alike), waiting at most
// timeout (0: the host default). The host checks the address against the
// grants, resolving a name itself.
//
// Over "tls" the host makes the TLS handshake, checks the server's
// certificate (against the CA of the MapperPlugin's grants.tls entry for
// the address, or the host's system CAs), presents the entry's client
// certificate, and the Conn carries the plaintext; the plugin never sees
// a key. A certificate the host does not trust fails with ErrUnavailable
// and the reason in the host's log and the device status.
func Dial(network, addr string, timeout time.Duration) (*Conn, error) {
	var kind int32
	switch strings.TrimRight(network, "46") {
	case "tcp":
		kind = abi.SockTCP
	case "udp":
		kind = abi.SockUDP
	case "tls":
		kind = abi.SockTLS
	default:
		return nil, Errorf(ErrInvalid, "dial %s %s: network must be tcp, udp or tls", network, addr)
	}
	target := strings.TrimRight(network, "46") + "://" + addr
	ms := uint32(0)
	if timeout > 0 {
		ms, _ = durationMS(timeout)
	}
	h := ioSockOpen(kind, addr, ms)
	if h < 0 {
		return nil, ioErr("connect", target, h)
	}
	return &Conn{stream: stream{h: h, target: target}, network: network, addr: addr}, nil
}

// Read reads at least one byte (one datagram on UDP). It returns io.EOF
// when the peer closed the connection.
func (c *Conn) Read(p []byte) (int, error) { return c.stream.Read(p) }

// Write writes all of p (one datagram on UDP).
func (c *Conn) Write(p []byte) (int, error) { return c.stream.Write(p) }

// Close closes the connection.
func (c *Conn) Close() error { return c.stream.Close() }

// LocalAddr returns a placeholder: the host does not tell the plugin its
// local address.
func (c *Conn) LocalAddr() net.Addr { return Addr{Net: c.network, Addr: "host"} }

// RemoteAddr returns the address the connection was dialled to.
func (c *Conn) RemoteAddr() net.Addr { return Addr{Net: c.network, Addr: c.addr} }

// Addr is a network address as the plugin named it.
type Addr struct{ Net, Addr string }

// Network returns the network name.
func (a Addr) Network() string { return a.Net }

// String returns the address.
func (a Addr) String() string { return a.Addr }

// Parity of a serial line.
type Parity int

// Parities.
const (
	ParityNone Parity = abi.ParityNone
	ParityOdd  Parity = abi.ParityOdd
	ParityEven Parity = abi.ParityEven
)

// ParseParity accepts KubeEdge's spellings: "none"/"N", "odd"/"O",
// "even"/"E" (any case; empty means none).
func ParseParity(s string) (Parity, error) {
	switch strings.ToLower(s) {
	case "", "none", "n":
		return ParityNone, nil
	case "odd", "o":
		return ParityOdd, nil
	case "even", "e":
		return ParityEven, nil
	}
	return 0, Errorf(ErrInvalid, "parity %q: want none, odd or even", s)
}

// SerialConfig is a serial line's framing. Zero fields take the defaults
// 9600 baud, 8 data bits, no parity, 1 stop bit.
type SerialConfig struct {
	BaudRate int
	DataBits int
	Parity   Parity
	StopBits int
	// Timeout bounds the open (0: the host default).
	Timeout time.Duration
}

// SerialPort is a serial port through the host: an io.ReadWriteCloser with
// deadlines. Reads return what has arrived, at least one byte.
type SerialPort struct {
	stream
	path string
}

var _ io.ReadWriteCloser = (*SerialPort)(nil)

// OpenSerial opens a serial port by path, such as "/dev/ttyUSB0". The host
// checks the path against the grants.
func OpenSerial(path string, cfg SerialConfig) (*SerialPort, error) {
	if cfg.BaudRate == 0 {
		cfg.BaudRate = 9600
	}
	if cfg.DataBits == 0 {
		cfg.DataBits = 8
	}
	if cfg.StopBits == 0 {
		cfg.StopBits = 1
	}
	ms := uint32(0)
	if cfg.Timeout > 0 {
		ms, _ = durationMS(cfg.Timeout)
	}
	h := ioSerialOpen(path, int32(cfg.BaudRate), int32(cfg.DataBits), int32(cfg.Parity), int32(cfg.StopBits), ms)
	if h < 0 {
		return nil, ioErr("open serial port", path, h)
	}
	return &SerialPort{stream: stream{h: h, target: path}, path: path}, nil
}

// Read reads at least one byte.
func (s *SerialPort) Read(p []byte) (int, error) { return s.stream.Read(p) }

// Write writes all of p.
func (s *SerialPort) Write(p []byte) (int, error) { return s.stream.Write(p) }

// Close closes the port.
func (s *SerialPort) Close() error { return s.stream.Close() }

// Path returns the port's device path.
func (s *SerialPort) Path() string { return s.path }

// GPIOMode is how a GPIO line is opened.
type GPIOMode int

// GPIO modes.
const (
	GPIOInput         GPIOMode = abi.GPIOInput
	GPIOOutput        GPIOMode = abi.GPIOOutput
	GPIOInputPullUp   GPIOMode = abi.GPIOInputPullUp
	GPIOInputPullDown GPIOMode = abi.GPIOInputPullDown
)

// Edge selects the edges WaitForEdge waits for.
type Edge int

// Edges.
const (
	RisingEdge  Edge = abi.EdgeRising
	FallingEdge Edge = abi.EdgeFalling
	BothEdges   Edge = abi.EdgeBoth
)

// Pin is a GPIO line through the host.
type Pin struct {
	h      int32
	name   string
	closed bool
}

// OpenGPIO opens a GPIO line by name (such as "GPIO17"). The host checks
// the name against the grants. An input line detects edges from the moment
// it is opened, so none is lost between two WaitForEdge calls.
func OpenGPIO(name string, mode GPIOMode) (*Pin, error) {
	h := gpioOpen(name, int32(mode), 0)
	if h < 0 {
		return nil, ioErr("open GPIO line", name, h)
	}
	return &Pin{h: h, name: name}, nil
}

// Name returns the line's name.
func (p *Pin) Name() string { return p.name }

// Read returns the line's level.
func (p *Pin) Read() (bool, error) {
	if p.closed {
		return false, net.ErrClosed
	}
	v := gpioRead(p.h)
	if v < 0 {
		return false, ioErr("read GPIO line", p.name, v)
	}
	return v == 1, nil
}

// Write drives an output line high (true) or low.
func (p *Pin) Write(high bool) error {
	if p.closed {
		return net.ErrClosed
	}
	var v int32
	if high {
		v = 1
	}
	if c := gpioWrite(p.h, v); c < 0 {
		return ioErr("write GPIO line", p.name, c)
	}
	return nil
}

// WaitForEdge waits at most timeout (0: the host default, and never past
// the call's deadline) for an edge and returns the level after it. ok is
// false when no edge came in time.
func (p *Pin) WaitForEdge(edge Edge, timeout time.Duration) (high, ok bool, err error) {
	if p.closed {
		return false, false, net.ErrClosed
	}
	ms := uint32(0)
	if timeout > 0 {
		ms, _ = durationMS(timeout)
	}
	v := gpioWaitEdge(p.h, int32(edge), ms)
	switch {
	case v == -int32(ErrTimeout):
		return false, false, nil
	case v < 0:
		return false, false, ioErr("wait for an edge on GPIO line", p.name, v)
	}
	return v == 1, true, nil
}

// Close releases the handle; the line keeps its direction and level.
func (p *Pin) Close() error {
	if p.closed {
		return net.ErrClosed
	}
	p.closed = true
	if c := ioClose(p.h); c < 0 && c != -int32(ErrNotFound) {
		return ioErr("close GPIO line", p.name, c)
	}
	return nil
}

// IsClosed reports whether err means the connection is gone and should be
// reopened: end of stream, a closed or unknown handle (the instance that
// opened it was replaced), or an I/O error such as a reset.
func IsClosed(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	c := abi.CodeOf(err)
	return c == ErrClosed || c == ErrNotFound || c == ErrIO
}
