package dmi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/dmi/dmitest"
)

// valueDevices is a Devices with one protocol whose devices all report
// the twins the test sets.
type valueDevices struct {
	mu    sync.Mutex
	twins []Twin
}

func (v *valueDevices) Protocols() []string { return []string{"virtual"} }
func (v *valueDevices) ApplyModel(context.Context, string, *v1beta1.DeviceModel) error {
	return nil
}
func (v *valueDevices) RemoveModel(context.Context, string, string, string) error { return nil }
func (v *valueDevices) ApplyDevices(_ context.Context, _ string, ds []*v1beta1.Device) []error {
	return make([]error, len(ds))
}
func (v *valueDevices) RemoveDevice(context.Context, string, string, string) error { return nil }
func (v *valueDevices) Owned(string) (devices, models []string)                    { return nil, nil }

func (v *valueDevices) Status(string, string) (Status, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Status{State: "ok", Twins: append([]Twin(nil), v.twins...)}, nil
}

// set sets the reported value of a property.
func (v *valueDevices) set(prop, reported string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.twins {
		if v.twins[i].Property == prop {
			v.twins[i].Reported = reported
		}
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// count counts the lines holding every one of subs.
func (s *syncBuffer) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range strings.Split(s.b.String(), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(l, sub)
		}
		if all {
			n++
		}
	}
	return n
}

// valueRig is a bridge over valueDevices, registered with a stand-in
// edgecore, holding one device "vals" whose properties are devs' twins.
type valueRig struct {
	ec   *dmitest.Edgecore
	devs *valueDevices
	m    *Metrics
	log  *syncBuffer
}

func newValueRig(t *testing.T, twins []Twin) *valueRig {
	dir := shortDir(t)
	ec := dmitest.Start(t, filepath.Join(dir, "dmi.sock"))
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &valueRig{ec: ec, devs: &valueDevices{twins: twins}, m: NewMetrics(nil), log: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(r.log, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(Options{
		Devices: r.devs, DB: db, Socket: filepath.Join(dir, "wapper.sock"), EdgecoreSocket: filepath.Join(dir, "dmi.sock"),
		Logger: log, Metrics: r.m, ReportRate: 500, ReportBurst: 20, DefaultReportCycle: 50 * time.Millisecond,
		ProtocolPoll: 50 * time.Millisecond, SyncInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge Run: %v", err)
		}
	})
	ec.WaitFor("MapperRegister", func() bool { return len(ec.Registrations) > 0 })
	mapper := ec.Mapper()
	model := &pb.DeviceModel{Name: "vals", Namespace: "default", Spec: &pb.DeviceModelSpec{}}
	dev := &pb.Device{Name: "vals", Namespace: "default", Spec: &pb.DeviceSpec{
		DeviceModelReference: "vals", Protocol: &pb.ProtocolConfig{ProtocolName: "virtual"}}}
	for _, tw := range twins {
		model.Spec.Properties = append(model.Spec.Properties, &pb.ModelProperty{Name: tw.Property, Type: strings.ToLower(tw.Type)})
		dev.Spec.Properties = append(dev.Spec.Properties, &pb.DeviceProperty{Name: tw.Property, ReportToCloud: true, CollectCycle: 50, ReportCycle: 50})
	}
	if _, err := mapper.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: model}); err != nil {
		t.Fatal(err)
	}
	if _, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: dev}); err != nil {
		t.Fatal(err)
	}
	return r
}

// waitReports waits for n more twin reports of "vals" than there are now.
func (r *valueRig) waitReports(n int) {
	from := 0
	r.ec.With(func() { from = len(r.ec.Twins) })
	r.ec.WaitFor("twin reports", func() bool { return r.ec.CountTwins("vals", from) >= n })
}

// waitTwin waits for a report of "vals" where prop is reported as want,
// or is absent when want is "".
func (r *valueRig) waitTwin(prop, want string) {
	from := 0
	r.ec.With(func() { from = len(r.ec.Twins) })
	r.ec.WaitFor("a report with "+prop+" = "+want, func() bool {
		for _, rep := range r.ec.Twins[from:] {
			if rep.DeviceName != "vals" {
				continue
			}
			got, _, ok := dmitest.TwinValue(rep, prop)
			if ok == (want != "") && got == want {
				return true
			}
		}
		return false
	})
}

// TestReportedValuesPassEdgecore: numbers of every size and sign and
// bytes arrive in forms edgecore keeps (the stand-in fails the test
// otherwise), with the types edgecore knows.
func TestReportedValuesPassEdgecore(t *testing.T) {
	now := time.Now()
	raw := []byte{0xfb, 0xff, 0xbf, 'h', 'i'}
	vals := map[string]abi.Value{
		"d": abi.Double(2500000.5), "f": abi.Float(1e20), "n": abi.Int(-7), "neg": abi.Double(-0.25),
		"tiny": abi.Double(-1.5e-7), "y": abi.Bytes(raw), "st": abi.Stream(raw[:1]), "b": abi.Bool(true), "s": abi.String("ok"),
	}
	var twins []Twin
	for _, p := range []string{"d", "f", "n", "neg", "tiny", "y", "st", "b", "s"} {
		twins = append(twins, Twin{Property: p, Type: vals[p].Type().String(), Reported: vals[p].Text(), ReportedAt: now})
	}
	r := newValueRig(t, twins)
	r.waitReports(3)

	want := map[string]string{"d": "2500000.5", "f": "100000000000000000000", "n": "-7", "neg": "-0.25", "tiny": "-0.00000015",
		"y": "-_-_aGk", "st": "-w", "b": "true", "s": "ok"}
	types := map[string]string{"d": "float", "f": "float", "n": "int", "neg": "float", "tiny": "float", "y": "string", "st": "string", "b": "boolean", "s": "string"}
	r.ec.With(func() {
		last := r.ec.LastTwin("vals")
		for p, w := range want {
			if got, _, ok := dmitest.TwinValue(last, p); !ok || got != w {
				t.Errorf("%s (%#v) reported as %q, want %q", p, vals[p], got, w)
			}
		}
		for _, tw := range last.ReportedDevice.Twins {
			if tw.Reported.Metadata["type"] != types[tw.PropertyName] || tw.ObservedDesired.Metadata["type"] != types[tw.PropertyName] {
				t.Errorf("%s: metadata %v and %v, want type %q", tw.PropertyName, tw.Reported.Metadata, tw.ObservedDesired.Metadata, types[tw.PropertyName])
			}
			// What edgecore keeps parses back as the value.
			if v, err := abi.ParseText(vals[tw.PropertyName].Type(), tw.Reported.Value); err != nil || !v.Equal(vals[tw.PropertyName]) {
				t.Errorf("%s: %q parses as %#v, %v", tw.PropertyName, tw.Reported.Value, v, err)
			}
		}
	})
	if n := testutil.CollectAndCount(r.m.unreportable); n != 0 {
		t.Errorf("%d twins counted as unreportable", n)
	}
}

// TestUnreportableTwinLeftOut: a twin edgecore would drop is left out of
// the reports while the device's other twins still go, counted, and
// warned about once until it is reportable again.
func TestUnreportableTwinLeftOut(t *testing.T) {
	now := time.Now()
	r := newValueRig(t, []Twin{
		{Property: "temp", Type: "DOUBLE", Reported: "21.5", ReportedAt: now},
		{Property: "label", Type: "STRING", Reported: "hello world", ReportedAt: now},
		{Property: "mode", Type: "STRING", Reported: "auto", ReportedAt: now, Desired: "fan only", DesiredAt: now},
	})
	r.waitReports(3)
	r.ec.With(func() {
		last := r.ec.LastTwin("vals")
		if v, _, ok := dmitest.TwinValue(last, "temp"); !ok || v != "21.5" {
			t.Errorf("temp reported as %q, %v", v, ok)
		}
		for _, p := range []string{"label", "mode"} {
			if v, d, ok := dmitest.TwinValue(last, p); ok {
				t.Errorf("%s reported as %q (desired %q)", p, v, d)
			}
		}
	})
	for reason, prop := range map[string]string{"reported": "label", "desired": "mode"} {
		if n := testutil.ToFloat64(r.m.unreportable.WithLabelValues(reason)); n < 3 {
			t.Errorf("unreportable{reason=%q} = %v after 3 reports, want one a report", reason, n)
		}
		if n := r.log.count("twin left out of DMI reports", "property="+prop, "reason="+reason, "device=default/vals"); n != 1 {
			t.Errorf("%d warnings for %s, want 1", n, prop)
		}
	}

	// Reportable again, then not: a second warning.
	r.devs.set("label", "hello-world")
	r.waitTwin("label", "hello-world")
	r.devs.set("label", "hello world")
	r.waitTwin("label", "")
	r.waitReports(2)
	if n := r.log.count("twin left out of DMI reports", "property=label"); n != 2 {
		t.Errorf("%d warnings for label, want 2", n)
	}
	if n := r.log.count("twin reported over DMI again", "property=label"); n != 1 {
		t.Errorf("%d notes that label is reported again, want 1", n)
	}
}

// TestUnreportableRules: the bridge's check agrees with edgecore's on
// names and values, and names the rule a twin breaks.
func TestUnreportableRules(t *testing.T) {
	long := strings.Repeat("a", 512)
	for _, s := range []string{"", "a", "A-Z_0.9,:/@#", "a b", "a+b", "a=", "é", "a\n", "1e+06", "-Inf", "NaN", long, long + "a", long[:128], long[:129]} {
		if got, want := twinText(s, maxTwinValue), dmitest.ValidateTwinValue(s); got != want {
			t.Errorf("value %.20q: bridge says %v, edgecore %v", s, got, want)
		}
		if got, want := twinText(s, maxTwinName), dmitest.ValidateTwinKey(s); got != want {
			t.Errorf("name %.20q: bridge says %v, edgecore %v", s, got, want)
		}
	}
	now := time.Now()
	cases := []struct {
		tw     Twin
		reason string
	}{
		{Twin{Property: "ok", Type: "DOUBLE", Reported: "2500000.5", ReportedAt: now}, ""},
		{Twin{Property: "ok", Type: "STRING", Reported: "", ReportedAt: now}, ""},
		{Twin{Property: "ok", Type: "BYTES", Reported: "+/+/aGk=", ReportedAt: now, Desired: "aGk=", DesiredAt: now}, ""},
		{Twin{Property: "a b", Type: "INT", Reported: "1", ReportedAt: now}, reasonName},
		{Twin{Property: "ok", Type: "DOUBLE", Reported: "2.5000005e+06", ReportedAt: now}, reasonReported},
		{Twin{Property: "ok", Type: "STRING", Reported: strings.Repeat("x", 513), ReportedAt: now}, reasonReported},
		{Twin{Property: "ok", Type: "INT", Reported: "1", ReportedAt: now, Desired: "1 ", DesiredAt: now}, reasonDesired},
		{Twin{Property: "ok", Type: "BOOLEAN", Reported: "on", ReportedAt: now}, reasonType},
		{Twin{Property: "ok", Type: "INT", Reported: "1.5", ReportedAt: now}, reasonType},
	}
	for _, c := range cases {
		reason, rule := unreportable(twinToDMI(c.tw))
		if reason != c.reason || (reason != "") != strings.HasPrefix(rule, "edgecore takes") {
			t.Errorf("%+v: reason %q (rule %q), want %q", c.tw, reason, rule, c.reason)
		}
	}
}

// TestStandInEdgecoreChecks: the stand-in drops what edgecore drops,
// including the float text of old ("2.5000005e+06"), checks values
// against a twin's type once it has one, and refuses the type names
// edgecore does not know.
func TestStandInEdgecoreChecks(t *testing.T) {
	ec := dmitest.Start(t, filepath.Join(shortDir(t), "dmi.sock"))
	ec.ExpectRefusedTwins()
	report := func(prop, reported, desired string) bool {
		t.Helper()
		req := &pb.ReportDeviceStatusRequest{DeviceName: "d", DeviceNamespace: "default", ReportedDevice: &pb.DeviceStatus{Twins: []*pb.Twin{
			{PropertyName: prop, Reported: &pb.TwinProperty{Value: reported}, ObservedDesired: &pb.TwinProperty{Value: desired}}}}}
		n := 0
		ec.With(func() { n = len(ec.RefusedTwins) })
		if _, err := ec.ReportDeviceStatus(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		ok := true
		ec.With(func() { ok = len(ec.RefusedTwins) == n })
		return ok
	}
	if report("x", "2.5000005e+06", "") || report("x", "a b", "") || report("x", "1", "a=") || report("a b", "1", "") {
		t.Error("a value or name edgecore refuses was kept")
	}
	if !report("s", "any-thing", "") || !report("s", "", "") {
		t.Error("a value edgecore keeps in a twin it adds as string was refused")
	}
	if err := ec.AddTwin("default", "d", "dbl", "DOUBLE", "1.5"); err == nil {
		t.Error("edgecore refuses type DOUBLE; the stand-in took it")
	}
	if err := ec.AddTwin("default", "d", "f", "float", "1.5"); err != nil {
		t.Fatal(err)
	}
	if typ, ok := ec.TwinType("default", "d", "f"); typ != "float" || !ok {
		t.Errorf("twin type %q, %v", typ, ok)
	}
	if !report("f", "2500000.5", "3") || report("f", "true", "3") || !report("f", "-Inf", "3") {
		t.Error("values of a float twin not checked as edgecore does")
	}
	// Once the twin has an expected value, an empty one fails a float
	// twin: edgecore then drops the actual value too.
	if report("f", "1", "") {
		t.Error("empty expected value of a float twin kept")
	}
}
