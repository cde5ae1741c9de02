package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"wapper.dev/wapper/deploy/crds"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/auth"
	"wapper.dev/wapper/registry/client"
	regserver "wapper.dev/wapper/registry/server"
	"wapper.dev/wapper/registry/store"
)

// cloudEnv is a real kube-apiserver with etcd, and bin/wapper-cloud.
type cloudEnv struct {
	t   *testing.T
	env *k8stest.Env
	ns  string
	ke  kubeedge.Interface

	addr, url, ca string
	cmd           *exec.Cmd
	done          chan struct{}
	logMu         sync.Mutex
	log           strings.Builder
}

func newCloudEnv(t *testing.T) *cloudEnv {
	t.Helper()
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	env, err := k8stest.Start(context.Background(), k8stest.Options{CRDs: all})
	if err != nil {
		if errors.Is(err, k8stest.ErrBinariesMissing) {
			testenv.Missing(t, "a kube-apiserver and etcd build", "run hack/k8s/ensure-k8s-bins.sh (make test runs it)")
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c := &cloudEnv{t: t, env: env, ns: "e2e", ke: kubeedge.NewForConfigOrDie(env.Config())}
	kc := kubernetes.NewForConfigOrDie(env.Config())
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.addr = saPort(t)
	c.url = "https://" + c.addr
	c.ca = filepath.Join(t.TempDir(), "ca.crt")
	return c
}

// start runs bin/wapper-cloud (again, on the same address) and waits until
// it is ready.
func (c *cloudEnv) start(extra ...string) {
	t := c.t
	t.Helper()
	args := append([]string{"--kubeconfig", c.env.Kubeconfig, "--namespace", c.ns, "--listen", c.addr, "--ca-out", c.ca,
		"--module-cache", filepath.Join(t.TempDir(), "modules"), "--status-flush", "100ms", "--log-level", "debug"}, extra...)
	c.cmd = exec.Command(testenv.Artifact(t, "wapper-cloud"), args...)
	c.cmd.Stdout, c.cmd.Stderr = c, c
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.done = make(chan struct{})
	done := c.done
	go func() { _ = c.cmd.Wait(); close(done) }()
	t.Cleanup(c.kill9)
	saEventually(t, "wapper-cloud ready", 2*time.Minute, func() error {
		cfg, err := cloudlink.LoadCA(c.ca)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}).Get(c.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

// Write collects the cloud's log.
func (c *cloudEnv) Write(p []byte) (int, error) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.log.Write(p)
}

func (c *cloudEnv) kill9() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// metric reads one sample from the cloud's /metrics (0 when absent).
func (c *cloudEnv) metric(series string) float64 {
	c.t.Helper()
	cfg, err := cloudlink.LoadCA(c.ca)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}).Get(c.url + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sample(string(b), series)
}

// sample returns the value of one series in a /metrics text (0 when
// absent).
func sample(metrics, series string) float64 {
	for l := range strings.SplitSeq(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// token runs `wapper-cloud token NODE` and writes the token to a file.
func (c *cloudEnv) token(node string) string {
	t := c.t
	t.Helper()
	out, err := exec.Command(testenv.Artifact(t, "wapper-cloud"), "token", "--kubeconfig", c.env.Kubeconfig, "--namespace", c.ns, node).Output()
	if err != nil {
		t.Fatalf("wapper-cloud token %s: %v", node, err)
	}
	f := filepath.Join(t.TempDir(), node+".token")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// apply creates or replaces objects from YAML through client-go.
func (c *cloudEnv) apply(doc string) {
	c.t.Helper()
	if err := c.env.Apply(context.Background(), c.ns, doc); err != nil {
		c.t.Fatal(err)
	}
}

// twin returns the reported value of a property in the DeviceStatus.
func (c *cloudEnv) twin(device, prop string) (string, error) {
	ds, err := c.ke.DevicesV1beta1().DeviceStatuses(c.ns).Get(context.Background(), device, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	for _, tw := range ds.Status.Twins {
		if tw.PropertyName == prop {
			return tw.Reported.Value, nil
		}
	}
	return "", fmt.Errorf("DeviceStatus %s has no twin %s yet: %+v", device, prop, ds.Status)
}

const cloudPlugins = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermo}
spec:
  protocol: virtual
  properties:
  - {name: temperature, type: INT, accessMode: ReadOnly}
  - {name: setpoint, type: INT, accessMode: ReadWrite}`

func cloudDevice(name, node, setpoint, model string) string {
	return `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ` + name + `}
spec:
  nodeName: ` + node + `
  deviceModelRef: {name: ` + model + `}
  protocol: {protocolName: virtual}
  properties:
  - name: temperature
    collectCycle: 200
    reportCycle: 200
    visitors: {protocolName: virtual, configData: {kind: counter}}
  - name: setpoint
    collectCycle: 200
    reportCycle: 200
    desired: {value: "` + setpoint + `"}
    visitors: {protocolName: virtual, configData: {kind: setpoint}}`
}

// running waits until a host runs exactly the given devices.
func running(t *testing.T, h *saHost, ns string, names ...string) {
	t.Helper()
	saEventually(t, fmt.Sprintf("host running exactly %v", names), 2*time.Minute, func() error {
		devs := h.devices()
		if len(devs) != len(names) {
			return fmt.Errorf("host has %d devices: %v", len(devs), devs)
		}
		for _, n := range names {
			d, ok := devs[ns+"/"+n]
			if !ok || d.Phase != "Running" || d.Source != "cloud" {
				return fmt.Errorf("%s: %+v", n, d)
			}
		}
		return nil
	})
}

func reportedOnHost(t *testing.T, h *saHost, key, prop, want string) {
	t.Helper()
	saEventually(t, key+" "+prop+" = "+want+" on the host", 2*time.Minute, func() error {
		d, err := h.device(key)
		if err != nil {
			return err
		}
		if got := d.twin(prop).Reported; got != want {
			return fmt.Errorf("reported %q", got)
		}
		return nil
	})
}

func reportedInCluster(t *testing.T, c *cloudEnv, device, prop, want string) {
	t.Helper()
	saEventually(t, device+" "+prop+" = "+want+" in the cluster", 2*time.Minute, func() error {
		got, err := c.twin(device, prop)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("DeviceStatus has %q", got)
		}
		return nil
	})
}

// TestCloudTwoHosts runs a real apiserver, bin/wapper-cloud and two
// bin/wapper-host processes through delivery, reports, desired values and
// the faults of issue 8.
func TestCloudTwoHosts(t *testing.T) {
	c := newCloudEnv(t)
	ref, manifest := cloudRegistry(t)
	c.start("--registry-plain-http")
	tokA, tokB := c.token("node-a"), c.token("node-b")
	stateA, stateB := t.TempDir(), t.TempDir()
	hostArgs := func(node, tok string) []string {
		return []string{"--cloud", c.url, "--node", node, "--token-file", tok, "--ca-file", c.ca}
	}
	a := saStart(t, stateA, hostArgs("node-a", tokA)...)
	b := saStart(t, stateB, hostArgs("node-b", tokB)...)

	c.apply(cloudPlugins + "\n---\n" + cloudDevice("a1", "node-a", "20", "thermo") + "\n---\n" + cloudDevice("b1", "node-b", "20", "thermo"))

	// Each host runs only its own node's devices.
	running(t, a, c.ns, "a1")
	running(t, b, c.ns, "b1")

	// A reading appears on the host's MQTT broker.
	lines := mosquittoSub(t, a.mqtt, "$hw/events/device/"+c.ns+"/a1/twin/update", 1)
	if !strings.Contains(lines[0], `"twin"`) {
		t.Fatalf("twin update on host A: %s", lines[0])
	}

	// The reported twin appears in the cluster.
	reportedInCluster(t, c, "a1", "setpoint", "20")
	reportedInCluster(t, c, "b1", "setpoint", "20")

	// A desired value set in the cluster reaches the device.
	c.apply(cloudDevice("a1", "node-a", "30", "thermo"))
	reportedOnHost(t, a, c.ns+"/a1", "setpoint", "30")
	reportedInCluster(t, c, "a1", "setpoint", "30")

	t.Run("module through the cloud", func(t *testing.T) {
		// The registry speaks plain HTTP; the host's registry client
		// insists on TLS, so only the cloud (--registry-plain-http)
		// reaches it.
		c.apply(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual-oci}
spec:
  protocols: [virtual-oci]
  module: {image: "` + ref + `", digest: "` + manifest + `"}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: thermo-oci
  annotations: {mappers.wapper.dev/plugin: virtual-oci}
spec:
  protocol: virtual
  properties:
  - {name: temperature, type: INT, accessMode: ReadOnly}
  - {name: setpoint, type: INT, accessMode: ReadWrite}
---
` + cloudDevice("a2", "node-a", "5", "thermo-oci"))
		running(t, a, c.ns, "a1", "a2")
		if d, _ := a.device(c.ns + "/a2"); d.Plugin != "virtual-oci" {
			t.Fatalf("a2 runs on %q, want virtual-oci", d.Plugin)
		}
		reportedInCluster(t, c, "a2", "setpoint", "5")
		if len(a.Logged("cloudlink: registry not usable from here; fetching the module through the cloud")) == 0 {
			t.Fatalf("host A did not fetch the module through the cloud:\n%s", a.Logs())
		}
		if got := c.metric(`wapper_cloud_module_requests_total{result="ok"}`); got < 1 {
			t.Fatalf("the cloud served %v modules", got)
		}
	})

	t.Run("cloud killed while devices report", func(t *testing.T) {
		c.kill9()
		// Reports continue on the host into its outbox; a desired value
		// is set in the cluster while no cloud runs.
		var seen int
		saEventually(t, "a1 counting on the host", time.Minute, func() error {
			d, err := a.device(c.ns + "/a1")
			if err != nil {
				return err
			}
			seen, err = strconv.Atoi(d.twin("temperature").Reported)
			return err
		})
		c.apply(cloudDevice("a1", "node-a", "31", "thermo"))
		c.start("--registry-plain-http")
		reportedOnHost(t, a, c.ns+"/a1", "setpoint", "31")
		reportedInCluster(t, c, "a1", "setpoint", "31")
		saEventually(t, "the readings made while the cloud was down in the cluster", 2*time.Minute, func() error {
			v, err := c.twin("a1", "temperature")
			if err != nil {
				return err
			}
			if n, _ := strconv.Atoi(v); n < seen {
				return fmt.Errorf("cluster has %s, the host had reached %d", v, seen)
			}
			return nil
		})
	})

	t.Run("host offline during changes", func(t *testing.T) {
		b.stop()
		c.apply(cloudDevice("b1", "node-b", "40", "thermo") + "\n---\n" + cloudDevice("b2", "node-b", "41", "thermo"))
		b = saStart(t, stateB, hostArgs("node-b", tokB)...)
		running(t, b, c.ns, "b1", "b2")
		reportedOnHost(t, b, c.ns+"/b1", "setpoint", "40")
		reportedInCluster(t, c, "b2", "setpoint", "41")
	})

	t.Run("host restarts with no cloud", func(t *testing.T) {
		c.kill9()
		a.stop()
		a = saStart(t, stateA, hostArgs("node-a", tokA)...)
		running(t, a, c.ns, "a1", "a2")
		reportedOnHost(t, a, c.ns+"/a1", "setpoint", "31")
		mosquittoSub(t, a.mqtt, "$hw/events/device/"+c.ns+"/a2/twin/update", 1)
	})

	t.Run("secrets from the cluster", func(t *testing.T) {
		// A host started in a subtest stops with it.
		cloudSecrets(t, c, saStart(t, stateA, hostArgs("node-a", tokA)...))
	})
}

// cloudSecrets: the cloud, restarted with --plugin-secrets-namespace,
// sends host a the CA and client certificate that a Modbus plugin's
// grants.tls names; the host makes the mutual-TLS connection with them,
// the device's reading reaches the cluster, and neither secret is in the
// host's state database.
func cloudSecrets(t *testing.T, c *cloudEnv, a *saHost) {
	const secretNS = "e2e-plugin-secrets"
	kc := kubernetes.NewForConfigOrDie(c.env.Config())
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: secretNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	regs := &regMap{}
	regs.holding[10] = 1234
	m := startModbusTLS(t, regs)
	for name, data := range map[string]map[string][]byte{
		"modbus-ca":     {"ca.crt": m.ca.CertPEM},
		"modbus-client": {"tls.crt": m.client.CertPEM, "tls.key": m.client.KeyPEM},
	} {
		if _, err := kc.CoreV1().Secrets(secretNS).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.kill9()
	c.start("--registry-plain-http", "--plugin-secrets-namespace", secretNS)
	ep := m.endpoint()
	c.apply(fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: modbus}
spec:
  protocols: [modbus]
  module: {file: modbus.wasm}
  grants:
    network: ["%[1]s"]
    tls: [{endpoint: "%[1]s", caSecret: modbus-ca, clientSecret: modbus-client}]
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plc}
spec:
  protocol: modbus
  properties:
  - {name: holding, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: m1}
spec:
  nodeName: node-a
  deviceModelRef: {name: plc}
  protocol:
    protocolName: modbus
    configData: {ip: 127.0.0.1, port: %[2]d, slaveID: 1, tls: true}
  properties:
  - name: holding
    collectCycle: 200
    reportCycle: 200
    visitors: {protocolName: modbus, configData: {register: HoldingRegister, offset: 10, limit: 1}}`, ep, m.port))
	reportedInCluster(t, c, "m1", "holding", "1234")
	a.stop()
	files, err := filepath.Glob(filepath.Join(a.state, "*.db"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no state database in %s: %v", a.state, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range [][]byte{m.client.KeyPEM, m.ca.CertPEM} {
			// As it is, or base64-encoded as JSON carries it.
			if bytes.Contains(b, secret[40:120]) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(secret)[40:120])) {
				t.Fatalf("a secret's value is in the host's state database %s", f)
			}
		}
	}
}

// cloudRegistry serves wapper's embedded registry over plain HTTP with the
// virtual plugin pushed; it returns the reference and manifest digest.
func cloudRegistry(t *testing.T) (ref, manifest string) {
	t.Helper()
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	built, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: regserver.New(regserver.Config{Store: st, Auth: auth.Static{User: "u", Password: "p"}, AnonymousRead: true})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); _ = st.Close() })
	cl, err := client.New(client.Options{PlainHTTP: true, Username: "u", Password: "p", DockerConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	ref = ln.Addr().String() + "/plugins/virtual:v1"
	if _, err := cl.Push(context.Background(), ref, built); err != nil {
		t.Fatal(err)
	}
	return ref, built.ManifestDesc.Digest.String()
}
