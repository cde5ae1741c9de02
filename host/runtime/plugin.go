package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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

// Restart backoff after an instance fails.
const (
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 30 * time.Second
	backoffReset = time.Minute
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

	devMu     sync.RWMutex // guards devices
	devices   map[uint32]*device
	version   atomic.Uint64
	removeGen atomic.Uint64 // bumped on every removal; instances sweep when it moves

	poolMu   sync.Mutex // guards slots (their in and busy), failures and lastFail
	slots    []*slot
	ready    chan struct{} // one token per idle live slot
	failures int
	lastFail time.Time
	restarts atomic.Int64

	closeOnce sync.Once
	closed    chan struct{}
	// stopCtx is the parent of every instance's context; stop cancels it
	// when Close stops waiting for calls in progress.
	stopCtx context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

type slot struct {
	id   int
	in   *instance // nil while the slot restarts
	busy bool
}

// device is a device known to the plugin.
type device struct {
	mu      sync.Mutex // serialises calls for the device; guards the fields below
	desc    abi.Device
	raw     []byte // JSON of desc
	version uint64
	last    *slot // the slot that served it last
	removed bool
	// strikes counts the device's calls in a row that killed their
	// instance; from the second, its calls fail at once until until, so
	// that one device that traps or hangs cannot keep the instances its
	// neighbours share restarting.
	strikes int
	until   time.Time
	// ioCause is the host's text of the device's last failed I/O call,
	// cleared by a successful one; a state reason other than online
	// carries it (see Plugin.State).
	ioCause string
}

// Quarantine of a device whose calls kill their instance: it doubles from
// quarantineMin with each call in a row that does, up to quarantineMax.
const (
	quarantineMin = time.Second
	quarantineMax = 5 * time.Minute
)

// known records which description of a device an instance was given.
type known struct {
	d       *device
	version uint64
}

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
		devices:    map[uint32]*device{},
		ready:      make(chan struct{}, cfg.Instances),
		closed:     make(chan struct{}),
	}
	p.logs = newLogLimiter(p, cfg.LogBytesPerSecond)
	p.denials = newRepeats()
	p.stopCtx, p.stop = context.WithCancel(context.Background())
	if len(p.initConfig) == 0 {
		p.initConfig = []byte("{}")
	}
	pages, err := memoryPages(cfg)
	if err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(pages).
		WithCompilationCache(e.cache)
	p.rt = wazero.NewRuntimeWithConfig(ctx, rc)
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
	for i := range cfg.Instances {
		s := &slot{id: i}
		p.slots = append(p.slots, s)
		in, err := p.newInstance(i)
		if err != nil {
			p.closeInstances()
			return nil, fmt.Errorf("plugin %s: create instance: %w", cfg.Name, err)
		}
		s.in = in
		p.m.instances.Inc()
		p.ready <- struct{}{}
	}
	p.info.ABIMinor = int(p.slots[0].in.minor)
	ok = true
	p.log.Info("plugin loaded", "abi", fmt.Sprintf("%d.%d", abi.Major, p.info.ABIMinor), "bytes", len(cfg.Wasm),
		"compile", compileTime.Round(time.Millisecond), "instances", cfg.Instances, "memoryMiB", cfg.MemoryMiB, "callTimeout", cfg.CallTimeout)
	return p, nil
}

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
func (p *Plugin) Restarts() int64 { return p.restarts.Load() }

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
		close(p.closed)
		// Take every live slot so no call is in progress.
		left := p.drain(ctx, len(p.liveSlots()))
		p.stop()
		if left > 0 {
			grace, cancel := context.WithTimeout(context.Background(), closeGrace)
			left = p.drain(grace, left)
			cancel()
		}
		p.wg.Wait()
		p.closeInstances()
		p.logs.flush()
		if left > 0 {
			p.log.Warn("plugin closed with calls still running; they end with the process", "calls", left)
			return
		}
		p.rt.Close(context.Background())
	})
	return nil
}

// drain takes n ready tokens, or fewer when ctx ends; it returns how many
// it did not get.
func (p *Plugin) drain(ctx context.Context, n int) int {
	for ; n > 0; n-- {
		select {
		case <-p.ready:
		case <-ctx.Done():
			return n
		}
	}
	return 0
}

func (p *Plugin) liveSlots() []*slot {
	p.poolMu.Lock()
	defer p.poolMu.Unlock()
	var out []*slot
	for _, s := range p.slots {
		if s.in != nil {
			out = append(out, s)
		}
	}
	return out
}

// closeInstances closes the instances no call is using.
func (p *Plugin) closeInstances() {
	p.poolMu.Lock()
	defer p.poolMu.Unlock()
	for _, s := range p.slots {
		if s.in != nil && !s.busy {
			s.in.close()
			s.in = nil
			p.m.instances.Dec()
		}
	}
}

// ErrClosed is returned by calls on a closed plugin.
var ErrClosed = abi.Errorf(abi.ErrUnavailable, "plugin is closed")

// acquire takes an idle live slot, preferring prefer.
func (p *Plugin) acquire(ctx context.Context, prefer *slot) (*slot, error) {
	select {
	case <-p.closed:
		return nil, ErrClosed
	default:
	}
	select {
	case <-p.ready:
	case <-p.closed:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, abi.Errorf(abi.ErrUnavailable, "plugin %s: no instance free before the deadline (%d instances, all busy or restarting)", p.name, len(p.slots))
	}
	p.poolMu.Lock()
	defer p.poolMu.Unlock()
	if prefer != nil && !prefer.busy && prefer.in != nil {
		prefer.busy = true
		return prefer, nil
	}
	for _, s := range p.slots {
		if !s.busy && s.in != nil {
			s.busy = true
			return s, nil
		}
	}
	panic("runtime: ready token without an idle slot")
}

// release returns a slot. A slot whose instance died is restarted in the
// background and becomes ready again when its new instance is.
func (p *Plugin) release(s *slot) {
	p.poolMu.Lock()
	select {
	case <-p.closed:
		// Closing: no restarts; Close closes what is left.
		if s.in.dead {
			s.in = nil
			p.m.instances.Dec()
		}
		s.busy = false
		p.poolMu.Unlock()
		p.ready <- struct{}{}
		return
	default:
	}
	if !s.in.dead {
		s.busy = false
		p.poolMu.Unlock()
		p.ready <- struct{}{}
		return
	}
	dead := s.in
	s.in = nil
	p.m.instances.Dec()
	if time.Since(p.lastFail) > backoffReset {
		p.failures = 0
	}
	p.failures++
	p.lastFail = time.Now()
	delay := backoffMin << min(p.failures-1, 16)
	if delay > backoffMax {
		delay = backoffMax
	}
	p.poolMu.Unlock()
	p.wg.Add(1)
	go p.restart(s, dead, delay)
}

// restart recreates a slot's instance after delay, re-adds the devices the
// dead instance served, and makes the slot ready.
func (p *Plugin) restart(s *slot, dead *instance, delay time.Duration) {
	defer p.wg.Done()
	for {
		p.log.Warn("restarting plugin instance", "instance", s.id, "after", delay)
		select {
		case <-time.After(delay):
		case <-p.closed:
			return
		}
		in, err := p.newInstance(s.id)
		if err == nil {
			p.restarts.Add(1)
			p.m.restarts.Inc()
			p.readd(in, dead)
			if in.dead {
				err = errors.New("instance failed while devices were re-added")
			}
		}
		if err != nil {
			p.log.Error("plugin instance restart failed", "instance", s.id, "err", err)
			delay = min(delay*2, backoffMax)
			continue
		}
		p.poolMu.Lock()
		select {
		case <-p.closed:
			p.poolMu.Unlock()
			in.close()
			return
		default:
		}
		s.in, s.busy = in, false
		p.m.instances.Inc()
		p.poolMu.Unlock()
		p.ready <- struct{}{}
		p.log.Info("plugin instance restarted", "instance", s.id)
		return
	}
}

// readd adds to a new instance the devices the dead one served.
func (p *Plugin) readd(in *instance, dead *instance) {
	for id, k := range dead.known {
		if in.dead {
			return
		}
		if p.device(id) != k.d {
			continue // removed meanwhile
		}
		// A caller holding the device's lock may be waiting for this very
		// slot; it re-adds the device itself (ensure) once it gets one.
		if !k.d.mu.TryLock() {
			continue
		}
		if !k.d.removed {
			in.curDev = k.d
			if err := in.ensure(k.d); err != nil {
				p.log.Warn("re-adding device to restarted instance failed; it is retried on its next call", "device", k.d.name(), "err", err)
			}
			in.curDev = nil
		}
		k.d.mu.Unlock()
	}
}

func (p *Plugin) device(id uint32) *device {
	p.devMu.RLock()
	defer p.devMu.RUnlock()
	return p.devices[id]
}

func (d *device) name() string { return d.desc.Namespace + "/" + d.desc.Name }

// ensure gives the instance the device's current description.
func (in *instance) ensure(d *device) error {
	id := d.desc.ID
	k, ok := in.known[id]
	if ok && k.d == d && k.version == d.version {
		return nil
	}
	if ok && k.d != d {
		// A removed device with the same handle: remove it first.
		if err := in.removeDevice(id); err != nil {
			return err
		}
		ok = false
	}
	export, f := abi.ExportDeviceAdd, in.add
	if ok {
		export, f = abi.ExportDeviceUpdate, in.update
	}
	in.stack[0] = uint64(id)
	if _, err := in.callBuf(export, f, d.raw, 1); err != nil {
		return err
	}
	in.known[id] = known{d: d, version: d.version}
	return nil
}

func (in *instance) removeDevice(id uint32) error {
	delete(in.known, id)
	in.stack[0] = uint64(id)
	_, err := in.call(abi.ExportDeviceRemove, in.remove)
	return err
}

// sweep removes from the instance every device that the plugin no longer
// has. It returns the error of removing only.
func (in *instance) sweep(only *device) error {
	gen := in.p.removeGen.Load()
	if in.sweptGen == gen {
		return nil
	}
	var onlyErr error
	for id, k := range in.known {
		if in.p.device(id) == k.d || in.dead {
			continue
		}
		err := in.removeDevice(id)
		if k.d == only {
			onlyErr = err
		} else if err != nil {
			in.p.log.Warn("removing device from instance failed", "device", k.d.name(), "instance", in.id, "err", err)
		}
	}
	if !in.dead {
		in.sweptGen = gen
	}
	return onlyErr
}

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
	if left := time.Until(d.until); left > 0 {
		return abi.Errorf(abi.ErrUnavailable, "device %s is set aside for %v: its last %d calls killed the plugin instance (see the log for the trap or timeout)", d.name(), left.Round(time.Millisecond), d.strikes)
	}
	err := p.onSlot(ctx, d, fn)
	var ce *callErr
	switch {
	case errors.As(err, &ce):
		// One failure may be bad luck; from the second in a row the
		// device waits.
		if d.strikes++; d.strikes > 1 {
			d.until = time.Now().Add(min(quarantineMin<<min(d.strikes-2, 16), quarantineMax))
			p.log.Warn("device set aside: its calls keep killing the plugin instance", "device", d.name(), "strikes", d.strikes, "for", time.Until(d.until).Round(time.Millisecond))
		}
	case err == nil:
		d.strikes = 0
	}
	return clipErr(err)
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
	d.last = s
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
	d := &device{desc: desc, raw: raw, version: p.version.Add(1)}
	p.devMu.Lock()
	if _, dup := p.devices[desc.ID]; dup {
		p.devMu.Unlock()
		return abi.Errorf(abi.ErrInvalid, "plugin %s already has a device with handle %d", p.name, desc.ID)
	}
	p.devices[desc.ID] = d
	d.mu.Lock()
	p.devMu.Unlock()
	defer d.mu.Unlock()
	if err := p.onSlot(ctx, d, noop); err != nil {
		p.drop(d)
		return err
	}
	return nil
}

// drop forgets a device; instances remove it when they next sweep.
func (p *Plugin) drop(d *device) {
	d.removed = true
	p.devMu.Lock()
	if p.devices[d.desc.ID] == d {
		delete(p.devices, d.desc.ID)
	}
	p.devMu.Unlock()
	p.removeGen.Add(1)
}

// UpdateDevice replaces a device's description. The instance that served it
// last gets the update now; the others before their next call for it.
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
	d.desc, d.raw, d.version = desc, raw, p.version.Add(1)
	return p.onSlot(ctx, d, noop)
}

// RemoveDevice removes a device. The instance that served it last removes
// it now and its error is returned; the others remove it before their next
// call.
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
	p.poolMu.Lock()
	defer p.poolMu.Unlock()
	var n int64
	for _, s := range p.slots {
		if s.in != nil {
			n += int64(s.in.mem.Size())
		}
	}
	return n
}
