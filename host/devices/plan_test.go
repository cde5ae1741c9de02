package devices

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/binding"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

func planPlugin(name string, err error, protocols ...string) *pluginEntry {
	return &pluginEntry{name: name, err: err, gen: 7,
		obj: &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.MapperPluginSpec{Protocols: protocols}}}
}

func planModel() *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "virtual", Properties: []v1beta1.ModelProperty{
			{Name: "temp", Type: v1beta1.FLOAT, AccessMode: v1beta1.ReadOnly},
			{Name: "sp", Type: v1beta1.INT, AccessMode: v1beta1.ReadWrite},
		}}}
}

func planDevice() *v1beta1.Device {
	return &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"},
		Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "m"},
			Properties: []v1beta1.DeviceProperty{{Name: "temp", CollectCycle: 250}, {Name: "sp", ReportCycle: 500}}}}
}

// planIn is a plan input whose handles number properties in order of
// first use, as a device does.
func planIn(dev *v1beta1.Device, model *v1beta1.DeviceModel, plugins ...*pluginEntry) planInput {
	set := pluginSet{}
	for _, p := range plugins {
		set[p.name] = p
	}
	handles := map[string]uint32{}
	return planInput{source: "test", dev: dev, model: model, plugins: set, id: 3,
		handle: func(name string) uint32 {
			if _, ok := handles[name]; !ok {
				handles[name] = uint32(len(handles) + 1)
			}
			return handles[name]
		},
		collect: time.Second, report: 2 * time.Second, state: 10 * time.Second}
}

// TestPlanErrors covers every reason plan gives for a device that cannot
// run.
func TestPlanErrors(t *testing.T) {
	loadErr := errors.New("digest mismatch")
	virtual := planPlugin("virtual", nil, "virtual")
	cases := []struct {
		name       string
		change     func(d *v1beta1.Device, m *v1beta1.DeviceModel)
		noModel    bool
		plugins    []*pluginEntry
		is         error  // errors.Is target, if any
		text       string // in the message
		wantPlugin string // the plugin the config names despite the error
	}{
		{name: "model missing", noModel: true, plugins: []*pluginEntry{virtual},
			is: binding.ErrNoModel, text: "DeviceModel ns/m"},
		{name: "pinned plugin missing", plugins: []*pluginEntry{virtual},
			change: func(_ *v1beta1.Device, m *v1beta1.DeviceModel) {
				m.Annotations = map[string]string{v1alpha1.PluginAnnotation: "gone"}
			}, is: binding.ErrPinnedMissing, text: `"gone"`},
		{name: "no plugin provides the protocol", plugins: []*pluginEntry{planPlugin("modbus", nil, "modbus")},
			is: binding.ErrNoPlugin, text: `no MapperPlugin provides protocol "virtual"`},
		{name: "device protocol differs", plugins: []*pluginEntry{virtual},
			change: func(d *v1beta1.Device, _ *v1beta1.DeviceModel) { d.Spec.Protocol.ProtocolName = "modbus" },
			is:     binding.ErrProtocolMismatch, text: `"modbus"`},
		{name: "plugin failed", plugins: []*pluginEntry{planPlugin("virtual", loadErr, "virtual")},
			is: loadErr, text: "MapperPlugin virtual failed: digest mismatch", wantPlugin: "virtual"},
		{name: "property not in model", plugins: []*pluginEntry{virtual},
			change: func(d *v1beta1.Device, _ *v1beta1.DeviceModel) { d.Spec.Properties[1].Name = "humidity" },
			text:   `spec.properties[1].name: property "humidity" is not in DeviceModel m`, wantPlugin: "virtual"},
		{name: "property type not supported", plugins: []*pluginEntry{virtual},
			change: func(_ *v1beta1.Device, m *v1beta1.DeviceModel) { m.Spec.Properties[1].Type = "DECIMAL" },
			text:   `DeviceModel m spec.properties[1].type: property "sp" type "DECIMAL" is not supported`, wantPlugin: "virtual"},
		{name: "property without type", plugins: []*pluginEntry{virtual},
			change: func(_ *v1beta1.Device, m *v1beta1.DeviceModel) { m.Spec.Properties[0].Type = "" },
			text:   `spec.properties[0].type: property "temp" has no type`, wantPlugin: "virtual"},
		{name: "visitor does not encode", plugins: []*pluginEntry{virtual},
			change: func(d *v1beta1.Device, _ *v1beta1.DeviceModel) {
				d.Spec.Properties[0].Visitors.ConfigData = &v1beta1.CustomizedValue{Data: map[string]any{"x": math.NaN()}}
			}, text: `property "temp": visitors configData`, wantPlugin: "virtual"},
		{name: "protocol configData does not encode", plugins: []*pluginEntry{virtual},
			change: func(d *v1beta1.Device, _ *v1beta1.DeviceModel) {
				d.Spec.Protocol.ConfigData = &v1beta1.CustomizedValue{Data: map[string]any{"x": math.Inf(1)}}
			}, text: "spec.protocol.configData", wantPlugin: "virtual"},
		{name: "model protocolConfigData does not encode", plugins: []*pluginEntry{virtual},
			change: func(_ *v1beta1.Device, m *v1beta1.DeviceModel) {
				m.Spec.ProtocolConfigData = &v1beta1.CustomizedValue{Data: map[string]any{"x": math.NaN()}}
			}, text: "DeviceModel m spec.protocolConfigData", wantPlugin: "virtual"},
		{name: "method names a property the device does not run", plugins: []*pluginEntry{virtual},
			change: func(d *v1beta1.Device, _ *v1beta1.DeviceModel) {
				d.Spec.Properties = d.Spec.Properties[:1]
				d.Spec.Methods = []v1beta1.DeviceMethod{{Name: "reset", PropertyNames: []string{"temp", "sp"}}}
			}, text: `spec.methods[0].propertyNames[1]: property "sp" is not in spec.properties`, wantPlugin: "virtual"},
		{name: "method names a property the model lacks", plugins: []*pluginEntry{virtual},
			change: func(d *v1beta1.Device, _ *v1beta1.DeviceModel) {
				d.Spec.Properties = nil
				d.Spec.Methods = []v1beta1.DeviceMethod{{Name: "reset", PropertyNames: []string{"gone"}}}
			}, text: "DeviceModel m (spec.properties is empty, so the device runs the model's properties)", wantPlugin: "virtual"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dev, model := planDevice(), planModel()
			if c.change != nil {
				c.change(dev, model)
			}
			if c.noModel {
				model = nil
			}
			cfg, err := plan(planIn(dev, model, c.plugins...))
			if err == nil {
				t.Fatal("planned without error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v does not wrap %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q does not say %q", err, c.text)
			}
			got := ""
			if cfg.plugin != nil {
				got = cfg.plugin.name
			}
			if got != c.wantPlugin {
				t.Errorf("config names plugin %q, want %q", got, c.wantPlugin)
			}
			if cfg.source != "test" || cfg.dev != dev || cfg.model != model {
				t.Errorf("config does not hold the device and model: %+v", cfg)
			}
		})
	}
}

// TestPlanConfig checks what a device that can run is configured with.
func TestPlanConfig(t *testing.T) {
	dev, model := planDevice(), planModel()
	dev.Spec.StateReport = &v1beta1.StateReportConfig{ReportCycle: 750}
	dev.Spec.Properties[0].Desired.Value = "21.5" // ReadOnly: ignored
	dev.Spec.Properties[1].Desired.Value = "warm" // not an INT: not written
	dev.Spec.Methods = []v1beta1.DeviceMethod{{Name: "reset", PropertyNames: []string{"sp"}}}
	cfg, err := plan(planIn(dev, model, planPlugin("zeta", nil, "virtual"), planPlugin("alpha", nil, "virtual", "modbus")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.plugin.name != "alpha" || !slices.Equal(cfg.others, []string{"zeta"}) {
		t.Errorf("plugin %q others %v, want alpha and [zeta]", cfg.plugin.name, cfg.others)
	}
	if cfg.state != 750*time.Millisecond {
		t.Errorf("state cycle %v", cfg.state)
	}
	if cfg.desc.ID != 3 || cfg.desc.Model != "m" || cfg.desc.Protocol != "virtual" || len(cfg.desc.Methods) != 1 {
		t.Errorf("description %+v", cfg.desc)
	}
	if len(cfg.props) != 2 {
		t.Fatalf("%d properties", len(cfg.props))
	}
	temp, sp := cfg.props[0], cfg.props[1]
	if temp.Handle != 1 || temp.collect != 250*time.Millisecond || temp.report != 2*time.Second || temp.ignored != "21.5" || temp.desired != "" {
		t.Errorf("temp %+v", temp)
	}
	if sp.Handle != 2 || sp.collect != time.Second || sp.report != 500*time.Millisecond || sp.invalid != "warm" || sp.desired != "" ||
		!strings.Contains(sp.invalidWhy, "spec.properties[1].desired.value") {
		t.Errorf("sp %+v", sp)
	}

	// A device that lists no properties runs all of the model's, and a
	// valid desired value on a ReadWrite property is written.
	dev = planDevice()
	dev.Spec.Properties = nil
	cfg, err = plan(planIn(dev, model, planPlugin("virtual", nil, "virtual")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.props) != 2 || cfg.props[0].Name != "temp" || cfg.props[1].Name != "sp" || cfg.others != nil {
		t.Errorf("properties %+v others %v", cfg.props, cfg.others)
	}
	dev = planDevice()
	dev.Spec.Properties[1].Desired.Value = "42"
	if cfg, err = plan(planIn(dev, model, planPlugin("virtual", nil, "virtual"))); err != nil || cfg.props[1].desired != "42" {
		t.Errorf("desired %q, err %v", cfg.props[1].desired, err)
	}
}

// TestPlanSig checks that the signature changes with what the device
// runs with, and not with a failed plugin's new generations.
func TestPlanSig(t *testing.T) {
	ok, failed := planPlugin("p", nil), planPlugin("p", errors.New("boom"))
	base := planSig(1, 2, &config{plugin: ok})
	for name, sig := range map[string]string{
		"device":  planSig(9, 2, &config{plugin: ok}),
		"model":   planSig(1, 9, &config{plugin: ok}),
		"plugin":  planSig(1, 2, &config{plugin: &pluginEntry{gen: 8}}),
		"error":   planSig(1, 2, &config{plugin: ok, err: errors.New("x")}),
		"no plug": planSig(1, 2, &config{}),
	} {
		if sig == base {
			t.Errorf("a changed %s keeps the signature", name)
		}
	}
	again := planPlugin("p", failed.err)
	again.gen++
	if planSig(1, 2, &config{plugin: failed, err: failed.err}) != planSig(1, 2, &config{plugin: again, err: again.err}) {
		t.Error("a failed plugin loaded again changes the signature")
	}
}

// TestDepIndex checks that the index finds a device by each dependency
// and forgets the old ones.
func TestDepIndex(t *testing.T) {
	x := newDepIndex()
	model := planModel()
	x.set("ns/a", planDeps(planDevice(), model))
	x.set("ns/b", planDeps(planDevice(), nil))
	users := func(dep string) []string {
		out := map[string]struct{}{}
		x.addUsers(dep, out)
		return sortedKeys(out)
	}
	if got := users(depModel + "ns/m"); !slices.Equal(got, []string{"ns/a", "ns/b"}) {
		t.Errorf("model users %v", got)
	}
	if got := users(depProtocol + "virtual"); !slices.Equal(got, []string{"ns/a"}) {
		t.Errorf("protocol users %v", got)
	}
	model.Annotations = map[string]string{v1alpha1.PluginAnnotation: "pinned"}
	x.set("ns/a", planDeps(planDevice(), model))
	if got := users(depProtocol + "virtual"); len(got) != 0 {
		t.Errorf("protocol users after pinning %v", got)
	}
	if got := users(depPlugin + "pinned"); !slices.Equal(got, []string{"ns/a"}) {
		t.Errorf("plugin users %v", got)
	}
	x.set("ns/a", nil)
	x.set("ns/b", nil)
	if len(x.users) != 0 || len(x.deps) != 0 {
		t.Errorf("index not empty: %v %v", x.users, x.deps)
	}
}
