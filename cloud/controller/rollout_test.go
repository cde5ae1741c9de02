package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync/atomic"
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

// rolloutRig runs the controller with the status writer on a real API
// server, for a plugin of nodes n1 and n2, each with a device of it.
type rolloutRig struct {
	t      *testing.T
	env    *k8stest.Env
	ns     string
	n1, n2 string
	h      *hub
	dyn    dynamic.Interface
	w      *status.Writer
	key    string // the plugin's key in a desired set
	ctl    *controller.Controller
}

// newRolloutRig starts the controller and the status writer with
// options opts (the clients, hub and writer are the rig's).
func newRolloutRig(t *testing.T, opts controller.Options) *rolloutRig {
	env := k8stest.Shared(t)
	ns := env.Namespace(t)
	r := &rolloutRig{t: t, env: env, ns: ns, n1: ns + "-n1", n2: ns + "-n2"}
	r.h = &hub{nodes: []string{r.n1, r.n2}, sets: map[string]map[string]linkproto.Item{}, wake: make(chan struct{}, 1)}
	r.dyn = dynamic.NewForConfigOrDie(env.Config())
	r.w = status.New(status.Options{Dynamic: r.dyn, FlushInterval: time.Millisecond})
	r.key = linkproto.Key(linkproto.KindMapperPlugin, "", ns+"-virt")
	opts.KubeEdge, opts.Dynamic, opts.Hub, opts.Workers, opts.Rollouts = kubeedge.NewForConfigOrDie(env.Config()), r.dyn, r.h, 2, r.w
	ctl, err := controller.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.ctl = ctl
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = ctl.Run(ctx); done <- struct{}{} }()
	go func() { _ = r.w.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return r
}

// apply applies the plugin with module file and digest, and spec.rollout
// ro (a YAML flow mapping), and the devices a on n1 and b on n2.
func (r *rolloutRig) apply(file, digest, ro string) {
	r.t.Helper()
	doc := `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: P-virt}
spec: {protocols: [P-virt], module: {file: FILE, digest: "DIGEST"}, rollout: ROLLOUT}
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
	doc = strings.NewReplacer("P-", r.ns+"-", "FILE", file, "DIGEST", digest, "ROLLOUT", ro).Replace(doc)
	if err := r.env.Apply(context.Background(), r.ns, doc); err != nil {
		r.t.Fatal(err)
	}
}

// report has node report the plugin as rep says (its name is set here).
func (r *rolloutRig) report(node string, rep linkproto.PluginReport) {
	rep.Name = r.ns + "-virt"
	r.w.Submit(node, []linkproto.Report{{Seq: 1, Plugin: &rep}}, func([]uint64) {})
}

// loaded has node report the plugin loaded with the module of digest.
func (r *rolloutRig) loaded(node, digest string) {
	r.report(node, linkproto.PluginReport{Phase: "Loaded", Digest: digest})
}

// plugin returns the plugin as stored.
func (r *rolloutRig) plugin() *mappersv1alpha1.MapperPlugin {
	r.t.Helper()
	u, err := r.dyn.Resource(mappersv1alpha1.GroupVersionResource).Get(context.Background(), r.ns+"-virt", metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	var mp mappersv1alpha1.MapperPlugin
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mp); err != nil {
		r.t.Fatal(err)
	}
	return &mp
}

// rollout waits until the plugin's status.rollout satisfies want.
func (r *rolloutRig) rollout(want func(mappersv1alpha1.RolloutStatus) bool) mappersv1alpha1.RolloutStatus {
	r.t.Helper()
	var st mappersv1alpha1.RolloutStatus
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if st = r.plugin().Status.Rollout; want(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("status.rollout %+v", st)
	return st
}

// TestRolloutDelivery: a new module reaches the nodes one wave at a
// time, as the nodes report it loaded, and status.rollout says so.
func TestRolloutDelivery(t *testing.T) {
	// The digest of v3.wasm cannot be resolved (as an image whose
	// registry is out of reach).
	digestOf := func(_ context.Context, m mappersv1alpha1.Module) (string, error) {
		if m.File == "v3.wasm" {
			return "", errors.New("registry out of reach")
		}
		return m.Digest, nil
	}
	r := newRolloutRig(t, controller.Options{Digest: digestOf})
	ns, n1, n2, h, key := r.ns, r.n1, r.n2, r.h, r.key
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	const ro = `{maxUnavailable: "50%"}`

	r.apply("v1.wasm", d1, ro)
	h.waitModules(t, key, map[string]string{n1: "v1.wasm", n2: "v1.wasm"})
	r.loaded(n1, d1)
	r.loaded(n2, d1)
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.UpdatedNodes == 2 && st.TargetDigest == d1
	})

	r.apply("v2.wasm", d2, ro)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v1.wasm"})
	st := r.rollout(func(st mappersv1alpha1.RolloutStatus) bool { return st.CurrentWave == 1 })
	if st.Phase != mappersv1alpha1.RolloutProgressing || st.PreviousDigest != d1 || st.PreviousModule.File != "v1.wasm" || st.TargetDigest != d2 {
		t.Fatalf("wave 1: %+v", st)
	}
	r.loaded(n1, d2)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v2.wasm"})
	r.loaded(n2, d2)
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.UpdatedNodes == 2 && st.CurrentWave == 2
	})

	// A module whose digest cannot be resolved is held back: the nodes
	// keep v2, and their reconciles still deliver everything else.
	r.apply("v3.wasm", "sha256:"+strings.Repeat("3", 64), ro)
	if err := r.env.Apply(context.Background(), ns, strings.ReplaceAll(`apiVersion: devices.kubeedge.io/v1beta1
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

// TestRolloutRetryAndDeadline: a node's rejection of a module, left from
// a rollout of it that was rolled back, does not fail a later rollout of
// the same module; a node that does not report within the progress
// deadline does, with no other change to wake the controller; and its
// late report lets the rollout complete.
func TestRolloutRetryAndDeadline(t *testing.T) {
	// The controller's clock, moved on by the test past what the status
	// writer stamps on node reports.
	var skew atomic.Int64
	r := newRolloutRig(t, controller.Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	n1, n2, h, key := r.n1, r.n2, r.h, r.key
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	const ro = `{progressDeadlineSeconds: 1}`
	failedOn := func(node string) func(mappersv1alpha1.RolloutStatus) bool {
		return func(st mappersv1alpha1.RolloutStatus) bool {
			return st.Phase == mappersv1alpha1.RolloutFailed && st.TargetDigest == d2 && len(st.FailedNodes) == 1 && st.FailedNodes[0].Node == node
		}
	}

	r.apply("v1.wasm", d1, ro)
	r.loaded(n1, d1)
	r.loaded(n2, d1)
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.UpdatedNodes == 2
	})

	// v2 to n1, which rejects it, then a rollback that n1 does not hear
	// of: its report keeps the rejection.
	r.apply("v2.wasm", d2, ro)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v1.wasm"})
	r.report(n1, linkproto.PluginReport{Phase: "Loaded", Digest: d1, RejectedDigest: d2, Message: "trapped on its first read"})
	r.rollout(failedOn(n1))
	r.apply("v1.wasm", d1, ro)
	h.waitModules(t, key, map[string]string{n1: "v1.wasm", n2: "v1.wasm"})
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.TargetDigest == d1
	})

	// v2 again, a minute later by the controller's clock, with the
	// default deadline: n1's rejection predates its wave. The plan made
	// for a change of spec.rollout alone sees n1 in the wave.
	skew.Store(int64(time.Minute))
	r.apply("v2.wasm", d2, `{}`)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v1.wasm"})
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool { return st.TargetDigest == d2 && st.CurrentWave == 1 })
	r.apply("v2.wasm", d2, `{maxUnavailable: 1}`)
	gen := r.plugin().Generation
	st := r.rollout(func(st mappersv1alpha1.RolloutStatus) bool { return st.ObservedGeneration == gen })
	if st.Phase != mappersv1alpha1.RolloutProgressing || st.FailedNodes != nil || st.CurrentWave != 1 || st.CurrentWaveStartTime.IsZero() {
		t.Fatalf("n1's earlier rejection failed the rollout again: %+v", st)
	}

	// n1 loads v2; n2, in wave 2, says nothing within a second.
	skew.Store(0)
	r.apply("v2.wasm", d2, ro)
	r.loaded(n1, d2)
	h.waitModules(t, key, map[string]string{n1: "v2.wasm", n2: "v2.wasm"})
	st = r.rollout(failedOn(n2))
	if st.CurrentWave != 2 || !strings.Contains(st.FailedNodes[0].Reason, "did not report "+d2+" loaded within 1s") || !strings.Contains(st.Message, "did not report") {
		t.Fatalf("past the deadline: %+v", st)
	}
	r.loaded(n2, d2)
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutComplete && st.TargetDigest == d2 && st.UpdatedNodes == 2
	})
}
