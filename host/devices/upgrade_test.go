package devices_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// withCustomSection returns a copy of a wasm module with a custom section
// appended: the same code, another digest.
func withCustomSection(wasm []byte, name, payload string) []byte {
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out := append(slices.Clone(wasm), 0) // section id 0: custom
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

// appliedLog collects the "desired value applied" records of the
// manager's log: device, property and sequence of each write.
type appliedLog struct {
	mu      sync.Mutex
	applied []string // device/property#seq
	// moves are the spans of the upgrades in which devices move: from
	// the end of a probe to the end of the upgrade.
	moves    [][2]time.Time
	probeEnd time.Time
}

func (h *appliedLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *appliedLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *appliedLog) WithGroup(string) slog.Handler            { return h }
func (h *appliedLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo && r.Message != "desired value applied" && r.Message != "desired value set" && os.Getenv("UPGRADE_DEBUG") != "" {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		fmt.Fprintln(os.Stderr, r.Time.Format("15:04:05.000"), r.Message, b.String())
	}
	switch r.Message {
	case "plugin upgrade: probe passed", "plugin upgrade: probe failed":
		h.mu.Lock()
		h.probeEnd = r.Time
		h.mu.Unlock()
		return nil
	case "plugin upgrade done: every device moved", "plugin upgrade rolled back: the old module keeps running":
		h.mu.Lock()
		h.moves = append(h.moves, [2]time.Time{h.probeEnd, r.Time})
		h.mu.Unlock()
		return nil
	case "desired value applied":
	default:
		return nil
	}
	var dev, prop, seq string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "device":
			dev = a.Value.String()
		case "property":
			prop = a.Value.String()
		case "seq":
			seq = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.applied = append(h.applied, dev+"/"+prop+"#"+seq)
	h.mu.Unlock()
	return nil
}

// readingLog keeps the times of the successful readings of property n of
// each device, as the manager reports them.
type readingLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (l *readingLog) count(dev string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.times[dev])
}

// upgradeFixture is a manager running devices on plugin virtual, whose
// module is file m.wasm of a temporary plugin folder.
type upgradeFixture struct {
	t        *testing.T
	m        *devices.Manager
	reg      *prometheus.Registry
	module   string
	set      devices.ResourceSet
	n        int
	readings *readingLog
	applied  *appliedLog
	stop     func() // ends the collection of readings
}

// upgradeCycle is the collect cycle of the devices: 100 ms, or 400 ms
// under the race detector, which slows the host down as much.
var upgradeCycle = map[bool]time.Duration{false: 100 * time.Millisecond, true: 400 * time.Millisecond}[raceDetector]

// upgradeMissedMax is how many cycles in a row a device may miss while
// devices move: none. Under the race detector the compile of the new
// module (ten times slower, 20 to 35 s) and the probe starve the device
// loops of CPU on a small machine whatever the upgrade does, and CI saw
// two cycles missed there as well as one; so under the race detector the
// gaps are only logged (-1), and `make test` runs TestHotUpgrade without
// the race detector as well, where none is allowed.
var upgradeMissedMax = map[bool]int{false: 0, true: -1}[raceDetector]

// newUpgradeFixture starts n devices (see upgradeSet) on the virtual
// plugin, with canaryPercent canary (nil: the default), and collects their
// readings. Modules are compiled into cacheDir.
func newUpgradeFixture(t *testing.T, cacheDir string, n int, canary *int32, visitor func(prop string) map[string]any) *upgradeFixture {
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &upgradeFixture{t: t, module: filepath.Join(dir, "m.wasm"), n: n, applied: &appliedLog{}, reg: prometheus.NewRegistry(),
		readings: &readingLog{times: map[string][]time.Time{}}}
	f.install(virtual)
	f.m = newManagerWith(t, t.TempDir(), dir, func(o *devices.Options) {
		o.Logger = slog.New(f.applied)
		o.Registerer = f.reg
		eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: cacheDir, Logger: o.Logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close(context.Background()) })
		o.Engine = eng
	})
	f.set = upgradeSet(n, upgradeCycle, visitor)
	f.set.Plugins[0].Spec.Upgrade.CanaryPercent = canary
	events, unsubscribe := f.m.SubscribeFunc("test", 1<<16, func(ev *devices.Event) bool { return ev.Type == devices.EventReading })
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for ev := range events {
			for _, tw := range ev.Twins {
				if tw.Property == "n" {
					f.readings.mu.Lock()
					f.readings.times[ev.Name] = append(f.readings.times[ev.Name], ev.Time)
					f.readings.mu.Unlock()
				}
			}
		}
	}()
	f.stop = sync.OnceFunc(func() { unsubscribe(); <-collected })
	t.Cleanup(f.stop)
	if err := f.m.Apply(context.Background(), "manifests", f.set); err != nil {
		t.Fatal(err)
	}
	f.readMore("first readings", 3)
	return f
}

// install replaces the module file (by a rename, as a deployment would).
func (f *upgradeFixture) install(wasm []byte) {
	f.t.Helper()
	tmp := f.module + ".new"
	if err := os.WriteFile(tmp, wasm, 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.module); err != nil {
		f.t.Fatal(err)
	}
}

// upgradeTo installs a module and applies the manifests again, as their
// watcher does, so that the module file is checked again; it returns the
// plugin's status after.
func (f *upgradeFixture) upgradeTo(what string, wasm []byte) devices.PluginStatus {
	f.t.Helper()
	f.install(wasm)
	began := time.Now()
	if err := f.m.Apply(context.Background(), "manifests", f.set); err != nil {
		f.t.Fatal(err)
	}
	f.t.Logf("%s upgrade took %s", what, time.Since(began).Round(time.Millisecond))
	st, ok := f.m.Plugin("virtual")
	if !ok {
		f.t.Fatal("plugin gone")
	}
	return st
}

// readMore waits for every device to read n more times.
func (f *upgradeFixture) readMore(what string, n int) {
	f.t.Helper()
	base := map[string]int{}
	for i := range f.n {
		base[devName(i)] = f.readings.count(devName(i))
	}
	waitFor(f.t, what, func() bool {
		for dev, b := range base {
			if f.readings.count(dev) < b+n {
				return false
			}
		}
		return true
	})
}

// missedCycles checks that between two successful readings of each of
// the devices, up to end, the other devices (same cycle) read at most
// maxMissed+1 times: that is, at most maxMissed readings in a row were
// missed. Counting cycles by the other devices' readings, rather than by
// the clock, keeps a host stalled as a whole (a busy machine) from
// counting as missed cycles. Only the gaps that overlap the moves of
// devices between modules (with a margin of two cycles) count: elsewhere
// the upgrade has no part in the readings, and a busy machine alone may
// skip one. The others are logged. A negative maxMissed only logs.
func (f *upgradeFixture) missedCycles(devs []int, end time.Time, maxMissed int) {
	f.t.Helper()
	f.readings.mu.Lock()
	all := maps.Clone(f.readings.times)
	f.readings.mu.Unlock()
	f.applied.mu.Lock()
	moves := slices.Clone(f.applied.moves)
	f.applied.mu.Unlock()
	if len(moves) == 0 {
		f.t.Fatal("no upgrade logged")
	}
	margin := 2 * upgradeCycle
	during := func(a, b time.Time) bool {
		for _, mv := range moves {
			if !b.Before(mv[0].Add(-margin)) && !a.After(mv[1].Add(margin)) {
				return true
			}
		}
		return false
	}
	for _, i := range devs {
		dev := devName(i)
		times := all[dev]
		worst, elsewhere, longest := 0, 0, time.Duration(0)
		for j := 1; j < len(times) && times[j].Before(end); j++ {
			a, b := times[j-1], times[j]
			var counts []int
			for k := range f.n {
				if k == i {
					continue
				}
				other := all[devName(k)]
				lo, _ := slices.BinarySearchFunc(other, a, cmpTimeAfter)
				hi, _ := slices.BinarySearchFunc(other, b, cmpTimeAfter)
				counts = append(counts, hi-lo) // readings in (a, b]
			}
			slices.Sort(counts)
			c := counts[len(counts)/2] - 1
			if !during(a, b) {
				elsewhere = max(elsewhere, c)
				continue
			}
			longest = max(longest, b.Sub(a))
			if c > worst {
				worst = c
				if c > max(maxMissed, 0) {
					f.t.Logf("device %s: no reading from %s to %s, while the others read %d times", dev, a.Format("15:04:05.000"), b.Format("15:04:05.000"), c+1)
				}
			}
		}
		f.t.Logf("device %s: %d readings; during the moves longest gap %s, %d cycles missed at most (elsewhere %d)", dev, len(times), longest.Round(time.Millisecond), worst, elsewhere)
		if maxMissed >= 0 && worst > maxMissed {
			f.t.Errorf("device %s missed %d cycles in a row while devices moved (at most %d allowed)", dev, worst, maxMissed)
		}
	}
}

// TestHotUpgrade: hot upgrades of a plugin's module, with the modules
// compiled once for its cases.
func TestHotUpgrade(t *testing.T) {
	cache := t.TempDir()
	t.Run("GoodBadGood", func(t *testing.T) { testGoodBadGood(t, cache) })
	t.Run("CanaryRollback", func(t *testing.T) { testCanaryRollback(t, cache) })
	t.Run("Restart", func(t *testing.T) { testRestartStrategy(t, cache) })
	t.Run("OthersNotBlocked", func(t *testing.T) { testOthersNotBlocked(t, cache) })
}

// testRestartStrategy: with strategy Restart a new module restarts the
// devices on it (no hot upgrade); with Hot, a module file that cannot be
// read leaves the old module running, with the reason in Problems.
func testRestartStrategy(t *testing.T, cache string) {
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	good2 := withCustomSection(virtual, "upgrade-test", "v2") // compiled by GoodBadGood
	f := newUpgradeFixture(t, cache, 2, nil, func(prop string) map[string]any {
		if prop == "n" {
			return map[string]any{"kind": "counter"}
		}
		return map[string]any{"kind": "setpoint"}
	})
	f.set.Plugins[0].Spec.Upgrade.Strategy = v1alpha1.UpgradeRestart
	st := f.upgradeTo("restart", good2)
	if st.Digest != digest.FromBytes(good2).String() || st.RejectedDigest != "" {
		t.Fatalf("after the restart: %+v", st)
	}
	f.readMore("readings after the restart", 3)
	if n := upgrades(t, f.reg, "ok") + upgrades(t, f.reg, "rolled_back"); n != 0 {
		t.Fatalf("%v hot upgrades with strategy Restart", n)
	}

	f.set.Plugins[0].Spec.Upgrade.Strategy = v1alpha1.UpgradeHot
	if err := os.Remove(f.module); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Apply(context.Background(), "manifests", f.set); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.m.Plugin("virtual"); !st.Loaded || st.Digest != digest.FromBytes(good2).String() {
		t.Fatalf("module file gone: %+v, want the old module running", st)
	}
	if !slices.ContainsFunc(f.m.Problems(), func(p devices.Problem) bool {
		return p.Kind == devices.KindMapperPlugin && strings.Contains(p.Reason, "new module not resolved yet")
	}) {
		t.Fatalf("missing module not in Problems: %+v", f.m.Problems())
	}
	f.readMore("readings with the module file gone", 3)
}

// testGoodBadGood: devices reading every 100 ms go through three module
// upgrades of their plugin by new file content (good, bad, good again)
// while desired values are written continuously. No collect cycle is
// missed, no desired write is lost or applied twice, the kv store (the
// setpoints) is handed over, and the bad module, which traps on its first
// read, is rolled back and shown in the plugin's status.
func testGoodBadGood(t *testing.T, cache string) {
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	faulty, err := os.ReadFile(testenv.TestPlugin(t, "faulty"))
	if err != nil {
		t.Fatal(err)
	}
	good2 := withCustomSection(virtual, "upgrade-test", "v2")
	good3 := withCustomSection(virtual, "upgrade-test", "v3")
	const nDevices = 10
	// The faulty plugin traps on every read of n, which the probe reads
	// (ReadOnly); the virtual plugin ignores that key.
	f := newUpgradeFixture(t, cache, nDevices, nil, func(prop string) map[string]any {
		if prop == "n" {
			return map[string]any{"kind": "counter", "fault": "trap"}
		}
		return map[string]any{"kind": "setpoint"}
	})
	m, ctx := f.m, context.Background()

	// Desired values are written all along to the second half of the
	// devices, one after another, each waited for until applied. (Only
	// the first half is checked for missed cycles: a desired write costs
	// a durable store commit in the device's job, which on a loaded disk
	// can outlast a cycle, upgrade or not.)
	stop := make(chan struct{})
	written := map[string]string{} // device -> last value
	writerDone := make(chan error, 1)
	go func() {
		writerDone <- func() error {
			for i := 1; ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				dev, val := devName(nDevices/2+i%(nDevices/2)), strconv.Itoa(i)
				ts, err := m.SetDesired(ctx, "default", dev, "sp", val, "test")
				if err != nil {
					return fmt.Errorf("set %s sp=%s: %w", dev, val, err)
				}
				wctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a bound, not a speed
				err = m.WaitApplied(wctx, "default", dev, "sp", ts.DesiredSeq)
				cancel()
				if err != nil {
					return fmt.Errorf("desired %s sp=%s (seq %d) not applied: %w", dev, val, ts.DesiredSeq, err)
				}
				written[dev] = val
			}
		}()
	}()
	f.readMore("readings while writing", 3)
	digestOf := func(b []byte) string { return digest.FromBytes(b).String() }

	st := f.upgradeTo("first", good2)
	if st.Digest != digestOf(good2) || st.RejectedDigest != "" || !st.Loaded {
		t.Fatalf("after the first upgrade: %+v, want digest %s", st, digestOf(good2))
	}
	f.readMore("readings on the second module", 5)

	st = f.upgradeTo("bad", faulty)
	if st.Digest != digestOf(good2) || st.RejectedDigest != digestOf(faulty) ||
		!strings.Contains(st.Rejected, "probe failed") || !strings.Contains(st.Rejected, "killed an instance") {
		t.Fatalf("after the bad upgrade: %+v, want digest %s and rejected %s (trap)", st, digestOf(good2), digestOf(faulty))
	}
	if !slices.ContainsFunc(m.Problems(), func(p devices.Problem) bool {
		return p.Kind == devices.KindMapperPlugin && strings.Contains(p.Reason, "rolled back") && strings.Contains(p.Reason, digestOf(faulty))
	}) {
		t.Fatalf("rollback not in Problems: %+v", m.Problems())
	}
	f.readMore("readings after the rollback", 5)
	// Applying the rejected module again does not try it again.
	if st = f.upgradeTo("rejected", faulty); st.Digest != digestOf(good2) || st.RejectedDigest != digestOf(faulty) {
		t.Fatalf("rejected module applied again: %+v", st)
	}

	// Asking for the running module again (a rollback) forgets the
	// rejection: the faulty module would be tried anew.
	if st = f.upgradeTo("back to the running module", good2); st.Digest != digestOf(good2) || st.RejectedDigest != "" || st.Rejected != "" {
		t.Fatalf("rejection kept after asking for the running module: %+v", st)
	}

	st = f.upgradeTo("third", good3)
	if st.Digest != digestOf(good3) || st.RejectedDigest != "" || st.Rejected != "" {
		t.Fatalf("after the third upgrade: %+v, want digest %s", st, digestOf(good3))
	}
	f.readMore("readings on the third module", 5)
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	f.readMore("last readings", 2)
	f.stop()
	f.missedCycles([]int{0, 1, 2, 3, 4}, end, upgradeMissedMax)

	// No desired write applied twice, every one waited for applied (the
	// writer checked), and the last value of each device read back from
	// the plugin's kv store, which every version shared.
	f.applied.mu.Lock()
	seen := map[string]bool{}
	for _, a := range f.applied.applied {
		if seen[a] {
			t.Errorf("desired write %s applied twice", a)
		}
		seen[a] = true
	}
	nApplied := len(f.applied.applied)
	f.applied.mu.Unlock()
	if nApplied < 20 || len(written) != nDevices/2 {
		t.Fatalf("%d writes applied, to %d devices", nApplied, len(written))
	}
	t.Logf("%d desired writes applied", nApplied)
	for dev, val := range written {
		waitFor(t, "read back of "+dev, func() bool { return setpoint(t, m, dev) == val })
	}
	if ok, rb := upgrades(t, f.reg, "ok"), upgrades(t, f.reg, "rolled_back"); ok != 2 || rb != 1 {
		t.Errorf("wapper_plugin_upgrades_total: ok %v rolled_back %v, want 2 and 1", ok, rb)
	}
}

// testCanaryRollback: a module that passes the probe but traps
// on the first read of a ReadWrite property (which the probe does not
// read) fails its canary: the canary devices go back to the old module,
// which keeps the desired value written meanwhile, and the other devices
// never leave it.
func testCanaryRollback(t *testing.T, cache string) {
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	faulty, err := os.ReadFile(testenv.TestPlugin(t, "faulty"))
	if err != nil {
		t.Fatal(err)
	}
	half := int32(50)
	f := newUpgradeFixture(t, cache, 4, &half, func(prop string) map[string]any {
		if prop == "n" {
			return map[string]any{"kind": "counter"}
		}
		return map[string]any{"kind": "setpoint", "fault": "trap"}
	})
	m, ctx := f.m, context.Background()
	if _, err := m.SetDesired(ctx, "default", devName(0), "sp", "7", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first setpoint", func() bool { return setpoint(t, m, devName(0)) == "7" })

	st := f.upgradeTo("bad", faulty)
	if st.Digest != digest.FromBytes(virtual).String() || st.RejectedDigest != digest.FromBytes(faulty).String() ||
		!strings.Contains(st.Rejected, "canary failed") || !strings.Contains(st.Rejected, "killed an instance") {
		t.Fatalf("after the bad upgrade: %+v", st)
	}
	end := time.Now()
	// A value set now is written by the old module, once.
	ts, err := m.SetDesired(ctx, "default", devName(0), "sp", "8", "test")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a bound, not a speed
	defer cancel()
	if err := m.WaitApplied(wctx, "default", devName(0), "sp", ts.DesiredSeq); err != nil {
		t.Fatal(err)
	}
	f.readMore("readings after the rollback", 3)
	if got := setpoint(t, m, devName(0)); got != "8" {
		t.Fatalf("setpoint after the rollback: %q, want 8", got)
	}
	for i := range f.n {
		ds, err := m.Device("default", devName(i))
		if err != nil || ds.Phase != devices.PhaseRunning {
			t.Fatalf("%s after the rollback: %+v %v", devName(i), ds, err)
		}
	}
	f.stop()
	// Devices 0 and 1 were the canaries (the first half by name); the
	// others never left the old module.
	f.missedCycles([]int{2, 3}, end, upgradeMissedMax)
	if rb := upgrades(t, f.reg, "rolled_back"); rb != 1 {
		t.Errorf("rolled_back upgrades: %v, want 1", rb)
	}
}

// setpoint returns the reported value of property sp of a device, once
// the last desired value has been applied, else "".
func setpoint(t *testing.T, m *devices.Manager, dev string) string {
	t.Helper()
	ds, err := m.Device("default", dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, tw := range ds.Twins {
		if tw.Property == "sp" && tw.AppliedSeq == tw.DesiredSeq {
			return tw.Reported
		}
	}
	return ""
}

// upgrades returns wapper_plugin_upgrades_total of plugin virtual with
// that result.
func upgrades(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wapper_plugin_upgrades_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] == "virtual" && labels["result"] == result {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// cmpTimeAfter orders t against target so that a binary search finds
// the first time after target.
func cmpTimeAfter(t, target time.Time) int {
	if t.After(target) {
		return 1
	}
	return -1
}

func devName(i int) string { return fmt.Sprintf("d%02d", i) }

// upgradeSet is a plugin served from module file m.wasm and n devices
// reading a counter n (ReadOnly) and a setpoint sp (ReadWrite) every
// cycle, with the visitors visitor gives.
func upgradeSet(n int, cycle time.Duration, visitor func(prop string) map[string]any) devices.ResourceSet {
	set := devices.ResourceSet{
		Plugins: []*v1alpha1.MapperPlugin{{ObjectMeta: metav1.ObjectMeta{Name: "virtual"},
			Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"virtual"}, Module: v1alpha1.Module{File: "m.wasm"},
				Limits: v1alpha1.Limits{Instances: 1}}}},
		Models: []*v1beta1.DeviceModel{{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "default"},
			Spec: v1beta1.DeviceModelSpec{Protocol: "virtual", Properties: []v1beta1.ModelProperty{
				{Name: "n", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly},
				{Name: "sp", Type: v1beta1.INT, AccessMode: v1beta1.ReadWrite}}}}},
	}
	ms := int64(cycle / time.Millisecond)
	for i := range n {
		set.Devices = append(set.Devices, &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: devName(i), Namespace: "default"},
			Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "m"}, Properties: []v1beta1.DeviceProperty{
				{Name: "n", CollectCycle: ms, Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: visitor("n")}}},
				{Name: "sp", CollectCycle: ms, Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: visitor("sp")}}},
			}}})
	}
	return set
}
