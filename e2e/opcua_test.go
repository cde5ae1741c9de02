package e2e

// The OPC UA plugin (plugins/opcua) through the standalone host
// (bin/wapper-host) against a real node-opcua server: variables read by
// NodeId and by browse path, desired values written through REST and
// checked with gopcua's native client, a subscription's data changes as
// twins, Basic256Sha256 SignAndEncrypt with a user and password from
// Secrets, and the errors a device shows for an address the MapperPlugin
// does not grant, a password in configData and a wrong password.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

func opcuaManifests(s *opcuaServer, deniedPort int) string {
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: opcua}
spec:
  protocols: [opcua]
  module: {file: opcua.wasm}
  grants:
    network: ["tcp://127.0.0.1:%[2]d"]
    secrets: [opcua-client, opcua-ca, opcua-login, opcua-wrong]
  limits: {callTimeout: 5s, instances: 2}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: boiler-model, namespace: default}
spec:
  protocol: opcua
  properties:
    - {name: temperature, type: DOUBLE, accessMode: ReadOnly}
    - {name: count, type: INT, accessMode: ReadOnly}
    - {name: running, type: BOOLEAN, accessMode: ReadOnly}
    - {name: label, type: STRING, accessMode: ReadOnly}
    - {name: setpoint, type: DOUBLE, accessMode: ReadWrite}
    - {name: mode, type: INT, accessMode: ReadWrite}
    - {name: counter, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: boiler-lite, namespace: default}
spec:
  protocol: opcua
  properties:
    - {name: temperature, type: DOUBLE, accessMode: ReadOnly}
    - {name: setpoint, type: DOUBLE, accessMode: ReadWrite}
    - {name: counter, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler, namespace: default}
spec:
  deviceModelRef: {name: boiler-model}
  protocol:
    protocolName: opcua
    configData: {url: "%[1]s", publishingInterval: 100}
  properties:
    - name: temperature
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Temperature"}}
    - name: count
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {browsePath: "/Objects/2:Boiler/2:Count"}}
    - name: running
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Running"}}
    - name: label
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {browsePath: "/Objects/2:Boiler/2:Label"}}
    - name: setpoint
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Setpoint"}}
    - name: mode
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {browsePath: "/Objects/2:Boiler/2:Mode"}}
    - name: counter
      collectCycle: 600000
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Counter", subscribe: true}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler-secure, namespace: default}
spec:
  deviceModelRef: {name: boiler-lite}
  protocol:
    protocolName: opcua
    configData:
      url: "%[1]s"
      securityPolicy: Basic256Sha256
      securityMode: SignAndEncrypt
      certificateSecret: opcua-client
      caSecret: opcua-ca
      userName: %[4]s
      passwordSecret: opcua-login/password
      publishingInterval: 100
      channelLifetime: 10s
  properties:
    - name: temperature
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {browsePath: "/Objects/2:Boiler/2:Temperature"}}
    - name: setpoint
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Setpoint"}}
    - name: counter
      collectCycle: 600000
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Counter", subscribe: true}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler-denied, namespace: default}
spec:
  deviceModelRef: {name: boiler-lite}
  protocol:
    protocolName: opcua
    configData: {url: "opc.tcp://127.0.0.1:%[3]d"}
  properties:
    - name: temperature
      collectCycle: 500
      reportCycle: 500
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Temperature"}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler-plainpass, namespace: default}
spec:
  deviceModelRef: {name: boiler-lite}
  protocol:
    protocolName: opcua
    configData: {url: "%[1]s", userName: %[4]s, password: hunter2}
  properties:
    - name: temperature
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Temperature"}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler-wrongpass, namespace: default}
spec:
  deviceModelRef: {name: boiler-lite}
  protocol:
    protocolName: opcua
    configData:
      url: "%[1]s"
      securityPolicy: Basic256Sha256
      certificateSecret: opcua-client
      caSecret: opcua-ca
      userName: %[4]s
      passwordSecret: opcua-wrong/password
  properties:
    - name: temperature
      collectCycle: 1000
      reportCycle: 1000
      visitors: {protocolName: opcua, configData: {nodeID: "ns=2;s=Temperature"}}
`, s.url, s.port, deniedPort, opcuaUser)
}

// counterValues watches a device's counter twin for a while and returns
// the distinct values it reported.
func counterValues(t *testing.T, h *saHost, dev string, within time.Duration) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		if d, err := h.device("default/" + dev); err == nil {
			if v := d.twin("counter").Reported; v != "" {
				seen[v] = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return seen
}

func TestOPCUAThroughHost(t *testing.T) {
	s := startOPCUAServer(t, false)
	deniedPort := freePort(t)
	native := s.native(t)
	dir := t.TempDir()
	saWrite(t, filepath.Join(dir, "opcua.yaml"), opcuaManifests(s, deniedPort))
	h := saStart(t, t.TempDir(), "--manifests", dir, "--secrets-dir", s.secrets)

	want := map[string]string{"temperature": "21.5", "count": "42", "running": "true", "label": "boiler-1", "setpoint": "50", "mode": "1"}
	saEventually(t, "boiler twins read by NodeId and by browse path", 60*time.Second, func() error {
		d, err := h.device("default/boiler")
		if err != nil {
			return err
		}
		for p, v := range want {
			if tw := d.twin(p); tw.Reported != v {
				return fmt.Errorf("%s twin %+v, want %q (device %s %s %q)", p, tw, v, d.Phase, d.State, d.Reason)
			}
		}
		return nil
	})

	t.Run("subscription", func(t *testing.T) {
		// counter changes every 100 ms on the server; its collect cycle
		// is 10 minutes, so its twin moves only through the subscription.
		seen := counterValues(t, h, "boiler", 3*time.Second)
		if len(seen) < 5 {
			t.Fatalf("counter twin took %d values in 3 s through the subscription: %v", len(seen), seen)
		}
	})

	t.Run("write", func(t *testing.T) {
		var tw struct {
			Twin saTwin `json:"twin"`
		}
		code, err := h.do("PUT", "/api/v1/device/default/boiler/setpoint?wait=20s", `{"value": 72.25}`, &tw)
		if err != nil || code != 200 || tw.Twin.Reported != "72.25" {
			t.Fatalf("PUT setpoint: %d %v %+v", code, err, tw.Twin)
		}
		if v, err := nativeRead(native, "ns=2;s=Setpoint"); err != nil || v != 72.25 {
			t.Errorf("gopcua reads Setpoint = %v (%T), %v after the host wrote 72.25", v, v, err)
		}
		// An Int32 node found by its browse path: the plugin writes the
		// node's own type.
		code, err = h.do("PUT", "/api/v1/device/default/boiler/mode?wait=20s", `{"value": 3}`, &tw)
		if err != nil || code != 200 || tw.Twin.Reported != "3" {
			t.Fatalf("PUT mode: %d %v %+v", code, err, tw.Twin)
		}
		if v, err := nativeRead(native, "ns=2;s=Mode"); err != nil || v != int32(3) {
			t.Errorf("gopcua reads Mode = %v (%T), %v after the host wrote 3", v, v, err)
		}
		// gopcua writes; the twin follows at the collect cycle.
		if err := nativeWrite(native, "ns=2;s=Setpoint", 12.5); err != nil {
			t.Fatal(err)
		}
		saEventually(t, "setpoint twin after gopcua wrote 12.5", 20*time.Second, func() error {
			d, err := h.device("default/boiler")
			if err == nil && d.twin("setpoint").Reported != "12.5" {
				err = fmt.Errorf("setpoint twin %+v", d.twin("setpoint"))
			}
			return err
		})
		// A read-only property is refused by the host before the plugin.
		if code, err := h.do("PUT", "/api/v1/device/default/boiler/temperature", `{"value": 1}`, nil); err == nil {
			t.Errorf("PUT read-only temperature: %d, want an error", code)
		}
	})

	t.Run("Basic256Sha256", func(t *testing.T) {
		saEventually(t, "boiler-secure twins over SignAndEncrypt with a user", 60*time.Second, func() error {
			d, err := h.device("default/boiler-secure")
			if err != nil {
				return err
			}
			if tw := d.twin("temperature"); tw.Reported != "21.5" {
				return fmt.Errorf("temperature twin %+v (device %s %s %q)", tw, d.Phase, d.State, d.Reason)
			}
			return nil
		})
		if seen := counterValues(t, h, "boiler-secure", 3*time.Second); len(seen) < 5 {
			t.Errorf("secure counter twin took %d values in 3 s through the subscription: %v", len(seen), seen)
		}
		var tw struct {
			Twin saTwin `json:"twin"`
		}
		code, err := h.do("PUT", "/api/v1/device/default/boiler-secure/setpoint?wait=20s", `{"value": 33.5}`, &tw)
		if err != nil || code != 200 || tw.Twin.Reported != "33.5" {
			t.Fatalf("PUT setpoint over SignAndEncrypt: %d %v %+v", code, err, tw.Twin)
		}
		if v, err := nativeRead(native, "ns=2;s=Setpoint"); err != nil || v != 33.5 {
			t.Errorf("gopcua reads Setpoint = %v, %v after the secure write of 33.5", v, err)
		}
		// The channel's security token lives 10 s and is renewed at 7.5 s
		// on the connection that is open then (the host may move the
		// device between its two plugin instances, each with its own
		// connection): the renewal shows in the log, and no connection is
		// dropped or call failed.
		saEventually(t, "a security token renewal of boiler-secure", 30*time.Second, func() error {
			for _, line := range strings.Split(h.Logs(), "\n") {
				if strings.Contains(line, "boiler-secure") && strings.Contains(line, "OPC UA security token renewed") {
					return nil
				}
			}
			return fmt.Errorf("no renewal in the log")
		})
		if seen := counterValues(t, h, "boiler-secure", time.Second); len(seen) < 2 {
			t.Errorf("secure counter twin after the token renewal: %v", seen)
		}
		for _, line := range strings.Split(h.Logs(), "\n") {
			if strings.Contains(line, "boiler-secure") && (strings.Contains(line, "read failed") ||
				strings.Contains(line, "poll failed") || strings.Contains(line, "OPC UA connection dropped")) {
				t.Errorf("boiler-secure: %s", line)
			}
		}
	})

	t.Run("example", func(t *testing.T) {
		// examples/opcua, pointed at this server, in a host of its own.
		dir := t.TempDir()
		for _, name := range []string{"opcua-plugin.yaml", "boiler.yaml"} {
			b, err := os.ReadFile(filepath.Join(testenv.Root(), "examples/opcua", name))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "192.0.2.30:4840") {
				t.Fatalf("examples/opcua/%s no longer names the server 192.0.2.30:4840", name)
			}
			saWrite(t, filepath.Join(dir, name), strings.ReplaceAll(string(b), "192.0.2.30:4840", "127.0.0.1:"+strconv.Itoa(s.port)))
		}
		e := saStart(t, t.TempDir(), "--manifests", dir, "--secrets-dir", s.secrets)
		saEventually(t, "examples/opcua boiler-1 twins", 60*time.Second, func() error {
			d, err := e.device("default/boiler-1")
			if err != nil {
				return err
			}
			for p, v := range map[string]string{"temperature": "21.5", "running": "true"} {
				if tw := d.twin(p); tw.Reported != v {
					return fmt.Errorf("%s twin %+v, want %q (device %s %s %q)", p, tw, v, d.Phase, d.State, d.Reason)
				}
			}
			if d.twin("counter").Reported == "" {
				return fmt.Errorf("no counter yet")
			}
			return nil
		})
		if seen := counterValues(t, e, "boiler-1", 2500*time.Millisecond); len(seen) < 2 {
			t.Errorf("example counter twin took %v in 2.5 s through the subscription", seen)
		}
	})

	t.Run("errors", func(t *testing.T) {
		saEventually(t, "refusal in boiler-denied's status", 30*time.Second, func() error {
			d, err := h.device("default/boiler-denied")
			if err != nil {
				return err
			}
			status := d.Reason + " " + d.twin("temperature").Error
			if !strings.Contains(status, "denied") || !strings.Contains(status, "127.0.0.1:"+strconv.Itoa(deniedPort)) {
				return fmt.Errorf("device %s %s %q, twins %+v", d.Phase, d.State, d.Reason, d.Twins)
			}
			return nil
		})
		saEventually(t, "the password in configData refused", 30*time.Second, func() error {
			d, err := h.device("default/boiler-plainpass")
			if err != nil {
				return err
			}
			if d.Phase != "Error" || !strings.Contains(d.Reason, `"password" must not be in configData`) || !strings.Contains(d.Reason, "passwordSecret") {
				return fmt.Errorf("device %s %q", d.Phase, d.Reason)
			}
			return nil
		})
		saEventually(t, "the wrong password in boiler-wrongpass's status", 30*time.Second, func() error {
			d, err := h.device("default/boiler-wrongpass")
			if err != nil {
				return err
			}
			status := d.Reason + " " + d.twin("temperature").Error
			if !strings.Contains(status, "BadUserAccessDenied") || !strings.Contains(status, opcuaUser) {
				return fmt.Errorf("device %s %s %q, twins %+v", d.Phase, d.State, d.Reason, d.Twins)
			}
			return nil
		})
		logs := h.Logs()
		if !strings.Contains(logs, "refused by grants") {
			t.Errorf("the host log does not show the refusal")
		}
		if strings.Contains(logs, s.password) {
			t.Errorf("the host log holds the password")
		}
	})
}
