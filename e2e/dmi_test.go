package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/host/dmi/dmitest"
)

// dmiDir returns a folder with a short path for unix sockets (at most 107
// bytes).
func dmiDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "wdmi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func dmiModel(name string) *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "virtual", Properties: []v1beta1.ModelProperty{
			{Name: "ticks", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly},
			{Name: "setpoint", Type: v1beta1.DOUBLE, AccessMode: v1beta1.ReadWrite},
		}},
	}
}

func dmiDevice(name, model, setpoint string) *v1beta1.Device {
	cv := func(m map[string]any) *v1beta1.CustomizedValue { return &v1beta1.CustomizedValue{Data: m} }
	return &v1beta1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1beta1.DeviceSpec{
			DeviceModelRef: &corev1.LocalObjectReference{Name: model},
			Protocol:       v1beta1.ProtocolConfig{ProtocolName: "virtual", ConfigData: cv(map[string]any{"site": "hall 2", "bus": 3})},
			StateReport:    &v1beta1.StateReportConfig{ReportCycle: 500, ReportToCloud: true},
			Properties: []v1beta1.DeviceProperty{
				{Name: "ticks", CollectCycle: 100, ReportCycle: 200, ReportToCloud: true,
					Visitors: v1beta1.VisitorConfig{ProtocolName: "virtual", ConfigData: cv(map[string]any{"kind": "counter"})}},
				{Name: "setpoint", CollectCycle: 100, ReportCycle: 200, ReportToCloud: true, Desired: v1beta1.TwinProperty{Value: setpoint},
					Visitors: v1beta1.VisitorConfig{ProtocolName: "virtual", ConfigData: cv(map[string]any{"kind": "setpoint", "initial": 20.5})}},
			},
		},
	}
}

// TestDMIWithWapperHost runs bin/wapper-host with --dmi beside a stand-in
// edgecore (KubeEdge's generated stubs) and the manifests of
// examples/standalone: devices from both sources at once, conflicts
// refused, reports and desired values, edgecore restarts and a host restart.
func TestDMIWithWapperHost(t *testing.T) {
	dir := dmiDir(t)
	ecSock, hostSock := filepath.Join(dir, "dmi.sock"), filepath.Join(dir, "wapper.sock")
	ec := dmitest.Start(t, ecSock)
	state := filepath.Join(dir, "state")
	args := []string{"--manifests", saManifests(t, nil), "--dmi", "--dmi-socket", hostSock, "--edgecore-socket", ecSock, "--dmi-report-rate", "100"}
	h := saStart(t, state, args...)
	ctx := context.Background()

	ec.WaitFor("MapperRegister for protocol virtual", func() bool {
		return slices.ContainsFunc(ec.Registrations, func(r *pb.MapperRegisterRequest) bool {
			return r.Mapper.Protocol == "virtual" && string(r.Mapper.Address) == hostSock && r.WithData
		})
	})
	mapper := ec.Mapper()

	// A model and a device from edgecore run beside the manifests' thermostat.
	model := dmitest.Model(t, dmitest.JSONRoundTrip(t, dmiModel("press-model")))
	dev := dmitest.Device(t, dmitest.JSONRoundTrip(t, dmiDevice("press", "press-model", "")))
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: model}); err != nil {
		t.Fatal(err)
	}
	if _, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: dev}); err != nil {
		t.Fatal(err)
	}
	ec.Hold("default", "press", dev, model)
	devs := h.devices()
	if devs["default/press"].Source != "dmi" || devs["default/thermostat"].Source != "manifests" {
		t.Fatalf("devices: %+v", devs)
	}
	// Three reports with rising values, in order. A report may repeat the
	// last value when the machine is too busy to collect between two
	// reports; that says nothing about the bridge.
	ec.WaitFor("rising ticks from press", func() bool {
		var last, n int
		for _, r := range ec.Twins {
			if v, _, ok := dmitest.TwinValue(r, "ticks"); ok && r.DeviceName == "press" {
				if x, _ := strconv.Atoi(v); n == 0 || x > last {
					last, n = x, n+1
				}
			}
		}
		return n >= 3
	})
	ec.WaitFor("press state", func() bool {
		return slices.ContainsFunc(ec.States, func(s *pb.ReportDeviceStatesRequest) bool { return s.DeviceName == "press" && s.State == "ok" })
	})

	// Names the manifests own are refused, never merged.
	_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: dmitest.Device(t, dmitest.JSONRoundTrip(t, dmiDevice("thermostat", "press-model", "")))})
	if st := status.Convert(err); st.Code() != codes.AlreadyExists || !strings.Contains(st.Message(), `owned by source "manifests"`) {
		t.Fatalf("RegisterDevice thermostat: %v", err)
	}
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: dmitest.Model(t, dmiModel("thermostat-model"))}); err != nil {
		t.Fatal(err)
	}
	_, err = mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: dmitest.Device(t, dmitest.JSONRoundTrip(t, dmiDevice("other", "thermostat-model", "")))})
	if st := status.Convert(err); st.Code() != codes.AlreadyExists || !strings.Contains(st.Message(), "DeviceModel default/thermostat-model") {
		t.Fatalf("RegisterDevice with the manifests' model name: %v", err)
	}
	if d := h.devices()["default/thermostat"]; d.Source != "manifests" || d.Phase != "Running" {
		t.Fatalf("thermostat after the conflicts: %+v", d)
	}

	// A desired value from the cloud arrives as UpdateDevice.
	dev = dmitest.Device(t, dmitest.JSONRoundTrip(t, dmiDevice("press", "press-model", "7.25")))
	if _, err := mapper.UpdateDevice(ctx, &pb.UpdateDeviceRequest{Device: dev}); err != nil {
		t.Fatal(err)
	}
	ec.Hold("default", "press", dev, model)
	ec.WaitFor("setpoint 7.25 reported", func() bool {
		rep, des, _ := dmitest.TwinValue(ec.LastTwin("press"), "setpoint")
		return rep == "7.25" && des == "7.25"
	})

	// Edgecore restarts: the host registers again, with data.
	ec.Stop()
	regs, _, _ := ec.Counts()
	ec.Restart()
	ec.WaitFor("registration after the edgecore restart", func() bool {
		return slices.ContainsFunc(ec.Registrations[regs:], func(r *pb.MapperRegisterRequest) bool { return r.WithData })
	})
	_, mark, _ := ec.Counts()
	ec.WaitFor("reports after the edgecore restart", func() bool { return ec.CountTwins("press", mark) >= 2 })

	// The host restarts while edgecore is down: the device comes back from
	// the host's state and from edgecore's registration answer.
	ec.Stop()
	h.stop()
	if _, err := os.Stat(hostSock); !os.IsNotExist(err) {
		t.Errorf("DMI socket left behind after a clean stop: %v", err)
	}
	h = saStart(t, state, args...)
	ec.Restart()
	_, mark, _ = ec.Counts()
	ec.WaitFor("reports from the restarted host", func() bool { return ec.CountTwins("press", mark) >= 2 })
	ec.WaitFor("setpoint still 7.25", func() bool {
		rep, _, _ := dmitest.TwinValue(ec.LastTwin("press"), "setpoint")
		return rep == "7.25"
	})
}
