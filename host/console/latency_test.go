package console

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"wapper.dev/wapper/abi"
)

// TestCallLatency: a plugin's mean call time and p99 come from the sum of
// its series of wapper_plugin_call_duration_seconds, bar the exports the
// host calls for its own ends, interpolated within the bucket the 99th
// percentile falls in as histogram_quantile does.
func TestCallLatency(t *testing.T) {
	reg := prometheus.NewRegistry()
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: callDurations, Buckets: []float64{0.001, 0.01, 0.1}},
		[]string{"plugin", "export"})
	reg.MustRegister(vec)
	observe := func(plugin, export string, n int, v float64) {
		for range n {
			vec.WithLabelValues(plugin, export).Observe(v)
		}
	}
	// 100 calls of plugin a: 50 in (0, 1ms], 40 in (1ms, 10ms], 10 in
	// (10ms, 100ms]. The 99th falls in the last bucket, 9 of its 10 in:
	// 10ms + 90ms * 9/10.
	observe("a", abi.ExportRead, 50, 0.0005)
	observe("a", abi.ExportRead, 30, 0.005)
	observe("a", abi.ExportWrite, 10, 0.005)
	observe("a", abi.ExportWrite, 10, 0.05)
	observe("a", abi.ExportAlloc, 1000, 0.00001) // the host's own: left out
	observe("a", abi.ExportFree, 1000, 0.00001)
	observe("b", abi.ExportRead, 1, 20) // in +Inf
	c := &Console{opts: Options{Gatherer: reg}}
	stats := c.stats([]string{"a", "b", "idle"})

	a := stats["a"].calls
	if want := (50*0.0005 + 40*0.005 + 10*0.05) / 100; math.Abs(a.mean()-want) > 1e-12 {
		t.Errorf("a: mean %v, want %v", a.mean(), want)
	}
	if got, want := a.quantile(0.99), 0.01+0.09*0.9; math.Abs(got-want) > 1e-12 {
		t.Errorf("a: p99 %v, want %v", got, want)
	}
	if got, want := a.quantile(0.5), 0.001; math.Abs(got-want) > 1e-12 {
		t.Errorf("a: median %v, want %v (the 50th of 50 in the first bucket)", got, want)
	}
	// One call of 20 s, past the last bucket: its upper bound, as
	// histogram_quantile answers.
	if b := stats["b"].calls; b.mean() != 20 || b.quantile(0.99) != 0.1 {
		t.Errorf("b: mean %v, p99 %v; want 20 and 0.1", b.mean(), b.quantile(0.99))
	}
	if idle := stats["idle"].calls; idle.mean() != 0 || idle.quantile(0.99) != 0 {
		t.Errorf("plugin without calls: mean %v, p99 %v", idle.mean(), idle.quantile(0.99))
	}
	if _, ok := stats["idle"].counters["calls"]; !ok {
		t.Errorf("plugin without calls: counters %v", stats["idle"].counters)
	}
}

// TestQuantileFirstBucket: the first bucket starts at 0, and a
// histogram without observations answers 0.
func TestQuantileFirstBucket(t *testing.T) {
	var h histogram
	if h.quantile(0.99) != 0 || h.mean() != 0 {
		t.Errorf("empty: p99 %v, mean %v", h.quantile(0.99), h.mean())
	}
	count, sum := uint64(4), 0.004
	bounds, cumulative := []float64{0.002, 0.004}, []uint64{4, 4}
	m := &dto.Histogram{SampleCount: &count, SampleSum: &sum}
	for i := range bounds {
		m.Bucket = append(m.Bucket, &dto.Bucket{UpperBound: &bounds[i], CumulativeCount: &cumulative[i]})
	}
	h.add(m)
	if got, want := h.quantile(0.99), 0.002*0.99; math.Abs(got-want) > 1e-15 {
		t.Errorf("p99 %v, want %v", got, want)
	}
}
