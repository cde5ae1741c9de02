package devices

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/binding"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// pluginSet is the plugins a device can be bound to, loaded or failed, by
// name. It implements binding.Plugins, so that the host picks a device's
// plugin by the same rule as wapper-cloud.
type pluginSet map[string]*pluginEntry

// Has reports whether a MapperPlugin of that name exists.
func (s pluginSet) Has(name string) bool { return s[name] != nil }

// Providing lists the MapperPlugins whose spec.protocols holds protocol.
func (s pluginSet) Providing(protocol string) []string {
	var out []string
	for name, e := range s {
		if slices.Contains(e.obj.Spec.Protocols, protocol) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// planInput is everything [plan] reads.
type planInput struct {
	source string
	dev    *v1beta1.Device
	// model is the DeviceModel the device names, nil when there is none.
	model   *v1beta1.DeviceModel
	plugins pluginSet
	// id is the device's id in the ABI; handle returns the stable handle
	// of a property name.
	id     uint32
	handle func(name string) uint32
	// collect, report and state replace zero cycles.
	collect, report, state time.Duration
}

// plan works out what a device runs with: its model, its plugin (by
// binding.Select), the device description its plugin is given and each
// property's settings. On error the config holds what was found before
// it (the model, the plugin), so that the device can say what it uses,
// and the error says why it cannot run.
func plan(in planInput) (config, error) {
	dv, model := in.dev, in.model
	cfg := config{source: in.source, dev: dv, state: in.state}
	if sr := dv.Spec.StateReport; sr != nil && sr.ReportCycle > 0 {
		cfg.state = time.Duration(sr.ReportCycle) * time.Millisecond
	}
	choice, err := binding.Select(dv, model, in.plugins)
	cfg.model = model
	cfg.plugin = in.plugins[choice.Plugin]
	cfg.others = choice.Others
	if err != nil {
		return cfg, err
	}
	pe := cfg.plugin
	if pe.err != nil {
		return cfg, fmt.Errorf("MapperPlugin %s failed: %w", pe.name, pe.err)
	}
	desc := abi.Device{ID: in.id, Namespace: dv.Namespace, Name: dv.Name, Model: model.Name, Protocol: model.Spec.Protocol}
	if c := dv.Spec.Protocol.ConfigData; c != nil && c.Data != nil {
		if desc.ProtocolConfig, err = json.Marshal(c.Data); err != nil {
			return cfg, fmt.Errorf("spec.protocol.configData: %w", err)
		}
	}
	if c := model.Spec.ProtocolConfigData; c != nil && c.Data != nil {
		if desc.ModelConfig, err = json.Marshal(c.Data); err != nil {
			return cfg, fmt.Errorf("DeviceModel %s spec.protocolConfigData: %w", model.Name, err)
		}
	}
	mindex := make(map[string]int, len(model.Spec.Properties))
	for i := range model.Spec.Properties {
		mindex[model.Spec.Properties[i].Name] = i
	}
	dprops := dv.Spec.Properties
	if len(dprops) == 0 {
		for _, mp := range model.Spec.Properties {
			dprops = append(dprops, v1beta1.DeviceProperty{Name: mp.Name})
		}
	}
	for i, dp := range dprops {
		mi, ok := mindex[dp.Name]
		if !ok {
			return cfg, fmt.Errorf("spec.properties[%d].name: property %q is not in DeviceModel %s", i, dp.Name, model.Name)
		}
		// --manifests checks the model's types when it loads; DMI and
		// wapper-cloud do not, so every source is checked here.
		prop, typ, err := DescribeProperty(dp, &model.Spec.Properties[mi], in.handle(dp.Name))
		if err != nil {
			return cfg, fmt.Errorf("DeviceModel %s spec.properties[%d].type: %w", model.Name, mi, err)
		}
		pc := propConfig{
			Property: prop,
			typ:      typ, collect: in.collect, report: in.report,
			push: dp.PushMethod, desired: dp.Desired.Value,
		}
		if dp.CollectCycle > 0 {
			pc.collect = time.Duration(dp.CollectCycle) * time.Millisecond
		}
		if dp.ReportCycle > 0 {
			pc.report = time.Duration(dp.ReportCycle) * time.Millisecond
		}
		if pc.desired != "" && prop.AccessMode != string(v1beta1.ReadWrite) {
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
	runs := make(map[string]bool, len(cfg.props))
	for _, pc := range cfg.props {
		runs[pc.Name] = true
	}
	for i, mt := range dv.Spec.Methods {
		for j, pn := range mt.PropertyNames {
			if runs[pn] {
				continue
			}
			where := "spec.properties"
			if len(dv.Spec.Properties) == 0 {
				where = fmt.Sprintf("DeviceModel %s (spec.properties is empty, so the device runs the model's properties)", model.Name)
			}
			return cfg, fmt.Errorf("spec.methods[%d].propertyNames[%d]: property %q is not in %s", i, j, pn, where)
		}
	}
	for _, mt := range dv.Spec.Methods {
		desc.Methods = append(desc.Methods, abi.Method{Name: mt.Name, Description: mt.Description, PropertyNames: mt.PropertyNames})
	}
	cfg.desc = desc
	return cfg, nil
}

// planDeps lists what a device's plan reads besides the device itself:
// its model and, when the model exists, the plugin it pins or the
// protocol its plugin is chosen by. A change to any of them plans the
// device again (see [depIndex]).
func planDeps(dev *v1beta1.Device, model *v1beta1.DeviceModel) []string {
	deps := []string{depModel + binding.ModelRef(dev)}
	if model != nil {
		if pin := model.Annotations[v1alpha1.PluginAnnotation]; pin != "" {
			deps = append(deps, depPlugin+pin)
		} else {
			deps = append(deps, depProtocol+model.Spec.Protocol)
		}
	}
	return deps
}

// Kinds of dependency in a [depIndex].
const (
	depModel    = "model:"
	depPlugin   = "plugin:"
	depProtocol = "protocol:"
)

// depIndex maps what devices' plans depend on (a model, a pinned plugin,
// a protocol) to the devices, so that a change plans only the devices it
// touches. Reconciliation owns it (the Manager's reconciliation lock).
type depIndex struct {
	users map[string]map[string]struct{} // dependency -> device keys
	deps  map[string][]string            // device key -> its dependencies
}

func newDepIndex() *depIndex {
	return &depIndex{users: map[string]map[string]struct{}{}, deps: map[string][]string{}}
}

// set records the dependencies of a device, replacing its previous ones;
// nil forgets the device.
func (x *depIndex) set(device string, deps []string) {
	for _, d := range x.deps[device] {
		if u := x.users[d]; u != nil {
			delete(u, device)
			if len(u) == 0 {
				delete(x.users, d)
			}
		}
	}
	if deps == nil {
		delete(x.deps, device)
		return
	}
	x.deps[device] = deps
	for _, d := range deps {
		u := x.users[d]
		if u == nil {
			u = map[string]struct{}{}
			x.users[d] = u
		}
		u[device] = struct{}{}
	}
}

// addUsers adds the devices that depend on dep to out.
func (x *depIndex) addUsers(dep string, out map[string]struct{}) {
	for k := range x.users[dep] {
		out[k] = struct{}{}
	}
}

// hashSeed seeds the change hashes; they are compared within one process
// only.
var hashSeed = maphash.MakeSeed()

// unhashable numbers the objects whose JSON encoding failed, so that each
// counts as changed.
var unhashable atomic.Uint64

// changeHash returns a hash of v's JSON encoding, computed once when an
// object is stored, so that storing an object again unchanged is noticed
// without comparing it field by field.
func changeHash(v any) uint64 {
	b, err := json.Marshal(v)
	if err != nil {
		return unhashable.Add(1)
	}
	return maphash.Bytes(hashSeed, b)
}

// deviceHash covers what a device's plan reads of the Device.
func deviceHash(d *v1beta1.Device) uint64 { return changeHash(d.Spec) }

// modelHash covers what a device's plan reads of the DeviceModel.
func modelHash(m *v1beta1.DeviceModel) uint64 {
	return changeHash(struct {
		Spec any
		Pin  string
	}{m.Spec, m.Annotations[v1alpha1.PluginAnnotation]})
}

// planSig tells whether a device's plan changed: the hashes of its Device
// and DeviceModel, the generation of its plugin when loaded (a plugin that
// fails keeps failing with new generations while it is loaded again; its
// devices change only when it loads or its error does) and the error.
func planSig(devHash, modelHash uint64, cfg *config) string {
	var pgen uint64
	if cfg.plugin != nil && cfg.plugin.err == nil {
		pgen = cfg.plugin.gen
	}
	b := make([]byte, 0, 64)
	b = strconv.AppendUint(b, devHash, 16)
	b = append(b, ' ')
	b = strconv.AppendUint(b, modelHash, 16)
	b = append(b, ' ')
	b = strconv.AppendUint(b, pgen, 10)
	if cfg.err != nil {
		b = append(b, ' ')
		b = append(b, cfg.err.Error()...)
	}
	return string(b)
}
