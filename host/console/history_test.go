package console

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"wapper.dev/wapper/host/devices"
)

// reading is a reading event of one property.
func reading(device, prop, typ, value string, at time.Time) *devices.Event {
	return &devices.Event{Type: devices.EventReading, Device: device,
		Twins: []devices.TwinStatus{{Property: prop, Type: typ, Reported: value, ReportedTime: at}}}
}

func values(pts []Point) []float64 {
	out := make([]float64, len(pts))
	for i, p := range pts {
		out[i] = p.V
	}
	return out
}

func TestHistoryKeepsTheLastPoints(t *testing.T) {
	h := NewHistory(HistoryOptions{Points: 5})
	t0 := time.Now().Add(-time.Minute)
	for i := range 12 {
		h.Record(reading("default/a", "temp", "DOUBLE", strconv.Itoa(i), t0.Add(time.Duration(i)*time.Second)))
	}
	got, ok := h.Device("default/a")
	if !ok || fmt.Sprint(values(got["temp"])) != "[7 8 9 10 11]" {
		t.Fatalf("after 12 readings, bound 5: %v %v", ok, got)
	}
	// A read no newer than the last point (a failed read repeats the last
	// value and time) adds nothing.
	h.Record(reading("default/a", "temp", "DOUBLE", "99", t0.Add(11*time.Second)))
	h.Record(reading("default/a", "temp", "DOUBLE", "99", t0.Add(3*time.Second)))
	if got, _ := h.Device("default/a"); fmt.Sprint(values(got["temp"])) != "[7 8 9 10 11]" {
		t.Errorf("stale readings recorded: %v", got["temp"])
	}
	if got["temp"][4].T != t0.Add(11*time.Second).UnixMilli() {
		t.Errorf("point time %d, want the reading's", got["temp"][4].T)
	}
}

func TestHistoryKeepsNumbersOnly(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	now := time.Now()
	for _, c := range []struct{ typ, value string }{
		{"BOOLEAN", "true"}, {"STRING", "12"}, {"BYTES", "AQI="}, {"DOUBLE", "NaN"}, {"DOUBLE", "+Inf"},
		{"DOUBLE", "warm"}, {"INT", ""},
	} {
		h.Record(reading("default/a", c.typ+c.value, c.typ, c.value, now))
	}
	h.Record(reading("default/a", "never", "DOUBLE", "1", time.Time{}))            // not read yet
	h.Record(reading("default/a", "old", "DOUBLE", "1", now.Add(-11*time.Minute))) // past Age
	h.Record(&devices.Event{Type: devices.EventReport, Device: "default/a", Twins: []devices.TwinStatus{{Property: "r", Type: "INT", Reported: "1", ReportedTime: now}}})
	if d, p, n := h.Len(); d+p+n != 0 {
		t.Fatalf("kept %d devices, %d properties, %d points of values that are not numbers", d, p, n)
	}
	for i, typ := range []string{"INT", "float", "DOUBLE"} {
		h.Record(reading("default/a", typ, typ, "1.5e3", now.Add(time.Duration(i)*time.Millisecond)))
	}
	if _, p, n := h.Len(); p != 3 || n != 3 {
		t.Errorf("INT, FLOAT and DOUBLE: %d properties, %d points, want 3 and 3", p, n)
	}
	got, _ := h.Device("default/a")
	b, err := json.Marshal(got["DOUBLE"])
	if want := fmt.Sprintf("[[%d,1500]]", now.Add(2*time.Millisecond).UnixMilli()); err != nil || string(b) != want {
		t.Errorf("JSON %s %v, want %s", b, err, want)
	}
}

func TestHistoryForgetsRemovedDevices(t *testing.T) {
	h := NewHistory(HistoryOptions{})
	now := time.Now()
	h.Record(reading("default/a", "temp", "DOUBLE", "1", now))
	h.Record(reading("default/b", "temp", "DOUBLE", "1", now))
	h.Record(&devices.Event{Type: devices.EventDeviceRemoved, Device: "default/a"})
	if _, ok := h.Device("default/a"); ok {
		t.Error("removed device still has a history")
	}
	if d, p, n := h.Len(); d != 1 || p != 1 || n != 1 {
		t.Errorf("after removing one of two: %d devices, %d properties, %d points", d, p, n)
	}
}

func TestHistoryBoundsDevicesAndProperties(t *testing.T) {
	h := NewHistory(HistoryOptions{Devices: 2, Properties: 3})
	now := time.Now()
	for i := range 4 {
		for j := range 5 {
			h.Record(reading(fmt.Sprintf("default/d%d", i), fmt.Sprintf("p%d", j), "INT", "1", now))
		}
	}
	if d, p, _ := h.Len(); d != 2 || p != 6 {
		t.Fatalf("4 devices of 5 properties, bounds 2 and 3: kept %d devices, %d properties", d, p)
	}
	if _, ok := h.Device("default/d2"); ok {
		t.Error("a device past the bound has a history")
	}
	// Removing a device makes room for another.
	h.Forget("default/d0")
	h.Record(reading("default/d2", "p0", "INT", "1", now))
	if _, ok := h.Device("default/d2"); !ok {
		t.Error("no history for a device after another was removed")
	}
	if d, p, _ := h.Len(); d != 2 || p != 4 {
		t.Errorf("%d devices, %d properties, want 2 and 4", d, p)
	}
}

func TestHistoryBudget(t *testing.T) {
	h := NewHistory(HistoryOptions{Points: 100, Budget: 40})
	t0 := time.Now().Add(-time.Minute)
	for i := range 100 {
		h.Record(reading("default/a", "p0", "INT", strconv.Itoa(i), t0.Add(time.Duration(i)*time.Millisecond)))
	}
	if _, _, n := h.Len(); n != 40 {
		t.Fatalf("one property, budget 40: %d points", n)
	}
	// Four properties share the budget: 10 each once pruned.
	for j := 1; j < 4; j++ {
		for i := range 100 {
			h.Record(reading("default/a", fmt.Sprintf("p%d", j), "INT", strconv.Itoa(i), t0.Add(time.Duration(i)*time.Millisecond)))
		}
	}
	h.Prune(time.Now())
	got, _ := h.Device("default/a")
	for name, pts := range got {
		if len(pts) != 10 || pts[9].V != 99 {
			t.Errorf("%s: %d points ending %v, want the last 10", name, len(pts), pts[len(pts)-1])
		}
	}
	// The buffers shrink with the limit.
	h.mu.Lock()
	for name, r := range h.devs["default/a"] {
		if len(r.buf) > 20 {
			t.Errorf("%s: buffer of %d points for 10", name, len(r.buf))
		}
	}
	h.mu.Unlock()
}

func TestHistoryAge(t *testing.T) {
	h := NewHistory(HistoryOptions{Age: time.Minute})
	now := time.Now()
	for i := range 6 {
		h.Record(reading("default/a", "temp", "INT", strconv.Itoa(i), now.Add(time.Duration(i-5)*10*time.Second)))
	}
	h.Record(reading("default/b", "temp", "INT", "1", now))
	h.Prune(now.Add(25 * time.Second))
	got, _ := h.Device("default/a")
	if fmt.Sprint(values(got["temp"])) != "[2 3 4 5]" { // read at now-30s and later
		t.Errorf("points within a minute of now+25s: %v", values(got["temp"]))
	}
	// Devices no longer read are dropped once their points are too old.
	h.Prune(now.Add(2 * time.Minute))
	if d, p, n := h.Len(); d+p+n != 0 {
		t.Errorf("after every point aged: %d devices, %d properties, %d points", d, p, n)
	}
}

func TestRingWraps(t *testing.T) {
	var r ring
	for i := range 1000 {
		r.push(Point{T: int64(i), V: float64(i)}, 7)
	}
	if r.n != 7 || len(r.buf) != 7 || fmt.Sprint(values(r.points())) != "[993 994 995 996 997 998 999]" {
		t.Errorf("ring of 7 after 1000 pushes: n %d, buffer %d, %v", r.n, len(r.buf), r.points())
	}
	r.push(Point{T: 1000, V: 1000}, 3) // the limit fell
	if fmt.Sprint(values(r.points())) != "[998 999 1000]" {
		t.Errorf("limit 3: %v", r.points())
	}
}
