package dmi

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/manifest"
)

// Fuzz targets for the DMI conversions (issue 11): what edgecore (or
// anything else on the DMI socket) sends is protobuf that the bridge turns
// into KubeEdge's v1beta1 types, whose configData becomes the JSON a
// plugin reads. No message may crash the host, and what converts must be
// something the rest of the host can copy and encode. Run one with
//
//	go test -run '^$' -fuzz '^FuzzDecodeConfigData$' -fuzztime 60s ./host/dmi

func mustAny(tb testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func mustProto(tb testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// seedConfig is a configData as edgecore sends a Modbus device's.
func seedConfig(tb testing.TB) *pb.CustomizedValue {
	st, _ := structpb.NewStruct(map[string]any{"a": 1.5, "b": []any{"x", true, nil}})
	return &pb.CustomizedValue{Data: map[string]*anypb.Any{
		"ip":      mustAny(tb, wrapperspb.String("172.17.0.3")),
		"port":    mustAny(tb, wrapperspb.Float(1502)),
		"scale":   mustAny(tb, wrapperspb.Float(0.1)),
		"slaveID": mustAny(tb, wrapperspb.Int32(1)),
		"offset":  mustAny(tb, wrapperspb.Int64(1<<40)),
		"u32":     mustAny(tb, wrapperspb.UInt32(4000000000)),
		"u64":     mustAny(tb, wrapperspb.UInt64(1<<63)),
		"pi":      mustAny(tb, wrapperspb.Double(math.Pi)),
		"tls":     mustAny(tb, wrapperspb.Bool(true)),
		"nested":  mustAny(tb, st),
		"list":    mustAny(tb, &structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(2)}}),
		"value":   mustAny(tb, structpb.NewStringValue("v")),
	}}
}

// checkConfig checks a decoded configData: it is JSON (the description a
// plugin gets) and KubeEdge's DeepCopy copies it (the device manager copies
// every device it is given), and its numbers are finite.
func checkConfig(t *testing.T, cv *v1beta1.CustomizedValue) {
	t.Helper()
	if cv == nil {
		return
	}
	if _, err := json.Marshal(cv); err != nil {
		t.Fatalf("decoded configData %v does not encode as JSON: %v", cv.Data, err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("DeepCopy of decoded configData %v panics: %v", cv.Data, r)
			}
		}()
		cv.DeepCopy()
	}()
}

// FuzzDecodeConfigData decodes a CustomizedValue message: an error names
// the configData and key, a result is encodable and copyable, has every
// key, and decodes the same again when wrapped as protobuf once more.
func FuzzDecodeConfigData(f *testing.F) {
	f.Add(mustProto(f, seedConfig(f)))
	f.Add(mustProto(f, &pb.CustomizedValue{}))
	f.Add(mustProto(f, &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": nil}}))
	f.Add(mustProto(f, &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": mustAny(f, wrapperspb.Float(float32(math.Inf(1))))}}))
	f.Add(mustProto(f, &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": mustAny(f, wrapperspb.Bytes([]byte{1}))}}))
	f.Add(mustProto(f, &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": {TypeUrl: "type.googleapis.com/acme.Thing", Value: []byte{1}}}}))
	f.Add(mustProto(f, &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": mustAny(f, &pb.MapperInfo{Name: "x"})}}))
	f.Add(mustProto(f, &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": mustAny(f, structpb.NewNumberValue(1e300))}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in pb.CustomizedValue
		if proto.Unmarshal(b, &in) != nil {
			return
		}
		cv, err := DecodeConfigData("spec.protocol.configData", &in)
		if err != nil {
			if cv != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		if len(cv.Data) != len(in.Data) {
			t.Fatalf("%d keys became %d", len(in.Data), len(cv.Data))
		}
		checkConfig(t, cv)
		// Wrapped again (numbers as doubles, objects as Structs), it
		// decodes to the same JSON.
		again := &pb.CustomizedValue{Data: map[string]*anypb.Any{}}
		for k, v := range cv.Data {
			var m proto.Message
			switch x := v.(type) {
			case string:
				m = wrapperspb.String(x)
			case bool:
				m = wrapperspb.Bool(x)
			case int64:
				m = wrapperspb.Int64(x)
			case uint64:
				m = wrapperspb.UInt64(x)
			case float64:
				m = wrapperspb.Double(x)
			default:
				sv, err := structpb.NewValue(x)
				if err != nil {
					t.Fatalf("decoded %q is %T, which protobuf cannot hold: %v", k, v, err)
				}
				m = sv
			}
			again.Data[k] = mustAny(t, m)
		}
		cv2, err := DecodeConfigData("spec.protocol.configData", again)
		if err != nil {
			t.Fatalf("decoded configData wrapped again is refused: %v", err)
		}
		a, _ := json.Marshal(cv)
		b2, _ := json.Marshal(cv2)
		if string(a) != string(b2) {
			t.Fatalf("configData changed when wrapped again:\n%s\n%s", a, b2)
		}
	})
}

// FuzzDeviceFromDMI converts a Device and a DeviceModel message as
// RegisterDevice and CreateDeviceModel receive them: a result has a name, a
// namespace, a model and a protocol, encodes as JSON and survives DeepCopy,
// and the twins of its properties convert back to DMI intact.
func FuzzDeviceFromDMI(f *testing.F) {
	set := manifest.Parse("sample.yaml", []byte(sampleYAML))
	if len(set.Problems) > 0 {
		f.Fatal(set.Problems)
	}
	dev := dmitest.Device(f, dmitest.JSONRoundTrip(f, set.Devices[0]))
	model := dmitest.Model(f, dmitest.JSONRoundTrip(f, set.Models[0]))
	f.Add(mustProto(f, dev), mustProto(f, model), "virtual")
	dev.Spec.Properties[0].PushMethod = &pb.PushMethod{
		DbMethod: &pb.DBMethod{
			Influxdb2: &pb.DBMethodInfluxdb2{Influxdb2ClientConfig: &pb.Influxdb2ClientConfig{Url: "http://127.0.0.1:8086", Org: "o", Bucket: "b"}},
			Redis:     &pb.DBMethodRedis{RedisClientConfig: &pb.RedisClientConfig{Addr: "127.0.0.1:6379", Db: 1, Poolsize: 2}},
			Tdengine:  &pb.DBMethodTDEngine{TdEngineClientConfig: &pb.TDEngineClientConfig{Addr: "x", Dbname: "d"}},
			Mysql:     &pb.DBMethodMySQL{MysqlClientConfig: &pb.MySQLClientConfig{Addr: "m", Database: "d", UserName: "u"}},
		},
		Otel:             &pb.PushMethodOTEL{EndpointURL: "http://otel:4318"},
		AnomalyDetection: &pb.AnomalyDetection{Data: map[string]*anypb.Any{"limit": mustAny(f, wrapperspb.Float(3))}},
	}
	dev.Spec.Protocol.ConfigData = seedConfig(f)
	f.Add(mustProto(f, dev), mustProto(f, &pb.DeviceModel{Name: "m", Spec: &pb.DeviceModelSpec{Properties: []*pb.ModelProperty{{Name: "p", Type: "int"}, nil}}}), "")
	f.Add(mustProto(f, &pb.Device{Name: "a", Spec: &pb.DeviceSpec{DeviceModelReference: "m", Protocol: &pb.ProtocolConfig{ProtocolName: "x"},
		Properties: []*pb.DeviceProperty{{Name: "p", Visitors: &pb.VisitorConfig{ConfigData: &pb.CustomizedValue{Data: map[string]*anypb.Any{"k": nil}}}}, nil}, Methods: []*pb.DeviceMethod{nil}}}), []byte{}, "x")
	f.Add([]byte{}, []byte{}, "")
	f.Fuzz(func(t *testing.T, devBytes, modelBytes []byte, protocol string) {
		var d pb.Device
		if proto.Unmarshal(devBytes, &d) == nil {
			out, err := DeviceFromDMI(&d)
			if err == nil {
				if out.Name == "" || out.Namespace == "" || out.Spec.DeviceModelRef == nil || out.Spec.DeviceModelRef.Name == "" || out.Spec.Protocol.ProtocolName == "" {
					t.Fatalf("incomplete device accepted: %+v", out)
				}
				checkDevice(t, out)
			} else if out != nil {
				t.Fatalf("error %v with a result", err)
			}
		}
		var m pb.DeviceModel
		if proto.Unmarshal(modelBytes, &m) == nil {
			out, err := ModelFromDMI(&m, protocol)
			if err == nil {
				if out.Name == "" || out.Namespace == "" || out.Spec.Protocol != protocol {
					t.Fatalf("incomplete model accepted: %+v", out)
				}
				if _, err := json.Marshal(out); err != nil {
					t.Fatalf("model does not encode: %v", err)
				}
				out.DeepCopy()
			} else if out != nil {
				t.Fatalf("error %v with a result", err)
			}
		}
	})
}

func checkDevice(t *testing.T, d *v1beta1.Device) {
	t.Helper()
	checkConfig(t, d.Spec.Protocol.ConfigData)
	for _, p := range d.Spec.Properties {
		if p.Name == "" {
			t.Fatal("property without a name accepted")
		}
		checkConfig(t, p.Visitors.ConfigData)
		if pm := p.PushMethod; pm != nil && pm.AnomalyDetection != nil {
			checkConfig(t, &v1beta1.CustomizedValue{Data: pm.AnomalyDetection.Data})
		}
		// Values back: the twin of the property as the bridge reports it.
		at := time.UnixMilli(1767323045000)
		tw := twinToDMI(Twin{Property: p.Name, Type: "DOUBLE", Reported: p.Desired.Value, ReportedAt: at, Desired: p.Desired.Value})
		if tw.PropertyName != p.Name || tw.Reported.Value != p.Desired.Value || tw.ObservedDesired.Value != p.Desired.Value ||
			tw.Reported.Metadata["type"] != "float" || tw.Reported.Metadata["timestamp"] != strconv.FormatInt(at.UnixMilli(), 10) {
			t.Fatalf("twin %+v", tw)
		}
		if _, ok := tw.ObservedDesired.Metadata["timestamp"]; ok {
			t.Fatal("a desired value never set has a timestamp")
		}
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatalf("device does not encode: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("DeepCopy of a converted device panics: %v", r)
			}
		}()
		// KubeEdge copies configData through JSON, which makes every
		// number a float64 (integers beyond 2^53 round, as in the YAML
		// path); anything else is copied as is.
		if c, want := jsonOf(t, d.DeepCopy()), jsonOf(t, dmitest.JSONRoundTrip(t, d)); c != want {
			t.Fatalf("DeepCopy changed the device:\n%s\n%s", c, want)
		}
	}()
}

func jsonOf(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// flatConfig reports whether every configData value is one edgecore can
// send (string, number, bool), and narrows numbers as edgecore does
// (float64 to FloatValue), so that the YAML path can be compared with the
// DMI path.
func flatConfig(cv *v1beta1.CustomizedValue) bool {
	if cv == nil {
		return true
	}
	for k, v := range cv.Data {
		switch x := v.(type) {
		case string, bool:
		case float64:
			if math.Abs(x) > math.MaxFloat32 {
				return false // edgecore makes it infinite
			}
			n, _ := strconv.ParseFloat(strconv.FormatFloat(float64(float32(x)), 'g', -1, 32), 64)
			cv.Data[k] = n
		default:
			return false
		}
	}
	return true
}

// FuzzYAMLAndDMIAgree loads Device YAML with the manifest loader, sends
// each good device through edgecore's conversion into DMI and back through
// the bridge's, and checks that both give the same Device, as
// TestYAMLAndDMIGiveTheSameDevice does for one sample. Devices with
// configData edgecore cannot send (objects, lists, nulls, numbers beyond
// float32) are skipped; numbers are compared after edgecore's narrowing.
func FuzzYAMLAndDMIAgree(f *testing.F) {
	f.Add([]byte(sampleYAML))
	f.Add([]byte("apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: d, namespace: n}\nspec:\n  deviceModelRef: {name: m}\n" +
		"  protocol: {protocolName: modbus, configData: {ip: 10.0.0.7, port: 502, big: 16777217, tiny: 1.0e-45, neg: -0.0}}\n" +
		"  properties:\n  - name: p\n    desired: {value: \"1\", metadata: {type: int}}\n    visitors: {protocolName: modbus, configData: {offset: 40001, swap: true}}\n" +
		"    pushMethod: {mqtt: {topic: a/b, qos: 2}, otel: {endpointURL: 'http://o'}}\n  methods: [{name: m, propertyNames: [p]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set := manifest.Parse("fuzz.yaml", data)
		for _, yd := range set.Devices {
			yd = dmitest.JSONRoundTrip(t, yd)
			if yd.Spec.Protocol.ProtocolName == "" || !flatConfig(yd.Spec.Protocol.ConfigData) {
				continue
			}
			flat := true
			for _, p := range yd.Spec.Properties {
				flat = flat && flatConfig(p.Visitors.ConfigData)
			}
			if !flat {
				continue
			}
			dd, err := DeviceFromDMI(dmitest.Device(t, yd))
			if err != nil {
				t.Fatalf("device %s/%s from YAML refused over DMI: %v", yd.Namespace, yd.Name, err)
			}
			checkDevice(t, dd)
			if a, b := jsonOf(t, yd.Spec), jsonOf(t, dd.Spec); a != b {
				t.Fatalf("device spec differs\nYAML %s\n DMI %s", a, b)
			}
		}
	})
}
