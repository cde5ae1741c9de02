package e2e

// The Modbus plugin through the standalone host (bin/wapper-host): KubeEdge
// Device and DeviceModel YAML, a MapperPlugin with network grants, a real
// Modbus TCP server, mbpoll as an independent client, and a device whose
// address is not granted, whose refusal reaches its status.

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func modbusManifests(port, deniedPort int) string {
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: modbus}
spec:
  protocols: [modbus]
  module: {file: modbus.wasm}
  grants:
    network: ["tcp://127.0.0.1:%[1]d"]
  limits: {callTimeout: 2s, instances: 2}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plc-model, namespace: default}
spec:
  protocol: modbus
  properties:
    - {name: setpoint, type: INT, accessMode: ReadWrite}
    - {name: temperature, type: DOUBLE, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: plc-1, namespace: default}
spec:
  deviceModelRef: {name: plc-model}
  protocol:
    protocolName: modbus
    configData: {ip: 127.0.0.1, port: %[1]d, slaveID: 1, timeout: 500}
  properties:
    - name: setpoint
      collectCycle: 200
      reportCycle: 200
      visitors:
        protocolName: modbus
        configData: {register: HoldingRegister, offset: 10, limit: 1, dataType: int16}
    - name: temperature
      collectCycle: 200
      reportCycle: 200
      visitors:
        protocolName: modbus
        configData: {register: InputRegister, offset: 5, limit: 1, scale: 0.1}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: plc-denied, namespace: default}
spec:
  deviceModelRef: {name: plc-model}
  protocol:
    protocolName: modbus
    configData: {ip: 127.0.0.1, port: %[2]d, slaveID: 1, timeout: 500}
  properties:
    - name: setpoint
      collectCycle: 200
      reportCycle: 200
      visitors:
        protocolName: modbus
        configData: {register: HoldingRegister, offset: 10}
    - name: temperature
      collectCycle: 200
      reportCycle: 200
      visitors:
        protocolName: modbus
        configData: {register: InputRegister, offset: 5, scale: 0.1}
`, port, deniedPort)
}

func TestModbusThroughHost(t *testing.T) {
	port, deniedPort := freePort(t), freePort(t)
	regs := &regMap{}
	regs.input[5] = 251
	regs.holding[10] = 7
	startModbusServer(t, port, regs)
	startModbusServer(t, deniedPort, &regMap{})
	dir := t.TempDir()
	saWrite(t, filepath.Join(dir, "modbus.yaml"), modbusManifests(port, deniedPort))
	h := saStart(t, t.TempDir(), "--manifests", dir)

	saEventually(t, "plc-1 twins reported from the server", 60*time.Second, func() error {
		d, err := h.device("default/plc-1")
		if err != nil {
			return err
		}
		if tw := d.twin("temperature"); tw.Reported != "25.1" {
			return fmt.Errorf("temperature twin %+v (device %s %s %s)", tw, d.Phase, d.State, d.Reason)
		}
		if tw := d.twin("setpoint"); tw.Reported != "7" {
			return fmt.Errorf("setpoint twin %+v", tw)
		}
		return nil
	})

	// A desired value through the host's REST API reaches the register;
	// mbpoll, an independent client, reads it back.
	var tw struct {
		Twin saTwin `json:"twin"`
	}
	code, err := h.do("PUT", "/api/v1/device/default/plc-1/setpoint?wait=20s", `{"value": 77}`, &tw)
	if err != nil || code != 200 || tw.Twin.Reported != "77" {
		t.Fatalf("PUT setpoint: %d %v %+v", code, err, tw.Twin)
	}
	if got := mbpoll(t, port, []string{"-t", "4", "-r", "10"}); got[10] != "77" {
		t.Errorf("mbpoll reads holding 10 = %q after the host wrote 77", got[10])
	}
	// mbpoll writes; the host's twin follows at the collect cycle.
	mbpoll(t, port, []string{"-t", "4", "-r", "10"}, "1234")
	saEventually(t, "setpoint twin after mbpoll wrote 1234", 30*time.Second, func() error {
		d, err := h.device("default/plc-1")
		if err == nil && d.twin("setpoint").Reported != "1234" {
			err = fmt.Errorf("setpoint twin %+v", d.twin("setpoint"))
		}
		return err
	})

	// The device whose address is not granted shows the refusal.
	saEventually(t, "refusal in plc-denied's status", 30*time.Second, func() error {
		d, err := h.device("default/plc-denied")
		if err != nil {
			return err
		}
		status := d.Reason + " " + d.twin("setpoint").Error + " " + d.twin("temperature").Error
		if !strings.Contains(status, "denied") || !strings.Contains(status, fmt.Sprintf("127.0.0.1:%d", deniedPort)) {
			return fmt.Errorf("device %s %s %q, twins %+v", d.Phase, d.State, d.Reason, d.Twins)
		}
		return nil
	})
	if !strings.Contains(h.Logs(), "refused by grants") {
		t.Errorf("the host log does not show the refusal")
	}
}
