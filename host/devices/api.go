// The Manager's public API: what sources, consumers and the daemon call.

package devices

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// Devices returns every device, sorted by namespace/name.
func (m *Manager) Devices() []DeviceStatus {
	m.mu.RLock()
	devs := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	m.mu.RUnlock()
	sort.Slice(devs, func(i, j int) bool { return devs[i].key < devs[j].key })
	out := make([]DeviceStatus, len(devs))
	for i, d := range devs {
		out[i] = m.withSinks(d.status())
	}
	return out
}

// SetSinkReporter sets where device statuses take their Sinks from.
func (m *Manager) SetSinkReporter(r SinkReporter) { m.sinks.Store(&r) }

func (m *Manager) withSinks(s DeviceStatus) DeviceStatus {
	if r := m.sinks.Load(); r != nil {
		s.Sinks = (*r).SinkStatus(s.Namespace + "/" + s.Name)
	}
	return s
}

// Device returns one device.
func (m *Manager) Device(namespace, name string) (DeviceStatus, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return DeviceStatus{}, err
	}
	return m.withSinks(d.status()), nil
}

// SetDesired sets the desired value of a ReadWrite property (KubeEdge twin
// text, such as "true" or "21.5"). The value is saved durably before
// SetDesired returns; the device applies it asynchronously (see
// [Manager.WaitApplied]). by names the writer for logs ("rest", "mqtt", a
// source name). A write to a ReadOnly property is refused with an error
// wrapping [ErrReadOnly], and a value that is not valid for the property's
// type with one wrapping [ErrInvalid]; a desired value in a Device spec on
// such a property, or not valid for its type, by contrast, is not written
// (logged once, and shown in the twin's Error when not valid) and the
// device runs.
func (m *Manager) SetDesired(ctx context.Context, namespace, name, property, value, by string) (TwinStatus, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return TwinStatus{}, err
	}
	cfg, pc := d.findProp(property)
	if pc == nil {
		if cfg == nil || cfg.err != nil && len(cfg.props) == 0 {
			return TwinStatus{}, fmt.Errorf("%w: device %s is not running: %s", ErrUnavailable, d.key, d.reasonText())
		}
		return TwinStatus{}, fmt.Errorf("%w: device %s has no property %q", ErrNotFound, d.key, property)
	}
	if pc.AccessMode != string(v1beta1.ReadWrite) {
		return TwinStatus{}, fmt.Errorf("%w: property %q of %s is %s in its DeviceModel", ErrReadOnly, property, d.key, pc.AccessMode)
	}
	if _, err := abi.ParseText(pc.typ, value); err != nil {
		return TwinStatus{}, fmt.Errorf("%w: %q is not a valid %s for property %q: %v", ErrInvalid, value, pc.typ, property, err)
	}
	return d.setDesired(property, value, by, false)
}

// WaitApplied waits until desired value seq of a property has been written
// to the device, or its write failed (the error is returned), or ctx ends.
func (m *Manager) WaitApplied(ctx context.Context, namespace, name, property string, seq uint64) error {
	d, err := m.get(namespace, name)
	if err != nil {
		return err
	}
	return d.twins.waitApplied(ctx, property, seq, func() error {
		if phase, reason := d.phaseReason(); phase == PhaseError {
			return fmt.Errorf("%w: device %s: %s", ErrUnavailable, d.key, reason)
		}
		return nil
	})
}

// Read reads a property from the device now, through its plugin, and
// updates the reported value.
func (m *Manager) Read(ctx context.Context, namespace, name, property string) (TwinStatus, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return TwinStatus{}, err
	}
	cfg, pc := d.findProp(property)
	if pc == nil {
		return TwinStatus{}, fmt.Errorf("%w: device %s has no property %q", ErrNotFound, d.key, property)
	}
	ph, reason := d.phaseReason()
	if ph != PhaseRunning {
		return TwinStatus{}, fmt.Errorf("%w: device %s: %s", ErrUnavailable, d.key, reason)
	}
	v, err := cfg.plugin.p.Read(ctx, d.id, pc.Handle)
	if err != nil {
		d.readResult(cfg, pc, v, err, time.Now(), nil)
		return TwinStatus{}, fmt.Errorf("%w: read %s of %s: %w", ErrUnavailable, property, d.key, err)
	}
	d.readResult(cfg, pc, v, nil, time.Now(), nil)
	return d.twins.status(pc), nil
}

// CallMethod calls a device method declared in the Device's spec.methods
// through the plugin, with args as JSON.
func (m *Manager) CallMethod(ctx context.Context, namespace, name, method string, args []byte) ([]byte, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil || cfg.err != nil {
		return nil, fmt.Errorf("%w: device %s: %s", ErrUnavailable, d.key, d.reasonText())
	}
	found := false
	for _, mt := range cfg.desc.Methods {
		found = found || mt.Name == method
	}
	if !found {
		return nil, fmt.Errorf("%w: device %s has no method %q in spec.methods", ErrNotFound, d.key, method)
	}
	out, err := cfg.plugin.p.CallMethod(ctx, d.id, method, args)
	if err != nil {
		switch abi.CodeOf(err) {
		case abi.ErrInvalid:
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		case abi.ErrNotFound, abi.ErrUnsupported:
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return out, nil
}

// Close stops every device, saves the reported values and closes the
// plugins. It waits no longer than ctx for any of it: a device whose loop
// is stuck in a plugin call, a reconciliation or a plugin that does not
// close in time is left behind, logged, and named in the returned error.
func (m *Manager) Close(ctx context.Context) error {
	m.cancel() // ends every device loop, the retry and flush loops and reconciliations
	var stuck []string
	var causes []error // what the failed saves and closes returned
	if !waitDone(ctx, m.retryDone) {
		stuck = append(stuck, "the loop that loads failed plugins again")
	}
	if m.lockRec(ctx) == nil {
		defer m.unlockRec()
	} else {
		stuck = append(stuck, "a reconciliation of devices and plugins")
	}
	// Hot upgrades in progress end at once (interrupted, they roll back)
	// and, with rec held here, commit without it (see upgrade.go).
	if up := m.awaitCommits(ctx); len(up) > 0 {
		stuck = append(stuck, "hot upgrades of MapperPlugins "+strings.Join(up, ", "))
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
		stuck = append(stuck, "the save of reported values")
		causes = append(causes, err)
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
			stuck = append(stuck, "the last save of reported values")
			causes = append(causes, err)
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
			causes = append(causes, err)
		}
	}
	if len(stuck) > 0 {
		err := fmt.Errorf("devices: closed without waiting for %s", strings.Join(stuck, "; "))
		if len(causes) > 0 {
			err = fmt.Errorf("%w: %w", err, errors.Join(causes...))
		}
		return err
	}
	return nil
}

// Run restores the state ([Manager.Restore]), runs the devices until ctx
// ends, then closes the manager ([Manager.Close], waiting no longer than
// [Options.CloseTimeout]: reported values are saved and devices stopped)
// and returns the error of the restore or of the close. Sources may apply
// objects once [Manager.Restored] is closed. Call Run at most once, and
// neither Restore nor Close beside it.
func (m *Manager) Run(ctx context.Context) error {
	rerr := m.Restore(ctx)
	if rerr == nil {
		<-ctx.Done()
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.CloseTimeout)
	defer cancel()
	return errors.Join(rerr, m.Close(cctx))
}

// Restored is closed once [Manager.Restore] has run (successfully or not).
func (m *Manager) Restored() <-chan struct{} { return m.restored }

// Restore re-applies what every source last applied, from the store. Call it
// once, before any source applies anything.
func (m *Manager) Restore(ctx context.Context) error {
	defer m.restoredOnce.Do(func() { close(m.restored) })
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
		var err error
		switch o.Kind {
		case KindDevice:
			var d v1beta1.Device
			if err = json.Unmarshal(o.JSON, &d); err == nil {
				s.Devices = append(s.Devices, &d)
			}
		case KindDeviceModel:
			var d v1beta1.DeviceModel
			if err = json.Unmarshal(o.JSON, &d); err == nil {
				s.Models = append(s.Models, &d)
			}
		case KindMapperPlugin:
			var d v1alpha1.MapperPlugin
			if err = json.Unmarshal(o.JSON, &d); err == nil {
				s.Plugins = append(s.Plugins, &d)
			}
		}
		if err != nil {
			m.log.Error("stored object not restored: it does not decode; its source applies it again", "source", o.Source, "kind", o.Kind, "name", o.Key, "err", err)
		}
	}
	ctx, end, err := m.begin(ctx)
	if err != nil {
		return fmt.Errorf("restore state: %w", err)
	}
	defer end()
	for _, src := range order {
		m.replaceSource(src, sets[src], nil)
		m.log.Info("restored from state", "source", src, "devices", len(sets[src].Devices), "models", len(sets[src].Models), "plugins", len(sets[src].Plugins))
	}
	ch := newChanges()
	ch.all = true
	m.reconcile(ctx, ch)
	return nil
}

// Apply replaces everything source provides with set: objects not in set are
// deleted, new ones added, changed ones updated. Objects whose names another
// source owns are refused; the returned error (wrapping ErrConflict) lists
// them, and the rest of the set is applied anyway. Only the devices that
// the difference from the source's previous set touches are planned again.
// When set changes a plugin's module and the plugin is upgraded hot, Apply
// returns once the upgrade ended; changes of other plugins and of their
// devices, by any source, are made meanwhile (see upgrade.go).
func (m *Manager) Apply(ctx context.Context, source string, set ResourceSet) error {
	rctx, end, err := m.begin(ctx)
	if err != nil {
		return fmt.Errorf("apply the objects of source %s: %w", source, err)
	}
	ch := newChanges()
	conflicts := m.replaceSource(source, &set, ch)
	if err := m.persist(source); err != nil {
		m.log.Error("save applied objects", "source", source, "err", err)
	}
	m.reconcile(rctx, ch)
	end()
	m.awaitUpgrades(ctx, ch.wait)
	if len(conflicts) > 0 {
		return fmt.Errorf("%w: %d objects refused: %s", ErrConflict, len(conflicts), conflicts[0].Reason)
	}
	return nil
}

// UpsertDevice adds or replaces one Device of source.
func (m *Manager) UpsertDevice(ctx context.Context, source string, d *v1beta1.Device) error {
	return m.UpsertDevices(ctx, source, []*v1beta1.Device{d})[0]
}

// UpsertDevices adds or replaces Devices of source as one change: one
// save to the state database and one reconcile for all of them, where
// UpsertDevice per device costs a disk sync each (most of the time of
// registering thousands of devices over DMI). errs[i] is the error of
// ds[i]: ErrConflict when another source holds it; an error of the whole
// change is in every entry.
func (m *Manager) UpsertDevices(ctx context.Context, source string, ds []*v1beta1.Device) (errs []error) {
	errs = make([]error, len(ds))
	stored := make([]storedDevice, len(ds))
	for i, d := range ds {
		d = d.DeepCopy()
		if d.Namespace == "" {
			d.Namespace = "default"
		}
		stored[i] = storedDevice{d, deviceHash(d)}
	}
	err := m.change(ctx, source, func(s *sourceObjs, ch *changes) error {
		for i, sd := range stored {
			k := nsName(sd.obj.Namespace, sd.obj.Name)
			if p := m.claim(source, KindDevice, k); p != nil {
				errs[i] = fmt.Errorf("%w: %s", ErrConflict, p.Reason)
				continue
			}
			if old, ok := s.devices[k]; !ok || old.hash != sd.hash {
				ch.devices[k] = struct{}{}
			}
			s.devices[k] = sd
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = cmp.Or(errs[i], err)
		}
	}
	return errs
}

// DeleteDevice removes one Device of source; a Device the source does not
// have is not an error.
func (m *Manager) DeleteDevice(ctx context.Context, source, namespace, name string) error {
	k := nsName(namespace, name)
	return m.change(ctx, source, func(s *sourceObjs, ch *changes) error {
		if _, ok := s.devices[k]; ok {
			delete(s.devices, k)
			m.release(source, KindDevice, k)
			ch.devices[k] = struct{}{}
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
	h := modelHash(dm)
	return m.change(ctx, source, func(s *sourceObjs, ch *changes) error {
		if p := m.claim(source, KindDeviceModel, k); p != nil {
			return fmt.Errorf("%w: %s", ErrConflict, p.Reason)
		}
		if old, ok := s.models[k]; !ok || old.hash != h {
			ch.models[k] = struct{}{}
		}
		s.models[k] = storedModel{dm, h}
		return nil
	})
}

// DeleteModel removes one DeviceModel of source.
func (m *Manager) DeleteModel(ctx context.Context, source, namespace, name string) error {
	k := nsName(namespace, name)
	return m.change(ctx, source, func(s *sourceObjs, ch *changes) error {
		if _, ok := s.models[k]; ok {
			delete(s.models, k)
			m.release(source, KindDeviceModel, k)
			ch.models[k] = struct{}{}
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
		return fmt.Errorf("%w: MapperPlugin %s: %w", ErrInvalid, p.Name, errs.ToAggregate())
	}
	h := changeHash(p.Spec)
	return m.change(ctx, source, func(s *sourceObjs, ch *changes) error {
		if pr := m.claim(source, KindMapperPlugin, p.Name); pr != nil {
			return fmt.Errorf("%w: %s", ErrConflict, pr.Reason)
		}
		if old, ok := s.plugins[p.Name]; !ok || old.hash != h {
			ch.plugins[p.Name] = struct{}{}
		} else if p.Spec.Module.File != "" {
			ch.recheck[p.Name] = struct{}{} // the file may have new content
		}
		s.plugins[p.Name] = storedPlugin{p, h}
		return nil
	})
}

// DeletePlugin removes one MapperPlugin of source.
func (m *Manager) DeletePlugin(ctx context.Context, source, name string) error {
	return m.change(ctx, source, func(s *sourceObjs, ch *changes) error {
		if _, ok := s.plugins[name]; ok {
			delete(s.plugins, name)
			m.release(source, KindMapperPlugin, name)
			ch.plugins[name] = struct{}{}
		}
		return nil
	})
}

// Protocols lists, sorted, the protocols the loaded MapperPlugins provide
// (not those that failed to load).
func (m *Manager) Protocols() []string {
	m.mu.RLock()
	var out []string
	for _, e := range m.plugins {
		if e.err == nil {
			out = append(out, e.obj.Spec.Protocols...)
		}
	}
	m.mu.RUnlock()
	slices.Sort(out)
	return slices.Compact(out)
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
		if p.err == nil && p.upgradeFailures > 0 {
			out = append(out, Problem{Source: p.source, Kind: KindMapperPlugin, Name: p.name,
				Reason: fmt.Sprintf("new module not resolved yet (attempt %d), still running %s; trying again in %s", p.upgradeFailures, p.digest, max(0, time.Until(p.upgradeAt)).Round(time.Second))})
		}
		if p.err == nil && p.rejected != "" {
			out = append(out, Problem{Source: p.source, Kind: KindMapperPlugin, Name: p.name,
				Reason: fmt.Sprintf("upgrade to module %s rolled back, still running %s: %s", p.rejected, p.digest, p.rejectedWhy)})
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

// DeviceCount returns the number of devices the manager holds, whatever
// their phase (wapper-host's --memory-limit auto follows it).
func (m *Manager) DeviceCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.devices)
}

// Subscribe returns a channel of every device event and a function that
// ends the subscription (and closes the channel). name labels the drop
// counter; buffer is the channel size (at least 1024 is wise with many
// devices). Events are dropped, never waited for, when the channel is full.
func (m *Manager) Subscribe(name string, buffer int) (<-chan Event, func()) {
	return m.SubscribeFunc(name, buffer, nil)
}

// SubscribeFunc is [Manager.Subscribe] for the events keep accepts only
// (nil keeps every event). keep runs on the goroutine that reads the
// devices, so it must be quick, must not modify the event and must not
// keep the pointer (the event may be reused once keep returns). For
// reading and report events, keep decides on the twins' Property, Type,
// AccessMode and Push only: their values, times and errors are filled in
// after, for the subscribers that keep the event. Filtering there saves
// waking the subscriber, and building the event, for events it would
// throw away (most readings).
func (m *Manager) SubscribeFunc(name string, buffer int, keep func(*Event) bool) (<-chan Event, func()) {
	s := &subscription{ch: make(chan Event, max(buffer, 1)), keep: keep, drop: m.met.dropped.WithLabelValues(name)}
	m.subMu.Lock()
	m.subs[s] = struct{}{}
	m.subMu.Unlock()
	var done bool
	return s.ch, func() {
		m.subMu.Lock()
		defer m.subMu.Unlock()
		if !done {
			done = true
			delete(m.subs, s)
			close(s.ch)
		}
	}
}

// Plugins returns the status of every MapperPlugin, sorted by name.
func (m *Manager) Plugins() []PluginStatus {
	m.mu.RLock()
	out := make([]PluginStatus, 0, len(m.plugins))
	for _, e := range m.plugins {
		out = append(out, e.statusLocked())
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Plugin returns the status of the named MapperPlugin, if there is one.
func (m *Manager) Plugin(name string) (PluginStatus, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.plugins[name]
	if e == nil {
		return PluginStatus{}, false
	}
	return e.statusLocked(), true
}
