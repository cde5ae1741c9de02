package devices_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/internal/testenv"
)

// cameraYAML is shaped like KubeEdge's USB camera example: desired values
// on ReadOnly properties too.
const cameraYAML = `
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: camera-model, namespace: default}
spec:
  protocol: virtual
  properties:
  - {name: Framerate, type: INT, accessMode: ReadWrite}
  - {name: Input, type: INT, accessMode: ReadOnly}
  - {name: BusInfo, type: STRING, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: camera-usb-0, namespace: default}
spec:
  deviceModelRef: {name: camera-model}
  protocol:
    protocolName: virtual
    configData: {deviceID: 0, width: 640, height: 480}
  properties:
  - name: Framerate
    desired: {value: "30", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 15}}
  - name: Input
    desired: {value: "0", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: counter}}
  - name: BusInfo
    desired: {value: "usb-0000:02:02.0-1", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "usb-0000:00:14.0-1"}}
`

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// count counts the log lines holding every one of parts.
func (s *syncBuffer) count(parts ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, line := range strings.Split(s.b.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// TestReadOnlyDesiredIsIgnored applies a Device (the manifest path) with
// desired values on ReadOnly properties: it runs, the ReadWrite property is
// written, the ReadOnly ones are read and not written, each ignored value
// is logged once, and an explicit write to a ReadOnly property is refused.
func TestReadOnlyDesiredIsIgnored(t *testing.T) {
	ctx := context.Background()
	logs := &syncBuffer{}
	m := newManagerWith(t, t.TempDir(), filepath.Dir(testenv.Plugin(t, "virtual")), func(o *devices.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	parsed := manifest.Parse("camera.yaml", []byte(cameraYAML))
	if len(parsed.Problems) > 0 {
		t.Fatalf("camera manifest: %+v", parsed.Problems)
	}
	rs := devices.ResourceSet{Plugins: set("x").Plugins, Models: parsed.Models, Devices: parsed.Devices}
	if err := m.Apply(ctx, "manifests", rs); err != nil {
		t.Fatal(err)
	}
	twin := func(prop string) devices.TwinStatus {
		st, err := m.Device("default", "camera-usb-0")
		if err != nil {
			t.Fatal(err)
		}
		if st.Phase != devices.PhaseRunning && st.Phase != devices.PhasePending {
			t.Fatalf("device not running: %s: %s", st.Phase, st.Reason)
		}
		for _, tw := range st.Twins {
			if tw.Property == prop {
				return tw
			}
		}
		t.Fatalf("no twin %s", prop)
		return devices.TwinStatus{}
	}
	waitFor(t, "Framerate written and the ReadOnly properties read", func() bool {
		return twin("Framerate").Reported == "30" && twin("Input").Reported != "" && twin("BusInfo").Reported != ""
	})
	if tw := twin("BusInfo"); tw.Reported != "usb-0000:00:14.0-1" || tw.Desired != "" {
		t.Errorf("BusInfo: reported %q, desired %q; want the plugin's value and no desired value", tw.Reported, tw.Desired)
	}

	// A changed spec reconfigures the device: the unchanged ignored value
	// is not logged again, a changed one is (even one that is no valid INT:
	// it is not written, so not parsed, as in mapper-framework).
	rs.Devices[0].Spec.Properties[0].Desired.Value = "25"
	rs.Devices[0].Spec.Properties[1].Desired.Value = "auto"
	if err := m.Apply(ctx, "manifests", rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Framerate 25", func() bool { return twin("Framerate").Reported == "25" })
	const msg = "desired value on a ReadOnly property ignored"
	if n := logs.count(msg, "property=BusInfo"); n != 1 {
		t.Errorf("ignored desired value of BusInfo logged %d times, want once", n)
	}
	if n := logs.count(msg, "property=Input"); n != 2 {
		t.Errorf("ignored desired values of Input (two values) logged %d times, want twice", n)
	}

	// Writing a ReadOnly property on purpose (REST, MQTT) stays refused.
	if _, err := m.SetDesired(ctx, "default", "camera-usb-0", "BusInfo", "x", "rest"); !errors.Is(err, devices.ErrReadOnly) {
		t.Errorf("SetDesired on a ReadOnly property: %v, want ErrReadOnly", err)
	}
}
