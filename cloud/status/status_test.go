package status_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/deploy/crds"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
)

// TestDeviceStatusFallback: in a cluster without the DeviceStatus CRD (a
// KubeEdge older than 1.23, whose Device CRD keeps status.twins), twins
// go to the Device's status.
func TestDeviceStatusFallback(t *testing.T) {
	dev, err := crds.Get(crds.Devices)
	if err != nil {
		t.Fatal(err)
	}
	dev = dev.DeepCopy()
	st := dev.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"]
	keep := true
	st.XPreserveUnknownFields = &keep // as the pre-1.23 CRD's status.twins
	dev.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"] = st
	models, err := crds.Get(crds.DeviceModels)
	if err != nil {
		t.Fatal(err)
	}
	env, err := k8stest.Start(context.Background(), k8stest.Options{CRDs: []*apiextensionsv1.CustomResourceDefinition{dev, models}})
	if errors.Is(err, k8stest.ErrBinariesMissing) {
		testenv.Missing(t, "a kube-apiserver and etcd build", "run hack/k8s/ensure-k8s-bins.sh (make test runs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cfg := env.Config()
	has, err := status.HasDeviceStatus(kubernetes.NewForConfigOrDie(cfg).Discovery())
	if err != nil || has {
		t.Fatalf("HasDeviceStatus = %v, %v; want false", has, err)
	}
	ctx := context.Background()
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ke := kubeedge.NewForConfigOrDie(cfg)
	if _, err := ke.DevicesV1beta1().Devices("ns").Create(ctx, &devicesv1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: "d1"}, Spec: devicesv1beta1.DeviceSpec{NodeName: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	w := status.New(status.Options{Dynamic: dyn, UseDeviceStatus: false, FlushInterval: time.Millisecond})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	acked := make(chan []uint64, 2)
	w.Submit("n1", []linkproto.Report{{Seq: 1, Device: &linkproto.DeviceReport{Namespace: "ns", Name: "d1", State: "ok",
		Twins: []devicesv1beta1.Twin{{PropertyName: "t", Reported: devicesv1beta1.TwinProperty{Value: "42"}}}}}}, func(s []uint64) { acked <- s })
	// A report of a device that does not exist is dropped and
	// acknowledged, never retried forever.
	w.Submit("n1", []linkproto.Report{{Seq: 2, Device: &linkproto.DeviceReport{Namespace: "ns", Name: "gone"}}}, func(s []uint64) { acked <- s })
	got := map[uint64]bool{}
	for len(got) < 2 {
		select {
		case s := <-acked:
			for _, q := range s {
				got[q] = true
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("acknowledged %v, want 1 and 2", got)
		}
	}
	u, err := dyn.Resource(status.Devices).Namespace("ns").Get(ctx, "d1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	twins, _, _ := unstructured.NestedSlice(u.Object, "status", "twins")
	if len(twins) != 1 || twins[0].(map[string]any)["reported"].(map[string]any)["value"] != "42" {
		t.Fatalf("Device status: %v", u.Object["status"])
	}
}

// TestSetNodesCarriesDigest: each node's entry in MapperPlugin status
// carries the digest of the module it runs; a new digest or rejected
// digest in the same phase is a transition, a new message alone is not.
func TestSetNodesCarriesDigest(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	var st mappersv1alpha1.MapperPluginStatus
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	if !status.SetNodes(&st, map[string]linkproto.PluginReport{
		"n2": {Name: "p", Phase: "Loaded", Digest: a},
		"n1": {Name: "p", Phase: "Failed", Message: "no memory"},
	}, t0) {
		t.Fatal("first reports: no change")
	}
	if len(st.Nodes) != 2 || st.Nodes[0].Node != "n1" || st.Nodes[1].Digest != a || st.Nodes[0].Digest != "" {
		t.Fatalf("nodes %+v", st.Nodes)
	}
	if status.SetNodes(&st, map[string]linkproto.PluginReport{"n2": {Name: "p", Phase: "Loaded", Digest: a}}, t1) {
		t.Fatal("the same report is a change")
	}
	if !status.SetNodes(&st, map[string]linkproto.PluginReport{"n2": {Name: "p", Phase: "Loaded", Digest: b}}, t1) {
		t.Fatal("a new digest is not a change")
	}
	if n := st.Nodes[1]; n.Digest != b || !n.LastTransitionTime.Equal(&t1) {
		t.Fatalf("after a new digest in the same phase: %+v", n)
	}
	// A hot upgrade to a rolled back: still Loaded on b.
	t2 := metav1.NewTime(t1.Add(time.Minute))
	if !status.SetNodes(&st, map[string]linkproto.PluginReport{"n2": {Name: "p", Phase: "Loaded", Digest: b, RejectedDigest: a, Message: "trapped"}}, t2) {
		t.Fatal("a rejection is not a change")
	}
	if n := st.Nodes[1]; n.RejectedDigest != a || !n.LastTransitionTime.Equal(&t2) {
		t.Fatalf("after a rejection: %+v", n)
	}
	if !status.SetNodes(&st, map[string]linkproto.PluginReport{"n2": {Name: "p", Phase: "Loaded", Digest: b, RejectedDigest: a, Message: "trapped again"}}, metav1.NewTime(t2.Add(time.Minute))) {
		t.Fatal("a new message is not a change")
	}
	if n := st.Nodes[1]; n.Message != "trapped again" || !n.LastTransitionTime.Equal(&t2) {
		t.Fatalf("after a new message: %+v", n)
	}
}

// TestReported: the latest report of each device, merged per property,
// from the node it runs on now; devices that no longer exist are
// forgotten.
func TestReported(t *testing.T) {
	w := status.New(status.Options{FlushInterval: time.Hour})
	twin := func(p, v string) devicesv1beta1.Twin {
		return devicesv1beta1.Twin{PropertyName: p, Reported: devicesv1beta1.TwinProperty{Value: v}}
	}
	report := func(node, name, state string, twins ...devicesv1beta1.Twin) {
		w.Submit(node, []linkproto.Report{{Seq: 1, Device: &linkproto.DeviceReport{Namespace: "ns", Name: name, State: state, Twins: twins}}}, func([]uint64) {})
	}
	report("node-a", "d1", "ok", twin("t", "1"), twin("h", "5"))
	report("node-a", "d1", "", twin("t", "2"))
	report("node-a", "d2", "offline")
	report("node-a", "d3", "ok", twin("t", "9"))
	report("node-b", "d3", "", twin("h", "3")) // d3 moved to node-b
	got := w.Reported(func(_, name string) bool { return name != "d2" })
	d1, d3 := got["ns/d1"], got["ns/d3"]
	if len(got) != 2 || d1.Node != "node-a" || d1.Report.State != "ok" || len(d1.Report.Twins) != 2 || d1.Report.Twins[0].Reported.Value != "2" {
		t.Fatalf("d1: %+v (all: %+v)", d1, got)
	}
	if d3.Node != "node-b" || d3.Report.State != "" || len(d3.Report.Twins) != 1 || d3.Report.Twins[0].PropertyName != "h" {
		t.Fatalf("d3 after its move: %+v", d3)
	}
	if _, ok := w.Reported(func(string, string) bool { return true })["ns/d2"]; ok {
		t.Fatal("d2 was not forgotten")
	}
}
