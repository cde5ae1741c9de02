package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	v1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/host/dmi/dmitest"
)

// edgecore is the DMI run's stand-in edgecore (host/dmi/dmitest): it
// holds the devices and their model, as edgecore holds those cloudcore
// sent it, and answers wapper-host's MapperRegister with them.
type edgecore struct {
	ec    *dmitest.Edgecore
	tb    *benchTB
	model *pb.DeviceModel
}

// startEdgecore serves a stand-in edgecore on sock holding n devices.
func startEdgecore(sock string, n int) (*edgecore, error) {
	tb := &benchTB{}
	e := &edgecore{tb: tb}
	var err error
	tb.run(func() {
		e.ec = dmitest.Start(tb, sock)
		m := &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Name: "bench-model", Namespace: "default"},
			Spec: v1beta1.DeviceModelSpec{Protocol: "virtual", Properties: []v1beta1.ModelProperty{
				{Name: "a", Type: "DOUBLE", AccessMode: "ReadOnly"}, {Name: "b", Type: "DOUBLE", AccessMode: "ReadOnly"}}}}
		e.model = dmitest.Model(tb, dmitest.JSONRoundTrip(tb, m))
		for i := range n {
			name := fmt.Sprintf("dev-%d", i)
			e.ec.Hold("default", name, dmitest.Device(tb, dmitest.JSONRoundTrip(tb, dmiDevice(name))), e.model)
		}
	})
	if tb.err != nil {
		err = tb.err
		e.stop()
	}
	return e, err
}

// register sends one more device as edgecore does when cloudcore adds one.
func (e *edgecore) register(name string) error {
	var dev *pb.Device
	e.tb.run(func() { dev = dmitest.Device(e.tb, dmitest.JSONRoundTrip(e.tb, dmiDevice(name))) })
	if e.tb.err != nil {
		return e.tb.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.ec.Mapper().RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: dev}); err != nil {
		return fmt.Errorf("RegisterDevice %s: %w", name, err)
	}
	e.ec.Hold("default", name, dev, e.model)
	return nil
}

// stop stops the stand-in.
func (e *edgecore) stop() { e.tb.cleanup() }

// dmiDevice is the benchmark's device as a KubeEdge Device (the same
// properties as the standalone manifests), reported to the cloud.
func dmiDevice(name string) *v1beta1.Device {
	cv := func(m map[string]any) *v1beta1.CustomizedValue { return &v1beta1.CustomizedValue{Data: m} }
	prop := func(name string, cfg map[string]any) v1beta1.DeviceProperty {
		return v1beta1.DeviceProperty{Name: name, CollectCycle: 1000, ReportCycle: 1000, ReportToCloud: true,
			Visitors: v1beta1.VisitorConfig{ProtocolName: "virtual", ConfigData: cv(cfg)}}
	}
	return &v1beta1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1beta1.DeviceSpec{
			DeviceModelRef: &corev1.LocalObjectReference{Name: "bench-model"},
			Protocol:       v1beta1.ProtocolConfig{ProtocolName: "virtual"},
			Properties: []v1beta1.DeviceProperty{
				prop("a", map[string]any{"kind": "sine", "periodMs": 10000}),
				prop("b", map[string]any{"kind": "sine", "periodMs": 20000, "offset": 5}),
			},
		},
	}
}

// benchTB lets this program use dmitest, which is written for tests, with
// no test running: Fatal ends the function given to run (as it ends a
// test) and records the error; Errorf is printed and recorded; cleanups
// run at cleanup. dmitest calls only these methods; any other would
// reach the nil embedded TB and panic, which a new dmitest call would
// show at once.
type benchTB struct {
	testing.TB

	mu       sync.Mutex // guards the fields below
	err      error
	cleanups []func()
}

// run runs fn the way a test runs: a Fatal inside it ends it.
func (t *benchTB) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func (t *benchTB) record(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
}

// Helper implements testing.TB.
func (t *benchTB) Helper() {}

// Errorf implements testing.TB.
func (t *benchTB) Errorf(format string, args ...any) {
	err := fmt.Errorf("stand-in edgecore: "+format, args...)
	fmt.Fprintln(os.Stderr, "bench-host:", err)
	t.record(err)
}

// Fatal implements testing.TB: it records the error and ends the
// goroutine, as in a test.
func (t *benchTB) Fatal(args ...any) {
	t.record(fmt.Errorf("stand-in edgecore: %s", fmt.Sprint(args...)))
	runtime.Goexit()
}

// Fatalf implements testing.TB.
func (t *benchTB) Fatalf(format string, args ...any) {
	t.record(fmt.Errorf("stand-in edgecore: "+format, args...))
	runtime.Goexit()
}

// Cleanup implements testing.TB.
func (t *benchTB) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}

// cleanup runs the cleanups, last first.
func (t *benchTB) cleanup() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
