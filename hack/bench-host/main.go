// Command bench-host measures wapper-host with many virtual devices against
// a native Go program doing the same observable work, in the same run
// (`make bench-host`, part of `make bench`).
//
// For each device count (by default 1,000, 10,000 and 50,000) it runs:
//
//   - standalone: the real bin/wapper-host on generated manifests, as an
//     operator would configure it for that many devices (the MapperPlugin
//     has limits.instances: 4). Every device has two simulated sine
//     properties read at a 1 s collectCycle and reported every second:
//     twin/update and twin/update/document on the embedded MQTT broker,
//     state/update every 10 s, and the values saved to bbolt every 2 s
//     (the host's defaults).
//   - dmi: the same host and devices inside KubeEdge: wapper-host with --dmi
//     registers with a stand-in edgecore (host/dmi/dmitest, KubeEdge's
//     generated DMI stubs) that holds the devices and hands them over in
//     its MapperRegister answer, as edgecore does when a mapper starts;
//     twins go to the stand-in over DMI (at the host's default
//     --dmi-report-rate) besides the embedded broker.
//   - native: hack/bench-native, built by this program, doing the same
//     observable work in plain Go: the same readings, the same MQTT
//     messages on the same topics to an embedded mochi-mqtt broker, the
//     same bbolt saves at the same interval.
//
// For each run it prints CPU %, RSS, readings per second (against the 2N
// a second the devices ask for), CPU µs per reading, reads skipped because
// the plugin's instances stayed busy, the time until every device runs
// and has read, and the time from one more Device being created (a file
// dropped into the watched manifests folder, or edgecore's RegisterDevice
// call) to its first reading (the reading's own time, from the REST API).
// The host rows are also given as ratios to native. At the end it checks
// issue 14's goals and prints PASS or FAIL for each: at 10,000 devices
// RSS and CPU per reading within 2x of native with no reads skipped, and at
// 50,000 devices no reads skipped.
//
// At -profile-devices (10,000) it saves the host's heap profile and a CPU
// profile over an extra window, with `go tool pprof -top` summaries, in
// the results folder (-out, default bench-results/<date>/), beside
// results.json, which hack/benchdoc turns into the tables of
// docs/performance.md.
//
// Every wait is bounded (a start by -start-timeout per 1,000 devices, a new
// device's first reading by -first-reading-timeout, and no run starts
// after -timeout), so it ends by itself; a run that fails is reported as
// failed and the others still run. A host that starts its devices
// quickly keeps the default counts and modes within make bench's budget
// of about 20 minutes on two cores; a slow one makes each failing start
// wait its whole bound, and -timeout then drops the runs left.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"wapper.dev/wapper/hack/benchresult"
	"wapper.dev/wapper/internal/testenv"
)

var (
	counts     = flag.String("devices", "1000,10000,50000", "device counts to run")
	modes      = flag.String("modes", "standalone,dmi", "host modes to run beside native: standalone, dmi")
	window     = flag.Duration("window", 10*time.Second, "measurement window")
	settle     = flag.Duration("settle", 10*time.Second, "time each program runs after its start before the window opens (start-up work left over, such as the compile's garbage and the first state save, is not a per-reading cost)")
	profileN   = flag.Int("profile-devices", 10000, "device count at which to save the host's heap and CPU profiles (0: none)")
	outDir     = flag.String("out", "", "results folder (default bench-results/<date> at the repository root)")
	startTO    = flag.Duration("start-timeout", 15*time.Second, "longest start allowed per 1,000 devices (at least a minute in all)")
	timeout    = flag.Duration("timeout", 30*time.Minute, "no run starts after this time; the runs not started are reported as not run")
	firstReadT = flag.Duration("first-reading-timeout", 2*time.Minute, "longest wait for a new device's first reading")
)

func main() {
	flag.Parse()
	// Runs that would start after -timeout are reported as not run; a
	// run already going is bounded by its own waits, and this is the
	// backstop should one of them hang.
	deadline := time.Now().Add(*timeout)
	time.AfterFunc(*timeout+10*time.Minute, func() { fail(fmt.Sprintf("run took 10 minutes longer than -timeout %s", *timeout)) })
	root := testenv.Root()
	bin := filepath.Join(root, "bin/wapper-host")
	plugins := filepath.Join(root, "bin/plugins")
	for _, f := range []string{bin, filepath.Join(plugins, "virtual.wasm")} {
		if _, err := os.Stat(f); err != nil {
			fail(f + " missing: run make build plugins")
		}
	}
	nativeBin, cleanup, err := buildNative(root)
	if err != nil {
		fail(err.Error())
	}
	defer cleanup()
	var ns []int
	for s := range strings.SplitSeq(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fail("bad -devices " + s)
		}
		ns = append(ns, n)
	}
	var ms []string
	for m := range strings.SplitSeq(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case modeStandalone, modeDMI:
			ms = append(ms, m)
		case "":
		default:
			fail("bad -modes " + m)
		}
	}
	started := time.Now()
	out := *outDir
	if out == "" {
		out = filepath.Join(root, "bench-results", started.Format("2006-01-02T150405"))
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		fail(err.Error())
	}
	rep := &Report{Date: started.UTC().Format(time.RFC3339), Machine: machine(), Window: window.String(), Settle: settle.String()}

	fmt.Printf("\nwapper-host with N virtual devices (2 sine properties each, collectCycle and reportCycle 1 s) against native Go doing the same work; window %s; %s\n",
		*window, rep.Machine)
	fmt.Printf("results in %s\n", out)
	printHeader()
	for _, n := range ns {
		late := func(mode string) (Result, bool) {
			if time.Now().Before(deadline) {
				return Result{}, false
			}
			return Result{Devices: n, Mode: mode, WantPerSec: float64(2 * n), Error: fmt.Sprintf("not run: -timeout %s reached", *timeout)}, true
		}
		var hosts []Result
		for _, m := range ms {
			r, skip := late(m)
			if !skip {
				r = runHost(hostRun{bin: bin, plugins: plugins, n: n, mode: m, profile: n == *profileN, out: out})
			}
			printResult(r)
			hosts = append(hosts, r)
		}
		nat, skip := late(modeNative)
		if !skip {
			nat = runNativeChild(nativeBin, n)
		}
		printResult(nat)
		for _, h := range hosts {
			printRatio(h, nat)
		}
		rep.Results = append(rep.Results, hosts...)
		rep.Results = append(rep.Results, nat)
		rep.Profiles = append(rep.Profiles, profilesIn(out, n)...)
	}
	rep.Goals = goals(rep.Results)
	fmt.Println()
	for _, g := range rep.Goals {
		fmt.Printf("goal: %-70s %s  (%s)\n", g.Name, g.Verdict, g.Measured)
	}
	rep.Seconds = time.Since(started).Seconds()
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fail(err.Error())
	}
	file := filepath.Join(out, benchresult.File)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		fail(err.Error())
	}
	fmt.Printf("saved %s (docs: go run ./hack/benchdoc -results %s)\n", file, out)
}

// Run modes.
const (
	modeStandalone = benchresult.ModeStandalone
	modeDMI        = benchresult.ModeDMI
	modeNative     = benchresult.ModeNative
)

// The results.json types.
type (
	Report  = benchresult.Report
	Machine = benchresult.Machine
	Result  = benchresult.Result
	Profile = benchresult.Profile
	Goal    = benchresult.Goal
)

func machine() Machine {
	m := Machine{CPUs: goruntime.NumCPU(), GoVersion: goruntime.Version(), OS: goruntime.GOOS + "/" + goruntime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func profilesIn(dir string, n int) []Profile {
	var ps []Profile
	for _, kind := range []string{"heap", "cpu"} {
		f := fmt.Sprintf("%s-%d.pb.gz", kind, n)
		top := fmt.Sprintf("%s-%d-top.txt", kind, n)
		if _, err := os.Stat(filepath.Join(dir, top)); err == nil {
			ps = append(ps, Profile{Devices: n, Kind: kind, File: f, Top: top})
		}
	}
	return ps
}

const rowFormat = "%-7s %-17s %8s %9s %11s %8s %11s %8s %8s %10s\n"

func printHeader() {
	fmt.Printf(rowFormat, "devices", "run", "CPU %", "RSS MiB", "readings/s", "of 2N", "CPU µs/read", "skipped", "start s", "1st read")
}

// printResult prints one run as a row.
func printResult(r Result) {
	if r.Error != "" {
		fmt.Printf("%-7d %-17s FAILED: %s\n", r.Devices, r.Mode, r.Error)
		if r.ReadingsPerSec == 0 {
			return
		}
	}
	first := "-"
	switch {
	case r.FirstReadingMs > 0:
		first = fmt.Sprintf("%.0f ms", r.FirstReadingMs)
	case r.FirstReadingError != "":
		first = "none"
		defer fmt.Printf("%-7d %-17s first reading: %s\n", r.Devices, r.Mode, r.FirstReadingError)
	}
	fmt.Printf(rowFormat, strconv.Itoa(r.Devices), r.Mode, f1(r.CPUPercent), f1(r.RSSMiB), f0(r.ReadingsPerSec),
		fmt.Sprintf("%.1f%%", 100*r.ReadingsPerSec/r.WantPerSec), f2(r.CPUPerReading()), f0(r.Skipped), f1(r.StartSeconds), first)
}

func printRatio(h, nat Result) {
	if h.Error != "" || nat.Error != "" || nat.CPUPercent == 0 {
		return
	}
	fmt.Printf(rowFormat, strconv.Itoa(h.Devices), h.Mode+"/native", x(h.CPUPercent/nat.CPUPercent), x(h.RSSMiB/nat.RSSMiB),
		x(h.ReadingsPerSec/nat.ReadingsPerSec), "", x(h.CPUPerReading()/nat.CPUPerReading()), "", "", "")
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func x(v float64) string  { return strconv.FormatFloat(v, 'f', 2, 64) + "x" }

// goalRatio is the ratio to native that issue 14 allows at goalDevices.
const (
	goalDevices = 10000
	goalLarge   = 50000
	goalRatio   = 2.0
)

// goals checks the standalone results against issue 14's goals.
func goals(rs []Result) []Goal {
	find := func(n int, mode string) (Result, bool) {
		for _, r := range rs {
			if r.Devices == n && r.Mode == mode {
				return r, true
			}
		}
		return Result{}, false
	}
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	var gs []Goal
	h, okH := find(goalDevices, modeStandalone)
	nat, okN := find(goalDevices, modeNative)
	name := fmt.Sprintf("%d devices: RSS within %.0fx of native, no reads skipped", goalDevices, goalRatio)
	name2 := fmt.Sprintf("%d devices: CPU per reading within %.0fx of native, no reads skipped", goalDevices, goalRatio)
	switch {
	case !okH || !okN:
		why := "-devices lacks " + strconv.Itoa(goalDevices)
		gs = append(gs, newGoal(name, "NOT RUN", why), newGoal(name2, "NOT RUN", why))
	case h.Error != "" || nat.Error != "":
		why := strings.TrimSpace(h.Error + " " + nat.Error)
		gs = append(gs, newGoal(name, "FAIL", why), newGoal(name2, "FAIL", why))
	default:
		rss, cpu := h.RSSMiB/nat.RSSMiB, h.CPUPerReading()/nat.CPUPerReading()
		gs = append(gs,
			newGoal(name, verdict(rss <= goalRatio && h.Skipped == 0), fmt.Sprintf("%.2fx, %.0f skipped", rss, h.Skipped)),
			newGoal(name2, verdict(cpu <= goalRatio && h.Skipped == 0), fmt.Sprintf("%.2fx, %.0f skipped", cpu, h.Skipped)))
	}
	big, ok := find(goalLarge, modeStandalone)
	name = fmt.Sprintf("%d devices: runs with no reads skipped", goalLarge)
	switch {
	case !ok:
		gs = append(gs, newGoal(name, "NOT RUN", "-devices lacks "+strconv.Itoa(goalLarge)))
	case big.Error != "":
		gs = append(gs, newGoal(name, "FAIL", big.Error))
	default:
		gs = append(gs, newGoal(name, verdict(big.Skipped == 0),
			fmt.Sprintf("%.0f skipped, %.1f%% of the readings asked for", big.Skipped, 100*big.ReadingsPerSec/big.WantPerSec)))
	}
	return gs
}

func newGoal(name, verdict, measured string) Goal {
	return Goal{Name: name, Verdict: verdict, Measured: measured}
}

var (
	childMu  sync.Mutex // guards children
	children = map[*exec.Cmd]bool{}
)

// track registers a started child process, so that fail kills it.
func track(c *exec.Cmd, on bool) {
	childMu.Lock()
	defer childMu.Unlock()
	if on {
		children[c] = true
	} else {
		delete(children, c)
	}
}

// fail kills the child processes and exits.
func fail(msg string) {
	childMu.Lock()
	for c := range children {
		_ = c.Process.Kill()
	}
	childMu.Unlock()
	fmt.Fprintln(os.Stderr, "bench-host:", msg)
	os.Exit(1)
}
