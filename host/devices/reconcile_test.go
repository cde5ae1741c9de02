package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// noModules fails every module, so that plugins fail to load and their
// devices are planned without any plugin call: what is measured and
// counted is the manager's own work.
type noModules struct{}

func (noModules) Module(context.Context, *v1alpha1.MapperPlugin) ([]byte, error) {
	return nil, errors.New("no modules here")
}

// newPlanManager returns a manager whose plugins never load, on a store in
// dir, closed at the end of the test.
func newPlanManager(t testing.TB, dir string) *Manager {
	t.Helper()
	m, closeAll := openPlanManager(t, dir)
	t.Cleanup(closeAll)
	return m
}

// openPlanManager returns a manager whose plugins never load, on a store
// in dir, and a function that closes it, its engine and its store.
func openPlanManager(t testing.TB, dir string) (*Manager, func()) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "cache"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Engine: eng, Store: st, Modules: noModules{}, Logger: log, RetryMin: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	return m, func() {
		ctx := context.Background()
		if err := m.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := eng.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}
}

func recPlugin(name string, protocols ...string) *v1alpha1.MapperPlugin {
	return &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.MapperPluginSpec{Protocols: protocols, Module: v1alpha1.Module{File: name + ".wasm"}}}
}

func recModel(name, protocol string) *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: v1beta1.DeviceModelSpec{Protocol: protocol, Properties: []v1beta1.ModelProperty{{Name: "n", Type: v1beta1.INT}}}}
}

func recDevice(name, model string) *v1beta1.Device {
	return &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: model}}}
}

// TestReconcilePlansOnlyWhatChanged checks that each change plans the
// devices it touches and no others, and that they end up as a full
// reconciliation would leave them.
func TestReconcilePlansOnlyWhatChanged(t *testing.T) {
	m := newPlanManager(t, t.TempDir())
	ctx := context.Background()
	if err := m.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	set := ResourceSet{
		Plugins: []*v1alpha1.MapperPlugin{recPlugin("virtual", "virtual"), recPlugin("modbus", "modbus")},
		Models:  []*v1beta1.DeviceModel{recModel("m1", "virtual"), recModel("m2", "modbus")},
		Devices: []*v1beta1.Device{recDevice("a", "m1"), recDevice("b", "m1"), recDevice("c", "m2")},
	}
	step := func(what string, want int64, fn func() error) {
		t.Helper()
		before := m.plans.Load()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := m.plans.Load() - before; got != want {
			t.Errorf("%s planned %d devices, want %d", what, got, want)
		}
	}
	reason := func(name string) string {
		t.Helper()
		st, err := m.Device("default", name)
		if err != nil {
			t.Fatal(err)
		}
		return st.Reason
	}
	step("the first apply", 3, func() error { return m.Apply(ctx, "manifests", set) })
	if r := reason("c"); !strings.Contains(r, "MapperPlugin modbus failed") {
		t.Errorf("c: %s", r)
	}
	step("the same set again", 0, func() error { return m.Apply(ctx, "manifests", set) })

	d := recDevice("a", "m1")
	d.Spec.Properties = []v1beta1.DeviceProperty{{Name: "n", CollectCycle: 500}}
	set.Devices[0] = d
	step("an apply changing one device", 1, func() error { return m.Apply(ctx, "manifests", set) })

	step("a new device of another source", 1, func() error { return m.UpsertDevice(ctx, "dmi", recDevice("x", "mx")) })
	if r := reason("x"); !strings.Contains(r, "DeviceModel default/mx") {
		t.Errorf("x: %s", r)
	}
	step("the same device again", 0, func() error { return m.UpsertDevice(ctx, "dmi", recDevice("x", "mx")) })
	step("its model", 1, func() error { return m.UpsertModel(ctx, "dmi", recModel("mx", "opcua")) })
	if r := reason("x"); !strings.Contains(r, `no MapperPlugin provides protocol "opcua"`) {
		t.Errorf("x: %s", r)
	}
	step("a plugin for its protocol", 1, func() error { return m.UpsertPlugin(ctx, "dmi", recPlugin("opc", "opcua")) })
	if r := reason("x"); !strings.Contains(r, "MapperPlugin opc failed") {
		t.Errorf("x: %s", r)
	}

	pinned := recModel("m2", "modbus")
	pinned.Annotations = map[string]string{v1alpha1.PluginAnnotation: "opc"}
	set.Models[1] = pinned
	step("an apply pinning m2 to another plugin", 1, func() error { return m.Apply(ctx, "manifests", set) })
	step("a change to the pinned plugin", 2, func() error { return m.UpsertPlugin(ctx, "dmi", recPlugin("opc", "opcua", "other")) })
	step("removing the pinned plugin", 2, func() error { return m.DeletePlugin(ctx, "dmi", "opc") })
	if r := reason("c"); !strings.Contains(r, `pins MapperPlugin "opc"`) {
		t.Errorf("c: %s", r)
	}

	set.Plugins = set.Plugins[1:] // without virtual
	step("an apply removing the plugin of m1", 2, func() error { return m.Apply(ctx, "manifests", set) })
	if r := reason("b"); !strings.Contains(r, `no MapperPlugin provides protocol "virtual"`) {
		t.Errorf("b: %s", r)
	}
	step("removing a device", 0, func() error { return m.DeleteDevice(ctx, "dmi", "default", "x") })
	if _, err := m.Device("default", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed device: %v", err)
	}
	step("removing a model no device uses", 0, func() error { return m.DeleteModel(ctx, "dmi", "default", "mx") })
	step("removing a model devices use", 2, func() error { return m.DeleteModel(ctx, "manifests", "default", "m1") })
	if r := reason("a"); !strings.Contains(r, "DeviceModel default/m1") {
		t.Errorf("a: %s", r)
	}
}

// TestRunRestoresServesAndCloses checks that Run restores what was
// applied before a restart, signals Restored, and closes when its context
// ends.
func TestRunRestoresServesAndCloses(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, closeFirst := openPlanManager(t, dir)
	if err := m.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	set := ResourceSet{Plugins: []*v1alpha1.MapperPlugin{recPlugin("virtual", "virtual")},
		Models: []*v1beta1.DeviceModel{recModel("m", "virtual")}}
	for i := range 3 {
		set.Devices = append(set.Devices, recDevice(fmt.Sprint("d", i), "m"))
	}
	if err := m.Apply(ctx, "manifests", set); err != nil {
		t.Fatal(err)
	}
	if err := m.UpsertDevice(ctx, "dmi", recDevice("e", "m")); err != nil {
		t.Fatal(err)
	}
	closeFirst()

	// Run on the same state, without Restore.
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "cache"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	m, err = New(Options{Engine: eng, Store: st, Modules: noModules{}, Logger: slog.New(slog.DiscardHandler), RetryMin: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	<-m.Restored()
	if n := len(m.Devices()); n != 4 {
		t.Errorf("%d devices restored, want 4", n)
	}
	if devs, _ := m.Owned("dmi"); len(devs) != 1 {
		t.Errorf("dmi owns %v", devs)
	}
	if err := m.Apply(ctx, "manifests", ResourceSet{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := m.Apply(ctx, "manifests", ResourceSet{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Run returned: %v", err)
	}
}
