package cloudlink_test

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wapper.dev/wapper/host/cloudlink"
)

// blackhole is a TCP proxy that can start dropping everything, in both
// directions and on new connections, without closing anything: a link
// gone half-open, as a NAT that forgot the flow or a dead radio leaves it.
type blackhole struct {
	ln      net.Listener
	target  string
	dropped atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	t.Cleanup(b.close)
	go b.serve()
	return b
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

func (b *blackhole) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.keep(c)
		if b.dropped.Load() {
			go b.pipe(c, io.Discard) // accept, then never answer
			continue
		}
		up, err := net.Dial("tcp", b.target)
		if err != nil {
			c.Close()
			continue
		}
		b.keep(up)
		go b.pipe(up, c)
		go b.pipe(c, up)
	}
}

func (b *blackhole) keep(c net.Conn) {
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
}

// pipe copies src to dst while the hole is open, and reads and drops
// what comes while it is closed.
func (b *blackhole) pipe(src net.Conn, dst io.Writer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.dropped.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// heal stops dropping, and resets the connections that were cut off
// (as a real network's peers would time them out).
func (b *blackhole) heal() {
	b.mu.Lock()
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	b.dropped.Store(false)
}

func (b *blackhole) close() {
	b.ln.Close()
	b.heal()
}

// TestHalfOpenLinkIsDropped: when every packet is dropped and nothing
// closes, the host notices within its timeout (it pings, and hears
// nothing back), counts it, says so in wapper_cloudlink_connected,
// keeps failing its handshakes into the hole, and is back with its
// objects as soon as the network heals.
func TestHalfOpenLinkIsDropped(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	hole := newBlackhole(t, cl.addr)
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	dev := "Device/" + c.ns + "/a1"

	h := startHost(t, "https://"+hole.addr(), c.node("a"), c.token(t, c.node("a")), cl.ca, filepath.Join(t.TempDir(), "a.db"), func(o *cloudlink.Options) {
		// Short, for the test; generous against a busy machine's stalls.
		o.Keepalive, o.Timeout, o.HandshakeTimeout = 500*time.Millisecond, 5*time.Second, 2*time.Second
	})
	h.sink.wait(t, "a1 through the proxy", has(dev, "DeviceModel/"+c.ns+"/thermo", "MapperPlugin/virtual-"+c.ns))
	if !h.link.Connected() {
		t.Fatal("not connected after the objects came")
	}
	// Idle and healthy: the keepalives keep it up past its timeout.
	time.Sleep(7 * time.Second)
	if got := h.drops(t, "timeout"); got != 0 || !h.link.Connected() {
		t.Fatalf("a healthy idle link was dropped %v times (connected: %v)", got, h.link.Connected())
	}

	hole.dropped.Store(true)
	start := time.Now()
	waitUntil(t, "the half-open link noticed", func() (bool, error) { return !h.link.Connected(), nil })
	t.Logf("half-open link noticed after %s (timeout 5s)", time.Since(start).Round(time.Millisecond))
	// Reconnecting into the hole fails at the handshake timeout, again
	// and again, each counted.
	waitUntil(t, "handshakes into the hole time out", func() (bool, error) { return h.drops(t, "timeout") >= 3, nil })

	connects := h.counter(t, "wapper_cloudlink_connects_total")
	c.apply(t, names(t, c, device("a1", c.node("a"), "30")))
	hole.heal()
	start = time.Now()
	h.sink.wait(t, "the change made while cut off", func(s cloudlink.Set) bool { return desiredOf(s, "a1", "setpoint") == "30" })
	t.Logf("back and in sync %s after the network healed", time.Since(start).Round(time.Millisecond))
	if got := h.counter(t, "wapper_cloudlink_connects_total"); got != connects+1 {
		t.Errorf("connects went from %v to %v, want one more", connects, got)
	}
}

// drops reads wapper_cloudlink_disconnects_total{reason}.
func (h *host) drops(t *testing.T, reason string) float64 {
	t.Helper()
	return disconnects(t, h.reg, reason)
}
