// Command bench measures the plugin runtime beside the same work done
// natively in Go, in the same run, and prints the ratios (`make bench`).
//
// Rows: a trivial export call, a property read through the whole host read
// path, a guest→host call, plugin load (cold and from the compile cache,
// against starting a native mapper process), and memory per one-instance
// Go plugin (against one native process).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

var sink any

func main() {
	ctx := context.Background()
	root := testenv.Root()
	benchWasm := must(os.ReadFile(filepath.Join(root, "bin/testplugins/bench.wasm")))
	virtualWasm := must(os.ReadFile(filepath.Join(root, "bin/plugins/virtual.wasm")))
	cache := must(os.MkdirTemp("", "wapper-bench"))
	defer os.RemoveAll(cache)
	quiet := slog.New(slog.DiscardHandler)

	fmt.Println("wapper runtime benchmarks (wasm vs native Go, same run)")
	fmt.Printf("%-44s %14s %14s %10s\n", "operation", "wasm", "native", "ratio")

	// Load: cold compile, then from the compile cache.
	cold := timeLoad(ctx, cache, quiet, virtualWasm)
	warm := timeLoad(ctx, cache, quiet, virtualWasm)
	idle := buildIdle(root)
	procStart := median(9, func() time.Duration {
		t0 := time.Now()
		must0(exec.Command(idle, "-exit").Run())
		return time.Since(t0)
	})
	row("plugin load, cold compile (virtual, 3.9 MB)", cold, procStart)
	row("plugin load, from compile cache", warm, procStart)

	eng := must(runtime.NewEngine(runtime.EngineOptions{CacheDir: cache, Logger: quiet}))
	p := must(eng.Load(ctx, runtime.Config{Name: "bench", Wasm: benchWasm, Instances: 1}))
	dev := abi.Device{ID: 1, Name: "b", Properties: []abi.Property{
		{Handle: 0, Name: "noop", Type: "INT", AccessMode: "ReadOnly"},
		{Handle: 1, Name: "hostcalls", Type: "INT", AccessMode: "ReadOnly", Visitor: json.RawMessage(`{"n":1000}`)},
	}}
	must0(p.AddDevice(ctx, dev))

	// Trivial export call: the ABI marker through the pool and deadline,
	// against a Go call.
	wasmCall := nsPerOp(func(b *testing.B) {
		for range b.N {
			must0(p.Ping(ctx))
		}
	})
	nativeCall := nsPerOp(func(b *testing.B) {
		for range b.N {
			sink = nativeMarker()
		}
	})
	rowNs("trivial export call", wasmCall, nativeCall)

	// A property read through the whole host path (device lookup, device
	// lock, pool slot, deadline, call, result decoding and conversion).
	wasmRead := nsPerOp(func(b *testing.B) {
		for range b.N {
			sink = must(p.Read(ctx, 1, 0))
		}
	})
	nd := newNativeDevices()
	nativeRead := nsPerOp(func(b *testing.B) {
		for range b.N {
			sink = must(nd.read(ctx, 1, 0))
		}
	})
	rowNs("property read, whole host path", wasmRead, nativeRead)

	// Guest→host call: 1000 clock_ns calls inside one read, minus a noop read.
	hostCalls := nsPerOp(func(b *testing.B) {
		for range b.N {
			sink = must(p.Read(ctx, 1, 1))
		}
	})
	epoch := time.Now()
	nativeClock := nsPerOp(func(b *testing.B) {
		for range b.N {
			sink = time.Since(epoch).Nanoseconds()
		}
	})
	rowNs("guest→host call (clock_ns)", (hostCalls-wasmRead)/1000, nativeClock)
	must0(p.Close(ctx))

	// Memory per Go plugin instance: guest linear memory after init, and
	// the host's RSS growth per instance, against one native process.
	// A plugin's pool starts one instance and adds more only under load,
	// so this loads n one-instance plugins of the same module. Both RSS
	// samples follow a collection that returns freed memory to the OS, so
	// that garbage from the rows above does not count.
	const n = 8
	debug.FreeOSMemory()
	before := rss(os.Getpid())
	pvs := make([]*runtime.Plugin, n)
	var guest int64
	for i := range pvs {
		pvs[i] = must(eng.Load(ctx, runtime.Config{Name: fmt.Sprintf("mem-%d", i), Wasm: virtualWasm, Instances: 1}))
		guest += pvs[i].MemoryBytes()
	}
	guest /= n
	debug.FreeOSMemory()
	after := rss(os.Getpid())
	cmd := exec.Command(idle)
	stdin := must(cmd.StdinPipe())
	must0(cmd.Start())
	time.Sleep(200 * time.Millisecond)
	native := rss(cmd.Process.Pid)
	stdin.Close()
	cmd.Wait()
	fmt.Printf("%-44s %11.1f MiB %11.1f MiB %9.2fx\n", "memory per 1-instance Go plugin (guest)", mib(guest), mib(native), float64(guest)/float64(native))
	fmt.Printf("%-44s %11.1f MiB %11.1f MiB %9.2fx\n", "memory per 1-instance Go plugin (host RSS)", mib((after-before)/n), mib(native), float64((after-before)/n)/float64(native))
	for _, pv := range pvs {
		must0(pv.Close(ctx))
	}
	must0(eng.Close(ctx))
	fmt.Println("native baselines: a Go function call; the same read behind a map and a mutex;")
	fmt.Println("time.Since; start-and-exit of a native Go process; RSS of an idle native Go process.")
}

func timeLoad(ctx context.Context, cache string, log *slog.Logger, wasm []byte) time.Duration {
	eng := must(runtime.NewEngine(runtime.EngineOptions{CacheDir: cache, Logger: log}))
	defer eng.Close(ctx)
	t0 := time.Now()
	p := must(eng.Load(ctx, runtime.Config{Name: "load", Wasm: wasm, Instances: 1}))
	d := time.Since(t0)
	p.Close(ctx)
	return d
}

func buildIdle(root string) string {
	out := filepath.Join(root, "bin", "bench-idle")
	cmd := exec.Command("go", "build", "-o", out, "./hack/bench/idle")
	cmd.Dir, cmd.Stderr = root, os.Stderr
	must0(cmd.Run())
	return out
}

//go:noinline
func nativeMarker() uint32 { return abi.Minor }

// nativeDevices is the baseline read path: the same device lookup, lock
// and value encoding, with the read done by a Go function.
type nativeDevices struct {
	mu   sync.RWMutex // guards devs
	devs map[uint32]*nativeDevice
}

type nativeDevice struct {
	mu    sync.Mutex // serialises calls for the device
	props []abi.Property
}

func newNativeDevices() *nativeDevices {
	return &nativeDevices{devs: map[uint32]*nativeDevice{1: {props: []abi.Property{{Handle: 0, Name: "noop", Type: "INT"}}}}}
}

func (n *nativeDevices) read(ctx context.Context, dev, prop uint32) (abi.Value, error) {
	n.mu.RLock()
	d := n.devs[dev]
	n.mu.RUnlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return abi.DecodeValue(abi.Int(0).Encode())
}

func nsPerOp(f func(b *testing.B)) float64 {
	r := testing.Benchmark(f)
	return float64(r.T.Nanoseconds()) / float64(r.N)
}

func rowNs(name string, wasm, native float64) {
	fmt.Printf("%-44s %11.0f ns %11.1f ns %9.1fx\n", name, wasm, native, wasm/native)
}

func row(name string, wasm, native time.Duration) {
	fmt.Printf("%-44s %11.1f ms %11.1f ms %9.1fx\n", name, ms(wasm), ms(native), float64(wasm)/float64(native))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func median(n int, f func() time.Duration) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = f()
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[n/2]
}

// rss returns a process's resident set size in bytes.
func rss(pid int) int64 {
	b := must(os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func must[T any](v T, err error) T {
	must0(err)
	return v
}

func must0(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
