// Command scaledriver loads the virtual plugin into host/runtime and drives
// it as host/devices does at scale: it adds N devices concurrently (two
// sine properties each), then reads every device's two properties once a
// second with ReadBatch, a read waiting at most -wait for an instance. It
// prints how long the adds took, the slowest device_add, readings per
// second, reads skipped, the host's CPU time per reading and its RSS, so
// the runtime's share of the host's cost can be measured without the rest
// of wapper-host.
//
//	go run ./host/runtime/internal/scaledriver -devices 10000 -window 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

var (
	devices   = flag.Int("devices", 10000, "devices to add")
	instances = flag.Int("instances", 4, "limits.instances")
	window    = flag.Duration("window", 10*time.Second, "measurement window")
	wait      = flag.Duration("wait", time.Second, "longest wait for an instance before a read is skipped")
	adders    = flag.Int("adders", 0, "devices added at once (0: all)")
	cpuProf   = flag.String("cpuprofile", "", "write a CPU profile of the window to this file")
	addProf   = flag.String("addprofile", "", "write a CPU profile of the adds to this file")
	wasmPath  = flag.String("wasm", "", "plugin module (default bin/plugins/virtual.wasm)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scaledriver:", err)
		os.Exit(1)
	}
}

func run() error {
	path := *wasmPath
	if path == "" {
		path = filepath.Join(testenv.Root(), "bin/plugins/virtual.wasm")
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read plugin: %w (run make plugins)", err)
	}
	cache, err := os.MkdirTemp("", "scaledriver")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	met := runtime.NewMetrics(nil)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: cache, Logger: log, Metrics: met})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer eng.Close(ctx)
	fmt.Printf("RSS before load: %d MiB\n", rssMiB())
	t0 := time.Now()
	p, err := eng.Load(ctx, runtime.Config{Name: "virtual", Wasm: wasm, Instances: *instances})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	fmt.Printf("load %s; idle RSS %d MiB; guest memory %d MiB\n", time.Since(t0).Round(time.Millisecond), rssMiB(), p.MemoryBytes()>>20)

	props := []abi.Property{
		{Handle: 0, Name: "a", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: json.RawMessage(`{"kind":"sine","periodMs":10000}`)},
		{Handle: 1, Name: "b", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: json.RawMessage(`{"kind":"sine","periodMs":20000,"offset":5}`)},
	}
	n := *devices
	par := *adders
	if par <= 0 {
		par = n
	}
	sem := make(chan struct{}, par)
	var slowest atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	t0 = time.Now()
	cpu0 := cpuTime()
	if *addProf != "" {
		f, err := os.Create(*addProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s := time.Now()
			d := abi.Device{ID: uint32(i + 1), Namespace: "default", Name: fmt.Sprintf("virtual-%05d", i), Model: "virtual-model", Protocol: "virtual", Properties: props}
			if err := p.AddDevice(ctx, d); err != nil {
				if failed.Add(1) == 1 {
					fmt.Fprintln(os.Stderr, "add:", err)
				}
			}
			el := int64(time.Since(s))
			for {
				old := slowest.Load()
				if el <= old || slowest.CompareAndSwap(old, el) {
					break
				}
			}
		}()
	}
	wg.Wait()
	if *addProf != "" {
		pprof.StopCPUProfile()
	}
	fmt.Printf("added %d devices in %s, %.0f µs CPU each (%d failed; slowest add %s); RSS %d MiB; guest memory %d MiB\n",
		n, time.Since(t0).Round(time.Millisecond), float64((cpuTime()-cpu0).Microseconds())/float64(n), failed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), rssMiB(), p.MemoryBytes()>>20)
	printCalls(met)

	var readings, skipped, errs atomic.Int64
	stop := make(chan struct{})
	handles := []uint32{0, 1}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the devices over the cycle, as their start times do.
			phase := time.Duration(i) * time.Second / time.Duration(n)
			t := time.NewTimer(phase)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				t.Reset(time.Second)
				rctx, cancel := context.WithTimeout(ctx, *wait)
				entries, err := p.ReadBatch(rctx, uint32(i+1), handles)
				busy := err != nil && rctx.Err() != nil
				cancel()
				switch {
				case busy:
					skipped.Add(1)
				case err != nil:
					errs.Add(1)
				default:
					for _, e := range entries {
						if e.Err == nil {
							readings.Add(1)
						} else {
							errs.Add(1)
						}
					}
				}
			}
		}()
	}
	time.Sleep(3 * time.Second) // let the cycle settle
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
	}
	r0, s0, c0 := readings.Load(), skipped.Load(), cpuTime()
	w0 := time.Now()
	time.Sleep(*window)
	r1, s1, c1 := readings.Load(), skipped.Load(), cpuTime()
	el := time.Since(w0)
	if *cpuProf != "" {
		pprof.StopCPUProfile()
	}
	close(stop)
	wg.Wait()
	rd := float64(r1 - r0)
	fmt.Printf("window %s: %.0f readings/s of %d expected, %d reads skipped, %d errors, CPU %.1f%%, %.1f µs CPU/reading, RSS %d MiB, guest memory %d MiB, restarts %d\n",
		el.Round(time.Millisecond), rd/el.Seconds(), 2*n, s1-s0, errs.Load(), 100*(c1-c0).Seconds()/el.Seconds(),
		float64((c1-c0).Microseconds())/max(rd, 1), rssMiB(), p.MemoryBytes()>>20, p.Restarts())
	printCalls(met)
	return nil
}

// printCalls prints the calls made into the plugin so far, by export.
func printCalls(m *runtime.Metrics) {
	ch := make(chan prometheus.Metric, 64)
	go func() { m.Calls.Collect(ch); close(ch) }()
	var parts []string
	for c := range ch {
		var pb dto.Metric
		if err := c.Write(&pb); err != nil || pb.Counter.GetValue() == 0 {
			continue
		}
		for _, l := range pb.Label {
			if l.GetName() == "export" {
				parts = append(parts, fmt.Sprintf("%s=%.0f", l.GetValue(), pb.Counter.GetValue()))
			}
		}
	}
	fmt.Println("calls:", strings.Join(parts, " "))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMiB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb >> 10
		}
	}
	return -1
}
