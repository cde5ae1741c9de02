package hostio_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
)

// TestDenialNamesTheGrants: a refusal says what was asked for and which
// grants of its kind did not cover it, the list clipped.
func TestDenialNamesTheGrants(t *testing.T) {
	ctx := context.Background()
	g := hostio.MustGrants(grant.Set{Network: []string{"tcp://127.0.0.1:1502"}, Serial: []string{"/dev/ttyUSB*"}})
	_, err := g.CheckNetwork(ctx, nil, "tcp", "10.0.0.5:502")
	if want := "denied: tcp://10.0.0.5:502 is not in grants.network [tcp://127.0.0.1:1502]"; err == nil || err.Error() != want {
		t.Errorf("denial: %v\nwant:    %s", err, want)
	}
	if code(err) != abi.ErrDenied {
		t.Errorf("denial code %v", code(err))
	}
	if _, err := g.CheckSerial("/dev/ttyS0"); err == nil || err.Error() != "denied: /dev/ttyS0 is not in grants.serial [/dev/ttyUSB*]" {
		t.Errorf("serial denial: %v", err)
	}
	if err := g.CheckGPIO("GPIO4"); err == nil || !strings.Contains(err.Error(), "GPIO4 is not in grants.gpio (empty") {
		t.Errorf("gpio denial with no gpio grants: %v", err)
	}

	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("tcp://192.168.%d.1:1000-2000", i))
	}
	_, err = hostio.MustGrants(grant.Set{Network: many}).CheckNetwork(ctx, nil, "tcp", "10.0.0.5:502")
	if err == nil || !strings.Contains(err.Error(), "[tcp://192.168.0.1:1000-2000, tcp://192.168.1.1:1000-2000, ") ||
		!strings.Contains(err.Error(), " more]") || len(err.Error()) > 400 {
		t.Errorf("denial with 40 grants is not clipped: %d bytes: %v", len(fmt.Sprint(err)), err)
	}
}

// closedPort returns a loopback address where nothing listens any more.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestIOErrorsSayWhy: a failed open or read carries its cause in words,
// with the code SPEC §6.4 gives it.
func TestIOErrorsSayWhy(t *testing.T) {
	ctx := context.Background()
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"tcp://127.0.0.1:*", "tcp://*.plant:*"}}),
		hostio.WithResolver(fakeResolver{"two.plant": {"127.0.0.1", "127.0.0.1"}}))
	defer tb.CloseAll()

	dead := closedPort(t)
	_, err := tb.Dial(ctx, abi.SockTCP, dead, 5*time.Second)
	if want := "connect tcp://" + dead + ": connection refused"; code(err) != abi.ErrUnavailable || abi.MessageOf(err) != want {
		t.Errorf("refused: %v (code %v), want unavailable %q", err, code(err), want)
	}

	// A name whose addresses all refuse: each one is named.
	_, port, _ := net.SplitHostPort(dead)
	_, err = tb.Dial(ctx, abi.SockTCP, "two.plant:"+port, 5*time.Second)
	if code(err) != abi.ErrUnavailable || strings.Count(err.Error(), "127.0.0.1:"+port+": connection refused") != 2 {
		t.Errorf("refused by every address of a name: %v", err)
	}

	_, err = tb.Dial(ctx, abi.SockTCP, "nosuch.plant:502", 5*time.Second)
	if want := "connect tcp://nosuch.plant:502: DNS lookup of nosuch.plant failed: no such host"; code(err) != abi.ErrUnavailable || abi.MessageOf(err) != want {
		t.Errorf("DNS failure: %v (code %v), want unavailable %q", err, code(err), want)
	}

	// A peer that accepts and says nothing: the read times out; one that
	// hangs up: the read says so.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c
		}
	}()
	h, err := tb.Dial(ctx, abi.SockTCP, ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-peers
	_, err = tb.Read(h, make([]byte, 8), 20*time.Millisecond)
	if want := "read tcp://" + ln.Addr().String() + ": timed out"; code(err) != abi.ErrTimeout || !strings.HasPrefix(abi.MessageOf(err), want) {
		t.Errorf("silent peer: %v (code %v), want timeout starting %q", err, code(err), want)
	}
	peer.Close()
	_, err = tb.Read(h, make([]byte, 8), 5*time.Second)
	if code(err) != abi.ErrClosed || !strings.Contains(err.Error(), "the peer closed the connection") {
		t.Errorf("peer hung up: %v (code %v), want closed saying so", err, code(err))
	}
}
