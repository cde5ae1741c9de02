package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
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

	ctx    context.Context
	cancel context.CancelFunc

	// rec serialises reconciliation: a one-slot semaphore rather than a
	// mutex, so that Close and callers with a context stop waiting for a
	// reconciliation stuck in a plugin call (see [Manager.lockRec]).
	rec chan struct{}

	mu        sync.RWMutex // guards the maps and nextID below
	sources   map[string]*sourceObjs
	owners    map[string]string // object key -> source
	conflicts map[string][]Problem
	plugins   map[string]*pluginEntry
	devices   map[string]*device // by namespace/name
	byID      map[uint32]*device
	nextID    uint32

	subMu sync.RWMutex // guards subs
	subs  map[*subscription]struct{}

	flushDone chan struct{}
	retryDone chan struct{}
	addSem    chan struct{} // bounds concurrent adds
	waits     atomic.Pointer[context.Context]
}

type sourceObjs struct {
	devices map[string]*v1beta1.Device
	models  map[string]*v1beta1.DeviceModel
	plugins map[string]*v1alpha1.MapperPlugin
}

func newSourceObjs() *sourceObjs {
	return &sourceObjs{devices: map[string]*v1beta1.Device{}, models: map[string]*v1beta1.DeviceModel{}, plugins: map[string]*v1alpha1.MapperPlugin{}}
}

// New returns a manager with no devices. Call [Manager.Restore], then apply
// sources, and [Manager.Close] at the end.
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
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts: opts, log: opts.Logger, met: newMetrics(opts.Registerer),
		ctx: ctx, cancel: cancel,
		sources: map[string]*sourceObjs{}, owners: map[string]string{}, conflicts: map[string][]Problem{},
		plugins: map[string]*pluginEntry{}, devices: map[string]*device{}, byID: map[uint32]*device{},
		subs: map[*subscription]struct{}{}, flushDone: make(chan struct{}), retryDone: make(chan struct{}),
		rec:    make(chan struct{}, 1),
		addSem: make(chan struct{}, opts.AddConcurrency),
	}
	first, cancelFirst := context.WithCancel(ctx)
	m.waits.Store(&first)
	go m.every(opts.FlushInterval, m.flushDone, func() { m.flush() })        // save reported values
	go m.every(opts.RetryMin, m.retryDone, func() { m.retryPlugins(m.ctx) }) // reload failed plugins
	go m.waitLoop(cancelFirst)
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

// Close stops every device, saves the reported values and closes the
// plugins. It waits no longer than ctx for any of it: a device whose loop
// is stuck in a plugin call, a reconciliation or a plugin that does not
// close in time is left behind, logged, and named in the returned error.
func (m *Manager) Close(ctx context.Context) error {
	m.cancel() // ends every device loop, the retry and flush loops and reconciliations
	var stuck []string
	if !waitDone(ctx, m.retryDone) {
		stuck = append(stuck, "the loop that loads failed plugins again")
	}
	if m.lockRec(ctx) == nil {
		defer m.unlockRec()
	} else {
		stuck = append(stuck, "a reconciliation of devices and plugins")
	}
	if !waitDone(ctx, m.flushDone) {
		stuck = append(stuck, "the periodic save of reported values")
	}
	m.mu.Lock()
	devs := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	plugs := m.plugins
	m.plugins = map[string]*pluginEntry{}
	m.mu.Unlock()
	sort.Slice(devs, func(i, j int) bool { return devs[i].key < devs[j].key })
	// Save what was read before waiting for the device loops, which a
	// stuck plugin call may hold until ctx ends; then again after, for
	// the readings of the loops that did stop.
	if err := m.flushCtx(ctx); err != nil {
		stuck = append(stuck, err.Error())
	}
	// A loop stuck in a plugin call would take all the time left: keep a
	// fifth of it for the last save and the plugin closes.
	stopCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)*4/5))
		defer cancel()
	}
	var running []string
	for _, d := range devs {
		if err := d.stop(stopCtx); err != nil {
			running = append(running, d.key)
		}
	}
	if len(running) > 0 {
		m.log.Warn("devices did not stop in time: their loops are still in plugin calls", "count", len(running), "devices", running)
		stuck = append(stuck, fmt.Sprintf("%d device loops in plugin calls (%s)", len(running), strings.Join(running, ", ")))
	}
	if ctx.Err() == nil {
		if err := m.flushCtx(ctx); err != nil {
			stuck = append(stuck, err.Error())
		}
	} else if n := m.unsaved(); n > 0 {
		m.log.Warn("reported values read while stopping not saved: no time left", "count", n)
		stuck = append(stuck, fmt.Sprintf("the save of %d reported values", n))
	}
	names := make([]string, 0, len(plugs))
	for n := range plugs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := plugs[n].close(ctx); err != nil {
			m.log.Warn("plugin not closed in time", "plugin", n, "err", err)
			stuck = append(stuck, "closing MapperPlugin "+n)
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("devices: closed without waiting for %s", strings.Join(stuck, "; "))
	}
	return nil
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
		d.mu.Lock()
		for _, t := range d.twins {
			if t.dirty {
				n++
			}
		}
		d.mu.Unlock()
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
		return errors.New("the save of reported values")
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

// Restore re-applies what every source last applied, from the store. Call it
// once, before any source applies anything.
func (m *Manager) Restore(ctx context.Context) error {
	objs, err := m.opts.Store.Objects()
	if err != nil {
		return fmt.Errorf("restore state: %w", err)
	}
	sets := map[string]*ResourceSet{}
	var order []string
	for _, o := range objs {
		s := sets[o.Source]
		if s == nil {
			s = &ResourceSet{}
			sets[o.Source] = s
			order = append(order, o.Source)
		}
		switch o.Kind {
		case KindDevice:
			var d v1beta1.Device
			if err := json.Unmarshal(o.JSON, &d); err == nil {
				s.Devices = append(s.Devices, &d)
			}
		case KindDeviceModel:
			var d v1beta1.DeviceModel
			if err := json.Unmarshal(o.JSON, &d); err == nil {
				s.Models = append(s.Models, &d)
			}
		case KindMapperPlugin:
			var d v1alpha1.MapperPlugin
			if err := json.Unmarshal(o.JSON, &d); err == nil {
				s.Plugins = append(s.Plugins, &d)
			}
		}
	}
	ctx, end, err := m.begin(ctx)
	if err != nil {
		return fmt.Errorf("restore state: %w", err)
	}
	defer end()
	for _, src := range order {
		m.replaceSource(src, sets[src])
		m.log.Info("restored from state", "source", src, "devices", len(sets[src].Devices), "models", len(sets[src].Models), "plugins", len(sets[src].Plugins))
	}
	m.reconcile(ctx)
	return nil
}

// Apply replaces everything source provides with set: objects not in set are
// deleted, new ones added, changed ones updated. Objects whose names another
// source owns are refused; the returned error (wrapping ErrConflict) lists
// them, and the rest of the set is applied anyway.
func (m *Manager) Apply(ctx context.Context, source string, set ResourceSet) error {
	ctx, end, err := m.begin(ctx)
	if err != nil {
		return fmt.Errorf("apply the objects of source %s: %w", source, err)
	}
	defer end()
	conflicts := m.replaceSource(source, &set)
	if err := m.persist(source); err != nil {
		m.log.Error("save applied objects", "source", source, "err", err)
	}
	m.reconcile(ctx)
	if len(conflicts) > 0 {
		return fmt.Errorf("%w: %d objects refused: %s", ErrConflict, len(conflicts), conflicts[0].Reason)
	}
	return nil
}

// replaceSource swaps the objects of a source, honouring ownership. It
// returns the refused objects. Callers hold the reconciliation lock (Manager.rec).
func (m *Manager) replaceSource(source string, set *ResourceSet) []Problem {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.sources[source]
	if old != nil {
		for k := range old.devices {
			m.release(source, KindDevice, k)
		}
		for k := range old.models {
			m.release(source, KindDeviceModel, k)
		}
		for k := range old.plugins {
			m.release(source, KindMapperPlugin, k)
		}
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
		objs.devices[k] = d
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
		objs.models[k] = d
	}
	for _, p := range set.Plugins {
		p = p.DeepCopy()
		if pr := m.claim(source, KindMapperPlugin, p.Name); pr != nil {
			conflicts = append(conflicts, *pr)
			continue
		}
		objs.plugins[p.Name] = p
	}
	m.sources[source] = objs
	m.conflicts[source] = conflicts
	for _, c := range conflicts {
		m.log.Warn("object refused", "source", c.Source, "kind", c.Kind, "name", c.Name, "reason", c.Reason)
	}
	return conflicts
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

func (m *Manager) persist(source string) error {
	m.mu.RLock()
	s := m.sources[source]
	var objs []store.Object
	add := func(kind, key string, v any) {
		b, err := json.Marshal(v)
		if err == nil {
			objs = append(objs, store.Object{Source: source, Kind: kind, Key: key, JSON: b})
		}
	}
	if s != nil {
		for k, d := range s.devices {
			add(KindDevice, k, d)
		}
		for k, d := range s.models {
			add(KindDeviceModel, k, d)
		}
		for k, d := range s.plugins {
			add(KindMapperPlugin, k, d)
		}
	}
	m.mu.RUnlock()
	return m.opts.Store.ReplaceObjects(source, objs)
}

// change applies one object change of a source and reconciles.
func (m *Manager) change(ctx context.Context, source string, fn func(s *sourceObjs) error) error {
	ctx, end, err := m.begin(ctx)
	if err != nil {
		return fmt.Errorf("change an object of source %s: %w", source, err)
	}
	defer end()
	m.mu.Lock()
	s := m.sources[source]
	if s == nil {
		s = newSourceObjs()
		m.sources[source] = s
	}
	err = fn(s)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if err := m.persist(source); err != nil {
		m.log.Error("save applied objects", "source", source, "err", err)
	}
	m.reconcile(ctx)
	return nil
}

// UpsertDevice adds or replaces one Device of source.
func (m *Manager) UpsertDevice(ctx context.Context, source string, d *v1beta1.Device) error {
	d = d.DeepCopy()
	if d.Namespace == "" {
		d.Namespace = "default"
	}
	k := nsName(d.Namespace, d.Name)
	return m.change(ctx, source, func(s *sourceObjs) error {
		if p := m.claim(source, KindDevice, k); p != nil {
			return fmt.Errorf("%w: %s", ErrConflict, p.Reason)
		}
		s.devices[k] = d
		return nil
	})
}

// DeleteDevice removes one Device of source; a Device the source does not
// have is not an error.
func (m *Manager) DeleteDevice(ctx context.Context, source, namespace, name string) error {
	k := nsName(namespace, name)
	return m.change(ctx, source, func(s *sourceObjs) error {
		if _, ok := s.devices[k]; ok {
			delete(s.devices, k)
			m.release(source, KindDevice, k)
		}
		return nil
	})
}

// UpsertModel adds or replaces one DeviceModel of source.
func (m *Manager) UpsertModel(ctx context.Context, source string, dm *v1beta1.DeviceModel) error {
	dm = dm.DeepCopy()
	if dm.Namespace == "" {
		dm.Namespace = "default"
	}
	k := nsName(dm.Namespace, dm.Name)
	return m.change(ctx, source, func(s *sourceObjs) error {
		if p := m.claim(source, KindDeviceModel, k); p != nil {
			return fmt.Errorf("%w: %s", ErrConflict, p.Reason)
		}
		s.models[k] = dm
		return nil
	})
}

// DeleteModel removes one DeviceModel of source.
func (m *Manager) DeleteModel(ctx context.Context, source, namespace, name string) error {
	k := nsName(namespace, name)
	return m.change(ctx, source, func(s *sourceObjs) error {
		if _, ok := s.models[k]; ok {
			delete(s.models, k)
			m.release(source, KindDeviceModel, k)
		}
		return nil
	})
}

// UpsertPlugin adds or replaces one MapperPlugin of source. It is defaulted
// and validated first.
func (m *Manager) UpsertPlugin(ctx context.Context, source string, p *v1alpha1.MapperPlugin) error {
	p = p.DeepCopy()
	p.Default()
	if errs := p.Validate(); len(errs) > 0 {
		return fmt.Errorf("%w: MapperPlugin %s: %v", ErrInvalid, p.Name, errs.ToAggregate())
	}
	return m.change(ctx, source, func(s *sourceObjs) error {
		if pr := m.claim(source, KindMapperPlugin, p.Name); pr != nil {
			return fmt.Errorf("%w: %s", ErrConflict, pr.Reason)
		}
		s.plugins[p.Name] = p
		return nil
	})
}

// DeletePlugin removes one MapperPlugin of source.
func (m *Manager) DeletePlugin(ctx context.Context, source, name string) error {
	return m.change(ctx, source, func(s *sourceObjs) error {
		if _, ok := s.plugins[name]; ok {
			delete(s.plugins, name)
			m.release(source, KindMapperPlugin, name)
		}
		return nil
	})
}

// Problems lists the objects refused for conflicts and the plugins and
// devices in error, sorted.
func (m *Manager) Problems() []Problem {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Problem
	for _, ps := range m.conflicts {
		out = append(out, ps...)
	}
	for _, p := range m.plugins {
		if p.err != nil {
			out = append(out, Problem{Source: p.source, Kind: KindMapperPlugin, Name: p.name,
				Reason: fmt.Sprintf("%v (loading it again in %s, attempt %d)", p.err, max(0, time.Until(p.retryAt)).Round(time.Second), p.failures+1)})
		}
	}
	for _, d := range m.devices {
		d.mu.Lock()
		ph, reason, source := d.phase, d.reason, d.source
		d.mu.Unlock()
		if ph == PhaseError {
			out = append(out, Problem{Source: source, Kind: KindDevice, Name: d.key, Reason: reason})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Owned returns the keys (namespace/name) of the Devices and DeviceModels
// that source has applied and not deleted, sorted.
func (m *Manager) Owned(source string) (devices, models []string) {
	m.mu.RLock()
	if s := m.sources[source]; s != nil {
		for k := range s.devices {
			devices = append(devices, k)
		}
		for k := range s.models {
			models = append(models, k)
		}
	}
	m.mu.RUnlock()
	sort.Strings(devices)
	sort.Strings(models)
	return devices, models
}

// Model returns the DeviceModel a device uses.
func (m *Manager) Model(namespace, device string) (*v1beta1.DeviceModel, error) {
	d, err := m.get(namespace, device)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.model == nil {
		return nil, fmt.Errorf("%w: device %s has no model: %s", ErrNotFound, d.key, d.reason)
	}
	return d.model.DeepCopy(), nil
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
