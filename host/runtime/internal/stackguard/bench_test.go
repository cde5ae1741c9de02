package stackguard

import (
	"context"
	"os"
	"testing"

	"wapper.dev/wapper/internal/testenv"
)

// BenchmarkCalls compares a tight call-heavy loop and a doubly recursive
// function before and after instrumentation; ns/call is per wasm call.
func BenchmarkCalls(b *testing.B) {
	ctx := context.Background()
	bin := testdata(b, "bench.wasm")
	out, err := Instrument(bin, BudgetForBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	plain, inst := instantiate(b, newRuntime(b), bin), instantiate(b, newRuntime(b), out)
	for _, bc := range []struct {
		fn    string
		arg   uint64
		calls int // wasm calls per call from Go
	}{
		{"loop", 100000, 100001},
		{"fib", 25, 242785},
	} {
		for _, side := range []string{"plain", "instrumented"} {
			f := plain.ExportedFunction(bc.fn)
			if side == "instrumented" {
				f = inst.ExportedFunction(bc.fn)
			}
			b.Run(bc.fn+"/"+side, func(b *testing.B) {
				for b.Loop() {
					if _, err := f.Call(ctx, bc.arg); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(bc.calls), "ns/call")
			})
		}
	}
}

// BenchmarkInstrumentVirtual measures the rewrite of the Go plugin.
func BenchmarkInstrumentVirtual(b *testing.B) {
	bin, err := os.ReadFile(testenv.Plugin(b, "virtual"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(bin)))
	for b.Loop() {
		if _, err := Instrument(bin, BudgetForBytes(1<<20)); err != nil {
			b.Fatal(err)
		}
	}
}
