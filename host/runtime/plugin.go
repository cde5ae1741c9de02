package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"wapper.dev/wapper/abi"
)

// Defaults for a plugin's limits (the MapperPlugin's spec.limits).
const (
	DefaultMemoryMiB   = 64
	DefaultCallTimeout = 5 * time.Second
	DefaultInstances   = 2
	MaxInstances       = 64
)

// KV is the persistent store behind the kv host functions; see package
// host/kv.
type KV interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, val []byte) error
	Delete(key []byte) error
}

// Reading is a value a plugin pushed with the report host function.
type Reading struct {
	Device, Property uint32
	Value            abi.Value
	Time             time.Time
}

// Config describes one plugin to load.
type Config struct {
	// Name is the MapperPlugin name; it tags logs and metrics.
	Name string
	// Wasm is the module.
	Wasm []byte
	// PluginConfig is the JSON object handed to wapper_init ("{}" if nil).
	PluginConfig json.RawMessage
	// MemoryMiB, CallTimeout and Instances are the plugin's limits; zero
	// means the default.
	MemoryMiB   int
	CallTimeout time.Duration
	Instances   int
	// KV is the plugin's persistent store; nil makes kv calls fail.
	KV KV
	// Report receives readings pushed by the plugin. It must not block for
	// long: it runs inside a guest call.
	Report func(Reading)
	// StackKiB is the wasm stack one call may use, in KiB of frames; zero
	// means an eighth of MemoryMiB over all the instance's stacks, between
	// MinStackKiB and DefaultStackKiB. Deeper calls trap. The host memory the stacks
	// can take counts against MemoryMiB (SPEC.md §9).
	StackKiB int
	// LogBytesPerSecond limits what the plugin writes to the host log
	// (log host function, stdout and stderr together); zero means
	// DefaultLogBytesPerSecond.
	LogBytesPerSecond int
	// Ext holds settings for host-function extensions (such as device I/O
	// grants), keyed by the extension's own key type.
	Ext map[any]any
}

// Plugin is a loaded plugin: a pool of instances and the devices they
// serve. Its methods are safe for concurrent use.
//
// It is made of three parts, each with its own state: the device
// registry (registry.go: which devices exist, their descriptions), the
// instance pool (pool.go: slots, who waits for which, growth, restarts)
// and instance sync (instsync.go: which devices each instance holds).
//
// Lock order: a device's mu first (a call holds its device's for the
// whole call; ReadMany takes several, in ascending handle order), then a
// pool slot (not a mutex, but waited for in acquire), then the pool's mu
// or the registry's mu, which are leaves. Nothing waits for a device's mu
// while it holds a slot: a restarted instance re-adds its devices without
// their locks, from their atomic descriptions.
type Plugin struct {
	e        *Engine
	cfg      Config
	name     string
	log      *slog.Logger
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	info     *ModuleInfo
	timeout  time.Duration
	kv       KV
	m        pluginMetrics
	logs     *logLimiter
	denials  *repeats // rate limit of the warnings about grant refusals

	initConfig []byte
	skipInit   bool // Verify: instantiate and ask the marker only

	reg  *registry
	pool *pool[*instance]

	closeOnce sync.Once
	// stopCtx is the parent of every instance's context; stop cancels it
	// when Close stops waiting for calls in progress.
	stopCtx context.Context
	stop    context.CancelFunc
}

// slot is a place for an instance in the plugin's pool.
type slot = poolSlot[*instance]

// Quarantine of a device whose calls kill their instance: it doubles from
// quarantineMin with each call in a row that does, up to quarantineMax.
const (
	quarantineMin = time.Second
	quarantineMax = 5 * time.Minute
)

// Load compiles (or loads from the cache) and instantiates a plugin. It
// fails when the module is refused, or when its first instance cannot be
// created or initialised.
func (e *Engine) Load(ctx context.Context, cfg Config) (*Plugin, error) {
	return e.load(ctx, cfg, false)
}

func (e *Engine) load(ctx context.Context, cfg Config, skipInit bool) (*Plugin, error) {
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = DefaultMemoryMiB
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.Instances == 0 {
		cfg.Instances = DefaultInstances
	}
	if cfg.StackKiB == 0 {
		cfg.StackKiB = defaultStackKiB(cfg.MemoryMiB)
	}
	switch {
	case cfg.MemoryMiB < 1 || cfg.MemoryMiB > abi.MaxMemoryBytes>>20:
		return nil, fmt.Errorf("plugin %s: limits.memoryMiB %d is outside 1..%d", cfg.Name, cfg.MemoryMiB, abi.MaxMemoryBytes>>20)
	case cfg.CallTimeout < 0:
		return nil, fmt.Errorf("plugin %s: limits.callTimeout %v must be positive", cfg.Name, cfg.CallTimeout)
	case cfg.StackKiB < 1 || cfg.StackKiB > 64<<10:
		return nil, fmt.Errorf("plugin %s: stack of %d KiB is outside 1..%d", cfg.Name, cfg.StackKiB, 64<<10)
	case cfg.Instances < 1 || cfg.Instances > MaxInstances:
		return nil, fmt.Errorf("plugin %s: limits.instances %d is outside 1..%d", cfg.Name, cfg.Instances, MaxInstances)
	}
	p := &Plugin{
		e: e, cfg: cfg, name: cfg.Name, timeout: cfg.CallTimeout, kv: cfg.KV,
		log:        e.log.With("plugin", cfg.Name),
		m:          newPluginMetrics(e.metrics, cfg.Name),
		initConfig: cfg.PluginConfig,
		skipInit:   skipInit,
		reg:        newRegistry(),
	}
	p.logs = newLogLimiter(p, cfg.LogBytesPerSecond)
	p.denials = newRepeats()
	p.stopCtx, p.stop = context.WithCancel(context.Background())
	if len(p.initConfig) == 0 {
		p.initConfig = []byte("{}")
	}
	if e.onLoad != nil {
		done := e.onLoad()
		defer done()
	}
	pages, err := memoryPages(cfg)
	if err != nil {
		return nil, err
	}
	p.rt = wazero.NewRuntimeWithConfig(ctx, runtimeConfig(pages, e.cache))
	ok := false
	defer func() {
		if !ok {
			p.stop()
			p.rt.Close(context.Background())
		}
	}()
	start := time.Now()
	info, compiled, err := compileChecked(ctx, p.rt, cfg.Wasm, cfg.StackKiB)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Name, err)
	}
	p.info, p.compiled = info, compiled
	if err := p.instantiateHost(ctx); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Name, err)
	}
	compileTime := time.Since(start)
	// Compiling a large module leaves tens of MiB of garbage that the Go
	// runtime would keep mapped for minutes: give it back now.
	if len(cfg.Wasm) >= freeAfterCompile {
		debug.FreeOSMemory()
	}
	// One instance now; the pool adds more, up to limits.instances, when
	// calls queue.
	first := &slot{id: 0}
	in, err := p.newInstance(first)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: create instance: %w", cfg.Name, err)
	}
	p.pool = newPool(poolConfig[*instance]{
		name: cfg.Name, max: cfg.Instances,
		growAfter: defaultGrowAfter, stealAfter: defaultStealAfter,
		start:     p.newInstance,
		revive:    func(_ *slot, fresh, dead *instance) error { return fresh.readd(dead) },
		live:      func(delta int) { p.m.instances.Add(float64(delta)) },
		restarted: p.m.restarts.Inc,
		log:       p.log,
	}, first, in)
	p.info.ABIMinor = int(in.minor)
	ok = true
	p.log.Info("plugin loaded", "abi", fmt.Sprintf("%d.%d", abi.Major, p.info.ABIMinor), "bytes", len(cfg.Wasm),
		"compile", compileTime.Round(time.Millisecond), "instances", cfg.Instances, "memoryMiB", cfg.MemoryMiB, "callTimeout", cfg.CallTimeout)
	return p, nil
}

// freeAfterCompile is the module size from which Load returns the
// compiler's garbage to the OS (a Go plugin is 2 to 5 MiB).
const freeAfterCompile = 1 << 20

// memoryPages is the linear-memory limit of one instance in 64 KiB pages:
// limits.memoryMiB less what the module's tables and wasm stacks can take
// (SPEC.md §9). A module the loader refuses gets the whole budget here; it
// is refused right after with the reason.
func memoryPages(cfg Config) (uint32, error) {
	budget := uint64(cfg.MemoryMiB) << 20
	prep, err := prepare(cfg.Wasm, cfg.StackKiB)
	if err != nil || len(prep.tables.problems) > 0 || prep.err != nil {
		return uint32(budget >> 16), nil
	}
	tables, stacks := prep.tables.bytes(), stackReserve(cfg.StackKiB)
	if tables+stacks+64<<10 > budget {
		return 0, fmt.Errorf("plugin %s: limits.memoryMiB %d leaves no room for linear memory: the module's tables can take %d KiB (%d elements of 8 bytes) and its wasm stacks %d KiB; raise the limit", cfg.Name, cfg.MemoryMiB, tables>>10, prep.tables.maxElements, stacks>>10)
	}
	return uint32((budget - tables - stacks) >> 16), nil
}

func (p *Plugin) instantiateHost(ctx context.Context) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return fmt.Errorf("instantiate WASI: %w", err)
	}
	b := p.rt.NewHostModuleBuilder(abi.ImportModule)
	for _, hf := range hostFuncs {
		fn := hf.fn
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			in, _ := ctx.Value(instKey{}).(*instance)
			if in == nil {
				stack[0] = errno(abi.ErrInternal)
				return
			}
			fn(ctx, in, mod.Memory(), stack)
		}), hf.sig.params, hf.sig.results).Export(hf.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %q: %w", abi.ImportModule, err)
	}
	return nil
}

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.name }

// Info returns what the loader learned about the module.
func (p *Plugin) Info() *ModuleInfo { return p.info }

// Config returns the configuration the plugin was loaded with.
func (p *Plugin) Config() Config { return p.cfg }

// Restarts returns how many instances were recreated after failures.
func (p *Plugin) Restarts() int64 { return p.pool.restarts.Load() }

// HasPoll reports whether the plugin exports wapper_poll.
func (p *Plugin) HasPoll() bool { return p.info.Has(abi.ExportPoll) }

// closeGrace is how long Close waits for calls it has cancelled to return.
const closeGrace = 2 * time.Second

// Close stops every instance. Calls in progress may finish until ctx ends;
// then they are cancelled (guest code, WASI sleeps and device I/O stop at
// once). A call that still has not returned after a short grace is left
// running, with its runtime, for the process to end: closing compiled code
// under a running guest is not safe.
func (p *Plugin) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		left := p.pool.close(ctx)
		p.stop()
		if left > 0 {
			grace, cancel := context.WithTimeout(context.Background(), closeGrace)
			left = p.pool.close(grace)
			cancel()
		}
		p.pool.closeIdle()
		p.logs.flush()
		if left > 0 {
			p.log.Warn("plugin closed with calls still running; they end with the process", "calls", left)
			return
		}
		if err := p.rt.Close(context.Background()); err != nil {
			p.log.Warn("closing the plugin's runtime failed", "err", err)
		}
	})
	return nil
}

// ErrClosed is returned by calls on a closed plugin.
var ErrClosed = abi.Errorf(abi.ErrUnavailable, "plugin is closed")

// acquire takes a slot, preferring home (nil: any).
func (p *Plugin) acquire(ctx context.Context, home *slot) (*slot, error) {
	return p.pool.acquire(ctx, home)
}

// acquireN takes a slot for a call for n devices whose home is home (see
// [pool.acquireN]).
func (p *Plugin) acquireN(ctx context.Context, home *slot, n int) (*slot, error) {
	return p.pool.acquireN(ctx, home, n)
}

// release returns a slot; one whose instance failed restarts it.
func (p *Plugin) release(s *slot) { p.pool.release(s) }

// device returns the device with handle id, or nil.
func (p *Plugin) device(id uint32) *device { return p.reg.get(id) }

// withDevice runs fn on an instance that knows device id, holding the
// device's lock and a pool slot.
func (p *Plugin) withDevice(ctx context.Context, id uint32, fn func(in *instance, d *device) error) error {
	d := p.device(id)
	if d == nil {
		return abi.Errorf(abi.ErrNotFound, "plugin %s has no device with handle %d", p.name, id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed {
		return abi.Errorf(abi.ErrNotFound, "device %s was removed", d.name())
	}
	if err := d.setAside(time.Now()); err != nil {
		return err
	}
	err := p.onSlot(ctx, d, fn)
	p.struck(d, err)
	return clipErr(err)
}

// setAside returns the error of a call for d at now while d is set aside
// (see [Plugin.struck]), else nil. The caller holds d.mu.
func (d *device) setAside(now time.Time) error {
	if !d.until.After(now) {
		return nil
	}
	return abi.Errorf(abi.ErrUnavailable, "device %s is set aside for %v: its last %d calls killed the plugin instance (see the log for the trap or timeout)", d.name(), d.until.Sub(now).Round(time.Millisecond), d.strikes)
}

// struck records the outcome err of a call for d: a success clears its
// strikes; a call that killed its instance counts one, and from the
// second in a row d is set aside, for longer each time. One failure may be
// bad luck. The caller holds d.mu.
func (p *Plugin) struck(d *device, err error) {
	switch {
	case err == nil:
		d.strikes = 0
	case killedInstance(err):
		if d.strikes++; d.strikes > 1 {
			d.until = time.Now().Add(min(quarantineMin<<min(d.strikes-2, 16), quarantineMax))
			p.log.Warn("device set aside: its calls keep killing the plugin instance", "device", d.name(), "strikes", d.strikes, "for", time.Until(d.until).Round(time.Millisecond))
		}
	}
}

// killedInstance reports whether err is from a call that threw its
// instance away. (A function of its own: the target of errors.As goes to
// the heap, and only failed calls should pay for it.)
func killedInstance(err error) bool {
	var ce *callErr
	return errors.As(err, &ce)
}

func (p *Plugin) onSlot(ctx context.Context, d *device, fn func(in *instance, d *device) error) error {
	s, err := p.acquire(ctx, d.last)
	if err != nil {
		return err
	}
	defer p.release(s)
	in := s.in
	in.curDev = d
	defer func() { in.curDev = nil }()
	if err := in.sweep(nil); err != nil {
		return err
	}
	if err := in.ensure(d); err != nil {
		return err
	}
	return fn(in, d)
}

func noop(*instance, *device) error { return nil }

func encodeDesc(desc abi.Device) ([]byte, error) {
	raw, err := json.Marshal(desc)
	if err != nil {
		return nil, fmt.Errorf("encode device description: %w", err)
	}
	if len(raw) > abi.MaxMessage {
		return nil, abi.Errorf(abi.ErrTooLarge, "device description of %d bytes exceeds %d", len(raw), abi.MaxMessage)
	}
	return raw, nil
}

// AddDevice gives the plugin a new device and adds it to one instance, so
// that a description the plugin refuses fails here (and the device is not
// kept). The handle must be unused.
func (p *Plugin) AddDevice(ctx context.Context, desc abi.Device) error {
	raw, err := encodeDesc(desc)
	if err != nil {
		return err
	}
	d := newDevice(desc, raw, p.reg.nextVersion())
	d.mu.Lock()
	defer d.mu.Unlock()
	if !p.reg.add(desc.ID, d) {
		return abi.Errorf(abi.ErrInvalid, "plugin %s already has a device with handle %d", p.name, desc.ID)
	}
	if err := p.onSlot(ctx, d, noop); err != nil {
		p.drop(d)
		return err
	}
	return nil
}

// drop forgets a device; the instance that holds it removes it at its
// next use. The caller holds d.mu.
func (p *Plugin) drop(d *device) {
	d.removed = true
	p.reg.remove(d.desc.ID, d)
	if d.last != nil {
		p.pool.rehome(d.last, nil, d.desc.ID)
	}
}

// UpdateDevice replaces a device's description. The instance that holds
// it gets the update now.
func (p *Plugin) UpdateDevice(ctx context.Context, desc abi.Device) error {
	raw, err := encodeDesc(desc)
	if err != nil {
		return err
	}
	d := p.device(desc.ID)
	if d == nil {
		return abi.Errorf(abi.ErrNotFound, "plugin %s has no device with handle %d", p.name, desc.ID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed {
		return abi.Errorf(abi.ErrNotFound, "device %s was removed", d.name())
	}
	d.setDesc(desc, raw, p.reg.nextVersion())
	return p.onSlot(ctx, d, noop)
}

// RemoveDevice removes a device. The instance that holds it removes it
// now and its error is returned.
func (p *Plugin) RemoveDevice(ctx context.Context, id uint32) error {
	d := p.device(id)
	if d == nil {
		return abi.Errorf(abi.ErrNotFound, "plugin %s has no device with handle %d", p.name, id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed {
		return nil
	}
	p.drop(d)
	if d.last == nil {
		return nil
	}
	s, err := p.acquire(ctx, d.last)
	if err != nil {
		return err
	}
	defer p.release(s)
	return s.in.sweep(d)
}

// Ping calls the ABI marker on an idle instance: the cheapest full trip
// into the plugin, under the same pool and deadline as every call.
func (p *Plugin) Ping(ctx context.Context) error {
	s, err := p.acquire(ctx, nil)
	if err != nil {
		return err
	}
	defer p.release(s)
	return s.in.rawCall(abi.ExportMarker, s.in.marker)
}

// MemoryBytes returns the linear memory of the live instances, in bytes.
func (p *Plugin) MemoryBytes() int64 {
	var n int64
	p.pool.each(func(in *instance) { n += int64(in.mem.Size()) })
	return n
}
