package main

import (
	"testing"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// TestMoveKeepsState moves a device from one instance to another the way
// the host does (added to the new one, then removed from the old one):
// its written setpoint and its counter go on, since the kv store is
// shared and a removal is not a deletion (ABI SPEC §2). The old
// RemoveDevice deleted both, so a moved device read its initial value
// while the host counted the desired value as applied.
func TestMoveKeepsState(t *testing.T) {
	desc := sdktest.Description{Name: "moved", Properties: []sdktest.Property{
		{Name: "sp", Type: "DOUBLE", AccessMode: "ReadWrite", Visitor: map[string]any{"kind": "setpoint", "initial": 1}},
		{Name: "n", Type: "INT", Visitor: map[string]any{"kind": "counter"}},
	}}
	instance := func() *sdktest.Plugin {
		p, err := sdktest.New(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	a, b := instance(), instance()
	da, err := a.Add(desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := da.Write("sp", wapper.Double(7)); err != nil {
		t.Fatal(err)
	}
	var last int64
	for range 3 {
		v, err := da.Read("n")
		if err != nil {
			t.Fatal(err)
		}
		last = v.Int()
	}
	db, err := b.Add(desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := da.Remove(); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Read("sp"); err != nil || v.Double() != 7 {
		t.Errorf("setpoint on the instance the device moved to: %v, %v; want 7", v, err)
	}
	if v, err := db.Read("n"); err != nil || v.Int() <= last {
		t.Errorf("counter on the instance the device moved to: %v, %v; want more than %d", v, err, last)
	}
}
