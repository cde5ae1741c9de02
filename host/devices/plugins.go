package devices

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/kv"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/registry/fetch"
)

var pluginGen atomic.Uint64

// pluginEntry is one MapperPlugin and, when it loaded, its running plugin.
type pluginEntry struct {
	name   string
	source string
	spec   string // JSON of the spec, to notice changes
	obj    *v1alpha1.MapperPlugin
	gen    uint64
	p      *runtime.Plugin
	err    error
	// failures counts failed loads in a row; retryAt is when a failed
	// plugin is loaded again.
	failures int
	retryAt  time.Time
	reads    readChooser
	readings prometheus.Counter // wapper_readings_total of this plugin
	skips    prometheus.Counter // wapper_reads_skipped_total of this plugin
	// digest is the sha256 of the module the plugin runs, "sha256:<hex>"
	// (empty when it failed to load); store is its kv store, which a hot
	// upgrade hands to the new version.
	digest string
	store  *kv.Store
	// rejected is the digest of the last module a hot upgrade of this
	// plugin rolled back from, and rejectedWhy why; guarded by
	// Manager.mu. released is set once a hot upgrade moved every device
	// away, so that closing it logs the release.
	rejected, rejectedWhy string
	released              bool
	// upgradeFailures counts the failed resolutions in a row of a new
	// module for a hot upgrade, upgradeAt is when it is tried again;
	// guarded by Manager.mu.
	upgradeFailures int
	upgradeAt       time.Time
}

// readChooser picks, for one plugin, how a device's properties that share
// a collect cycle are read: one wapper_read_batch call, or one wapper_read
// per property. A plugin that merges requests (Modbus) saves device round
// trips in a batch; one whose batch only loops over reads (the Go SDK's
// default) spends more CPU on it, as passing the handle list costs more
// guest calls (and guest allocations) than it saves. At the start of every
// window of reads it probes both modes, measuring per property the wall
// time and the CPU time of the calling thread (where the OS tells it).
// When even the quickest single read took far longer than the CPU it used
// (a device round trip: the quickest is the least disturbed by a busy pool
// or a loaded machine), it compares the quickest wall times, else the mean
// CPU times, and takes the batch only when it is clearly cheaper (by a
// fifth).
type readChooser struct {
	mu     sync.Mutex // guards the fields below
	n      int
	quick  [2]time.Duration // quickest wall time by mode (0 single, 1 batch)
	cpu    [2]time.Duration // sums by mode
	counts [2]int
}

const (
	chooserProbes = 16   // samples of each mode before choosing
	chooserWindow = 8192 // group reads before probing again
)

// pick tells whether the next group read should be one batch call, and
// whether it is a probe to measure and [readChooser.record].
func (c *readChooser) pick() (batch, probe bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.n > chooserWindow {
		c.n, c.quick, c.cpu, c.counts = 1, [2]time.Duration{}, [2]time.Duration{}, [2]int{}
	}
	switch {
	case c.counts[1] < chooserProbes && c.counts[1] <= c.counts[0]:
		return true, true
	case c.counts[0] < chooserProbes:
		return false, true
	}
	if c.quick[0] > 2*c.cpu[0]/chooserProbes { // waiting for the device
		return c.quick[1] < c.quick[0]*4/5, false
	}
	return c.cpu[1] < c.cpu[0]*4/5, false // equal counts: compare sums
}

// probe runs fn and returns its wall time and the CPU time of the thread
// that ran it (the wall time where the OS does not tell).
func probe(fn func()) (wall, cpu time.Duration) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	c0, ok := threadCPU()
	w0 := time.Now()
	fn()
	wall = time.Since(w0)
	if c1, ok1 := threadCPU(); ok && ok1 {
		return wall, c1 - c0
	}
	return wall, wall
}

// record notes what a probe read of n properties cost.
func (c *readChooser) record(batch bool, wall, cpu time.Duration, n int) {
	mode := 0
	if batch {
		mode = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts[mode] < chooserProbes {
		c.counts[mode]++
		if w := wall / time.Duration(n); c.quick[mode] == 0 || w < c.quick[mode] {
			c.quick[mode] = w
		}
		c.cpu[mode] += cpu / time.Duration(n)
	}
}

// parallel implements [reader]: the plugin's instances.
func (e *pluginEntry) parallel() int { return e.p.Config().Instances }

// home implements [reader].
func (e *pluginEntry) home(dev uint32) int { return e.p.Home(dev) }

// states implements [reader].
func (e *pluginEntry) states(ctx context.Context, devs []uint32, out []stateResult) []stateResult {
	return e.p.StateMany(ctx, devs, out)
}

// readMany implements [reader]: with one wapper_read_many call when the
// plugin has it, else one device after another, each device's properties
// with one batch call or one call each, as [readChooser] picks. When a
// device's read fails because ctx ended (no instance came free in time),
// the whole call fails with that error.
func (e *pluginEntry) readMany(ctx context.Context, reqs []readReq, out []abi.BatchEntry) ([]abi.BatchEntry, error) {
	if e.p.Info().Has(abi.ExportReadMany) {
		return e.p.ReadMany(ctx, reqs, out)
	}
	out = out[:0]
	var handles []uint32
	for i := 0; i < len(reqs); {
		j := i + 1
		for j < len(reqs) && reqs[j].Device == reqs[i].Device {
			j++
		}
		handles = handles[:0]
		for _, r := range reqs[i:j] {
			handles = append(handles, r.Handle)
		}
		var err error
		if out, err = e.readDevice(ctx, reqs[i].Device, handles, out); err != nil {
			return out, err
		}
		i = j
	}
	return out, nil
}

// readDevice reads properties of one device and appends their entries to
// out; the error is returned only when ctx ended.
func (e *pluginEntry) readDevice(ctx context.Context, dev uint32, handles []uint32, out []abi.BatchEntry) ([]abi.BatchEntry, error) {
	p := e.p
	batch, probing := len(handles) > 1, false
	if batch {
		batch, probing = e.reads.pick()
	}
	if !batch {
		var wall, cpu time.Duration
		for _, h := range handles {
			var v abi.Value
			var err error
			if probing {
				w, c := probe(func() { v, err = p.Read(ctx, dev, h) })
				wall, cpu = wall+w, cpu+c
			} else {
				v, err = p.Read(ctx, dev, h)
			}
			if err != nil && ctx.Err() != nil {
				return out, err
			}
			out = append(out, abi.BatchEntry{Value: v, Err: err})
		}
		if probing {
			e.reads.record(false, wall, cpu, len(handles))
		}
		return out, nil
	}
	var entries []abi.BatchEntry
	var err error
	read := func() { entries, err = p.ReadBatch(ctx, dev, handles) }
	if probing {
		wall, cpu := probe(read)
		if err == nil {
			e.reads.record(true, wall, cpu, len(handles))
		}
	} else {
		read()
	}
	if err != nil {
		if ctx.Err() != nil {
			return out, err
		}
		for range handles {
			out = append(out, abi.BatchEntry{Err: err})
		}
		return out, nil
	}
	return append(out, entries...), nil
}

// close closes the plugin, waiting no longer than ctx: the runtime waits
// for the calls in progress, and a call stuck in the guest must not hold
// up its caller. When ctx ends first, the close goes on in the background
// and the error says so.
func (e *pluginEntry) close(ctx context.Context) error {
	if e.p == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- e.p.Close(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("MapperPlugin %s: calls still in progress: %w", e.name, context.Cause(ctx))
	}
}

// loadPlugin loads a MapperPlugin. failures is the number of failed loads
// of the same spec before this one: a failed plugin is loaded again after
// a backoff (see [Manager.retryPlugins]), so that fixing its module file or
// bringing its registry back recovers its devices without a restart.
func (m *Manager) loadPlugin(ctx context.Context, source string, obj *v1alpha1.MapperPlugin, spec string, failures int) *pluginEntry {
	e := &pluginEntry{name: obj.Name, source: source, spec: spec, obj: obj.DeepCopy(), gen: pluginGen.Add(1),
		readings: m.met.readings.WithLabelValues(obj.Name), skips: m.met.skipped.WithLabelValues(obj.Name)}
	start := time.Now()
	e.p, e.store, e.digest, e.err = m.startPlugin(ctx, e.obj)
	if e.err != nil {
		m.met.pluginErrors.Inc()
		e.failures = failures + 1
		delay := m.retryDelay(e.failures)
		e.retryAt = time.Now().Add(delay)
		if failures == 0 {
			m.log.Error("plugin not loaded; its devices are in error until it loads", "plugin", obj.Name, "source", source, "retry-in", delay.Round(time.Millisecond), "err", e.err)
		} else {
			m.log.Debug("plugin still not loaded", "plugin", obj.Name, "attempt", e.failures, "retry-in", delay.Round(time.Millisecond), "err", e.err)
		}
	} else {
		m.log.Info("plugin loaded", "plugin", obj.Name, "source", source, "protocols", obj.Spec.Protocols, "took", time.Since(start).Round(time.Millisecond))
	}
	return e
}

// startPlugin resolves a MapperPlugin's module, opens its kv store and
// loads it; it returns the plugin, its store and the module's digest.
func (m *Manager) startPlugin(ctx context.Context, obj *v1alpha1.MapperPlugin) (*runtime.Plugin, *kv.Store, string, error) {
	wasm, err := m.opts.Modules.Module(ctx, obj)
	if err != nil {
		return nil, nil, "", err
	}
	store, err := kv.Open(m.opts.Store.DB(), obj.Name, 0)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := m.startModule(ctx, obj, wasm, store)
	if err != nil {
		return nil, nil, "", err
	}
	return p, store, moduleDigest(wasm), nil
}

// moduleDigest is the digest of module bytes as OCI writes it.
func moduleDigest(wasm []byte) string { return digest.FromBytes(wasm).String() }

// startModule loads the module wasm of a MapperPlugin with the kv store
// store.
func (m *Manager) startModule(ctx context.Context, obj *v1alpha1.MapperPlugin, wasm []byte, store *kv.Store) (*runtime.Plugin, error) {
	cfg := runtime.Config{
		Name:        obj.Name,
		Wasm:        wasm,
		MemoryMiB:   int(obj.Spec.Limits.MemoryMiB),
		CallTimeout: obj.Spec.Limits.CallTimeout.Duration,
		Instances:   int(obj.Spec.Limits.Instances),
		KV:          store,
		Report:      m.onPluginReport,
	}
	if obj.Spec.Config != nil && len(obj.Spec.Config.Raw) > 0 {
		cfg.PluginConfig = obj.Spec.Config.Raw
	}
	if err := runtime.WithGrants(&cfg, obj.Spec.Grants.Set()); err != nil {
		return nil, fmt.Errorf("MapperPlugin %s: spec.grants: %w", obj.Name, err)
	}
	if m.opts.Secrets != nil {
		runtime.SetSecrets(&cfg, m.opts.Secrets)
	}
	if m.opts.Ext != nil {
		ext, err := m.opts.Ext(obj)
		if err != nil {
			return nil, fmt.Errorf("extensions of MapperPlugin %s: %w", obj.Name, err)
		}
		for k, v := range ext {
			cfg.Ext[k] = v
		}
	}
	p, err := m.opts.Engine.Load(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("load module of MapperPlugin %s: %w", obj.Name, err)
	}
	return p, nil
}

// onPluginReport routes a reading pushed by a plugin (from wapper_poll or
// any call) to its device.
func (m *Manager) onPluginReport(r runtime.Reading) {
	m.mu.RLock()
	d := m.byID[r.Device]
	m.mu.RUnlock()
	if d != nil {
		d.pushed(r.Property, r.Value, r.Time)
	}
}

// ModuleLoader resolves MapperPlugin modules: spec.module.file relative to
// PluginDir (checked against spec.module.digest when given), or
// spec.module.image pulled with registry/fetch into CacheDir.
type ModuleLoader struct {
	PluginDir string
	CacheDir  string
	Fetch     fetch.Options
}

// Module implements ModuleResolver.
func (l ModuleLoader) Module(ctx context.Context, p *v1alpha1.MapperPlugin) ([]byte, error) {
	mod := p.Spec.Module
	switch {
	case mod.File != "":
		if l.PluginDir == "" {
			return nil, fmt.Errorf("MapperPlugin %s names module file %q but no plugin folder is set (start wapper-host with --plugin-dir)", p.Name, mod.File)
		}
		if filepath.IsAbs(mod.File) || strings.HasPrefix(filepath.Clean(mod.File), "..") {
			return nil, fmt.Errorf("MapperPlugin %s: spec.module.file %q must be relative to --plugin-dir and stay inside it", p.Name, mod.File)
		}
		path := filepath.Join(l.PluginDir, mod.File)
		wasm, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("MapperPlugin %s: module file: %w (check spec.module.file and --plugin-dir)", p.Name, err)
		}
		if mod.Digest != "" {
			sum := sha256.Sum256(wasm)
			got := "sha256:" + hex.EncodeToString(sum[:])
			if !strings.EqualFold(got, mod.Digest) {
				return nil, fmt.Errorf("MapperPlugin %s: digest mismatch: module file %s is %s but spec.module.digest pins %s; refusing to run it (with spec.module.file the digest is the file's own sha256, not the manifest digest `wapper push` prints, which only spec.module.image takes; rebuild the module or update the digest)", p.Name, path, got, mod.Digest)
			}
		}
		return wasm, nil
	case mod.Image != "":
		if l.CacheDir == "" {
			return nil, fmt.Errorf("MapperPlugin %s: no module cache folder", p.Name)
		}
		wasm, err := fetch.Module(ctx, mod.Image, digest.Digest(mod.Digest), l.CacheDir, l.Fetch)
		if err != nil {
			return nil, fmt.Errorf("MapperPlugin %s: pull %s: %w", p.Name, mod.Image, err)
		}
		return wasm, nil
	}
	return nil, fmt.Errorf("MapperPlugin %s has neither spec.module.file nor spec.module.image", p.Name)
}
