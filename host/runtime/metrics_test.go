package runtime_test

import (
	"maps"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/internal/testenv"
)

// TestCallDurations: every call wapper_plugin_calls_total counts is timed
// in wapper_plugin_call_duration_seconds under the same labels, a call
// that kills its instance included, and exports a plugin never called
// have no histogram series.
func TestCallDurations(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.metrics.Calls, e.metrics.CallDurations)
	c := ctx(t)

	virtual := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	if err := virtual.AddDevice(c, abi.Device{ID: 1, Name: "sim", Properties: []abi.Property{
		prop(0, "count", "INT", "ReadOnly", `{"kind":"counter"}`),
		prop(1, "setpoint", "DOUBLE", "ReadWrite", `{"kind":"setpoint","initial":20.5}`),
	}}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := virtual.Read(c, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := virtual.Write(c, 1, 1, abi.Double(21)); err != nil {
		t.Fatal(err)
	}

	faulty := e.load("faulty", testenv.TestPlugin(t, "faulty"), nil)
	if err := faulty.AddDevice(c, abi.Device{ID: 1, Name: "bad", Properties: []abi.Property{
		prop(0, "boom", "INT", "ReadOnly", `{"fault":"trap"}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := faulty.Read(c, 1, 0); err == nil {
		t.Fatal("the trapping read succeeded")
	}

	// An instance the trap threw away may be made again in the
	// background (its wapper_init counted, not yet timed): gather until
	// the counts agree.
	var calls, timed, sums map[series]float64
	for {
		calls, timed, sums = gatherCalls(t, reg)
		if maps.Equal(countedOnly(calls), timed) || c.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for s, n := range calls {
		if timed[s] != n {
			t.Errorf("%s %s: %v calls, %v timed", s.plugin, s.export, n, timed[s])
		}
		if n > 0 && sums[s] <= 0 {
			t.Errorf("%s %s: %v calls took %v s in all", s.plugin, s.export, n, sums[s])
		}
	}
	for s := range timed {
		if calls[s] == 0 {
			t.Errorf("%s %s: a histogram series without calls", s.plugin, s.export)
		}
	}
	read, write := series{"virtual", abi.ExportRead}, series{"virtual", abi.ExportWrite}
	if timed[read] != 5 || timed[write] != 1 || timed[series{"faulty", abi.ExportRead}] != 1 {
		t.Errorf("timed: virtual %v reads and %v writes, faulty %v reads; want 5, 1 and 1",
			timed[read], timed[write], timed[series{"faulty", abi.ExportRead}])
	}
}

// series is a plugin's export.
type series struct{ plugin, export string }

// gatherCalls returns wapper_plugin_calls_total by series, and the count
// and sum of wapper_plugin_call_duration_seconds, checking its buckets.
func gatherCalls(t *testing.T, reg prometheus.Gatherer) (calls, timed, sums map[series]float64) {
	t.Helper()
	calls, timed, sums = map[series]float64{}, map[series]float64{}, map[series]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var s series
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "plugin":
					s.plugin = lp.GetValue()
				case "export":
					s.export = lp.GetValue()
				}
			}
			switch mf.GetName() {
			case "wapper_plugin_calls_total":
				calls[s] = m.GetCounter().GetValue()
			case "wapper_plugin_call_duration_seconds":
				h := m.GetHistogram()
				timed[s], sums[s] = float64(h.GetSampleCount()), h.GetSampleSum()
				if b := h.GetBucket(); len(b) != 16 || b[0].GetUpperBound() != 50e-6 || math.Abs(b[len(b)-1].GetUpperBound()-30) > 1e-9 {
					t.Fatalf("%v: buckets %v, want 16 from 50µs to 30s", s, b)
				}
			}
		}
	}
	return calls, timed, sums
}

// countedOnly drops the series that counted no call.
func countedOnly(calls map[series]float64) map[series]float64 {
	out := map[series]float64{}
	for s, n := range calls {
		if n > 0 {
			out[s] = n
		}
	}
	return out
}
