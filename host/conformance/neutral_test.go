package conformance_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/conformance"
	"wapper.dev/wapper/internal/testenv"
)

// neutral runs the plugin-neutral checks on a module and logs the report.
func neutral(t *testing.T, path string, opts conformance.NeutralOptions) (conformance.Report, map[string]conformance.Result) {
	t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Cycles == 0 && testenv.Short() {
		opts.Cycles = 40
	}
	rep := conformance.RunNeutral(context.Background(), wasm, opts)
	var out strings.Builder
	rep.WriteText(&out)
	t.Logf("report:\n%s", out.String())
	byName := map[string]conformance.Result{}
	for _, r := range rep.Results {
		byName[r.Name] = r
	}
	return rep, byName
}

// notes returns a result's failures and notes as one text.
func notes(r conformance.Result) string {
	return strings.Join(append(slices.Clone(r.Failures), r.Notes...), "\n")
}

// The repository's plugins pass without a device: each refuses or takes
// the generic device cleanly, and nothing grows or traps.
func TestNeutralRealPlugins(t *testing.T) {
	for _, name := range []string{"virtual", "modbus", "gpio", "nmea-rust", "mqtt", "snmp"} {
		t.Run(name, func(t *testing.T) {
			rep, r := neutral(t, testenv.Plugin(t, name), conformance.NeutralOptions{})
			if !rep.Passed() {
				t.Errorf("failed: %v", rep.Failed())
			}
			if !r["timeout"].Skipped || !strings.Contains(notes(r["timeout"]), "--slow") {
				t.Errorf("timeout check not skipped with a note: %+v", r["timeout"])
			}
			switch name {
			case "modbus", "nmea-rust":
				// No device: error paths only.
				if !strings.Contains(notes(r["errors/empty-config"]), "refused cleanly") ||
					!strings.Contains(notes(r["memory/cycles"]), "only the refusal path") {
					t.Errorf("want the generic device refused and only refusals cycled")
				}
				if g := notes(r["load"]); !strings.Contains(g, "grants.network") || !strings.Contains(g, "grants.serial") {
					t.Errorf("load notes lack the grants the plugin needs: %s", g)
				}
			case "mqtt", "snmp":
				// No device either, and grants for sockets and secrets;
				// snmp also binds datagram sockets for traps.
				if !strings.Contains(notes(r["errors/empty-config"]), "refused cleanly") ||
					!strings.Contains(notes(r["memory/cycles"]), "only the refusal path") {
					t.Errorf("want the generic device refused and only refusals cycled")
				}
				want := []string{"grants.network", "grants.secrets"}
				if name == "snmp" {
					want = append(want, "grants.listen")
				}
				for _, w := range want {
					if g := notes(r["load"]); !strings.Contains(g, w) {
						t.Errorf("load notes lack %s: %s", w, g)
					}
				}
			case "virtual":
				if !strings.Contains(notes(r["memory/cycles"]), "KiB description") {
					t.Errorf("want padded descriptions cycled: %s", notes(r["memory/cycles"]))
				}
			}
		})
	}
}

// With the author's device: every property is read once, the device is
// cycled with its reads, and a slow property shows the host cutting a call
// and replacing the instance.
func TestNeutralDevice(t *testing.T) {
	prop := func(h uint32, name, typ, access, visitor string) abi.Property {
		return abi.Property{Handle: h, Name: name, Type: typ, AccessMode: access, Visitor: json.RawMessage(visitor)}
	}
	dev := &abi.Device{ID: 1, Namespace: "default", Name: "thermostat", Model: "thermostat-model", Protocol: "virtual",
		Properties: []abi.Property{
			prop(0, "temperature", "DOUBLE", "ReadOnly", `{"kind": "sine", "amplitude": 3, "offset": 21, "periodMs": 60000}`),
			prop(1, "ticks", "INT", "ReadOnly", `{"kind": "counter"}`),
			prop(2, "setpoint", "DOUBLE", "ReadWrite", `{"kind": "setpoint", "initial": 20}`),
			prop(3, "sluggish", "INT", "ReadOnly", `{"kind": "counter", "delayMs": 3000}`),
		}}
	rep, r := neutral(t, testenv.Plugin(t, "virtual"), conformance.NeutralOptions{Device: dev, Slow: "sluggish", CallTimeout: time.Second})
	if !rep.Passed() {
		t.Fatalf("failed: %v", rep.Failed())
	}
	for _, want := range []string{"device/add", "device/read temperature", "device/read ticks", "device/read setpoint"} {
		if res, ok := r[want]; !ok || res.Skipped {
			t.Errorf("%s did not run: %+v", want, res)
		}
	}
	if d := r["device/read setpoint"].Doc; !strings.Contains(d, "DOUBLE(20)") {
		t.Errorf("setpoint line = %q, want its value", d)
	}
	if !r["device/read sluggish"].Skipped {
		t.Errorf("the slow property was read by device/read")
	}
	if res := r["timeout"]; res.Skipped || !strings.Contains(notes(res), "instance replaced") {
		t.Errorf("timeout: %+v", res)
	}
	if !strings.Contains(notes(r["memory/cycles"]), "read 3 properties") {
		t.Errorf("cycles did not read the device's properties: %s", notes(r["memory/cycles"]))
	}
}

// The leak check catches a plugin that keeps every removed device.
func TestNeutralCatchesLeak(t *testing.T) {
	_, r := neutral(t, leakyPlugin(t), conformance.NeutralOptions{})
	if res := r["memory/cycles"]; res.Passed || !strings.Contains(notes(res), "keeps something of every device") {
		t.Fatalf("memory/cycles on the leaky plugin: %+v", res)
	}
}

// Hostile modules fail, each where it attacks, and the checks end.
func TestNeutralHostile(t *testing.T) {
	for _, c := range []struct{ module, check, want string }{
		{"table-huge-min", "module", "table"},
		{"sleep-init", "load", "deadline"},
		{"bad-alloc", "memory/buffers", "overlapping the live buffer"},
		{"recursion", "errors/garbage-config", "instance thrown away"},
		{"bad-results", "errors/garbage-config", "malformed result"},
	} {
		t.Run(c.module, func(t *testing.T) {
			rep, r := neutral(t, testenv.Artifact(t, "testplugins/hostile/"+c.module+".wasm"), conformance.NeutralOptions{Cycles: 20, CallTimeout: time.Second})
			if rep.Passed() {
				t.Fatal("passed")
			}
			if res := r[c.check]; res.Passed || !strings.Contains(notes(res), c.want) {
				t.Errorf("%s: %+v, want a failure with %q", c.check, res, c.want)
			}
		})
	}
}

// Detect tells the conformance plugins from any other module.
func TestDetect(t *testing.T) {
	for _, c := range []struct {
		path string
		want error
	}{
		{testenv.TestPlugin(t, "conformance"), nil},
		{testenv.TestPlugin(t, "conformance-rust"), nil},
		{testenv.Plugin(t, "virtual"), conformance.ErrNotConformance},
		{testenv.Plugin(t, "nmea-rust"), conformance.ErrNotConformance},
		{testenv.TestPlugin(t, "faulty"), conformance.ErrNotConformance},
	} {
		wasm, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		err = conformance.Detect(context.Background(), wasm)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Detect = %v, want %v", c.path, err, c.want)
		}
		t.Logf("%s: %v", c.path, err)
	}
	if err := conformance.Detect(context.Background(), []byte("not wasm")); err == nil || errors.Is(err, conformance.ErrNotConformance) {
		t.Errorf("not wasm: %v, want the loader's error", err)
	}
}
