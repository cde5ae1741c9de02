package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/host/rest"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

// plcYAML: the Modbus plugin granted only grantedAddr, a device "open" at
// grantedAddr and a device "elsewhere" at 10.0.0.5:502, not granted.
func plcYAML(grantedAddr string) string {
	host, port, _ := net.SplitHostPort(grantedAddr)
	device := func(name, ip, port string) string {
		return fmt.Sprintf(`---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: %s, namespace: default}
spec:
  deviceModelRef: {name: plc-model}
  protocol:
    protocolName: modbus
    configData: {ip: "%s", port: %s, slaveID: 1, timeout: 200}
  properties:
  - name: h
    collectCycle: 3600000
    visitors: {protocolName: modbus, configData: {register: HoldingRegister, offset: 0, limit: 1}}
`, name, ip, port)
	}
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: modbus}
spec:
  protocols: [modbus]
  module: {file: modbus.wasm}
  grants: {network: ["tcp://%s"]}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plc-model, namespace: default}
spec:
  protocol: modbus
  properties:
  - {name: h, type: INT, accessMode: ReadOnly}
`, grantedAddr) + device("open", host, port) + device("elsewhere", "10.0.0.5", "502")
}

func newManager(t *testing.T) *devices.Manager {
	t.Helper()
	return hosttest.Manager(t, slog.New(slog.DiscardHandler), filepath.Dir(testenv.Plugin(t, "modbus")), devices.Options{})
}

// TestReadStatusCodes: a read the grants refuse is 403 with the refusal's
// text; a read of a device that refuses the connection stays 503, with
// the cause.
func TestReadStatusCodes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	granted := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused

	m := newManager(t)
	parsed := manifest.Parse("plc.yaml", []byte(plcYAML(granted)))
	if len(parsed.Problems) > 0 {
		t.Fatalf("manifest: %+v", parsed.Problems)
	}
	if err := m.Apply(context.Background(), "manifests", devices.ResourceSet{Plugins: parsed.Plugins, Models: parsed.Models, Devices: parsed.Devices}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute) // a bound, not a speed: a cold compile under -race takes long
	for _, name := range []string{"open", "elsewhere"} {
		for {
			d, err := m.Device("default", name)
			if err == nil && d.Phase == devices.PhaseRunning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("device %s not running: %+v %v", name, d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	h := rest.New(m, rest.Options{Gatherer: prometheus.NewRegistry()}).Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body rest.ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: %d, body not JSON: %s", path, rec.Code, rec.Body)
		}
		return rec.Code, body.Error
	}

	code, msg := get("/api/v1/device/default/elsewhere/h")
	want := "denied: tcp://10.0.0.5:502 is not in grants.network [tcp://" + granted + "]"
	if code != http.StatusForbidden || !strings.Contains(msg, want) || strings.HasPrefix(msg, "unavailable") {
		t.Errorf("read refused by the grants: %d %q\nwant 403 with %q", code, msg, want)
	}
	code, msg = get("/api/v1/device/default/open/h")
	if want := "connect tcp://" + granted + ": connection refused"; code != http.StatusServiceUnavailable || !strings.Contains(msg, want) {
		t.Errorf("read of a device that refuses connections: %d %q\nwant 503 with %q", code, msg, want)
	}
}
