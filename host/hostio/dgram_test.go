package hostio_test

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/internal/testenv"
)

// udpPeer is a plain UDP socket on addr ("127.0.0.2:0").
func udpPeer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func port(c *net.UDPConn) string { return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) }

func TestDatagrams(t *testing.T) {
	granted := udpPeer(t, "127.0.0.1:0")
	stranger := udpPeer(t, "127.0.0.2:0") // on lo, like every 127/8 address
	g := hostio.MustGrants(grant.Set{
		Network: []string{"udp://127.0.0.1:" + port(granted)},
		Listen:  []string{"udp://127.0.0.1:*"},
	})
	tab := hostio.NewTable(g)
	defer tab.CloseAll()

	// Binding: an ephemeral port anywhere needs no grant; a fixed port
	// or address needs grants.listen.
	h, err := tab.OpenDatagram(":0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.OpenDatagram("127.0.0.1:0"); err != nil {
		t.Errorf("an ephemeral port of a granted address: %v", err)
	}
	for _, addr := range []string{":162", "0.0.0.0:5000", "127.0.0.2:0"} {
		if _, err := tab.OpenDatagram(addr); code(err) != abi.ErrDenied || !strings.Contains(err.Error(), "grants.listen [udp://127.0.0.1:*]") {
			t.Errorf("bind %s: %v, want a refusal naming grants.listen", addr, err)
		}
	}
	for _, addr := range []string{"plc.local:5", "127.0.0.1", "[fe80::1%eth0]:5"} {
		if _, err := tab.OpenDatagram(addr); code(err) != abi.ErrInvalid {
			t.Errorf("bind %s: %v, want invalid", addr, err)
		}
	}

	// Sending: only to granted addresses.
	ctx := t.Context()
	if _, err := tab.SendTo(ctx, h, granted.LocalAddr().String(), []byte("ping"), time.Second); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	granted.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := granted.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	if _, err := tab.SendTo(ctx, h, stranger.LocalAddr().String(), []byte("ping"), time.Second); code(err) != abi.ErrDenied {
		t.Errorf("send to an ungranted address: %v", err)
	}

	// Receiving: a stranger's datagram is dropped, the granted sender's
	// comes with its address.
	if _, err := stranger.WriteToUDPAddrPort([]byte("intruder"), from); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the stranger's datagram arrive first
	if _, err := granted.WriteToUDPAddrPort([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	n, sender, err := tab.RecvFrom(h, buf, 10*time.Second)
	if err != nil || string(buf[:n]) != "pong" || sender.String() != granted.LocalAddr().String() {
		t.Fatalf("received %q from %v, %v", buf[:n], sender, err)
	}
	if tab.Dropped(h) != 1 {
		t.Errorf("dropped %d datagrams, want the stranger's", tab.Dropped(h))
	}
	if _, _, err := tab.RecvFrom(h, buf, 50*time.Millisecond); code(err) != abi.ErrTimeout {
		t.Errorf("nothing more: %v", err)
	}
	// A datagram socket is not a stream, and a stream not a datagram socket.
	if _, err := tab.Read(h, buf, time.Second); code(err) != abi.ErrInvalid {
		t.Errorf("io_read on a datagram socket: %v", err)
	}
	if _, _, err := tab.RecvFrom(h+100, buf, time.Second); code(err) != abi.ErrNotFound {
		t.Errorf("unknown handle: %v", err)
	}
}

// TestBroadcast: a datagram socket may send to a broadcast address (the
// host sets SO_BROADCAST, without which Linux refuses), when granted.
func TestBroadcast(t *testing.T) {
	l := udpPeer(t, "0.0.0.0:0")
	bcast := "127.255.255.255:" + port(l) // the broadcast route of lo
	tab := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"udp://" + bcast}}))
	defer tab.CloseAll()
	h, err := tab.OpenDatagram(":0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.SendTo(t.Context(), h, bcast, []byte("who is there"), time.Second); err != nil {
		t.Fatalf("broadcast: %v", err)
	}
	buf := make([]byte, 64)
	l.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := l.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "who is there" {
		t.Fatalf("listener got %q, %v", buf[:n], err)
	}
}

// TestMulticast: a datagram socket bound to a multicast group joins it
// and hears what a granted sender sends to the group.
func TestMulticast(t *testing.T) {
	if !hasMulticast() {
		testenv.Missing(t, "a network interface that is up and does multicast", "multicast needs one besides lo")
	}
	free := udpPeer(t, "0.0.0.0:0")
	group := "239.255.77.1:" + port(free) // a free port, most likely
	free.Close()
	tab := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"udp://*:*"}, Listen: []string{"udp://" + group}}))
	defer tab.CloseAll()
	h, err := tab.OpenDatagram(group)
	if err != nil {
		t.Fatalf("join %s: %v", group, err)
	}
	sender, err := net.Dial("udp", group)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	buf := make([]byte, 64)
	// Resend until heard: the join may take a moment to apply.
	for i := 0; ; i++ {
		if _, err := sender.Write([]byte("hello group")); err != nil {
			t.Fatal(err)
		}
		n, _, err := tab.RecvFrom(h, buf, 500*time.Millisecond)
		if err == nil && string(buf[:n]) == "hello group" {
			break
		}
		if i == 20 {
			t.Fatalf("nothing heard on %s: %v", group, err)
		}
	}
}

func hasMulticast() bool {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagMulticast != 0 && i.Flags&net.FlagLoopback == 0 {
			return true
		}
	}
	return false
}

func TestGrantsFromList(t *testing.T) {
	g, err := hostio.GrantsFromList([]string{"tcp://10.0.0.5:502", "tls://broker:8883", "/dev/ttyUSB*", "GPIO17", "secret:plc-login", "listen:udp://0.0.0.0:162"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(g.Network, " ") != "tcp://10.0.0.5:502 tls://broker:8883" || len(g.Serial) != 1 || len(g.GPIO) != 1 ||
		strings.Join(g.Secrets, " ") != "plc-login" || strings.Join(g.Listen, " ") != "udp://0.0.0.0:162" {
		t.Fatalf("sorted: %+v", g)
	}
	for _, bad := range []string{"secret:Bad_Name", "listen:tcp://0.0.0.0:1", "listen:udp://plc.local:162"} {
		if _, err := hostio.GrantsFromList([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
