package dmi

import (
	"context"
	"errors"
	"strings"
	"testing"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/manifest"
)

// cameraYAML is shaped like KubeEdge's USB camera example
// (mappers-go usbcamera-dmi): every property has a desired value, also
// the ReadOnly ones, which a mapper must not write.
const cameraYAML = `
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: camera-model, namespace: default}
spec:
  protocol: virtual
  properties:
  - {name: Framerate, description: Framerate, type: INT, accessMode: ReadWrite}
  - {name: Input, description: Input, type: INT, accessMode: ReadOnly}
  - {name: BusInfo, description: BusInfo, type: STRING, accessMode: ReadOnly}
  - {name: ImageTrigger, type: STRING, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: camera-usb-0
  namespace: default
  labels: {model: camera-model}
spec:
  deviceModelRef: {name: camera-model}
  protocol:
    protocolName: virtual
    configData: {deviceID: 0, width: 640, height: 480, format: 0x56595559, serialPort: /dev/video0, protocolID: 0}
  properties:
  - name: Framerate
    desired: {value: "30", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 15}}
    reportToCloud: true
    collectCycle: 100
    reportCycle: 150
  - name: Input
    desired: {value: "0", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: counter}}
    reportToCloud: true
    collectCycle: 100
    reportCycle: 150
  - name: BusInfo
    desired: {value: "usb-0000:02:02.0-1", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "usb-0000:00:14.0-1"}}
    reportToCloud: true
    collectCycle: 100
    reportCycle: 150
  - name: ImageTrigger
    desired: {value: "", metadata: {timestamp: '1550049403598'}}
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "idle"}}
    reportToCloud: false
`

// TestReadOnlyDesiredIsIgnored registers a device whose Device sets
// desired values on ReadOnly properties, as KubeEdge's USB camera example
// does: like mapper-framework, the bridge runs it, writes only the
// ReadWrite property and reports every property as read.
func TestReadOnlyDesiredIsIgnored(t *testing.T) {
	r := newRig(t, nil)
	ec, h, mapper, ctx := r.ec, r.h, r.mapper, context.Background()
	set := manifest.Parse("camera.yaml", []byte(cameraYAML))
	if len(set.Problems) > 0 || len(set.Devices) != 1 || len(set.Models) != 1 {
		t.Fatalf("camera manifest: %+v", set.Problems)
	}
	m := dmitest.Model(t, dmitest.JSONRoundTrip(t, set.Models[0]))
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: m}); err != nil {
		t.Fatal(err)
	}
	d := dmitest.Device(t, dmitest.JSONRoundTrip(t, set.Devices[0]))
	if _, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: d}); err != nil {
		t.Fatalf("RegisterDevice with desired values on ReadOnly properties: %v", err)
	}
	ec.Hold("default", "camera-usb-0", d, m)

	ec.WaitFor("Framerate written and every reported property read", func() bool {
		r := ec.LastTwin("camera-usb-0")
		fr, _, _ := dmitest.TwinValue(r, "Framerate")
		in, _, _ := dmitest.TwinValue(r, "Input")
		bus, _, _ := dmitest.TwinValue(r, "BusInfo")
		return fr == "30" && in != "" && bus != ""
	})
	var last *pb.ReportDeviceStatusRequest
	ec.With(func() { last = ec.LastTwin("camera-usb-0") })
	if bus, _, _ := dmitest.TwinValue(last, "BusInfo"); bus != "usb-0000:00:14.0-1" {
		t.Errorf("BusInfo reported %q: the desired value on a ReadOnly property was written", bus)
	}
	st, err := h.mgr.Device("default", "camera-usb-0")
	if err != nil || st.Phase != devices.PhaseRunning {
		t.Fatalf("camera device: %+v, %v", st, err)
	}
	for _, tw := range st.Twins {
		if tw.AccessMode == "ReadOnly" && tw.Desired != "" {
			t.Errorf("ReadOnly %s has desired value %q", tw.Property, tw.Desired)
		}
	}
}

// teleport makes the virtual plugin refuse a sim device.
func teleport(t *testing.T, d *pb.Device) *pb.Device {
	kind, err := anypb.New(wrapperspb.String("teleport"))
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Properties[0].Visitors.ConfigData.Data["kind"] = kind
	return d
}

// registerRefused registers a sim device its plugin refuses, and holds it
// in the stand-in, as edgecore keeps a device it failed to register.
func (r *rig) registerRefused(t *testing.T, m *pb.DeviceModel, name string) *pb.Device {
	t.Helper()
	d := teleport(t, dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice(name, ""))))
	_, err := r.mapper.RegisterDevice(context.Background(), &pb.RegisterDeviceRequest{Device: d})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "cannot run") {
		t.Fatalf("RegisterDevice of %s: %v, want InvalidArgument cannot run", name, err)
	}
	r.ec.Hold("default", name, d, m)
	return d
}

// TestRefusedDeviceCanBeRemoved: a device refused at RegisterDevice is
// removed by RemoveDevice (edgecore keeps a device whose removal fails and
// lists it again at every MapperRegister), corrected by UpdateDevice, and
// removals of unknown devices and models succeed.
func TestRefusedDeviceCanBeRemoved(t *testing.T) {
	r := newRig(t, nil)
	ec, h, mapper, ctx := r.ec, r.h, r.mapper, context.Background()
	model := r.createModel(t)

	r.registerRefused(t, model, "bad")
	if st, err := h.mgr.Device("default", "bad"); err != nil || st.Phase != devices.PhaseError {
		t.Fatalf("refused device in the manager: %+v, %v", st, err)
	}
	if _, err := mapper.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: "bad", DeviceNamespace: "default"}); err != nil {
		t.Fatalf("RemoveDevice of a refused device: %v", err)
	}
	ec.Hold("default", "bad", nil, nil)
	if _, err := h.mgr.Device("default", "bad"); !errors.Is(err, devices.ErrNotFound) {
		t.Fatalf("manager still has the removed device: %v", err)
	}
	for _, ds := range h.mgr.Devices() {
		if ds.Name == "bad" {
			t.Fatalf("manager lists the removed device: %+v", ds)
		}
	}

	// Removing what the mapper does not have is an idempotent success.
	if _, err := mapper.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: "bad", DeviceNamespace: "default"}); err != nil {
		t.Errorf("second RemoveDevice: %v", err)
	}
	if _, err := mapper.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: "ghost"}); err != nil {
		t.Errorf("RemoveDevice of an unknown device: %v", err)
	}
	if _, err := mapper.RemoveDeviceModel(ctx, &pb.RemoveDeviceModelRequest{ModelName: "ghost-model", ModelNamespace: "default"}); err != nil {
		t.Errorf("RemoveDeviceModel of an unknown model: %v", err)
	}

	// A refused device that UpdateDevice corrects runs.
	r.registerRefused(t, model, "fixme")
	good := dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice("fixme", "")))
	if _, err := mapper.UpdateDevice(ctx, &pb.UpdateDeviceRequest{Device: good}); err != nil {
		t.Fatalf("UpdateDevice correcting a refused device: %v", err)
	}
	ec.Hold("default", "fixme", good, model)
	if st, err := h.mgr.Device("default", "fixme"); err != nil || st.Phase != devices.PhaseRunning {
		t.Fatalf("corrected device: %+v, %v", st, err)
	}
	_, mark, _ := ec.Counts()
	ec.WaitFor("reports of the corrected device", func() bool { return ec.CountTwins("fixme", mark) >= 1 })
}

// TestRestartForgetsRemovedRefusedDevices restarts the host (bridge and
// manager on the same state) and checks that no refused device comes back
// that edgecore no longer has: one removed before the restart, one
// edgecore dropped while the host was down, and one a version that did
// not record refused devices left in the manager. A refused device
// edgecore lists at MapperRegister is held and can then be removed.
func TestRestartForgetsRemovedRefusedDevices(t *testing.T) {
	r := newRig(t, nil)
	ec, h, ctx := r.ec, r.h, context.Background()
	model := r.createModel(t)
	r.register(t, model, "good", "")
	r.registerRefused(t, model, "removed")
	if _, err := r.mapper.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: "removed", DeviceNamespace: "default"}); err != nil {
		t.Fatalf("RemoveDevice of a refused device: %v", err)
	}
	ec.Hold("default", "removed", nil, nil)
	r.registerRefused(t, model, "dropped")
	orphan, err := DeviceFromDMI(teleport(t, dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice("orphan", "")))))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.mgr.UpsertDevice(ctx, Source, orphan); err != nil {
		t.Fatal(err)
	}

	h.close()
	ec.Hold("default", "dropped", nil, nil) // deleted while the host was down
	// Edgecore has a device that the new host refuses at MapperRegister.
	late := teleport(t, dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice("late", ""))))
	ec.Hold("default", "late", late, model)
	regs, _, _ := ec.Counts()
	h2 := newTestHost(t, h.dir)
	ec.WaitFor("registration of the new host", func() bool { return len(ec.Registrations) > regs })
	mapper := ec.Mapper()

	waitUntil(t, "the refused device edgecore lists", func() bool {
		st, err := h2.mgr.Device("default", "late")
		return err == nil && st.Phase == devices.PhaseError
	})
	waitUntil(t, "the device edgecore dropped to go", func() bool {
		_, err := h2.mgr.Device("default", "dropped")
		return errors.Is(err, devices.ErrNotFound)
	})
	for _, name := range []string{"removed", "orphan"} {
		if _, err := h2.mgr.Device("default", name); !errors.Is(err, devices.ErrNotFound) {
			t.Errorf("device %s came back after the restart: %v", name, err)
		}
	}
	if st, err := h2.mgr.Device("default", "good"); err != nil || st.Phase != devices.PhaseRunning {
		t.Errorf("good device after the restart: %+v, %v", st, err)
	}

	if _, err := mapper.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: "late", DeviceNamespace: "default"}); err != nil {
		t.Fatalf("RemoveDevice of a device refused at MapperRegister: %v", err)
	}
	ec.Hold("default", "late", nil, nil)
	if _, err := h2.mgr.Device("default", "late"); !errors.Is(err, devices.ErrNotFound) {
		t.Fatalf("manager still has the device refused at MapperRegister: %v", err)
	}
}
