//go:build !wasip1

package wapper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
)

type testDriver struct {
	Base
	vals map[uint32]Value
}

func (d *testDriver) Read(_ *Device, p *Property) (Value, error) {
	if p.Name == "broken" {
		return Value{}, Errorf(ErrTimeout, "no answer")
	}
	return d.vals[p.Handle], nil
}

func (d *testDriver) Write(_ *Device, p *Property, v Value) error {
	d.vals[p.Handle] = v
	return nil
}

func (d *testDriver) Poll(dev *Device, budget time.Duration) (time.Duration, error) {
	return 250 * time.Millisecond, Report(dev.Property(0), Int(9))
}

func desc(t *testing.T, id uint32) []byte {
	b, err := json.Marshal(abi.Device{ID: id, Namespace: "ns", Name: "d", Properties: []abi.Property{
		{Handle: 0, Name: "n", Type: "INT", AccessMode: "ReadWrite"},
		{Handle: 1, Name: "ro", Type: "INT", AccessMode: "ReadOnly"},
		{Handle: 2, Name: "broken", Type: "INT", AccessMode: "ReadOnly"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOperations(t *testing.T) {
	drv := &testDriver{vals: map[uint32]Value{0: Int(1), 1: Int(2)}}
	in := &instance{drv: drv, devices: map[uint32]*Device{}}
	if err := in.opInit([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := in.opAdd(4, desc(t, 5)); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("mismatched id: %v", err)
	}
	if err := in.opAdd(5, []byte("{not json")); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("bad json: %v", err)
	}
	if err := in.opAdd(5, desc(t, 5)); err != nil {
		t.Fatal(err)
	}
	if err := in.opWrite(5, 0, Int(42).Encode()); err != nil {
		t.Fatal(err)
	}
	if v, err := in.opRead(5, 0); err != nil || v.Int() != 42 {
		t.Fatalf("read = %#v, %v", v, err)
	}
	if err := in.opWrite(5, 1, Int(1).Encode()); abi.CodeOf(err) != ErrReadOnly {
		t.Fatalf("write read-only: %v", err)
	}
	if err := in.opWrite(5, 0, []byte{1, 2}); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("write malformed: %v", err)
	}
	if _, err := in.opRead(5, 9); abi.CodeOf(err) != ErrNotFound {
		t.Fatalf("unknown property: %v", err)
	}
	if _, err := in.opRead(6, 0); abi.CodeOf(err) != ErrNotFound {
		t.Fatalf("unknown device: %v", err)
	}
	payload, err := in.opReadBatch(nil, 5, []uint32{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := abi.ParseBatch(payload, 3)
	if err != nil || entries[0].Value.Int() != 42 || entries[1].Value.Int() != 2 || abi.CodeOf(entries[2].Err) != ErrTimeout || abi.MessageOf(entries[2].Err) != "no answer" {
		t.Fatalf("batch = %+v, %v", entries, err)
	}
	var reported Value
	ReportHook = func(dev, prop uint32, v Value) { reported = v }
	defer func() { ReportHook = nil }()
	if next, err := in.opPoll(5, 100); err != nil || next != 250 || reported.Int() != 9 {
		t.Fatalf("poll = %d, %v, reported %#v", next, err, reported)
	}
	if _, err := in.opMethod(5, []byte(`{"method":"x"}`)); abi.CodeOf(err) != ErrUnsupported {
		t.Fatalf("method: %v", err)
	}
	if err := in.opRemove(5); err != nil {
		t.Fatal(err)
	}
	if _, err := in.opRead(5, 0); abi.CodeOf(err) != ErrNotFound {
		t.Fatalf("read after remove: %v", err)
	}
	if e := panicError("boom", []byte("stack")); abi.CodeOf(e) != ErrPanic || !strings.Contains(e.Error(), "boom") {
		t.Fatal(e)
	}
}

func TestKVNative(t *testing.T) {
	if err := KVSet("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := KVGet("k"); err != nil || !ok || string(v) != "v" {
		t.Fatal(v, ok, err)
	}
	big := strings.Repeat("x", 300) // larger than KVGet's first buffer
	KVSet("big", []byte(big))
	if v, _, _ := KVGet("big"); string(v) != big {
		t.Fatal("big value")
	}
	KVDelete("k")
	if _, ok, _ := KVGet("k"); ok {
		t.Fatal("deleted key found")
	}
}

// stateDriver reports the state its device's model names.
type stateDriver struct{ Base }

func (stateDriver) Read(*Device, *Property) (Value, error) { return Int(0), nil }

func (stateDriver) State(d *Device) (State, error) {
	switch d.Model {
	case "offline":
		return StateOffline, Reason("link down since %d s", 30)
	case "unknown":
		return StateUnknown, Reason("not polled yet")
	case "error":
		return StateOK, Errorf(ErrTimeout, "no answer")
	case "panic":
		panic("state panic")
	}
	return StateOnline, nil
}

func TestStateReason(t *testing.T) {
	in := &instance{drv: stateDriver{}, devices: map[uint32]*Device{}}
	for i, tc := range []struct {
		model  string
		state  State
		reason string
	}{
		{"", StateOnline, ""},
		{"offline", StateOffline, "link down since 30 s"},
		{"unknown", StateUnknown, "not polled yet"},
		{"error", StateUnhealthy, "no answer"}, // an error, not a Reason: unhealthy, as before
	} {
		id := uint32(i + 1)
		b, _ := json.Marshal(abi.Device{ID: id, Model: tc.model})
		if err := in.opAdd(id, b); err != nil {
			t.Fatal(err)
		}
		// Through the dispatch, as the host decodes it.
		payload, err := abi.ParseResult(in.callState(id))
		if err != nil {
			t.Fatal(err)
		}
		s, reason, err := abi.ParseStateResult(payload)
		if err != nil || s != tc.state || reason != tc.reason {
			t.Errorf("model %q: %v %q %v, want %v %q", tc.model, s, reason, err, tc.state, tc.reason)
		}
	}
	if _, err := abi.ParseResult(in.callState(99)); abi.CodeOf(err) != ErrNotFound {
		t.Errorf("unknown device: %v", err)
	}
	b, _ := json.Marshal(abi.Device{ID: 50, Model: "panic"})
	in.opAdd(50, b)
	if _, err := abi.ParseResult(in.callState(50)); abi.CodeOf(err) != ErrPanic {
		t.Errorf("panic in State: %v", err)
	}
	r := Reason("wrapped: %w", Errorf(ErrIO, "reset"))
	if r.Error() != "wrapped: i/o error: reset" || errors.Unwrap(r) == nil {
		t.Errorf("Reason with %%w: %q", r)
	}
}

// A Device built by hand, as a unit test of a driver does, has the
// properties of its description, and they know their device.
func TestHandBuiltDevice(t *testing.T) {
	d := &Device{Device: abi.Device{ID: 3, Namespace: "ns", Name: "x", Properties: []abi.Property{
		{Handle: 4, Name: "a", Type: "INT"}, {Handle: 0, Name: "b", Type: "STRING"},
	}}}
	ps := d.Properties()
	if len(ps) != 2 || ps[0].Name != "a" || ps[0].Device() != d {
		t.Fatalf("Properties() = %v", ps)
	}
	if p := d.Property(0); p == nil || p.Name != "b" || p.Type() != TypeString {
		t.Errorf("Property(0) = %v", p)
	}
	if p := d.PropertyByName("a"); p == nil || p.Handle != 4 {
		t.Errorf("PropertyByName(a) = %v", p)
	}
	// A new description is noticed.
	d.Device.Properties = []abi.Property{{Handle: 1, Name: "c"}}
	if ps := d.Properties(); len(ps) != 1 || ps[0].Name != "c" || d.Property(4) != nil {
		t.Errorf("after a new description: %v", ps)
	}
	var got []string
	ReportHook = func(dev, prop uint32, v Value) { got = append(got, fmt.Sprint(dev, prop, v.Int())) }
	defer func() { ReportHook = nil }()
	if err := Report(d.Property(1), Int(5)); err != nil || len(got) != 1 || got[0] != "3 1 5" {
		t.Errorf("report: %v, %v", err, got)
	}
	if err := Report(&Property{}, Int(1)); CodeOf(err) != ErrInvalid {
		t.Errorf("report of a property without a device: %v", err)
	}
	empty := &Device{}
	if len(empty.Properties()) != 0 || empty.Property(0) != nil {
		t.Error("empty device has properties")
	}
}

// The package doc of Value lists abi.Value's methods, since go doc does not
// show the methods of an alias.
func TestValueDocListsMethods(t *testing.T) {
	src, err := os.ReadFile("types.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	doc = doc[:strings.Index(doc, "type Value = abi.Value")]
	vt := reflect.TypeOf(abi.Value{})
	for i := range vt.NumMethod() {
		m := vt.Method(i)
		if !strings.Contains(doc, "//\t"+m.Name+"(") {
			t.Errorf("the doc comment of Value does not list method %s", m.Name)
		}
	}
}

func TestProtocolConfigs(t *testing.T) {
	d := &Device{}
	d.Namespace, d.Name = "ns", "dev"
	d.ModelConfig = []byte(`{"ip": "10.0.0.1", "port": 502}`)
	d.Device.ProtocolConfig = []byte(`{"port": 1502}`)
	var raw struct{ IP string }
	cfg := Config{}
	if err := d.ProtocolConfigs(&raw, &cfg); err != nil || raw.IP != "10.0.0.1" || string(cfg["port"]) != "1502" {
		t.Fatalf("%+v %s: %v", raw, cfg["port"], err)
	}
	d.Device.ProtocolConfig = []byte(`[1]`)
	if err := d.ProtocolConfigs(&raw); CodeOf(err) != ErrInvalid || !strings.Contains(err.Error(), "device ns/dev: protocol configData: ") {
		t.Fatalf("bad configData: %v", err)
	}
}
