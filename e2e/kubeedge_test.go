package e2e

// wapper-host as the mapper of a real KubeEdge: KubeEdge's Device and
// DeviceModel YAML applied to a real kube-apiserver reach bin/wapper-host
// through KubeEdge's own cloudcore and edgecore (v1.23.1, built from the Go
// module proxy by hack/kubeedge/ensure-kubeedge-bins.sh), and what the
// plugins read comes back in the cluster's DeviceStatus.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"wapper.dev/wapper/internal/dbtest"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/kubeedgetest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// keEnv is a kube-apiserver, cloudcore, edgecore with one edge node, and
// bin/wapper-host as that node's mapper over DMI and on edgecore's MQTT
// broker.
type keEnv struct {
	t          *testing.T
	ke         *kubeedgetest.Env
	cluster    *k8stest.Env
	kc         kubeedge.Interface
	host       *saHost
	state      string
	args       []string
	modbus     *regMap
	modbusPort int
}

// keWithin bounds every wait for KubeEdge. edgecore accepts one DMI call a
// second for the whole node, and cloudcore batches status updates, so a
// value takes seconds to reach DeviceStatus; the bound only keeps a broken
// run from hanging.
const keWithin = 3 * time.Minute

func startKubeEdge(t *testing.T) *keEnv {
	t.Helper()
	testenv.Slow(t, "starts kube-apiserver, cloudcore and edgecore")
	crds, err := kubeedgetest.CRDs("")
	if errors.Is(err, kubeedgetest.ErrBinariesMissing) {
		testenv.Missing(t, "KubeEdge's cloudcore and edgecore", "run hack/kubeedge/ensure-kubeedge-bins.sh (make test runs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cluster, err := k8stest.Start(ctx, k8stest.Options{CRDs: crds})
	if errors.Is(err, k8stest.ErrBinariesMissing) {
		testenv.Missing(t, "a kube-apiserver and etcd build", "run hack/k8s/ensure-k8s-bins.sh (make test runs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	ke, err := kubeedgetest.Start(ctx, kubeedgetest.Options{Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("KubeEdge logs:\n%s", ke.Logs())
		}
		_ = ke.Stop()
	})
	ports, err := testproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	e := &keEnv{t: t, ke: ke, cluster: cluster, kc: kubeedge.NewForConfigOrDie(cluster.Config()), modbus: &regMap{}, modbusPort: ports[0]}
	startModbusServer(t, e.modbusPort, e.modbus)

	// The host gets only the plugins; devices and models come from the
	// cluster through edgecore.
	manifests := t.TempDir()
	plugins := keExample(t, "host/plugins.yaml", "127.0.0.1:1502", fmt.Sprintf("127.0.0.1:%d", e.modbusPort))
	if err := os.WriteFile(filepath.Join(manifests, "plugins.yaml"), []byte(plugins), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(ke.Dir, "wapper.sock")
	e.state = t.TempDir()
	e.args = []string{"--manifests", manifests, "--dmi", "--dmi-socket", sock, "--edgecore-socket", ke.DMISocket(),
		"--mqtt-broker", ke.MQTTURL()}
	e.host = saStart(t, e.state, e.args...)
	return e
}

// apply creates KubeEdge YAML in the cluster, unchanged.
func (e *keEnv) apply(t *testing.T, yaml string) {
	t.Helper()
	if err := e.cluster.Apply(context.Background(), "default", yaml); err != nil {
		t.Fatal(err)
	}
}

// reported returns DeviceStatus twins as property → reported value.
func (e *keEnv) reported(name string) (map[string]string, error) {
	st, err := e.kc.DevicesV1beta1().DeviceStatuses("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, tw := range st.Status.Twins {
		out[tw.PropertyName] = tw.Reported.Value
	}
	return out, nil
}

// waitStatus waits until the device's DeviceStatus reports every value in
// want.
func (e *keEnv) waitStatus(t *testing.T, name string, want map[string]string) {
	t.Helper()
	saEventually(t, fmt.Sprintf("DeviceStatus %s to report %v", name, want), keWithin, func() error {
		got, err := e.reported(name)
		if err != nil {
			return err
		}
		for p, v := range want {
			if got[p] != v {
				return fmt.Errorf("%s: got %v", p, got)
			}
		}
		return nil
	})
}

// update changes a Device in the cluster, retrying on conflicts.
func (e *keEnv) update(t *testing.T, name string, change func(*v1beta1.Device)) {
	t.Helper()
	saEventually(t, "update of Device "+name, time.Minute, func() error {
		d, err := e.kc.DevicesV1beta1().Devices("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		_, err = e.kc.DevicesV1beta1().Devices("default").Update(context.Background(), d, metav1.UpdateOptions{})
		return err
	})
}

// setDesired sets a property's desired value in the cluster.
func (e *keEnv) setDesired(t *testing.T, name, prop, value string) {
	t.Helper()
	e.update(t, name, func(d *v1beta1.Device) {
		for i := range d.Spec.Properties {
			if d.Spec.Properties[i].Name == prop {
				d.Spec.Properties[i].Desired.Value = value
			}
		}
	})
}

// waitHost waits until wapper-host runs the device (running) or does not
// have it (!running).
func (e *keEnv) waitHost(t *testing.T, name string, running bool) {
	t.Helper()
	saEventually(t, fmt.Sprintf("wapper-host to have %s: %v", name, running), keWithin, func() error {
		d, ok := e.host.devices()["default/"+name]
		switch {
		case running && (!ok || d.Phase != "Running"):
			return fmt.Errorf("device: %+v", d)
		case !running && ok:
			return fmt.Errorf("still there: %+v", d)
		}
		return nil
	})
}

// edgeDB queries edgecore's sqlite database.
func (e *keEnv) edgeDB(t *testing.T, query string) string {
	t.Helper()
	// edgecore writes all the time: wait for its locks rather than fail.
	out, err := exec.Command(testenv.Bin(t, "sqlite3"), "-cmd", ".timeout 30000", e.ke.EdgeDB(), query).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", query, err, out)
	}
	return strings.TrimSpace(string(out))
}

// keExample reads a file of examples/kubeedge (the files docs/kubeedge.md's
// walkthrough applies) with the given replacements.
func keExample(t *testing.T, name string, oldNew ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "examples", "kubeedge", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(oldNew...).Replace(string(b))
}

// keBroken is refused by the virtual plugin: a visitor without "kind".
const keBroken = `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: broken, namespace: default}
spec:
  deviceModelRef: {name: meter-model}
  nodeName: %[1]s
  protocol: {protocolName: virtual}
  properties:
  - name: local
    reportToCloud: true
    visitors: {protocolName: virtual, configData: {step: 1}}
`

// TestKubeEdge runs the whole path through KubeEdge's own cloudcore and
// edgecore: values of every kind reach DeviceStatus unchanged, desired
// values reach the plugin and the device, devices follow their moves,
// updates and deletes, a refused device can be deleted, and restarts of
// edgecore and of wapper-host lose nothing.
func TestKubeEdge(t *testing.T) {
	e := startKubeEdge(t)
	node := e.ke.Node
	e.apply(t, keExample(t, "cluster/meter.yaml", "nodeName: edge-0", "nodeName: "+node))
	e.modbus.mu.Lock()
	e.modbus.input[5] = uint16(0xffff - 122) // -12.3 as int16 with scale 0.1
	e.modbus.mu.Unlock()
	e.apply(t, keExample(t, "cluster/plc.yaml", "nodeName: edge-0", "nodeName: "+node, "port: 1502", fmt.Sprintf("port: %d", e.modbusPort)))

	t.Run("values", func(t *testing.T) {
		// A float above 1e6 (edgecore drops "2.5000005e+06"), a negative
		// number, a boolean, a string; the ReadOnly property keeps its
		// value although a desired value is set on it.
		e.waitStatus(t, "meter", map[string]string{"energy": "2500000.5", "offset": "-40.5", "running": "true", "mode": "auto", "setpoint": "20.5"})
		e.waitHost(t, "meter", true)
	})

	t.Run("modbus", func(t *testing.T) {
		e.waitStatus(t, "plc", map[string]string{"temperature": "-12.3", "setpoint": "42"})
		e.modbus.mu.Lock()
		got := e.modbus.holding[10]
		e.modbus.mu.Unlock()
		if got != 42 {
			t.Fatalf("holding register 10 = %d, want 42 (the desired value written to the device)", got)
		}
	})

	t.Run("desired", func(t *testing.T) {
		// The command of docs/kubeedge.md's walkthrough.
		patch := `[{"op":"replace","path":"/spec/properties/4/desired/value","value":"30.25"}]`
		if _, err := e.kc.DevicesV1beta1().Devices("default").Patch(context.Background(), "meter", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		e.setDesired(t, "plc", "setpoint", "-7")
		e.waitStatus(t, "meter", map[string]string{"setpoint": "30.25"})
		e.waitStatus(t, "plc", map[string]string{"setpoint": "-7"})
		e.modbus.mu.Lock()
		got := int16(e.modbus.holding[10])
		e.modbus.mu.Unlock()
		if got != -7 {
			t.Fatalf("holding register 10 = %d, want -7", got)
		}
	})

	t.Run("dbMethod", func(t *testing.T) {
		// A dbMethod added to a Device in the cluster reaches wapper-host
		// through cloudcore, edgecore and DMI, and the readings land in
		// Redis; the password is the host's secret.
		rs := dbtest.Redis(t, "ke-redis-pw")
		secret := filepath.Join(e.state, "secrets", "dbmethod-redis")
		if err := os.MkdirAll(secret, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secret, "password"), []byte("ke-redis-pw"), 0o600); err != nil {
			t.Fatal(err)
		}
		e.update(t, "meter", func(d *v1beta1.Device) {
			for i := range d.Spec.Properties {
				if d.Spec.Properties[i].Name == "energy" {
					d.Spec.Properties[i].PushMethod = &v1beta1.PushMethod{DBMethod: &v1beta1.DBMethodConfig{
						Redis: &v1beta1.DBMethodRedis{RedisClientConfig: &v1beta1.RedisClientConfig{Addr: rs.Addr, DB: 2}}}}
				}
			}
		})
		rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: "ke-redis-pw", DB: 2})
		defer rc.Close()
		saEventually(t, "energy readings in redis", keWithin, func() error {
			ms, err := rc.ZRange(context.Background(), "meter", 0, -1).Result()
			if err != nil || len(ms) < 2 {
				return fmt.Errorf("%d members (%v)", len(ms), err)
			}
			if !strings.Contains(ms[0], `"PropertyName":"energy","Namespace":"default","Value":"2500000.5"`) {
				return fmt.Errorf("member %s", ms[0])
			}
			return nil
		})
		e.update(t, "meter", func(d *v1beta1.Device) {
			for i := range d.Spec.Properties {
				if d.Spec.Properties[i].Name == "energy" {
					d.Spec.Properties[i].PushMethod = nil
				}
			}
		})
	})

	t.Run("mqtt", func(t *testing.T) {
		// edgecore's eventbus takes wapper-host's twin updates: the
		// property DMI does not report reaches edgecore's twin table.
		saEventually(t, "edgecore's twin table to hold local=7 from MQTT", keWithin, func() error {
			if got := e.edgeDB(t, `select actual from device_twin where deviceid='default/meter' and name='local';`); got != "7" {
				return fmt.Errorf("actual %q", got)
			}
			return nil
		})
		// twin/get on edgecore's broker gets one answer, edgecore's: a
		// second one would come from wapper-host within moments.
		p := saConnect(t, strings.TrimPrefix(e.ke.MQTTURL(), "tcp://"), "$hw/events/device/default/meter/twin/get/result")
		p.publish(t, "$hw/events/device/default/meter/twin/get", `{"event_id":"get-1","timestamp":0}`)
		saEventually(t, "an answer to twin/get", keWithin, func() error {
			if len(p.got("$hw/events/device/default/meter/twin/get/result")) == 0 {
				return errors.New("none yet")
			}
			return nil
		})
		time.Sleep(2 * time.Second)
		if got := p.got("$hw/events/device/default/meter/twin/get/result"); len(got) != 1 {
			t.Fatalf("%d answers to one twin/get, want 1 (edgecore's):\n%s", len(got), bytes.Join(got, []byte("\n")))
		}
		if log, _ := os.ReadFile(e.ke.EdgecoreLog()); strings.Contains(string(log), "the value type is not allowed") {
			t.Fatalf("edgecore refused a twin type from wapper-host:\n%s", grepLines(string(log), "the value type is not allowed"))
		}
	})

	t.Run("refused", func(t *testing.T) {
		e.apply(t, fmt.Sprintf(keBroken, node))
		saEventually(t, "the refused device in edgecore's database", keWithin, func() error {
			if e.edgeDB(t, `select count(*) from meta where type='device' and key like '%broken%';`) == "0" {
				return errors.New("not yet")
			}
			return nil
		})
		saEventually(t, "wapper-host to hold the refused device in Error", keWithin, func() error {
			if d := e.host.devices()["default/broken"]; d.Phase != "Error" || !strings.Contains(d.Reason, `needs "kind"`) {
				return fmt.Errorf("device: %+v", d)
			}
			return nil
		})
		if err := e.kc.DevicesV1beta1().Devices("default").Delete(context.Background(), "broken", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitHost(t, "broken", false)
		saEventually(t, "edgecore to forget the refused device", keWithin, func() error {
			if n := e.edgeDB(t, `select count(*) from meta where type='device' and key like '%broken%';`); n != "0" {
				return fmt.Errorf("%s rows", n)
			}
			return nil
		})
	})

	t.Run("update-move-delete", func(t *testing.T) {
		e.apply(t, keExample(t, "cluster/meter.yaml", "nodeName: edge-0", "nodeName: "+node, "{name: meter,", "{name: mover,"))
		e.waitHost(t, "mover", true)
		e.update(t, "meter", func(d *v1beta1.Device) {
			for i := range d.Spec.Properties {
				if d.Spec.Properties[i].Name == "offset" {
					d.Spec.Properties[i].Visitors.ConfigData.Data["offset"] = -41.5
				}
			}
		})
		e.waitStatus(t, "meter", map[string]string{"offset": "-41.5"})
		e.update(t, "mover", func(d *v1beta1.Device) { d.Spec.NodeName = "elsewhere" })
		e.waitHost(t, "mover", false)
	})

	t.Run("edgecore-restart", func(t *testing.T) {
		// A value that changes while edgecore is down is reported once it
		// is back (the outbox keeps it), and desired values flow again.
		// (A desired value set in the cluster while edgecore is down is
		// not re-sent by cloudcore 1.23 when the node reconnects: KubeEdge
		// itself loses that one.)
		if err := e.ke.StopEdgecore(); err != nil {
			t.Fatal(err)
		}
		if code, err := e.host.do("PUT", "/api/v1/device/default/meter/running?wait=20s", `{"value": false}`, nil); err != nil || code != 200 {
			t.Fatalf("write running=false through wapper-host's REST API: %d %v", code, err)
		}
		if err := e.ke.StartEdgecore(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.waitStatus(t, "meter", map[string]string{"running": "false", "energy": "2500000.5"})
		e.setDesired(t, "meter", "setpoint", "33.5")
		e.waitStatus(t, "meter", map[string]string{"setpoint": "33.5"})
		e.waitStatus(t, "plc", map[string]string{"setpoint": "-7"})
	})

	t.Run("host-restart", func(t *testing.T) {
		// wapper-host is killed; a desired value set meanwhile comes with
		// edgecore's answer to the next registration.
		e.host.kill9()
		e.setDesired(t, "meter", "setpoint", "34.5")
		e.host = saStart(e.t, e.state, e.args...)
		e.waitHost(t, "meter", true)
		e.waitHost(t, "plc", true)
		e.waitStatus(t, "meter", map[string]string{"setpoint": "34.5", "energy": "2500000.5"})
		e.waitHost(t, "broken", false)
		e.waitHost(t, "mover", false)
	})

	t.Run("delete", func(t *testing.T) {
		for _, n := range []string{"meter", "plc"} {
			if err := e.kc.DevicesV1beta1().Devices("default").Delete(context.Background(), n, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			e.waitHost(t, n, false)
		}
	})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
