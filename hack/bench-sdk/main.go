// Command bench-sdk compares the SDK builds of the conformance plugin
// (abi/CONFORMANCE.md): bin/testplugins/conformance.wasm from sdk-go and
// bin/testplugins/conformance-rust.wasm from sdk-rust, run by the same host
// runtime in the same process (`make bench`).
//
// Rows: module size; a property read and a write through the whole host
// path (runtime.Plugin.Read and Write); a batch read of every type; the
// cold compile; a load from the compile cache; the time to load one more
// one-instance plugin of the same module (the slope over many: its
// instantiation and init, plus the per-plugin setup); the guest's linear
// memory after instantiation and after a device is added; and the host's
// RSS growth per one-instance plugin. The last column is Go/Rust. (A
// plugin's pool starts one instance and adds more only under load, so
// one-instance plugins are what can be counted.)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
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
	{"inst", "one more plugin from the cache (1 inst.)", "ms"},
	{"mem0", "guest memory after instantiation", "KiB"},
	{"mem1", "guest memory with a device added", "KiB"},
	{"rss", "host RSS growth per 1-instance plugin", "KiB"},
}

const rssInstances = 32

// slopeInstances is the larger load of the instantiate slope.
const slopeInstances = 33

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
	fmt.Printf("(calls: testing.Benchmark on one instance; loads: median of 5; instantiate: the slope of loading 1 and %d one-instance plugins;\n"+
		" guest memory: linear memory size seen by a function listener; RSS: /proc/self/status over %d one-instance plugins)\n", slopeInstances, rssInstances)
}

func load(ctx context.Context, eng *runtime.Engine, b *build, instances int) *runtime.Plugin {
	p, err := eng.Load(ctx, runtime.Config{Name: "bench", Wasm: b.wasm, Instances: instances, KV: &conformance.MemKV{}})
	if err != nil {
		fatal(err)
	}
	return p
}

// loadMany loads k plugins of one instance each from b.
func loadMany(ctx context.Context, eng *runtime.Engine, b *build, k int) []*runtime.Plugin {
	ps := make([]*runtime.Plugin, k)
	for i := range ps {
		p, err := eng.Load(ctx, runtime.Config{Name: fmt.Sprintf("bench-%d", i), Wasm: b.wasm, Instances: 1, KV: &conformance.MemKV{}})
		if err != nil {
			fatal(err)
		}
		ps[i] = p
	}
	return ps
}

func closeAll(ctx context.Context, ps []*runtime.Plugin) {
	for _, p := range ps {
		if err := p.Close(ctx); err != nil {
			fatal(err)
		}
	}
}

func measureLoad(ctx context.Context, b *build) {
	eng := newEngine()
	defer eng.Close(ctx)
	t0 := time.Now()
	p := load(ctx, eng, b, 1)
	b.m["compile"] = ms(time.Since(t0))
	p.Close(ctx)
	// A plugin's pool starts one instance and adds more only under load,
	// so the slope loads k one-instance plugins of the same compiled
	// module: each load instantiates and initialises exactly one instance.
	timeLoad := func(k int) func() time.Duration {
		return func() time.Duration {
			t0 := time.Now()
			ps := loadMany(ctx, eng, b, k)
			d := time.Since(t0)
			closeAll(ctx, ps)
			return d
		}
	}
	// A wide slope, so that one instance's cost stands above the noise of
	// a load on a busy machine.
	one, many := median(5, timeLoad(1)), median(5, timeLoad(slopeInstances))
	b.m["load"] = ms(one)
	b.m["inst"] = ms(many-one) / (slopeInstances - 1)
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
	// Collect and return freed memory to the OS before each sample, so
	// that garbage from the compile does not count.
	debug.FreeOSMemory()
	before := rss()
	ps := loadMany(ctx, eng, b, rssInstances) // one instance each
	debug.FreeOSMemory()
	after := rss()
	b.m["rss"] = float64(after-before) / rssInstances / 1024
	closeAll(ctx, ps)
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
