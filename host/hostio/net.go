package hostio

import (
	"context"
	"errors"
	"net"
	"time"

	"wapper.dev/wapper/abi"
)

// Dial opens a TCP (kind abi.SockTCP) or UDP (abi.SockUDP) socket to addr
// ("host:port") after checking the grants, trying each granted address in
// turn until one answers or timeout passes. A UDP socket is connected: it
// sends to and receives from addr only.
func (t *Table) Dial(ctx context.Context, kind uint32, addr string, timeout time.Duration) (int32, error) {
	var scheme string
	switch kind {
	case abi.SockTCP:
		scheme = "tcp"
	case abi.SockUDP:
		scheme = "udp"
	default:
		return 0, abi.Errorf(abi.ErrInvalid, "socket kind %d (want %d for TCP or %d for UDP)", kind, abi.SockTCP, abi.SockUDP)
	}
	if err := t.reserve(); err != nil {
		return 0, err
	}
	if timeout <= 0 {
		return 0, abi.Errorf(abi.ErrTimeout, "connect %s://%s: no time left before the call's deadline", scheme, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	targets, err := t.grants.CheckNetwork(ctx, t.resolver, scheme, addr)
	if err != nil {
		return 0, err
	}
	var d net.Dialer
	var errs []error
	for _, ap := range targets {
		c, err := d.DialContext(ctx, scheme, ap.String())
		if err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
			}
			return t.add(&sock{c: c}), nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return 0, ioError("connect "+scheme+"://"+addr, errors.Join(errs...))
}

// sock is a connected TCP or UDP socket.
type sock struct{ c net.Conn }

func (s *sock) kind() string { return "socket" }

func (s *sock) close() error { return s.c.Close() }

func (s *sock) read(p []byte, dl time.Time) (int, error) {
	if err := s.c.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	return s.c.Read(p)
}

func (s *sock) write(p []byte, dl time.Time) (int, error) {
	if err := s.c.SetWriteDeadline(dl); err != nil {
		return 0, err
	}
	return s.c.Write(p)
}
