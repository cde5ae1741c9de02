package main

// Native tests: `go test` runs the driver on this machine through the
// SDK's sdktest harness, which calls it the way wapper-host calls the
// module's exports (device description, value encoding, result buffers).
// The SDK's host functions run in-process: wapper.Dial is a plain TCP
// dial with no grants, so a simulated instrument on a local port answers.

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// simulator is an instrument speaking the line protocol: TEMP? answers a
// temperature, SETP? and "SETP V" read and set a setpoint, anything else
// is an error.
type simulator struct {
	mu       sync.Mutex
	setpoint string
}

func (s *simulator) answer(cmd string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case cmd == "TEMP?":
		return "21.50"
	case cmd == "SETP?":
		return s.setpoint
	case strings.HasPrefix(cmd, "SETP "):
		s.setpoint = strings.TrimPrefix(cmd, "SETP ")
		return "OK"
	}
	return "ERR unknown command " + cmd
}

// start serves the simulator on a free local port and returns its port.
func (s *simulator) start(t *testing.T) string {
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
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write([]byte(s.answer(strings.TrimSpace(sc.Text())) + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// addDevice starts the plugin (the driver main.go registers) and adds an
// instrument at 127.0.0.1:port with the properties of manifests/device.yaml
// and two more that fail.
func addDevice(t *testing.T, port string) *sdktest.Device {
	t.Helper()
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	dev, err := p.Add(sdktest.Description{
		Name:     "tcp-instrument-go-1",
		Protocol: "tcp-instrument",
		// KubeEdge may pass numbers as strings: port is one here.
		ProtocolConfig: map[string]any{"ip": "127.0.0.1", "port": port, "timeout": 500},
		Properties: []sdktest.Property{
			{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"command": "TEMP?"}},
			{Name: "setpoint", Type: "DOUBLE", AccessMode: "ReadWrite", Visitor: map[string]any{"command": "SETP?", "setCommand": "SETP"}},
			{Name: "voltage", Type: "DOUBLE"}, // queries VOLTAGE?, which the instrument does not know
			{Name: "count", Type: "INT", Visitor: map[string]any{"command": "TEMP?"}},
		},
	})
	if err != nil {
		t.Fatalf("add device: %v", err)
	}
	return dev
}

func TestReadAndWrite(t *testing.T) {
	dev := addDevice(t, (&simulator{setpoint: "20"}).start(t))
	if v, err := dev.Read("temperature"); err != nil || v.Double() != 21.5 {
		t.Fatalf("read temperature = %#v, %v; want DOUBLE(21.5)", v, err)
	}
	if err := dev.Write("setpoint", wapper.Double(22.5)); err != nil {
		t.Fatalf("write setpoint: %v", err)
	}
	if v, err := dev.Read("setpoint"); err != nil || v.Double() != 22.5 {
		t.Fatalf("read setpoint = %#v, %v; want DOUBLE(22.5)", v, err)
	}
	if st, reason, err := dev.State(); st != wapper.StateOnline || err != nil {
		t.Fatalf("state = %v %q, %v; want online", st, reason, err)
	}
}

func TestErrors(t *testing.T) {
	dev := addDevice(t, (&simulator{}).start(t))
	// The instrument's own error travels to the host with its words.
	_, err := dev.Read("voltage")
	if wapper.CodeOf(err) != wapper.ErrDeviceFailed || !strings.Contains(err.Error(), "VOLTAGE?") {
		t.Fatalf("unknown command: %v; want a device error naming VOLTAGE?", err)
	}
	// A reading that does not fit the property's type.
	if _, err := dev.Read("count"); wapper.CodeOf(err) != wapper.ErrDeviceFailed {
		t.Fatalf("21.50 as INT: %v; want a device error", err)
	}
	// A read-only property is refused before the driver sees the write.
	if err := dev.Write("temperature", wapper.Double(1)); wapper.CodeOf(err) != wapper.ErrReadOnly {
		t.Fatalf("write temperature: %v; want read-only", err)
	}
	// configData without a port is refused when the device is added.
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Add(sdktest.Description{ProtocolConfig: map[string]any{"ip": "127.0.0.1"}}); wapper.CodeOf(err) != wapper.ErrInvalid {
		t.Fatalf("no port: %v; want invalid", err)
	}
}

func TestInstrumentDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens there now
	dev := addDevice(t, port)
	if _, err := dev.Read("temperature"); err == nil {
		t.Fatal("read from a closed port succeeded")
	}
	if st, reason, err := dev.State(); st != wapper.StateOffline || !strings.Contains(reason, "127.0.0.1:"+port) || err != nil {
		t.Fatalf("state = %v %q, %v; want offline, saying where", st, reason, err)
	}
}
