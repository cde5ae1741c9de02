package devices_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/testenv"
)

func newManager(t *testing.T, state string) *devices.Manager {
	t.Helper()
	return newManagerWith(t, state, filepath.Dir(testenv.Plugin(t, "virtual")), nil)
}

// newManagerWith is newManager with plugins from pluginDir and options
// changed by mod.
func newManagerWith(t *testing.T, state, pluginDir string, mod func(*devices.Options)) *devices.Manager {
	t.Helper()
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(state, "cache"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	opts := devices.Options{Engine: eng, Store: st, Logger: log,
		Modules:             devices.ModuleLoader{PluginDir: pluginDir},
		DefaultCollectCycle: 50 * time.Millisecond, DefaultReportCycle: 50 * time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	m, err := devices.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	if err := m.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func set(device string) devices.ResourceSet {
	return devices.ResourceSet{
		Plugins: []*v1alpha1.MapperPlugin{{ObjectMeta: metav1.ObjectMeta{Name: "virtual"},
			Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"virtual"}, Module: v1alpha1.Module{File: "virtual.wasm"}}}},
		Models: []*v1beta1.DeviceModel{{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "default"},
			Spec: v1beta1.DeviceModelSpec{Protocol: "virtual", Properties: []v1beta1.ModelProperty{
				{Name: "n", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly},
				{Name: "sp", Type: v1beta1.INT, AccessMode: v1beta1.ReadWrite}}}}},
		Devices: []*v1beta1.Device{device1(device)},
	}
}

func device1(name string) *v1beta1.Device {
	return &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "m"}, Properties: []v1beta1.DeviceProperty{
			{Name: "n", Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"kind": "counter"}}}},
			{Name: "sp", Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"kind": "setpoint"}}}},
		}}}
}

func waitFor(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute) // a bound, not a speed: a cold compile under -race on a busy machine takes minutes
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSourcesOwnNames: a name belongs to the first source; another source
// is refused, never merged; after the owner deletes it, it is free.
func TestSourcesOwnNames(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, t.TempDir())
	events, cancel := m.Subscribe("test", 1024)
	defer cancel()
	if err := m.Apply(ctx, "manifests", set("d1")); err != nil {
		t.Fatal(err)
	}
	err := m.UpsertDevice(ctx, "dmi", device1("d1"))
	if !errors.Is(err, devices.ErrConflict) {
		t.Fatalf("other source upserting an owned device: %v, want ErrConflict", err)
	}
	// A whole set from another source: the owned names are refused, the
	// rest applies.
	other := set("d2")
	other.Plugins = nil
	err = m.Apply(ctx, "cloud", other)
	if !errors.Is(err, devices.ErrConflict) {
		t.Fatalf("Apply with an owned model: %v, want ErrConflict", err)
	}
	d2, err := m.Device("default", "d2")
	if err != nil || d2.Source != "cloud" {
		t.Fatalf("d2: %+v %v", d2, err)
	}
	if len(m.Problems()) == 0 {
		t.Fatal("conflict not listed in Problems")
	}
	// Readings arrive as events.
	waitFor(t, "a reading event of d1", func() bool {
		for {
			select {
			case ev := <-events:
				if ev.Type == devices.EventReading && ev.Device == "default/d1" {
					return true
				}
			default:
				return false
			}
		}
	})
	// Desired values: durable, applied, reported follows.
	tw, err := m.SetDesired(ctx, "default", "d1", "sp", "42", "test")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := m.WaitApplied(wctx, "default", "d1", "sp", tw.DesiredSeq); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Device("default", "d1")
	for _, x := range st.Twins {
		if x.Property == "sp" && x.Reported != "42" {
			t.Fatalf("sp reported %q after apply", x.Reported)
		}
	}
	if _, err := m.SetDesired(ctx, "default", "d1", "n", "1", "test"); !errors.Is(err, devices.ErrReadOnly) {
		t.Fatalf("read-only: %v", err)
	}
	if _, err := m.SetDesired(ctx, "default", "d1", "sp", "x", "test"); !errors.Is(err, devices.ErrInvalid) {
		t.Fatalf("invalid: %v", err)
	}
	if _, err := m.SetDesired(ctx, "default", "nope", "sp", "1", "test"); !errors.Is(err, devices.ErrNotFound) {
		t.Fatalf("not found: %v", err)
	}
	// The owner deletes d1: the name is free for another source.
	if err := m.DeleteDevice(ctx, "manifests", "default", "d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Device("default", "d1"); !errors.Is(err, devices.ErrNotFound) {
		t.Fatalf("deleted device still there: %v", err)
	}
	if err := m.UpsertDevice(ctx, "dmi", device1("d1")); err != nil {
		t.Fatalf("free name refused: %v", err)
	}
	if d, _ := m.Device("default", "d1"); d.Source != "dmi" || d.Phase != devices.PhaseRunning {
		t.Fatalf("d1 from dmi: %+v", d)
	}
}

// TestPushPacedByReportCycle: as in mapper-framework, a property's
// pushMethod goes at most once per reportCycle, however often it is read.
func TestPushPacedByReportCycle(t *testing.T) {
	m := newManager(t, t.TempDir())
	events, cancel := m.Subscribe("test", 1000)
	defer cancel()
	rs := set("pushy")
	p := &rs.Devices[0].Spec.Properties[0]
	p.CollectCycle, p.ReportCycle = 20, 3_600_000
	p.PushMethod = &v1beta1.PushMethod{HTTP: &v1beta1.PushMethodHTTP{HostName: "http://127.0.0.1", Port: 1, RequestPath: "/x"}}
	if err := m.Apply(context.Background(), "test", rs); err != nil {
		t.Fatal(err)
	}
	readings, pushes := 0, 0
	waitFor(t, "20 readings of property n", func() bool {
		for {
			select {
			case ev := <-events:
				if ev.Type == devices.EventReading && ev.Twins[0].Property == "n" {
					readings++
					if ev.PushesHTTP() {
						pushes++
					}
				}
			default:
				return readings >= 20
			}
		}
	})
	if pushes != 1 {
		t.Fatalf("%d of %d readings carry the pushMethod, want 1 (reportCycle is an hour)", pushes, readings)
	}
}
