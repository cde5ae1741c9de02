// Package binding holds the one rule that picks the MapperPlugin a Device
// runs on. wapper-host applies it when it plans a device and wapper-cloud
// when it decides which plugin modules a node needs, so a device runs on
// the same plugin in standalone and in cloud mode.
//
// The rule, in order:
//  1. The Device's model (spec.deviceModelRef, same namespace) must exist.
//  2. A Device whose spec.protocol.protocolName is set must name the
//     model's protocol.
//  3. A model annotated with mappers.wapper.dev/plugin runs on that plugin,
//     which must exist.
//  4. Otherwise the plugin is the first, by name, of those listing the
//     model's spec.protocol in spec.protocols; there must be one.
package binding

import (
	"errors"
	"fmt"
	"slices"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// Errors that Select wraps, one per rule that can fail.
var (
	// ErrNoModel: the Device's DeviceModel does not exist.
	ErrNoModel = errors.New("device model not found")
	// ErrPinnedMissing: the model pins a MapperPlugin that does not exist.
	ErrPinnedMissing = errors.New("pinned MapperPlugin not found")
	// ErrNoPlugin: no MapperPlugin provides the model's protocol.
	ErrNoPlugin = errors.New("no MapperPlugin provides the protocol")
	// ErrProtocolMismatch: the Device names a protocol other than its model's.
	ErrProtocolMismatch = errors.New("device protocol differs from its model's")
)

// Plugins is what Select needs to know of the MapperPlugins there are.
type Plugins interface {
	// Has reports whether a MapperPlugin called name exists.
	Has(name string) bool
	// Providing returns the names of the MapperPlugins that list protocol
	// in spec.protocols, in any order.
	Providing(protocol string) []string
}

// Choice is the outcome of Select.
type Choice struct {
	// Plugin is the chosen MapperPlugin's name.
	Plugin string
	// Others names the other MapperPlugins that provide the protocol, when
	// the choice fell to the first of several by name (an operator should
	// pin one with the annotation).
	Others []string
}

// ModelRef returns the namespace/name key of the Device's DeviceModel.
func ModelRef(d *v1beta1.Device) string {
	ref := ""
	if d.Spec.DeviceModelRef != nil {
		ref = d.Spec.DeviceModelRef.Name
	}
	return d.Namespace + "/" + ref
}

// Select picks the MapperPlugin device d runs on, given its model (nil
// when it does not exist). The error says which rule failed and how to
// fix it, and wraps one of the Err values.
func Select(d *v1beta1.Device, model *v1beta1.DeviceModel, plugins Plugins) (Choice, error) {
	if model == nil {
		return Choice{}, fmt.Errorf("%w: DeviceModel %s (spec.deviceModelRef.name); add it to the same namespace", ErrNoModel, ModelRef(d))
	}
	if pn := d.Spec.Protocol.ProtocolName; pn != "" && pn != model.Spec.Protocol {
		return Choice{}, fmt.Errorf("%w: spec.protocol.protocolName %q differs from DeviceModel %s spec.protocol %q", ErrProtocolMismatch, pn, model.Name, model.Spec.Protocol)
	}
	var c Choice
	if pin := model.Annotations[v1alpha1.PluginAnnotation]; pin != "" {
		if !plugins.Has(pin) {
			return Choice{}, fmt.Errorf("%w: DeviceModel %s pins MapperPlugin %q (annotation %s), which does not exist; add it or remove the annotation", ErrPinnedMissing, model.Name, pin, v1alpha1.PluginAnnotation)
		}
		c.Plugin = pin
	} else {
		names := slices.Clone(plugins.Providing(model.Spec.Protocol))
		if len(names) == 0 {
			return Choice{}, fmt.Errorf("%w: no MapperPlugin provides protocol %q (DeviceModel %s spec.protocol); add a MapperPlugin with %q in spec.protocols", ErrNoPlugin, model.Spec.Protocol, model.Name, model.Spec.Protocol)
		}
		slices.Sort(names)
		names = slices.Compact(names)
		c.Plugin, c.Others = names[0], names[1:]
		if len(c.Others) == 0 {
			c.Others = nil
		}
	}
	return c, nil
}

// List is a Plugins over a slice of MapperPlugins, for callers that hold
// them in a slice or map.
type List []*v1alpha1.MapperPlugin

// Has implements Plugins.
func (l List) Has(name string) bool {
	return slices.ContainsFunc(l, func(p *v1alpha1.MapperPlugin) bool { return p.Name == name })
}

// Providing implements Plugins.
func (l List) Providing(protocol string) []string {
	var out []string
	for _, p := range l {
		if slices.Contains(p.Spec.Protocols, protocol) {
			out = append(out, p.Name)
		}
	}
	return out
}
