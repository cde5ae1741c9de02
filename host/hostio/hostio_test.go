package hostio_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/internal/testenv"
)

// fakeResolver answers from a map, as a DNS server would.
type fakeResolver map[string][]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range r[strings.ToLower(host)] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func code(err error) abi.Code { return abi.CodeOf(err) }

func TestNetworkGrants(t *testing.T) {
	g := hostio.MustGrants(grant.Set{Network: []string{
		"tcp://10.0.0.0/24:502", "tcp://plc.plant:502", "tcp://127.0.0.1:*", "udp://[::1]:1000-2000",
		"tcp://mixed.plant:502",
	}})
	r := fakeResolver{"plc.plant": {"10.0.0.7"}, "mixed.plant": {"10.0.0.8", "192.168.1.1"}, "other.plant": {"10.0.0.9"}}
	ctx := context.Background()
	for _, tc := range []struct {
		scheme, addr string
		want         abi.Code
	}{
		{"tcp", "10.0.0.5:502", abi.OK},
		{"tcp", "10.0.1.5:502", abi.ErrDenied},
		{"tcp", "10.0.0.5:503", abi.ErrDenied},
		{"udp", "10.0.0.5:502", abi.ErrDenied},
		{"tcp", "plc.plant:502", abi.OK},
		{"tcp", "PLC.plant:502", abi.OK},
		{"tcp", "other.plant:502", abi.ErrDenied}, // its address is granted, the name is not
		{"tcp", "mixed.plant:502", abi.ErrDenied}, // one of its addresses is not granted
		{"tcp", "127.0.0.1:65000", abi.OK},
		{"udp", "[::1]:1500", abi.OK},
		{"udp", "[::1]:2500", abi.ErrDenied},
		{"tcp", "no-port", abi.ErrInvalid},
	} {
		aps, err := g.CheckNetwork(ctx, r, tc.scheme, tc.addr)
		if got := code(err); got != tc.want {
			t.Errorf("%s://%s: %v (code %v), want %v", tc.scheme, tc.addr, err, got, tc.want)
		}
		if err == nil && len(aps) == 0 {
			t.Errorf("%s://%s: allowed with no address", tc.scheme, tc.addr)
		}
	}
	_, err := g.CheckNetwork(ctx, r, "tcp", "mixed.plant:502")
	var de *hostio.DeniedError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "192.168.1.1") || !strings.Contains(err.Error(), "grants.network [tcp://10.0.0.0/24:502, ") {
		t.Errorf("denial %v does not name the address and the grants", err)
	}
	var none *hostio.Grants
	if _, err := none.CheckNetwork(ctx, r, "tcp", "10.0.0.5:502"); code(err) != abi.ErrDenied {
		t.Errorf("nil grants allowed a connection: %v", err)
	}
	if _, err := hostio.ParseGrants(grant.Set{Network: []string{"http://x:1"}, Serial: []string{"dev/tty"}}); err == nil {
		t.Error("bad grants parsed")
	}
}

func TestSerialAndGPIOGrants(t *testing.T) {
	g := hostio.MustGrants(grant.Set{Serial: []string{"/dev/ttyUSB*", "/dev/pts/*"}, GPIO: []string{"GPIO1?", "LED"}})
	for path, want := range map[string]abi.Code{
		"/dev/ttyUSB0":               abi.OK,
		"/dev/../dev/ttyUSB1":        abi.OK,
		"/dev/ttyUSB0/../../etc/tty": abi.ErrDenied,
		"/dev/ttyS0":                 abi.ErrDenied,
		"dev/ttyUSB0":                abi.ErrInvalid,
	} {
		if _, err := g.CheckSerial(path); code(err) != want {
			t.Errorf("serial %s: %v, want %v", path, err, want)
		}
	}
	for name, want := range map[string]abi.Code{"GPIO17": abi.OK, "LED": abi.OK, "GPIO4": abi.ErrDenied, "GPIO170": abi.ErrDenied, "": abi.ErrInvalid} {
		if err := g.CheckGPIO(name); code(err) != want {
			t.Errorf("gpio %q: %v, want %v", name, err, want)
		}
	}
}

func TestTimeout(t *testing.T) {
	if d := hostio.Timeout(time.Time{}, 0); d != hostio.DefaultTimeout {
		t.Errorf("default timeout %v", d)
	}
	if d := hostio.Timeout(time.Time{}, 250); d != 250*time.Millisecond {
		t.Errorf("timeout 250 ms: %v", d)
	}
	if d := hostio.Timeout(time.Now().Add(time.Second), 10_000); d > 900*time.Millisecond || d <= 0 {
		t.Errorf("timeout not capped by the deadline with a margin: %v", d)
	}
	if d := hostio.Timeout(time.Now().Add(-time.Second), 10); d > 0 {
		t.Errorf("timeout after the deadline: %v", d)
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				c.Write(bytes.ToUpper(buf[:n]))
				c.Close()
			}()
		}
	}()
	addr := ln.Addr().String()
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"tcp://127.0.0.1:*"}}))
	defer tb.CloseAll()
	ctx := context.Background()
	h, err := tb.Dial(ctx, abi.SockTCP, addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tb.Write(h, []byte("ping"), time.Second); n != 4 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	buf := make([]byte, 16)
	n, err := tb.Read(h, buf, 5*time.Second)
	if err != nil || string(buf[:n]) != "PING" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := tb.Read(h, buf, 5*time.Second); code(err) != abi.ErrClosed {
		t.Fatalf("read after the peer closed: %v, want closed", err)
	}
	if err := tb.Close(h); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Read(h, buf, time.Second); code(err) != abi.ErrNotFound {
		t.Fatalf("read on a closed handle: %v", err)
	}
	// A port with nothing listening is unavailable; an address not granted
	// is denied before any packet leaves.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	if _, err := tb.Dial(ctx, abi.SockTCP, deadAddr, time.Second); code(err) != abi.ErrUnavailable {
		t.Fatalf("dial a closed port: %v, want unavailable", err)
	}
	if _, err := tb.Dial(ctx, abi.SockTCP, "127.0.0.2:80", time.Second); code(err) != abi.ErrDenied {
		t.Fatalf("dial 127.0.0.2: %v, want denied", err)
	}
	if _, err := tb.Dial(ctx, abi.SockUDP, addr, time.Second); code(err) != abi.ErrDenied {
		t.Fatalf("UDP with a TCP grant: %v, want denied", err)
	}
}

func TestReadTimeoutAndHandleCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // never answers
		}
	}()
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"tcp://127.0.0.1:*"}}))
	defer tb.CloseAll()
	var hs []int32
	for range abi.MaxHandles {
		h, err := tb.Dial(context.Background(), abi.SockTCP, ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if _, err := tb.Dial(context.Background(), abi.SockTCP, ln.Addr().String(), time.Second); code(err) != abi.ErrLimit {
		t.Fatalf("handle %d: %v, want limit reached", abi.MaxHandles+1, err)
	}
	if _, err := tb.Read(hs[0], make([]byte, 8), 50*time.Millisecond); code(err) != abi.ErrTimeout {
		t.Fatalf("read from a silent peer: %v, want timeout", err)
	}
	tb.Close(hs[0])
	h, err := tb.Dial(context.Background(), abi.SockTCP, ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("dial after closing one: %v", err)
	}
	if h == hs[0] {
		t.Errorf("handle %d reused at once", h)
	}
	tb.CloseAll()
	if tb.Len() != 0 {
		t.Fatalf("%d handles left after CloseAll", tb.Len())
	}
}

func TestUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
			pc.WriteTo([]byte("second"), from)
		}
	}()
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"udp://127.0.0.1:*"}}))
	defer tb.CloseAll()
	h, err := tb.Dial(context.Background(), abi.SockUDP, pc.LocalAddr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Write(h, []byte("first"), time.Second); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for _, want := range []string{"first", "second"} {
		n, err := tb.Read(h, buf, 5*time.Second)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("datagram %q, %v; want %q", buf[:n], err, want)
		}
	}
}

func TestSerialPty(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		testenv.Missing(t, "a pseudo-terminal", err.Error())
	}
	defer ptmx.Close()
	path := tty.Name()
	tty.Close()
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{Serial: []string{"/dev/pts/*"}}))
	defer tb.CloseAll()
	ctx := context.Background()
	h, err := tb.OpenSerial(ctx, path, hostio.SerialConfig{Baud: 9600, DataBits: 8, StopBits: 1}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Write(h, []byte{0x01, 0x0a, 0x0d, 0xff}, time.Second); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	ptmx.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(ptmx, got); err != nil || !bytes.Equal(got, []byte{0x01, 0x0a, 0x0d, 0xff}) {
		t.Fatalf("raw bytes through the port: % x, %v (raw mode must not translate)", got, err)
	}
	ptmx.Write([]byte("ok"))
	// A read returns what has arrived, maybe "o" then "k": read until both
	// are in, so that the timeout check below always runs with nothing
	// left to read. (30 s only bounds a hang: the bytes are already sent.)
	buf := make([]byte, 8)
	var in []byte
	for len(in) < 2 {
		n, err := tb.Read(h, buf, 30*time.Second)
		if err != nil {
			t.Fatalf("read %q, then %v", in, err)
		}
		in = append(in, buf[:n]...)
	}
	if string(in) != "ok" {
		t.Fatalf("read %q, want \"ok\"", in)
	}
	if _, err := tb.Read(h, buf, 50*time.Millisecond); code(err) != abi.ErrTimeout {
		t.Fatalf("read with nothing sent: %v, want timeout", err)
	}
	if _, err := tb.OpenSerial(ctx, "/dev/ttyS0", hostio.SerialConfig{Baud: 9600, DataBits: 8, StopBits: 1}, time.Second); code(err) != abi.ErrDenied {
		t.Fatalf("ungranted port: %v, want denied", err)
	}
	if _, err := tb.OpenSerial(ctx, "/dev/pts/999999", hostio.SerialConfig{Baud: 9600, DataBits: 8, StopBits: 1}, time.Second); code(err) != abi.ErrUnavailable {
		t.Fatalf("missing port: %v, want unavailable", err)
	}
	if _, err := tb.OpenSerial(ctx, path, hostio.SerialConfig{Baud: 12345, DataBits: 8, StopBits: 1}, time.Second); code(err) != abi.ErrInvalid {
		t.Fatalf("odd baud rate: %v, want invalid", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestGPIO(t *testing.T) {
	out := &gpiotest.Pin{N: "HOSTIO_OUT", Num: 900}
	in := &gpiotest.Pin{N: "HOSTIO_IN", Num: 901, EdgesChan: make(chan gpio.Level, 4)}
	for _, p := range []*gpiotest.Pin{out, in} {
		if err := gpioreg.Register(p); err != nil {
			t.Fatal(err)
		}
		defer gpioreg.Unregister(p.N)
	}
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{GPIO: []string{"HOSTIO_*", "MISSING"}}))
	defer tb.CloseAll()
	ctx := context.Background()
	ho, err := tb.OpenGPIO(ctx, "HOSTIO_OUT", abi.GPIOOutput, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.GPIOWrite(ho, 1); err != nil || out.Read() != gpio.High {
		t.Fatalf("write high: %v, level %v", err, out.Read())
	}
	if v, err := tb.GPIORead(ho); err != nil || v != 1 {
		t.Fatalf("read back %d, %v", v, err)
	}
	hi, err := tb.OpenGPIO(ctx, "HOSTIO_IN", abi.GPIOInputPullDown, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.GPIOWrite(hi, 1); code(err) != abi.ErrInvalid {
		t.Fatalf("write to an input: %v", err)
	}
	if _, err := tb.GPIOWaitEdge(hi, abi.EdgeRising, 20*time.Millisecond); code(err) != abi.ErrTimeout {
		t.Fatalf("wait with no edge: %v, want timeout", err)
	}
	// A falling edge is consumed while waiting for a rising one.
	in.EdgesChan <- gpio.Low
	in.EdgesChan <- gpio.High
	if v, err := tb.GPIOWaitEdge(hi, abi.EdgeRising, 5*time.Second); err != nil || v != 1 {
		t.Fatalf("rising edge: %d, %v", v, err)
	}
	if _, err := tb.OpenGPIO(ctx, "GPIO4", abi.GPIOInput, time.Second); code(err) != abi.ErrDenied {
		t.Fatalf("ungranted line: %v, want denied", err)
	}
	if _, err := tb.OpenGPIO(ctx, "MISSING", abi.GPIOInput, time.Second); code(err) != abi.ErrUnavailable {
		t.Fatalf("missing line: %v, want unavailable", err)
	}
	if _, err := tb.GPIORead(999); code(err) != abi.ErrNotFound {
		t.Fatalf("unknown handle: %v", err)
	}
}
