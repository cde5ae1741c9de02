// Command cloudbench measures one wapper-cloud serving many hosts
// (`make bench-cloud`, part of `make bench`).
//
// It starts a real etcd and kube-apiserver (internal/k8stest), the real
// bin/wapper-cloud as a process, and -hosts lightweight link clients in
// this process (the linkproto protocol only: hello, acknowledge every
// batch, report). Once every client is connected it creates -devices
// Devices spread evenly over the clients' nodes (one DeviceModel and one
// MapperPlugin shared by all), and reports:
//
//   - the time from the first create until every client has acknowledged
//     all of its devices (and the time the creates alone took);
//   - wapper-cloud's CPU time over that interval, and its RSS (current and
//     peak);
//   - the status write rate: every client then reports a twin for each of
//     its devices, and the time until the cloud has acknowledged them all
//     (each acknowledgement means the DeviceStatus is written);
//   - the baseline, measured in the same run against the same
//     kube-apiserver once wapper-cloud is done: a plain client-go loop (64
//     workers, no client rate limit) creating as many DeviceStatus objects
//     of the same shape in another namespace, then merge-patching each
//     one's status, and wapper-cloud's status write rates as ratios to it.
//     wapper-cloud is also bounded by its --status-qps (-status-qps here),
//     which the output names.
//
// With -reconnect (`make bench-reconnect`) it measures the reconnect
// curve instead: -hosts (10,000 by default) simulated hosts that keep
// their links up as wapper-host does (internal/backoff), while the
// wapper-cloud replica they are on stops with another one up, then while
// the cloud restarts; see runReconnect.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/nodeauth"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/deploy/crds"
	"wapper.dev/wapper/internal/backoff"
	"wapper.dev/wapper/internal/benchutil"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
)

func main() {
	hosts := flag.Int("hosts", 1000, "simulated hosts (link clients)")
	devices := flag.Int("devices", 10000, "Devices spread over the hosts")
	statusQPS := flag.Int("status-qps", 500, "wapper-cloud --status-qps")
	reconnect := flag.Bool("reconnect", false, "measure the hosts' reconnect curve when a replica stops and when the cloud restarts, instead (make bench-reconnect; -hosts defaults to 10000 then)")
	maxBackoff := flag.Duration("max-backoff", backoff.DefaultMax, "with -reconnect: the hosts' --cloud-max-backoff")
	noSpread := flag.Bool("no-spread", false, "with -reconnect: no spread window after the cloud closed the links (the policy before issue 19), for comparison")
	bucket := flag.Duration("bucket", 500*time.Millisecond, "with -reconnect: the width of the curve's buckets")
	flag.Parse()
	var err error
	if *reconnect {
		n := *hosts
		if !isSet("hosts") {
			n = 10000
		}
		policy := backoff.Backoff{Min: backoff.DefaultMin, Max: *maxBackoff, Spread: *maxBackoff}
		if *noSpread {
			policy.Spread = 0
		}
		err = runReconnect(n, *statusQPS, policy, *bucket)
	} else {
		err = run(*hosts, *devices, *statusQPS)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloudbench:", err)
		os.Exit(1)
	}
}

// isSet reports whether flag name was given.
func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// ns is the namespace of the nodes and their objects.
const ns = "bench"

func run(nHosts, nDevices, statusQPS int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	env, tokens, err := startEnv(ctx, ns, nHosts)
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg := env.Config()
	kc := kubernetes.NewForConfigOrDie(cfg)
	ke := kubeedge.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)

	// wapper-cloud as a real process.
	dir, err := os.MkdirTemp("", "cloudbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd, tlsCfg, err := startCloud(ctx, env.Kubeconfig, ns, addr, dir, "wapper-cloud", statusQPS)
	if err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// Connect the clients.
	per := make([]int, nHosts)
	for i := range nDevices {
		per[i%nHosts]++
	}
	clients := make([]*simHost, nHosts)
	if err := benchutil.Parallel(64, nHosts, func(i int) error {
		c, err := dialHost(ctx, addr, tlsCfg, node(i), tokens[i], per[i])
		clients[i] = c
		return err
	}); err != nil {
		return err
	}
	defer func() {
		for _, c := range clients {
			c.conn.Close()
		}
	}()
	fmt.Printf("wapper-cloud: %d simulated hosts connected, creating %d Devices\n", nHosts, nDevices)
	cpu0, _ := procCPU(cmd.Process.Pid)

	// The objects.
	start := time.Now()
	plugin := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": mappersv1alpha1.SchemeGroupVersion.String(), "kind": "MapperPlugin",
		"metadata": map[string]any{"name": "virtual"},
		"spec":     map[string]any{"protocols": []any{"virtual"}, "module": map[string]any{"file": "virtual.wasm"}},
	}}
	if _, err := dyn.Resource(mappersv1alpha1.GroupVersionResource).Create(ctx, plugin, metav1.CreateOptions{}); err != nil {
		return err
	}
	model := &devicesv1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Name: "thermo", Namespace: ns}, Spec: devicesv1beta1.DeviceModelSpec{
		Protocol: "virtual", Properties: []devicesv1beta1.ModelProperty{{Name: "temperature", Type: "INT", AccessMode: "ReadOnly"}}}}
	if _, err := ke.DevicesV1beta1().DeviceModels(ns).Create(ctx, model, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := benchutil.Parallel(64, nDevices, func(i int) error {
		d := &devicesv1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("d%05d", i), Namespace: ns}, Spec: devicesv1beta1.DeviceSpec{
			NodeName: node(i % nHosts), DeviceModelRef: &corev1.LocalObjectReference{Name: "thermo"},
			Protocol: devicesv1beta1.ProtocolConfig{ProtocolName: "virtual"},
			Properties: []devicesv1beta1.DeviceProperty{{Name: "temperature", Visitors: devicesv1beta1.VisitorConfig{ProtocolName: "virtual",
				ConfigData: &devicesv1beta1.CustomizedValue{Data: map[string]any{"kind": "counter"}}}}},
		}}
		_, err := ke.DevicesV1beta1().Devices(ns).Create(ctx, d, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	created := time.Since(start)
	for _, c := range clients {
		select {
		case <-c.complete:
		case <-ctx.Done():
			return fmt.Errorf("not every host acknowledged its devices: %w", ctx.Err())
		}
	}
	converged := time.Since(start)
	cpu1, _ := procCPU(cmd.Process.Pid)
	rss, hwm := procRSS(cmd.Process.Pid)

	// Upstream: one twin report per device.
	upStart := time.Now()
	for i, c := range clients {
		if err := c.reportAll(ns, i, nHosts); err != nil {
			return err
		}
	}
	for _, c := range clients {
		select {
		case <-c.round():
		case <-ctx.Done():
			return fmt.Errorf("not every report was acknowledged: %w", ctx.Err())
		}
	}
	upTime := time.Since(upStart)
	cpu2, _ := procCPU(cmd.Process.Pid)
	rss2, hwm2 := procRSS(cmd.Process.Pid)

	// A second round: every DeviceStatus exists now, so each write is one
	// merge patch.
	patchStart := time.Now()
	for i, c := range clients {
		if err := c.reportAll(ns, i+nHosts, nHosts); err != nil {
			return err
		}
	}
	for _, c := range clients {
		select {
		case <-c.round():
		case <-ctx.Done():
			return fmt.Errorf("not every second report was acknowledged: %w", ctx.Err())
		}
	}
	patchTime := time.Since(patchStart)

	// The baseline: the API server's own create and patch rate for the
	// same objects, from a plain client-go loop.
	unlimited := rest.CopyConfig(cfg)
	unlimited.QPS = -1 // no client-side rate limiter
	baseDyn, err := dynamic.NewForConfig(unlimited)
	if err != nil {
		return err
	}
	baseCreate, basePatch, err := baseline(ctx, kc, baseDyn, nDevices)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	fmt.Printf("wapper-cloud, %d hosts, %d devices (one process, real kube-apiserver + etcd, %d cores)\n", nHosts, nDevices, benchutil.NumCPU())
	fmt.Printf("  creates took                      %8.2f s  (%.0f Devices/s through client-go)\n", created.Seconds(), float64(nDevices)/created.Seconds())
	fmt.Printf("  every host acknowledged after     %8.2f s  from the first create (%.0f ms after the last)\n", converged.Seconds(), float64((converged - created).Milliseconds()))
	fmt.Printf("  cloud CPU during convergence      %8.2f s  (%.0f%% of one core)\n", cpu1-cpu0, 100*(cpu1-cpu0)/converged.Seconds())
	fmt.Printf("  cloud RSS after convergence       %8.1f MiB (peak %.1f MiB)\n", rss, hwm)
	fmt.Printf("  status writes, first report       %8.2f s  for %d DeviceStatus creates = %.0f writes/s (limit --status-qps %d); cloud CPU %.2f s, RSS %.1f MiB (peak %.1f)\n",
		upTime.Seconds(), nDevices, float64(nDevices)/upTime.Seconds(), statusQPS, cpu2-cpu1, rss2, hwm2)
	fmt.Printf("  status writes, next report        %8.2f s  for %d merge patches = %.0f writes/s\n",
		patchTime.Seconds(), nDevices, float64(nDevices)/patchTime.Seconds())
	createRate, patchRate := float64(nDevices)/upTime.Seconds(), float64(nDevices)/patchTime.Seconds()
	fmt.Printf("  baseline: plain client-go loop    %8.0f creates/s, %.0f merge patches/s (same apiserver, %d DeviceStatus objects, %d workers)\n",
		baseCreate, basePatch, nDevices, baselineWorkers)
	fmt.Printf("  wapper-cloud / baseline           %8.2fx for creates, %.2fx for patches (wapper-cloud capped at --status-qps %d = %.2fx of the baseline creates)\n",
		createRate/baseCreate, patchRate/basePatch, statusQPS, float64(statusQPS)/baseCreate)
	return nil
}

// startEnv starts etcd and kube-apiserver with the CRDs, creates
// namespace ns and a token Secret for each of nHosts nodes, and returns
// the environment (to Stop) and the tokens.
func startEnv(ctx context.Context, ns string, nHosts int) (*k8stest.Env, []string, error) {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	all, err := crds.All()
	if err != nil {
		return nil, nil, err
	}
	env, err := k8stest.Start(ctx, k8stest.Options{CRDs: all, Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	kc := kubernetes.NewForConfigOrDie(env.Config())
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		env.Stop()
		return nil, nil, err
	}
	tokens := make([]string, nHosts)
	if err := benchutil.Parallel(32, nHosts, func(i int) error {
		t, err := nodeauth.Ensure(ctx, kc, ns, node(i))
		tokens[i] = t
		return err
	}); err != nil {
		env.Stop()
		return nil, nil, err
	}
	return env, tokens, nil
}

// startCloud starts bin/wapper-cloud serving the hosts of namespace ns on
// addr (its files in dir, named after name) and waits until it is ready;
// it returns the process and a TLS configuration trusting its certificate.
func startCloud(ctx context.Context, kubeconfig, ns, addr, dir, name string, statusQPS int) (*exec.Cmd, *tls.Config, error) {
	cmd, err := launchCloud(ctx, kubeconfig, ns, addr, dir, name, statusQPS)
	if err != nil {
		return nil, nil, err
	}
	tlsCfg, err := waitReady(ctx, addr, filepath.Join(dir, name+".crt"))
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, fmt.Errorf("%w (log: %s)", err, filepath.Join(dir, name+".log"))
	}
	return cmd, tlsCfg, nil
}

// launchCloud starts bin/wapper-cloud as startCloud does, without waiting
// until it is ready.
func launchCloud(ctx context.Context, kubeconfig, ns, addr, dir, name string, statusQPS int) (*exec.Cmd, error) {
	bin := filepath.Join(testenv.Root(), "bin", "wapper-cloud")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s missing: run make bin/wapper-cloud", bin)
	}
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", kubeconfig, "--namespace", ns, "--listen", addr,
		"--ca-out", filepath.Join(dir, name+".crt"), "--module-cache", filepath.Join(dir, "modules"), "--log-level", "warn",
		"--status-qps", strconv.Itoa(statusQPS), "--status-burst", strconv.Itoa(statusQPS), "--kube-api-qps", strconv.Itoa(2*statusQPS))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// baselineWorkers is the baseline loop's parallelism, as for the Device
// creates above.
const baselineWorkers = 64

// baseline creates n DeviceStatus objects, each shaped as wapper-cloud
// writes them (an owner reference and a status with one twin), in a
// namespace of their own through client-go with no client-side rate
// limit, then merge-patches each one's status, and returns both rates
// (objects per second).
func baseline(ctx context.Context, kc kubernetes.Interface, dyn dynamic.Interface, n int) (createRate, patchRate float64, err error) {
	const ns = "baseline"
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, 0, fmt.Errorf("namespace: %w", err)
	}
	api := dyn.Resource(status.DeviceStatuses).Namespace(ns)
	gv := devicesv1beta1.SchemeGroupVersion.String()
	twins := func(v string) devicesv1beta1.DeviceStatusStatus {
		return devicesv1beta1.DeviceStatusStatus{State: "ok", Twins: []devicesv1beta1.Twin{{PropertyName: "temperature", Reported: devicesv1beta1.TwinProperty{Value: v}}}}
	}
	start := time.Now()
	err = benchutil.Parallel(baselineWorkers, n, func(i int) error {
		name := fmt.Sprintf("d%05d", i)
		ds := &devicesv1beta1.DeviceStatus{
			TypeMeta: metav1.TypeMeta{APIVersion: gv, Kind: "DeviceStatus"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: gv, Kind: "Device", Name: name, UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
			}}},
			Status: twins("0"),
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ds)
		if err != nil {
			return err
		}
		_, err = api.Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{FieldManager: "cloudbench"})
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("create: %w", err)
	}
	createRate = float64(n) / time.Since(start).Seconds()
	start = time.Now()
	err = benchutil.Parallel(baselineWorkers, n, func(i int) error {
		patch, err := json.Marshal(map[string]any{"status": twins(strconv.Itoa(i))})
		if err != nil {
			return err
		}
		_, err = api.Patch(ctx, fmt.Sprintf("d%05d", i), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "cloudbench"})
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("patch: %w", err)
	}
	return createRate, float64(n) / time.Since(start).Seconds(), nil
}

func node(i int) string { return fmt.Sprintf("edge-%04d", i) }

// simHost is a link client that acknowledges every batch.
type simHost struct {
	conn     *websocket.Conn
	wmu      sync.Mutex // serialises writes to conn
	want     int
	held     map[string]string
	complete chan struct{}
	reported chan struct{}
	pending  atomic.Int64
	once     sync.Once
	mu       sync.Mutex // guards reported, replaced by each round
}

func dialHost(ctx context.Context, addr string, tlsCfg *tls.Config, node, token string, want int) (*simHost, error) {
	conn, _, err := dialLink(ctx, addr, tlsCfg, node, token, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", node, err)
	}
	s := &simHost{conn: conn, want: want, held: map[string]string{}, complete: make(chan struct{}), reported: make(chan struct{})}
	go s.read()
	return s, nil
}

// dialLink opens node's link to the cloud at addr and sends an empty
// hello, as wapper-host does; on a refusal it returns the HTTP response.
func dialLink(ctx context.Context, addr string, tlsCfg *tls.Config, node, token string, timeout time.Duration) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{TLSClientConfig: tlsCfg, Subprotocols: []string{linkproto.Subprotocol}, HandshakeTimeout: timeout}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set(linkproto.NodeHeader, node)
	conn, resp, err := d.DialContext(ctx, "wss://"+addr+linkproto.LinkPath, h)
	if err != nil {
		return nil, resp, err
	}
	if err := conn.WriteJSON(linkproto.Message{Type: linkproto.TypeHello}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("hello: %w", err)
	}
	return conn, nil, nil
}

func (s *simHost) write(m linkproto.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.conn.WriteJSON(m)
}

func (s *simHost) read() {
	devices := 0
	for {
		var m linkproto.Message
		if err := s.conn.ReadJSON(&m); err != nil {
			return
		}
		switch m.Type {
		case linkproto.TypeApply:
			for _, it := range m.Items {
				kind, _, _ := linkproto.SplitKey(it.Key)
				_, had := s.held[it.Key]
				if it.Deleted() {
					delete(s.held, it.Key)
					if had && kind == linkproto.KindDevice {
						devices--
					}
					continue
				}
				s.held[it.Key] = it.Version
				if !had && kind == linkproto.KindDevice {
					devices++
				}
			}
			_ = s.write(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq})
			if devices >= s.want && s.held[linkproto.Key(linkproto.KindMapperPlugin, "", "virtual")] != "" {
				s.once.Do(func() { close(s.complete) })
			}
		case linkproto.TypeReportAck:
			if s.pending.Add(-int64(len(m.Acked))) == 0 {
				s.mu.Lock()
				close(s.reported)
				s.mu.Unlock()
			}
		}
	}
}

// round returns the channel closed when the current round is acknowledged.
func (s *simHost) round() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reported
}

func (s *simHost) reportAll(ns string, i, nHosts int) error {
	var rs []linkproto.Report
	seq := uint64(0)
	for k := range s.held {
		kind, _, name := linkproto.SplitKey(k)
		if kind != linkproto.KindDevice {
			continue
		}
		seq++
		rs = append(rs, linkproto.Report{Seq: seq, Device: &linkproto.DeviceReport{Namespace: ns, Name: name, State: "ok",
			Twins: []devicesv1beta1.Twin{{PropertyName: "temperature", Reported: devicesv1beta1.TwinProperty{Value: strconv.Itoa(i)}}}}})
	}
	s.mu.Lock()
	s.reported = make(chan struct{})
	if len(rs) == 0 {
		close(s.reported)
	}
	s.mu.Unlock()
	if len(rs) == 0 {
		return nil
	}
	s.pending.Store(int64(len(rs)))
	return s.write(linkproto.Message{Type: linkproto.TypeReport, Reports: rs})
}

func waitReady(ctx context.Context, addr, ca string) (*tls.Config, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ca); err == nil && len(b) > 0 {
			cfg, err := loadCA(b)
			if err != nil {
				return nil, err
			}
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
			if resp, err := cl.Get("https://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return cfg, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("wapper-cloud not ready in 2 minutes")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// procCPU returns a process's user+system CPU seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// procRSS returns a process's current and peak RSS in MiB.
func procRSS(pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

func loadCA(pem []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("wapper-cloud's --ca-out holds no certificate")
	}
	return &tls.Config{RootCAs: pool}, nil
}
