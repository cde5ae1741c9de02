// Package kubeedgetest runs KubeEdge's own cloudcore and edgecore for tests,
// on loopback, against a real kube-apiserver from package k8stest.
//
// The binaries are built from the Go module proxy by
// hack/kubeedge/ensure-kubeedge-bins.sh (make test runs it). edgecore runs
// with edged (its kubelet) off, so Start creates the edge Node itself; its
// DMI server listens on DMISocket and its internal MQTT broker on MQTTURL.
// Everything the two write stays in the run folder.
//
//	cluster, _ := k8stest.Start(ctx, k8stest.Options{CRDs: kubeedgetest.CRDs(t)})
//	ke, _ := kubeedgetest.Start(ctx, kubeedgetest.Options{Cluster: cluster})
//	defer ke.Stop()
//	// run a mapper against ke.DMISocket(), apply Devices for ke.Node
package kubeedgetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// ErrBinariesMissing is returned (wrapped) when cloudcore and edgecore are
// not built.
var ErrBinariesMissing = errors.New("cloudcore and edgecore are not built; run hack/kubeedge/ensure-kubeedge-bins.sh (make test runs it)")

// Options configures Start.
type Options struct {
	// Cluster is the kube-apiserver cloudcore talks to, with KubeEdge's
	// CRDs installed (see CRDs). Required.
	Cluster *k8stest.Env
	// BinDir holds cloudcore, edgecore and crds/ (default: $WAPPER_KUBEEDGE_BINS,
	// then the cache of ensure-kubeedge-bins.sh).
	BinDir string
	// Node is the edge node's name (default "edge-0").
	Node string
	// Logger receives progress messages (default slog.Default()).
	Logger *slog.Logger
}

// Env is a running cloudcore and edgecore.
type Env struct {
	// Dir is the run folder: configurations, certificates, edgecore's
	// database, the DMI socket and both logs.
	Dir string
	// Node is the edge node's name.
	Node string

	o         Options
	bins      string
	cs        kubernetes.Interface
	ws, https int
	mqtt      int
	cloudcore *testproc.Proc
	edgecore  *testproc.Proc
}

// Start starts cloudcore, creates the edge Node, starts edgecore, and
// returns once edgecore's DMI socket is up and cloudcore has seen the node
// connect. The run folder has a short path, because unix socket paths are
// limited to 107 bytes.
func Start(ctx context.Context, o Options) (e *Env, err error) {
	if o.Cluster == nil {
		return nil, errors.New("kubeedgetest: Options.Cluster is required")
	}
	if o.Node == "" {
		o.Node = "edge-0"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	bins, err := FindBinaries(o.BinDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ke")
	if err != nil {
		return nil, err
	}
	e = &Env{Dir: dir, Node: o.Node, o: o, bins: bins}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nrun folder kept: %s\n%s", err, dir, e.Logs())
			e.stopProcs()
		}
	}()
	if e.cs, err = kubernetes.NewForConfig(o.Cluster.Config()); err != nil {
		return nil, err
	}
	ports, err := testproc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	e.ws, e.https, e.mqtt = ports[0], ports[1], ports[2]
	begin := time.Now()
	if err := e.startCloudcore(ctx); err != nil {
		return nil, err
	}
	if err := e.createNode(ctx); err != nil {
		return nil, err
	}
	if err := e.StartEdgecore(ctx); err != nil {
		return nil, err
	}
	o.Logger.Info("kubeedgetest: cloudcore and edgecore ready", "dir", dir, "node", o.Node, "startup", time.Since(begin).Round(time.Millisecond))
	return e, nil
}

// FindBinaries returns the folder that holds cloudcore, edgecore and crds/.
func FindBinaries(dir string) (string, error) {
	has := func(d string) bool {
		if d == "" {
			return false
		}
		for _, f := range []string{"cloudcore", "edgecore", "crds"} {
			if _, err := os.Stat(filepath.Join(d, f)); err != nil {
				return false
			}
		}
		return true
	}
	for _, d := range []string{dir, os.Getenv("WAPPER_KUBEEDGE_BINS")} {
		if has(d) {
			return d, nil
		}
	}
	script := filepath.Join(testenv.Root(), "hack", "kubeedge", "ensure-kubeedge-bins.sh")
	out, err := exec.Command(script, "--no-build").Output()
	if d := strings.TrimSpace(string(out)); err == nil && has(d) {
		return d, nil
	}
	return "", fmt.Errorf("kubeedgetest: %w", ErrBinariesMissing)
}

// DMISocket is the path of edgecore's DMI server socket (for a mapper's
// --edgecore-socket).
func (e *Env) DMISocket() string { return filepath.Join(e.Dir, "edge", "dmi.sock") }

// MQTTURL is the address of edgecore's internal MQTT broker (its eventbus).
func (e *Env) MQTTURL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", e.mqtt) }

// EdgeDB is the path of edgecore's sqlite database.
func (e *Env) EdgeDB() string { return filepath.Join(e.Dir, "edge", "edgecore.db") }

// EdgecoreLog is the path of edgecore's log.
func (e *Env) EdgecoreLog() string { return filepath.Join(e.Dir, "edge", "edgecore.log") }

// Logs returns the tails of both logs, for failure messages.
func (e *Env) Logs() string {
	var b strings.Builder
	for _, p := range []*testproc.Proc{e.cloudcore, e.edgecore} {
		if p != nil {
			fmt.Fprintf(&b, "--- %s (last lines of %s)\n%s\n", p.Name, p.LogPath, p.Tail(60))
		}
	}
	return b.String()
}

// Stop stops edgecore and cloudcore and removes the run folder (kept when
// $K8STEST_KEEP is set).
func (e *Env) Stop() error {
	err := e.stopProcs()
	if os.Getenv("K8STEST_KEEP") == "" {
		err = errors.Join(err, os.RemoveAll(e.Dir))
	}
	return err
}

func (e *Env) stopProcs() error {
	var errs []error
	for _, p := range []*testproc.Proc{e.edgecore, e.cloudcore} {
		if p != nil {
			errs = append(errs, p.Stop())
		}
	}
	return errors.Join(errs...)
}

// StopEdgecore stops edgecore (SIGTERM); its database stays.
func (e *Env) StopEdgecore() error {
	if e.edgecore == nil {
		return nil
	}
	err := e.edgecore.Stop()
	e.edgecore = nil
	return err
}

// KillEdgecore kills edgecore as kill -9 would; its database stays.
func (e *Env) KillEdgecore() {
	if e.edgecore != nil {
		e.edgecore.Kill()
		e.edgecore = nil
	}
}

func (e *Env) startCloudcore(ctx context.Context) error {
	cloud := filepath.Join(e.Dir, "cloud")
	mon, err := testproc.FreePorts(1)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cloud, 0o755); err != nil {
		return err
	}
	// The TLS files do not exist: cloudcore then makes its CA and server
	// certificate and keeps them in secrets of namespace kubeedge. Features
	// that need root or fixed paths are off.
	cfg := fmt.Sprintf(`apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
kubeAPIConfig:
  kubeConfig: %[1]s
  qps: 100
  burst: 200
commonConfig:
  monitorServer:
    bindAddress: 127.0.0.1:%[2]d
modules:
  cloudHub:
    advertiseAddress: [127.0.0.1]
    dnsNames: [localhost]
    nodeLimit: 100
    tlsCAFile: %[3]s/ca/rootCA.crt
    tlsCAKeyFile: %[3]s/ca/rootCA.key
    tlsCertFile: %[3]s/certs/server.crt
    tlsPrivateKeyFile: %[3]s/certs/server.key
    unixsocket: {enable: false}
    quic: {enable: false}
    websocket: {enable: true, address: 127.0.0.1, port: %[4]d}
    https: {enable: true, address: 127.0.0.1, port: %[5]d}
  edgeController: {enable: true}
  deviceController: {enable: true}
  syncController: {enable: true}
  dynamicController: {enable: false}
  cloudStream: {enable: false}
  router: {enable: false}
  taskManager: {enable: false}
  iptablesManager: {enable: false}
`, e.o.Cluster.Kubeconfig, mon[0], cloud, e.ws, e.https)
	path := filepath.Join(cloud, "cloudcore.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	e.cloudcore, err = testproc.Start("cloudcore", filepath.Join(e.bins, "cloudcore"), filepath.Join(cloud, "cloudcore.log"),
		testproc.Options{Dir: cloud}, "--config", path, "-v", "2")
	if err != nil {
		return err
	}
	// cloudcore sleeps 0-9 s at start by design, then writes the token
	// secret edgecore joins with.
	return e.wait(ctx, e.cloudcore, "cloudcore's token secret", 2*time.Minute, func() bool {
		s, err := e.cs.CoreV1().Secrets("kubeedge").Get(ctx, "tokensecret", metav1.GetOptions{})
		return err == nil && len(s.Data["tokendata"]) > 0
	})
}

// createNode creates the edge Node: with edged off nothing registers it.
func (e *Env) createNode(ctx context.Context) error {
	_, err := e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   e.Node,
		Labels: map[string]string{"node-role.kubernetes.io/edge": "", "kubernetes.io/hostname": e.Node},
	}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// StartEdgecore starts edgecore (again) and waits until its DMI socket is
// up and cloudcore has seen the node connect.
func (e *Env) StartEdgecore(ctx context.Context) error {
	if e.edgecore != nil {
		return errors.New("kubeedgetest: edgecore already runs")
	}
	edge := filepath.Join(e.Dir, "edge")
	if err := os.MkdirAll(edge, 0o755); err != nil {
		return err
	}
	s, err := e.cs.CoreV1().Secrets("kubeedge").Get(ctx, "tokensecret", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kubeedgetest: read the join token: %w", err)
	}
	// edged, servicebus, edgestream, metaserver and taskmanager off;
	// edgehub, metamanager, devicetwin (with its DMI server) and eventbus
	// (an internal MQTT broker) on. edgecore rewrites this file (it drops
	// the token once it has its certificates), so it is written anew at
	// every start.
	cfg := fmt.Sprintf(`apiVersion: edgecore.config.kubeedge.io/v1alpha2
kind: EdgeCore
database:
  dataSource: %[1]s/edgecore.db
modules:
  edged:
    enable: false
    hostnameOverride: %[2]s
    nodeIP: 127.0.0.1
  edgeHub:
    enable: true
    heartbeat: 15
    httpServer: https://127.0.0.1:%[3]d
    token: %[4]s
    tlsCaFile: %[1]s/ca/rootCA.crt
    tlsCertFile: %[1]s/certs/server.crt
    tlsPrivateKeyFile: %[1]s/certs/server.key
    websocket: {enable: true, server: 127.0.0.1:%[5]d}
    quic: {enable: false}
  eventBus:
    enable: true
    mqttMode: 0
    mqttServerInternal: tcp://127.0.0.1:%[6]d
    mqttServerExternal: tcp://127.0.0.1:%[6]d
  metaManager:
    enable: true
    metaServer: {enable: false}
  deviceTwin:
    enable: true
    dmiSockPath: %[1]s/dmi.sock
  serviceBus: {enable: false}
  edgeStream: {enable: false}
  taskManager: {enable: false}
  dbTest: {enable: false}
`, edge, e.Node, e.https, s.Data["tokendata"], e.ws, e.mqtt)
	path := filepath.Join(edge, "edgecore.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	connected := regexp.MustCompile(`edge node ` + regexp.QuoteMeta(e.Node) + ` for project \S+ connected`)
	before := len(connected.FindAllIndex(readFile(e.cloudcore.LogPath), -1))
	_ = os.Remove(e.DMISocket())
	// CHECK_EDGECORE_ENVIRONMENT=false skips edgecore's scan for a running kubelet.
	e.edgecore, err = testproc.Start("edgecore", filepath.Join(e.bins, "edgecore"), e.EdgecoreLog(),
		testproc.Options{Dir: edge, Env: []string{"CHECK_EDGECORE_ENVIRONMENT=false"}}, "--config", path, "-v", "2")
	if err != nil {
		return err
	}
	if err := e.wait(ctx, e.edgecore, "edgecore's DMI socket", time.Minute, func() bool {
		st, err := os.Stat(e.DMISocket())
		return err == nil && st.Mode()&os.ModeSocket != 0
	}); err != nil {
		return err
	}
	return e.wait(ctx, e.edgecore, "cloudcore to see the edge node connect", time.Minute, func() bool {
		return len(connected.FindAllIndex(readFile(e.cloudcore.LogPath), -1)) > before
	})
}

// wait polls ok until it holds, p exits, ctx ends or within passes. The
// limit is a safety net against a hung start, not a speed expectation.
func (e *Env) wait(ctx context.Context, p *testproc.Proc, what string, within time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		if done, err := p.Exited(); done {
			return fmt.Errorf("kubeedgetest: %s exited (%v) while waiting for %s", p.Name, err, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubeedgetest: waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
