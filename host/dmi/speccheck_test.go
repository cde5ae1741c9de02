package dmi

import (
	"context"
	"strings"
	"testing"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/manifest"
)

// TestInvalidSpecDesiredRuns: a desired value that is not valid for its
// ReadWrite property's type no longer refuses the device at RegisterDevice
// (mapper-framework skips only that write): it runs, the property is read
// and reported, and its twin says why the value is not written.
func TestInvalidSpecDesiredRuns(t *testing.T) {
	r := newRig(t, nil)
	ec, h, mapper, ctx := r.ec, r.h, r.mapper, context.Background()
	set := manifest.Parse("camera.yaml", []byte(cameraYAML))
	if len(set.Problems) > 0 {
		t.Fatalf("camera manifest: %+v", set.Problems)
	}
	set.Devices[0].Spec.Properties[0].Desired.Value = "fast" // Framerate is a ReadWrite INT
	m := dmitest.Model(t, dmitest.JSONRoundTrip(t, set.Models[0]))
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: m}); err != nil {
		t.Fatal(err)
	}
	d := dmitest.Device(t, dmitest.JSONRoundTrip(t, set.Devices[0]))
	if _, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: d}); err != nil {
		t.Fatalf("RegisterDevice with an invalid desired value: %v", err)
	}
	ec.Hold("default", "camera-usb-0", d, m)
	ec.WaitFor("Framerate reported", func() bool {
		fr, _, _ := dmitest.TwinValue(ec.LastTwin("camera-usb-0"), "Framerate")
		return fr != ""
	})
	var last *pb.ReportDeviceStatusRequest
	ec.With(func() { last = ec.LastTwin("camera-usb-0") })
	if fr, _, _ := dmitest.TwinValue(last, "Framerate"); fr != "15" {
		t.Errorf("Framerate reported %q, want the plugin's 15", fr)
	}
	st, err := h.mgr.Device("default", "camera-usb-0")
	if err != nil || st.Phase != devices.PhaseRunning {
		t.Fatalf("camera device: %+v, %v", st, err)
	}
	for _, tw := range st.Twins {
		if tw.Property == "Framerate" && !strings.Contains(tw.Error, `"fast"`) {
			t.Errorf("Framerate twin error %q does not name the value not written", tw.Error)
		}
	}
}

// TestModelPropertyWithoutType: over DMI a DeviceModel property with no
// type is refused when a device would run it, naming the property and the
// accepted types, instead of reaching the plugin as Type(0).
func TestModelPropertyWithoutType(t *testing.T) {
	r := newRig(t, nil)
	mapper, ctx := r.mapper, context.Background()
	set := manifest.Parse("camera.yaml", []byte(cameraYAML))
	if len(set.Problems) > 0 {
		t.Fatalf("camera manifest: %+v", set.Problems)
	}
	set.Models[0].Spec.Properties[2].Type = "" // BusInfo
	m := dmitest.Model(t, dmitest.JSONRoundTrip(t, set.Models[0]))
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: m}); err != nil {
		t.Fatal(err)
	}
	d := dmitest.Device(t, dmitest.JSONRoundTrip(t, set.Devices[0]))
	_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: d})
	const want = `spec.properties[2].type: property "BusInfo" has no type; use one of INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM`
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), want) {
		t.Fatalf("RegisterDevice with an untyped model property: %v, want InvalidArgument ~%q", err, want)
	}
}
