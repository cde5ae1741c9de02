//go:build !wasip1

package wapper

import (
	"encoding/json"
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
	driver, devices = drv, map[uint32]*Device{}
	defer func() { driver = nil }()
	if err := opInit([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := opAdd(4, desc(t, 5)); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("mismatched id: %v", err)
	}
	if err := opAdd(5, []byte("{not json")); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("bad json: %v", err)
	}
	if err := opAdd(5, desc(t, 5)); err != nil {
		t.Fatal(err)
	}
	if err := opWrite(5, 0, Int(42).Encode()); err != nil {
		t.Fatal(err)
	}
	if v, err := opRead(5, 0); err != nil || v.Int() != 42 {
		t.Fatalf("read = %#v, %v", v, err)
	}
	if err := opWrite(5, 1, Int(1).Encode()); abi.CodeOf(err) != ErrReadOnly {
		t.Fatalf("write read-only: %v", err)
	}
	if err := opWrite(5, 0, []byte{1, 2}); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("write malformed: %v", err)
	}
	if _, err := opRead(5, 9); abi.CodeOf(err) != ErrNotFound {
		t.Fatalf("unknown property: %v", err)
	}
	if _, err := opRead(6, 0); abi.CodeOf(err) != ErrNotFound {
		t.Fatalf("unknown device: %v", err)
	}
	payload, err := opReadBatch(nil, 5, []uint32{0, 1, 2})
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
	if next, err := opPoll(5, 100); err != nil || next != 250 || reported.Int() != 9 {
		t.Fatalf("poll = %d, %v, reported %#v", next, err, reported)
	}
	if _, err := opMethod(5, []byte(`{"method":"x"}`)); abi.CodeOf(err) != ErrUnsupported {
		t.Fatalf("method: %v", err)
	}
	if err := opRemove(5); err != nil {
		t.Fatal(err)
	}
	if _, err := opRead(5, 0); abi.CodeOf(err) != ErrNotFound {
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
