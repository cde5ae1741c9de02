package controller_test

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	"k8s.io/client-go/dynamic"

	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/linkproto"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Run(m)) }

// hub records the desired sets the controller computes.
type hub struct {
	mu    sync.Mutex
	nodes []string
	sets  map[string]map[string]linkproto.Item
	wake  chan struct{}
}

func (h *hub) SetDesired(node string, items map[string]linkproto.Item) {
	h.mu.Lock()
	h.sets[node] = items
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *hub) Connected() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.nodes...)
}

func keys(m map[string]linkproto.Item) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

// wait waits until node's desired set has exactly want (space-separated,
// sorted keys).
func (h *hub) wait(t *testing.T, node, want string) map[string]linkproto.Item {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		h.mu.Lock()
		got, ok := h.sets[node]
		h.mu.Unlock()
		if ok && keys(got) == want {
			return got
		}
		select {
		case <-h.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: desired set %q, want %q", node, keys(got), want)
		}
	}
}

func TestDesiredSets(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.Namespace(t)
	p := func(s string) string { return ns + "-" + s } // cluster-scoped names unique to the test
	h := &hub{nodes: []string{p("n1"), p("n2"), p("n3")}, sets: map[string]map[string]linkproto.Item{}, wake: make(chan struct{}, 1)}
	ctl, err := controller.New(controller.Options{
		KubeEdge: kubeedge.NewForConfigOrDie(env.Config()), Dynamic: dynamic.NewForConfigOrDie(env.Config()), Hub: h, Workers: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ctl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	apply := func(doc string) {
		t.Helper()
		doc = strings.NewReplacer("NS", ns, "P-", ns+"-").Replace(doc)
		if err := env.Apply(context.Background(), ns, doc); err != nil {
			t.Fatal(err)
		}
	}
	// Two plugins provide protocol "P-modbus": the first by name wins
	// unless the model pins one.
	apply(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: P-b-modbus}
spec: {protocols: [P-modbus], module: {file: b.wasm}}
---
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: P-a-modbus}
spec: {protocols: [P-modbus, P-other], module: {file: a.wasm}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plain}
spec: {protocol: P-modbus}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: pinned
  annotations: {mappers.wapper.dev/plugin: P-b-modbus}
spec: {protocol: P-modbus}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d1}
spec: {nodeName: P-n1, deviceModelRef: {name: plain}, protocol: {protocolName: P-modbus}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d2}
spec: {nodeName: P-n2, deviceModelRef: {name: pinned}, protocol: {protocolName: P-modbus}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d3}
spec: {nodeName: P-n2, deviceModelRef: {name: missing}, protocol: {protocolName: P-nothing}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: pinned-gone
  annotations: {mappers.wapper.dev/plugin: P-gone}
spec: {protocol: P-modbus}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d4}
spec: {nodeName: P-n3, deviceModelRef: {name: plain}, protocol: {protocolName: P-other}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d5}
spec: {nodeName: P-n3, deviceModelRef: {name: pinned-gone}}`)
	dev := func(n string) string { return linkproto.Key(linkproto.KindDevice, ns, n) }
	model := func(n string) string { return linkproto.Key(linkproto.KindDeviceModel, ns, n) }
	plug := func(n string) string { return linkproto.Key(linkproto.KindMapperPlugin, "", p(n)) }
	sorted := func(ks ...string) string { sort.Strings(ks); return strings.Join(ks, " ") }

	set1 := h.wait(t, p("n1"), sorted(dev("d1"), model("plain"), plug("a-modbus")))
	// d3's model and plugin are missing: the device still goes, alone.
	h.wait(t, p("n2"), sorted(dev("d2"), dev("d3"), model("pinned"), plug("b-modbus")))
	// The rule of apis/binding, as the host applies it: d4 names a protocol
	// other than its model's (which P-a-modbus provides) and d5's model
	// pins a plugin that does not exist; neither gets a plugin.
	h.wait(t, p("n3"), sorted(dev("d4"), dev("d5"), model("plain"), model("pinned-gone")))

	// Delivered objects carry no status or managed fields, and their
	// version ignores writes that change only those.
	var obj map[string]any
	if err := json.Unmarshal(set1[dev("d1")].Object, &obj); err != nil {
		t.Fatal(err)
	}
	meta := obj["metadata"].(map[string]any)
	if obj["kind"] != "Device" || meta["managedFields"] != nil || meta["resourceVersion"] != nil {
		t.Fatalf("delivered object: %s", set1[dev("d1")].Object)
	}
	v1 := set1[dev("d1")].Version

	// Moving d1 to n2 and re-pinning: both nodes follow.
	apply(`apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d1}
spec: {nodeName: P-n2, deviceModelRef: {name: plain}, protocol: {protocolName: P-modbus}}`)
	h.wait(t, p("n1"), "")
	set2 := h.wait(t, p("n2"), sorted(dev("d1"), dev("d2"), dev("d3"), model("plain"), model("pinned"), plug("a-modbus"), plug("b-modbus")))
	if set2[dev("d1")].Version == v1 {
		t.Fatal("a changed device kept its version")
	}
}
