// Command bench-host measures wapper-host with many virtual devices against
// the same work driven natively in Go, in the same run (`make bench`).
//
// For each device count (1,000 then 10,000) it starts the real
// bin/wapper-host on generated manifests, as an operator would configure
// it for that many devices (the MapperPlugin has limits.instances: 4):
// every device has two simulated sine properties read at a 1 s
// collectCycle and reported (twin/update on the embedded broker) every
// second. It waits until every device runs and has read (reporting how
// long the start took), then samples CPU time, RSS and readings per second
// over a window, and counts the reads skipped because the plugin's
// instances stayed busy. The baseline is this program re-run as a child
// process (-native N): N goroutines computing the same sine values on a
// 1 s ticker, keeping the latest values and marshalling the same KubeEdge
// twin-update JSON once a second. Ratios are host / native.
//
// Every wait is bounded (the start by -start-timeout per 1,000 devices,
// the whole run by -timeout), so it ends by itself, with an error when
// the host is too slow.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

var (
	native  = flag.Int("native", 0, "internal: run the native baseline with this many devices")
	counts  = flag.String("devices", "1000,10000", "device counts to run")
	window  = flag.Duration("window", 10*time.Second, "measurement window")
	cpuProf = flag.String("cpuprofile", "", "save a CPU profile of wapper-host over each window to FILE.N (N devices)")
	startTO = flag.Duration("start-timeout", time.Minute, "longest start allowed per 1,000 devices")
	timeout = flag.Duration("timeout", 30*time.Minute, "longest whole run")
)

func main() {
	flag.Parse()
	if *native > 0 {
		runNative(*native)
		return
	}
	time.AfterFunc(*timeout, func() { fail(fmt.Sprintf("run took longer than -timeout %s", *timeout)) })
	root := testenv.Root()
	host := filepath.Join(root, "bin/wapper-host")
	plugins := filepath.Join(root, "bin/plugins")
	if _, err := os.Stat(host); err != nil {
		fail("bin/wapper-host missing: run make build plugins")
	}
	fmt.Printf("\nwapper-host with N virtual devices (2 properties each, collectCycle and reportCycle 1 s), against native Go doing the same work; window %s\n", *window)
	fmt.Printf("%-7s %-7s %10s %10s %12s %12s\n", "devices", "run", "CPU %", "RSS MiB", "readings/s", "CPU µs/read")
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fail("bad -devices " + s)
		}
		h, started, skipped := measureHost(host, plugins, n)
		nat := measureNative(n)
		h.print(n, "wasm")
		nat.print(n, "native")
		fmt.Printf("%-7d %-7s %10.2fx %10.2fx %12.2fx %12.2fx\n", n, "ratio", h.cpu/nat.cpu, h.rss/nat.rss, h.rate/nat.rate, h.perRead()/nat.perRead())
		fmt.Printf("%-7d started every device in %s; %.0f reads skipped in the window (instances busy)\n", n, started.Round(100*time.Millisecond), skipped)
	}
}

type sample struct{ cpu, rss, rate float64 }

func (s sample) perRead() float64 { return s.cpu / 100 * 1e6 / s.rate }

func (s sample) print(n int, run string) {
	fmt.Printf("%-7d %-7s %10.1f %10.1f %12.0f %12.2f\n", n, run, s.cpu, s.rss, s.rate, s.perRead())
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-host:", msg)
	os.Exit(1)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err.Error())
	}
	defer l.Close()
	return l.Addr().String()
}

func writeManifests(dir string, n int) {
	var b strings.Builder
	b.WriteString(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
  limits: {memoryMiB: 256, callTimeout: 5s, instances: 4}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: bench-model, namespace: default}
spec:
  protocol: virtual
  properties:
    - {name: a, type: DOUBLE, accessMode: ReadOnly}
    - {name: b, type: DOUBLE, accessMode: ReadOnly}
`)
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: dev-%d, namespace: default}
spec:
  deviceModelRef: {name: bench-model}
  properties:
    - {name: a, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: virtual, configData: {kind: sine, periodMs: 10000}}}
    - {name: b, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: virtual, configData: {kind: sine, periodMs: 20000, offset: 5}}}
`, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(b.String()), 0o644); err != nil {
		fail(err.Error())
	}
}

func measureHost(bin, plugins string, n int) (s sample, started time.Duration, skipped float64) {
	dir, _ := os.MkdirTemp("", "bench-host")
	defer os.RemoveAll(dir)
	man := filepath.Join(dir, "manifests")
	os.Mkdir(man, 0o755)
	writeManifests(man, n)
	httpAddr := freeAddr()
	cmd := exec.Command(bin, "--manifests", man, "--plugin-dir", plugins, "--state-dir", filepath.Join(dir, "state"),
		"--mqtt-listen", freeAddr(), "--http-listen", httpAddr, "--log-level", "warn", "--pprof")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "bench-host: wapper-host did not stop within 30 s of SIGINT; killing it")
			cmd.Process.Kill()
			<-exited
		}
	}()
	// Wait until every device runs and has read once.
	start := time.Now()
	limit := *startTO * time.Duration(max(1, n/1000))
	for {
		select {
		case <-exited:
			fail("wapper-host exited during the start")
		case <-time.After(500 * time.Millisecond):
		}
		if running(httpAddr) >= float64(n) && readings(httpAddr) >= float64(2*n) {
			break
		}
		if time.Since(start) > limit {
			fail(fmt.Sprintf("host did not start %d devices within %s (%.0f running)", n, limit, running(httpAddr)))
		}
	}
	started = time.Since(start)
	time.Sleep(2 * time.Second) // let the startup settle
	if *cpuProf != "" {
		go saveProfile(httpAddr, fmt.Sprintf("%s.%d", *cpuProf, n))
	}
	sk0 := metric(httpAddr, "wapper_reads_skipped_total")
	s = measure(cmd.Process.Pid, func() float64 { return readings(httpAddr) })
	return s, started, metric(httpAddr, "wapper_reads_skipped_total") - sk0
}

func metric(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func readings(addr string) float64 { return metric(addr, "wapper_readings_total") }
func running(addr string) float64  { return metric(addr, `wapper_devices{phase="Running"}`) }

// measure samples CPU time and RSS of pid over the window, with count the
// readings so far.
func measure(pid int, count func() float64) sample {
	c0, r0, t0 := cpuTime(pid), count(), time.Now()
	var peak float64
	deadline := t0.Add(*window)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		peak = math.Max(peak, rss(pid))
	}
	c1, r1, t1 := cpuTime(pid), count(), time.Now()
	el := t1.Sub(t0).Seconds()
	return sample{cpu: (c1 - c0) / el * 100, rss: peak, rate: (r1 - r0) / el}
}

// cpuTime returns user+system seconds of a process from /proc.
func cpuTime(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// rss returns the resident set in MiB.
func rss(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func measureNative(n int) sample {
	cmd := exec.Command(os.Args[0], "-native", strconv.Itoa(n))
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail(err.Error())
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var count atomic.Int64
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		first := true
		for sc.Scan() {
			v, _ := strconv.ParseInt(sc.Text(), 10, 64)
			count.Store(v)
			if first && v >= int64(2*n) {
				first = false
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(time.Minute):
		fail("native baseline did not start")
	}
	time.Sleep(2 * time.Second)
	return measure(cmd.Process.Pid, func() float64 { return float64(count.Load()) })
}

// runNative is the baseline: the virtual plugin's sine reads and the
// host's twin reports, in plain Go.
func runNative(n int) {
	type twin struct {
		Actual   struct{ Value string } `json:"actual"`
		Metadata struct{ Type string }  `json:"metadata"`
	}
	var total atomic.Int64
	var mu sync.Mutex
	latest := make(map[string]map[string]string, n)
	for i := range n {
		name := fmt.Sprintf("default/dev-%d", i)
		mu.Lock()
		latest[name] = map[string]string{}
		mu.Unlock()
		go func() {
			time.Sleep(time.Duration(i%1000) * time.Millisecond)
			t := time.NewTicker(time.Second)
			for range t.C {
				now := float64(time.Now().UnixMilli())
				a := math.Sin(2 * math.Pi * now / 10000)
				b := math.Sin(2*math.Pi*now/20000) + 5
				as, bs := strconv.FormatFloat(a, 'g', -1, 64), strconv.FormatFloat(b, 'g', -1, 64)
				mu.Lock()
				latest[name]["a"], latest[name]["b"] = as, bs
				mu.Unlock()
				total.Add(2)
				msg := map[string]*twin{"a": {}, "b": {}}
				msg["a"].Actual.Value, msg["b"].Actual.Value = as, bs
				json.NewEncoder(io.Discard).Encode(map[string]any{"event_id": name, "timestamp": int64(now), "twin": msg})
			}
		}()
	}
	for {
		time.Sleep(200 * time.Millisecond)
		fmt.Println(total.Load())
	}
}

// saveProfile saves a CPU profile of the host over the window.
func saveProfile(addr, file string) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(window.Seconds())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-host: profile:", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench-host: profile:", err)
	}
}
