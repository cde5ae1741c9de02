// Command bench-link-bytes measures the bytes the cloud ↔ edge link puts on the
// wire (`make bench-link-bytes`, part of `make bench`; issue 19).
//
// It starts a real etcd and kube-apiserver (internal/k8stest), wapper-cloud
// in this process (server.Run, the code of bin/wapper-cloud, writing
// DeviceStatus objects), and -hosts real edge links (host/cloudlink.Link,
// each with its own bbolt database), each through a TCP proxy that counts
// the bytes it carries in each direction: TCP payload, that is TLS records
// (handshake, websocket frames and TLS overhead), not the TCP/IP headers.
// The proxy is also how a partition is made: it cuts every connection and
// refuses new ones until it heals.
//
// Each figure is one phase of the same run, measured from the proxy's
// counters once the phase is done and nothing has moved for a moment:
//
//   - connection setup: a node with no devices connects (TLS handshake,
//     websocket upgrade, an empty hello), and one keepalive exchange (a
//     ping and its pong; the hub's and the host's pings are otherwise held
//     off, so that they do not land in the other figures);
//   - initial sync: every host connects with an empty store and receives
//     its desired set (-devices Devices, their DeviceModel and
//     MapperPlugin), acknowledging each batch;
//   - twin reports of every device (two properties, state ok and
//     lastOnlineTime, as wapper-host sends them): a first round (the
//     DeviceStatus objects are created) and a second (steady state); then
//     -samples reports of one device at a time;
//   - -samples desired-value changes of one device at a time (a JSON patch
//     of spec.properties[].desired.value), each delivered and acknowledged;
//   - reconnects after a partition: once with nothing changed, once with
//     -changed of each node's devices changed while the hosts were cut
//     off, once with a twin report of every device queued in the outbox
//     meanwhile (the last two also beyond the first).
//
// It also reads wapper-cloud's count of the reports it received
// (/metrics), and prints it per report queued: a report the link sends
// more than once costs its bytes again.
//
// The baseline is the size of the same objects sent whole, as the
// Kubernetes API serves them: the JSON of each Device (with managedFields,
// as read from the API server after its create) and of each DeviceStatus
// (after the reports), averaged per device; each figure is printed with
// its ratio to that. The whole run is done twice, on fresh nodes and
// devices: without and with websocket permessage-deflate
// (hub.Options.Compression and cloudlink.Options.Compression), and the
// ratio of the two is printed too. Nothing is asserted: it prints figures.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	bolt "go.etcd.io/bbolt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/deploy/crds"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/internal/benchutil"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/linkproto"
)

func main() {
	var o options
	flag.IntVar(&o.hosts, "hosts", 5, "edge hosts (real cloudlink.Link clients)")
	flag.IntVar(&o.devices, "devices", 100, "Devices per host")
	flag.IntVar(&o.samples, "samples", 10, "single-device reports and desired changes measured one at a time")
	flag.Float64Var(&o.changed, "changed", 0.1, "share of each node's devices changed during the second partition")
	flag.Parse()
	if o.hosts < 1 || o.devices < 1 || o.samples < 1 || o.changed <= 0 || o.changed > 1 {
		fmt.Fprintln(os.Stderr, "linkbytes: want -hosts, -devices and -samples of 1 or more and -changed in (0, 1]")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "linkbytes:", err)
		os.Exit(1)
	}
}

type options struct {
	hosts, devices, samples int
	changed                 float64
}

// ns holds the node tokens, the TLS Secret and every object.
const ns = "bench"

// quiet is how long the counters must stand still for a phase to be over.
const quiet = 400 * time.Millisecond

var log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// linkLog is the links' logger: they warn at every partition, which is
// the point here.
var linkLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	all, err := crds.All()
	if err != nil {
		return err
	}
	env, err := k8stest.Start(ctx, k8stest.Options{CRDs: all, Logger: log})
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg := rest.CopyConfig(env.Config())
	cfg.QPS, cfg.Burst = 1000, 2000
	c := &cluster{cfg: cfg, kc: kubernetes.NewForConfigOrDie(cfg), ke: kubeedge.NewForConfigOrDie(cfg), dyn: dynamic.NewForConfigOrDie(cfg)}
	if _, err := c.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := c.shared(ctx); err != nil {
		return err
	}
	var res [2]*result
	for i, compress := range []bool{false, true} {
		r, err := c.measure(ctx, o, compress, byte('a'+i))
		if err != nil {
			return fmt.Errorf("compression %v: %w", compress, err)
		}
		res[i] = r
	}
	printFigures(o, c, res[0], res[1])
	return nil
}

type cluster struct {
	cfg *rest.Config
	kc  kubernetes.Interface
	ke  kubeedge.Interface
	dyn dynamic.Interface

	modelJSON, pluginJSON int
}

// shared creates the MapperPlugin and DeviceModel every device uses, and
// records their size as the API server serves them.
func (c *cluster) shared(ctx context.Context) error {
	plugin := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": mappersv1alpha1.SchemeGroupVersion.String(), "kind": "MapperPlugin",
		"metadata": map[string]any{"name": "modbus"},
		"spec": map[string]any{"protocols": []any{"modbus"},
			// A file module with its digest: the cloud pins it without
			// pulling anything.
			"module": map[string]any{"file": "modbus.wasm", "digest": "sha256:" + strings.Repeat("5e", 32)},
			"grants": map[string]any{"network": []any{"tcp://10.0.0.0/8:502"}}},
	}}
	if _, err := c.dyn.Resource(mappersv1alpha1.GroupVersionResource).Create(ctx, plugin, metav1.CreateOptions{}); err != nil {
		return err
	}
	model := &devicesv1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Name: "thermostat", Namespace: ns}, Spec: devicesv1beta1.DeviceModelSpec{
		Protocol: "modbus", Properties: []devicesv1beta1.ModelProperty{
			{Name: "temperature", Type: "FLOAT", AccessMode: "ReadOnly", Unit: "Cel", Minimum: "-40", Maximum: "125"},
			{Name: "setpoint", Type: "FLOAT", AccessMode: "ReadWrite", Unit: "Cel", Minimum: "5", Maximum: "35"},
		}}}
	if _, err := c.ke.DevicesV1beta1().DeviceModels(ns).Create(ctx, model, metav1.CreateOptions{}); err != nil {
		return err
	}
	var err error
	if c.modelJSON, err = c.raw(ctx, "/apis/devices.kubeedge.io/v1beta1/namespaces/"+ns+"/devicemodels/thermostat"); err != nil {
		return err
	}
	c.pluginJSON, err = c.raw(ctx, "/apis/"+mappersv1alpha1.SchemeGroupVersion.String()+"/mapperplugins/modbus")
	return err
}

// raw returns the size of an object's JSON as the API server serves it.
func (c *cluster) raw(ctx context.Context, path string) (int, error) {
	b, err := c.kc.CoreV1().RESTClient().Get().AbsPath(path).SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	return len(b), nil
}

// device is a Modbus thermostat: a measured temperature and a writable
// setpoint with a desired value.
func device(name, node string, i int) *devicesv1beta1.Device {
	cv := func(m map[string]any) *devicesv1beta1.CustomizedValue {
		return &devicesv1beta1.CustomizedValue{Data: m}
	}
	return &devicesv1beta1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"site": "plant-1", "line": fmt.Sprintf("line-%d", i%4)}},
		Spec: devicesv1beta1.DeviceSpec{
			NodeName: node, DeviceModelRef: &corev1.LocalObjectReference{Name: "thermostat"},
			Protocol: devicesv1beta1.ProtocolConfig{ProtocolName: "modbus", ConfigData: cv(map[string]any{
				"host": fmt.Sprintf("10.0.%d.%d", i/250, 1+i%250), "port": 502, "slaveID": 1, "timeout": "2s"})},
			Properties: []devicesv1beta1.DeviceProperty{
				{Name: "temperature", ReportCycle: 10000, CollectCycle: 1000, ReportToCloud: true, Visitors: devicesv1beta1.VisitorConfig{ProtocolName: "modbus",
					ConfigData: cv(map[string]any{"register": "InputRegister", "offset": 0, "limit": 1, "scale": 0.1})}},
				{Name: "setpoint", Desired: devicesv1beta1.TwinProperty{Value: "20"}, ReportCycle: 10000, CollectCycle: 1000, ReportToCloud: true,
					Visitors: devicesv1beta1.VisitorConfig{ProtocolName: "modbus",
						ConfigData: cv(map[string]any{"register": "HoldingRegister", "offset": 1, "limit": 1, "scale": 0.1})}},
			},
		},
	}
}

// traffic is the bytes of one phase: host → cloud and cloud → host.
type traffic struct{ up, down int64 }

func (t traffic) total() int64 { return t.up + t.down }

func (t traffic) sub(o traffic) traffic { return traffic{t.up - o.up, t.down - o.down} }

// per divides by n.
func (t traffic) per(n int) fig { return fig{float64(t.up) / float64(n), float64(t.down) / float64(n)} }

// fig is a traffic figure per something (device, host, report).
type fig struct{ up, down float64 }

func (f fig) total() float64 { return f.up + f.down }

// result is one run's figures.
type result struct {
	compress bool
	// Whole-object sizes, mean per device.
	deviceJSON, statusJSON float64

	setup, keepalive         fig // per connection, per exchange
	initial                  fig // per device
	report1, report2, single fig // per device report
	flushed                  fig // per device report, beyond the reconnect itself
	// received is the reports the cloud received per report queued:
	// first round, steady round, one device alone, queued while cut off.
	received                      [4]float64
	change                        fig // per changed device
	reconnect0, reconnect         fig // per device
	reconnect0Host, reconnectHost fig // per host
	reconnectChanged              fig // per changed device, beyond the reconnect itself
	changedPerHost, devices       int
}

func (c *cluster) measure(ctx context.Context, o options, compress bool, tag byte) (*result, error) {
	r := &result{compress: compress, devices: o.hosts * o.devices}
	dir, err := os.MkdirTemp("", "linkbytes-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// Nodes, tokens and Devices, before the cloud starts: its first
	// desired set of each node is the whole of it.
	nodes := make([]string, o.hosts)
	tokens := make([]string, o.hosts)
	names := make([][]string, o.hosts)
	for h := range o.hosts {
		nodes[h] = fmt.Sprintf("edge-%c-%02d", tag, h)
		for i := range o.devices {
			names[h] = append(names[h], fmt.Sprintf("thermo-%c%02d-%04d", tag, h, i))
		}
	}
	if err := benchutil.Parallel(16, o.hosts, func(h int) error {
		t, err := nodeauth.Ensure(ctx, c.kc, ns, nodes[h])
		tokens[h] = t
		return err
	}); err != nil {
		return nil, err
	}
	emptyNode := fmt.Sprintf("edge-%c-empty", tag)
	emptyToken, err := nodeauth.Ensure(ctx, c.kc, ns, emptyNode)
	if err != nil {
		return nil, err
	}
	var deviceBytes atomic.Int64
	if err := benchutil.Parallel(32, r.devices, func(i int) error {
		h, j := i/o.devices, i%o.devices
		if _, err := c.ke.DevicesV1beta1().Devices(ns).Create(ctx, device(names[h][j], nodes[h], i), metav1.CreateOptions{}); err != nil {
			return err
		}
		n, err := c.raw(ctx, "/apis/devices.kubeedge.io/v1beta1/namespaces/"+ns+"/devices/"+names[h][j])
		deviceBytes.Add(int64(n))
		return err
	}); err != nil {
		return nil, err
	}
	r.deviceJSON = float64(deviceBytes.Load()) / float64(r.devices)

	// wapper-cloud, with its pings held off (they are measured apart).
	cl, err := startCloud(ctx, c.cfg, dir, compress)
	if err != nil {
		return nil, err
	}
	defer cl.stop()
	px, err := newProxy(cl.addr)
	if err != nil {
		return nil, err
	}
	defer px.close()
	url := "https://" + px.addr()

	// Connection setup: a node with no devices.
	empty, err := startHost(ctx, url, emptyNode, emptyToken, cl.tls, filepath.Join(dir, "empty.db"), compress)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "the empty node to connect", empty.link.Connected); err != nil {
		return nil, err
	}
	r.setup = px.settle().per(1)
	empty.stop()
	if r.keepalive, err = keepalive(ctx, px, url, emptyNode, emptyToken, cl.tls, compress); err != nil {
		return nil, fmt.Errorf("keepalive: %w", err)
	}

	// Initial sync.
	start := px.settle()
	hosts := make([]*host, o.hosts)
	for h := range o.hosts {
		if hosts[h], err = startHost(ctx, url, nodes[h], tokens[h], cl.tls, filepath.Join(dir, nodes[h]+".db"), compress); err != nil {
			return nil, err
		}
		defer hosts[h].stop()
	}
	if err := waitFor(ctx, "every host to hold its devices", func() bool {
		for _, h := range hosts {
			if !h.sink.complete(o.devices) {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}
	r.initial = px.settle().sub(start).per(r.devices)

	// Twin reports of every device, twice: the first creates each
	// DeviceStatus, the second is the steady state.
	round := func(value string) (t traffic, received float64, err error) {
		start := px.settle()
		recv0, err := cl.reportsReceived(ctx)
		if err != nil {
			return traffic{}, 0, err
		}
		now := time.Now()
		for hi, h := range hosts {
			for _, n := range names[hi] {
				if err := h.link.ReportDevice(report(n, value, now)); err != nil {
					return traffic{}, 0, err
				}
			}
		}
		if err := waitFor(ctx, "every report acknowledged", func() bool { return pending(hosts) == 0 }); err != nil {
			return traffic{}, 0, err
		}
		t = px.settle().sub(start)
		recv1, err := cl.reportsReceived(ctx)
		return t, (recv1 - recv0) / float64(r.devices), err
	}
	t, recv, err := round("21.4")
	if err != nil {
		return nil, err
	}
	r.report1, r.received[0] = t.per(r.devices), recv
	if t, recv, err = round("21.5"); err != nil {
		return nil, err
	}
	r.report2, r.received[1] = t.per(r.devices), recv

	// One device at a time.
	var sum traffic
	recv0, err := cl.reportsReceived(ctx)
	if err != nil {
		return nil, err
	}
	for s := range o.samples {
		h, n := hosts[s%o.hosts], names[s%o.hosts][s/o.hosts%o.devices]
		start := px.settle()
		if err := h.link.ReportDevice(report(n, fmt.Sprintf("21.%d", s%10), time.Now())); err != nil {
			return nil, err
		}
		if err := waitFor(ctx, "the report acknowledged", func() bool { return h.link.Pending() == 0 }); err != nil {
			return nil, err
		}
		t := px.settle().sub(start)
		sum.up += t.up
		sum.down += t.down
	}
	r.single = sum.per(o.samples)
	recv1, err := cl.reportsReceived(ctx)
	if err != nil {
		return nil, err
	}
	r.received[2] = (recv1 - recv0) / float64(o.samples)

	// The DeviceStatus objects, as the API server serves them now.
	var statusBytes atomic.Int64
	if err := benchutil.Parallel(32, r.devices, func(i int) error {
		n, err := c.raw(ctx, "/apis/devices.kubeedge.io/v1beta1/namespaces/"+ns+"/devicestatuses/"+names[i/o.devices][i%o.devices])
		statusBytes.Add(int64(n))
		return err
	}); err != nil {
		return nil, fmt.Errorf("read DeviceStatus: %w", err)
	}
	r.statusJSON = float64(statusBytes.Load()) / float64(r.devices)

	// Desired-value changes, one device at a time.
	sum = traffic{}
	for s := range o.samples {
		hi := s % o.hosts
		h, n := hosts[hi], names[hi][s/o.hosts%o.devices]
		want := fmt.Sprintf("%d.5", 21+s%10)
		start := px.settle()
		if err := c.setDesired(ctx, n, want); err != nil {
			return nil, err
		}
		if err := waitFor(ctx, "the desired value delivered", func() bool { return h.sink.desired(n) == want }); err != nil {
			return nil, err
		}
		t := px.settle().sub(start)
		sum.up += t.up
		sum.down += t.down
	}
	r.change = sum.per(o.samples)

	// Reconnect after a partition, nothing changed.
	partition := func(during func() error, healed func() bool) (traffic, error) {
		px.settle()
		px.cut()
		if err := waitFor(ctx, "every host to see the link down", func() bool {
			for _, h := range hosts {
				if h.link.Connected() {
					return false
				}
			}
			return true
		}); err != nil {
			return traffic{}, err
		}
		if err := during(); err != nil {
			return traffic{}, err
		}
		start := px.counters()
		px.heal()
		if err := waitFor(ctx, "every host back", func() bool {
			for _, h := range hosts {
				if !h.link.Connected() {
					return false
				}
			}
			return healed()
		}); err != nil {
			return traffic{}, err
		}
		return px.settle().sub(start), nil
	}
	t, err = partition(func() error { return nil }, func() bool { return true })
	if err != nil {
		return nil, err
	}
	reconnect0 := t
	r.reconnect0, r.reconnect0Host = t.per(r.devices), t.per(o.hosts)

	// And with a share of every node's devices changed meanwhile.
	r.changedPerHost = int(math.Ceil(o.changed * float64(o.devices)))
	changed := func(h, k int) string { return names[h][o.devices-1-k] } // the last ones: not sampled above
	t, err = partition(func() error {
		if err := benchutil.Parallel(16, o.hosts*r.changedPerHost, func(i int) error {
			return c.setDesired(ctx, changed(i/r.changedPerHost, i%r.changedPerHost), "25")
		}); err != nil {
			return err
		}
		// Let the cloud's informers see the changes before the hosts are
		// back, so that the resync carries them (as after a long
		// partition); were they late, they would follow as a batch of
		// their own.
		time.Sleep(2 * time.Second)
		return nil
	}, func() bool {
		for hi, h := range hosts {
			for k := range r.changedPerHost {
				if h.sink.desired(changed(hi, k)) != "25" {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	r.reconnect, r.reconnectHost = t.per(r.devices), t.per(o.hosts)
	r.reconnectChanged = t.sub(reconnect0).per(o.hosts * r.changedPerHost)

	// And with a twin report of every device queued while cut off: the
	// outbox is flushed in batches.
	if recv0, err = cl.reportsReceived(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	t, err = partition(func() error {
		for hi, h := range hosts {
			for _, n := range names[hi] {
				if err := h.link.ReportDevice(report(n, "22.0", now)); err != nil {
					return err
				}
			}
		}
		return nil
	}, func() bool { return pending(hosts) == 0 })
	if err != nil {
		return nil, err
	}
	r.flushed = t.sub(reconnect0).per(r.devices)
	if recv1, err = cl.reportsReceived(ctx); err != nil {
		return nil, err
	}
	r.received[3] = (recv1 - recv0) / float64(r.devices)
	return r, nil
}

// setDesired patches a device's setpoint desired value.
func (c *cluster) setDesired(ctx context.Context, name, value string) error {
	patch := fmt.Appendf(nil, `[{"op":"replace","path":"/spec/properties/1/desired/value","value":%q}]`, value)
	_, err := c.ke.DevicesV1beta1().Devices(ns).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{})
	return err
}

// report is a device's twins and state as wapper-host reports them
// (host/cmd/wapper-host: kubeedgeTwin, deviceReport): each property's
// reported value with its type and a millisecond timestamp, the observed
// desired value of the writable one, the state and lastOnlineTime.
func report(name, temperature string, at time.Time) linkproto.DeviceReport {
	meta := map[string]string{"type": "float", "timestamp": fmt.Sprint(at.UnixMilli())}
	return linkproto.DeviceReport{Namespace: ns, Name: name, State: "ok", LastOnlineTime: at.UTC().Format(time.RFC3339),
		Twins: []devicesv1beta1.Twin{
			{PropertyName: "temperature", Reported: devicesv1beta1.TwinProperty{Value: temperature, Metadata: meta}},
			{PropertyName: "setpoint", Reported: devicesv1beta1.TwinProperty{Value: "20", Metadata: meta},
				ObservedDesired: devicesv1beta1.TwinProperty{Value: "20", Metadata: meta}},
		}}
}

func pending(hosts []*host) int {
	n := 0
	for _, h := range hosts {
		n += h.link.Pending()
	}
	return n
}

// keepalive measures one ping and its pong on a link session of node:
// the same frames whichever side pings (the host every --cloud-keepalive,
// the cloud every 20 s), compressed or not (control frames never are).
func keepalive(ctx context.Context, px *proxy, url, node, token string, tlsCfg *tls.Config, compress bool) (fig, error) {
	d := websocket.Dialer{TLSClientConfig: tlsCfg, Subprotocols: []string{linkproto.Subprotocol}, HandshakeTimeout: time.Minute, EnableCompression: compress}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set(linkproto.NodeHeader, node)
	conn, _, err := d.DialContext(ctx, "wss"+strings.TrimPrefix(url, "https")+linkproto.LinkPath, h)
	if err != nil {
		return fig{}, err
	}
	defer conn.Close()
	if err := conn.WriteJSON(linkproto.Message{Type: linkproto.TypeHello}); err != nil {
		return fig{}, err
	}
	pong := make(chan struct{}, 1)
	conn.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	go func() {
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	const n = 10
	start := px.settle()
	for range n {
		if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
			return fig{}, err
		}
		select {
		case <-pong:
		case <-time.After(30 * time.Second):
			return fig{}, errors.New("no pong in 30 s")
		}
	}
	return px.settle().sub(start).per(n), nil
}

// cloud is wapper-cloud in this process.
type cloud struct {
	addr   string
	tls    *tls.Config
	cancel context.CancelFunc
	done   chan error
}

func startCloud(ctx context.Context, cfg *rest.Config, dir string, compress bool) (*cloud, error) {
	ca := filepath.Join(dir, "ca.crt")
	ready := make(chan net.Addr, 1)
	sc := server.Config{
		Rest: cfg, Namespace: ns, Listen: "127.0.0.1:0", CAOut: ca, ModuleCacheDir: filepath.Join(dir, "modules"),
		Logger: log, Ready: func(a net.Addr) { ready <- a },
		// Pings are measured apart (keepalive), and held off here so
		// that none lands in another figure.
		Hub: hub.Options{Compression: compress, PingInterval: time.Hour},
	}
	sc.Status.QPS, sc.Status.Burst = 500, 500
	ctx, cancel := context.WithCancel(ctx)
	cl := &cloud{cancel: cancel, done: make(chan error, 1)}
	go func() { cl.done <- server.Run(ctx, sc) }()
	select {
	case a := <-ready:
		cl.addr = a.String()
	case err := <-cl.done:
		cancel()
		return nil, fmt.Errorf("wapper-cloud did not start: %w", err)
	case <-time.After(2 * time.Minute):
		cl.stop()
		return nil, errors.New("wapper-cloud did not start in 2 minutes")
	}
	b, err := os.ReadFile(ca)
	if err != nil {
		cl.stop()
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		cl.stop()
		return nil, errors.New("wapper-cloud's --ca-out holds no certificate")
	}
	cl.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return cl, nil
}

// reportsReceived reads wapper-cloud's count of the reports hosts sent
// (wapper_cloud_hub_reports_received_total), from its /metrics.
func (cl *cloud) reportsReceived(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+cl.addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cl.tls}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	const name = "wapper_cloud_hub_reports_received_total "
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in wapper-cloud's /metrics", strings.TrimSpace(name))
}

func (cl *cloud) stop() {
	cl.cancel()
	if err := <-cl.done; err != nil {
		log.Warn("wapper-cloud stopped", "err", err)
	}
}

// host is a real edge link with its own bbolt database.
type host struct {
	link   *cloudlink.Link
	sink   *sink
	db     *bolt.DB
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startHost(ctx context.Context, url, node, token string, tlsCfg *tls.Config, dbPath string, compress bool) (*host, error) {
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	h := &host{sink: &sink{values: map[string]string{}}, db: db, done: make(chan struct{})}
	h.link, err = cloudlink.New(cloudlink.Options{
		URL: url, Node: node, Token: token, TLS: tlsCfg, DB: db, Sink: h.sink, Compression: compress,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		// Pings are measured apart (keepalive), and held off here.
		Keepalive: time.Hour, Timeout: 3 * time.Hour,
		Logger: linkLog,
	})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	ctx, h.cancel = context.WithCancel(ctx)
	go func() {
		defer close(h.done)
		if err := h.link.Run(ctx); err != nil {
			log.Warn("link stopped", "node", node, "err", err)
		}
	}()
	return h, nil
}

func (h *host) stop() {
	h.once.Do(func() {
		h.cancel()
		<-h.done
		_ = h.db.Close()
	})
}

// sink is the host's device manager: it keeps the last set's counts and
// each device's setpoint desired value.
type sink struct {
	mu                      sync.Mutex
	devices, models, plugin int
	values                  map[string]string
}

func (s *sink) Sync(_ context.Context, set cloudlink.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices, s.models, s.plugin = len(set.Devices), len(set.Models), len(set.Plugins)
	for _, d := range set.Devices {
		for _, p := range d.Spec.Properties {
			if p.Name == "setpoint" {
				s.values[d.Name] = p.Desired.Value
			}
		}
	}
	return nil
}

func (s *sink) complete(devices int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devices == devices && s.models == 1 && s.plugin == 1
}

func (s *sink) desired(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[name]
}

// proxy relays TCP connections to the cloud and counts the bytes in each
// direction. cut closes every connection and refuses new ones (closing
// them before relaying a byte) until heal.
type proxy struct {
	ln       net.Listener
	target   string
	up, down atomic.Int64

	mu      sync.Mutex // guards blocked and conns
	blocked bool
	conns   map[net.Conn]struct{}
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		blocked := p.blocked
		p.mu.Unlock()
		if blocked {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock() // cut may have come while dialing
		if p.blocked {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, up, &p.up)
		go p.pipe(up, c, &p.down)
	}
}

// pipe copies src to dst, counting, and closes both when either ends.
func (p *proxy) pipe(src, dst net.Conn, n *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("proxy", "err", err)
			}
			src.Close()
			dst.Close()
			p.mu.Lock()
			delete(p.conns, src)
			delete(p.conns, dst)
			p.mu.Unlock()
			return
		}
	}
}

func (p *proxy) counters() traffic { return traffic{p.up.Load(), p.down.Load()} }

// settle waits until nothing has moved for quiet, and returns the
// counters.
func (p *proxy) settle() traffic {
	last, since := p.counters(), time.Now()
	for {
		time.Sleep(25 * time.Millisecond)
		cur := p.counters()
		if cur != last {
			last, since = cur, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return cur
		}
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	p.blocked = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (p *proxy) heal() {
	p.mu.Lock()
	p.blocked = false
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.cut()
}

func waitFor(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// printFigures writes the figures of both runs side by side.
func printFigures(o options, c *cluster, plain, deflate *result) {
	fmt.Printf("wapper link, bytes on the wire: %d hosts x %d devices (2 properties each), each mode on fresh nodes, %d cores\n", o.hosts, o.devices, benchutil.NumCPU())
	fmt.Println("  real kube-apiserver + etcd, wapper-cloud in process (server.Run, DeviceStatus writes), real host/cloudlink.Link with bbolt")
	fmt.Println("  counted: TCP payload both ways (TLS records; not TCP/IP headers) at a proxy between the hosts and the cloud")
	fmt.Printf("  whole objects, JSON as the API server serves them (with managedFields), mean per device: Device %.0f B, DeviceStatus %.0f B;\n",
		plain.deviceJSON, plain.statusJSON)
	fmt.Printf("  per node once: DeviceModel %d B, MapperPlugin %d B. up = host -> cloud, down = cloud -> host; /whole = total / whole object(s)\n",
		c.modelJSON, c.pluginJSON)
	relist := plain.deviceJSON*float64(o.devices) + float64(c.modelJSON+c.pluginJSON)
	pct := int(math.Round(100 * o.changed))
	fmt.Printf("\n  %-46s %8s | %-33s | %-33s | %s\n", "bytes", "whole", "      uncompressed", "    permessage-deflate", "deflate/")
	fmt.Printf("  %-46s %8s | %7s %7s %7s %9s | %7s %7s %7s %9s | %s\n", "", "", "up", "down", "total", "/whole", "up", "down", "total", "/whole", "uncompr.")
	row := func(label string, whole float64, p, d fig) {
		w, rp, rd := "-", "-", "-"
		if whole > 0 {
			w, rp, rd = fmt.Sprintf("%.0f", whole), fmt.Sprintf("%.3f", p.total()/whole), fmt.Sprintf("%.3f", d.total()/whole)
		}
		fmt.Printf("  %-46s %8s | %7.0f %7.0f %7.0f %9s | %7.0f %7.0f %7.0f %9s | %.3f\n", label, w,
			p.up, p.down, p.total(), rp, d.up, d.down, d.total(), rd, d.total()/p.total())
	}
	row("connection setup (TLS, upgrade, empty hello)", 0, plain.setup, deflate.setup)
	row("keepalive, one ping and its pong", 0, plain.keepalive, deflate.keepalive)
	row("initial sync, per device", plain.deviceJSON, plain.initial, deflate.initial)
	row("twin report, first (creates), per device", plain.statusJSON, plain.report1, deflate.report1)
	row("twin report, steady, per device", plain.statusJSON, plain.report2, deflate.report2)
	row("twin report, one device alone", plain.statusJSON, plain.single, deflate.single)
	row("twin reports queued while cut off, per device", plain.statusJSON, plain.flushed, deflate.flushed)
	row("desired-value change, one device", plain.deviceJSON, plain.change, deflate.change)
	row("reconnect, nothing changed, per host", relist, plain.reconnect0Host, deflate.reconnect0Host)
	row("reconnect, nothing changed, per device", plain.deviceJSON, plain.reconnect0, deflate.reconnect0)
	row(fmt.Sprintf("reconnect, %d%% changed, per host", pct), relist, plain.reconnectHost, deflate.reconnectHost)
	row(fmt.Sprintf("reconnect, %d%% changed, per device", pct), plain.deviceJSON, plain.reconnect, deflate.reconnect)
	row(fmt.Sprintf("reconnect, %d%% changed, per changed device", pct), plain.deviceJSON, plain.reconnectChanged, deflate.reconnectChanged)
	fmt.Printf("\n  initial sync: a host with an empty store, including its connection setup and its DeviceModel and MapperPlugin;\n")
	fmt.Printf("  twin report: 2 twins with type and timestamp, the setpoint's observed desired value, state ok and lastOnlineTime,\n")
	fmt.Printf("  queued one device after another as wapper-host does; down = the cloud's acknowledgements (after the DeviceStatus write);\n")
	fmt.Printf("  queued while cut off, and per changed device: beyond the bytes of the reconnect with nothing changed;\n")
	fmt.Printf("  per host, whole = the node's Devices, DeviceModel and MapperPlugin relisted (%.0f B); %d of %d devices changed per host;\n", relist, plain.changedPerHost, o.devices)
	fmt.Printf("  one device alone and desired changes: mean of %d, one at a time; pings held off during the phases (measured apart).\n", o.samples)
	for _, r := range []*result{plain, deflate} {
		mode := "uncompressed"
		if r.compress {
			mode = "deflate"
		}
		fmt.Printf("  reports the cloud received per report queued, %s: first %.2f, steady %.2f, alone %.2f, queued while cut off %.2f\n",
			mode, r.received[0], r.received[1], r.received[2], r.received[3])
	}
}
