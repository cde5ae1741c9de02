package hostio

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"wapper.dev/wapper/abi"
)

// Datagram sockets (abi/SPEC.md §6.4, dgram_*): unconnected UDP sockets
// that send to any granted address, broadcast and multicast included, and
// receive from many, for discovery and for devices that push datagrams
// (SNMP traps). What a plugin may send to, and hear from, are the udp
// entries of grants.network; what it may bind, grants.listen.

// OpenDatagram binds an unconnected UDP socket to the local address addr
// ("IP:PORT" or ":PORT"). An ephemeral port on every address (":0",
// "0.0.0.0:0", "[::]:0") needs no grant: the socket only hears senders
// that grants.network covers. Any other address needs a grants.listen
// entry. A multicast IP joins that group on the host's default multicast
// interface and receives what is sent to it. Broadcasts may be sent.
func (t *Table) OpenDatagram(addr string) (int32, error) {
	if err := t.reserve(); err != nil {
		return 0, err
	}
	ap, err := parseBind(addr)
	if err != nil {
		return 0, err
	}
	if ap.Port() != 0 || !ap.Addr().IsUnspecified() {
		if !t.grants.allowsListen(ap) {
			return 0, t.grants.denied(KindListen, "udp://"+ap.String(), "")
		}
	}
	ua := net.UDPAddrFromAddrPort(ap)
	var c *net.UDPConn
	if ap.Addr().IsMulticast() {
		c, err = net.ListenMulticastUDP("udp", nil, ua)
	} else {
		c, err = net.ListenUDP("udp", ua)
	}
	if err != nil {
		return 0, ioError("bind udp://"+ap.String(), err)
	}
	if err := setBroadcast(c); err != nil {
		c.Close()
		return 0, ioError("bind udp://"+ap.String(), err)
	}
	return t.add(&dgram{c: c, name: "udp://" + c.LocalAddr().String()}), nil
}

// parseBind parses a local address: "IP:PORT" or ":PORT" (every address).
func parseBind(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		host = "0.0.0.0"
	}
	var ap netip.AddrPort
	if err == nil {
		ap, err = netip.ParseAddrPort(net.JoinHostPort(host, port))
	}
	if err != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, abi.Errorf(abi.ErrInvalid, "bind address %q: want IP:PORT or :PORT, such as :0 or 239.255.255.250:3702", addr)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func setBroadcast(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
	}); err != nil {
		return err
	}
	return serr
}

// SendTo sends one datagram p from datagram socket h to addr ("host:port"),
// which the udp entries of grants.network must cover (a name is resolved
// and each of its addresses checked, as for Dial; it goes to the first).
func (t *Table) SendTo(ctx context.Context, h int32, addr string, p []byte, timeout time.Duration) (int, error) {
	d, err := t.dgram(h)
	if err != nil {
		return 0, err
	}
	if timeout <= 0 {
		return 0, abi.Errorf(abi.ErrTimeout, "send to udp://%s: no time left before the call's deadline", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	targets, err := t.grants.CheckNetwork(ctx, t.resolver, "udp", addr)
	if err != nil {
		return 0, err
	}
	if err := d.c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return 0, ioError("send to udp://"+addr, err)
	}
	n, err := d.c.WriteToUDPAddrPort(p, targets[0])
	if err != nil {
		return n, ioError("send to udp://"+addr, err)
	}
	return n, nil
}

// RecvFrom reads the next datagram into p from a sender that the udp
// entries of grants.network cover, waiting at most timeout, and returns
// its length (cut to len(p)) and its sender. Datagrams from other senders
// are dropped and counted in Dropped.
func (t *Table) RecvFrom(h int32, p []byte, timeout time.Duration) (int, netip.AddrPort, error) {
	d, err := t.dgram(h)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if len(p) == 0 {
		return 0, netip.AddrPort{}, abi.Errorf(abi.ErrInvalid, "receive into an empty buffer")
	}
	if timeout <= 0 {
		return 0, netip.AddrPort{}, abi.Errorf(abi.ErrTimeout, "receive: no time left before the call's deadline")
	}
	if err := d.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, netip.AddrPort{}, ioError("receive on "+d.name, err)
	}
	for {
		n, from, err := d.c.ReadFromUDPAddrPort(p)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, netip.AddrPort{}, abi.Errorf(abi.ErrTimeout, "receive on %s: no datagram from a granted sender in time", d.name)
			}
			return 0, netip.AddrPort{}, ioError("receive on "+d.name, err)
		}
		// Unmapped and without its zone: a link-local IPv6 sender's
		// text then fits abi.MaxAddrText, and grants match it.
		from = netip.AddrPortFrom(from.Addr().Unmap().WithZone(""), from.Port())
		if t.grants.allowsNet("udp", from.Addr().String(), int(from.Port())) {
			return n, from, nil
		}
		d.dropped++
	}
}

// Dropped returns how many datagrams socket h dropped because their
// sender is not granted.
func (t *Table) Dropped(h int32) int {
	d, err := t.dgram(h)
	if err != nil {
		return 0
	}
	return d.dropped
}

func (t *Table) dgram(h int32) (*dgram, error) {
	x, err := t.get(h)
	if err != nil {
		return nil, err
	}
	d, ok := x.(*dgram)
	if !ok {
		return nil, abi.Errorf(abi.ErrInvalid, "handle %d is a %s, not a datagram socket", h, x.kind())
	}
	return d, nil
}

// dgram is an unconnected UDP socket.
type dgram struct {
	c       *net.UDPConn
	name    string
	dropped int
}

func (d *dgram) kind() string { return "datagram socket" }

func (d *dgram) close() error { return d.c.Close() }

// allowsListen reports whether a grants.listen entry covers binding ap.
func (g *Grants) allowsListen(ap netip.AddrPort) bool {
	if g == nil {
		return false
	}
	for _, l := range g.listen {
		if ap.Port() == 0 {
			// An ephemeral port: an entry for every port of the address.
			if l.PortMin == 1 && l.PortMax == 65535 && l.Allows("udp", ap.Addr().String(), 1) {
				return true
			}
		} else if l.Allows("udp", ap.Addr().String(), int(ap.Port())) {
			return true
		}
	}
	return false
}
