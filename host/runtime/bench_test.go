package runtime_test

import (
	"context"
	goruntime "runtime"
	"syscall"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/internal/testenv"
)

// BenchmarkRead measures a call across the ABI (ping: the marker) and a
// property read through the runtime, with host allocations and CPU time
// per reading: the steady state of a collect cycle. Read and ReadBatchTo
// allocate nothing on the host; ReadBatch allocates its result. Where the
// runtime stops guests with wazero's WithCloseOnContextDone instead of the
// stop flag (interrupt.go), wazero adds 3 allocations per guest call (a
// goroutine's channel and closures).
// cpuTime is the CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRead(b *testing.B) {
	e := newEnvB(b)
	p := e.load("bench", testenv.TestPlugin(b, "bench"), nil)
	ctx := context.Background()
	if err := p.AddDevice(ctx, abi.Device{ID: 1, Name: "b", Properties: []abi.Property{{Handle: 0, Name: "noop", Type: "INT", AccessMode: "ReadOnly"}, {Handle: 1, Name: "noop2", Type: "INT", AccessMode: "ReadOnly"}}}); err != nil {
		b.Fatal(err)
	}
	perReading := func(b *testing.B, readings int, f func()) {
		b.Helper()
		f() // warm up: instance buffers, pools
		var m0, m1 goruntime.MemStats
		goruntime.ReadMemStats(&m0)
		c0 := cpuTime()
		b.ResetTimer()
		for range b.N {
			f()
		}
		b.StopTimer()
		c1 := cpuTime()
		goruntime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*readings), "allocs/reading")
		// CPU time, not wall time: the figure that matters at scale, and
		// one that a busy machine disturbs less.
		b.ReportMetric(float64((c1-c0).Nanoseconds())/float64(b.N*readings), "cpu-ns/reading")
	}
	b.Run("ping", func(b *testing.B) {
		perReading(b, 1, func() {
			if err := p.Ping(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("batch2", func(b *testing.B) {
		perReading(b, 2, func() {
			if _, err := p.ReadBatch(ctx, 1, []uint32{0, 1}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("batch2-reuse", func(b *testing.B) {
		var out []abi.BatchEntry
		handles := []uint32{0, 1}
		perReading(b, 2, func() {
			var err error
			if out, err = p.ReadBatchTo(ctx, 1, handles, out); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("read", func(b *testing.B) {
		perReading(b, 1, func() {
			if _, err := p.Read(ctx, 1, 0); err != nil {
				b.Fatal(err)
			}
		})
	})
}
