//go:build !wasip1

package wapper

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
)

// The native fallback runs the same Conn code against the real OS, so these
// tests cover the deadline and error handling that a plugin sees in wasm.

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "bye\n" {
						return
					}
					if line == "silence\n" {
						time.Sleep(time.Second)
						continue
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestConnIsNetConn(t *testing.T) {
	addr := echoServer(t)
	c, err := Dial("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var nc net.Conn = c // existing code written against net.Conn
	r := bufio.NewReader(nc)
	if _, err := nc.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	if nc.RemoteAddr().String() != addr || nc.RemoteAddr().Network() != "tcp" {
		t.Errorf("remote address %v", nc.RemoteAddr())
	}

	// A read past its deadline is a timeout that net.Error and
	// os.ErrDeadlineExceeded both recognise, with the ABI code.
	nc.Write([]byte("silence\n"))
	nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = r.ReadString('\n')
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) || abi.CodeOf(err) != abi.ErrTimeout {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	nc.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a past deadline: %v", err)
	}
	nc.SetDeadline(time.Time{})

	// The peer hangs up: io.EOF, as from a net.Conn.
	nc.Write([]byte("bye\n"))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("read to the end: %v", err)
	}
	if !IsClosed(io.EOF) {
		t.Error("IsClosed(io.EOF) is false")
	}
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second close: %v", err)
	}
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := Dial("tcp", addr, time.Second)
	var ioe *IOError
	if !errors.As(err, &ioe) || ioe.Code != ErrUnavailable || abi.CodeOf(err) != ErrUnavailable {
		t.Fatalf("dial a closed port: %v, want unavailable", err)
	}
	if _, err := Dial("unix", "/tmp/x", 0); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("dial unix: %v, want invalid argument", err)
	}
	denied := &IOError{Op: "connect", Target: "tcp://10.0.0.1:502", Code: ErrDenied}
	if abi.CodeOf(denied) != ErrDenied || abi.MessageOf(denied) == "" {
		t.Fatalf("denied error: code %v message %q", abi.CodeOf(denied), abi.MessageOf(denied))
	}
}

func TestUDPConn(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			pc.WriteTo(buf[:n], from)
		}
	}()
	c, err := Dial("udp", pc.LocalAddr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("datagram"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "datagram" {
		t.Fatalf("datagram %q, %v", buf[:n], err)
	}
}

func TestParseParity(t *testing.T) {
	for s, want := range map[string]Parity{"": ParityNone, "none": ParityNone, "N": ParityNone, "odd": ParityOdd, "O": ParityOdd, "Even": ParityEven, "e": ParityEven} {
		if got, err := ParseParity(s); err != nil || got != want {
			t.Errorf("ParseParity(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := ParseParity("mark"); abi.CodeOf(err) != ErrInvalid {
		t.Errorf("ParseParity(mark): %v", err)
	}
}

func TestGPIONative(t *testing.T) {
	if _, err := OpenGPIO("GPIO17", GPIOOutput); abi.CodeOf(err) != ErrUnsupported {
		t.Fatalf("native GPIO: %v, want unsupported", err)
	}
}

func TestPacketConn(t *testing.T) {
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := ListenPacket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo([]byte("who"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, back, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "who" {
		t.Fatalf("peer: %q %v", buf[:n], err)
	}
	peer.WriteTo([]byte("me"), back)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "me" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("ReadFrom: %q from %v, %v", buf[:n], from, err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := c.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}
