package devices

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

type ownedDevice struct {
	source string
	dev    *v1beta1.Device
}

type ownedPlugin struct {
	source string
	p      *v1alpha1.MapperPlugin
}

// reconcile brings plugins and devices in line with the objects of every
// source. Callers hold the reconciliation lock (Manager.rec).
func (m *Manager) reconcile(ctx context.Context) {
	m.mu.RLock()
	plugins := map[string]ownedPlugin{}
	models := map[string]*v1beta1.DeviceModel{}
	devs := map[string]ownedDevice{}
	for src, s := range m.sources {
		for k, p := range s.plugins {
			plugins[k] = ownedPlugin{src, p}
		}
		for k, dm := range s.models {
			models[k] = dm
		}
		for k, d := range s.devices {
			devs[k] = ownedDevice{src, d}
		}
	}
	m.mu.RUnlock()

	// Plugins: load new and changed ones first, so devices can move.
	var retired []*pluginEntry
	names := make([]string, 0, len(plugins))
	for n := range plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		op := plugins[name]
		spec, _ := json.Marshal(op.p.Spec)
		m.mu.RLock()
		old := m.plugins[name]
		m.mu.RUnlock()
		if old != nil && old.spec == string(spec) && old.source == op.source {
			continue
		}
		e := m.loadPlugin(ctx, op.source, op.p, string(spec), 0)
		m.mu.Lock()
		m.plugins[name] = e
		m.mu.Unlock()
		if old != nil {
			retired = append(retired, old)
		}
	}
	m.mu.Lock()
	for name, e := range m.plugins {
		if _, ok := plugins[name]; !ok {
			delete(m.plugins, name)
			retired = append(retired, e)
		}
	}
	entries := make(map[string]*pluginEntry, len(m.plugins))
	for k, v := range m.plugins {
		entries[k] = v
	}
	m.mu.Unlock()

	// Devices.
	keys := make([]string, 0, len(devs))
	for k := range devs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var configured []*device
	for _, k := range keys {
		od := devs[k]
		m.mu.RLock()
		d := m.devices[k]
		m.mu.RUnlock()
		fresh := d == nil
		if fresh {
			m.mu.Lock()
			m.nextID++
			d = newDevice(m, k, m.nextID)
			m.devices[k] = d
			m.byID[d.id] = d
			m.mu.Unlock()
		}
		cfg := m.plan(d, od, models, entries)
		if !fresh && cfg.sig == d.sig() {
			continue
		}
		d.configure(ctx, cfg)
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
	m.mu.Lock()
	var gone []*device
	for k, d := range m.devices {
		if _, ok := devs[k]; !ok {
			gone = append(gone, d)
			delete(m.devices, k)
			delete(m.byID, d.id)
		}
	}
	m.mu.Unlock()
	for _, d := range gone {
		d.remove(ctx)
		if err := m.opts.Store.DeleteTwins(d.key); err != nil {
			m.log.Warn("delete twins of removed device", "device", d.key, "err", err)
		}
		m.log.Info("device removed", "device", d.key)
		m.emit(Event{Type: EventDeviceRemoved, Device: d.key, Namespace: d.ns, Name: d.name, Time: time.Now()})
	}
	for _, e := range retired {
		// Its devices have moved on; a plugin call still running on it
		// may finish in the background.
		cctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
		if err := e.close(cctx); err != nil {
			m.log.Warn("replaced plugin not closed yet; closing it in the background", "plugin", e.name, "err", err)
		}
		cancel()
	}
	m.updateGauges()
}

// retryPlugins loads every failed plugin whose backoff has ended, and
// reconciles when one now loads, so that its devices start.
func (m *Manager) retryPlugins(ctx context.Context) {
	now := time.Now()
	m.mu.RLock()
	due := false
	for _, e := range m.plugins {
		due = due || (e.err != nil && !now.Before(e.retryAt))
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
	for _, e := range m.plugins {
		if e.err != nil && !now.Before(e.retryAt) {
			retry = append(retry, e)
		}
	}
	m.mu.RUnlock()
	for _, old := range retry {
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
	m.reconcile(ctx)
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
		p.Visitor, _ = json.Marshal(visitor)
	}
	return p, typ, nil
}

func (m *Manager) plan(d *device, od ownedDevice, models map[string]*v1beta1.DeviceModel, plugins map[string]*pluginEntry) (cfg config) {
	dv := od.dev
	cfg = config{source: od.source, dev: dv, state: m.opts.StateCycle}
	if sr := dv.Spec.StateReport; sr != nil && sr.ReportCycle > 0 {
		cfg.state = time.Duration(sr.ReportCycle) * time.Millisecond
	}
	defer func() {
		// A plugin that failed keeps failing with new generations while
		// it is loaded again; its devices change only when it loads or
		// its error does (Err).
		var pgen uint64
		if cfg.plugin != nil && cfg.plugin.err == nil {
			pgen = cfg.plugin.gen
		}
		b, _ := json.Marshal(struct {
			Dev    any
			Model  any
			Plugin uint64
			Err    string
		}{dv.Spec, modelSpec(cfg.model), pgen, errText(cfg.err)})
		cfg.sig = string(b)
	}()
	ref := ""
	if dv.Spec.DeviceModelRef != nil {
		ref = dv.Spec.DeviceModelRef.Name
	}
	model := models[nsName(dv.Namespace, ref)]
	if model == nil {
		cfg.err = fmt.Errorf("DeviceModel %s not found (spec.deviceModelRef.name); add it to the same namespace", nsName(dv.Namespace, ref))
		return cfg
	}
	cfg.model = model
	// Plugin.
	var pe *pluginEntry
	if pin := model.Annotations[v1alpha1.PluginAnnotation]; pin != "" {
		if pe = plugins[pin]; pe == nil {
			cfg.err = fmt.Errorf("DeviceModel %s pins MapperPlugin %q (annotation %s), which does not exist; add it or remove the annotation", model.Name, pin, v1alpha1.PluginAnnotation)
			return cfg
		}
	} else {
		var names []string
		for n, e := range plugins {
			for _, proto := range e.obj.Spec.Protocols {
				if proto == model.Spec.Protocol {
					names = append(names, n)
				}
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			cfg.err = fmt.Errorf("no MapperPlugin provides protocol %q (DeviceModel %s spec.protocol); add a MapperPlugin with %q in spec.protocols", model.Spec.Protocol, model.Name, model.Spec.Protocol)
			return cfg
		}
		pe = plugins[names[0]]
		if len(names) > 1 {
			m.log.Warn("several MapperPlugins provide the protocol; using the first, pin one with the annotation", "protocol", model.Spec.Protocol, "plugins", names, "using", names[0], "annotation", v1alpha1.PluginAnnotation)
		}
	}
	cfg.plugin = pe
	if pn := dv.Spec.Protocol.ProtocolName; pn != "" && pn != model.Spec.Protocol {
		cfg.err = fmt.Errorf("spec.protocol.protocolName %q differs from DeviceModel %s spec.protocol %q", pn, model.Name, model.Spec.Protocol)
		return cfg
	}
	if pe.err != nil {
		cfg.err = fmt.Errorf("MapperPlugin %s failed: %v", pe.name, pe.err)
		return cfg
	}
	// Description.
	desc := abi.Device{ID: d.id, Namespace: dv.Namespace, Name: dv.Name, Model: model.Name, Protocol: model.Spec.Protocol}
	if c := dv.Spec.Protocol.ConfigData; c != nil && c.Data != nil {
		desc.ProtocolConfig, _ = json.Marshal(c.Data)
	}
	if c := model.Spec.ProtocolConfigData; c != nil && c.Data != nil {
		desc.ModelConfig, _ = json.Marshal(c.Data)
	}
	mprops := map[string]*v1beta1.ModelProperty{}
	mindex := map[string]int{}
	for i := range model.Spec.Properties {
		mprops[model.Spec.Properties[i].Name] = &model.Spec.Properties[i]
		mindex[model.Spec.Properties[i].Name] = i
	}
	dprops := dv.Spec.Properties
	if len(dprops) == 0 {
		for _, mp := range model.Spec.Properties {
			dprops = append(dprops, v1beta1.DeviceProperty{Name: mp.Name})
		}
	}
	for i, dp := range dprops {
		mp := mprops[dp.Name]
		if mp == nil {
			cfg.err = fmt.Errorf("spec.properties[%d].name: property %q is not in DeviceModel %s", i, dp.Name, model.Name)
			return cfg
		}
		// --manifests checks the model's types when it loads; DMI and
		// wapper-cloud do not, so every source is checked here.
		prop, typ, err := DescribeProperty(dp, mp, d.handleFor(dp.Name))
		if err != nil {
			cfg.err = fmt.Errorf("DeviceModel %s spec.properties[%d].type: %v", model.Name, mindex[dp.Name], err)
			return cfg
		}
		access := prop.AccessMode
		pc := propConfig{
			Property: prop,
			typ:      typ, collect: m.opts.DefaultCollectCycle, report: m.opts.DefaultReportCycle,
			push: dp.PushMethod, desired: dp.Desired.Value,
		}
		if dp.CollectCycle > 0 {
			pc.collect = time.Duration(dp.CollectCycle) * time.Millisecond
		}
		if dp.ReportCycle > 0 {
			pc.report = time.Duration(dp.ReportCycle) * time.Millisecond
		}
		if pc.desired != "" && access != string(v1beta1.ReadWrite) {
			// As in mapper-framework, a desired value on a ReadOnly
			// property is not written (KubeEdge's own examples set
			// them); the property is still read and reported.
			pc.desired, pc.ignored = "", pc.desired
		}
		if pc.desired != "" {
			if _, err := abi.ParseText(typ, pc.desired); err != nil {
				// mapper-framework logs a desired value that does not
				// convert to the property's type and skips that property
				// (neither written nor read); the rest of the device runs.
				// Here only the write is skipped: the property is still
				// read and reported, and its twin's Error says why.
				pc.desired, pc.invalid = "", pc.desired
				pc.invalidWhy = fmt.Sprintf("desired value %q of the Device spec (spec.properties[%d].desired.value) is not written: %v", pc.invalid, i, err)
			}
		}
		desc.Properties = append(desc.Properties, pc.Property)
		cfg.props = append(cfg.props, pc)
	}
	// A method's propertyNames must be properties the device runs: those
	// of spec.properties, or all of the model's when it lists none.
	for i, mt := range dv.Spec.Methods {
		for j, pn := range mt.PropertyNames {
			found := false
			for _, pc := range cfg.props {
				found = found || pc.Name == pn
			}
			if found {
				continue
			}
			where := "spec.properties"
			if len(dv.Spec.Properties) == 0 {
				where = fmt.Sprintf("DeviceModel %s (spec.properties is empty, so the device runs the model's properties)", model.Name)
			}
			cfg.err = fmt.Errorf("spec.methods[%d].propertyNames[%d]: property %q is not in %s", i, j, pn, where)
			return cfg
		}
	}
	for _, mt := range dv.Spec.Methods {
		desc.Methods = append(desc.Methods, abi.Method{Name: mt.Name, Description: mt.Description, PropertyNames: mt.PropertyNames})
	}
	cfg.desc = desc
	return cfg
}

func modelSpec(m *v1beta1.DeviceModel) any {
	if m == nil {
		return nil
	}
	return struct {
		Spec any
		Ann  string
	}{m.Spec, m.Annotations[v1alpha1.PluginAnnotation]}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
