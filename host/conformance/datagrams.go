package conformance

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
)

// caseDatagrams checks datagram sockets (dgram_open, dgram_send,
// dgram_recv, SPEC §6.4, §6.5) through the method dgramEcho against a UDP
// echo peer on 127.0.0.1: the round trip and its sender's address; a
// datagram from a sender the grants do not cover is dropped (the granted
// peer's arrives; alone it times out with code 5); sending to an address
// the udp entries of grants.network do not cover, and binding a fixed
// address without grants.listen, are code 7; with grants.listen the fixed
// port binds and is the datagram's source.
func caseDatagrams(t *caseRun) {
	peer := t.udpEcho()
	p := t.loadGranted(grant.Set{Network: []string{"udp://" + peer.addr}}, nil)
	t.add(p, FullDevice(1, ""))

	for _, send := range []string{"hello datagram \x00 ✓", strings.Repeat("0123456789", 800)} {
		got, from, err := t.dgramEcho(p, ":0", peer.addr, send, 0)
		switch {
		case err != nil:
			t.Errorf("dgramEcho of %d bytes to %s: %v", len(send), peer.addr, err)
		case got != send:
			t.Errorf("dgramEcho of %d bytes to %s: got back %d bytes %.40q, want what was sent", len(send), peer.addr, len(got), got)
		case from != peer.addr:
			t.Errorf("dgramEcho to %s: the sender is %q, want %q", peer.addr, from, peer.addr)
		}
	}

	// The stranger, whom the grants do not cover, answers first: its
	// datagram is dropped and the peer's arrives. Alone, nothing arrives.
	send := peerBoth + "who answers?"
	if got, from, err := t.dgramEcho(p, ":0", peer.addr, send, 0); err != nil || got != send || from != peer.addr {
		t.Errorf("dgramEcho with a stranger answering first: %.40q from %q, %v; want %q from %q (the stranger's datagram dropped)", got, from, err, send, peer.addr)
	}
	start := time.Now()
	got, from, err := t.dgramEcho(p, ":0", peer.addr, peerStrangerOnly+"anyone?", 300)
	if t.wantErr(fmt.Sprintf("dgramEcho answered by the ungranted %s only (received %.40q from %q)", peer.stranger, got, from), err, abi.ErrTimeout, "*") {
		t.Notef("the ungranted sender's datagram was dropped; the receive timed out after %s", time.Since(start).Round(time.Millisecond))
	}

	// Sending where the grants do not reach.
	_, _, err = t.dgramEcho(p, ":0", peer.stranger, "x", 300)
	t.wantErr("dgramEcho to "+peer.stranger+", not in grants.network", err, abi.ErrDenied, "*")

	// Binding: only an ephemeral port on every address needs no grant.
	port := t.freeUDPPort()
	fixed := fmt.Sprintf("127.0.0.1:%d", port)
	for _, bind := range []string{fixed, fmt.Sprintf(":%d", port), "127.0.0.1:0"} {
		_, _, err = t.dgramEcho(p, bind, peer.addr, "x", 300)
		t.wantErr("dgramEcho bound to "+bind+" without grants.listen", err, abi.ErrDenied, "*")
	}
	_, _, err = t.dgramEcho(p, "localhost:0", peer.addr, "x", 300)
	t.wantErr("dgramEcho bound to localhost:0 (a name, not an IP)", err, abi.ErrInvalid, "*")
	if n := p.Restarts(); n != 0 {
		t.Errorf("%d instance restarts after refused and timed-out datagram calls, want 0", n)
	}

	q := t.loadGranted(grant.Set{Network: []string{"udp://" + peer.addr}, Listen: []string{"udp://" + fixed}}, nil)
	t.add(q, FullDevice(1, ""))
	peer.takeSenders()
	if got, from, err := t.dgramEcho(q, fixed, peer.addr, "from a fixed port", 0); err != nil || got != "from a fixed port" || from != peer.addr {
		t.Errorf("dgramEcho bound to %s under grants.listen: %q from %q, %v; want the datagram back from %s", fixed, got, from, err, peer.addr)
	} else if s := peer.takeSenders(); len(s) != 1 || s[0].String() != fixed {
		t.Errorf("the peer got datagrams from %v, want one from %s, the bound address", s, fixed)
	}
}

// What the udpEcho peer does with a datagram that starts with these.
const (
	peerBoth         = "both:"     // the stranger sends it back, then the peer
	peerStrangerOnly = "stranger:" // only the stranger sends it back
)

// udpPeer is a UDP echo peer and a stranger, another socket on 127.0.0.1.
type udpPeer struct {
	addr, stranger string

	mu      sync.Mutex // guards senders
	senders []netip.AddrPort
}

// takeSenders returns the senders of the datagrams the peer received
// since the last call.
func (u *udpPeer) takeSenders() []netip.AddrPort {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.senders
	u.senders = nil
	return s
}

// udpEcho starts a UDP echo peer on 127.0.0.1 until the case ends. It
// sends each datagram back to its sender, except that for a datagram that
// starts with peerBoth the stranger sends it back first, and for one that
// starts with peerStrangerOnly only the stranger does.
func (t *caseRun) udpEcho() *udpPeer {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		return c
	}
	echo := listen()
	stranger := listen()
	u := &udpPeer{addr: echo.LocalAddr().String(), stranger: stranger.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			u.mu.Lock()
			u.senders = append(u.senders, from)
			u.mu.Unlock()
			d := buf[:n]
			switch s := string(d); {
			case strings.HasPrefix(s, peerStrangerOnly):
				stranger.WriteToUDPAddrPort(d, from)
			case strings.HasPrefix(s, peerBoth):
				stranger.WriteToUDPAddrPort(d, from)
				echo.WriteToUDPAddrPort(d, from)
			default:
				echo.WriteToUDPAddrPort(d, from)
			}
		}
	}()
	t.cleanup = append(t.cleanup, func() {
		echo.Close()
		<-done
		stranger.Close()
	})
	return u
}

// freeUDPPort returns a UDP port of 127.0.0.1 that was free a moment ago.
func (t *caseRun) freeUDPPort() int {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// dgramEcho calls the method dgramEcho; timeoutMS 0 leaves the receive
// the host's default time.
func (t *caseRun) dgramEcho(p *loaded, bind, to, send string, timeoutMS int) (data, from string, err error) {
	args, _ := json.Marshal(map[string]any{"bind": bind, "to": to, "send": send, "timeoutMs": timeoutMS})
	res, err := p.CallMethod(t.ctx, 1, "dgramEcho", args)
	if err != nil {
		return "", "", err
	}
	var r struct{ Data, From *string }
	if err := json.Unmarshal(res, &r); err != nil || r.Data == nil || r.From == nil {
		return "", "", fmt.Errorf("method dgramEcho returned %.80q, want an object with the strings data and from", res)
	}
	return *r.Data, *r.From, nil
}
