// Command bench-sdk compares the SDK builds of the conformance plugin
// (abi/CONFORMANCE.md): bin/testplugins/conformance.wasm from sdk-go and
// bin/testplugins/conformance-rust.wasm from sdk-rust, run by the same host
// runtime in the same process (`make bench`).
//
// Rows: module size; a property read and a write through the whole host
// path (runtime.Plugin.Read and Write); a batch read of every type; the
// cold compile; a load from the compile cache; the time to instantiate one
// more instance; the guest's linear memory after instantiation and after a
// device is added; and the host's RSS growth per instance. The last column
// is Go/Rust.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/conformance"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// build is one SDK's build of the conformance plugin and its measurements.
type build struct {
	name, file string
	wasm       []byte
	m          map[string]float64
}

// rows in print order: key, label, unit.
var rows = [][3]string{
	{"size", "module size", "KiB"},
	{"read", "read INT (runtime.Plugin.Read)", "ns"},
	{"write", "write INT (runtime.Plugin.Write)", "ns"},
	{"batch", "batch read of 7 types (ReadBatch)", "ns"},
	{"compile", "load, cold compile (1 instance)", "ms"},
	{"load", "load from compile cache (1 instance)", "ms"},
	{"inst", "instantiate + init, per instance", "ms"},
	{"mem0", "guest memory after instantiation", "KiB"},
	{"mem1", "guest memory with a device added", "KiB"},
	{"rss", "host RSS growth per instance", "KiB"},
}

const rssInstances = 32

var quiet = slog.New(slog.DiscardHandler)

func main() {
	ctx := context.Background()
	builds := []*build{
		{name: "Go (sdk-go)", file: "conformance.wasm"},
		{name: "Rust (sdk-rust)", file: "conformance-rust.wasm"},
	}
	for _, b := range builds {
		path := filepath.Join(testenv.Root(), "bin/testplugins", b.file)
		wasm, err := os.ReadFile(path)
		if err != nil {
			fatal(fmt.Errorf("%w (run `make testplugins`)", err))
		}
		b.wasm, b.m = wasm, map[string]float64{"size": float64(len(wasm)) / 1024}
		measureLoad(ctx, b)
		measureCalls(ctx, b)
		measureMemory(ctx, b)
		measureRSS(ctx, b)
	}

	fmt.Println("SDK builds of the conformance plugin in the same host runtime (abi/CONFORMANCE.md)")
	fmt.Printf("%-40s %16s %16s %9s\n", "", builds[0].name, builds[1].name, "Go/Rust")
	for _, r := range rows {
		g, rs := builds[0].m[r[0]], builds[1].m[r[0]]
		fmt.Printf("%-40s %12.1f %-3s %12.1f %-3s %8.2fx\n", r[1], g, r[2], rs, r[2], g/rs)
	}
	fmt.Printf("(calls: testing.Benchmark on one instance; loads: median of 5; instantiate: the slope of loads with 1 and %d instances;\n"+
		" guest memory: linear memory size seen by a function listener; RSS: /proc/self/status over %d instances)\n", 9, rssInstances)
}

func load(ctx context.Context, eng *runtime.Engine, b *build, instances int) *runtime.Plugin {
	p, err := eng.Load(ctx, runtime.Config{Name: "bench", Wasm: b.wasm, Instances: instances, KV: &conformance.MemKV{}})
	if err != nil {
		fatal(err)
	}
	return p
}

func measureLoad(ctx context.Context, b *build) {
	eng := newEngine()
	defer eng.Close(ctx)
	t0 := time.Now()
	p := load(ctx, eng, b, 1)
	b.m["compile"] = ms(time.Since(t0))
	p.Close(ctx)
	timeLoad := func(instances int) func() time.Duration {
		return func() time.Duration {
			t0 := time.Now()
			p := load(ctx, eng, b, instances)
			d := time.Since(t0)
			p.Close(ctx)
			return d
		}
	}
	one, nine := median(5, timeLoad(1)), median(5, timeLoad(9))
	b.m["load"] = ms(one)
	b.m["inst"] = ms(nine-one) / 8
}

func measureCalls(ctx context.Context, b *build) {
	eng := newEngine()
	defer eng.Close(ctx)
	p := load(ctx, eng, b, 1)
	defer p.Close(ctx)
	if err := p.AddDevice(ctx, conformance.FullDevice(1, "")); err != nil {
		fatal(err)
	}
	b.m["read"] = nsPerOp(func(tb *testing.B) {
		for range tb.N {
			if _, err := p.Read(ctx, 1, 0); err != nil {
				fatal(err)
			}
		}
	})
	b.m["write"] = nsPerOp(func(tb *testing.B) {
		for i := range tb.N {
			if err := p.Write(ctx, 1, 0, abi.Int(int64(i))); err != nil {
				fatal(err)
			}
		}
	})
	handles := []uint32{0, 1, 2, 3, 4, 5, 12}
	b.m["batch"] = nsPerOp(func(tb *testing.B) {
		for range tb.N {
			if _, err := p.ReadBatch(ctx, 1, handles); err != nil {
				fatal(err)
			}
		}
	})
}

// measureMemory reads the guest's linear memory through a probe, on an
// engine of its own (the probe's listener slows calls down).
func measureMemory(ctx context.Context, b *build) {
	eng := newEngine()
	defer eng.Close(ctx)
	probe := conformance.NewProbe()
	p, err := eng.Load(probe.Context(ctx), runtime.Config{Name: "bench", Wasm: b.wasm, Instances: 1})
	if err != nil {
		fatal(err)
	}
	defer p.Close(ctx)
	b.m["mem0"] = float64(probe.Memory()) / 1024
	if err := p.AddDevice(ctx, conformance.FullDevice(1, "")); err != nil {
		fatal(err)
	}
	if _, err := p.Read(ctx, 1, 0); err != nil {
		fatal(err)
	}
	b.m["mem1"] = float64(probe.Memory()) / 1024
}

func measureRSS(ctx context.Context, b *build) {
	eng := newEngine()
	defer eng.Close(ctx)
	load(ctx, eng, b, 1).Close(ctx) // compile first
	goruntime.GC()
	before := rss()
	p := load(ctx, eng, b, rssInstances)
	goruntime.GC()
	after := rss()
	b.m["rss"] = float64(after-before) / rssInstances / 1024
	p.Close(ctx)
}

func newEngine() *runtime.Engine {
	eng, err := runtime.NewEngine(runtime.EngineOptions{Logger: quiet})
	if err != nil {
		fatal(err)
	}
	return eng
}

func nsPerOp(f func(b *testing.B)) float64 {
	r := testing.Benchmark(f)
	return float64(r.T.Nanoseconds()) / float64(r.N)
}

func median(n int, f func() time.Duration) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = f()
	}
	slices.Sort(ds)
	return ds[n/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rss returns this process's resident set size in bytes.
func rss() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	fatal(fmt.Errorf("no VmRSS in /proc/self/status"))
	return 0
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench-sdk:", err)
	os.Exit(1)
}
