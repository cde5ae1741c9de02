//go:build !wasip1

package wapper

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"wapper.dev/wapper/abi"
)

// Outside wasm, device I/O uses the real OS directly, with no grants: go
// test can run plugin code against a local Modbus server or a pty. GPIO is
// not available natively.

// NativeTLSConfig configures the TLS connections of Dial("tls", ...) when
// the plugin runs natively (not in wasm), where no MapperPlugin grants
// apply; nil means crypto/tls's defaults (the system's CAs).
var NativeTLSConfig *tls.Config

var nativeIO struct {
	sync.Mutex // guards next and m
	next       int32
	m          map[int32]nativeStream
}

type nativeStream interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

func nativeAdd(s nativeStream) int32 {
	nativeIO.Lock()
	defer nativeIO.Unlock()
	if nativeIO.m == nil {
		nativeIO.m = map[int32]nativeStream{}
	}
	if len(nativeIO.m) >= abi.MaxHandles {
		s.Close()
		return -int32(abi.ErrLimit)
	}
	nativeIO.next++
	nativeIO.m[nativeIO.next] = s
	return nativeIO.next
}

func nativeGet(h int32) nativeStream {
	nativeIO.Lock()
	defer nativeIO.Unlock()
	return nativeIO.m[h]
}

func nativeTimeout(ms uint32) time.Time {
	if ms == 0 {
		return time.Now().Add(5 * time.Second)
	}
	return time.Now().Add(time.Duration(ms) * time.Millisecond)
}

func nativeErr(err error) int32 {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return -int32(abi.ErrTimeout)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return -int32(abi.ErrClosed)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, os.ErrNotExist),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return -int32(abi.ErrUnavailable)
	}
	if c := abi.CodeOf(err); c != abi.ErrInternal {
		return -int32(c)
	}
	return -int32(abi.ErrIO)
}

func ioSockOpen(kind int32, addr string, ms uint32) int32 {
	network := "tcp"
	switch kind {
	case abi.SockTCP:
	case abi.SockUDP:
		network = "udp"
	case abi.SockTLS:
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Until(nativeTimeout(ms))}, Config: NativeTLSConfig}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nativeErr(err)
		}
		return nativeAdd(c.(nativeStream))
	default:
		return -int32(abi.ErrInvalid)
	}
	c, err := net.DialTimeout(network, addr, time.Until(nativeTimeout(ms)))
	if err != nil {
		return nativeErr(err)
	}
	return nativeAdd(c.(nativeStream))
}

// Natively, datagram sockets are the OS's, with no grants.
var nativeDgrams struct {
	sync.Mutex // guards m
	m          map[int32]*net.UDPConn
}

func dgramOpen(addr string) int32 {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nativeErr(err)
	}
	uc := c.(*net.UDPConn)
	h := nativeAdd(uc)
	if h > 0 {
		nativeDgrams.Lock()
		if nativeDgrams.m == nil {
			nativeDgrams.m = map[int32]*net.UDPConn{}
		}
		nativeDgrams.m[h] = uc
		nativeDgrams.Unlock()
	}
	return h
}

func nativeDgram(h int32) *net.UDPConn {
	nativeDgrams.Lock()
	defer nativeDgrams.Unlock()
	return nativeDgrams.m[h]
}

func dgramSend(h int32, addr string, p []byte, ms uint32) int32 {
	c := nativeDgram(h)
	if c == nil {
		return -int32(abi.ErrNotFound)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return -int32(abi.ErrInvalid)
	}
	c.SetWriteDeadline(nativeTimeout(ms))
	n, err := c.WriteTo(p, ua)
	if err != nil {
		return nativeErr(err)
	}
	return int32(n)
}

func dgramRecv(h int32, p, from []byte, ms uint32) int32 {
	c := nativeDgram(h)
	if c == nil {
		return -int32(abi.ErrNotFound)
	}
	if len(from) < abi.MaxAddrText {
		return -int32(abi.ErrInvalid)
	}
	c.SetReadDeadline(nativeTimeout(ms))
	n, sender, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return nativeErr(err)
	}
	sender = netip.AddrPortFrom(sender.Addr().Unmap(), sender.Port())
	copy(from, append([]byte(sender.String()), 0))
	return int32(n)
}

func ioSerialOpen(path string, baud, dataBits, parity, stopBits int32, ms uint32) int32 {
	f, err := nativeOpenSerial(path, baud, dataBits, parity, stopBits)
	if err != nil {
		return nativeErr(err)
	}
	return nativeAdd(f)
}

func ioRead(h int32, p []byte, ms uint32) int32 {
	s := nativeGet(h)
	if s == nil {
		return -int32(abi.ErrNotFound)
	}
	s.SetReadDeadline(nativeTimeout(ms))
	n, err := s.Read(p)
	if n > 0 {
		return int32(n)
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return nativeErr(err)
}

func ioWrite(h int32, p []byte, ms uint32) int32 {
	s := nativeGet(h)
	if s == nil {
		return -int32(abi.ErrNotFound)
	}
	s.SetWriteDeadline(nativeTimeout(ms))
	n, err := s.Write(p)
	if err != nil {
		return nativeErr(err)
	}
	return int32(n)
}

func ioClose(h int32) int32 {
	nativeIO.Lock()
	s := nativeIO.m[h]
	delete(nativeIO.m, h)
	nativeIO.Unlock()
	nativeDgrams.Lock()
	delete(nativeDgrams.m, h)
	nativeDgrams.Unlock()
	if s == nil {
		return -int32(abi.ErrNotFound)
	}
	s.Close()
	return 0
}

func gpioOpen(string, int32, uint32) int32 { return -int32(abi.ErrUnsupported) }

func gpioRead(int32) int32 { return -int32(abi.ErrNotFound) }

func gpioWrite(int32, int32) int32 { return -int32(abi.ErrNotFound) }

func gpioWaitEdge(int32, int32, uint32) int32 { return -int32(abi.ErrNotFound) }
