package dmi

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/protobuf/proto"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/dmi/dmitest"
)

// TestEdgecoreFlow runs the whole DMI flow against a stand-in edgecore
// made of KubeEdge's generated stubs, with the real device manager and
// the virtual plugin.
func TestEdgecoreFlow(t *testing.T) {
	// 1. The host registers its protocol, naming its own socket.
	r := newRig(t, nil)
	ec, h, mapper, ctx := r.ec, r.h, r.mapper, context.Background()
	var reg *pb.MapperRegisterRequest
	ec.With(func() { reg = ec.Registrations[0] })
	if reg.Mapper.Protocol != "virtual" || string(reg.Mapper.Address) != h.b.Socket() || !reg.WithData || reg.Mapper.Name != "wapper-virtual" {
		t.Fatalf("registration = %v", reg)
	}

	// A new plugin's protocol is registered as it appears.
	h.setPlugins(mapperPlugin("virtual", "virtual"), mapperPlugin("virtual-b", "sim"))
	ec.WaitFor("MapperRegister for protocol sim", func() bool {
		return slices.ContainsFunc(ec.Registrations, func(r *pb.MapperRegisterRequest) bool { return r.Mapper.Protocol == "sim" })
	})

	// 2. The stand-in creates a model and registers two devices.
	model := r.createModel(t)
	r.register(t, model, "sim-1", "")
	r.register(t, model, "sim-2", "")

	// 3. Reports arrive carrying values: the counter goes up, the state is
	// reported.
	var first int
	ec.WaitFor("two counter values from sim-1", func() bool {
		var vals []int
		for _, r := range ec.Twins {
			if v, _, ok := dmitest.TwinValue(r, "counter"); ok && r.DeviceName == "sim-1" {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("counter twin %q is not an INT", v)
				}
				vals = append(vals, n)
			}
		}
		if len(vals) >= 2 {
			first = vals[0]
			return vals[len(vals)-1] > vals[0]
		}
		return false
	})
	ec.WaitFor("state of sim-1", func() bool {
		return slices.ContainsFunc(ec.States, func(s *pb.ReportDeviceStatesRequest) bool {
			return s.DeviceName == "sim-1" && s.DeviceNamespace == "default" && s.State == "ok"
		})
	})
	t.Logf("first counter value reported: %d", first)
	var last *pb.ReportDeviceStatusRequest
	ec.With(func() { last = ec.LastTwin("sim-1") })
	for _, tw := range last.ReportedDevice.Twins {
		if tw.Reported.Metadata["type"] != "int" || tw.Reported.Metadata["timestamp"] == "" {
			t.Errorf("twin %s metadata = %v, want type int and a timestamp", tw.PropertyName, tw.Reported.Metadata)
		}
	}

	// 4. A desired value reaches the plugin and the reported value follows.
	d := dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice("sim-1", "42")))
	if _, err := mapper.UpdateDevice(ctx, &pb.UpdateDeviceRequest{Device: d}); err != nil {
		t.Fatal(err)
	}
	ec.Hold("default", "sim-1", d, nil)
	ec.WaitFor("level reported as 42", func() bool {
		r := ec.LastTwin("sim-1")
		rep, des, _ := dmitest.TwinValue(r, "level")
		return rep == "42" && des == "42"
	})
	got, err := mapper.GetDevice(ctx, &pb.GetDeviceRequest{DeviceName: "sim-1", DeviceNamespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if rep, des, _ := dmitest.TwinValue(&pb.ReportDeviceStatusRequest{ReportedDevice: got.Device.Status}, "level"); rep != "42" || des != "42" {
		t.Fatalf("GetDevice twins = %v", got.Device.Status.Twins)
	}
	if got.Device.Spec.GetDeviceModelReference() != "sim-model" {
		t.Fatalf("GetDevice spec = %v", got.Device.Spec)
	}

	// 5. The device is removed and its reports stop. The sender sends one
	// report at a time, so at most one report of sim-1 that was under way
	// can arrive after RemoveDevice returns; after that only sim-2 reports.
	if _, err := mapper.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: "sim-1", DeviceNamespace: "default"}); err != nil {
		t.Fatal(err)
	}
	ec.Hold("default", "sim-1", nil, nil)
	_, mark, _ := ec.Counts()
	ec.WaitFor("three reports of sim-2 after the removal", func() bool { return ec.CountTwins("sim-2", mark) >= 3 })
	ec.With(func() {
		late := ec.Twins[mark:]
		for i, r := range late {
			if r.DeviceName == "sim-1" && i > 0 {
				t.Errorf("report of removed device sim-1 arrived after %d later reports", i)
			}
		}
	})
	if _, err := h.mgr.Device("default", "sim-1"); !errors.Is(err, devices.ErrNotFound) {
		t.Errorf("manager still has sim-1: %v", err)
	}

	// 6. The stand-in goes away: reports wait in the outbox.
	ec.Stop()
	waitUntil(t, "the bridge to notice edgecore is gone", func() bool { return !h.b.ready.isOpen() })
	waitUntil(t, "a report queued while edgecore is down", func() bool { return h.b.out.len() > 0 })
	h.frozen.Store(true) // no newer reports replace the queued ones
	queued := h.b.out.snapshot()
	regsBefore, twinsBefore, statesBefore := ec.Counts()

	// 7. It comes back: the host registers again, with data, and the queued
	// reports arrive.
	ec.Restart()
	ec.WaitFor("registration after the restart", func() bool {
		n := 0
		for _, r := range ec.Registrations[regsBefore:] {
			if r.WithData {
				n++
			}
		}
		return n >= 2 // virtual and sim
	})
	ec.WaitFor("the queued reports", func() bool {
		for _, q := range queued {
			found := false
			if q.twins != nil {
				found = slices.ContainsFunc(ec.Twins[twinsBefore:], func(r *pb.ReportDeviceStatusRequest) bool { return proto.Equal(r, q.twins) })
			} else {
				found = slices.ContainsFunc(ec.States[statesBefore:], func(r *pb.ReportDeviceStatesRequest) bool { return proto.Equal(r, q.state) })
			}
			if !found {
				return false
			}
		}
		return true
	})
	h.frozen.Store(false)
	// The device edgecore still lists keeps running; the removed one stays
	// removed.
	_, mark, _ = ec.Counts()
	ec.WaitFor("sim-2 reports after the restart", func() bool { return ec.CountTwins("sim-2", mark) >= 2 })
	if _, err := h.mgr.Device("default", "sim-1"); !errors.Is(err, devices.ErrNotFound) {
		t.Errorf("manager has sim-1 again: %v", err)
	}
}
