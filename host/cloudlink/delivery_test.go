package cloudlink_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/runtime"
	hoststore "wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/registry/fetch"
)

// logBuffer collects log records for a test to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pluginFetching is a MapperPlugin of the virtual module pulled from ref,
// pinned by pin.
func pluginFetching(ref string, pin digest.Digest) string {
	return `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: PLUGIN}
spec:
  protocols: [PROTO]
  module: {image: "` + ref + `", digest: "` + pin.String() + `"}`
}

// TestPinMismatchIsARefusal: a module that does not match its pin is
// refused, naming the pinned and the actual digests. With the registry in
// the host's reach the host does not turn to the cloud for it; with the
// registry out of its reach the cloud's answer is the same definite
// refusal (422), not a failed pull.
func TestPinMismatchIsARefusal(t *testing.T) {
	ref, manifest, wasm := registry(t)
	module := digest.FromBytes(wasm)
	c := newCluster(t)
	var cloudLog logBuffer
	cl := c.startCloud(t, "", func(cfg *server.Config) {
		cfg.Fetch = fetch.Options{Client: regtest.ClientOptions()}
		cfg.Logger = cloudLog.logger()
	})
	wrong := digest.FromString("not the plugin")
	c.apply(t, names(t, c, pluginFetching(ref, wrong)+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")+"\n---\n"+device("b1", c.node("b"), "20")))
	tok := c.token(t, c.node("a"))
	dir := t.TempDir()
	var hostLog logBuffer
	a := startHost(t, cl.url, c.node("a"), tok, cl.ca, filepath.Join(dir, "a.db"), func(o *cloudlink.Options) {
		o.Logger = hostLog.logger()
		o.Direct = resolverFunc(func(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
			return fetch.Module(ctx, p.Spec.Module.Image, digest.Digest(p.Spec.Module.Digest), filepath.Join(dir, "modules"), fetch.Options{Client: regtest.ClientOptions()})
		})
	})
	p := a.sink.wait(t, "the plugin", func(s cloudlink.Set) bool { return len(s.Plugins) == 1 }).Plugins[0]
	namesDigests := func(err error) {
		t.Helper()
		for _, d := range []digest.Digest{wrong, manifest, module} {
			if !strings.Contains(err.Error(), d.String()) {
				t.Errorf("refusal does not name %s: %v", d, err)
			}
		}
	}

	_, err := a.link.Module(context.Background(), p)
	if !errors.Is(err, fetch.ErrMismatch) {
		t.Fatalf("registry in reach, wrong pin: %v; want fetch.ErrMismatch", err)
	}
	namesDigests(err)
	if strings.Contains(hostLog.String(), "through the cloud") || strings.Contains(err.Error(), "through the cloud") {
		t.Fatalf("the host turned to the cloud after the registry's answer:\n%s", hostLog.String())
	}
	if strings.Contains(cloudLog.String(), "modules:") {
		t.Fatalf("the cloud was asked for the module:\n%s", cloudLog.String())
	}

	// Node b cannot reach the registry: the cloud pulls, and refuses.
	b := startHost(t, cl.url, c.node("b"), c.token(t, c.node("b")), cl.ca, filepath.Join(t.TempDir(), "b.db"), func(o *cloudlink.Options) {
		o.Direct = directFetch{dir: t.TempDir()}
	})
	p = b.sink.wait(t, "the plugin on node b", func(s cloudlink.Set) bool { return len(s.Plugins) == 1 }).Plugins[0]
	_, err = b.link.Module(context.Background(), p)
	if !errors.Is(err, fetch.ErrMismatch) || !strings.Contains(err.Error(), "422") {
		t.Fatalf("through the cloud, wrong pin: %v; want the cloud's 422 as fetch.ErrMismatch", err)
	}
	namesDigests(err)
}

// resolverFunc adapts a function to cloudlink.ModuleResolver and
// devices.ModuleResolver.
type resolverFunc func(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error)

func (f resolverFunc) Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	return f(ctx, p)
}

// managed is a host's device manager with its state, as wapper-host runs
// it.
type managed struct {
	st  *hoststore.Store
	eng *runtime.Engine
	mgr *devices.Manager
}

// startManager opens the state in dir and a manager resolving modules with
// mods, as wapper-host does (its module cache is dir/modules).
func startManager(t *testing.T, dir string, mods devices.ModuleResolver, log *slog.Logger) *managed {
	t.Helper()
	st, err := hoststore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "compile-cache"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := devices.New(devices.Options{Engine: eng, Store: st, Modules: mods, Logger: log,
		DefaultCollectCycle: 50 * time.Millisecond, DefaultReportCycle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := &managed{st: st, eng: eng, mgr: mgr}
	t.Cleanup(func() { m.close(t) })
	return m
}

func (m *managed) close(t *testing.T) {
	if m.mgr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.mgr.Close(ctx); err != nil {
		t.Errorf("close devices: %v", err)
	}
	if err := m.eng.Close(ctx); err != nil {
		t.Errorf("close engine: %v", err)
	}
	if err := m.st.Close(); err != nil {
		t.Errorf("close state: %v", err)
	}
	m.mgr = nil
}

func (m *managed) waitRunning(t *testing.T, ns, name string) {
	t.Helper()
	waitUntil(t, name+" running", func() (bool, error) {
		d, err := m.mgr.Device(ns, name)
		return err == nil && d.Phase == devices.PhaseRunning, err
	})
}

// TestRestartRunsTheCloudsModule: a host whose module came through the
// cloud (the registry out of its reach), restarted on the same state with
// the cloud down, runs its devices at once: the manager restores them
// before any link exists, and the module cache it reads directly holds
// the module the cloud served, checked by digest.
func TestRestartRunsTheCloudsModule(t *testing.T) {
	ref, manifest, _ := registry(t)
	c := newCluster(t)
	cl := c.startCloud(t, "", func(cfg *server.Config) { cfg.Fetch = fetch.Options{Client: regtest.ClientOptions()} })
	c.apply(t, names(t, c, pluginFetching(ref, manifest)+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	tok := c.token(t, c.node("a"))
	dir := t.TempDir()
	modules := filepath.Join(dir, "modules")
	// The host's own registry access (as devices.ModuleLoader): HTTPS to
	// a plain-HTTP registry, so it never reaches it.
	direct := directFetch{dir: modules}
	var hostLog logBuffer
	log := hostLog.logger()

	// First run: the module comes through the cloud.
	var link atomic.Pointer[cloudlink.Link]
	h := startManager(t, dir, resolverFunc(func(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
		if l := link.Load(); l != nil {
			return l.Module(ctx, p)
		}
		return direct.Module(ctx, p)
	}), log)
	if err := h.mgr.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := cloudlink.LoadCA(cl.ca)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cloudlink.New(cloudlink.Options{URL: cl.url, Node: c.node("a"), Token: tok, TLS: tlsCfg, DB: h.st.DB(),
		Direct: direct, ModuleDir: modules, Logger: log, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Sink: cloudlink.SinkFunc(func(ctx context.Context, s cloudlink.Set) error {
			return h.mgr.Apply(ctx, cloudlink.Source, devices.ResourceSet{Devices: s.Devices, Models: s.Models, Plugins: s.Plugins})
		})})
	if err != nil {
		t.Fatal(err)
	}
	link.Store(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	h.waitRunning(t, c.ns, "a1")
	if !strings.Contains(hostLog.String(), "fetching the module through the cloud") {
		t.Fatalf("the module did not come through the cloud:\n%s", hostLog.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("link: %v", err)
	}
	h.close(t)
	cl.stop()

	// Restart with the cloud down: restored before any link, from the
	// module cache alone.
	h = startManager(t, dir, direct, log)
	if err := h.mgr.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.mgr.Problems() {
		if p.Kind == devices.KindMapperPlugin {
			t.Fatalf("plugin not loaded at restart: %s", p.Reason)
		}
	}
	h.waitRunning(t, c.ns, "a1")
}
