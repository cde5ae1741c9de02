package devices_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/internal/testenv"
)

// modbusYAML is a Modbus device at addr, read every 20 ms, with its
// address granted.
func modbusYAML(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: modbus}
spec:
  protocols: [modbus]
  module: {file: modbus.wasm}
  grants: {network: ["tcp://%[1]s:%[2]s"]}
  limits: {instances: 1}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plc-model, namespace: default}
spec:
  protocol: modbus
  properties:
  - {name: h, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: plc, namespace: default}
spec:
  deviceModelRef: {name: plc-model}
  protocol:
    protocolName: modbus
    configData: {ip: "%[1]s", port: %[2]s, slaveID: 1, timeout: 200}
  properties:
  - name: h
    collectCycle: 20
    reportCycle: 20
    visitors: {protocolName: modbus, configData: {register: HoldingRegister, offset: 0, limit: 1}}
`, host, port)
}

// serveModbus answers every Modbus TCP read of holding registers on ln
// with zeros.
func serveModbus(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			req := make([]byte, 12)
			for {
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				n := int(req[11])
				resp := append([]byte{req[0], req[1], 0, 0, 0, byte(3 + 2*n), req[6], 3, byte(2 * n)}, make([]byte, 2*n)...)
				c.Write(resp)
			}
		}()
	}
}

// TestReadFailureWarningsAreRateLimited: a property whose reads keep
// failing logs the failure once, with its cause, then a summary at most a
// minute apart, and a line when reads work again.
func TestReadFailureWarningsAreRateLimited(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections are refused until the server starts below

	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newManagerWith(t, t.TempDir(), filepath.Dir(testenv.Plugin(t, "modbus")), func(o *devices.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.Registerer = reg
	})
	devices.SetClockForTest(m, clock)
	parsed := manifest.Parse("plc.yaml", []byte(modbusYAML(addr)))
	if len(parsed.Problems) > 0 {
		t.Fatalf("manifest: %+v", parsed.Problems)
	}
	if err := m.Apply(ctx, "manifests", devices.ResourceSet{Plugins: parsed.Plugins, Models: parsed.Models, Devices: parsed.Devices}); err != nil {
		t.Fatal(err)
	}
	readErrors := func() float64 { return counterSum(t, reg, "wapper_read_errors_total") }

	waitFor(t, "ten failed reads", func() bool { return readErrors() >= 10 })
	if n := logs.count(`msg="read failed"`, "device=default/plc", "connection refused"); n != 1 {
		t.Fatalf("after %v failed reads within the same minute, %d warnings naming the cause, want 1:\n%s", readErrors(), n, logText(logs))
	}
	if n := logs.count("read still failing"); n != 0 {
		t.Fatalf("a summary before a minute passed:\n%s", logText(logs))
	}

	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	waitFor(t, "a summary of the repeated failures", func() bool {
		return logs.count(`msg="read still failing"`, "device=default/plc", "connection refused", `repeated="`, " times in 1m0s") == 1
	})
	before := readErrors()
	waitFor(t, "more failed reads", func() bool { return readErrors() >= before+5 })
	if n := logs.count("read still failing"); n != 1 {
		t.Fatalf("%d summaries within a minute, want 1", n)
	}

	// The device comes up: one line says the reads recovered.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveModbus(ln)
	waitFor(t, "the recovery line", func() bool {
		return logs.count(`msg="read recovered"`, "device=default/plc", "property=h", "failed-reads=") == 1
	})
	if !strings.Contains(logText(logs), "failing-for=1m0s") {
		t.Errorf("the recovery line does not say how long reads failed:\n%s", logText(logs))
	}
}

// logText is what the log holds so far.
func logText(s *syncBuffer) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
