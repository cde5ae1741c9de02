package plugincli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/plugincli"
)

func runTest(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := plugincli.TestCommand()
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&out)
	err := c.ExecuteContext(context.Background())
	t.Logf("wapper plugin test %s:\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %q", l)
		}
	}
}

// thermostat is a device of the virtual plugin with a property whose read
// outlasts a 1 s call timeout, and the MapperPlugin that grants nothing.
const thermostat = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermostat-model, namespace: default}
spec:
  protocol: virtual
  properties:
    - {name: temperature, type: DOUBLE, accessMode: ReadOnly}
    - {name: setpoint, type: DOUBLE, accessMode: ReadWrite}
    - {name: sluggish, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: thermostat, namespace: default}
spec:
  deviceModelRef: {name: thermostat-model}
  protocol: {protocolName: virtual}
  properties:
    - name: temperature
      visitors: {protocolName: virtual, configData: {kind: sine, amplitude: 3, offset: 21, periodMs: 60000}}
    - name: setpoint
      visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 20}}
    - name: sluggish
      visitors: {protocolName: virtual, configData: {kind: counter, delayMs: 3000}}
---
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
  limits: {callTimeout: 1s}
`

// The virtual plugin with a device: every property read once, the leak
// check with the device's reads, and the timeout check on the slow one.
func TestPluginTestDevice(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "thermostat.yaml")
	if err := os.WriteFile(dev, []byte(thermostat), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTest(t, testenv.Plugin(t, "virtual"), "--device", dev, "--slow", "sluggish", "--cycles", "20")
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "PASS  module", "PASS  load", "PASS  errors/unknown-device", "PASS  device/add",
		"PASS  device/read temperature", "read once: DOUBLE(", "PASS  device/read setpoint", "read once: DOUBLE(20)",
		"SKIP  device/read sluggish", "PASS  memory/buffers", "PASS  memory/cycles", "read 2 properties",
		"PASS  timeout", "instance replaced", "ok: 14 checks passed, 1 skipped")
	if strings.Contains(out, "FAIL") {
		t.Error("a check failed")
	}
}

// Without a device, plugins that need a device config (modbus, and the
// Rust nmea plugin) pass with their error paths checked only; the other
// plugins are run by host/conformance's tests.
func TestPluginTestPlugins(t *testing.T) {
	for _, name := range []string{"modbus", "nmea-rust"} {
		t.Run(name, func(t *testing.T) {
			out, err := runTest(t, testenv.Plugin(t, name), "--cycles", "20")
			if err != nil {
				t.Fatal(err)
			}
			wantLines(t, out, "PASS  errors/garbage-config", "PASS  errors/bad-description", "PASS  memory/cycles",
				"SKIP  timeout", "give --slow PROPERTY", "ok: ")
			if name == "modbus" {
				wantLines(t, out, "refused cleanly", "only the refusal path was cycled", "needs grants.network")
			}
		})
	}
}

// A hostile module gets a failing verdict and a non-zero exit; so does a
// module that is not one, and flags that do not fit.
func TestPluginTestFails(t *testing.T) {
	out, err := runTest(t, testenv.Artifact(t, "testplugins/hostile/bad-alloc.wasm"), "--cycles", "5")
	if err == nil || !strings.Contains(err.Error(), "checks failed") {
		t.Errorf("bad-alloc: err = %v", err)
	}
	wantLines(t, out, "FAIL  memory/buffers", "overlapping the live buffer", "FAIL  errors/unknown-device", "FAILED: ")

	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("hello"), 0o644)
	out, err = runTest(t, notWasm)
	if err == nil {
		t.Error("not wasm: passed")
	}
	wantLines(t, out, "FAIL  module", "not a WebAssembly module", "SKIP  load", "not run: the host refuses the module")

	if _, err := runTest(t, testenv.Plugin(t, "virtual"), "--slow", "x"); err == nil || !strings.Contains(err.Error(), "--slow") {
		t.Errorf("--slow without --device: err = %v", err)
	}
}
