package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"wapper.dev/wapper/abi"
	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
)

// reportRecorder is a reporter that keeps what it is given.
type reportRecorder struct {
	mu      sync.Mutex
	devices []linkproto.DeviceReport
	plugins []linkproto.PluginReport
	wake    chan struct{}
}

func newReportRecorder() *reportRecorder { return &reportRecorder{wake: make(chan struct{}, 1)} }

func (r *reportRecorder) ReportDevice(d linkproto.DeviceReport) error {
	r.mu.Lock()
	r.devices = append(r.devices, d)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *reportRecorder) ReportPlugin(p linkproto.PluginReport) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plugins = append(r.plugins, p)
	return nil
}

// cloudSet is one plugin (the virtual module from the plugin folder), its
// model and a device, as the cloud delivers them.
const cloudSet = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m, namespace: default}
spec:
  protocol: virtual
  properties:
  - {name: n, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d, namespace: default}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: virtual}
  properties:
  - {name: n, visitors: {protocolName: virtual, configData: {kind: counter}}}
`

// cloudManager runs a device manager resolving modules through mods, with
// the objects of cloudSet applied as the cloud's, and waits until the
// device runs.
func cloudManager(t *testing.T, mods *cloudModules, stateCycle time.Duration) *devices.Manager {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil))
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "cache"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := devices.New(devices.Options{Engine: eng, Store: st, Logger: log, Modules: mods, StateCycle: stateCycle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			t.Errorf("close devices: %v", err)
		}
		if err := eng.Close(ctx); err != nil {
			t.Errorf("close engine: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close state: %v", err)
		}
	})
	if err := mgr.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	set := manifest.Parse("cloud.yaml", []byte(cloudSet))
	if len(set.Problems) > 0 {
		t.Fatalf("manifest: %+v", set.Problems)
	}
	if err := mgr.Apply(context.Background(), cloudlink.Source, devices.ResourceSet{Devices: set.Devices, Models: set.Models, Plugins: set.Plugins}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, err := mgr.Device("default", "d")
		if err == nil && d.Phase == devices.PhaseRunning {
			return mgr
		}
		if time.Now().After(deadline) {
			t.Fatalf("device not running: %+v %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPluginReportCarriesDigest: the plugin state sent to the cloud
// carries the digest of the module the plugin runs, the sha256 of the
// bytes it compiled.
func TestPluginReportCarriesDigest(t *testing.T) {
	virtual := testenv.Plugin(t, "virtual")
	wasm, err := os.ReadFile(virtual)
	if err != nil {
		t.Fatal(err)
	}
	mods := &cloudModules{direct: devices.ModuleLoader{PluginDir: filepath.Dir(virtual)}}
	mgr := cloudManager(t, mods, 0)
	rec := newReportRecorder()
	last := map[string]linkproto.PluginReport{}
	reportPlugins(mgr, rec, mods.Digest, last, slog.New(slog.DiscardHandler))
	want := linkproto.PluginReport{Name: "virtual", Phase: string(mappersv1alpha1.PhaseLoaded), Digest: digest.FromBytes(wasm).String()}
	if len(rec.plugins) != 1 || rec.plugins[0] != want {
		t.Fatalf("plugin reports %+v, want [%+v]", rec.plugins, want)
	}
	// Unchanged: not sent again.
	reportPlugins(mgr, rec, mods.Digest, last, slog.New(slog.DiscardHandler))
	if len(rec.plugins) != 1 {
		t.Fatalf("unchanged plugin reported again: %+v", rec.plugins)
	}

	// A failed resolution forgets the digest: the plugin runs nothing new.
	p := &mappersv1alpha1.MapperPlugin{}
	p.Name, p.Spec.Module.File = "virtual", "missing.wasm"
	if _, err := mods.Module(context.Background(), p); err == nil {
		t.Fatal("a missing module file resolved")
	}
	if d := mods.Digest("virtual"); d != "" {
		t.Fatalf("digest %q kept after a failed resolution", d)
	}
}

// TestPluginReportCarriesRejectedModule: after a hot upgrade rolled back,
// the plugin state sent to the cloud keeps the digest of the module that
// runs and names the rejected module and why, which wapper-cloud's
// rollout reads to pause; asking for the running module again clears it.
func TestPluginReportCarriesRejectedModule(t *testing.T) {
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	module := filepath.Join(dir, "virtual.wasm")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	mods := &cloudModules{direct: devices.ModuleLoader{PluginDir: dir}}
	mgr := cloudManager(t, mods, 0)
	set := manifest.Parse("cloud.yaml", []byte(cloudSet))
	apply := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(module, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := mgr.Apply(context.Background(), cloudlink.Source, devices.ResourceSet{Devices: set.Devices, Models: set.Models, Plugins: set.Plugins}); err != nil {
			t.Fatal(err)
		}
	}
	bad := []byte("\x00asm\x01\x00\x00\x00 not a module")
	apply(bad)
	rec := newReportRecorder()
	last := map[string]linkproto.PluginReport{}
	reportPlugins(mgr, rec, mods.Digest, last, slog.New(slog.DiscardHandler))
	if len(rec.plugins) != 1 {
		t.Fatalf("plugin reports %+v, want one", rec.plugins)
	}
	r := rec.plugins[0]
	if r.Phase != string(mappersv1alpha1.PhaseLoaded) || r.Digest != digest.FromBytes(wasm).String() ||
		r.RejectedDigest != digest.FromBytes(bad).String() || !strings.Contains(r.Message, "did not load") {
		t.Fatalf("report after a rolled-back upgrade: %+v, want Loaded %s, rejected %s with the reason", r, digest.FromBytes(wasm), digest.FromBytes(bad))
	}

	apply(wasm)
	reportPlugins(mgr, rec, mods.Digest, last, slog.New(slog.DiscardHandler))
	want := linkproto.PluginReport{Name: "virtual", Phase: string(mappersv1alpha1.PhaseLoaded), Digest: digest.FromBytes(wasm).String()}
	if len(rec.plugins) != 2 || rec.plugins[1] != want {
		t.Fatalf("plugin reports %+v, want the rejection cleared: %+v", rec.plugins, want)
	}
}

// TestLastOnlineTimeOnEveryOnlineReport: as edgecore does, every ok or
// online state report refreshes lastOnlineTime in the cloud, not only a
// change of state; other states are sent when they change, without it.
func TestLastOnlineTimeOnEveryOnlineReport(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		state   abi.State
		changed bool
		kept    bool
		online  string
	}{
		{abi.StateOK, true, true, "2026-01-02T03:04:05Z"},
		{abi.StateOK, false, true, "2026-01-02T03:04:05Z"},
		{abi.StateOnline, false, true, "2026-01-02T03:04:05Z"},
		{abi.StateOffline, true, true, ""},
		{abi.StateOffline, false, false, ""},
		{abi.StateUnhealthy, false, false, ""},
		{abi.StateUnknown, true, true, ""},
	} {
		ev := devices.Event{Type: devices.EventState, Namespace: "ns", Name: "d", Time: at.In(time.FixedZone("x", 3600)), State: tc.state, Changed: tc.changed}
		if got := forwarded(&ev); got != tc.kept {
			t.Errorf("%s changed=%v: forwarded %v, want %v", tc.state, tc.changed, got, tc.kept)
		}
		r := deviceReport(&ev)
		if r.State != tc.state.String() || r.LastOnlineTime != tc.online || r.Namespace != "ns" || r.Name != "d" {
			t.Errorf("%s changed=%v: report %+v, want lastOnlineTime %q", tc.state, tc.changed, r, tc.online)
		}
	}

	// Through the manager: the virtual device stays ok, and each state
	// cycle refreshes its lastOnlineTime.
	mods := &cloudModules{direct: devices.ModuleLoader{PluginDir: filepath.Dir(testenv.Plugin(t, "virtual"))}}
	mgr := cloudManager(t, mods, 20*time.Millisecond)
	events, unsubscribe := mgr.SubscribeFunc("cloud", 4096, forwarded)
	defer unsubscribe()
	rec := newReportRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		forwardReports(ctx, mgr, rec, mods.Digest, events, slog.New(slog.DiscardHandler))
	}()
	defer func() { cancel(); <-done }()
	deadline := time.After(2 * time.Minute)
	for {
		rec.mu.Lock()
		var online []linkproto.DeviceReport
		for _, r := range rec.devices {
			if r.State == "ok" && r.LastOnlineTime != "" {
				online = append(online, r)
			}
		}
		rec.mu.Unlock()
		if len(online) >= 3 {
			return
		}
		select {
		case <-rec.wake:
		case <-deadline:
			t.Fatalf("%d ok reports with lastOnlineTime after 2 minutes, want 3 (one per state cycle)", len(online))
		}
	}
}
