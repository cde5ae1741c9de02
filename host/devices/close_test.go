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
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/testenv"
)

// counterValue sums a counter over the series whose labels include want.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, x := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range x.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue series
				}
			}
			sum += x.GetCounter().GetValue()
		}
	}
	return sum
}

// TestCloseHonoursContext: a device whose read is stuck in its plugin (a
// WASI sleep far longer than the test, under a long call deadline) does not
// keep Close from returning when its context ends; the error names the
// device, and the other device's readings are saved.
func TestCloseHonoursContext(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(state, "cache"), Logger: log, Metrics: runtime.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	// No cleanup waits without a bound: the stuck call outlives the test.
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		eng.Close(cctx)
	})
	// The faulty plugin for the stuck device, the virtual one for the
	// other.
	pluginDir := t.TempDir()
	for _, src := range []string{testenv.TestPlugin(t, "faulty"), testenv.Plugin(t, "virtual")} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pluginDir, filepath.Base(src)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := devices.New(devices.Options{Engine: eng, Store: st, Logger: log,
		Modules:             devices.ModuleLoader{PluginDir: pluginDir},
		DefaultCollectCycle: 20 * time.Millisecond, DefaultReportCycle: 20 * time.Millisecond, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	virtual := set("fine")
	all := devices.ResourceSet{
		Plugins: []*v1alpha1.MapperPlugin{{ObjectMeta: metav1.ObjectMeta{Name: "faulty"},
			Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"faulty"}, Module: v1alpha1.Module{File: "faulty.wasm"},
				// A call deadline far beyond the test.
				Limits: v1alpha1.Limits{Instances: 1, CallTimeout: metav1.Duration{Duration: v1alpha1.MaxCallTimeout}}}}},
		Models: []*v1beta1.DeviceModel{{ObjectMeta: metav1.ObjectMeta{Name: "faulty", Namespace: "default"},
			Spec: v1beta1.DeviceModelSpec{Protocol: "faulty", Properties: []v1beta1.ModelProperty{
				{Name: "n", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly}}}}},
		Devices: []*v1beta1.Device{{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Namespace: "default"},
			Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "faulty"}, Properties: []v1beta1.DeviceProperty{
				{Name: "n", Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"fault": "sleep", "ms": 600000}}}}}}}},
	}
	all.Plugins = append(all.Plugins, virtual.Plugins...)
	all.Models = append(all.Models, virtual.Models...)
	all.Devices = append(all.Devices, virtual.Devices...)
	if err := m.Apply(ctx, "manifests", all); err != nil {
		t.Fatal(err)
	}
	// The stuck device's read has begun once the faulty plugin's only
	// read was called (the counter counts calls as they start), with
	// wapper_read_many when the plugin has it, else wapper_read.
	waitFor(t, "the stuck read in progress and a reading of the other device", func() bool {
		d, _ := m.Device("default", "fine")
		reads := counterValue(t, reg, "wapper_plugin_calls_total", map[string]string{"plugin": "faulty", "export": "wapper_read"}) +
			counterValue(t, reg, "wapper_plugin_calls_total", map[string]string{"plugin": "faulty", "export": "wapper_read_many"})
		return reads >= 1 &&
			len(d.Twins) > 0 && d.Twins[0].Reported != ""
	})

	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- m.Close(cctx) }()
	select {
	case err = <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30s of a context of 500ms")
	}
	if err == nil || !strings.Contains(err.Error(), "default/stuck") || strings.Contains(err.Error(), "default/fine") {
		t.Fatalf("Close error %v, want one naming default/stuck (only)", err)
	}
	tw, err := st.Twins("default/fine")
	if err != nil || tw["n"].Reported == "" {
		t.Fatalf("the fine device's reading was not saved at Close: %+v, %v", tw, err)
	}
	// Closed: changes are refused, without waiting.
	if err := m.Apply(ctx, "manifests", all); err == nil {
		t.Fatal("Apply after Close succeeded")
	}
	st.Close()
}

// TestProblemsWhileReconfiguring: Problems may be called while devices
// are reconfigured; under -race this checks that it reads each device's
// source, phase and reason under the device's lock.
func TestProblemsWhileReconfiguring(t *testing.T) {
	ctx := context.Background()
	m := newManagerWith(t, t.TempDir(), t.TempDir(), nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, p := range m.Problems() {
				if p.Kind == devices.KindDevice && p.Source != "manifests" {
					t.Errorf("problem %+v: want source manifests", p)
				}
			}
		}
	}()
	for i := range 50 {
		// A model that does not exist: the device is in Error, with a
		// reason (and so a configuration) that changes every time.
		d := device1("d1")
		d.Spec.DeviceModelRef.Name = fmt.Sprint("missing-", i)
		if err := m.Apply(ctx, "manifests", devices.ResourceSet{Devices: []*v1beta1.Device{d}}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if ps := m.Problems(); len(ps) != 1 || !strings.Contains(ps[0].Reason, "missing-49") {
		t.Fatalf("problems %v", ps)
	}
}
