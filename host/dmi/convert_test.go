package dmi

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/manifest"
)

func nan() float64 { return math.NaN() }

func TestDecodeConfigDataKinds(t *testing.T) {
	anyOf := func(a *anypb.Any, err error) *anypb.Any {
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	st, _ := structpb.NewStruct(map[string]any{"a": 1.5, "b": []any{"x", true}})
	cv := &pb.CustomizedValue{Data: map[string]*anypb.Any{
		"host":     anyOf(anypb.New(wrapperspb.String("plc.local"))),
		"tls":      anyOf(anypb.New(wrapperspb.Bool(true))),
		"slave":    anyOf(anypb.New(wrapperspb.Int32(-7))),
		"offset":   anyOf(anypb.New(wrapperspb.Int64(1 << 40))),
		"u32":      anyOf(anypb.New(wrapperspb.UInt32(4000000000))),
		"u64":      anyOf(anypb.New(wrapperspb.UInt64(1 << 63))),
		"port":     anyOf(anypb.New(wrapperspb.Float(502))),
		"scale":    anyOf(anypb.New(wrapperspb.Float(0.1))),
		"neg":      anyOf(anypb.New(wrapperspb.Float(-40.25))),
		"big":      anyOf(anypb.New(wrapperspb.Float(123456789))), // narrowed by edgecore
		"pi":       anyOf(anypb.New(wrapperspb.Double(3.141592653589793))),
		"nested":   anyOf(anypb.New(st)),
		"emptyStr": anyOf(anypb.New(wrapperspb.String(""))),
	}}
	got, err := DecodeConfigData("spec.protocol.configData", cv)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got.Data)
	want := `{"big":123456790,"emptyStr":"","host":"plc.local","neg":-40.25,"nested":{"a":1.5,"b":["x",true]},"offset":1099511627776,"pi":3.141592653589793,"port":502,"scale":0.1,"slave":-7,"tls":true,"u32":4000000000,"u64":9223372036854775808}`
	if string(b) != want {
		t.Fatalf("decoded configData\n got %s\nwant %s", b, want)
	}
}

func TestDecodeConfigDataRefusesBadTypes(t *testing.T) {
	bytesAny, _ := anypb.New(wrapperspb.Bytes([]byte{1, 2}))
	msgAny, _ := anypb.New(&pb.MapperInfo{Name: "x"})
	nanAny, _ := anypb.New(wrapperspb.Float(float32(nan())))
	for _, c := range []struct {
		name string
		a    *anypb.Any
		want []string
	}{
		{"bytes", bytesAny, []string{`spec.protocol.configData["k"]`, `unsupported value type "type.googleapis.com/google.protobuf.BytesValue"`, "FloatValue"}},
		{"message", msgAny, []string{`unsupported value type "type.googleapis.com/v1beta1.MapperInfo"`}},
		{"unknown url", &anypb.Any{TypeUrl: "type.googleapis.com/acme.Thing", Value: []byte{1}}, []string{`"type.googleapis.com/acme.Thing"`}},
		{"nil", nil, []string{"no value"}},
		{"nan", nanAny, []string{"not a finite number"}},
	} {
		_, err := DecodeConfigData("spec.protocol.configData", &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": c.a}})
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}

const sampleYAML = `
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermo-model, namespace: plant}
spec:
  protocol: virtual
  properties:
  - {name: temp, type: FLOAT, accessMode: ReadOnly, unit: C, minimum: "-40", maximum: "120"}
  - {name: target, type: INT, accessMode: ReadWrite}
  - {name: label, type: STRING, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: thermo, namespace: plant}
spec:
  deviceModelRef: {name: thermo-model}
  protocol:
    protocolName: virtual
    configData:
      host: plc.local
      port: 502
      slaveID: 1
      timeout: 2.5
      scale: 0.1
      negative: -40
      tls: false
      label: "line 1"
  stateReport: {reportCycle: 2000, reportToCloud: true}
  methods:
  - {name: reset, description: resets it, propertyNames: [target]}
  properties:
  - name: temp
    reportCycle: 1000
    collectCycle: 500
    reportToCloud: true
    visitors:
      protocolName: virtual
      configData: {kind: sine, amplitude: 3.5, offset: 20, periodMs: 60000}
    pushMethod:
      mqtt: {address: "tcp://127.0.0.1:1883", topic: plant/temp, qos: 1, retained: true}
  - name: target
    desired: {value: "21"}
    visitors:
      protocolName: virtual
      configData: {kind: setpoint, initial: 18}
    pushMethod:
      http: {hostName: "http://127.0.0.1", port: 8080, requestPath: /in, timeout: 1000}
  - name: label
    visitors:
      protocolName: virtual
      configData: {kind: setpoint, initial: "idle", enabled: true}
`

// TestYAMLAndDMIGiveTheSameDevice loads a Device with the manifest loader
// (the YAML path), sends it through edgecore's conversion into DMI and
// back through the bridge's, and checks that the two Device specs, and so
// the configData JSON the manager hands to plugins, are identical.
func TestYAMLAndDMIGiveTheSameDevice(t *testing.T) {
	set := manifest.Parse("sample.yaml", []byte(sampleYAML))
	if len(set.Problems) > 0 || len(set.Devices) != 1 || len(set.Models) != 1 {
		t.Fatalf("sample manifest: %+v", set.Problems)
	}
	yamlDev := set.Devices[0]
	dmiDev, err := DeviceFromDMI(dmitest.Device(t, dmitest.JSONRoundTrip(t, yamlDev)))
	if err != nil {
		t.Fatal(err)
	}
	j := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	if a, b := j(yamlDev.Spec.Protocol.ConfigData), j(dmiDev.Spec.Protocol.ConfigData); a != b {
		t.Errorf("protocol configData differs\nYAML %s\n DMI %s", a, b)
	}
	for i := range yamlDev.Spec.Properties {
		if a, b := j(yamlDev.Spec.Properties[i].Visitors.ConfigData), j(dmiDev.Spec.Properties[i].Visitors.ConfigData); a != b {
			t.Errorf("property %s visitor configData differs\nYAML %s\n DMI %s", yamlDev.Spec.Properties[i].Name, a, b)
		}
	}
	if a, b := j(yamlDev.Spec), j(dmiDev.Spec); a != b {
		t.Errorf("device spec differs\nYAML %s\n DMI %s", a, b)
	}
	if !strings.Contains(j(dmiDev.Spec.Protocol.ConfigData), `"port":502,`) || !strings.Contains(j(dmiDev.Spec.Protocol.ConfigData), `"scale":0.1,`) {
		t.Errorf("numbers not restored from FloatValue: %s", j(dmiDev.Spec.Protocol.ConfigData))
	}

	yamlModel := set.Models[0]
	dmiModel, err := ModelFromDMI(dmitest.Model(t, dmitest.JSONRoundTrip(t, yamlModel)), yamlDev.Spec.Protocol.ProtocolName)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := j(yamlModel.Spec), j(dmiModel.Spec); a != b {
		t.Errorf("model spec differs\nYAML %s\n DMI %s", a, b)
	}
}

func TestDeviceFromDMIRefusesIncompleteDevices(t *testing.T) {
	for _, c := range []struct {
		d    *pb.Device
		want string
	}{
		{nil, "no device"},
		{&pb.Device{}, "no name"},
		{&pb.Device{Name: "a"}, "default/a has no spec"},
		{&pb.Device{Name: "a", Spec: &pb.DeviceSpec{Protocol: &pb.ProtocolConfig{ProtocolName: "x"}}}, "deviceModelReference is empty"},
		{&pb.Device{Name: "a", Spec: &pb.DeviceSpec{DeviceModelReference: "m"}}, "protocolName is empty"},
		{&pb.Device{Name: "a", Spec: &pb.DeviceSpec{DeviceModelReference: "m", Protocol: &pb.ProtocolConfig{ProtocolName: "x"},
			Properties: []*pb.DeviceProperty{{}}}}, "spec.properties[0] has no name"},
	} {
		_, err := DeviceFromDMI(c.d)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DeviceFromDMI(%v) = %v, want an error with %q", c.d, err, c.want)
		}
	}
}
