package runtime_test

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// closedAddr is a loopback address where nothing listens any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func withGrants(t *testing.T, network ...string) func(*runtime.Config) {
	return func(c *runtime.Config) {
		c.Instances = 1
		if err := runtime.WithGrants(c, grant.Set{Network: network}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIOErrorCarriesCause: the plugin only gets a code from a failed
// sock_open; the error of its read, and its state reason, carry the
// host's cause, with the plugin's own code. Both SDKs, through the Modbus
// (Go) and NMEA (Rust) plugins.
func TestIOErrorCarriesCause(t *testing.T) {
	dead := closedAddr(t)
	want := "connect tcp://" + dead + ": connection refused"
	e := newEnv(t)
	c := ctx(t)

	mb := e.load("modbus", testenv.Plugin(t, "modbus"), withGrants(t, "tcp://"+dead))
	if err := mb.AddDevice(c, modbusDevice(dead)); err != nil {
		t.Fatal(err)
	}
	_, err := mb.Read(c, 1, 0)
	if abi.CodeOf(err) != abi.ErrUnavailable || !strings.Contains(err.Error(), want) {
		t.Errorf("modbus read from a closed port: %v\nwant code unavailable and %q", err, want)
	}
	st, reason, err := mb.State(c, 1)
	if err != nil || st == abi.StateOnline || !strings.Contains(reason, want) {
		t.Errorf("modbus state after the failed read: %v %q %v, want the reason to carry %q", st, reason, err, want)
	}

	gps := e.load("nmea", testenv.Plugin(t, "nmea-rust"), withGrants(t, "tcp://"+dead))
	dev := abi.Device{ID: 1, Namespace: "default", Name: "gps", Protocol: "nmea",
		ProtocolConfig: json.RawMessage(fmt.Sprintf(`{"address":%q,"readTimeoutMs":200}`, dead)),
		Properties:     []abi.Property{prop(0, "latitude", "DOUBLE", "ReadOnly", `{}`)}}
	if err := gps.AddDevice(c, dev); err != nil {
		t.Fatal(err)
	}
	_, err = gps.Read(c, 1, 0)
	if abi.CodeOf(err) != abi.ErrUnavailable || !strings.Contains(err.Error(), "sock_open tcp "+dead) || !strings.Contains(err.Error(), want) {
		t.Errorf("nmea read from a closed port: %v\nwant code unavailable, the plugin's text and %q", err, want)
	}
}

// TestDenialErrorNamesGrants: a read refused by the grants fails with the
// code "denied by grants" and a text naming the resource and the grants.
func TestDenialErrorNamesGrants(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	p := e.load("modbus", testenv.Plugin(t, "modbus"), withGrants(t, "tcp://127.0.0.1:1502"))
	if err := p.AddDevice(c, modbusDevice("10.0.0.5:502")); err != nil {
		t.Fatal(err)
	}
	_, err := p.Read(c, 1, 0)
	want := "denied: tcp://10.0.0.5:502 is not in grants.network [tcp://127.0.0.1:1502]"
	if abi.CodeOf(err) != abi.ErrDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("read of a device not granted: %v\nwant code denied and %q", err, want)
	}
}

// TestDenialWarningsAreRateLimited: a device whose every read is refused
// logs the refusal once, then a summary at most a minute apart, with a
// reason that is never empty.
func TestDenialWarningsAreRateLimited(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	p := e.load("modbus", testenv.Plugin(t, "modbus"), withGrants(t, "tcp://127.0.0.1:1502"))
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runtime.SetDenialClockForTest(p, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	if err := p.AddDevice(c, modbusDevice("10.0.0.5:502")); err != nil {
		t.Fatal(err)
	}
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, "refused by grants") {
				out = append(out, l)
			}
		}
		return out
	}
	for range 5 {
		if _, err := p.Read(c, 1, 0); abi.CodeOf(err) != abi.ErrDenied {
			t.Fatalf("read: %v, want denied", err)
		}
		advance(10 * time.Second)
	}
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], `reason="tcp://10.0.0.5:502 is not in grants.network [tcp://127.0.0.1:1502]"`) {
		t.Fatalf("after 5 refusals in 50s, want one warning with the reason, got:\n%s", strings.Join(got, "\n"))
	}
	advance(10 * time.Second) // a minute after the first warning
	p.Read(c, 1, 0)
	got := lines()
	if len(got) != 2 || !strings.Contains(got[1], `repeated="5 times in 1m0s"`) || !strings.Contains(got[1], "reason=") {
		t.Fatalf("a minute later, want a summary of 5 repeats, got:\n%s", strings.Join(got, "\n"))
	}
	if n := testutil.ToFloat64(e.metrics.Denials.WithLabelValues("modbus", "network")); n != 6 {
		t.Errorf("wapper_plugin_grant_denials_total %v, want every refusal counted (6)", n)
	}
}
