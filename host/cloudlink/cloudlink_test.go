package cloudlink_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/certs"
	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Run(m)) }

// cluster is the shared API server with clients and a fresh namespace.
type cluster struct {
	env *k8stest.Env
	ns  string
	kc  kubernetes.Interface
	ke  kubeedge.Interface
	dyn dynamic.Interface
}

func newCluster(t *testing.T) *cluster {
	env := k8stest.Shared(t)
	c := &cluster{env: env, ns: env.Namespace(t)}
	c.kc = kubernetes.NewForConfigOrDie(env.Config())
	c.ke = kubeedge.NewForConfigOrDie(env.Config())
	c.dyn = dynamic.NewForConfigOrDie(env.Config())
	return c
}

// apply creates (or replaces) objects from YAML, through client-go.
func (c *cluster) apply(t *testing.T, doc string) {
	t.Helper()
	if err := c.env.Apply(context.Background(), c.ns, doc); err != nil {
		t.Fatal(err)
	}
}

// cloud is wapper-cloud running in this test process.
type cloud struct {
	url, ca string
	addr    string
	cancel  context.CancelFunc
	done    chan error
}

func (c *cluster) startCloud(t *testing.T, addr string, mod func(*server.Config)) *cloud {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ca := filepath.Join(t.TempDir(), "ca.crt")
	ready := make(chan net.Addr, 1)
	cfg := server.Config{
		Rest: c.env.Config(), Namespace: c.ns, Listen: addr, CAOut: ca,
		ModuleCacheDir: t.TempDir(), Ready: func(a net.Addr) { ready <- a },
	}
	cfg.Status.FlushInterval = 50 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cl := &cloud{ca: ca, cancel: cancel, done: make(chan error, 1)}
	go func() { cl.done <- server.Run(ctx, cfg) }()
	select {
	case a := <-ready:
		cl.addr = a.String()
		cl.url = "https://" + cl.addr
	case err := <-cl.done:
		t.Fatalf("wapper-cloud did not start: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("wapper-cloud did not start in 2 minutes")
	}
	t.Cleanup(cl.stop)
	return cl
}

func (cl *cloud) stop() {
	cl.cancel()
	if cl.done != nil {
		<-cl.done
		cl.done = nil
	}
}

// node names a node unique to the test (the cluster is shared).
func (c *cluster) node(n string) string { return c.ns + "-" + n }

func (c *cluster) token(t *testing.T, node string) string {
	t.Helper()
	tok, err := nodeauth.Ensure(context.Background(), c.kc, c.ns, node)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sink records what the link hands the device manager.
type sink struct {
	mu    sync.Mutex
	last  cloudlink.Set
	syncs int
	wake  chan struct{}
}

func newSink() *sink { return &sink{wake: make(chan struct{}, 1)} }

func (s *sink) Sync(_ context.Context, set cloudlink.Set) error {
	s.mu.Lock()
	s.last = set
	s.syncs++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// wait waits until cond holds for the last set.
func (s *sink) wait(t *testing.T, what string, cond func(cloudlink.Set) bool) cloudlink.Set {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		s.mu.Lock()
		set := s.last
		s.mu.Unlock()
		if cond(set) {
			return set
		}
		select {
		case <-s.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; last set: %s", what, describe(set))
		}
	}
}

func describe(s cloudlink.Set) string {
	var parts []string
	for _, d := range s.Devices {
		parts = append(parts, "Device/"+d.Namespace+"/"+d.Name)
	}
	for _, m := range s.Models {
		parts = append(parts, "DeviceModel/"+m.Namespace+"/"+m.Name)
	}
	for _, p := range s.Plugins {
		parts = append(parts, "MapperPlugin/"+p.Name)
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

func has(want ...string) func(cloudlink.Set) bool {
	return func(s cloudlink.Set) bool {
		d := describe(s)
		return d == "["+strings.Join(want, " ")+"]"
	}
}

// host is a link with its own bbolt database.
type host struct {
	link   *cloudlink.Link
	sink   *sink
	db     *bolt.DB
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func startHost(t *testing.T, url, node, token, ca, dbPath string, mod func(*cloudlink.Options)) *host {
	t.Helper()
	tlsCfg, err := cloudlink.LoadCA(ca)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{sink: newSink(), db: openDB(t, dbPath), reg: prometheus.NewRegistry(), done: make(chan struct{})}
	opts := cloudlink.Options{
		URL: url, Node: node, Token: token, TLS: tlsCfg, DB: h.db, Sink: h.sink,
		ModuleDir: filepath.Join(filepath.Dir(dbPath), "modules"), MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Registerer: h.reg,
	}
	if mod != nil {
		mod(&opts)
	}
	h.link, err = cloudlink.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		if err := h.link.Run(ctx); err != nil {
			t.Errorf("link: %v", err)
		}
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *host) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	_ = h.db.Close()
	h.cancel = nil
}

func (h *host) itemsReceived(t *testing.T) float64 {
	return h.counter(t, "wapper_cloudlink_items_received_total")
}

// counter reads one of the link's counters.
func (h *host) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func waitUntil(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

const plugin = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: PLUGIN}
spec:
  protocols: [PROTO]
  module: {file: virtual.wasm}`

const model = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermo}
spec:
  protocol: PROTO
  properties:
  - {name: temperature, type: INT, accessMode: ReadOnly}
  - {name: setpoint, type: INT, accessMode: ReadWrite}`

func device(name, node, setpoint string) string {
	return `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ` + name + `}
spec:
  nodeName: ` + node + `
  deviceModelRef: {name: thermo}
  protocol: {protocolName: PROTO}
  properties:
  - name: temperature
    visitors: {protocolName: PROTO, configData: {kind: counter}}
  - name: setpoint
    desired: {value: "` + setpoint + `"}
    visitors: {protocolName: PROTO, configData: {kind: setpoint}}`
}

// names makes the cluster-scoped plugin and protocol unique per test.
func names(t *testing.T, c *cluster, doc string) string {
	return strings.NewReplacer("PLUGIN", "virtual-"+c.ns, "PROTO", "virtual-"+c.ns).Replace(doc)
}

func desiredOf(s cloudlink.Set, name, prop string) string {
	for _, d := range s.Devices {
		if d.Name == name {
			for _, p := range d.Spec.Properties {
				if p.Name == prop {
					return p.Desired.Value
				}
			}
		}
	}
	return ""
}

// TestEachNodeGetsItsOwnObjects: two hosts, two nodes' devices; each host
// gets its devices, their model and plugin, and never the other's; a
// desired value set in the cluster reaches the host, and removals follow.
func TestEachNodeGetsItsOwnObjects(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	pl := "MapperPlugin/virtual-" + c.ns
	mo := "DeviceModel/" + c.ns + "/thermo"
	dev := func(n string) string { return "Device/" + c.ns + "/" + n }
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")+"\n---\n"+device("a2", c.node("a"), "21")+"\n---\n"+device("b1", c.node("b"), "22")))

	a := startHost(t, cl.url, c.node("a"), c.token(t, c.node("a")), cl.ca, filepath.Join(t.TempDir(), "a.db"), nil)
	b := startHost(t, cl.url, c.node("b"), c.token(t, c.node("b")), cl.ca, filepath.Join(t.TempDir(), "b.db"), nil)
	a.sink.wait(t, "node-a's objects", has(dev("a1"), dev("a2"), mo, pl))
	b.sink.wait(t, "node-b's objects", has(dev("b1"), mo, pl))

	// A desired value set in the cluster reaches the host.
	c.apply(t, names(t, c, device("a1", c.node("a"), "30")))
	a.sink.wait(t, "the new desired value", func(s cloudlink.Set) bool { return desiredOf(s, "a1", "setpoint") == "30" })

	// A model change reaches every host using it.
	c.apply(t, names(t, c, strings.Replace(model, "accessMode: ReadOnly}", "accessMode: ReadOnly, unit: C}", 1)))
	for _, h := range []*host{a, b} {
		h.sink.wait(t, "the changed model", func(s cloudlink.Set) bool {
			return len(s.Models) == 1 && len(s.Models[0].Spec.Properties) > 0 && s.Models[0].Spec.Properties[0].Unit == "C"
		})
	}

	// Moving a device moves it between hosts.
	c.apply(t, names(t, c, device("a2", c.node("b"), "21")))
	a.sink.wait(t, "a2 gone from node-a", has(dev("a1"), mo, pl))
	b.sink.wait(t, "a2 on node-b", has(dev("a2"), dev("b1"), mo, pl))

	// Deleting node-b's last devices removes their model and plugin too.
	for _, n := range []string{"a2", "b1"} {
		if err := c.ke.DevicesV1beta1().Devices(c.ns).Delete(context.Background(), n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.sink.wait(t, "node-b empty", has())
	a.sink.wait(t, "node-a unchanged", has(dev("a1"), mo, pl))
}

// TestReportsReachTheCluster: twins and state land in DeviceStatus, plugin
// state (with the digest of the module the node runs) in MapperPlugin
// status, each node's entry its own.
func TestReportsReachTheCluster(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")+"\n---\n"+device("b1", c.node("b"), "20")))
	a := startHost(t, cl.url, c.node("a"), c.token(t, c.node("a")), cl.ca, filepath.Join(t.TempDir(), "a.db"), nil)
	b := startHost(t, cl.url, c.node("b"), c.token(t, c.node("b")), cl.ca, filepath.Join(t.TempDir(), "b.db"), nil)
	a.sink.wait(t, "a1", func(s cloudlink.Set) bool { return len(s.Devices) == 1 })

	twin := func(p, v string) devicesv1beta1.Twin {
		return devicesv1beta1.Twin{PropertyName: p, Reported: devicesv1beta1.TwinProperty{Value: v}}
	}
	must(t, a.link.ReportDevice(linkproto.DeviceReport{Namespace: c.ns, Name: "a1", Twins: []devicesv1beta1.Twin{twin("temperature", "1")}, State: "ok"}))
	// A later report of another property keeps the first one.
	must(t, a.link.ReportDevice(linkproto.DeviceReport{Namespace: c.ns, Name: "a1", Twins: []devicesv1beta1.Twin{twin("setpoint", "20")}}))
	must(t, a.link.ReportPlugin(linkproto.PluginReport{Name: "virtual-" + c.ns, Phase: "Loaded", Digest: "sha256:aa"}))
	must(t, b.link.ReportPlugin(linkproto.PluginReport{Name: "virtual-" + c.ns, Phase: "Failed", Message: "no memory"}))

	waitUntil(t, "DeviceStatus a1 with both twins", func() (bool, error) {
		ds, err := c.ke.DevicesV1beta1().DeviceStatuses(c.ns).Get(context.Background(), "a1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got := map[string]string{}
		for _, tw := range ds.Status.Twins {
			got[tw.PropertyName] = tw.Reported.Value
		}
		return got["temperature"] == "1" && got["setpoint"] == "20" && ds.Status.State == "ok" &&
			len(ds.OwnerReferences) == 1 && ds.OwnerReferences[0].Name == "a1", nil
	})
	c.pluginNodes(t, func(na, nb map[string]any) bool {
		return na["node"] == c.node("a") && na["phase"] == "Loaded" && na["digest"] == "sha256:aa" &&
			nb["node"] == c.node("b") && nb["phase"] == "Failed" && nb["message"] == "no memory"
	})
	waitUntil(t, "empty outboxes", func() (bool, error) { return a.link.Pending() == 0 && b.link.Pending() == 0, nil })
}

// TestTwoReplicas: hosts on different replicas each get their own objects,
// and both replicas write their nodes' entries of one MapperPlugin status.
func TestTwoReplicas(t *testing.T) {
	c := newCluster(t)
	one := c.startCloud(t, "", nil)
	two := c.startCloud(t, "", nil)
	if a, b := readFile(t, one.ca), readFile(t, two.ca); a != b {
		t.Fatal("the replicas serve different certificates; they must share the one kept in the TLS Secret")
	}
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")+"\n---\n"+device("b1", c.node("b"), "20")))
	a := startHost(t, one.url, c.node("a"), c.token(t, c.node("a")), one.ca, filepath.Join(t.TempDir(), "a.db"), nil)
	b := startHost(t, two.url, c.node("b"), c.token(t, c.node("b")), two.ca, filepath.Join(t.TempDir(), "b.db"), nil)
	a.sink.wait(t, "a1 via replica one", func(s cloudlink.Set) bool { return len(s.Devices) == 1 && s.Devices[0].Name == "a1" })
	b.sink.wait(t, "b1 via replica two", func(s cloudlink.Set) bool { return len(s.Devices) == 1 && s.Devices[0].Name == "b1" })
	for i := range 5 {
		phase := []string{"Loaded", "Pending"}[i%2] // the last (i=4) is Loaded
		must(t, a.link.ReportPlugin(linkproto.PluginReport{Name: "virtual-" + c.ns, Phase: phase}))
		must(t, b.link.ReportPlugin(linkproto.PluginReport{Name: "virtual-" + c.ns, Phase: phase, Message: "b"}))
	}
	c.pluginNodes(t, func(na, nb map[string]any) bool {
		return na["node"] == c.node("a") && na["phase"] == "Loaded" && nb["node"] == c.node("b") && nb["phase"] == "Loaded" && nb["message"] == "b"
	})
	waitUntil(t, "empty outboxes", func() (bool, error) { return a.link.Pending() == 0 && b.link.Pending() == 0, nil })
}

// pluginNodes waits until the MapperPlugin's status lists exactly two
// nodes and ok accepts them.
func (c *cluster) pluginNodes(t *testing.T, ok func(a, b map[string]any) bool) {
	t.Helper()
	waitUntil(t, "MapperPlugin status for both nodes", func() (bool, error) {
		u, err := c.dyn.Resource(mappersv1alpha1.GroupVersionResource).Get(context.Background(), "virtual-"+c.ns, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		nodes, _, _ := unstructured.NestedSlice(u.Object, "status", "nodes")
		if len(nodes) != 2 {
			return false, nil
		}
		return ok(nodes[0].(map[string]any), nodes[1].(map[string]any)), nil
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCloudRestartLosesNothing: with the cloud down, reports pile up in
// the outbox and the cluster changes; after the restart every report is
// written, every change arrives, and objects the host holds are not sent
// again.
func TestCloudRestartLosesNothing(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")+"\n---\n"+device("a2", c.node("a"), "20")))
	a := startHost(t, cl.url, c.node("a"), c.token(t, c.node("a")), cl.ca, filepath.Join(t.TempDir(), "a.db"), nil)
	a.sink.wait(t, "two devices", func(s cloudlink.Set) bool { return len(s.Devices) == 2 })

	cl.stop()
	waitUntil(t, "the link to notice", func() (bool, error) { return !a.link.Connected(), nil })
	for i := range 50 {
		v := strings.Repeat("x", i%3) + string(rune('a'+i%26))
		must(t, a.link.ReportDevice(linkproto.DeviceReport{Namespace: c.ns, Name: "a1", Twins: []devicesv1beta1.Twin{{PropertyName: "temperature", Reported: devicesv1beta1.TwinProperty{Value: v}}}}))
	}
	must(t, a.link.ReportDevice(linkproto.DeviceReport{Namespace: c.ns, Name: "a1", Twins: []devicesv1beta1.Twin{{PropertyName: "temperature", Reported: devicesv1beta1.TwinProperty{Value: "final"}}}}))
	must(t, a.link.ReportDevice(linkproto.DeviceReport{Namespace: c.ns, Name: "a2", Twins: []devicesv1beta1.Twin{{PropertyName: "setpoint", Reported: devicesv1beta1.TwinProperty{Value: "20"}}}}))
	if n := a.link.Pending(); n != 2 {
		t.Fatalf("outbox holds %d objects, want 2 (one per device, latest state)", n)
	}
	c.apply(t, names(t, c, device("a2", c.node("a"), "25")))
	before := a.itemsReceived(t)

	cl2 := c.startCloud(t, cl.addr, nil)
	a.sink.wait(t, "the desired change made while the cloud was down", func(s cloudlink.Set) bool { return desiredOf(s, "a2", "setpoint") == "25" })
	waitUntil(t, "reports written", func() (bool, error) {
		ds, err := c.ke.DevicesV1beta1().DeviceStatuses(c.ns).Get(context.Background(), "a1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(ds.Status.Twins) == 1 && ds.Status.Twins[0].Reported.Value == "final", nil
	})
	waitUntil(t, "a2's report written", func() (bool, error) {
		_, err := c.ke.DevicesV1beta1().DeviceStatuses(c.ns).Get(context.Background(), "a2", metav1.GetOptions{})
		return err == nil, err
	})
	waitUntil(t, "empty outbox", func() (bool, error) { return a.link.Pending() == 0, nil })
	if got := a.itemsReceived(t) - before; got != 1 {
		t.Errorf("after the restart the host received %v items, want 1 (only the changed device)", got)
	}
	_ = cl2
}

// TestHostOfflineConverges: changes made while a host is down arrive when
// it returns, from its stored inventory.
func TestHostOfflineConverges(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	tok := c.token(t, c.node("a"))
	dbPath := filepath.Join(t.TempDir(), "a.db")
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")+"\n---\n"+device("a2", c.node("a"), "20")))
	a := startHost(t, cl.url, c.node("a"), tok, cl.ca, dbPath, nil)
	a.sink.wait(t, "two devices", func(s cloudlink.Set) bool { return len(s.Devices) == 2 })
	a.stop()

	c.apply(t, names(t, c, device("a1", c.node("a"), "99")+"\n---\n"+device("a3", c.node("a"), "1")))
	must(t, c.ke.DevicesV1beta1().Devices(c.ns).Delete(context.Background(), "a2", metav1.DeleteOptions{}))

	a = startHost(t, cl.url, c.node("a"), tok, cl.ca, dbPath, nil)
	set := a.sink.wait(t, "converged", func(s cloudlink.Set) bool {
		return len(s.Devices) == 2 && desiredOf(s, "a1", "setpoint") == "99" && desiredOf(s, "a3", "setpoint") == "1"
	})
	if got := a.itemsReceived(t); got != 3 {
		t.Errorf("received %v items, want 3 (a1 changed, a3 new, a2 removed): %s", got, describe(set))
	}
}

// TestRestartWithoutCloud: a host restarted with the cloud unreachable
// hands its stored objects to the device manager at once.
func TestRestartWithoutCloud(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	tok := c.token(t, c.node("a"))
	dbPath := filepath.Join(t.TempDir(), "a.db")
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	a := startHost(t, cl.url, c.node("a"), tok, cl.ca, dbPath, nil)
	want := a.sink.wait(t, "a1", func(s cloudlink.Set) bool { return len(s.Devices) == 1 })
	a.stop()
	cl.stop()

	a = startHost(t, cl.url, c.node("a"), tok, cl.ca, dbPath, nil)
	a.sink.wait(t, "the stored objects", has(strings.Trim(describe(want), "[]")))
	if a.link.Connected() {
		t.Fatal("connected to a stopped cloud")
	}
	must(t, a.link.ReportDevice(linkproto.DeviceReport{Namespace: c.ns, Name: "a1", State: "ok"}))
	if a.link.Pending() != 1 {
		t.Fatal("report not kept in the outbox while offline")
	}
}

// TestWrongCredentialIsRefused: a wrong token, or a right token for
// another node, never connects.
func TestWrongCredentialIsRefused(t *testing.T) {
	c := newCluster(t)
	cl := c.startCloud(t, "", nil)
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("b1", c.node("b"), "20")))
	tokA := c.token(t, c.node("a"))
	c.token(t, c.node("b"))
	for _, tc := range []struct{ node, tok string }{{c.node("b"), tokA}, {c.node("b"), "nonsense"}} {
		h := startHost(t, cl.url, tc.node, tc.tok, cl.ca, filepath.Join(t.TempDir(), "x.db"), nil)
		// The host retries with backoff; each try is refused.
		waitUntil(t, "three refusals", func() (bool, error) { return h.counter(t, "wapper_cloudlink_refused_total") >= 3, nil })
		if n := h.counter(t, "wapper_cloudlink_connects_total"); n != 0 || h.link.Connected() {
			t.Fatalf("node %s connected %v times with token %q", tc.node, n, tc.tok)
		}
		h.sink.mu.Lock()
		if h.sink.syncs != 0 {
			t.Errorf("host with a wrong credential got objects: %s", describe(h.sink.last))
		}
		h.sink.mu.Unlock()
		h.stop()
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoClientGo guards DESIGN §3: the edge binary links cloudlink and must
// not link client-go.
func TestNoClientGo(t *testing.T) {
	goBin := testenv.Bin(t, "go")
	for _, pkg := range []string{"wapper.dev/wapper/host/cloudlink", "wapper.dev/wapper/linkproto"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if strings.HasPrefix(dep, "k8s.io/client-go") {
				t.Errorf("%s depends on %s; the edge must not link client-go", pkg, dep)
			}
		}
	}
}

// TestOperatorCertificate: with --tls-cert/--tls-key the cloud serves the
// operator's certificate, and a host trusting only that connects.
func TestOperatorCertificate(t *testing.T) {
	c := newCluster(t)
	certPEM, keyPEM, err := certs.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	must(t, os.WriteFile(certFile, certPEM, 0o600))
	must(t, os.WriteFile(keyFile, keyPEM, 0o600))
	cl := c.startCloud(t, "", func(cfg *server.Config) { cfg.TLSCert, cfg.TLSKey = certFile, keyFile })
	if readFile(t, cl.ca) != string(certPEM) {
		t.Fatal("--ca-out does not hold the operator's certificate")
	}
	c.apply(t, names(t, c, plugin+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	a := startHost(t, cl.url, c.node("a"), c.token(t, c.node("a")), certFile, filepath.Join(dir, "a.db"), nil)
	a.sink.wait(t, "a1", func(s cloudlink.Set) bool { return len(s.Devices) == 1 })
}
