package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	"sync/atomic"
	"syscall"
	"time"
)

// hostRun is one wapper-host run.
type hostRun struct {
	bin, plugins string
	n            int
	mode         string
	profile      bool   // save heap and CPU profiles
	out          string // results folder
}

// runHost starts wapper-host with r.n devices, waits until every device
// runs and has read, measures it over the window, then times a new
// device's first reading and, with r.profile, saves profiles.
func runHost(r hostRun) Result {
	res := Result{Devices: r.n, Mode: r.mode, WantPerSec: float64(2 * r.n)}
	if err := r.run(&res); err != nil {
		res.Error = err.Error()
	}
	return res
}

func (r hostRun) run(res *Result) error {
	// A short folder: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bh")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	man := filepath.Join(dir, "manifests")
	if err := os.Mkdir(man, 0o755); err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	mqttAddr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"--manifests", man, "--plugin-dir", r.plugins, "--state-dir", filepath.Join(dir, "state"),
		"--mqtt-listen", mqttAddr, "--http-listen", httpAddr, "--log-level", "warn", "--pprof"}
	var ec *edgecore
	switch r.mode {
	case modeStandalone:
		if err := writeManifests(man, r.n, true); err != nil {
			return err
		}
	case modeDMI:
		if err := writeManifests(man, 0, false); err != nil {
			return err
		}
		ecSock := filepath.Join(dir, "ec.sock")
		if ec, err = startEdgecore(ecSock, r.n); err != nil {
			return err
		}
		defer ec.stop()
		args = append(args, "--dmi", "--dmi-socket", filepath.Join(dir, "w.sock"), "--edgecore-socket", ecSock)
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	track(cmd, true)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "bench-host: wapper-host did not stop within 30 s of SIGINT; killing it")
			_ = cmd.Process.Kill()
			<-exited
		}
		track(cmd, false)
	}()
	pm := &prom{addr: httpAddr}

	// Wait until every device runs and has read once.
	start := time.Now()
	limit := startLimit(r.n)
	for {
		select {
		case <-exited:
			return errors.New("wapper-host exited during the start")
		case <-time.After(500 * time.Millisecond):
		}
		if err := pm.scrape(); err == nil && pm.running >= float64(r.n) && pm.readings >= float64(2*r.n) {
			break
		}
		if time.Since(start) > limit {
			return fmt.Errorf("not every device started within %s (%.0f of %d running)", limit, pm.running, r.n)
		}
	}
	res.StartSeconds = time.Since(start).Seconds()
	time.Sleep(*settle) // let the start settle

	if err := pm.scrape(); err != nil {
		return err
	}
	sk0 := pm.skipped
	s, err := measure(cmd.Process.Pid, func() (float64, error) {
		err := pm.scrape()
		return pm.readings, err
	})
	if err != nil {
		return err
	}
	res.CPUPercent, res.RSSMiB, res.ReadingsPerSec, res.Skipped = s.cpu, s.rss, s.rate, pm.skipped-sk0

	if r.profile {
		if err := saveProfiles(httpAddr, r.bin, r.out, r.n); err != nil {
			return fmt.Errorf("profiles: %w", err)
		}
	}

	// One more Device, created the way the mode creates devices.
	created := time.Now()
	switch r.mode {
	case modeStandalone:
		err = addManifestDevice(man, "dev-new")
	case modeDMI:
		err = ec.register("dev-new")
	}
	if err != nil {
		return fmt.Errorf("add a device: %w", err)
	}
	first, err := firstReading(httpAddr, "default", "dev-new", created)
	if err != nil {
		res.FirstReadingError = err.Error()
		return nil
	}
	res.FirstReadingMs = float64(first.Microseconds()) / 1000
	return nil
}

// startLimit is the longest start allowed for n devices.
func startLimit(n int) time.Duration {
	return max(time.Minute, *startTO*time.Duration(n)/1000)
}

// writeManifests writes the MapperPlugin and, with model, the DeviceModel
// and n Devices.
func writeManifests(dir string, n int, model bool) error {
	var b strings.Builder
	b.WriteString(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
  limits: {memoryMiB: 256, callTimeout: 5s, instances: 4}
`)
	if model {
		b.WriteString(`---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: bench-model, namespace: default}
spec:
  protocol: virtual
  properties:
    - {name: a, type: DOUBLE, accessMode: ReadOnly}
    - {name: b, type: DOUBLE, accessMode: ReadOnly}
`)
	}
	for i := range n {
		b.WriteString(manifestDevice(fmt.Sprintf("dev-%d", i)))
	}
	return os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(b.String()), 0o644)
}

func manifestDevice(name string) string {
	return fmt.Sprintf(`---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: %s, namespace: default}
spec:
  deviceModelRef: {name: bench-model}
  properties:
    - {name: a, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: virtual, configData: {kind: sine, periodMs: 10000}}}
    - {name: b, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: virtual, configData: {kind: sine, periodMs: 20000, offset: 5}}}
`, name)
}

// addManifestDevice drops one more Device file into the watched folder,
// whole at once (written beside it, then renamed in).
func addManifestDevice(dir, name string) error {
	tmp := filepath.Join(filepath.Dir(dir), name+".yaml")
	if err := os.WriteFile(tmp, []byte(manifestDevice(name)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name+".yaml"))
}

// firstReading polls the REST API until the device has a reported value,
// and returns the time from created to that reading's own time (so the
// polling interval does not count).
func firstReading(addr, ns, name string, created time.Time) (time.Duration, error) {
	url := fmt.Sprintf("http://%s/api/v1/device/%s/%s", addr, ns, name)
	deadline := time.Now().Add(*firstReadT)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		var d struct {
			Device struct {
				Twins []struct {
					ReportedTime time.Time `json:"reportedTime"`
				} `json:"twins"`
			} `json:"device"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		var first time.Time
		for _, t := range d.Device.Twins {
			if !t.ReportedTime.IsZero() && (first.IsZero() || t.ReportedTime.Before(first)) {
				first = t.ReportedTime
			}
		}
		if !first.IsZero() {
			return first.Sub(created), nil
		}
	}
	return 0, fmt.Errorf("device %s/%s had no reading within %s of its creation", ns, name, *firstReadT)
}

// prom reads the host's /metrics.
type prom struct {
	addr                       string
	readings, running, skipped float64
}

func (p *prom) scrape() error {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	p.readings, p.running, p.skipped = 0, 0, 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var into *float64
		switch {
		case metricIs(line, "wapper_readings_total"):
			into = &p.readings
		case metricIs(line, "wapper_reads_skipped_total"):
			into = &p.skipped
		case strings.HasPrefix(line, `wapper_devices{phase="Running"}`):
			into = &p.running
		default:
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return fmt.Errorf("metrics line %q: %w", line, err)
		}
		*into += v
	}
	return sc.Err()
}

func metricIs(line, name string) bool {
	return strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ")
}

type sample struct{ cpu, rss, rate float64 }

// measure samples CPU time and peak RSS of pid over the window, with count
// the readings so far.
func measure(pid int, count func() (float64, error)) (sample, error) {
	c0, err := cpuTime(pid)
	if err != nil {
		return sample{}, err
	}
	r0, err := count()
	if err != nil {
		return sample{}, err
	}
	t0 := time.Now()
	var peak float64
	for deadline := t0.Add(*window); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		if v, err := rss(pid); err == nil {
			peak = math.Max(peak, v)
		}
	}
	c1, err := cpuTime(pid)
	if err != nil {
		return sample{}, err
	}
	r1, err := count()
	if err != nil {
		return sample{}, err
	}
	el := time.Since(t0).Seconds()
	return sample{cpu: (c1 - c0) / el * 100, rss: peak, rate: (r1 - r0) / el}, nil
}

// cpuTime returns user+system seconds of a process from /proc.
func cpuTime(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (ut + st) / 100, nil // USER_HZ
}

// rss returns the resident set in MiB.
func rss(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// buildNative builds hack/bench-native into a temporary folder, which
// cleanup removes.
func buildNative(root string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "bench-native")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "bench-native")
	cmd := exec.Command("go", "build", "-o", bin, "./hack/bench-native")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build hack/bench-native: %w", err)
	}
	return bin, func() { _ = os.RemoveAll(dir) }, nil
}

// runNativeChild measures the native baseline bin with n devices.
func runNativeChild(bin string, n int) Result {
	res := Result{Devices: n, Mode: modeNative, WantPerSec: float64(2 * n)}
	if err := nativeChild(bin, n, &res); err != nil {
		res.Error = err.Error()
	}
	return res
}

func nativeChild(bin string, n int, res *Result) error {
	dir, err := os.MkdirTemp("", "bench-native")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(bin, "-devices", strconv.Itoa(n), "-dir", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	track(cmd, true)
	exited := make(chan struct{})
	var count atomic.Int64
	ready := make(chan struct{})
	go func() {
		defer close(exited)
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
		_, _ = io.Copy(io.Discard, out)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = cmd.Wait()
		track(cmd, false)
	}()
	start := time.Now()
	limit := startLimit(n)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	select {
	case <-ready:
	case <-exited:
		return errors.New("native baseline exited during the start")
	case <-ctx.Done():
		return fmt.Errorf("native baseline did not start within %s", limit)
	}
	res.StartSeconds = time.Since(start).Seconds()
	time.Sleep(*settle)
	s, err := measure(cmd.Process.Pid, func() (float64, error) { return float64(count.Load()), nil })
	if err != nil {
		return err
	}
	res.CPUPercent, res.RSSMiB, res.ReadingsPerSec = s.cpu, s.rss, s.rate
	return nil
}

// saveProfiles saves the host's heap profile (after a GC) and a CPU
// profile over one more window, each with its `go tool pprof -top`
// summary.
func saveProfiles(addr, bin, dir string, n int) error {
	heap := filepath.Join(dir, fmt.Sprintf("heap-%d.pb.gz", n))
	if err := fetch(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", addr), heap); err != nil {
		return err
	}
	if err := pprofTop(bin, heap, filepath.Join(dir, fmt.Sprintf("heap-%d-top.txt", n)), "-sample_index=inuse_space"); err != nil {
		return err
	}
	cpu := filepath.Join(dir, fmt.Sprintf("cpu-%d.pb.gz", n))
	if err := fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(window.Seconds())), cpu); err != nil {
		return err
	}
	return pprofTop(bin, cpu, filepath.Join(dir, fmt.Sprintf("cpu-%d-top.txt", n)))
}

func fetch(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("save %s: %w", file, err)
	}
	return f.Close()
}

// pprofTop writes `go tool pprof -top` of a profile to out.
func pprofTop(bin, profile, out string, flags ...string) error {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=40"}, flags...)
	cmd := exec.Command("go", append(args, bin, profile)...)
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go tool pprof -top %s: %w", profile, err)
	}
	return os.WriteFile(out, b, 0o644)
}
