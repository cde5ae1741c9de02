package hostio

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"

	"wapper.dev/wapper/abi"
)

// Dial opens a TCP (kind abi.SockTCP), UDP (abi.SockUDP) or TLS
// (abi.SockTLS) socket to addr ("host:port") after checking the grants,
// trying each granted address in turn until one answers or timeout passes.
// A UDP socket is connected: it sends to and receives from addr only. A
// TLS socket is handshaken (see tlsConfig) before Dial returns.
func (t *Table) Dial(ctx context.Context, kind uint32, addr string, timeout time.Duration) (int32, error) {
	var scheme string
	switch kind {
	case abi.SockTCP:
		scheme = "tcp"
	case abi.SockUDP:
		scheme = "udp"
	case abi.SockTLS:
		scheme = "tls"
	default:
		return 0, abi.Errorf(abi.ErrInvalid, "socket kind %d (want %d for TCP, %d for UDP or %d for TLS)", kind, abi.SockTCP, abi.SockUDP, abi.SockTLS)
	}
	if err := t.reserve(); err != nil {
		return 0, err
	}
	if timeout <= 0 {
		return 0, abi.Errorf(abi.ErrTimeout, "connect %s://%s: no time left before the call's deadline", scheme, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op := "connect " + scheme + "://" + addr
	targets, err := t.grants.CheckNetwork(ctx, t.resolver, scheme, addr)
	if err != nil {
		if ae, ok := err.(*abi.Error); ok && (ae.Code == abi.ErrUnavailable || ae.Code == abi.ErrTimeout) {
			return 0, abi.Errorf(ae.Code, "%s: %s", op, ae.Message) // a failed DNS lookup
		}
		return 0, err
	}
	var tlsCfg *tls.Config
	network := scheme
	if kind == abi.SockTLS {
		if tlsCfg, err = t.tlsConfig(addr); err != nil {
			return 0, err
		}
		network = "tcp"
	}
	var d net.Dialer
	var errs []error
	var causes []string
	for _, ap := range targets {
		c, err := d.DialContext(ctx, network, ap.String())
		if err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
			}
			if tlsCfg != nil {
				if c, err = handshake(ctx, c, tlsCfg, op); err != nil {
					return 0, err
				}
			}
			return t.add(&sock{c: c, name: scheme + "://" + addr}), nil
		}
		errs = append(errs, err)
		_, cause := classify(err)
		causes = append(causes, ap.String()+": "+cause)
		if ctx.Err() != nil {
			break
		}
	}
	code, cause := classify(errors.Join(errs...))
	if len(targets) > 1 {
		// A name with several addresses: say what each one answered.
		cause = strings.Join(causes, "; ")
	}
	return 0, abi.Errorf(code, "%s: %s", op, cause)
}

// sock is a connected TCP or UDP socket; name is "tcp://" or "udp://" and
// the address the plugin gave.
type sock struct {
	c    net.Conn
	name string
}

func (s *sock) target() string { return s.name }

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
