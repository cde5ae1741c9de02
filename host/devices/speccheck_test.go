package devices_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/internal/testenv"
)

func twinOf(t *testing.T, m *devices.Manager, name, prop string) (devices.DeviceStatus, devices.TwinStatus) {
	t.Helper()
	st, err := m.Device("default", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tw := range st.Twins {
		if tw.Property == prop {
			return st, tw
		}
	}
	return st, devices.TwinStatus{}
}

// TestInvalidSpecDesiredSkipsWrite: a desired value in the Device spec that
// is not valid for its ReadWrite property's type does not stop the device
// (as in mapper-framework, only that write is skipped): the device runs,
// the property is read and reported, the value is not written, the twin's
// Error says why, and the warning is logged once per value. SetDesired
// still refuses such a value.
func TestInvalidSpecDesiredSkipsWrite(t *testing.T) {
	ctx := context.Background()
	logs := &syncBuffer{}
	m := newManagerWith(t, t.TempDir(), filepath.Dir(testenv.Plugin(t, "virtual")), func(o *devices.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	rs := set("bad-desired")
	rs.Devices[0].Spec.Properties[1].Visitors.ConfigData.Data["initial"] = 15
	rs.Devices[0].Spec.Properties[1].Desired.Value = "abc" // sp is a ReadWrite INT
	if err := m.Apply(ctx, "dmi", rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device running with both properties read", func() bool {
		st, sp := twinOf(t, m, "bad-desired", "sp")
		if st.Phase == devices.PhaseError {
			t.Fatalf("device in Error: %s", st.Reason)
		}
		_, n := twinOf(t, m, "bad-desired", "n")
		return st.Phase == devices.PhaseRunning && sp.Reported != "" && n.Reported != ""
	})
	_, sp := twinOf(t, m, "bad-desired", "sp")
	if sp.Reported != "15" || sp.Desired != "" || sp.DesiredSeq != 0 {
		t.Errorf("sp: reported %q, desired %q (seq %d); want the plugin's 15 and no desired value", sp.Reported, sp.Desired, sp.DesiredSeq)
	}
	for _, want := range []string{`"abc"`, "spec.properties[1].desired.value", "not written", "INT"} {
		if !strings.Contains(sp.Error, want) {
			t.Errorf("sp error %q does not say %s", sp.Error, want)
		}
	}
	const msg = "desired value in the Device spec is not valid"
	if n := logs.count(msg, "property=sp", "value=abc"); n != 1 {
		t.Errorf("invalid desired value logged %d times, want once", n)
	}

	// Reconfigured with the same bad value: not logged again. Another bad
	// value: logged.
	rs.Devices[0].Spec.Properties[0].CollectCycle = 40
	if err := m.Apply(ctx, "dmi", rs); err != nil {
		t.Fatal(err)
	}
	rs.Devices[0].Spec.Properties[1].Desired.Value = "1.5"
	if err := m.Apply(ctx, "dmi", rs); err != nil {
		t.Fatal(err)
	}
	if n := logs.count(msg, "property=sp", "value=abc"); n != 1 {
		t.Errorf("unchanged invalid desired value logged %d times, want once", n)
	}
	if n := logs.count(msg, "property=sp", "value=1.5"); n != 1 {
		t.Errorf("new invalid desired value logged %d times, want once", n)
	}
	if _, sp := twinOf(t, m, "bad-desired", "sp"); !strings.Contains(sp.Error, `"1.5"`) {
		t.Errorf("sp error %q does not name the new value", sp.Error)
	}

	// An explicit write of a bad value stays a refusal.
	if _, err := m.SetDesired(ctx, "default", "bad-desired", "sp", "abc", "rest"); !errors.Is(err, devices.ErrInvalid) {
		t.Errorf("SetDesired of an invalid value: %v, want ErrInvalid", err)
	}

	// A valid value is written and the error goes.
	rs.Devices[0].Spec.Properties[1].Desired.Value = "7"
	if err := m.Apply(ctx, "dmi", rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sp written", func() bool {
		_, sp := twinOf(t, m, "bad-desired", "sp")
		return sp.Reported == "7" && sp.Error == ""
	})
}

// TestModelPropertyTypeChecked: from DMI or wapper-cloud a DeviceModel is
// not validated on the way in, so the manager checks the type of every
// property a device runs: an empty or unknown one keeps the device in Error
// naming the property and the accepted types; lower case is accepted.
func TestModelPropertyTypeChecked(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, t.TempDir())
	for _, tc := range []struct {
		source, typ, want string
	}{
		{"dmi", "", `DeviceModel m spec.properties[1].type: property "sp" has no type; use one of INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM`},
		{"cloud", "INTEGER", `DeviceModel m spec.properties[1].type: property "sp" type "INTEGER" is not supported; use one of INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM`},
	} {
		rs := set("typed-" + tc.source)
		rs.Models[0].Spec.Properties[1].Type = v1beta1.PropertyType(tc.typ)
		if err := m.Apply(ctx, tc.source, rs); err != nil {
			t.Fatal(err)
		}
		st, err := m.Device("default", "typed-"+tc.source)
		if err != nil {
			t.Fatal(err)
		}
		if st.Phase != devices.PhaseError || st.Reason != tc.want {
			t.Errorf("type %q from %s: %s %q, want Error %q", tc.typ, tc.source, st.Phase, st.Reason, tc.want)
		}
		if err := m.Apply(ctx, tc.source, devices.ResourceSet{}); err != nil {
			t.Fatal(err)
		}
	}

	rs := set("lower")
	for i := range rs.Models[0].Spec.Properties {
		rs.Models[0].Spec.Properties[i].Type = "int"
	}
	if err := m.Apply(ctx, "cloud", rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device with lower-case types running", func() bool {
		st, sp := twinOf(t, m, "lower", "sp")
		if st.Phase == devices.PhaseError {
			t.Fatalf("device in Error: %s", st.Reason)
		}
		return st.Phase == devices.PhaseRunning && sp.Type == "INT"
	})
}

// TestMethodPropertyNamesOfModel: a Device that lists no properties runs
// all of its model's, and its methods may name them (the manifest path
// included); a name the device does not run is refused, from any source.
func TestMethodPropertyNamesOfModel(t *testing.T) {
	ctx := context.Background()
	const doc = `
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m}
spec:
  protocol: virtual
  properties:
  - {name: count, type: INT, accessMode: ReadOnly, visitors: {protocolName: virtual, configData: {kind: counter}}}
  - {name: sp, type: INT, accessMode: ReadWrite, visitors: {protocolName: virtual, configData: {kind: setpoint}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: all-props}
spec:
  deviceModelRef: {name: m}
  methods:
  - {name: setSp, propertyNames: [sp]}
`
	parsed := manifest.Parse("m.yaml", []byte(doc))
	if len(parsed.Problems) > 0 {
		t.Fatalf("a method naming a model property of a Device without spec.properties: %v", parsed.Problems)
	}
	m := newManager(t, t.TempDir())
	rs := devices.ResourceSet{Plugins: set("x").Plugins, Models: parsed.Models, Devices: parsed.Devices}
	if err := m.Apply(ctx, "manifests", rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device running", func() bool {
		st, _ := twinOf(t, m, "all-props", "sp")
		if st.Phase == devices.PhaseError {
			t.Fatalf("device in Error: %s", st.Reason)
		}
		return st.Phase == devices.PhaseRunning
	})
	if st, _ := m.Device("default", "all-props"); len(st.Methods) != 1 || len(st.Twins) != 2 {
		t.Errorf("methods %+v, twins %d; want setSp and both model properties", st.Methods, len(st.Twins))
	}

	// Names the device does not run.
	bad := rs.Devices[0].DeepCopy()
	bad.Name = "bad-method"
	bad.Spec.Methods[0].PropertyNames = []string{"sp", "nope"}
	listed := rs.Devices[0].DeepCopy()
	listed.Name = "listed"
	listed.Spec.Properties = []v1beta1.DeviceProperty{{Name: "count"}}
	for _, tc := range []struct {
		dev  *v1beta1.Device
		want string
	}{
		{bad, `spec.methods[0].propertyNames[1]: property "nope" is not in DeviceModel m (spec.properties is empty, so the device runs the model's properties)`},
		{listed, `spec.methods[0].propertyNames[0]: property "sp" is not in spec.properties`},
	} {
		if err := m.UpsertDevice(ctx, "dmi", tc.dev); err != nil {
			t.Fatal(err)
		}
		st, err := m.Device("default", tc.dev.Name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Phase != devices.PhaseError || st.Reason != tc.want {
			t.Errorf("%s: %s %q, want Error %q", tc.dev.Name, st.Phase, st.Reason, tc.want)
		}
	}
}
