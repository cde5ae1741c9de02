package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

// The hostile-plugin suite (issue 11). Each module of abi/testdata/hostile
// (built by mk/hostile.mk to bin/testplugins/hostile) is a valid plugin by
// the ABI that attacks the host one way. Each case runs one of them beside
// the healthy virtual plugin in its own real bin/wapper-host, for
// hostileWatch, and checks that:
//
//   - the host stays up;
//   - GET /api/v1/ping answers every time, each within hostilePingMax;
//   - the healthy device's readings keep advancing (never stale for
//     hostileStaleMax);
//   - the host's output (stderr and stdout, from start to exit) stays under
//     hostileLogMax bytes;
//   - the host's peak RSS stays under hostileRSSMax: a plugin limited to
//     64 MiB of linear memory must not cost the host a gigabyte;
//   - SIGTERM stops the host within hostileStopMax, with exit code 0;
//   - the table rules of SPEC.md §9: a table.grow past the cap (a table
//     with no maximum keeps its initial size; maxima are lowered to 2^20)
//     answers -1 in the guest, and a module whose table starts above 2^20
//     elements is refused, the hostile device's status naming the table.
//
// The bounds are generous on purpose: they tell a host that survives from
// one that does not, not a fast machine from a slow one. Every case logs
// what it measured, and the host's log lines that count.
//
// WAPPER_HOSTILE_HOST names another wapper-host binary to attack (one
// built from an older commit, say) instead of bin/wapper-host.

const (
	hostileWatch    = 10 * time.Second
	hostileStartMax = 30 * time.Second // for the healthy device's first reading
	hostilePingMax  = 5 * time.Second
	hostileStaleMax = 5 * time.Second
	hostileLogMax   = 5 << 20
	hostileRSSMax   = 1 << 30
	hostileStopMax  = 30 * time.Second
	// hostileAddressSpace bounds the host's virtual memory (prlimit --as),
	// so that a host that loses its sandbox fails alone, quickly, instead
	// of taking the shared machine's memory.
	hostileAddressSpace = 8 << 30
)

// hostileProp is one property of the hostile device.
type hostileProp struct {
	name, about string
	typ         string // default INT
	readWrite   bool
}

type hostileCase struct {
	name  string // module abi/testdata/hostile/NAME.wat
	about string
	props []hostileProp // default: one read-only "value"
	// mustRefuse: the loader must refuse the module, naming its table.
	// mayRefuse: refusing it (naming the table) is as right as loading
	// it and passing check.
	mustRefuse, mayRefuse bool
	check                 func(t *testing.T, r *hostileRun)
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "table-grow-nomax", about: "table with no maximum, table.grow 0xFFFFFF00 in wapper_read", mayRefuse: true, check: checkGrowRefused},
		{name: "table-grow-nomax-init", about: "table with no maximum, table.grow 0xFFFFFF00 in _initialize", mayRefuse: true, check: checkGrowRefused},
		{name: "table-grow-hugemax", about: "table with maximum 0xFFFFFFFF, table.grow 0xFFFFFF00 in wapper_read", mayRefuse: true, check: checkGrowRefused},
		{name: "table-grow-hugemax-init", about: "table with maximum 0xFFFFFFFF, table.grow 0xFFFFFF00 in _initialize", mayRefuse: true, check: checkGrowRefused},
		{name: "table-huge-min", about: "table that starts with 2^27 elements (1 GiB)", mustRefuse: true},
		{name: "table-grow-fill", about: "table.grow 2^27 and table.fill (1 GiB of host memory)", mayRefuse: true, check: checkGrowRefused},
		{name: "sleep-read", about: "WASI poll_oneoff sleep of 10 minutes in wapper_read"},
		{name: "sleep-init", about: "WASI poll_oneoff sleep of 10 minutes in _initialize"},
		{name: "loop-init", about: "endless loop in _initialize"},
		{name: "memory-grow", about: "memory.grow to the limit, touching every page, then a trap"},
		{name: "recursion", about: "unbounded recursion (stack exhaustion) in wapper_read"},
		{name: "log-flood", about: "wapper.log with 8 KiB messages in a tight loop"},
		{name: "log-flood-escapes", about: "wapper.log with 8 KiB messages of control bytes (JSON-escaped sixfold)"},
		{name: "stdout-flood", about: "fd_write of 64 MiB of short lines per call to stdout and stderr"},
		{name: "bad-lengths", about: "every import called with wrapped, out-of-bounds or 0xFFFFFFFF lengths", props: badLengthProps, check: checkBadLengths},
		{name: "wasi-wrap", about: "WASI poll_oneoff with 2^28 subscriptions (sizes wrap to 0 in uint32)"},
		{name: "bad-results", about: "results outside memory, wrapping, over 4 MiB, empty, malformed, and a valid 4 MiB string", props: badResultProps, check: checkBadResults},
		{name: "bad-alloc", about: "wapper_alloc returning wrapping, out-of-bounds, end-crossing, zero and overlapping pointers",
			props: []hostileProp{{name: "value"}, {name: "level", readWrite: true}}},
		{name: "reentrancy", about: "report/kv_set/log from every export, alloc and free included; forged reports for other devices",
			props: []hostileProp{{name: "value"}, {name: "level", readWrite: true}}, check: checkReentrancy},
	}
}

// Property handles are given in the order of the Device's properties,
// from 1; bad-lengths and bad-results pick their attack by handle.
var badLengthProps = []hostileProp{
	{name: "h01", about: "log(ptr 0xFFFFFFF0, len 0x20)"},
	{name: "h02", about: "log(ptr 0x7FFFFFF0, len 0x20)"},
	{name: "h03", about: "log(ptr 16, len 0xFFFFFFFF)"},
	{name: "h04", about: "kv_set(key len 0xFFFFFFFF)"},
	{name: "h05", about: "kv_set(key 0xFFFFFFF0+0x20)"},
	{name: "h06", about: "kv_set(value 0xFFFFFFF0+0x20)"},
	{name: "h07", about: "kv_get(dst 0xFFFFFFF0+0x20)"},
	{name: "h08", about: "kv_get(key 0xFFFFFFF0+0x20)"},
	{name: "h09", about: "kv_delete(key 0xFFFFFFF0+0x20)"},
	{name: "h10", about: "report(value 0xFFFFFFF0+0x20)"},
	{name: "h11", about: "report(value len 0xFFFFFFFF)"},
	{name: "h12", about: "sock_open(addr 0xFFFFFFF0+0x20)"},
	{name: "h13", about: "serial_open(path 0xFFFFFFF0+0x20)"},
	{name: "h14", about: "gpio_open(name len 0xFFFFFFFF)"},
	{name: "h15", about: "io_read(dst 0xFFFFFFF0+0x20)"},
	{name: "h16", about: "io_write(src len 0xFFFFFFFF)"},
	{name: "h17", about: "io_read(dst cap 0xFFFFFFFF)"},
	{name: "h18", about: "WASI fd_write(iovs 0xFFFFFFF8)"},
	{name: "h19", about: "WASI fd_write(iov {16, 0xFFFFFFFF})"},
	{name: "h20", about: "WASI random_get(0xFFFFFFF0, 0x20)"},
	{name: "h21", about: "clock_ns(0xFFFFFFFF)"},
}

var badResultProps = []hostileProp{
	{name: "outside", about: "ptr 0x7FFF0000 len 16"},
	{name: "toolarge", about: "len 4 MiB + 1"},
	{name: "wrap", about: "ptr 0xFFFFFFF0 len 0x20"},
	{name: "hugelen", about: "len 0xFFFFFFFF"},
	{name: "malformed", about: "value of type 99"},
	{name: "big", about: "valid STRING of 4 MiB - 2 bytes", typ: "STRING"},
	{name: "empty", about: "ptr 16 len 0"},
	{name: "bigint", about: "the same 4 MiB string for an INT"},
}

func TestHostile(t *testing.T) {
	testenv.Slow(t, "runs a real wapper-host for each of 19 hostile plugins, about 3 minutes on 2 cores")
	host := os.Getenv("WAPPER_HOSTILE_HOST")
	if host == "" {
		host = testenv.Artifact(t, "wapper-host")
	}
	virtual := testenv.Plugin(t, "virtual")
	wasm := map[string]string{}
	for _, c := range hostileCases() {
		wasm[c.name] = testenv.Artifact(t, "testplugins/hostile/"+c.name+".wasm")
	}
	// One compile cache for every host, kept across runs (wazero keys it
	// by its version and the module's hash): the virtual plugin, 4 MB of
	// Go, compiles once, in the baseline below, not in every case at once.
	cache := filepath.Join(t.TempDir(), "compile-cache")
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "wapper-e2e", "compile-cache")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("hostile suite took %v", time.Since(start).Round(time.Second)) })
	// The baseline: the healthy plugin alone, under the same checks.
	t.Run("baseline", func(t *testing.T) {
		runHostile(t, hostileCase{about: "none: the healthy plugin alone"}, host, virtual, "", cache)
	})
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runHostile(t, c, host, virtual, wasm[c.name], cache)
		})
	}
}

// hostileRun is one wapper-host under attack.
type hostileRun struct {
	t    *testing.T
	c    hostileCase
	cmd  *exec.Cmd
	http string
	done chan struct{}
	// done is closed when the process has exited; waitErr is then its
	// status.
	waitErr error
	readers sync.WaitGroup

	stderrBytes, stdoutBytes atomic.Int64

	mu      sync.Mutex
	head    bytes.Buffer // the first hostileHead bytes of output
	tail    []string     // the last hostileTail JSON lines
	special bytes.Buffer // lines that are not JSON: Go's fatal errors and stack dumps
	msgs    map[string]int
	lines   int64
	dev     saDevice // the hostile device's last status, for per-case checks
}

const (
	hostileHead    = 1 << 20
	hostileTail    = 400
	hostileSpecial = 8 << 20
	hostileLine    = 64 << 10
)

func runHostile(t *testing.T, c hostileCase, host, virtual, wasm, cache string) {
	r := startHostile(t, c, host, virtual, wasm, cache)
	client := &http.Client{Timeout: 2 * hostilePingMax}

	// The healthy device's first reading.
	var (
		pings    int
		pingFail []string
		pingMax  time.Duration
		pingSum  time.Duration
	)
	ping := func() {
		t0 := time.Now()
		resp, err := client.Get("http://" + r.http + "/api/v1/ping")
		d := time.Since(t0)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		pings++
		pingSum += d
		pingMax = max(pingMax, d)
		if err != nil && len(pingFail) < 5 {
			pingFail = append(pingFail, fmt.Sprintf("after %v: %v", d.Round(time.Millisecond), err))
		} else if err != nil {
			pingFail = append(pingFail[:4], fmt.Sprintf("... and more, the last after %v: %v", d.Round(time.Millisecond), err))
		}
	}
	healthy := func() (string, time.Time, error) {
		var resp struct {
			Device saDevice `json:"device"`
		}
		res, err := client.Get("http://" + r.http + "/api/v1/device/default/healthy")
		if err != nil {
			return "", time.Time{}, err
		}
		defer res.Body.Close()
		if err := json.NewDecoder(res.Body).Decode(&resp); err != nil {
			return "", time.Time{}, err
		}
		for _, tw := range resp.Device.Twins {
			if tw.Reported == "666666" {
				// A reading forged by another plugin (see reentrancy.wat).
				r.mu.Lock()
				r.msgs["TEST: healthy device showed the forged value 666666 on "+tw.Property]++
				r.mu.Unlock()
			}
		}
		tw := resp.Device.twin("count")
		if tw.Reported == "" {
			return "", time.Time{}, fmt.Errorf("no reading yet (phase %s %s)", resp.Device.Phase, resp.Device.Reason)
		}
		return tw.Reported, tw.ReportedTime, nil
	}

	t0 := time.Now()
	var firstErr error
	started := false
	for time.Since(t0) < hostileStartMax && r.alive() {
		if _, _, firstErr = healthy(); firstErr == nil {
			started = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	startup := time.Since(t0)
	if !started {
		t.Errorf("the healthy device had no reading within %v of the host answering REST: %v", hostileStartMax, firstErr)
	}

	// Watch: ping and the healthy device, every 250 ms.
	var (
		lastVal       string
		lastTime      time.Time
		lastAdvance   = time.Now()
		maxStale      time.Duration
		advances      int
		healthyErrors int
		lastHealthErr error
	)
	watchStart := time.Now()
	for time.Since(watchStart) < hostileWatch && r.alive() {
		ping()
		v, ts, err := healthy()
		now := time.Now()
		if err != nil {
			healthyErrors++
			lastHealthErr = err
		} else if !ts.Equal(lastTime) || v != lastVal {
			if lastTime.IsZero() || ts.After(lastTime) {
				advances++
			}
			lastVal, lastTime, lastAdvance = v, ts, now
		}
		maxStale = max(maxStale, now.Sub(lastAdvance))
		time.Sleep(250 * time.Millisecond)
	}
	watched := time.Since(watchStart)

	// Before stopping: peak memory and the hostile device's status.
	rss := r.peakRSS()
	var (
		hostileDev saDevice
		hostileErr = errors.New("no hostile plugin")
	)
	if c.name != "" {
		hostileDev, hostileErr = r.hostileDevice(client)
	}
	aliveBeforeStop := r.alive()

	// The report, then the checks.
	t.Logf("attack: %s", c.about)
	first := fmt.Sprintf("first reading %v after REST came up", startup.Round(time.Millisecond))
	if !started {
		first = fmt.Sprintf("no reading in %v", startup.Round(time.Millisecond))
	}
	t.Logf("healthy device: %s; then over %v: %d advances, longest stale %v, last value %q, %d failed GETs%s",
		first, watched.Round(time.Millisecond), advances, maxStale.Round(time.Millisecond), lastVal, healthyErrors, errSuffix(lastHealthErr))
	if pings > 0 {
		t.Logf("ping: %d, mean %v, max %v, %d failed", pings, (pingSum / time.Duration(pings)).Round(time.Microsecond), pingMax.Round(time.Microsecond), len(pingFail))
	}
	if rss > 0 {
		t.Logf("host peak RSS: %d MiB", rss>>20)
	}
	if hostileErr != nil && c.name != "" {
		t.Logf("hostile device: %v", hostileErr)
	} else if c.name != "" {
		t.Logf("hostile device: phase %s, state %s, reason %q", hostileDev.Phase, hostileDev.State, clip(hostileDev.Reason, 400))
		for _, tw := range hostileDev.Twins {
			if tw.Reported != "" || tw.Error != "" {
				t.Logf("  %s = %q (at %s) %s", tw.Property, clip(tw.Reported, 60), tw.ReportedTime.Format("15:04:05.000"), clip(tw.Error, 300))
			}
		}
	}

	quit := false
	if !aliveBeforeStop {
		<-r.done
		t.Errorf("the host died during the attack: %v", r.waitErr)
	} else {
		stopStart := time.Now()
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
			took := time.Since(stopStart)
			t.Logf("SIGTERM: exited after %v: %v", took.Round(time.Millisecond), exitText(r.waitErr))
			if code := r.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("after SIGTERM the host exited with %s, want exit code 0", exitText(r.waitErr))
			}
		case <-time.After(hostileStopMax):
			t.Errorf("the host did not exit within %v of SIGTERM; its goroutines (SIGQUIT) follow", hostileStopMax)
			quit = true
			r.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-r.done:
			case <-time.After(10 * time.Second):
				r.cmd.Process.Kill()
				<-r.done
			}
			t.Logf("goroutines of the stuck host (those in wapper or wazero code):\n%s", stuckGoroutines(r.specialText()))
		}
	}
	r.readers.Wait()

	logBytes := r.stderrBytes.Load() + r.stdoutBytes.Load()
	t.Logf("host output: %d bytes (%d stderr, %d stdout), %d lines, over %v", logBytes, r.stderrBytes.Load(), r.stdoutBytes.Load(), r.lineCount(), time.Since(t0).Round(time.Millisecond))
	t.Logf("host log messages, most frequent first:\n%s", r.topMessages(14))
	if s := r.specialText(); s != "" && !quit {
		t.Logf("host output that is not JSON (Go runtime errors):\n%s", clip(s, 6000))
	}

	if len(pingFail) > 0 {
		t.Errorf("GET /api/v1/ping failed %d times: %s", len(pingFail), strings.Join(pingFail, "; "))
	}
	if pingMax > hostilePingMax {
		t.Errorf("GET /api/v1/ping took %v at worst, want under %v", pingMax.Round(time.Millisecond), hostilePingMax)
	}
	if started && maxStale > hostileStaleMax {
		t.Errorf("the healthy device's reading stood still for %v, want under %v", maxStale.Round(time.Millisecond), hostileStaleMax)
	}
	if started && watched >= hostileWatch && advances < 3 {
		t.Errorf("the healthy device's reading advanced %d times in %v, want at least 3", advances, watched.Round(time.Millisecond))
	}
	if logBytes > hostileLogMax {
		t.Errorf("the host wrote %d bytes of log in %v, want under %d (per-plugin log rate limit)", logBytes, time.Since(t0).Round(time.Second), hostileLogMax)
	}
	if rss > hostileRSSMax {
		t.Errorf("the host's peak RSS was %d MiB, want under %d MiB (tables and memory count against the plugin's limit)", rss>>20, hostileRSSMax>>20)
	}
	if n := r.msgCount("TEST: healthy device showed the forged value 666666"); n > 0 {
		t.Errorf("the healthy device showed the value 666666, forged by the hostile plugin, %d times", n)
	}

	refused := hostileErr == nil && hostileDev.Phase != "Running" && strings.Contains(strings.ToLower(hostileDev.Reason), "table")
	switch {
	case c.mustRefuse && !refused:
		t.Errorf("the loader did not refuse the module for its table: hostile device %s", describeDev(hostileDev, hostileErr))
	case refused:
		t.Logf("refused, naming the table: %s", clip(hostileDev.Reason, 400))
	case c.check != nil && hostileErr == nil:
		c.check(t, r.withDevice(hostileDev))
	}
}

// withDevice hands per-case checks the hostile device's last status.
func (r *hostileRun) withDevice(d saDevice) *hostileRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dev = d
	return r
}

func describeDev(d saDevice, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("in phase %s, reason %q", d.Phase, clip(d.Reason, 400))
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (last: " + clip(err.Error(), 200) + ")"
}

func exitText(err error) string {
	if err == nil {
		return "exit code 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit code %d", ee.ExitCode())
	}
	return err.Error()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

// checkGrowRefused: a table module that loaded must have had its grow
// refused (the value read is what table.grow answered).
func checkGrowRefused(t *testing.T, r *hostileRun) {
	tw := r.dev.twin("value")
	switch {
	case tw.Reported == "":
		t.Errorf("the table module loaded but its device has no reading, so what table.grow answered is unknown (phase %s %s; %s)", r.dev.Phase, clip(r.dev.Reason, 200), clip(tw.Error, 300))
	case tw.Reported == "-1":
		t.Logf("table.grow answered -1: refused by the table's limit")
	default:
		t.Errorf("table.grow answered %s: the host grew the table", tw.Reported)
	}
}

// checkBadLengths: every import answered its bad range with an error
// code (log, which returns nothing, returned).
func checkBadLengths(t *testing.T, r *hostileRun) {
	var missing []string
	for i, p := range badLengthProps {
		h := int64(i + 1)
		tw := r.dev.twin(p.name)
		if tw.Reported == "" {
			missing = append(missing, fmt.Sprintf("%s %s: %s", p.name, p.about, clip(tw.Error, 200)))
			continue
		}
		v, err := strconv.ParseInt(tw.Reported, 10, 64)
		if err != nil || (v+500)/1000 != h {
			t.Errorf("%s (%s): value %q is not handle*1000+code for handle %d", p.name, p.about, tw.Reported, h)
			continue
		}
		code := v - h*1000
		isLog := h <= 3
		switch {
		case isLog && code == 0:
			t.Logf("%s %-40s returned", p.name, p.about)
		case !isLog && code > 0:
			t.Logf("%s %-40s -> %d", p.name, p.about, -code)
		default:
			t.Errorf("%s %s: the host answered %d, want an error code", p.name, p.about, -code)
		}
	}
	if len(missing) > 0 {
		t.Errorf("bad-lengths: %d calls gave no reading (host functions must return an error, not trap):\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
}

// checkBadResults logs what came of each broken result; the host's
// survival is what the shared checks assert.
func checkBadResults(t *testing.T, r *hostileRun) {
	for _, p := range badResultProps {
		tw := r.dev.twin(p.name)
		switch {
		case tw.Reported != "" && p.name != "big":
			t.Errorf("%s (%s): the host took the broken result as the value %q", p.name, p.about, clip(tw.Reported, 60))
		case tw.Reported != "":
			t.Logf("%-10s %-32s read, %d bytes", p.name, p.about, len(tw.Reported))
		case len(tw.Error) > 64<<10:
			t.Logf("%-10s %-32s failed, and the host keeps (and logs) a %d-byte error that echoes the plugin's value: %s", p.name, p.about, len(tw.Error), clip(tw.Error, 120))
		case tw.Error == "":
			t.Logf("%-10s %-32s not read in time (the instance was restarting)", p.name, p.about)
		default:
			t.Logf("%-10s %-32s failed: %s", p.name, p.about, clip(tw.Error, 200))
		}
	}
}

// checkReentrancy: the plugin ran (no deadlock between a report and the
// call that made it), and the host accepted none of its forged reports.
func checkReentrancy(t *testing.T, r *hostileRun) {
	tw := r.dev.twin("value")
	switch {
	case tw.Reported == "":
		t.Errorf("the reentrant plugin's device never had a reading (phase %s, %s): a report from inside a call may deadlock", r.dev.Phase, clip(r.dev.Reason+" "+tw.Error, 300))
	case tw.Reported != "0":
		t.Errorf("the host accepted %s reports for device handles that are not the plugin's own", tw.Reported)
	default:
		t.Logf("no forged report was accepted")
	}
}

// startHostile writes the manifests and starts the host.
func startHostile(t *testing.T, c hostileCase, host, virtual, wasm, cache string) *hostileRun {
	plugins, manifests, state := t.TempDir(), t.TempDir(), t.TempDir()
	links := map[string]string{"virtual.wasm": virtual}
	if c.name != "" {
		links[c.name+".wasm"] = wasm
	}
	for name, src := range links {
		if err := os.Symlink(src, filepath.Join(plugins, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(cache, filepath.Join(state, "compile-cache")); err != nil {
		t.Fatal(err)
	}
	saWrite(t, filepath.Join(manifests, "virtual-plugin.yaml"), `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
  limits: {memoryMiB: 64, callTimeout: 2s, instances: 2}
`)
	saWrite(t, filepath.Join(manifests, "healthy.yaml"), saVirtualDevice("healthy", "healthy-model", 200))
	if c.name != "" {
		saWrite(t, filepath.Join(manifests, "hostile.yaml"), hostileManifest(c))
	}

	r := &hostileRun{t: t, c: c, http: saPort(t), done: make(chan struct{}), msgs: map[string]int{}}
	args := []string{"--state-dir", state, "--http-listen", r.http, "--mqtt-listen", saPort(t),
		"--log-format", "json", "--log-level", "info", "--plugin-dir", plugins, "--manifests", manifests}
	prlimit := testenv.Bin(t, "prlimit")
	r.cmd = exec.Command(prlimit, append([]string{fmt.Sprintf("--as=%d", int64(hostileAddressSpace)), "--", host}, args...)...)
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.readers.Add(2)
	go r.consume(stderr, &r.stderrBytes)
	go r.consume(stdout, &r.stdoutBytes)
	go func() {
		r.readers.Wait() // Wait closes the pipes: read them to the end first
		r.waitErr = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		if r.alive() {
			r.cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("host log, first lines:\n%s", r.headText(60))
			t.Logf("host log, last lines:\n%s", r.tailText(40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if !r.alive() {
			<-r.done
			t.Fatalf("wapper-host exited before REST answered: %s\n%s\n%s", exitText(r.waitErr), r.headText(60), clip(r.specialText(), 4000))
		}
		if resp, err := http.Get("http://" + r.http + "/api/v1/ping"); err == nil {
			resp.Body.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("wapper-host did not answer /api/v1/ping within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hostileManifest(c hostileCase) string {
	props := c.props
	if len(props) == 0 {
		props = []hostileProp{{name: "value"}}
	}
	var model, dev strings.Builder
	for i, p := range props {
		access := "ReadOnly"
		if p.readWrite {
			access = "ReadWrite"
		}
		typ := p.typ
		if typ == "" {
			typ = "INT"
		}
		fmt.Fprintf(&model, "    - {name: %s, type: %s, accessMode: %s}\n", p.name, typ, access)
		// A collect cycle of its own for each property: properties that
		// share one are read in one group, which stops at the first
		// failure, and each property here is an attack of its own.
		fmt.Fprintf(&dev, "    - name: %s\n      collectCycle: %d\n      reportCycle: 1000\n      visitors: {protocolName: hostile-%s, configData: {}}\n", p.name, 1000+10*i, c.name)
		if p.readWrite {
			dev.WriteString("      desired: {value: \"5\"}\n")
		}
	}
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: hostile-%[1]s}
spec:
  protocols: [hostile-%[1]s]
  module: {file: %[1]s.wasm}
  limits: {callTimeout: 2s, instances: 2}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: hostile-model, namespace: default}
spec:
  protocol: hostile-%[1]s
  properties:
%[2]s---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: hostile, namespace: default}
spec:
  deviceModelRef: {name: hostile-model}
  protocol: {protocolName: hostile-%[1]s}
  properties:
%[3]s`, c.name, model.String(), dev.String())
}

func (r *hostileRun) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// consume reads one output stream to its end, whatever the line lengths,
// so that the host never blocks on a full pipe because of the test.
func (r *hostileRun) consume(rd io.Reader, n *atomic.Int64) {
	defer r.readers.Done()
	br := bufio.NewReaderSize(rd, 64<<10)
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		n.Add(int64(len(frag)))
		if len(line) < hostileLine {
			line = append(line, frag[:min(len(frag), hostileLine-len(line))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 {
			r.keep(line)
		}
		line = line[:0]
		if err != nil {
			io.Copy(io.Discard, rd)
			return
		}
	}
}

func (r *hostileRun) keep(line []byte) {
	line = bytes.TrimRight(line, "\n")
	msg := ""
	if i := bytes.Index(line, []byte(`"msg":"`)); i >= 0 {
		rest := line[i+7:]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			rest = rest[:j]
		}
		msg = string(rest[:min(len(rest), 80)])
		if lv := bytes.Index(line, []byte(`"level":"`)); lv >= 0 && lv+9+5 <= len(line) {
			msg = string(bytes.TrimRight(line[lv+9:lv+9+5], `",`)) + " " + msg
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines++
	if msg != "" {
		if _, ok := r.msgs[msg]; ok || len(r.msgs) < 300 {
			r.msgs[msg]++
		}
	}
	if r.head.Len() < hostileHead {
		r.head.Write(line)
		r.head.WriteByte('\n')
	}
	// Not JSON: Go's fatal errors and stack dumps, blank lines included
	// (they separate goroutines).
	if (len(line) == 0 || line[0] != '{') && r.special.Len() < hostileSpecial && (len(line) > 0 || r.special.Len() > 0) {
		r.special.Write(line)
		r.special.WriteByte('\n')
	}
	if len(line) > 0 && line[0] == '{' {
		if len(r.tail) >= hostileTail {
			r.tail = r.tail[1:]
		}
		r.tail = append(r.tail, string(line))
	}
}

func (r *hostileRun) lineCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lines
}

func (r *hostileRun) msgCount(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for m, c := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			n += c
		}
	}
	return n
}

func (r *hostileRun) topMessages(n int) string {
	r.mu.Lock()
	type mc struct {
		m string
		c int
	}
	var all []mc
	for m, c := range r.msgs {
		all = append(all, mc{m, c})
	}
	r.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].c > all[j].c || (all[i].c == all[j].c && all[i].m < all[j].m) })
	var b strings.Builder
	for i, x := range all {
		if i == n {
			fmt.Fprintf(&b, "  ... and %d more kinds\n", len(all)-n)
			break
		}
		fmt.Fprintf(&b, "  %8d  %s\n", x.c, x.m)
	}
	return b.String()
}

// headText returns the first n lines, each clipped.
func (r *hostileRun) headText(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	lines := strings.SplitN(r.head.String(), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	for i := range lines {
		lines[i] = clip(lines[i], 400)
	}
	return strings.Join(lines, "\n")
}

func (r *hostileRun) tailText(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	lines := r.tail[max(0, len(r.tail)-n):]
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = clip(l, 400)
	}
	return strings.Join(out, "\n")
}

func (r *hostileRun) specialText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.special.String()
}

// peakRSS returns the host's peak resident set (VmHWM), or 0.
func (r *hostileRun) peakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (r *hostileRun) hostileDevice(client *http.Client) (saDevice, error) {
	var resp struct {
		Device saDevice `json:"device"`
	}
	res, err := client.Get("http://" + r.http + "/api/v1/device/default/hostile")
	if err != nil {
		return saDevice{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return saDevice{}, fmt.Errorf("GET /api/v1/device/default/hostile: %s: %s", res.Status, clip(string(bytes.TrimSpace(b)), 300))
	}
	if err := json.NewDecoder(res.Body).Decode(&resp); err != nil {
		return saDevice{}, err
	}
	return resp.Device, nil
}

// stuckGoroutines picks, from a Go stack dump, the goroutines in wapper
// or wazero code: those in the plugin runtime, wazero or the main
// goroutine first, then the shorter ones.
func stuckGoroutines(dump string) string {
	type g struct {
		text  string
		score int
	}
	var picked []g
	for _, text := range strings.Split(dump, "\n\n") {
		if !strings.HasPrefix(text, "goroutine ") || !(strings.Contains(text, "wapper.dev/wapper/") || strings.Contains(text, "wazero")) {
			continue
		}
		score := 0
		for _, k := range []string{"wazero", "wapper/host/runtime.", "wapper/host/devices.", "main.run"} {
			if strings.Contains(text, k) {
				score++
			}
		}
		lines := strings.Split(text, "\n")
		if len(lines) > 40 {
			lines = append(lines[:40], "\t...")
		}
		picked = append(picked, g{strings.Join(lines, "\n"), score})
	}
	sort.SliceStable(picked, func(i, j int) bool {
		if picked[i].score != picked[j].score {
			return picked[i].score > picked[j].score
		}
		return len(picked[i].text) < len(picked[j].text)
	})
	if len(picked) == 0 {
		return clip(dump, 6000)
	}
	var out []string
	for i, p := range picked {
		if i == 8 {
			out = append(out, fmt.Sprintf("... and %d more", len(picked)-8))
			break
		}
		out = append(out, p.text)
	}
	return strings.Join(out, "\n\n")
}
