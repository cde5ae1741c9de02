package devices_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/kv"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/testenv"
)

// virtualDevice is a device of model m whose properties have the given
// visitor configData.
func virtualDevice(name string, visitors ...map[string]any) *v1beta1.Device {
	d := &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "m"}}}
	for i, v := range visitors {
		d.Spec.Properties = append(d.Spec.Properties, v1beta1.DeviceProperty{Name: []string{"n", "sp"}[i],
			Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: v}}})
	}
	return d
}

func phases(m *devices.Manager) map[devices.Phase]int {
	out := map[devices.Phase]int{}
	for _, d := range m.Devices() {
		out[d.Phase]++
	}
	return out
}

// TestAddRetriesWhileInstanceBusy: a plugin with one instance, held busy
// by a device's read until the test lets it go, while more devices are
// added with an add timeout far shorter than that. Every add finds the
// instance busy, so every new device is retried with backoff, visible in
// its status (Pending, attempts, "retrying in", the next attempt) and in
// wapper_device_add_retries_total, instead of landing in Error; once the
// instance is free, every device ends up running and reading. The hold
// (the faulty test plugin's "hold" fault, released through the plugin's kv
// store) makes this independent of the machine's speed.
func TestAddRetriesWhileInstanceBusy(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	var st *store.Store
	m := newManagerWith(t, t.TempDir(), filepath.Dir(testenv.TestPlugin(t, "faulty")), func(o *devices.Options) {
		o.Registerer = reg
		o.AddTimeout = 20 * time.Millisecond
		o.RetryMin, o.RetryMax = 10*time.Millisecond, 200*time.Millisecond
		o.AddConcurrency = 4
		o.ReadWait = 50 * time.Millisecond
		st = o.Store
	})
	pluginKV, err := kv.Open(st.DB(), "faulty", 0)
	if err != nil {
		t.Fatal(err)
	}
	release := func() {
		if err := pluginKV.Set([]byte("h/release"), []byte{1}); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(release) // before the manager closes, also when the test fails
	faultyDevice := func(name, visitor string) *v1beta1.Device {
		return &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "fm"}, Properties: []v1beta1.DeviceProperty{{Name: "n",
				Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"fault": visitor, "key": "h"}}}}}}}
	}
	set := devices.ResourceSet{
		Plugins: []*v1alpha1.MapperPlugin{{ObjectMeta: metav1.ObjectMeta{Name: "faulty"},
			Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"faulty"}, Module: v1alpha1.Module{File: "faulty.wasm"},
				// The call timeout only bounds a hang: the test releases
				// the hold long before.
				Limits: v1alpha1.Limits{Instances: 1, CallTimeout: metav1.Duration{Duration: 5 * time.Minute}}}}},
		Models: []*v1beta1.DeviceModel{{ObjectMeta: metav1.ObjectMeta{Name: "fm", Namespace: "default"},
			Spec: v1beta1.DeviceModelSpec{Protocol: "faulty", Properties: []v1beta1.ModelProperty{
				{Name: "n", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly}}}}},
		Devices: []*v1beta1.Device{faultyDevice("holder", "hold")},
	}
	if err := m.Apply(ctx, "manifests", set); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the holder's read to hold the only instance", func() bool {
		_, ok, _ := pluginKV.Get([]byte("h/held"))
		return ok
	})
	const n = 12
	for i := range n {
		set.Devices = append(set.Devices, faultyDevice(fmt.Sprint("d", i), "none"))
	}
	if err := m.Apply(ctx, "manifests", set); err != nil {
		t.Fatal(err)
	}
	// While the instance is held, no add can succeed: every new device
	// fails its first attempt and waits for the next, never in Error.
	waitFor(t, "every new device retrying", func() bool {
		retrying := 0
		for _, d := range m.Devices() {
			if d.Name == "holder" {
				continue
			}
			switch {
			case d.Phase == devices.PhaseError || d.Phase == devices.PhaseRunning:
				t.Fatalf("device %s is %s while the only instance is held: %s", d.Name, d.Phase, d.Reason)
			case d.Phase == devices.PhasePending && d.Attempts > 0:
				if !strings.Contains(d.Reason, "retrying in") || d.NextAttempt.IsZero() {
					t.Fatalf("retrying device %s: reason %q, next attempt %v", d.Name, d.Reason, d.NextAttempt)
				}
				retrying++
			}
		}
		return retrying == n
	})
	if got := counterSum(t, reg, "wapper_device_add_retries_total"); got < n {
		t.Fatalf("wapper_device_add_retries_total = %v with %d devices retrying, want at least %d", got, n, n)
	}
	release()
	waitFor(t, "every device running and read", func() bool {
		ok := 0
		for _, d := range m.Devices() {
			if d.Phase == devices.PhaseError {
				t.Fatalf("device %s in Error: %s", d.Name, d.Reason)
			}
			if d.Phase == devices.PhaseRunning && d.Twins[0].Reported != "" {
				ok++
			}
			for _, tw := range d.Twins {
				if tw.Error != "" {
					t.Fatalf("device %s property %s: %s (a read that found the instance busy must be skipped, not failed)", d.Name, tw.Property, tw.Error)
				}
			}
		}
		return ok == n+1
	})
	t.Logf("add retries: %v; phases now %v", counterSum(t, reg, "wapper_device_add_retries_total"), phases(m))
	if got := gaugeValue(t, reg, "wapper_devices", "Running"); got != n+1 {
		t.Fatalf("wapper_devices{phase=Running} = %v, want %d", got, n+1)
	}
}

// counterSum is the sum of a counter over all its labels.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, x := range mf.GetMetric() {
				sum += x.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestPluginFileAppearsLater: a MapperPlugin whose module file is missing
// leaves its devices in Error with the reason; when the file appears, the
// plugin is loaded again on its own and the devices run, without any
// change to the objects or a restart.
func TestPluginFileAppearsLater(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newManagerWith(t, t.TempDir(), dir, func(o *devices.Options) {
		o.RetryMin, o.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	})
	if err := m.Apply(ctx, "manifests", set("d1")); err != nil {
		t.Fatal(err)
	}
	d, err := m.Device("default", "d1")
	if err != nil || d.Phase != devices.PhaseError || !strings.Contains(d.Reason, "module file") {
		t.Fatalf("device of a missing module: %+v %v", d, err)
	}
	if ps := m.Problems(); len(ps) == 0 || !strings.Contains(fmt.Sprint(ps), "loading it again in") {
		t.Fatalf("problems %v: want the plugin failure with its retry", ps)
	}
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "virtual.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device running once its module exists", func() bool {
		d, _ := m.Device("default", "d1")
		return d.Phase == devices.PhaseRunning && d.Twins[0].Reported != ""
	})
	if ps := m.Problems(); len(ps) != 0 {
		t.Fatalf("problems left after recovery: %v", ps)
	}
}

// TestRefusedDeviceIsNotRetried: a device its plugin refuses (a bad
// visitor) is in Error at once, with the plugin's reason, and runs as soon
// as the Device is fixed; the other devices never stop.
func TestRefusedDeviceIsNotRetried(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, t.TempDir())
	s := set("good")
	s.Devices = append(s.Devices, virtualDevice("bad", map[string]any{"kind": "warp"}))
	if err := m.Apply(ctx, "manifests", s); err != nil {
		t.Fatal(err)
	}
	d, _ := m.Device("default", "bad")
	if d.Phase != devices.PhaseError || !strings.Contains(d.Reason, `unknown kind "warp"`) || d.Attempts != 0 {
		t.Fatalf("refused device: %+v", d)
	}
	if g, _ := m.Device("default", "good"); g.Phase != devices.PhaseRunning {
		t.Fatalf("good device: %+v", g)
	}
	s.Devices[1] = virtualDevice("bad", map[string]any{"kind": "counter"})
	if err := m.Apply(ctx, "manifests", s); err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Device("default", "bad"); d.Phase != devices.PhaseRunning {
		t.Fatalf("fixed device: %+v", d)
	}
}

// gaugeValue returns the value of a gauge with the given phase label.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, phase string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, x := range mf.GetMetric() {
			for _, l := range x.GetLabel() {
				if mf.GetName() == name && l.GetName() == "phase" && l.GetValue() == phase {
					return x.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{phase=%q}", name, phase)
	return 0
}

// TestTwinsSurviveRestartNotDeletion: a restarted manager restores its
// devices with their twins (desired and reported) before any source
// applies again, and applying the same objects keeps them; a device its
// source deletes loses its twins, so a device added later under the same
// name starts afresh.
func TestTwinsSurviveRestartNotDeletion(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	pluginDir := filepath.Dir(testenv.Plugin(t, "virtual"))
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(state, "cache"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	start := func() *devices.Manager {
		m, err := devices.New(devices.Options{Engine: eng, Store: st, Logger: slog.New(slog.DiscardHandler),
			Modules:             devices.ModuleLoader{PluginDir: pluginDir},
			DefaultCollectCycle: 50 * time.Millisecond, DefaultReportCycle: 50 * time.Millisecond, FlushInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Restore(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	twin := func(m *devices.Manager, prop string) devices.TwinStatus {
		d, err := m.Device("default", "d1")
		if err != nil {
			t.Fatal(err)
		}
		for _, tw := range d.Twins {
			if tw.Property == prop {
				return tw
			}
		}
		t.Fatalf("no twin %s", prop)
		return devices.TwinStatus{}
	}
	m := start()
	if err := m.Apply(ctx, "manifests", set("d1")); err != nil {
		t.Fatal(err)
	}
	tw, err := m.SetDesired(ctx, "default", "d1", "sp", "7", "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitApplied(ctx, "default", "d1", "sp", tw.DesiredSeq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a counter reading", func() bool { return twin(m, "n").Reported != "" })
	m.Close(ctx)

	// Restart: the device and its twins come back from the store alone.
	m = start()
	if got := twin(m, "sp"); got.Desired != "7" || got.AppliedSeq != tw.DesiredSeq || got.Reported == "" {
		t.Fatalf("after restart, sp twin %+v", got)
	}
	if err := m.Apply(ctx, "manifests", set("d1")); err != nil {
		t.Fatal(err)
	}
	if got := twin(m, "sp"); got.Desired != "7" {
		t.Fatalf("after re-applying the same manifests, sp twin %+v", got)
	}
	// Deleted: the twins go with the device.
	if err := m.DeleteDevice(ctx, "manifests", "default", "d1"); err != nil {
		t.Fatal(err)
	}
	if err := m.UpsertDevice(ctx, "manifests", device1("d1")); err != nil {
		t.Fatal(err)
	}
	if got := twin(m, "sp"); got.Desired != "" || got.DesiredSeq != 0 {
		t.Fatalf("a device added again after its deletion kept the old twin %+v", got)
	}
	m.Close(ctx)
	st.Close()
}
