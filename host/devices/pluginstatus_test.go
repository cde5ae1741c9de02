package devices_test

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// TestPluginStatusGrantsAndLimits: a plugin's status carries its grants
// in `wapper plugin run --grant` form, its TLS settings, and its limits
// with the defaults filled in; those of a plugin that asks for none are
// empty and the defaults.
func TestPluginStatusGrantsAndLimits(t *testing.T) {
	m := newManager(t, t.TempDir())
	rs := set("d1")
	rs.Plugins[0].Spec.Grants = v1alpha1.Grants{
		Network: []string{"tcp://127.0.0.1:1502", "tls://broker.local:8883"}, Serial: []string{"/dev/ttyUSB*"},
		GPIO: []string{"GPIO17"}, Listen: []string{"udp://0.0.0.0:162"}, Secrets: []string{"plc-*"},
		TLS: []v1alpha1.TLSGrant{{Endpoint: "tls://broker.local:8883", ServerName: "broker"}},
	}
	rs.Plugins[0].Spec.Limits = v1alpha1.Limits{MemoryMiB: 32, Instances: 1}
	rs.Plugins = append(rs.Plugins, &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"plain"}, Module: v1alpha1.Module{File: "virtual.wasm"}}})
	if err := m.Apply(context.Background(), "test", rs); err != nil {
		t.Fatal(err)
	}
	ps := m.Plugins()
	if len(ps) != 2 || ps[0].Name != "plain" || ps[1].Name != "virtual" || !ps[0].Loaded || !ps[1].Loaded {
		t.Fatalf("plugins %+v", ps)
	}
	plain, virtual := ps[0], ps[1]
	want := []string{"tcp://127.0.0.1:1502", "tls://broker.local:8883", "/dev/ttyUSB*", "gpio:GPIO17", "listen:udp://0.0.0.0:162", "secret:plc-*"}
	if !slices.Equal(virtual.Grants, want) {
		t.Errorf("grants %q, want %q", virtual.Grants, want)
	}
	if len(virtual.TLSGrants) != 1 || virtual.TLSGrants[0] != (v1alpha1.TLSGrant{Endpoint: "tls://broker.local:8883", ServerName: "broker"}) {
		t.Errorf("TLS grants %+v", virtual.TLSGrants)
	}
	if l := virtual.Limits; l.MemoryMiB != 32 || l.Instances != 1 || l.CallTimeout.Duration != v1alpha1.DefaultCallTimeout {
		t.Errorf("limits %+v, want 32 MiB, 1 instance and the default call timeout", l)
	}
	if plain.Grants != nil || plain.TLSGrants != nil || plain.Limits != (v1alpha1.Limits{MemoryMiB: v1alpha1.DefaultMemoryMiB,
		CallTimeout: metav1.Duration{Duration: v1alpha1.DefaultCallTimeout}, Instances: v1alpha1.DefaultInstances}) {
		t.Errorf("plugin without grants or limits: %+v", plain)
	}
	if st, ok := m.Plugin("virtual"); !ok || !slices.Equal(st.Grants, want) {
		t.Errorf("Plugin(virtual) = %+v, %v", st, ok)
	}
}
