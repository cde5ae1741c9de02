package devices

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/testenv"
)

// BenchmarkRegister registers N devices of one model on a fresh manager:
// "apply" in one Apply of the whole set (the manifests folder), "batch"
// in one UpsertDevices (DMI's MapperRegister answer), "upsert" one
// UpsertDevice each (a source that sends devices one by one, as DMI's
// RegisterDevice does; each is saved durably, so this one includes an
// fsync per device).
// With "failed" the plugin's module does not load, so the devices are
// planned and configured but no plugin is called: the manager's own cost.
// With "virtual" they are added to the virtual plugin (collect cycles of
// an hour, so that reads do not count). ns/device stays flat from 1,000
// to 10,000 devices when registration is linear.
func BenchmarkRegister(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, mode := range []string{"apply", "batch", "upsert"} {
			b.Run(fmt.Sprintf("failed/%s/%d", mode, n), func(b *testing.B) {
				benchRegister(b, mode, n, noModules{})
			})
		}
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("virtual/apply/%d", n), func(b *testing.B) {
			benchRegister(b, "apply", n, ModuleLoader{PluginDir: filepath.Dir(testenv.Plugin(b, "virtual"))})
		})
	}
}

func benchRegister(b *testing.B, mode string, n int, mods ModuleResolver) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(b.TempDir(), "cache"), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close(ctx)
	plugin := recPlugin("virtual", "virtual")
	model := recModel("m", "virtual")
	devs := make([]*v1beta1.Device, n)
	for i := range devs {
		devs[i] = recDevice(fmt.Sprintf("dev-%05d", i), "m")
		devs[i].Spec.Properties = []v1beta1.DeviceProperty{{Name: "n", CollectCycle: 3_600_000, ReportCycle: 3_600_000}}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dir, err := os.MkdirTemp(b.TempDir(), "state")
		if err != nil {
			b.Fatal(err)
		}
		st, err := store.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		m, err := New(Options{Engine: eng, Store: st, Modules: mods, Logger: log, RetryMin: 1 << 40,
			StateCycle: time.Hour, FlushInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Restore(ctx); err != nil {
			b.Fatal(err)
		}
		if err := m.Apply(ctx, "base", ResourceSet{Plugins: []*v1alpha1.MapperPlugin{plugin}, Models: []*v1beta1.DeviceModel{model}}); err != nil {
			b.Fatal(err)
		}
		plans := m.plans.Load()
		b.StartTimer()
		switch mode {
		case "apply":
			if err := m.Apply(ctx, "devices", ResourceSet{Devices: devs}); err != nil {
				b.Fatal(err)
			}
		case "batch":
			for _, err := range m.UpsertDevices(ctx, "devices", devs) {
				if err != nil {
					b.Fatal(err)
				}
			}
		case "upsert":
			for _, d := range devs {
				if err := m.UpsertDevice(ctx, "devices", d); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		if got := m.plans.Load() - plans; got != int64(n) {
			b.Fatalf("%d devices planned, want %d", got, n)
		}
		if err := m.Close(ctx); err != nil {
			b.Fatal(err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/device")
}
