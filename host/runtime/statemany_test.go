package runtime_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/internal/testenv"
)

// TestStateMany asks the state of several devices in one call, with an
// unknown and a removed device among them: each entry answers its device,
// in request order, as Plugin.State answers it, and the plugin's
// wapper_device_state is called once per device asked.
func TestStateMany(t *testing.T) {
	e := newEnv(t)
	p := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	c := ctx(t)
	for id := uint32(1); id <= 3; id++ {
		if err := p.AddDevice(c, abi.Device{ID: id, Namespace: "default", Name: "sim", Properties: []abi.Property{
			prop(0, "count", "INT", "ReadOnly", `{"kind":"counter"}`),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.RemoveDevice(c, 3); err != nil {
		t.Fatal(err)
	}
	calls := func() float64 {
		return testutil.ToFloat64(e.metrics.Calls.WithLabelValues("virtual", abi.ExportState))
	}
	ids := []uint32{2, 9, 1, 3}
	out := p.StateMany(c, ids, nil)
	if len(out) != len(ids) {
		t.Fatalf("%d entries for %d devices", len(out), len(ids))
	}
	if n := calls(); n != 2 {
		t.Fatalf("%s called %v times, want 2", abi.ExportState, n)
	}
	for i, id := range ids {
		st, reason, err := p.State(c, id)
		got := out[i]
		if abi.CodeOf(got.Err) != abi.CodeOf(err) || got.State != st || got.Reason != reason {
			t.Errorf("device %d: StateMany says %v %q %v; State says %v %q %v", id, got.State, got.Reason, got.Err, st, reason, err)
		}
	}
	if abi.CodeOf(out[1].Err) != abi.ErrNotFound || abi.CodeOf(out[3].Err) != abi.ErrNotFound {
		t.Fatalf("unknown and removed devices: %v, %v", out[1].Err, out[3].Err)
	}
	if again := p.StateMany(c, ids[:2], out); len(again) != 2 || &again[0] != &out[0] {
		t.Fatalf("StateMany did not reuse out: %d entries", len(again))
	}
}

// TestStateManyIsolatesTraps: a device whose state call traps gets the
// trap in its entry and a strike; the devices after it in the same call
// are asked on a fresh instance and answer normally.
func TestStateManyIsolatesTraps(t *testing.T) {
	e := newEnv(t)
	p := loadReadMany(t, e, true)
	c := ctx(t)
	for round := 1; round <= 2; round++ {
		out := p.StateMany(c, []uint32{5, 7, 8, 6}, nil)
		for _, i := range []int{0, 2, 3} {
			if out[i].Err != nil || out[i].State != 1 || out[i].Reason != "up" {
				t.Fatalf("round %d, entry %d: %v %q %v", round, i, out[i].State, out[i].Reason, out[i].Err)
			}
		}
		if out[1].Err == nil || !strings.Contains(out[1].Err.Error(), "trap") {
			t.Fatalf("round %d: the trapping device's entry says %v", round, out[1].Err)
		}
	}
	if n := p.Restarts(); n < 2 {
		t.Fatalf("instance restarts %d, want at least 2", n)
	}
	// Two calls in a row killed the instance: the device is set aside.
	out := p.StateMany(c, []uint32{7, 5}, nil)
	if abi.CodeOf(out[0].Err) != abi.ErrUnavailable || !strings.Contains(out[0].Err.Error(), "set aside") || out[1].Err != nil {
		t.Fatalf("after two strikes: %v, %v", out[0].Err, out[1].Err)
	}
}
