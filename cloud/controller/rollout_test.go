package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/linkproto"
)

// moduleOf returns the module file of plugin key in node's desired set.
func (h *hub) moduleOf(node, key string) string {
	h.mu.Lock()
	it, ok := h.sets[node][key]
	h.mu.Unlock()
	if !ok {
		return ""
	}
	var p mappersv1alpha1.MapperPlugin
	if err := json.Unmarshal(it.Object, &p); err != nil || p.Spec.Rollout != (mappersv1alpha1.Rollout{}) {
		return "undecodable or carrying spec.rollout: " + string(it.Object)
	}
	return p.Spec.Module.File
}

// waitModules waits until each node is sent the plugin with the given
// module file.
func (h *hub) waitModules(t *testing.T, key string, want map[string]string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		got := map[string]string{}
		same := true
		for n, f := range want {
			got[n] = h.moduleOf(n, key)
			same = same && got[n] == f
		}
		if same {
			return
		}
		select {
		case <-h.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("modules sent %v, want %v", got, want)
		}
	}
}

// TestRolloutDelivery runs the controller with the status writer on a
// real API server: a new module reaches the nodes one wave at a time, as
// the nodes report it loaded, and status.rollout says so.
func TestRolloutDelivery(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.Namespace(t)
	p := func(s string) string { return ns + "-" + s }
	n1, n2 := p("n1"), p("n2")
	h := &hub{nodes: []string{n1, n2}, sets: map[string]map[string]linkproto.Item{}, wake: make(chan struct{}, 1)}
	dyn := dynamic.NewForConfigOrDie(env.Config())
	w := status.New(status.Options{Dynamic: dyn, FlushInterval: time.Millisecond})
	// The digest of v3.wasm cannot be resolved (as an image whose
	// registry is out of reach).
	digestOf := func(_ context.Context, m mappersv1alpha1.Module) (string, error) {
		if m.File == "v3.wasm" {
			return "", errors.New("registry out of reach")
		}
		return m.Digest, nil
	}
	ctl, err := controller.New(controller.Options{
		KubeEdge: kubeedge.NewForConfigOrDie(env.Config()), Dynamic: dyn, Hub: h, Workers: 2, Rollouts: w, Digest: digestOf,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = ctl.Run(ctx); done <- struct{}{} }()
	go func() { _ = w.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	apply := func(file, digest string) {
		t.Helper()
		doc := `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: P-virt}
spec: {protocols: [P-virt], module: {file: FILE, digest: "DIGEST"}, rollout: {maxUnavailable: "50%"}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m}
spec: {protocol: P-virt}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: a}
spec: {nodeName: P-n1, deviceModelRef: {name: m}, protocol: {protocolName: P-virt}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: b}
spec: {nodeName: P-n2, deviceModelRef: {name: m}, protocol: {protocolName: P-virt}}`
		doc = strings.NewReplacer("P-", ns+"-", "FILE", file, "DIGEST", digest).Replace(doc)
		if err := env.Apply(context.Background(), ns, doc); err != nil {
			t.Fatal(err)
		}
	}
	report := func(node, digest string) {
		w.Submit(node, []linkproto.Report{{Seq: 1, Plugin: &linkproto.PluginReport{Name: p("virt"), Phase: "Loaded", Digest: digest}}}, func([]uint64) {})
	}
	rollout := func(want func(mappersv1alpha1.RolloutStatus) bool) mappersv1alpha1.RolloutStatus {
		t.Helper()
		var st mappersv1alpha1.RolloutStatus
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			u, err := dyn.Resource(mappersv1alpha1.GroupVersionResource).Get(context.Background(), p("virt"), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var mp mappersv1alpha1.MapperPlugin
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mp); err != nil {
				t.Fatal(err)
			}
			if st = mp.Status.Rollout; want(st) {
				return st
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("status.rollout %+v", st)
		return st
	}
	key := linkproto.Key(linkproto.KindMapperPlugin, "", p("virt"))

	apply("v1.wasm", d1)
	h.waitModules(t, key, map[string]string{n1: "v1.wasm", n2: "v1.wasm"})
	report(n1, d1)
	report(n2, d1)
	rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.UpdatedNodes == 2 && st.TargetDigest == d1
	})

	apply("v2.wasm", d2)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v1.wasm"})
	st := rollout(func(st mappersv1alpha1.RolloutStatus) bool { return st.CurrentWave == 1 })
	if st.Phase != mappersv1alpha1.RolloutProgressing || st.PreviousDigest != d1 || st.PreviousModule.File != "v1.wasm" || st.TargetDigest != d2 {
		t.Fatalf("wave 1: %+v", st)
	}
	report(n1, d2)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v2.wasm"})
	report(n2, d2)
	rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.UpdatedNodes == 2 && st.CurrentWave == 2
	})

	// A module whose digest cannot be resolved is held back: the nodes
	// keep v2, and their reconciles still deliver everything else.
	apply("v3.wasm", "sha256:"+strings.Repeat("3", 64))
	if err := env.Apply(context.Background(), ns, strings.ReplaceAll(`apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: c}
spec: {nodeName: P-n1, deviceModelRef: {name: m}, protocol: {protocolName: P-virt}}`, "P-", ns+"-")); err != nil {
		t.Fatal(err)
	}
	want := []string{linkproto.Key(linkproto.KindDevice, ns, "a"), linkproto.Key(linkproto.KindDevice, ns, "c"), linkproto.Key(linkproto.KindDeviceModel, ns, "m"), key}
	sort.Strings(want)
	h.wait(t, n1, strings.Join(want, " "))
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v2.wasm"})
}
