package devices

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/binding"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// changes names what a reconciliation looks at: the devices, models and
// plugins (by key) that were added, changed or removed, or all of them.
type changes struct {
	all     bool
	devices map[string]struct{}
	models  map[string]struct{}
	plugins map[string]struct{}
	// reloaded names plugins loaded again (by retryPlugins) whose devices
	// are planned again even though their objects did not change.
	reloaded map[string]struct{}
	// recheck names plugins applied again unchanged whose module file
	// may have new content.
	recheck map[string]struct{}
	// wait is filled by reconcile: the hot upgrades it started, and
	// those it left changes of plugins and devices to (see
	// [upgradeRun]). Its caller waits for them (awaitUpgrades) once it
	// released the reconciliation lock.
	wait []*upgradeRun
}

// waitFor adds an upgrade to ch.wait, once.
func (c *changes) waitFor(run *upgradeRun) {
	if !slices.Contains(c.wait, run) {
		c.wait = append(c.wait, run)
	}
}

func newChanges() *changes {
	return &changes{devices: map[string]struct{}{}, models: map[string]struct{}{}, plugins: map[string]struct{}{},
		reloaded: map[string]struct{}{}, recheck: map[string]struct{}{}}
}

func (c *changes) empty() bool {
	return !c.all && len(c.devices) == 0 && len(c.models) == 0 && len(c.plugins) == 0 && len(c.reloaded) == 0 && len(c.recheck) == 0
}

// sortedKeys returns the keys of a set, sorted.
func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// reconcile brings plugins and devices in line with the objects of every
// source, looking only at what ch names: the plugins it names, and the
// devices it names or that use a model, plugin or protocol it touches.
// A plugin being upgraded hot, and the devices that run on it or would
// now, are left to its upgrade, which reconciles them once it ends (see
// [upgradeRun]); ch.wait names those upgrades, and the ones started.
// Callers hold the reconciliation lock (Manager.rec).
func (m *Manager) reconcile(ctx context.Context, ch *changes) {
	if ch.all {
		m.mu.RLock()
		for _, s := range m.sources {
			for k := range s.plugins {
				ch.plugins[k] = struct{}{}
			}
			for k := range s.devices {
				ch.devices[k] = struct{}{}
			}
		}
		for k := range m.plugins {
			ch.plugins[k] = struct{}{}
		}
		for k := range m.devices {
			ch.devices[k] = struct{}{}
		}
		m.mu.RUnlock()
	}
	todo := maps.Clone(ch.devices) // the devices to plan
	if todo == nil {
		todo = map[string]struct{}{}
	}
	// Devices whose loop did not stop for their last configuration are
	// configured again by the next reconciliation, whatever it is for.
	maps.Copy(todo, m.unconfigured)
	clear(m.unconfigured)
	for k := range ch.models {
		m.deps.addUsers(depModel+k, todo)
	}

	// Plugins: load new and changed ones first, so devices can move.
	var retired []*pluginEntry
	names := maps.Clone(ch.plugins)
	if names == nil {
		names = map[string]struct{}{}
	}
	maps.Copy(names, ch.reloaded)
	maps.Copy(names, ch.recheck)
	for _, name := range sortedKeys(names) {
		m.mu.RLock()
		src, obj := m.pluginObj(name)
		old := m.plugins[name]
		run := m.upgrades[name]
		m.mu.RUnlock()
		_, reloaded := ch.reloaded[name]
		_, changed := ch.plugins[name]
		_, recheck := ch.recheck[name]
		if run != nil {
			// Being upgraded: this change is made once the upgrade
			// ends, not beside it.
			run.changed = run.changed || changed
			run.reloaded = run.reloaded || reloaded
			run.recheck = run.recheck || recheck
			ch.waitFor(run)
			m.hook(name, "deferred")
			continue
		}
		var spec string
		if obj != nil {
			b, err := json.Marshal(obj.Spec)
			if err != nil { // cannot happen with the API types; load it anew
				m.log.Warn("MapperPlugin spec does not encode", "plugin", name, "err", err)
			}
			spec = string(b)
		}
		if obj != nil && old != nil && old.err == nil && old.source == src && spec != "" && !reloaded &&
			(old.spec != spec || recheck) && moduleOnly(&old.obj.Spec, &obj.Spec) {
			// Only the module (or a policy) changed, or a module file
			// may have: keep the devices running (see upgrade.go).
			mc := m.changeModule(ctx, old, src, obj, spec)
			if mc.handled {
				if mc.run != nil {
					ch.waitFor(mc.run)
				}
				if mc.entry != old {
					m.mu.Lock()
					m.plugins[name] = mc.entry
					m.mu.Unlock()
				}
				if mc.retired != nil {
					retired = append(retired, mc.retired)
				}
				for _, d := range mc.stay {
					todo[d.key] = struct{}{}
				}
				continue
			}
		} else if !changed && !reloaded {
			continue // a module file to check again, on a plugin that failed or moved
		}
		switch {
		case obj == nil && old == nil:
			continue
		case obj == nil:
			m.mu.Lock()
			delete(m.plugins, name)
			m.mu.Unlock()
			retired = append(retired, old)
		case old != nil && old.spec == spec && spec != "" && old.source == src && !recheck:
			if !reloaded {
				continue
			}
		default:
			e := m.loadPlugin(ctx, src, obj, spec, 0)
			m.mu.Lock()
			m.plugins[name] = e
			m.mu.Unlock()
			if old != nil {
				retired = append(retired, old)
			}
		}
		m.deps.addUsers(depPlugin+name, todo)
		if old != nil {
			for _, p := range old.obj.Spec.Protocols {
				m.deps.addUsers(depProtocol+p, todo)
			}
		}
		if obj != nil {
			for _, p := range obj.Spec.Protocols {
				m.deps.addUsers(depProtocol+p, todo)
			}
		}
	}
	m.mu.RLock()
	plugins := pluginSet(maps.Clone(m.plugins))
	var upgrading map[string]*upgradeRun
	if len(m.upgrades) > 0 {
		upgrading = maps.Clone(m.upgrades)
	}
	m.mu.RUnlock()

	// Devices.
	var configured []*device
	var gone []string
	for _, k := range sortedKeys(todo) {
		m.mu.RLock()
		src, sd, ok := m.deviceObj(k)
		var sm storedModel
		if ok {
			sm, _ = m.modelObj(binding.ModelRef(sd.obj))
		}
		d := m.devices[k]
		m.mu.RUnlock()
		if run := deferredTo(upgrading, d, sd.obj, sm.obj, plugins); run != nil {
			// Its plugin is being upgraded: the upgrade may be moving
			// it, and plans it once it ends.
			run.devices[k] = struct{}{}
			ch.waitFor(run)
			continue
		}
		if !ok {
			if d != nil {
				gone = append(gone, k)
			}
			m.deps.set(k, nil)
			continue
		}
		fresh := d == nil
		if fresh {
			m.mu.Lock()
			m.nextID++
			d = newDevice(m, k, m.nextID)
			m.devices[k] = d
			m.byID[d.id] = d
			m.mu.Unlock()
		}
		m.plans.Add(1)
		cfg, err := plan(planInput{source: src, dev: sd.obj, model: sm.obj, plugins: plugins, id: d.id, handle: d.handleFor,
			collect: m.opts.DefaultCollectCycle, report: m.opts.DefaultReportCycle, state: m.opts.StateCycle})
		cfg.err = err
		cfg.sig = planSig(sd.hash, sm.hash, &cfg)
		m.deps.set(k, planDeps(sd.obj, sm.obj))
		if !fresh && cfg.sig == d.sig() {
			continue
		}
		if len(cfg.others) > 0 {
			m.log.Warn("several MapperPlugins provide the protocol; using the first, pin one with the annotation",
				"device", k, "protocol", cfg.model.Spec.Protocol, "plugins", append([]string{cfg.plugin.name}, cfg.others...),
				"using", cfg.plugin.name, "annotation", v1alpha1.PluginAnnotation)
		}
		d.configure(ctx, cfg)
		if d.sig() != cfg.sig {
			m.unconfigured[k] = struct{}{}
		}
		configured = append(configured, d)
		if fresh {
			m.emit(Event{Type: EventDeviceAdded, Device: k, Namespace: d.ns, Name: d.name, Time: time.Now()})
		}
	}
	// Devices are added concurrently (AddConcurrency at a time); wait for
	// the first outcome of each, so that a source learns at once of a
	// device its plugin refused, but no longer than one AddTimeout in all:
	// a plugin that hangs must not hold every source up.
	wctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
	for _, d := range configured {
		d.waitSettled(wctx)
	}
	cancel()
	var removed []*device
	m.mu.Lock()
	for _, k := range gone {
		if d := m.devices[k]; d != nil {
			removed = append(removed, d)
			delete(m.devices, k)
			delete(m.byID, d.id)
		}
	}
	m.mu.Unlock()
	for _, d := range removed {
		d.remove(ctx)
		if err := m.opts.Store.DeleteTwins(d.key); err != nil {
			m.log.Warn("delete twins of removed device", "device", d.key, "err", err)
		}
		m.log.Info("device removed", "device", d.key)
		m.emit(Event{Type: EventDeviceRemoved, Device: d.key, Namespace: d.ns, Name: d.name, Time: time.Now()})
	}
	m.retire(ctx, retired)
	m.updateGauges()
}

// deferredTo returns the upgrade in progress (of upgrading) of the plugin
// device d runs on, or of the plugin Device dev (of model model) would
// now run on, or nil.
func deferredTo(upgrading map[string]*upgradeRun, d *device, dev *v1beta1.Device, model *v1beta1.DeviceModel, plugins pluginSet) *upgradeRun {
	if len(upgrading) == 0 {
		return nil
	}
	if d != nil {
		d.mu.Lock()
		cfg := d.cfg
		d.mu.Unlock()
		if cfg != nil && cfg.plugin != nil && upgrading[cfg.plugin.name] != nil {
			return upgrading[cfg.plugin.name]
		}
	}
	if dev != nil {
		choice, _ := binding.Select(dev, model, plugins)
		return upgrading[choice.Plugin]
	}
	return nil
}

// retire closes plugins replaced (or removed): their devices have moved
// on; a plugin call still running on one may finish in the background.
func (m *Manager) retire(ctx context.Context, retired []*pluginEntry) {
	for _, e := range retired {
		var mem int64
		if e.released {
			mem = e.p.MemoryBytes()
		}
		cctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
		if err := e.close(cctx); err != nil {
			m.log.Warn("replaced plugin not closed yet; closing it in the background", "plugin", e.name, "err", err)
		} else if e.released {
			m.log.Info("plugin upgrade: old module released", "plugin", e.name, "digest", e.digest, "memory-bytes", mem)
		}
		cancel()
	}
}

// retryPlugins loads every failed plugin whose backoff has ended, and
// reconciles when one now loads, so that its devices start.
func (m *Manager) retryPlugins(ctx context.Context) {
	now := time.Now()
	m.mu.RLock()
	due := false
	for _, e := range m.plugins {
		due = due || (e.err != nil && !now.Before(e.retryAt)) || upgradeDue(e, now)
	}
	m.mu.RUnlock()
	if !due {
		return
	}
	if m.lockRec(ctx) != nil {
		return
	}
	defer m.unlockRec()
	if ctx.Err() != nil {
		return
	}
	m.mu.RLock()
	var retry []*pluginEntry
	ch := newChanges()
	for _, e := range m.plugins {
		if e.err != nil && !now.Before(e.retryAt) {
			retry = append(retry, e)
		}
		if upgradeDue(e, now) {
			ch.recheck[e.name] = struct{}{} // resolve its new module again
		}
	}
	m.mu.RUnlock()
	for _, old := range retry {
		ch.reloaded[old.name] = struct{}{}
		e := m.loadPlugin(ctx, old.source, old.obj, old.spec, old.failures)
		m.mu.Lock()
		replaced := m.plugins[old.name] != old
		if !replaced {
			m.plugins[old.name] = e
		}
		m.mu.Unlock()
		if replaced { // meanwhile
			if err := e.close(ctx); err != nil {
				m.log.Warn("plugin loaded again but replaced meanwhile; closing it in the background", "plugin", e.name, "err", err)
			}
		}
	}
	m.reconcile(ctx, ch)
}

// upgradeDue tells whether the new module of a running plugin, which
// failed to resolve for a hot upgrade, is due to be resolved again.
// Callers hold Manager.mu.
func upgradeDue(e *pluginEntry, now time.Time) bool {
	return e.err == nil && e.upgradeFailures > 0 && !now.Before(e.upgradeAt)
}

// config is what a device runs with; sig tells whether it changed.
type config struct {
	source string
	dev    *v1beta1.Device
	model  *v1beta1.DeviceModel
	plugin *pluginEntry
	desc   abi.Device
	props  []propConfig
	state  time.Duration
	err    error
	sig    string
	// others are the plugins that also provide the model's protocol, not
	// chosen (binding.Choice.Others).
	others []string
}

type propConfig struct {
	abi.Property
	typ     abi.Type
	collect time.Duration
	report  time.Duration
	push    *v1beta1.PushMethod
	desired string // spec desired value to write, "" if none
	// ignored is a spec desired value that is not written because the
	// property is not ReadWrite, "" if none.
	ignored string
	// invalid is a spec desired value of a ReadWrite property that is not
	// written because it does not parse as the property's type, "" if
	// none; invalidWhy says why, and the twin's Error shows it.
	invalid    string
	invalidWhy string
}

// propertyTypes lists the DeviceModel property types, as KubeEdge's CRD
// spells them (abi.ParseType also takes them in lower case).
const propertyTypes = "INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM"

// DescribeProperty returns the property a plugin is given (abi SPEC §8) for
// a Device's property dp of model property mp, with the given handle: the
// type and access mode (ReadOnly when empty) from the model, and the
// model's visitor configData overlaid by the device's. It refuses a type
// the ABI does not have. wapper-host and `wapper plugin test` both use it.
func DescribeProperty(dp v1beta1.DeviceProperty, mp *v1beta1.ModelProperty, handle uint32) (abi.Property, abi.Type, error) {
	typ, ok := abi.ParseType(string(mp.Type))
	if !ok {
		what := fmt.Sprintf("type %q is not supported", mp.Type)
		if mp.Type == "" {
			what = "has no type"
		}
		return abi.Property{}, 0, fmt.Errorf("property %q %s; use one of %s", dp.Name, what, propertyTypes)
	}
	access := string(mp.AccessMode)
	if access == "" {
		access = string(v1beta1.ReadOnly)
	}
	visitor := map[string]any{}
	if mp.Visitors != nil && mp.Visitors.ConfigData != nil {
		maps.Copy(visitor, mp.Visitors.ConfigData.Data)
	}
	if dp.Visitors.ConfigData != nil {
		maps.Copy(visitor, dp.Visitors.ConfigData.Data)
	}
	p := abi.Property{Handle: handle, Name: dp.Name, Type: typ.String(), AccessMode: access,
		Minimum: mp.Minimum, Maximum: mp.Maximum, Unit: mp.Unit, CollectCycle: dp.CollectCycle, ReportCycle: dp.ReportCycle}
	if len(visitor) > 0 {
		var err error
		if p.Visitor, err = json.Marshal(visitor); err != nil {
			return abi.Property{}, 0, fmt.Errorf("property %q: visitors configData: %w", dp.Name, err)
		}
	}
	return p, typ, nil
}
