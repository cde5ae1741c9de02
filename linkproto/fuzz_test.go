package linkproto_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/linkproto"
)

// Fuzz targets for the cloud ↔ edge link messages (issue 11). Each side
// reads a websocket text frame with json.Decoder (gorilla's ReadJSON) into
// a Message; whatever the peer sends, decoding never crashes, a decoded
// message encodes to JSON that decodes to the same message, and the
// objects and reports in it go through what each side does with them.
// Run one with
//
//	go test -run '^$' -fuzz '^FuzzMessage$' -fuzztime 60s ./linkproto

const (
	seedDevice = `{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"Device","metadata":{"name":"thermo","namespace":"plant"},` +
		`"spec":{"deviceModelRef":{"name":"thermo-model"},"nodeName":"edge-1","protocol":{"protocolName":"modbus","configData":{"ip":"10.0.0.7","port":502}},` +
		`"properties":[{"name":"temp","collectCycle":1000,"visitors":{"protocolName":"modbus","configData":{"register":"HoldingRegister","offset":2}}}]}}`
	seedModel = `{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"DeviceModel","metadata":{"name":"thermo-model","namespace":"plant"},` +
		`"spec":{"protocol":"modbus","properties":[{"name":"temp","type":"FLOAT","accessMode":"ReadOnly"}]}}`
	seedPlugin = `{"apiVersion":"mappers.wapper.dev/v1alpha1","kind":"MapperPlugin","metadata":{"name":"modbus"},` +
		`"spec":{"protocols":["modbus"],"module":{"ref":"127.0.0.1:5000/mappers/modbus:v1","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},` +
		`"grants":{"network":["tcp://10.0.0.0/24:502"]},"limits":{"memoryMiB":64,"callTimeout":"2s","instances":2},"config":{"pollMs":100}}}`
)

func seedMessages() []linkproto.Message {
	return []linkproto.Message{
		{Type: linkproto.TypeHello, Inventory: map[string]string{
			"Device/plant/thermo": "v1-5f2c", "DeviceModel/plant/thermo-model": "v1-a1", "MapperPlugin/modbus": "v1-77"}},
		{Type: linkproto.TypeHello},
		{Type: linkproto.TypeApply, Seq: 1, Items: []linkproto.Item{
			{Key: "MapperPlugin/modbus", Version: "v1-77", Object: json.RawMessage(seedPlugin)},
			{Key: "DeviceModel/plant/thermo-model", Version: "v1-a1", Object: json.RawMessage(seedModel)},
			{Key: "Device/plant/thermo", Version: "v1-5f2c", Object: json.RawMessage(seedDevice)},
		}},
		{Type: linkproto.TypeApply, Seq: 2, Items: []linkproto.Item{{Key: "Device/plant/old"}, {Key: "Gadget/x", Version: "1", Object: json.RawMessage(`{}`)}}},
		{Type: linkproto.TypeAck, Seq: 2},
		{Type: linkproto.TypeReport, Reports: []linkproto.Report{
			{Seq: 10, Device: &linkproto.DeviceReport{Namespace: "plant", Name: "thermo", State: "ok", LastOnlineTime: "2026-01-02T03:04:05Z",
				Twins: []devicesv1beta1.Twin{{PropertyName: "temp", Reported: devicesv1beta1.TwinProperty{Value: "21.5", Metadata: map[string]string{"timestamp": "1767323045000", "type": "float"}}}}}},
			{Seq: 11, Plugin: &linkproto.PluginReport{Name: "modbus", Phase: "Failed", Message: "module digest does not match"}},
		}},
		{Type: linkproto.TypeReportAck, Acked: []uint64{10, 11}},
	}
}

// FuzzMessage decodes one websocket frame as either side does.
func FuzzMessage(f *testing.F) {
	for _, m := range seedMessages() {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"apply","seq":3,"items":[{"key":"Device/a/b","version":"x","object":null},{"key":"Device/a/c","object":"str"}]}`))
	f.Add([]byte(`{"type":"report","reports":[{"seq":1},{"seq":2,"device":{"name":"d","twins":[{"propertyName":"p"},{"propertyName":"p"}]},"plugin":{"name":"p"}}]}`))
	f.Add([]byte(`{"type":"hello","seq":18446744073709551615,"inventory":{"":""}} {"type":"ack"}`))
	f.Add([]byte(`{"type":"\ud800","acked":[-1]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var m linkproto.Message
		if json.NewDecoder(bytes.NewReader(frame)).Decode(&m) != nil {
			return
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		var m2 linkproto.Message
		if err := json.Unmarshal(enc, &m2); err != nil {
			t.Fatalf("encoded message %s does not decode: %v", enc, err)
		}
		enc2, err := json.Marshal(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("message does not round-trip:\n%s\n%s", enc, enc2)
		}
		if len(m.Items) != len(m2.Items) || len(m.Reports) != len(m2.Reports) || len(m.Acked) != len(m2.Acked) || len(m.Inventory) != len(m2.Inventory) || m.Seq != m2.Seq {
			t.Fatalf("message changed in a round trip:\n%+v\n%+v", m, m2)
		}
		for k := range m.Inventory {
			linkproto.SplitKey(k)
		}
		for i, it := range m.Items {
			if it.Deleted() != m2.Items[i].Deleted() || it.Key != m2.Items[i].Key {
				t.Fatalf("item %d changed in a round trip: %+v → %+v", i, it, m2.Items[i])
			}
			if !it.Deleted() {
				decodeObject(t, it)
			}
		}
		for _, r := range m.Reports {
			if r.Device != nil {
				checkMerge(t, *r.Device, *r.Device)
				checkMerge(t, linkproto.DeviceReport{}, *r.Device)
				for _, r2 := range m.Reports {
					if r2.Device != nil {
						checkMerge(t, *r.Device, *r2.Device)
					}
				}
			}
		}
	})
}

// decodeObject decodes an item's object as the host's cloudlink does, and
// copies and validates it as the device manager does.
func decodeObject(t *testing.T, it linkproto.Item) {
	kind, _, _ := linkproto.SplitKey(it.Key)
	linkproto.KindOrder(kind)
	switch kind {
	case linkproto.KindDevice:
		var d devicesv1beta1.Device
		if json.Unmarshal(it.Object, &d) == nil {
			d.DeepCopy()
		}
	case linkproto.KindDeviceModel:
		var m devicesv1beta1.DeviceModel
		if json.Unmarshal(it.Object, &m) == nil {
			m.DeepCopy()
		}
	case linkproto.KindMapperPlugin:
		var p mappersv1alpha1.MapperPlugin
		if json.Unmarshal(it.Object, &p) == nil {
			p.Default()
			if len(p.Validate()) == 0 {
				p.Spec.Limits.MemoryPages()
			}
			p.DeepCopy()
		}
	}
}

// checkMerge checks DeviceReport.Merge: old is left alone, every twin of
// cur is in the result with cur's value, old's other twins stay, and
// cur's state and time win when set.
func checkMerge(t *testing.T, old, cur linkproto.DeviceReport) {
	t.Helper()
	before, _ := json.Marshal(old)
	out := old.Merge(cur)
	if after, _ := json.Marshal(old); !bytes.Equal(before, after) {
		t.Fatalf("Merge changed the older report:\n%s\n%s", before, after)
	}
	if old.Name == "" {
		if !reflect.DeepEqual(out, cur) {
			t.Fatalf("Merge over an empty report gave %+v", out)
		}
		return
	}
	last := map[string]devicesv1beta1.Twin{}
	for _, tw := range cur.Twins {
		last[tw.PropertyName] = tw
	}
	got := map[string]devicesv1beta1.Twin{}
	for _, tw := range out.Twins {
		if _, dup := got[tw.PropertyName]; dup && !hasDup(old.Twins, tw.PropertyName) {
			t.Fatalf("Merge duplicated twin %q", tw.PropertyName)
		}
		got[tw.PropertyName] = tw
	}
	for name, tw := range last {
		g, ok := got[name]
		if !ok {
			t.Fatalf("Merge lost twin %q of the newer report", name)
		}
		if !hasDup(old.Twins, name) && !hasDup(cur.Twins, name) && !reflect.DeepEqual(g, tw) {
			t.Fatalf("twin %q is %+v after Merge, want %+v", name, g, tw)
		}
	}
	for _, tw := range old.Twins {
		if _, ok := got[tw.PropertyName]; !ok {
			t.Fatalf("Merge lost twin %q of the older report", tw.PropertyName)
		}
	}
	if (cur.State != "" && out.State != cur.State) || (cur.State == "" && out.State != old.State) ||
		(cur.LastOnlineTime != "" && out.LastOnlineTime != cur.LastOnlineTime) || (cur.LastOnlineTime == "" && out.LastOnlineTime != old.LastOnlineTime) {
		t.Fatalf("Merge state %q %q from %q %q and %q %q", out.State, out.LastOnlineTime, old.State, old.LastOnlineTime, cur.State, cur.LastOnlineTime)
	}
}

func hasDup(ts []devicesv1beta1.Twin, name string) bool {
	n := 0
	for _, t := range ts {
		if t.PropertyName == name {
			n++
		}
	}
	return n > 1
}

// FuzzKey checks that SplitKey undoes Key for the names Kubernetes allows
// (no slashes), and never panics on anything else.
func FuzzKey(f *testing.F) {
	f.Add("Device", "plant", "thermo")
	f.Add("MapperPlugin", "", "modbus")
	f.Add("DeviceModel", "default", "m")
	f.Add("", "", "")
	f.Add("a/b", "c", "d/e")
	f.Fuzz(func(t *testing.T, kind, ns, name string) {
		k := linkproto.Key(kind, ns, name)
		k2, ns2, name2 := linkproto.SplitKey(k)
		linkproto.SplitKey(name)
		if strings.Contains(kind+ns+name, "/") {
			return
		}
		if k2 != kind || ns2 != ns || name2 != name {
			t.Fatalf("Key(%q, %q, %q) = %q splits as %q, %q, %q", kind, ns, name, k, k2, ns2, name2)
		}
	})
}
