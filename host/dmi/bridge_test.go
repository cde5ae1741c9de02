package dmi

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/testenv"
)

// testHost is a device manager running the virtual plugin, with a bridge.
type testHost struct {
	t       testing.TB
	mgr     *devices.Manager
	b       *Bridge
	dir     string
	frozen  atomic.Bool // Status fails: no new reports are queued
	plugins []*v1alpha1.MapperPlugin
	cancel  context.CancelFunc
	done    chan error
	close   func() // stops the bridge and closes the manager and the store, once
}

// frozenDevices fails Status while the host is frozen.
type frozenDevices struct {
	Devices
	h *testHost
}

func (f frozenDevices) Status(ns, name string) (Status, error) {
	if f.h.frozen.Load() {
		return Status{}, errors.New("frozen by the test")
	}
	return f.Devices.Status(ns, name)
}

func mapperPlugin(name string, protocols ...string) *v1alpha1.MapperPlugin {
	return &v1alpha1.MapperPlugin{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.MapperPluginSpec{Protocols: protocols, Module: v1alpha1.Module{File: "virtual.wasm"}},
	}
}

// shortDir returns a temporary folder with a short path: unix socket
// paths are limited to 107 bytes.
func shortDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "dmi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newTestHost(t testing.TB, dir string) *testHost {
	virtual := testenv.Plugin(t, "virtual")
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: logLevel(t)}))
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(dir, "cache"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := devices.New(devices.Options{
		Engine: eng, Store: st, Logger: log,
		Modules:             devices.ModuleLoader{PluginDir: filepath.Dir(virtual), CacheDir: filepath.Join(dir, "modules")},
		DefaultCollectCycle: 100 * time.Millisecond, DefaultReportCycle: 100 * time.Millisecond, StateCycle: 200 * time.Millisecond, FlushInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &testHost{t: t, mgr: mgr, dir: dir, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if err := mgr.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	h.setPlugins(mapperPlugin("virtual", "virtual"))
	b, err := New(Options{
		Devices: frozenDevices{FromManager(mgr), h},
		DB:      st.DB(), Socket: filepath.Join(dir, "wapper.sock"), EdgecoreSocket: filepath.Join(dir, "dmi.sock"),
		Version: "test", Logger: log,
		ReportRate: 500, ReportBurst: 20, DefaultReportCycle: 500 * time.Millisecond, ModelWait: 300 * time.Millisecond,
		ProtocolPoll: 50 * time.Millisecond, SyncInterval: 50 * time.Millisecond, MaxMessageBytes: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	go func() { h.done <- b.Run(ctx) }()
	h.close = sync.OnceFunc(func() {
		h.stop()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		mgr.Close(cctx)
		eng.Close(cctx)
		st.Close()
	})
	t.Cleanup(h.close)
	return h
}

func (h *testHost) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("bridge Run: %v", err)
	}
	h.cancel = nil
}

// setPlugins applies MapperPlugins from the manifests source; the bridge
// registers the protocols of those that load.
func (h *testHost) setPlugins(ps ...*v1alpha1.MapperPlugin) {
	h.plugins = ps
	if err := h.mgr.Apply(context.Background(), "manifests", devices.ResourceSet{Plugins: ps}); err != nil {
		h.t.Fatal(err)
	}
}

// logLevel logs everything in tests and only warnings in benchmarks.
func logLevel(t testing.TB) slog.Level {
	if _, ok := t.(*testing.B); ok {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func simModel() *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{
		ObjectMeta: metav1.ObjectMeta{Name: "sim-model", Namespace: "default"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "virtual", Properties: []v1beta1.ModelProperty{
			{Name: "counter", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly},
			{Name: "level", Type: v1beta1.INT, AccessMode: v1beta1.ReadWrite},
		}},
	}
}

func simDevice(name, desiredLevel string) *v1beta1.Device {
	vis := func(kv ...any) v1beta1.VisitorConfig {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return v1beta1.VisitorConfig{ProtocolName: "virtual", ConfigData: &v1beta1.CustomizedValue{Data: m}}
	}
	return &v1beta1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1beta1.DeviceSpec{
			DeviceModelRef: &corev1.LocalObjectReference{Name: "sim-model"},
			Protocol:       v1beta1.ProtocolConfig{ProtocolName: "virtual", ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"unit": 1}}},
			StateReport:    &v1beta1.StateReportConfig{ReportCycle: 300, ReportToCloud: true},
			Properties: []v1beta1.DeviceProperty{
				{Name: "counter", ReportCycle: 150, CollectCycle: 100, ReportToCloud: true, Visitors: vis("kind", "counter", "step", 1)},
				{Name: "level", ReportCycle: 150, CollectCycle: 100, ReportToCloud: true, Visitors: vis("kind", "setpoint", "initial", 5),
					Desired: v1beta1.TwinProperty{Value: desiredLevel}},
			},
		},
	}
}

// rig is a stand-in edgecore and a host registered with it.
type rig struct {
	ec     *dmitest.Edgecore
	h      *testHost
	mapper pb.DeviceMapperServiceClient
}

// newRig starts a stand-in edgecore (refusing calls beyond limiter, when
// not nil) and a host, and waits for the host's first registration.
func newRig(t testing.TB, limiter *rate.Limiter) *rig {
	dir := shortDir(t)
	ec := dmitest.Start(t, filepath.Join(dir, "dmi.sock"))
	if limiter != nil {
		ec.SetLimiter(limiter)
	}
	h := newTestHost(t, dir)
	ec.WaitFor("MapperRegister", func() bool { return len(ec.Registrations) > 0 })
	return &rig{ec: ec, h: h, mapper: ec.Mapper()}
}

// createModel creates sim-model through DMI, as edgecore does.
func (r *rig) createModel(t testing.TB) *pb.DeviceModel {
	t.Helper()
	m := dmitest.Model(t, dmitest.JSONRoundTrip(t, simModel()))
	if _, err := r.mapper.CreateDeviceModel(context.Background(), &pb.CreateDeviceModelRequest{Model: m}); err != nil {
		t.Fatal(err)
	}
	return m
}

// register registers a sim device of model m through DMI, as edgecore
// does, and holds it in the stand-in.
func (r *rig) register(t testing.TB, m *pb.DeviceModel, name, desired string) *pb.Device {
	t.Helper()
	d := dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice(name, desired)))
	resp, err := r.mapper.RegisterDevice(context.Background(), &pb.RegisterDeviceRequest{Device: d})
	if err != nil {
		t.Fatal(err)
	}
	if resp.DeviceName != name || resp.DeviceNamespace != "default" {
		t.Fatalf("RegisterDevice = %v", resp)
	}
	r.ec.Hold("default", name, d, m)
	return d
}

// TestHostRestartKeepsQueuedReports stops the host while edgecore is down
// and checks that a new host on the same state sends what was queued.
func TestHostRestartKeepsQueuedReports(t *testing.T) {
	r := newRig(t, nil)
	ec, h, ctx := r.ec, r.h, context.Background()
	r.register(t, r.createModel(t), "keep", "")
	ec.WaitFor("a report", func() bool { return ec.LastTwin("keep") != nil })

	ec.Stop()
	waitUntil(t, "a report queued while edgecore is down", func() bool {
		return !h.b.ready.isOpen() && slices.ContainsFunc(h.b.out.snapshot(), func(r *report) bool { return r.twins != nil })
	})
	h.frozen.Store(true)
	h.stop() // saves the outbox
	var queued *pb.ReportDeviceStatusRequest
	for _, r := range h.b.out.snapshot() {
		if r.twins != nil {
			queued = r.twins
		}
	}

	// A new bridge on the same database (the manager keeps running) sends
	// the saved report first.
	b2, err := New(Options{
		Devices: frozenDevices{FromManager(h.mgr), h},
		DB:      h.b.o.DB, Socket: h.b.o.Socket, EdgecoreSocket: h.b.o.EdgecoreSocket,
		ReportRate: 500, ProtocolPoll: 50 * time.Millisecond, SyncInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := b2.out.len(); n == 0 {
		t.Fatal("outbox empty after reopening")
	}
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b2.Run(ctx2) }()
	defer func() { cancel(); <-done }()
	_, mark, _ := ec.Counts()
	ec.Restart()
	ec.WaitFor("the report saved before the host restart", func() bool {
		return slices.ContainsFunc(ec.Twins[mark:], func(r *pb.ReportDeviceStatusRequest) bool { return proto.Equal(r, queued) })
	})
}

// TestBadRequests checks that bad requests get gRPC errors that say what
// is wrong, and that they do not disturb a good device.
func TestBadRequests(t *testing.T) {
	r := newRig(t, nil)
	ec, h, mapper, ctx := r.ec, r.h, r.mapper, context.Background()
	r.register(t, r.createModel(t), "good", "")
	// The manifests hold the device name "taken" and the model name
	// "taken-model"; edgecore's model of that name is accepted, but a
	// device using it is refused rather than run on the manifests' model.
	taken := simDevice("taken", "")
	takenModel := simModel()
	takenModel.Name = "taken-model"
	if err := h.mgr.Apply(ctx, "manifests", devices.ResourceSet{Plugins: h.plugins, Devices: []*v1beta1.Device{taken}, Models: []*v1beta1.DeviceModel{takenModel}}); err != nil {
		t.Fatal(err)
	}
	dmiTakenModel := dmitest.Model(t, dmitest.JSONRoundTrip(t, takenModel))
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: dmiTakenModel}); err != nil {
		t.Fatal(err)
	}

	mod := func(name string, f func(d *pb.Device)) *pb.Device {
		d := dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice(name, "")))
		f(d)
		return d
	}
	bytesAny, _ := anypb.New(wrapperspb.Bytes([]byte("x")))
	for _, c := range []struct {
		name string
		call func() error
		code codes.Code
		want []string
	}{
		{"unknown protocol", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("p", func(d *pb.Device) { d.Spec.Protocol.ProtocolName = "opcua" })})
			return err
		}, codes.FailedPrecondition, []string{`device default/p: unknown protocol "opcua"`, "loaded: [virtual]", "MapperPlugin"}},
		{"missing model", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("m", func(d *pb.Device) { d.Spec.DeviceModelReference = "nope" })})
			return err
		}, codes.FailedPrecondition, []string{"device default/m: device model default/nope not found"}},
		{"bad configData type", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("c", func(d *pb.Device) { d.Spec.Protocol.ConfigData.Data["unit"] = bytesAny })})
			return err
		}, codes.InvalidArgument, []string{`spec.protocol.configData["unit"]`, "google.protobuf.BytesValue"}},
		{"bad visitor configData type", func() error {
			_, err := mapper.UpdateDevice(ctx, &pb.UpdateDeviceRequest{Device: mod("v", func(d *pb.Device) { d.Spec.Properties[0].Visitors.ConfigData.Data["kind"] = bytesAny })})
			return err
		}, codes.InvalidArgument, []string{`spec.properties[counter].visitors.configData["kind"]`}},
		{"oversized message", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("big", func(d *pb.Device) {
				d.Spec.Protocol.ConfigData.Data["blob"], _ = anypb.New(wrapperspb.String(strings.Repeat("x", 2<<20)))
			})})
			return err
		}, codes.ResourceExhausted, []string{"larger than max"}},
		{"property not in model", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("np", func(d *pb.Device) { d.Spec.Properties[0].Name = "humidity" })})
			return err
		}, codes.InvalidArgument, []string{`property "humidity" is not in device model default/sim-model`}},
		{"plugin refuses", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("pr", func(d *pb.Device) {
				d.Spec.Properties[0].Visitors.ConfigData.Data["kind"], _ = anypb.New(wrapperspb.String("teleport"))
			})})
			return err
		}, codes.InvalidArgument, []string{"device default/pr: cannot run: MapperPlugin virtual refused", `unknown kind "teleport"`}},
		{"name held by the manifests", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("taken", func(*pb.Device) {})})
			return err
		}, codes.AlreadyExists, []string{"default/taken", `owned by source "manifests"`}},
		{"model name held by the manifests", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: mod("tm", func(d *pb.Device) { d.Spec.DeviceModelReference = "taken-model" })})
			return err
		}, codes.AlreadyExists, []string{"device default/tm: apply device model default/taken-model", `owned by source "manifests"`}},
		{"no device", func() error {
			_, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{})
			return err
		}, codes.InvalidArgument, []string{"request has no device"}},
		{"get unknown device", func() error {
			_, err := mapper.GetDevice(ctx, &pb.GetDeviceRequest{DeviceName: "ghost", DeviceNamespace: "default"})
			return err
		}, codes.NotFound, []string{"ghost"}},
		{"model without name", func() error {
			_, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: &pb.DeviceModel{}})
			return err
		}, codes.InvalidArgument, []string{"device model has no name"}},
	} {
		err := c.call()
		st := status.Convert(err)
		if err == nil || st.Code() != c.code {
			t.Errorf("%s: got %v, want code %v", c.name, err, c.code)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(st.Message(), w) {
				t.Errorf("%s: message %q lacks %q", c.name, st.Message(), w)
			}
		}
	}
	// The good device still runs and reports.
	_, mark, _ := ec.Counts()
	ec.WaitFor("reports of the good device", func() bool { return ec.CountTwins("good", mark) >= 2 })
	if st, err := h.mgr.Device("default", "good"); err != nil || st.Phase != devices.PhaseRunning {
		t.Fatalf("good device: %+v, %v", st, err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRateLimitedEdgecore runs against a stand-in that refuses calls
// beyond its limiter, as edgecore does, while the bridge sends far too
// fast: refused reports are kept and retried, none is dropped, and values
// keep flowing.
func TestRateLimitedEdgecore(t *testing.T) {
	r := newRig(t, rate.NewLimiter(rate.Every(50*time.Millisecond), 3))
	ec, h := r.ec, r.h
	model := r.createModel(t)
	for _, name := range []string{"r1", "r2", "r3"} {
		r.register(t, model, name, "")
	}
	counter := func(r *pb.ReportDeviceStatusRequest) int {
		v, _, _ := dmitest.TwinValue(r, "counter")
		n, _ := strconv.Atoi(v)
		return n
	}
	ec.WaitFor("refusals, then rising counters from every device", func() bool {
		if ec.Refused < 5 {
			return false
		}
		for _, name := range []string{"r1", "r2", "r3"} {
			var vals []int
			for _, r := range ec.Twins {
				if r.DeviceName == name {
					vals = append(vals, counter(r))
				}
			}
			if len(vals) < 3 || vals[len(vals)-1] <= vals[0] {
				return false
			}
		}
		return true
	})
	m := h.b.m
	if n := testutil.ToFloat64(m.reportsFailed.WithLabelValues("twins", "ratelimited")) + testutil.ToFloat64(m.reportsFailed.WithLabelValues("state", "ratelimited")); n == 0 {
		t.Error("no report counted as rate limited")
	}
	if n := testutil.ToFloat64(m.reportsFailed.WithLabelValues("twins", "rejected")) + testutil.ToFloat64(m.reportsFailed.WithLabelValues("state", "rejected")); n != 0 {
		t.Errorf("%v reports dropped as rejected", n)
	}
}
