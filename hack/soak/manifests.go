package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// faultKinds are the read faults of the faulty test plugin that the soak
// spreads over its faulty devices; "none" reads fine on the same plugin.
var faultKinds = []string{"loop", "trap", "panic", "oom", "exit", "sleep", "error", "none"}

// device is one soak device.
type device struct {
	idx     int
	name    string // Device name; the key is "default/"+name
	virtual bool   // on the healthy virtual plugin, with a setpoint to write
	fault   string // faulty devices: the read fault
	cycleMS int
}

func (d *device) key() string { return "default/" + d.name }

// makeDevices picks the devices: a share of faulty ones spread evenly over
// the fault kinds, the rest virtual with 100–500 ms cycles.
func makeDevices(n int, faultyShare float64, rng *rand.Rand) []*device {
	nFaulty := int(float64(n)*faultyShare + 0.5)
	if n > 1 && nFaulty >= n {
		nFaulty = n - 1
	}
	var out []*device
	for i := range n - nFaulty {
		out = append(out, &device{idx: len(out), name: fmt.Sprintf("v%04d", i), virtual: true, cycleMS: 100 + 50*rng.IntN(9)})
	}
	for i := range nFaulty {
		// Faulty devices read every 2–5 s: a "loop" read burns CPU until
		// the call deadline, and the 2 cores are shared.
		out = append(out, &device{idx: len(out), name: fmt.Sprintf("f%04d", i), fault: faultKinds[i%len(faultKinds)], cycleMS: 2000 + 500*rng.IntN(7)})
	}
	return out
}

const pluginsYAML = `# soak plugins: the healthy virtual mapper and the faulty test plugin.
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: soak-virtual}
spec:
  protocols: [soakvirtual]
  module: {file: virtual.wasm}
  limits: {memoryMiB: 64, callTimeout: 2s, instances: 2}
---
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: soak-faulty}
spec:
  protocols: [soakfaulty]
  module: {file: faulty.wasm}
  limits: {memoryMiB: 64, callTimeout: 300ms, instances: 2}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: soak-virtual-model, namespace: default}
spec:
  protocol: soakvirtual
  properties:
    - {name: count, type: INT, accessMode: ReadOnly}
    - {name: setpoint, type: INT, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: soak-faulty-model, namespace: default}
spec:
  protocol: soakfaulty
  properties:
    - {name: r, type: INT, accessMode: ReadOnly}
`

func (d *device) yaml() string {
	if d.virtual {
		return fmt.Sprintf(`apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: %[1]s, namespace: default}
spec:
  deviceModelRef: {name: soak-virtual-model}
  properties:
    - name: count
      collectCycle: %[2]d
      reportCycle: %[2]d
      visitors: {protocolName: soakvirtual, configData: {kind: counter}}
    - name: setpoint
      collectCycle: %[2]d
      reportCycle: %[2]d
      visitors: {protocolName: soakvirtual, configData: {kind: setpoint, initial: 0}}
`, d.name, d.cycleMS)
	}
	cfg := fmt.Sprintf("{fault: %s}", d.fault)
	if d.fault == "sleep" {
		cfg = "{fault: sleep, ms: 1000}"
	}
	return fmt.Sprintf(`apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: %[1]s, namespace: default}
spec:
  deviceModelRef: {name: soak-faulty-model}
  properties:
    - name: r
      collectCycle: %[2]d
      reportCycle: %[2]d
      visitors: {protocolName: soakfaulty, configData: %[3]s}
`, d.name, d.cycleMS, cfg)
}

// writeManifests writes the plugins, models and one file per device.
func writeManifests(dir string, devs []*device) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins.yaml"), []byte(pluginsYAML), 0o644); err != nil {
		return err
	}
	for _, d := range devs {
		if err := os.WriteFile(filepath.Join(dir, d.name+".yaml"), []byte(d.yaml()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies a plugin module, so that a rebuild during the soak does
// not change what the host loads.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("%w (build it with `make plugins testplugins`)", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// findRoot returns the repository root: the nearest folder up from the
// working directory with the root module's go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module wapper.dev/wapper\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no wapper repository above the working directory; run from the repository")
		}
		dir = parent
	}
}
