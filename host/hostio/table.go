package hostio

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"wapper.dev/wapper/abi"
)

// DefaultTimeout is the timeout of an I/O call whose timeout_ms is 0.
const DefaultTimeout = 5 * time.Second

// Timeout turns a guest's timeout_ms into a duration: 0 means
// DefaultTimeout, and the result ends before deadline (that of the export
// call in progress; zero for none) by a margin of a tenth of the time left,
// at most 100 ms, so that the guest can still return the error before the
// runtime stops it. It is zero or negative when the deadline has passed.
func Timeout(deadline time.Time, ms uint32) time.Duration {
	d := DefaultTimeout
	if ms != 0 {
		d = time.Duration(ms) * time.Millisecond
	}
	if !deadline.IsZero() {
		left := time.Until(deadline)
		left -= min(left/10, 100*time.Millisecond)
		if left < d {
			d = left
		}
	}
	return d
}

// handle is one open resource.
type handle interface {
	kind() string
	close() error
}

// stream is a handle that reads and writes bytes: a socket or a serial port.
type stream interface {
	handle
	read(p []byte, deadline time.Time) (int, error)
	write(p []byte, deadline time.Time) (int, error)
	// target names what the stream is connected to, for messages:
	// "tcp://10.0.0.5:502", "/dev/ttyUSB0".
	target() string
}

// Table holds the open handles of one plugin instance, at most
// abi.MaxHandles of them. Handles are positive and not reused until the
// counter wraps, so a stale handle does not reach a newer resource.
type Table struct {
	grants   *Grants
	resolver Resolver
	secrets  Secrets
	handles  map[int32]handle
	next     int32
}

// Option configures a Table.
type Option func(*Table)

// WithResolver makes the table resolve host names with r instead of
// net.DefaultResolver.
func WithResolver(r Resolver) Option { return func(t *Table) { t.resolver = r } }

// WithSecrets gives the table the host's secrets, for secret_get and for
// the CA and client certificates of TLS connections.
func WithSecrets(s Secrets) Option { return func(t *Table) { t.secrets = s } }

// NewTable returns an empty table whose opens are checked against g (nil
// grants nothing).
func NewTable(g *Grants, opts ...Option) *Table {
	t := &Table{grants: g, handles: map[int32]handle{}}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Len returns the number of open handles.
func (t *Table) Len() int { return len(t.handles) }

func (t *Table) reserve() error {
	if len(t.handles) >= abi.MaxHandles {
		return abi.Errorf(abi.ErrLimit, "the instance already has %d open I/O handles (the limit); close one first", abi.MaxHandles)
	}
	return nil
}

func (t *Table) add(h handle) int32 {
	for {
		t.next++
		if t.next <= 0 {
			t.next = 1
		}
		if _, used := t.handles[t.next]; !used {
			t.handles[t.next] = h
			return t.next
		}
	}
}

func (t *Table) get(h int32) (handle, error) {
	x, ok := t.handles[h]
	if !ok {
		return nil, abi.Errorf(abi.ErrNotFound, "I/O handle %d is not open", h)
	}
	return x, nil
}

func (t *Table) stream(h int32) (stream, error) {
	x, err := t.get(h)
	if err != nil {
		return nil, err
	}
	s, ok := x.(stream)
	if !ok {
		return nil, abi.Errorf(abi.ErrInvalid, "handle %d is a %s, not a socket or serial port", h, x.kind())
	}
	return s, nil
}

// Read reads at least one byte from a socket or serial port into p, waiting
// at most timeout. A UDP socket reads one datagram.
func (t *Table) Read(h int32, p []byte, timeout time.Duration) (int, error) {
	s, err := t.stream(h)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, abi.Errorf(abi.ErrInvalid, "read into an empty buffer")
	}
	if timeout <= 0 {
		return 0, abi.Errorf(abi.ErrTimeout, "read: no time left before the call's deadline")
	}
	n, err := s.read(p, time.Now().Add(timeout))
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, ioError("read "+s.target(), err)
}

// Write writes all of p to a socket or serial port, waiting at most
// timeout.
func (t *Table) Write(h int32, p []byte, timeout time.Duration) (int, error) {
	s, err := t.stream(h)
	if err != nil {
		return 0, err
	}
	if timeout <= 0 {
		return 0, abi.Errorf(abi.ErrTimeout, "write: no time left before the call's deadline")
	}
	n, err := s.write(p, time.Now().Add(timeout))
	if err != nil {
		return n, ioError("write "+s.target(), err)
	}
	return n, nil
}

// Close closes a handle of any kind. Only an unknown handle is an error:
// the resource is released whatever its close says (a TLS socket whose
// peer has hung up fails to send its close_notify, say), and such an
// error would only hide the failure that made the plugin close it.
func (t *Table) Close(h int32) error {
	x, err := t.get(h)
	if err != nil {
		return err
	}
	delete(t.handles, h)
	x.close()
	return nil
}

// CloseAll closes every handle; the instance is going away.
func (t *Table) CloseAll() {
	for h, x := range t.handles {
		x.close()
		delete(t.handles, h)
	}
}

// ioError maps an I/O error to its ABI code, with a message of op and
// the cause in words ("connect tcp://10.0.0.5:502: connection refused").
func ioError(op string, err error) error {
	var ae *abi.Error
	if errors.As(err, &ae) {
		return err
	}
	code, cause := classify(err)
	return abi.Errorf(code, "%s: %s", op, cause)
}

// classify returns the ABI code of an I/O error and its cause in words.
func classify(err error) (abi.Code, string) {
	if code, cause, ok := classifyTLS(err); ok {
		return code, cause
	}
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		e := dnsError(dnsErr.Name, dnsErr).(*abi.Error)
		return e.Code, e.Message
	case errors.Is(err, syscall.ECONNREFUSED):
		return abi.ErrUnavailable, "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return abi.ErrUnavailable, "no route to host (host unreachable)"
	case errors.Is(err, syscall.ENETUNREACH):
		return abi.ErrUnavailable, "network unreachable (no route to the host's network)"
	case errors.Is(err, syscall.EHOSTDOWN):
		return abi.ErrUnavailable, "host is down"
	case errors.Is(err, syscall.ETIMEDOUT):
		return abi.ErrTimeout, "connection timed out"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return abi.ErrTimeout, "timed out (no answer in time)"
	case errors.Is(err, syscall.ECONNRESET):
		return abi.ErrClosed, "connection reset by the peer"
	case errors.Is(err, syscall.EPIPE):
		return abi.ErrClosed, "broken pipe (the peer closed the connection)"
	case errors.Is(err, io.EOF):
		return abi.ErrClosed, "end of stream (the peer closed the connection)"
	case errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed):
		return abi.ErrClosed, "the connection is closed"
	case errors.Is(err, os.ErrNotExist):
		return abi.ErrUnavailable, "no such device"
	case errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return abi.ErrUnavailable, "no such device (" + errnoText(err) + ")"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return abi.ErrUnavailable, "permission denied (check the host's permissions on the device)"
	case errors.Is(err, syscall.EBUSY):
		return abi.ErrUnavailable, "device busy (check the host's permissions on the device, and that no other program holds it)"
	}
	return abi.ErrIO, err.Error()
}

// errnoText is the system's text of the errno inside err, or err's text.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
