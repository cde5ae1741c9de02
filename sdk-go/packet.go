package wapper

import (
	"net"

	"wapper.dev/wapper/abi"
)

// PacketConn is an unconnected UDP socket through the host (ABI dgram_*
// calls): it sends datagrams to any address the udp entries of the
// MapperPlugin's grants.network cover, broadcast and multicast addresses
// included, and receives those whose sender they cover (the host drops
// the others). It implements net.PacketConn, for discovery protocols and
// devices that push datagrams, such as SNMP traps.
type PacketConn struct {
	deadlines
	h      int32
	local  string
	closed bool
}

var _ net.PacketConn = (*PacketConn)(nil)

// ListenPacket binds a datagram socket to the local address addr:
// ":0" (an ephemeral port on every address, which needs no grant), a
// fixed port or address (":162", which grants.listen must cover), or a
// multicast group and port ("239.255.255.250:3702", which joins the group;
// grants.listen must cover it too).
func ListenPacket(addr string) (*PacketConn, error) {
	h := dgramOpen(addr)
	if h < 0 {
		return nil, ioErr("bind", "udp://"+addr, h)
	}
	return &PacketConn{h: h, local: addr}, nil
}

// ReadFrom reads one datagram (cut to len(p)) and returns its sender, as a
// *net.UDPAddr.
func (c *PacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.closed {
		return 0, nil, net.ErrClosed
	}
	ms, ok := timeoutMS(c.rd)
	if !ok {
		return 0, nil, &IOError{Op: "receive", Target: "udp://" + c.local, Code: ErrTimeout}
	}
	if len(p) > abi.MaxMessage {
		p = p[:abi.MaxMessage]
	}
	var from [abi.MaxAddrText]byte
	n := dgramRecv(c.h, p, from[:], ms)
	if n < 0 {
		return 0, nil, ioErr("receive", "udp://"+c.local, n)
	}
	end := 0
	for end < len(from) && from[end] != 0 {
		end++
	}
	addr, err := net.ResolveUDPAddr("udp", string(from[:end]))
	if err != nil {
		return 0, nil, Errorf(ErrInternal, "the host gave a bad sender address %q", from[:end])
	}
	return int(n), addr, nil
}

// WriteTo sends p as one datagram to addr.
func (c *PacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	ms, ok := timeoutMS(c.wd)
	if !ok {
		return 0, &IOError{Op: "send", Target: "udp://" + addr.String(), Code: ErrTimeout}
	}
	n := dgramSend(c.h, addr.String(), p, ms)
	if n < 0 {
		return 0, ioErr("send", "udp://"+addr.String(), n)
	}
	return int(n), nil
}

// Close closes the socket.
func (c *PacketConn) Close() error {
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	if r := ioClose(c.h); r < 0 && r != -int32(ErrNotFound) {
		return ioErr("close", "udp://"+c.local, r)
	}
	return nil
}

// LocalAddr returns the address the socket was bound to, as given.
func (c *PacketConn) LocalAddr() net.Addr { return Addr{Net: "udp", Addr: c.local} }
