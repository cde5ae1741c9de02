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
// carries the digest of the module it runs; a new digest in the same
// phase is a change that keeps the time of the last phase change.
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
	if n := st.Nodes[1]; n.Digest != b || !n.LastTransitionTime.Equal(&t0) {
		t.Fatalf("after a new digest in the same phase: %+v", n)
	}
}
