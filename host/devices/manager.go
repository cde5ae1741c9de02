package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// Errors a caller can test for with errors.Is.
var (
	// ErrConflict: the name belongs to another source.
	ErrConflict = errors.New("owned by another source")
	// ErrNotFound: no such device, property, method or model.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a malformed object or value.
	ErrInvalid = errors.New("invalid")
	// ErrReadOnly: a write to a ReadOnly property.
	ErrReadOnly = errors.New("read-only")
	// ErrUnavailable: the device is in error, or its plugin failed.
	ErrUnavailable = errors.New("unavailable")
)

// Kinds of resources.
const (
	KindDevice       = "Device"
	KindDeviceModel  = "DeviceModel"
	KindMapperPlugin = "MapperPlugin"
)

// ResourceSet is everything one source provides.
type ResourceSet struct {
	Devices []*v1beta1.Device
	Models  []*v1beta1.DeviceModel
	Plugins []*v1alpha1.MapperPlugin
}

// Options configure a Manager.
type Options struct {
	// Engine runs the plugins; Store keeps the state. Both are required.
	Engine *runtime.Engine
	Store  *store.Store
	// Modules resolves a MapperPlugin's module to its wasm bytes; see
	// [ModuleLoader]. Required.
	Modules ModuleResolver
	// Ext returns extra host-function extension settings of a plugin,
	// added to runtime.Config.Ext. Optional: the device I/O grants of
	// spec.grants are always set.
	Ext func(*v1alpha1.MapperPlugin) (map[any]any, error)
	// Secrets are the host's secrets, which plugins read as their
	// spec.grants allow; nil: none.
	Secrets hostio.Secrets
	// Logger receives the manager's logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// DefaultCollectCycle and DefaultReportCycle apply to properties whose
	// cycles are zero (default 1 s each). StateCycle is how often the state
	// of a device is asked for and reported when its spec.stateReport has no
	// cycle (default 10 s).
	DefaultCollectCycle time.Duration
	DefaultReportCycle  time.Duration
	StateCycle          time.Duration
	// FlushInterval is how often reported values are saved (default 2 s).
	FlushInterval time.Duration
	// PollBudget bounds one wapper_poll call (default 1 s).
	PollBudget time.Duration
	// ReadWait bounds how long a collect-cycle read or a state query waits
	// for a free plugin instance before it is skipped: between ReadWait
	// and twice that (default 1 s).
	ReadWait time.Duration
	// AddTimeout bounds one attempt to add, update or remove a device,
	// waiting for a free instance included (default 30 s).
	AddTimeout time.Duration
	// AddConcurrency is how many devices are added to plugins at once
	// (default 32); the others wait their turn.
	AddConcurrency int
	// CloseTimeout bounds the Close that [Manager.Run] does once its
	// context ends (default 30 s).
	CloseTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff (with jitter)
	// between attempts to add a device after a transient failure (the
	// plugin's instances busy or restarting, a timeout, an unreachable
	// device) and between attempts to load a failed plugin (defaults 1 s
	// and 30 s).
	RetryMin, RetryMax time.Duration
}

// ModuleResolver returns the wasm module of a MapperPlugin.
type ModuleResolver interface {
	Module(ctx context.Context, p *v1alpha1.MapperPlugin) ([]byte, error)
}

// Problem is an object the manager refused or could not run.
type Problem struct {
	Source string `json:"source"`
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Manager runs devices. Its methods are safe for concurrent use.
type Manager struct {
	opts Options
	log  *slog.Logger
	met  *metrics
	// clock is the clock of the read-failure warnings' rate limit (nil:
	// time.Now); tests set it.
	clock atomic.Pointer[func() time.Time]
	// sinks reports the data sinks of device statuses (nil: none).
	sinks atomic.Pointer[SinkReporter]

	ctx    context.Context
	cancel context.CancelFunc

	// rec serialises reconciliation: a one-slot semaphore rather than a
	// mutex, so that Close and callers with a context stop waiting for a
	// reconciliation stuck in a plugin call (see [Manager.lockRec]).
	//
	// Lock order: rec, then mu, then a device's d.mu (then its twins'
	// lock). A hot upgrade runs without rec (see upgrade.go): it is
	// started under rec, takes rec again only to commit, and holds
	// nothing while it waits for rec; a holder of rec never waits for an
	// upgrade to end (callers of a reconciliation wait for the upgrades
	// it started once they released rec), except Close, which stops
	// them first and whose upgrades then commit without rec.
	rec chan struct{}

	mu        sync.RWMutex // guards the maps and nextID below
	sources   map[string]*sourceObjs
	owners    map[string]string // object key -> source
	conflicts map[string][]Problem
	plugins   map[string]*pluginEntry
	devices   map[string]*device // by namespace/name
	byID      map[uint32]*device
	nextID    uint32
	// upgrades are the hot upgrades in progress, by plugin name (see
	// upgrade.go): added under rec, and removed under rec too but when
	// an upgrade commits while the manager closes.
	upgrades map[string]*upgradeRun
	// upgradeHook, when set (by tests), is called at steps of hot
	// upgrades (see [Manager.hook]).
	upgradeHook atomic.Pointer[func(plugin, step string)]

	// deps says which devices each model, pinned plugin and protocol
	// concerns; reconciliation owns it (rec).
	deps *depIndex
	// unconfigured holds the devices that kept their previous
	// configuration (their loop was stuck in a plugin call); reconciliation
	// owns it (rec).
	unconfigured map[string]struct{}
	// plans counts the device plans made, for tests and benchmarks.
	plans atomic.Int64
	// restored closes when Restore has run.
	restored     chan struct{}
	restoredOnce sync.Once

	subMu sync.RWMutex // guards subs
	subs  map[*subscription]struct{}

	flushDone chan struct{}
	flushMu   sync.Mutex       // serialises flush; guards flushBuf
	flushBuf  []store.Reported // flush's batch, kept from one flush to the next
	retryDone chan struct{}
	addSem    chan struct{} // bounds concurrent adds
	waits     atomic.Pointer[context.Context]
	sched     *scheduler // runs the devices' loops (see sched.go)
}

// sourceObjs is what one source provides, by key.
type sourceObjs struct {
	devices map[string]storedDevice
	models  map[string]storedModel
	plugins map[string]storedPlugin
}

// storedDevice, storedModel and storedPlugin are objects with the hash of
// what reconciliation reads of them, computed once when they are stored.
type (
	storedDevice struct {
		obj  *v1beta1.Device
		hash uint64
	}
	storedModel struct {
		obj  *v1beta1.DeviceModel
		hash uint64
	}
	storedPlugin struct {
		obj  *v1alpha1.MapperPlugin
		hash uint64
	}
)

func newSourceObjs() *sourceObjs {
	return &sourceObjs{devices: map[string]storedDevice{}, models: map[string]storedModel{}, plugins: map[string]storedPlugin{}}
}

// deviceObj returns the Device of that key and its source, whichever
// source owns it. Callers hold m.mu.
func (m *Manager) deviceObj(key string) (string, storedDevice, bool) {
	src, ok := m.owners[objKey(KindDevice, "", key)]
	if !ok || m.sources[src] == nil {
		return "", storedDevice{}, false
	}
	d, ok := m.sources[src].devices[key]
	return src, d, ok
}

// modelObj returns the DeviceModel of that key, whichever source owns it.
// Callers hold m.mu.
func (m *Manager) modelObj(key string) (storedModel, bool) {
	src, ok := m.owners[objKey(KindDeviceModel, "", key)]
	if !ok || m.sources[src] == nil {
		return storedModel{}, false
	}
	dm, ok := m.sources[src].models[key]
	return dm, ok
}

// pluginObj returns the MapperPlugin of that name and its source,
// whichever source owns it. Callers hold m.mu.
func (m *Manager) pluginObj(name string) (string, *v1alpha1.MapperPlugin) {
	src, ok := m.owners[objKey(KindMapperPlugin, "", name)]
	if !ok || m.sources[src] == nil {
		return "", nil
	}
	return src, m.sources[src].plugins[name].obj
}

// New returns a manager with no devices. Either call [Manager.Run], which
// restores, serves and closes, or call [Manager.Restore] and, at the end,
// [Manager.Close]; apply sources once restored ([Manager.Restored]).
func New(opts Options) (*Manager, error) {
	if opts.Engine == nil || opts.Store == nil || opts.Modules == nil {
		return nil, errors.New("devices: Options.Engine, Store and Modules are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DefaultCollectCycle <= 0 {
		opts.DefaultCollectCycle = time.Second
	}
	if opts.DefaultReportCycle <= 0 {
		opts.DefaultReportCycle = time.Second
	}
	if opts.StateCycle <= 0 {
		opts.StateCycle = 10 * time.Second
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 2 * time.Second
	}
	if opts.PollBudget <= 0 {
		opts.PollBudget = time.Second
	}
	if opts.ReadWait <= 0 {
		opts.ReadWait = time.Second
	}
	if opts.AddTimeout <= 0 {
		opts.AddTimeout = 30 * time.Second
	}
	if opts.AddConcurrency <= 0 {
		opts.AddConcurrency = 32
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(30*time.Second, opts.RetryMin)
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts: opts, log: opts.Logger, met: newMetrics(opts.Registerer),
		ctx: ctx, cancel: cancel,
		sources: map[string]*sourceObjs{}, owners: map[string]string{}, conflicts: map[string][]Problem{},
		plugins: map[string]*pluginEntry{}, devices: map[string]*device{}, byID: map[uint32]*device{},
		subs: map[*subscription]struct{}{}, flushDone: make(chan struct{}), retryDone: make(chan struct{}),
		rec:    make(chan struct{}, 1),
		addSem: make(chan struct{}, opts.AddConcurrency),
		deps:   newDepIndex(), unconfigured: map[string]struct{}{}, restored: make(chan struct{}),
		upgrades: map[string]*upgradeRun{},
	}
	first, cancelFirst := context.WithCancel(ctx)
	m.waits.Store(&first)
	go m.every(opts.FlushInterval, m.flushDone, func() { m.flush() })        // save reported values
	go m.every(opts.RetryMin, m.retryDone, func() { m.retryPlugins(m.ctx) }) // reload failed plugins
	go m.waitLoop(cancelFirst)
	m.startScheduler()
	return m, nil
}

// now reads the clock of the read-failure warnings.
func (m *Manager) now() time.Time {
	if f := m.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// ErrClosed: the manager is closed.
var ErrClosed = errors.New("device manager closed")

// lockRec takes the reconciliation lock, waiting no longer than ctx.
func (m *Manager) lockRec(ctx context.Context) error {
	select {
	case m.rec <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the device manager: %w", context.Cause(ctx))
	}
}

func (m *Manager) unlockRec() { <-m.rec }

// begin takes the reconciliation lock for a change, waiting no longer than
// ctx, and returns a context that also ends when the manager closes, so
// that a reconciliation in progress stops waiting on plugins then. end
// releases both.
func (m *Manager) begin(ctx context.Context) (rctx context.Context, end func(), err error) {
	if err := m.lockRec(ctx); err != nil {
		return nil, nil, err
	}
	if m.ctx.Err() != nil {
		m.unlockRec()
		return nil, nil, ErrClosed
	}
	rctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	return rctx, func() { stop(); cancel(); m.unlockRec() }, nil
}

// waitDone waits for ch to close, or ctx to end; it reports whether ch
// closed.
func waitDone(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// unsaved counts the reported values not saved yet.
func (m *Manager) unsaved() int {
	m.mu.RLock()
	devs := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	m.mu.RUnlock()
	n := 0
	for _, d := range devs {
		n += d.twins.unsaved()
	}
	return n
}

// flushCtx saves the reported values, waiting no longer than ctx; a save
// still running then goes on in the background.
func (m *Manager) flushCtx(ctx context.Context) error {
	saved := make(chan error, 1)
	go func() { _, err := m.flush(); saved <- err }()
	select {
	case err := <-saved:
		return err
	case <-ctx.Done():
		m.log.Warn("reported values not saved in time; the readings since the previous save may be lost")
		return fmt.Errorf("save reported values: %w", context.Cause(ctx))
	}
}

func objKey(kind, ns, name string) string {
	if ns == "" {
		return kind + "/" + name
	}
	return kind + "/" + ns + "/" + name
}

func nsName(ns, name string) string {
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + name
}

// replaceSource swaps the objects of a source, honouring ownership, and
// notes in ch (when not nil) the objects that differ from the source's
// previous ones. It returns the refused objects. Callers hold the
// reconciliation lock (Manager.rec).
func (m *Manager) replaceSource(source string, set *ResourceSet, ch *changes) []Problem {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.sources[source]
	if old == nil {
		old = newSourceObjs()
	}
	for k := range old.devices {
		m.release(source, KindDevice, k)
	}
	for k := range old.models {
		m.release(source, KindDeviceModel, k)
	}
	for k := range old.plugins {
		m.release(source, KindMapperPlugin, k)
	}
	objs := newSourceObjs()
	var conflicts []Problem
	for _, d := range set.Devices {
		d = d.DeepCopy()
		if d.Namespace == "" {
			d.Namespace = "default"
		}
		k := nsName(d.Namespace, d.Name)
		if p := m.claim(source, KindDevice, k); p != nil {
			conflicts = append(conflicts, *p)
			continue
		}
		objs.devices[k] = storedDevice{d, deviceHash(d)}
	}
	for _, d := range set.Models {
		d = d.DeepCopy()
		if d.Namespace == "" {
			d.Namespace = "default"
		}
		k := nsName(d.Namespace, d.Name)
		if p := m.claim(source, KindDeviceModel, k); p != nil {
			conflicts = append(conflicts, *p)
			continue
		}
		objs.models[k] = storedModel{d, modelHash(d)}
	}
	for _, p := range set.Plugins {
		p = p.DeepCopy()
		if pr := m.claim(source, KindMapperPlugin, p.Name); pr != nil {
			conflicts = append(conflicts, *pr)
			continue
		}
		objs.plugins[p.Name] = storedPlugin{p, changeHash(p.Spec)}
	}
	if ch != nil {
		diff(old.devices, objs.devices, func(o storedDevice) uint64 { return o.hash }, ch.devices)
		diff(old.models, objs.models, func(o storedModel) uint64 { return o.hash }, ch.models)
		diff(old.plugins, objs.plugins, func(o storedPlugin) uint64 { return o.hash }, ch.plugins)
		for k, p := range objs.plugins {
			if _, changed := ch.plugins[k]; !changed && p.obj.Spec.Module.File != "" {
				ch.recheck[k] = struct{}{} // the file may have new content
			}
		}
	}
	m.sources[source] = objs
	m.conflicts[source] = conflicts
	for _, c := range conflicts {
		m.log.Warn("object refused", "source", c.Source, "kind", c.Kind, "name", c.Name, "reason", c.Reason)
	}
	return conflicts
}

// diff adds to out the keys of the objects added, removed or changed
// (by hash) between old and cur.
func diff[T any](old, cur map[string]T, hash func(T) uint64, out map[string]struct{}) {
	for k, o := range old {
		if c, ok := cur[k]; !ok || hash(c) != hash(o) {
			out[k] = struct{}{}
		}
	}
	for k := range cur {
		if _, ok := old[k]; !ok {
			out[k] = struct{}{}
		}
	}
}

func (m *Manager) release(source, kind, key string) {
	if m.owners[objKey(kind, "", key)] == source {
		delete(m.owners, objKey(kind, "", key))
	}
}

func (m *Manager) claim(source, kind, key string) *Problem {
	k := objKey(kind, "", key)
	if owner, ok := m.owners[k]; ok && owner != source {
		return &Problem{Source: source, Kind: kind, Name: key,
			Reason: fmt.Sprintf("%s %s is owned by source %q; source %q cannot define it too (rename one of them)", kind, key, owner, source)}
	}
	m.owners[k] = source
	return nil
}

// storeObject encodes one object of a source for the store.
func storeObject(source, kind, key string, v any) (store.Object, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return store.Object{}, fmt.Errorf("encode %s %s of source %s: %w", kind, key, source, err)
	}
	return store.Object{Source: source, Kind: kind, Key: key, JSON: b}, nil
}

// persist saves every object of a source, replacing what was saved.
func (m *Manager) persist(source string) error {
	m.mu.RLock()
	s := m.sources[source]
	var objs []store.Object
	var errs []error
	add := func(kind, key string, v any) {
		o, err := storeObject(source, kind, key, v)
		if err != nil {
			errs = append(errs, err)
			return
		}
		objs = append(objs, o)
	}
	if s != nil {
		for k, d := range s.devices {
			add(KindDevice, k, d.obj)
		}
		for k, d := range s.models {
			add(KindDeviceModel, k, d.obj)
		}
		for k, p := range s.plugins {
			add(KindMapperPlugin, k, p.obj)
		}
	}
	m.mu.RUnlock()
	if err := m.opts.Store.ReplaceObjects(source, objs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// persistChanges saves the objects of a source that ch names: the ones
// the source has, and the removal of the others.
func (m *Manager) persistChanges(source string, ch *changes) error {
	type put struct {
		kind, key string
		obj       any // nil: removed
	}
	var todo []put
	m.mu.RLock()
	s := m.sources[source]
	for k := range ch.devices {
		p := put{kind: KindDevice, key: k}
		if d, ok := s.devices[k]; ok {
			p.obj = d.obj
		}
		todo = append(todo, p)
	}
	for k := range ch.models {
		p := put{kind: KindDeviceModel, key: k}
		if d, ok := s.models[k]; ok {
			p.obj = d.obj
		}
		todo = append(todo, p)
	}
	for k := range ch.plugins {
		p := put{kind: KindMapperPlugin, key: k}
		if d, ok := s.plugins[k]; ok {
			p.obj = d.obj
		}
		todo = append(todo, p)
	}
	m.mu.RUnlock()
	var errs []error
	var puts, dels []store.Object
	for _, p := range todo {
		if p.obj == nil {
			dels = append(dels, store.Object{Source: source, Kind: p.kind, Key: p.key})
			continue
		}
		o, err := storeObject(source, p.kind, p.key, p.obj)
		if err != nil {
			errs = append(errs, fmt.Errorf("save %s %s of source %s: %w", p.kind, p.key, source, err))
			continue
		}
		puts = append(puts, o)
	}
	if err := m.opts.Store.UpdateObjects(puts, dels); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// change applies one object change of a source: fn changes the source's
// objects and notes in ch what it changed. What changed is saved, and the
// devices it touches are planned again; an unchanged object costs
// nothing more.
func (m *Manager) change(ctx context.Context, source string, fn func(s *sourceObjs, ch *changes) error) error {
	rctx, end, err := m.begin(ctx)
	if err != nil {
		return fmt.Errorf("change an object of source %s: %w", source, err)
	}
	ch := newChanges()
	m.mu.Lock()
	s := m.sources[source]
	if s == nil {
		s = newSourceObjs()
		m.sources[source] = s
	}
	err = fn(s, ch)
	m.mu.Unlock()
	if err != nil || ch.empty() {
		end()
		return err
	}
	if err := m.persistChanges(source, ch); err != nil {
		m.log.Error("save applied objects", "source", source, "err", err)
	}
	m.reconcile(rctx, ch)
	end()
	m.awaitUpgrades(ctx, ch.wait)
	return nil
}

func (m *Manager) get(namespace, name string) (*device, error) {
	m.mu.RLock()
	d := m.devices[nsName(namespace, name)]
	m.mu.RUnlock()
	if d == nil {
		return nil, fmt.Errorf("%w: no device %s", ErrNotFound, nsName(namespace, name))
	}
	return d, nil
}

// waitCtx returns the context that bounds waiting for a plugin instance in
// the device loops. Rather than a timer per read (which costs more than
// the read), one context is made every ReadWait and cancelled after the
// next one: a wait started now ends within one to two ReadWait.
func (m *Manager) waitCtx() context.Context { return *m.waits.Load() }

func (m *Manager) waitLoop(cancelFirst context.CancelFunc) {
	t := time.NewTicker(m.opts.ReadWait)
	defer t.Stop()
	// older is cancelled at the next tick; cur (the context handed out
	// now) at the one after.
	older, cur := context.CancelFunc(func() {}), cancelFirst
	for {
		select {
		case <-m.ctx.Done():
			older()
			cur()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(m.ctx)
		m.waits.Store(&ctx)
		older()
		older, cur = cur, cancel
	}
}
