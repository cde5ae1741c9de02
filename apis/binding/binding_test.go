package binding_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/binding"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

func plugin(name string, protocols ...string) *v1alpha1.MapperPlugin {
	return &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.MapperPluginSpec{Protocols: protocols}}
}

func device(protocol string) *v1beta1.Device {
	d := &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"}}
	d.Spec.DeviceModelRef = &corev1.LocalObjectReference{Name: "m"}
	d.Spec.Protocol.ProtocolName = protocol
	return d
}

func model(protocol, pin string) *v1beta1.DeviceModel {
	m := &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m"}}
	m.Spec.Protocol = protocol
	if pin != "" {
		m.Annotations = map[string]string{v1alpha1.PluginAnnotation: pin}
	}
	return m
}

func TestSelect(t *testing.T) {
	plugins := binding.List{plugin("zeta", "modbus"), plugin("alpha", "modbus", "virtual"), plugin("opc", "opcua")}
	cases := []struct {
		name   string
		dev    *v1beta1.Device
		model  *v1beta1.DeviceModel
		want   string
		others []string
		err    error
	}{
		{"by the model's protocol", device(""), model("opcua", ""), "opc", nil, nil},
		{"first of several by name", device(""), model("modbus", ""), "alpha", []string{"zeta"}, nil},
		{"device names the same protocol", device("modbus"), model("modbus", ""), "alpha", []string{"zeta"}, nil},
		{"pin wins over the protocol", device(""), model("modbus", "zeta"), "zeta", nil, nil},
		{"pin to a plugin without the protocol", device(""), model("modbus", "opc"), "opc", nil, nil},
		// The cases where the host and the cloud used to disagree: the
		// cloud preferred the device's protocol, went on without a model,
		// and gave no plugin for a missing pin without saying why.
		{"device protocol differs from the model's", device("opcua"), model("modbus", ""), "", nil, binding.ErrProtocolMismatch},
		{"no model", device("opcua"), nil, "", nil, binding.ErrNoModel},
		{"pinned plugin missing", device(""), model("modbus", "gone"), "", nil, binding.ErrPinnedMissing},
		{"nobody provides the protocol", device(""), model("bacnet", ""), "", nil, binding.ErrNoPlugin},
		{"no plugins at all", device(""), model("modbus", ""), "", nil, binding.ErrNoPlugin},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := plugins
			if c.name == "no plugins at all" {
				ps = nil
			}
			got, err := binding.Select(c.dev, c.model, ps)
			if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if got.Plugin != c.want || !slices.Equal(got.Others, c.others) {
				t.Errorf("got %+v, want plugin %q others %v", got, c.want, c.others)
			}
		})
	}
}

func TestModelRef(t *testing.T) {
	if got := binding.ModelRef(device("")); got != "ns/m" {
		t.Errorf("ModelRef = %q", got)
	}
	d := device("")
	d.Spec.DeviceModelRef = nil
	if got := binding.ModelRef(d); got != "ns/" {
		t.Errorf("ModelRef without a ref = %q", got)
	}
}
