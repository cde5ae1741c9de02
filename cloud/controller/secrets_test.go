package controller_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/linkproto"
)

// TestPluginSecrets: a node gets the Secrets of the plugin-secrets
// namespace that its plugins' grants.secrets match or grants.tls name, and
// no other: not those of another plugin, not those of another namespace.
// A changed Secret goes again with a new version, which is not a hash of
// its data; a deleted one is withdrawn.
func TestPluginSecrets(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.Namespace(t)
	secretNS := env.Namespace(t)
	otherNS := env.Namespace(t)
	p := func(s string) string { return ns + "-" + s }
	h := &hub{nodes: []string{p("n1"), p("n2")}, sets: map[string]map[string]linkproto.Item{}, wake: make(chan struct{}, 1)}
	kc := kubernetes.NewForConfigOrDie(env.Config())
	ctl, err := controller.New(controller.Options{
		KubeEdge: kubeedge.NewForConfigOrDie(env.Config()), Dynamic: dynamic.NewForConfigOrDie(env.Config()), Hub: h, Workers: 2,
		Kube: kc, SecretsNamespace: secretNS,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ctl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	secret := func(namespace, name, value string) *corev1.Secret {
		t.Helper()
		s, err := kc.CoreV1().Secrets(namespace).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"password": []byte(value)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	secret(secretNS, "plc-login", "s3cret")
	secret(secretNS, "plc-other", "two")
	secret(secretNS, "broker-ca", "ca")
	secret(secretNS, "cam-login", "not for plc")
	secret(otherNS, "plc-elsewhere", "wrong namespace")

	doc := strings.NewReplacer("P-", ns+"-").Replace(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: P-plc}
spec:
  protocols: [P-plc]
  module: {file: plc.wasm}
  grants:
    secrets: [plc-*]
    tls: [{endpoint: "tls://broker:8883", caSecret: broker-ca, clientSecret: absent}]
---
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: P-cam}
spec: {protocols: [P-cam], module: {file: cam.wasm}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plc}
spec: {protocol: P-plc}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: cam}
spec: {protocol: P-cam}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: plc1}
spec: {nodeName: P-n1, deviceModelRef: {name: plc}, protocol: {protocolName: P-plc}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: cam1}
spec: {nodeName: P-n2, deviceModelRef: {name: cam}, protocol: {protocolName: P-cam}}`)
	if err := env.Apply(context.Background(), ns, doc); err != nil {
		t.Fatal(err)
	}
	sec := func(n string) string { return linkproto.Key(linkproto.KindSecret, secretNS, n) }
	sorted := func(ks ...string) string { sort.Strings(ks); return strings.Join(ks, " ") }
	base1 := []string{linkproto.Key(linkproto.KindDevice, ns, "plc1"), linkproto.Key(linkproto.KindDeviceModel, ns, "plc"), linkproto.Key(linkproto.KindMapperPlugin, "", p("plc"))}
	set := h.wait(t, p("n1"), sorted(append(base1, sec("plc-login"), sec("plc-other"), sec("broker-ca"))...))
	h.wait(t, p("n2"), sorted(linkproto.Key(linkproto.KindDevice, ns, "cam1"), linkproto.Key(linkproto.KindDeviceModel, ns, "cam"), linkproto.Key(linkproto.KindMapperPlugin, "", p("cam"))))

	it := set[sec("plc-login")]
	var obj linkproto.SecretObject
	if err := json.Unmarshal(it.Object, &obj); err != nil || obj.Name != "plc-login" || string(obj.Data["password"]) != "s3cret" {
		t.Fatalf("delivered secret %s: %+v, %v", it.Key, obj, err)
	}
	if !strings.HasPrefix(it.Version, "rv:") {
		t.Errorf("version %q is not the resource version", it.Version)
	}

	// A new value goes again, with a new version.
	s, err := kc.CoreV1().Secrets(secretNS).Get(context.Background(), "plc-login", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["password"] = []byte("rotated")
	if _, err := kc.CoreV1().Secrets(secretNS).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := sorted(append(base1, sec("plc-login"), sec("plc-other"), sec("broker-ca"))...)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		set = h.wait(t, p("n1"), want)
		if set[sec("plc-login")].Version != it.Version {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated secret was not sent again")
		}
	}
	if err := json.Unmarshal(set[sec("plc-login")].Object, &obj); err != nil || string(obj.Data["password"]) != "rotated" {
		t.Fatalf("rotated secret: %+v, %v", obj, err)
	}
	// A deleted Secret is withdrawn.
	if err := kc.CoreV1().Secrets(secretNS).Delete(context.Background(), "plc-other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, p("n1"), sorted(append(base1, sec("plc-login"), sec("broker-ca"))...))
}
