package devices

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
)

// hotTarget is a device's run without the plugin calls the hot path does
// not make every cycle (state, poll).
type hotTarget struct{ *devRun }

func (hotTarget) state(stateResult, bool)                     {}
func (hotTarget) poll(context.Context) (time.Duration, error) { return 0, nil }

// sineReader answers every request with a value that changes each call,
// as a simulated sine does.
type sineReader struct{ n atomic.Uint64 }

func (r *sineReader) parallel() int   { return 4 }
func (r *sineReader) home(uint32) int { return -1 }
func (r *sineReader) states(_ context.Context, devs []uint32, out []stateResult) []stateResult {
	return append(out[:0], make([]stateResult, len(devs))...)
}
func (r *sineReader) readMany(_ context.Context, reqs []readReq, out []abi.BatchEntry) ([]abi.BatchEntry, error) {
	out = out[:0]
	n := r.n.Add(1)
	for i := range reqs {
		out = append(out, abi.BatchEntry{Value: abi.Double(math.Sin(float64(n) + float64(i)))})
	}
	return out, nil
}

// BenchmarkReadingHotPath runs the scheduler over 1,000 devices of two
// properties each, one collect cycle per op (2,000 readings), from the
// scheduler's step through the read, the twin update and the event
// emission, with the plugin replaced by a fake: with no subscriber, with
// subscribers that filter out the readings (as MQTT, HTTP push and the
// cloud link do for readings without a pushMethod), and with a subscriber
// that keeps every reading. It reports allocs/reading.
func BenchmarkReadingHotPath(b *testing.B) {
	for _, c := range []struct {
		name string
		keep func(*Event) bool
		subs bool
	}{
		{name: "no-subscriber"},
		{name: "filtered", subs: true, keep: func(ev *Event) bool {
			if ev.Type == EventReading {
				return ev.PushesMQTT()
			}
			return ev.Type == EventDeviceRemoved
		}},
		{name: "kept", subs: true},
	} {
		b.Run(c.name, func(b *testing.B) {
			const devices = 1000
			m := &Manager{log: slog.New(slog.DiscardHandler), met: newMetrics(nil), subs: map[*subscription]struct{}{}}
			if c.subs {
				events, cancel := m.SubscribeFunc("bench", 1<<16, c.keep)
				defer cancel()
				go func() {
					for range events {
					}
				}()
			}
			env := newFakeEnv()
			s := newScheduler(env, schedTick, 0)
			wctx, stop := context.WithCancel(context.Background())
			defer stop()
			for range 8 {
				go s.worker(wctx)
			}
			r := &sineReader{}
			pe := &pluginEntry{name: "bench", readings: m.met.readings.WithLabelValues("bench"), skips: m.met.skipped.WithLabelValues("bench")}
			t0 := env.now()
			for i := range devices {
				d := newDevice(m, fmt.Sprintf("default/d%d", i), uint32(i+1))
				cfg := testConfig(time.Hour, time.Hour, time.Second, time.Second)
				cfg.plugin = pe
				for j := range cfg.props {
					cfg.props[j].Type = "DOUBLE"
				}
				d.twins.load(nil, cfg.props)
				s.add(newLoop(context.Background(), hotTarget{&devRun{d: d, cfg: cfg}}, r, d.id, cfg, time.Hour, t0, false, 0))
			}
			at := t0.Add(time.Second)
			stepTo(s, env, at) // first reads, and the report and state
			var before, after goruntime.MemStats
			b.ResetTimer()
			goruntime.ReadMemStats(&before)
			for range b.N {
				at = at.Add(time.Second)
				stepTo(s, env, at)
			}
			goruntime.ReadMemStats(&after)
			b.StopTimer()
			readings := float64(b.N) * 2 * devices
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/readings, "allocs/reading")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/readings, "ns/reading")
		})
	}
}
