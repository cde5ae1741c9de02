package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"wapper.dev/wapper/internal/hostproc"
	"wapper.dev/wapper/internal/testenv"
)

// toxiproxy is a running toxiproxy-server (hack/toxiproxy), driven through
// its HTTP API.
type toxiproxy struct {
	t   testing.TB
	api string
}

// startToxiproxy runs the toxiproxy-server that
// hack/toxiproxy/ensure-toxiproxy.sh built; a missing one skips the test,
// or fails it under CI=true.
func startToxiproxy(t testing.TB) *toxiproxy {
	t.Helper()
	out, err := exec.Command(filepath.Join(testenv.Root(), "hack/toxiproxy/ensure-toxiproxy.sh"), "--no-install").Output()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) == 0 {
		testenv.Missing(t, "toxiproxy-server", "run hack/toxiproxy/ensure-toxiproxy.sh (make test runs it)")
	}
	port := freePort(t)
	hostproc.Start(t, lines[len(lines)-1], "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	x := &toxiproxy{t: t, api: "http://127.0.0.1:" + strconv.Itoa(port)}
	saEventually(t, "toxiproxy-server answers /version", 30*time.Second, func() error {
		return x.call("GET", "/version", nil)
	})
	return x
}

func (x *toxiproxy) call(method, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, x.api+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("toxiproxy %s %s: %s: %s", method, path, resp.Status, b)
	}
	return nil
}

func (x *toxiproxy) must(method, path string, body any) {
	x.t.Helper()
	if err := x.call(method, path, body); err != nil {
		x.t.Fatal(err)
	}
}

// proxy creates a proxy listening on a free port towards upstream and
// returns its address.
func (x *toxiproxy) proxy(name, upstream string) string {
	addr := saPort(x.t)
	x.must("POST", "/proxies", map[string]any{"name": name, "listen": addr, "upstream": upstream, "enabled": true})
	return addr
}

// toxic adds a toxic to a proxy's stream ("upstream": host → cloud,
// "downstream": cloud → host), on every connection.
func (x *toxiproxy) toxic(proxy, name, typ, stream string, attrs map[string]any) {
	x.must("POST", "/proxies/"+proxy+"/toxics", map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs})
}

func (x *toxiproxy) untoxic(proxy, name string) {
	x.must("DELETE", "/proxies/"+proxy+"/toxics/"+name, nil)
}

// enable opens or cuts a proxy: a disabled one closes its connections and
// stops listening, so the host's dials are refused (a full partition).
func (x *toxiproxy) enable(proxy string, on bool) {
	x.must("POST", "/proxies/"+proxy, map[string]any{"enabled": on})
}

// Fault-test sizes: 10 hosts with 50 Devices each.
const (
	faultHosts      = 10
	faultPerHost    = 50
	faultChanged    = 10 // devices 0..9 of every node get new desired values in each round
	faultStaticFrom = 15 // devices 15.. of a node never change: their counters must never go back
)

func faultNode(i int) string       { return fmt.Sprintf("node-%d", i) }
func faultName(node, j int) string { return fmt.Sprintf("n%d-d%02d", node, j) }
func faultIndex(name string) (n, j int) {
	fmt.Sscanf(name, "n%d-d%d", &n, &j)
	return n, j
}

func faultDevice(ns, name, node string, setpoint int) *devicesv1beta1.Device {
	cfg := func(kind string) *devicesv1beta1.CustomizedValue {
		return &devicesv1beta1.CustomizedValue{Data: map[string]any{"kind": kind}}
	}
	return &devicesv1beta1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: devicesv1beta1.DeviceSpec{
			NodeName:       node,
			DeviceModelRef: &corev1.LocalObjectReference{Name: "thermo"},
			Protocol:       devicesv1beta1.ProtocolConfig{ProtocolName: "virtual"},
			Properties: []devicesv1beta1.DeviceProperty{
				{Name: "temperature", CollectCycle: 10000, ReportCycle: 10000,
					Visitors: devicesv1beta1.VisitorConfig{ProtocolName: "virtual", ConfigData: cfg("counter")}},
				{Name: "setpoint", CollectCycle: 10000, ReportCycle: 10000,
					Desired:  devicesv1beta1.TwinProperty{Value: strconv.Itoa(setpoint)},
					Visitors: devicesv1beta1.VisitorConfig{ProtocolName: "virtual", ConfigData: cfg("setpoint")}},
			},
		},
	}
}

// statusWatch follows every DeviceStatus and records each device's
// reported values in the order the API server stored them, so that a
// report applied twice or out of order (a value going back) shows.
type statusWatch struct {
	mu   sync.Mutex
	temp map[string][]int // device → temperature values seen, in order
	set  map[string][]int // device → setpoint values seen, in order
}

func watchStatuses(t *testing.T, c *cloudEnv) *statusWatch {
	w := &statusWatch{temp: map[string][]int{}, set: map[string][]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		rv := ""
		for ctx.Err() == nil {
			wi, err := c.ke.DevicesV1beta1().DeviceStatuses(c.ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			for ev := range wi.ResultChan() {
				ds, ok := ev.Object.(*devicesv1beta1.DeviceStatus)
				if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
					continue
				}
				rv = ds.ResourceVersion
				w.mu.Lock()
				for _, tw := range ds.Status.Twins {
					v, err := strconv.Atoi(tw.Reported.Value)
					if err != nil {
						continue
					}
					m := w.temp
					if tw.PropertyName == "setpoint" {
						m = w.set
					}
					if s := m[ds.Name]; len(s) == 0 || s[len(s)-1] != v {
						m[ds.Name] = append(s, v)
					}
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// regressions lists the devices whose reported value went back in the
// cluster: temperature (a counter) on the devices accepted by static, the
// setpoint (only ever raised) on all.
func (w *statusWatch) regressions(static func(string) bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var bad []string
	check := func(what string, m map[string][]int, ok func(string) bool) {
		for dev, s := range m {
			if !ok(dev) {
				continue
			}
			for i := 1; i < len(s); i++ {
				if s[i] < s[i-1] {
					bad = append(bad, fmt.Sprintf("%s %s: %v", dev, what, s))
					break
				}
			}
		}
	}
	check("temperature", w.temp, static)
	check("setpoint", w.set, func(string) bool { return true })
	sort.Strings(bad)
	return bad
}

// hostMetric reads one sample from a host's /metrics (0 when absent).
func hostMetric(h *saHost, series string) float64 {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + h.http + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sample(string(b), series)
}

// faultFleet is the state of TestCloudFaults: the cluster, the proxies, the
// hosts, and what each node and device should end up with.
type faultFleet struct {
	t     *testing.T
	c     *cloudEnv
	x     *toxiproxy
	hosts []*saHost
	w     *statusWatch

	nodeOf  map[string]int // device → node index (the desired set)
	desired map[string]int // device → its latest desired setpoint
	touched map[string]bool
	raised  int // desired values set after the first
}

func (f *faultFleet) proxy(i int) string { return "link-" + faultNode(i) }

func (f *faultFleet) create(name string, node int) {
	f.t.Helper()
	if _, err := f.c.ke.DevicesV1beta1().Devices(f.c.ns).Create(context.Background(), faultDevice(f.c.ns, name, faultNode(node), f.desired[name]), metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.nodeOf[name] = node
}

// update changes a Device in the cluster (its desired setpoint, its node).
func (f *faultFleet) update(name string) {
	f.t.Helper()
	devs := f.c.ke.DevicesV1beta1().Devices(f.c.ns)
	for {
		d, err := devs.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		want := faultDevice(f.c.ns, name, faultNode(f.nodeOf[name]), f.desired[name])
		d.Spec = want.Spec
		if _, err = devs.Update(context.Background(), d, metav1.UpdateOptions{}); err == nil {
			return
		} else if !apierrors.IsConflict(err) {
			f.t.Fatal(err)
		}
	}
}

func (f *faultFleet) remove(name string) {
	f.t.Helper()
	if err := f.c.ke.DevicesV1beta1().Devices(f.c.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
	delete(f.nodeOf, name)
	delete(f.desired, name)
}

// raise sets a new, higher desired setpoint on the first faultChanged
// devices of every node.
func (f *faultFleet) raise() {
	f.t.Helper()
	for name := range f.nodeOf {
		if _, j := faultIndex(name); j < faultChanged {
			f.desired[name]++
			f.touched[name] = true
			f.raised++
			f.update(name)
		}
	}
}

// converged says what still differs from the desired state: each host runs
// exactly its node's devices, every desired setpoint is applied on the
// device and reported in the cluster, and cond (if any) holds for the
// DeviceStatus objects.
func (f *faultFleet) converged(cond func(map[string]devicesv1beta1.DeviceStatus) error) error {
	want := make([]map[string]bool, len(f.hosts))
	for i := range want {
		want[i] = map[string]bool{}
	}
	for name, node := range f.nodeOf {
		want[node][f.c.ns+"/"+name] = true
	}
	for i, h := range f.hosts {
		var resp struct {
			Devices []saDevice `json:"devices"`
		}
		if _, err := h.get("/api/v1/devices", &resp); err != nil {
			return fmt.Errorf("%s: %v", faultNode(i), err)
		}
		if len(resp.Devices) != len(want[i]) {
			return fmt.Errorf("%s runs %d devices, want %d", faultNode(i), len(resp.Devices), len(want[i]))
		}
		for _, d := range resp.Devices {
			key := d.Namespace + "/" + d.Name
			if !want[i][key] {
				return fmt.Errorf("%s runs %s, which is not in its desired set", faultNode(i), key)
			}
			if d.Phase != "Running" || d.Source != "cloud" {
				return fmt.Errorf("%s: %s is %s (%s) from %q", faultNode(i), key, d.Phase, d.Reason, d.Source)
			}
			tw, exp := d.twin("setpoint"), strconv.Itoa(f.desired[d.Name])
			if tw.Desired != exp || tw.AppliedSeq < tw.DesiredSeq || tw.Reported != exp {
				return fmt.Errorf("%s: %s setpoint desired %q (seq %d, applied %d), reported %q; want %s",
					faultNode(i), key, tw.Desired, tw.DesiredSeq, tw.AppliedSeq, tw.Reported, exp)
			}
		}
	}
	list, err := f.c.ke.DevicesV1beta1().DeviceStatuses(f.c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	byName := map[string]devicesv1beta1.DeviceStatus{}
	for _, ds := range list.Items {
		byName[ds.Name] = ds
	}
	for name := range f.touched {
		if _, ok := f.nodeOf[name]; !ok {
			continue
		}
		exp := strconv.Itoa(f.desired[name])
		got := ""
		for _, tw := range byName[name].Status.Twins {
			if tw.PropertyName == "setpoint" {
				got = tw.Reported.Value
			}
		}
		if got != exp {
			return fmt.Errorf("DeviceStatus %s: setpoint reported %q, want %s", name, got, exp)
		}
	}
	if cond != nil {
		return cond(byName)
	}
	return nil
}

// waitConverged polls converged and returns how long it took; it fails the
// test after within (a generous bound, not a speed requirement).
func (f *faultFleet) waitConverged(what string, within time.Duration, cond func(map[string]devicesv1beta1.DeviceStatus) error) time.Duration {
	f.t.Helper()
	start := time.Now()
	var err error
	said := start
	for time.Since(start) < within {
		if err = f.converged(cond); err == nil {
			d := time.Since(start).Round(100 * time.Millisecond)
			f.t.Logf("measured: %s in %v", what, d)
			return d
		}
		if time.Since(said) > 30*time.Second {
			f.t.Logf("after %v, still waiting: %v", time.Since(start).Round(time.Second), err)
			said = time.Now()
		}
		time.Sleep(time.Second)
	}
	f.t.Fatalf("%s: not converged after %v: %v", what, within, err)
	return 0
}

// checkApplied checks, from every host's log, that each device's desired
// setpoints were applied in the order they were set and none twice:
// values only ever rise, so the applied values must rise strictly. A value
// superseded while the link was down may be skipped (the link carries the
// desired state, not each change), but never applied after a newer one.
func (f *faultFleet) checkApplied() (applied int) {
	f.t.Helper()
	for i, h := range f.hosts {
		seq := map[string][]int{}
		for _, rec := range h.Logged("desired value applied") {
			if rec["property"] != "setpoint" {
				continue
			}
			dev, _ := rec["device"].(string)
			val, _ := rec["value"].(string)
			v, err := strconv.Atoi(val)
			if err != nil {
				f.t.Errorf("%s: applied %q on %s", faultNode(i), val, dev)
				continue
			}
			seq[dev] = append(seq[dev], v)
		}
		for dev, s := range seq {
			applied += len(s) - 1 // the first is the Device's initial value
			for k := 1; k < len(s); k++ {
				if s[k] <= s[k-1] {
					f.t.Errorf("%s: %s setpoint applied out of order or twice: %v", faultNode(i), dev, s)
					break
				}
			}
			name := strings.TrimPrefix(dev, f.c.ns+"/")
			if node, ok := f.nodeOf[name]; ok && node == i && s[len(s)-1] != f.desired[name] {
				f.t.Errorf("%s: %s last applied setpoint %d, want %d (%v)", faultNode(i), dev, s[len(s)-1], f.desired[name], s)
			}
		}
	}
	return applied
}

// checkHealed checks what the cut hosts applied from the partition on:
// nothing while cut off, and after the heal at most one value per change
// set (the newest; older ones were superseded). It returns how many
// devices applied how many values after the heal.
func (f *faultFleet) checkHealed(cut []int, t0, healed time.Time) map[int]int {
	f.t.Helper()
	hist := map[int]int{}
	for _, i := range cut {
		per := map[string]int{}
		for _, rec := range f.hosts[i].Logged("desired value applied") {
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
			if rec["property"] != "setpoint" || at.Before(t0.Add(2*time.Second)) {
				continue
			}
			if at.Before(healed) {
				f.t.Errorf("%s applied %v on %v while cut off (at %s)", faultNode(i), rec["value"], rec["device"], at.Format(time.RFC3339Nano))
			}
			per[fmt.Sprint(rec["device"])]++
		}
		for _, n := range per {
			hist[n]++
		}
	}
	return hist
}

// TestCloudFaults puts a real toxiproxy-server between each of 10 real
// wapper-host processes and a real wapper-cloud (real kube-apiserver and
// etcd), 500 Devices over them, and drives the link through latency with
// jitter, a bandwidth cap, periodic resets, a half-open link and a 60 s
// partition of two nodes, once with the cloud up and once with it killed
// and restarted during the faults (issue 19). It asserts convergence within
// generous bounds only and logs the times it measured.
func TestCloudFaults(t *testing.T) {
	testenv.Slow(t, "10 hosts and 500 devices through two 60 s partitions, about 5 minutes on 2 cores")
	began := time.Now()
	c := newCloudEnv(t)
	c.start("--status-flush", "1s")
	x := startToxiproxy(t)
	c.apply(cloudPlugins)

	f := &faultFleet{t: t, c: c, x: x, nodeOf: map[string]int{}, desired: map[string]int{}, touched: map[string]bool{}}
	for i := 0; i < faultHosts; i++ {
		p := f.proxy(i)
		addr := x.proxy(p, c.addr)
		// Every link, all the time: 300 ms ± 200 ms each way, and at most
		// 16 KB/s each way (toxiproxy's rate is in KB/s).
		for _, s := range []string{"upstream", "downstream"} {
			x.toxic(p, "latency-"+s, "latency", s, map[string]any{"latency": 300, "jitter": 200})
			x.toxic(p, "bandwidth-"+s, "bandwidth", s, map[string]any{"rate": 16})
		}
		// Liveness shortened from 10 s/30 s/10 s so that a dead link is
		// seen well inside the 60 s partition and the test stays short.
		f.hosts = append(f.hosts, saStart(t, t.TempDir(), "--cloud", "https://"+addr, "--node", faultNode(i),
			"--token-file", c.token(faultNode(i)), "--ca-file", c.ca, "--log-level", "info",
			"--cloud-keepalive", "3s", "--cloud-timeout", "12s", "--cloud-max-backoff", "5s"))
	}
	f.w = watchStatuses(t, c)

	start := time.Now()
	for i := 0; i < faultHosts; i++ {
		for j := 0; j < faultPerHost; j++ {
			f.create(faultName(i, j), i)
		}
	}
	t.Logf("measured: %d Devices created in %v", len(f.nodeOf), time.Since(start).Round(100*time.Millisecond))
	f.waitConverged("initial sync of 500 devices through latency and the bandwidth cap", 5*time.Minute, nil)

	static := func(name string) bool {
		_, j := faultIndex(name)
		_, ok := f.nodeOf[name]
		return ok && j >= faultStaticFrom
	}

	// The second round starts from the state the first left: only after
	// it passed.
	if t.Run("cloud up", func(t *testing.T) {
		f.t = t
		f.round(t, 1, 8, 9, false, static)
	}) {
		t.Run("cloud restarted", func(t *testing.T) {
			f.t = t
			f.round(t, 2, 6, 7, true, static)
		})
	}
	f.t = t
	if bad := f.w.regressions(static); len(bad) > 0 {
		t.Errorf("reported values went back in the cluster (a stale or repeated report written):\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("measured: whole test %v", time.Since(began).Round(time.Second))
}

// round runs one fault round: resets on nodes 2 and 3, a half-open link on
// node 4 for 30 s, nodes cutA and cutB cut off for 60 s while their
// Devices change; with restart, wapper-cloud is killed 25 s into the
// partition and started again 10 s later.
func (f *faultFleet) round(t *testing.T, r, cutA, cutB int, restart bool, static func(string) bool) {
	c, x := f.c, f.x
	connects := func(i int) float64 { return hostMetric(f.hosts[i], "wapper_cloudlink_connects_total") }
	timeouts := func(i int) float64 {
		return hostMetric(f.hosts[i], `wapper_cloudlink_disconnects_total{reason="timeout"}`)
	}
	resetBefore := []float64{connects(2), connects(3)}
	timeoutBefore := timeouts(4)

	// Resets: every 10 s, the links of nodes 2 and 3 are reset (TCP RST)
	// at their next byte for 3.5 s, then left alone for 6.5 s, all through
	// the partition.
	stopResets, resetsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(resetsDone)
		for {
			for _, i := range []int{2, 3} {
				x.call("POST", "/proxies/"+f.proxy(i)+"/toxics", map[string]any{"name": "reset", "type": "reset_peer", "stream": "upstream", "toxicity": 1.0, "attributes": map[string]any{"timeout": 0}})
			}
			pause := time.After(3500 * time.Millisecond)
			select {
			case <-stopResets:
			case <-pause:
			}
			for _, i := range []int{2, 3} {
				x.call("DELETE", "/proxies/"+f.proxy(i)+"/toxics/reset", nil)
			}
			select {
			case <-stopResets:
				return
			case <-time.After(6500 * time.Millisecond):
			}
		}
	}()
	defer func() {
		select {
		case <-stopResets:
		default:
			close(stopResets)
		}
		<-resetsDone
	}()
	// Half-open: node 4's link drops everything and closes nothing.
	x.toxic(f.proxy(4), "half-open", "timeout", "downstream", map[string]any{"timeout": 0})
	x.toxic(f.proxy(4), "half-open-up", "timeout", "upstream", map[string]any{"timeout": 0})
	// Partition.
	t0 := time.Now()
	x.enable(f.proxy(cutA), false)
	x.enable(f.proxy(cutB), false)
	t.Logf("round %d: nodes %d and %d cut off, resets on 2 and 3, half-open link on 4", r, cutA, cutB)
	at := func(d time.Duration) {
		if w := time.Until(t0.Add(d)); w > 0 {
			time.Sleep(w)
		}
	}

	// Desired values change three times during the partition, on every
	// node; the desired sets of the cut nodes change too.
	at(5 * time.Second)
	f.raise()
	gone := []string{faultName(cutA, 10), faultName(cutA, 11)}
	for _, n := range gone {
		f.remove(n)
	}
	moved := faultName(cutA, 12)
	f.nodeOf[moved] = 0
	f.update(moved)
	added := []string{fmt.Sprintf("n%d-r%d-a", cutB, r), fmt.Sprintf("n%d-r%d-b", cutB, r)}
	for _, n := range added {
		f.create(n, cutB)
	}
	at(20 * time.Second)
	f.raise()
	if restart {
		at(25 * time.Second)
		c.kill9()
		t.Logf("round %d: wapper-cloud killed", r)
	}
	at(30 * time.Second)
	x.untoxic(f.proxy(4), "half-open")
	x.untoxic(f.proxy(4), "half-open-up")
	if restart {
		at(35 * time.Second)
		c.start("--status-flush", "1s")
		t.Logf("round %d: wapper-cloud started again, %v after the kill", r, time.Since(t0.Add(25*time.Second)).Round(100*time.Millisecond))
	}
	at(40 * time.Second)
	f.raise()

	// Just before the partition heals: what the cut hosts have read (the
	// counters and the time of their last state report) must reach the
	// cluster afterwards.
	at(58 * time.Second)
	floor := map[string]int{}
	outbox := 0.0
	for _, i := range []int{cutA, cutB} {
		outbox += hostMetric(f.hosts[i], "wapper_cloudlink_outbox")
		for key, d := range f.hosts[i].devices() {
			name := strings.TrimPrefix(key, c.ns+"/")
			if !static(name) {
				continue
			}
			if v, err := strconv.Atoi(d.twin("temperature").Reported); err == nil {
				floor[name] = v
			}
		}
	}
	t.Logf("round %d: %v outbox entries on the cut hosts before the heal; %d counters to follow", r, outbox, len(floor))
	stateFloor := t0.Add(10 * time.Second)

	at(60 * time.Second)
	x.enable(f.proxy(cutA), true)
	x.enable(f.proxy(cutB), true)
	close(stopResets)
	<-resetsDone
	healed := time.Now()
	t.Logf("round %d: partition healed after %v; resets off (latency and bandwidth stay)", r, healed.Sub(t0).Round(100*time.Millisecond))
	saEventually(t, "the cut hosts connected again", 3*time.Minute, func() error {
		for _, i := range []int{cutA, cutB} {
			if hostMetric(f.hosts[i], "wapper_cloudlink_connected") != 1 {
				return fmt.Errorf("%s not connected", faultNode(i))
			}
		}
		return nil
	})
	t.Logf("measured: round %d: cut hosts connected again %v after the heal", r, time.Since(healed).Round(100*time.Millisecond))

	f.waitConverged(fmt.Sprintf("round %d: every host on exactly its desired set, every desired value applied and reported, partition reports in the cluster", r),
		5*time.Minute, func(byName map[string]devicesv1beta1.DeviceStatus) error {
			for name, v := range floor {
				ds := byName[name]
				got := -1
				for _, tw := range ds.Status.Twins {
					if tw.PropertyName == "temperature" {
						got, _ = strconv.Atoi(tw.Reported.Value)
					}
				}
				if got < v {
					return fmt.Errorf("DeviceStatus %s: temperature %d, the host had read %d during the partition", name, got, v)
				}
				lo, err := time.Parse(time.RFC3339, ds.Status.LastOnlineTime)
				if err != nil || lo.Before(stateFloor) {
					return fmt.Errorf("DeviceStatus %s: lastOnlineTime %q, want a state report from the partition (after %s)", name, ds.Status.LastOnlineTime, stateFloor.Format(time.RFC3339))
				}
			}
			return nil
		})
	t.Logf("measured: round %d: converged %v after the heal", r, time.Since(healed).Round(100*time.Millisecond))

	applied := f.checkApplied()
	t.Logf("round %d: %d desired values set after the initial ones so far, %d applied (superseded ones skipped), none twice or out of order", r, f.raised, applied)
	t.Logf("round %d: devices of the cut nodes by number of desired values applied after the heal: %v", r, f.checkHealed([]int{cutA, cutB}, t0, healed))
	if n := connects(2) + connects(3) - resetBefore[0] - resetBefore[1]; n < 2 {
		t.Errorf("the resetting links on nodes 2 and 3 connected only %v times in the round", n)
	} else {
		t.Logf("round %d: nodes 2 and 3 reconnected %v times under resets", r, n)
	}
	if n := timeouts(4) - timeoutBefore; n < 1 {
		t.Errorf("node 4 never dropped its half-open link for a timeout")
	}
	if bad := f.w.regressions(static); len(bad) > 0 {
		t.Errorf("reported values went back in the cluster:\n%s", strings.Join(bad, "\n"))
	}
}
