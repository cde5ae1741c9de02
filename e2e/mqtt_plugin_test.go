package e2e

// The MQTT plugin (plugins/mqtt) through the standalone host against
// Debian's mosquitto as the broker, over TLS with client certificates
// (require_certificate) and a password: the host makes the TLS
// connection with the CA and client certificate of the MapperPlugin's
// grants.tls and hands the plugin the password from grants.secrets.
// mosquitto_pub plays the device, mosquitto_sub sees its commands.
// Devices that are not granted their broker or their password's Secret,
// that trust the wrong CA, and whose YAML carries a password, show why in
// their status.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

// mqttCA is a certificate authority made for the test.
type mqttCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func mqttNewCA(t *testing.T, name string) *mqttCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &mqttCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key signed by the CA: a server's for
// localhost and 127.0.0.1, or a client's.
func (ca *mqttCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// mqttWrite writes files under dir (made 0700), paths relative to it.
func mqttWrite(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for rel, b := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o700)
}

// mqttTLSClient is what mosquitto_pub and mosquitto_sub need to reach
// the broker: its address, the CA, the client certificate, the login.
type mqttTLSClient struct {
	port               int
	ca, cert, key      string
	username, password string
	pub, sub           string
}

func (c *mqttTLSClient) args(extra ...string) []string {
	return append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "--cafile", c.ca, "--cert", c.cert, "--key", c.key,
		"-u", c.username, "-P", c.password}, extra...)
}

// publish sends one message as the device does, retained when asked, so
// that a subscriber that comes later gets it too.
func (c *mqttTLSClient) publish(t *testing.T, topic, payload string, retain bool) {
	t.Helper()
	args := c.args("-q", "1", "-t", topic, "-m", payload)
	if retain {
		args = append(args, "-r")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, c.pub, args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %s: %v (%s)", topic, err, out)
	}
}

// subscribe starts mosquitto_sub on topic and returns once the broker
// has acknowledged the subscription; the channel then gets "topic
// payload" lines. stdbuf makes mosquitto_sub write each line as it
// comes, not when it exits.
func (c *mqttTLSClient) subscribe(t *testing.T, topic string) <-chan string {
	t.Helper()
	cmd := exec.Command(testenv.Bin(t, "stdbuf"), append([]string{"-oL", c.sub}, c.args("-d", "-v", "-q", "1", "-t", topic, "-W", "120")...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 64)
	subscribed := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		acked := false
		for sc.Scan() {
			l := sc.Text()
			switch {
			case !acked && strings.Contains(l, "SUBACK"):
				acked = true
				close(subscribed)
			case strings.HasPrefix(l, topic+" "):
				lines <- l
			}
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(30 * time.Second):
		t.Fatalf("mosquitto_sub on %s got no SUBACK", topic)
	}
	return lines
}

// startMosquittoTLS runs Debian's mosquitto with a TLS listener on port
// that requires a client certificate signed by ca and the password of
// user edge, and returns what its clients need.
func startMosquittoTLS(t *testing.T, dir string, ca *mqttCA, port int) *mqttTLSClient {
	t.Helper()
	bin, passwdTool := testenv.Bin(t, "mosquitto"), testenv.Bin(t, "mosquitto_passwd")
	c := &mqttTLSClient{
		port: port, username: "edge", password: fmt.Sprintf("pw-%d", time.Now().UnixNano()),
		pub: testenv.Bin(t, "mosquitto_pub"), sub: testenv.Bin(t, "mosquitto_sub"),
	}
	srvCert, srvKey := ca.issue(t, "localhost", true)
	cliCert, cliKey := ca.issue(t, "device", false)
	mqttWrite(t, dir, map[string][]byte{"ca.crt": ca.pem, "server.crt": srvCert, "server.key": srvKey, "client.crt": cliCert, "client.key": cliKey})
	c.ca, c.cert, c.key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	passwd := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwdTool, "-c", "-b", passwd, c.username, c.password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v (%s)", err, out)
	}
	os.Chmod(passwd, 0o600)
	var conf strings.Builder
	if os.Geteuid() == 0 {
		// As root, mosquitto would switch to user mosquitto, which cannot
		// read the test's files.
		conf.WriteString("user root\n")
	}
	fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\nlistener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		passwd, port, c.ca, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	mqttWrite(t, dir, map[string][]byte{"mosquitto.conf": []byte(conf.String())})
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	if err != nil {
		t.Fatal(err)
	}
	broker := exec.Command(bin, "-c", filepath.Join(dir, "mosquitto.conf"), "-v")
	broker.Stdout, broker.Stderr = logf, logf
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		broker.Process.Kill()
		broker.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	saEventually(t, fmt.Sprintf("mosquitto listening on %d", port), 30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	return c
}

// mqttStatus is a device's status with the reason of its state, which
// saDevice leaves out.
type mqttStatus struct {
	saDevice
	StateReason string `json:"stateReason"`
}

func mqttDevice(h *saHost, key string) (mqttStatus, error) {
	var resp struct {
		Device mqttStatus `json:"device"`
	}
	_, err := h.get("/api/v1/device/"+key, &resp)
	return resp.Device, err
}

// mqttExample reads a file of examples/mqtt (the files docs/mqtt.md
// shows), with the broker's port 8883 replaced by port.
func mqttExample(t *testing.T, name string, port int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "examples/mqtt", name))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "127.0.0.1:8883") {
		t.Fatalf("examples/mqtt/%s no longer names the broker 127.0.0.1:8883", name)
	}
	return strings.ReplaceAll(string(b), "127.0.0.1:8883", fmt.Sprintf("127.0.0.1:%d", port))
}

// mqttMore are devices of the example's model whose password's Secret
// is not granted, and whose YAML carries a password.
func mqttMore(port int) string {
	return fmt.Sprintf(`apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: room-secret, namespace: default}
spec:
  deviceModelRef: {name: room-sensor}
  protocol:
    protocolName: mqtt
    configData: {brokerURL: "tls://127.0.0.1:%[1]d", topic: room5/deviceinfo/json, username: edge, passwordSecret: not-granted/password}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: room-password, namespace: default}
spec:
  deviceModelRef: {name: room-sensor}
  protocol:
    protocolName: mqtt
    configData: {brokerURL: "tls://127.0.0.1:%[1]d", topic: room4/deviceinfo/json, username: edge, password: "pass"}
`, port)
}

// mqttWrongManifests is a MapperPlugin that trusts another CA for the
// broker and does not grant it over plain TCP, with a device for each.
func mqttWrongManifests(port int) string {
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: mqtt}
spec:
  protocols: [mqtt]
  module: {file: mqtt.wasm}
  grants:
    network: ["tls://127.0.0.1:%[1]d"]
    secrets: [mqtt-login]
    tls:
      - {endpoint: "tls://127.0.0.1:%[1]d", caSecret: other-ca, clientSecret: mqtt-client, serverName: localhost}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: room-sensor, namespace: default}
spec:
  protocol: mqtt
  properties:
    - {name: temperature, type: DOUBLE, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: room-plain, namespace: default}
spec:
  deviceModelRef: {name: room-sensor}
  protocol:
    protocolName: mqtt
    configData: {brokerURL: "tcp://127.0.0.1:%[1]d", topic: room2/deviceinfo/json, username: edge, passwordSecret: mqtt-login/password}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: room-wrong-ca, namespace: default}
spec:
  deviceModelRef: {name: room-sensor}
  protocol:
    protocolName: mqtt
    configData: {brokerURL: "tls://127.0.0.1:%[1]d", topic: room3/deviceinfo/json, username: edge, passwordSecret: mqtt-login/password}
`, port)
}

func TestMQTTPluginTLS(t *testing.T) {
	testenv.Plugin(t, "mqtt")
	ca, otherCA := mqttNewCA(t, "wapper test broker CA"), mqttNewCA(t, "some other CA")
	port := freePort(t)
	mq := startMosquittoTLS(t, t.TempDir(), ca, port)

	// The host's secrets: the CA and client certificate for grants.tls,
	// the password for grants.secrets.
	cliCert, _ := os.ReadFile(mq.cert)
	cliKey, _ := os.ReadFile(mq.key)
	secrets := t.TempDir()
	mqttWrite(t, secrets, map[string][]byte{
		"mqtt-ca/ca.crt":       ca.pem,
		"other-ca/ca.crt":      otherCA.pem,
		"mqtt-client/tls.crt":  cliCert,
		"mqtt-client/tls.key":  cliKey,
		"mqtt-login/password":  []byte(mq.password + "\n"),
		"not-granted/password": []byte("unused"),
	})
	// Host h runs examples/mqtt and two devices it refuses; host w a
	// MapperPlugin that trusts the wrong CA and grants no plain TCP.
	dir, wdir := t.TempDir(), t.TempDir()
	saWrite(t, filepath.Join(dir, "mqtt-plugin.yaml"), mqttExample(t, "mqtt-plugin.yaml", port))
	saWrite(t, filepath.Join(dir, "room-sensor.yaml"), mqttExample(t, "room-sensor.yaml", port))
	saWrite(t, filepath.Join(dir, "more.yaml"), mqttMore(port))
	saWrite(t, filepath.Join(wdir, "mqtt.yaml"), mqttWrongManifests(port))
	h := saStart(t, t.TempDir(), "--manifests", dir, "--secrets-dir", secrets)
	w := saStart(t, t.TempDir(), "--manifests", wdir, "--secrets-dir", secrets)

	// The device publishes its state (retained, so that it reaches the
	// plugin whenever it subscribes); the twins follow.
	mq.publish(t, "room1/deviceinfo/json", `{"temperature": 21.5, "setpoint": 20, "status": {"fan": true}}`, true)
	saEventually(t, "room1's twins from the device's message", 60*time.Second, func() error {
		d, err := h.device("default/room1")
		if err != nil {
			return err
		}
		for p, want := range map[string]string{"temperature": "21.5", "setpoint": "20", "fan": "true"} {
			if tw := d.twin(p); tw.Reported != want {
				return fmt.Errorf("%s twin %+v (device %s %s %q)", p, tw, d.Phase, d.State, d.Reason)
			}
		}
		return nil
	})
	saEventually(t, "room1's state ok", 30*time.Second, func() error {
		d, err := mqttDevice(h, "default/room1")
		if err == nil && d.State != "ok" {
			err = fmt.Errorf("state %s %q", d.State, d.StateReason)
		}
		return err
	})
	// A live message, not retained.
	mq.publish(t, "room1/deviceinfo/json", `{"temperature": 22.75}`, false)
	saEventually(t, "temperature 22.75", 30*time.Second, func() error {
		d, err := h.device("default/room1")
		if err == nil && d.twin("temperature").Reported != "22.75" {
			err = fmt.Errorf("temperature twin %+v", d.twin("temperature"))
		}
		return err
	})

	// A desired value through REST: the plugin publishes the command on
	// the device's setsinglevalue topic, where mosquitto_sub sees it.
	cmds := mq.subscribe(t, "room1/setsinglevalue/json")
	var tw struct {
		Twin saTwin `json:"twin"`
	}
	if code, err := h.do("PUT", "/api/v1/device/default/room1/setpoint?wait=20s", `{"value": 30}`, &tw); err != nil || code != 200 || tw.Twin.AppliedSeq != tw.Twin.DesiredSeq {
		t.Fatalf("PUT setpoint: %d %v %+v", code, err, tw.Twin)
	}
	select {
	case l := <-cmds:
		if l != `room1/setsinglevalue/json {"setpoint":30}` {
			t.Errorf("command %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mosquitto_sub saw no command")
	}
	if code, err := h.do("PUT", "/api/v1/device/default/room1/fan?wait=20s", `{"value": false}`, &tw); err != nil || code != 200 {
		t.Fatalf("PUT fan: %d %v %+v", code, err, tw.Twin)
	}
	select {
	case l := <-cmds:
		if l != `room1/setsinglevalue/json {"status":{"fan":false}}` {
			t.Errorf("command %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mosquitto_sub saw no fan command")
	}
	// The device applies it and says so; the reported value follows.
	mq.publish(t, "room1/deviceinfo/json", `{"temperature": 22.75, "setpoint": 30, "status": {"fan": false}}`, true)
	saEventually(t, "setpoint 30 reported by the device", 30*time.Second, func() error {
		d, err := h.device("default/room1")
		if err == nil && (d.twin("setpoint").Reported != "30" || d.twin("fan").Reported != "false") {
			err = fmt.Errorf("twins %+v", d.Twins)
		}
		return err
	})

	// Not granted: tcp:// to the broker, where only tls:// is granted.
	saEventually(t, "the refusal in room-plain's status", 60*time.Second, func() error {
		d, err := mqttDevice(w, "default/room-plain")
		if err != nil {
			return err
		}
		if d.State != "unhealthy" || !strings.Contains(d.StateReason, "denied") || !strings.Contains(d.StateReason, fmt.Sprintf("tcp://127.0.0.1:%d is not in grants.network", port)) {
			return fmt.Errorf("device %s %s %q", d.Phase, d.State, d.StateReason)
		}
		if e := d.twin("temperature").Error; !strings.Contains(e, "denied by grants") {
			return fmt.Errorf("temperature twin error %q", e)
		}
		return nil
	})
	// The wrong CA: the host does not trust the broker, and says why.
	saEventually(t, "the TLS error in room-wrong-ca's status", 60*time.Second, func() error {
		d, err := mqttDevice(w, "default/room-wrong-ca")
		if err != nil {
			return err
		}
		if d.State != "unhealthy" || !strings.Contains(d.StateReason, "TLS: the server's certificate is not trusted") || !strings.Contains(d.StateReason, "certificate signed by unknown authority") {
			return fmt.Errorf("device %s %s %q", d.Phase, d.State, d.StateReason)
		}
		return nil
	})
	// A password whose Secret grants.secrets does not list.
	saEventually(t, "the secret's refusal in room-secret's status", 60*time.Second, func() error {
		d, err := mqttDevice(h, "default/room-secret")
		if err != nil {
			return err
		}
		if d.State != "unhealthy" || !strings.Contains(d.StateReason, "passwordSecret: read secret not-granted/password: denied by grants") || !strings.Contains(d.StateReason, "grants.secrets") {
			return fmt.Errorf("device %s %s %q", d.Phase, d.State, d.StateReason)
		}
		return nil
	})
	// A password in the YAML: refused, with what to do instead.
	saEventually(t, "room-password refused", 30*time.Second, func() error {
		d, err := h.device("default/room-password")
		if err != nil {
			return err
		}
		if d.Phase != "Error" || !strings.Contains(d.Reason, `"password" is not accepted`) || !strings.Contains(d.Reason, "passwordSecret") {
			return fmt.Errorf("device %s %s %q", d.Phase, d.State, d.Reason)
		}
		return nil
	})
	for _, hk := range []struct {
		h   *saHost
		key string
	}{{w, "default/room-plain"}, {w, "default/room-wrong-ca"}, {h, "default/room-secret"}, {h, "default/room-password"}} {
		d, _ := mqttDevice(hk.h, hk.key)
		t.Logf("%s: phase %s %q, state %s %q", hk.key, d.Phase, d.Reason, d.State, d.StateReason)
	}
	for _, x := range []*saHost{h, w} {
		if logs := x.Logs(); strings.Contains(logs, mq.password) || strings.Contains(logs, "BEGIN PRIVATE KEY") {
			t.Errorf("a host log shows the password or the client key")
		}
	}
}
