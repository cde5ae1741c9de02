package dmi

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"wapper.dev/wapper/host/dmi/dmitest"
)

// TestTwinsReportedAtCollectCycle registers a device whose properties have
// a reportCycle of an hour: as mapper-framework does, the bridge reports
// twins at collectCycle (reportCycle only paces publishing elsewhere).
func TestTwinsReportedAtCollectCycle(t *testing.T) {
	r := newRig(t, nil)
	m := r.createModel(t)
	d := simDevice("cadence", "")
	for i := range d.Spec.Properties {
		d.Spec.Properties[i].ReportCycle = 3_600_000
	}
	pd := dmitest.Device(t, dmitest.JSONRoundTrip(t, d))
	if _, err := r.mapper.RegisterDevice(context.Background(), &pb.RegisterDeviceRequest{Device: pd}); err != nil {
		t.Fatal(err)
	}
	r.ec.Hold("default", "cadence", pd, m)
	r.ec.WaitFor("twin reports of a device whose reportCycle is an hour", func() bool { return r.ec.CountTwins("cadence", 0) >= 2 })
}

// The tests here drive the outbox with a clock that moves only when told,
// and check the order pop chooses, never how long anything takes.

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time          { return c.t }
func (c *testClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// newTestOutbox opens an outbox on a fresh database at path.
func newTestOutbox(t *testing.T, path string, clock *testClock) (*outbox, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := openOutbox(db)
	if err != nil {
		t.Fatal(err)
	}
	o.now = clock.now
	return o, db
}

func stateReq(name, state string) *pb.ReportDeviceStatesRequest {
	return &pb.ReportDeviceStatesRequest{DeviceName: name, DeviceNamespace: "default", State: state}
}

// accept records, as if edgecore had accepted it, a report that was
// never queued.
func accept(o *outbox, clock *testClock, twins *pb.ReportDeviceStatusRequest, state *pb.ReportDeviceStatesRequest) {
	clock.advance(time.Second)
	if twins != nil {
		o.sent(&report{key: reportKey(kindTwins, twins.DeviceNamespace, twins.DeviceName), twins: twins})
	}
	if state != nil {
		o.sent(&report{key: reportKey(kindState, state.DeviceNamespace, state.DeviceName), state: state})
	}
}

// label names a report "device:twins" or "device:state".
func label(r *report) string {
	if r.twins != nil {
		return r.twins.DeviceName + ":twins"
	}
	return r.state.DeviceName + ":state"
}

// drain pops everything, recording each report as accepted.
func drain(o *outbox) []string {
	var got []string
	for r := o.pop(); r != nil; r = o.pop() {
		o.sent(r)
		got = append(got, label(r))
	}
	return got
}

// TestOutboxSpendsBudgetByNeed fills the outbox with steady re-reports,
// then queues a value change, a new device and a state change: the state
// change goes first, then the changes (oldest first), then the steady
// reports stalest device first, not in arrival order.
func TestOutboxSpendsBudgetByNeed(t *testing.T) {
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	o, db := newTestOutbox(t, filepath.Join(t.TempDir(), "s.db"), clock)
	defer db.Close()
	// Edgecore accepted d5 first and d0 last.
	for i := 5; i >= 0; i-- {
		accept(o, clock, twinReq(fmt.Sprint("d", i), "t", "20"), stateReq(fmt.Sprint("d", i), "ok"))
	}
	// Steady re-reports arrive d0 first.
	for i := range 6 {
		clock.advance(time.Second)
		o.putTwins(twinReq(fmt.Sprint("d", i), "t", "20"))
		o.putState(stateReq(fmt.Sprint("d", i), "ok"))
	}
	if s := o.stats(); s.waiting != [numClasses]int{0, 0, 12} {
		t.Fatalf("waiting %v, want 12 steady", s.waiting)
	}
	clock.advance(time.Second)
	o.putTwins(twinReq("d3", "t", "21")) // changed value
	clock.advance(time.Second)
	o.putTwins(twinReq("new", "t", "1")) // never reported
	clock.advance(time.Second)
	o.putState(stateReq("d4", "offline")) // state change
	o.putTwins(twinReq("d2", "t", "20"))  // unchanged again: stays steady

	want := []string{
		"d4:state",              // state change
		"d3:twins", "new:twins", // value changes, oldest change first
		"d5:twins", "d5:state", // then the stalest devices
		"d4:twins", "d3:state",
		"d2:twins", "d2:state",
		"d1:twins", "d1:state",
		"d0:twins", "d0:state",
	}
	if got := drain(o); !slices.Equal(got, want) {
		t.Fatalf("sent\n %v\nwant\n %v", got, want)
	}

	// What was sent is now what edgecore has: the same values again are
	// steady, a different one a change.
	o.putTwins(twinReq("d3", "t", "21"))
	o.putState(stateReq("d4", "offline"))
	o.putTwins(twinReq("new", "t", "2"))
	if s := o.stats(); s.waiting != [numClasses]int{0, 1, 2} {
		t.Fatalf("waiting %v after the sends, want 1 value change and 2 steady", s.waiting)
	}
}

// TestOutboxRanksAgainstWhatEdgecoreAccepted checks that a report queued
// while an equal one was in flight turns steady once that one is
// accepted, and that a value changed and changed back is steady again.
func TestOutboxRanksAgainstWhatEdgecoreAccepted(t *testing.T) {
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	o, db := newTestOutbox(t, filepath.Join(t.TempDir(), "s.db"), clock)
	defer db.Close()
	o.putTwins(twinReq("a", "t", "1", "h", "5"))
	inFlight := o.pop()
	o.putTwins(twinReq("a", "t", "1"))
	if s := o.stats(); s.waiting[classChange] != 1 {
		t.Fatalf("waiting %v before the send is accepted, want 1 value change", s.waiting)
	}
	o.sent(inFlight)
	if s := o.stats(); s.waiting != [numClasses]int{0, 0, 1} || s.oldestChange != 0 {
		t.Fatalf("stats %+v after the send is accepted, want 1 steady and no change", s)
	}
	o.putTwins(twinReq("a", "h", "6"))
	if s := o.stats(); s.waiting[classChange] != 1 {
		t.Fatalf("waiting %v after h changed, want 1 value change", s.waiting)
	}
	o.putTwins(twinReq("a", "h", "5"))
	if s := o.stats(); s.waiting[classSteady] != 1 {
		t.Fatalf("waiting %v after h changed back, want 1 steady", s.waiting)
	}
}

// TestOutboxNothingStarves keeps state changes, value changes and steady
// re-reports of 15 devices queued at every send: each device is still
// sent at least once every 15 × stalestEvery sends.
func TestOutboxNothingStarves(t *testing.T) {
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	o, db := newTestOutbox(t, filepath.Join(t.TempDir(), "s.db"), clock)
	defer db.Close()
	const n = 15
	last := map[string]int{}
	worst := map[string]int{}
	for i := range 10 * n * stalestEvery {
		clock.advance(time.Second)
		for d := range 5 {
			o.putState(stateReq(fmt.Sprint("flap", d), fmt.Sprint("s", i))) // a new state each time
			o.putTwins(twinReq(fmt.Sprint("busy", d), "t", fmt.Sprint(i)))  // a new value each time
			o.putTwins(twinReq(fmt.Sprint("calm", d), "t", "20"))           // the same value
		}
		r := o.pop()
		o.sent(r)
		k := label(r)
		worst[k] = max(worst[k], i-last[k])
		last[k] = i
	}
	if len(worst) != n {
		t.Fatalf("only %d of %d devices were ever sent: %v", len(worst), n, worst)
	}
	for k, gap := range worst {
		if gap > n*stalestEvery {
			t.Errorf("%s waited %d sends, want at most %d", k, gap, n*stalestEvery)
		}
	}
	// The state changes still take most of the budget.
	if gap := worst["flap0:state"]; gap > 2*5 {
		t.Errorf("a state change waited %d sends", gap)
	}
}

// TestOutboxPrioritySurvivesReopen saves a ranked outbox, reopens it
// later and checks the order and the age of the oldest change.
func TestOutboxPrioritySurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	o, db := newTestOutbox(t, path, clock)
	for _, d := range []string{"d2", "d0", "d1"} { // d2 is the stalest
		accept(o, clock, twinReq(d, "t", "20"), stateReq(d, "ok"))
	}
	for _, d := range []string{"d0", "d1", "d2"} {
		o.putTwins(twinReq(d, "t", "20"))
	}
	clock.advance(time.Second)
	changed := clock.now()
	o.putTwins(twinReq("d1", "t", "22"))
	clock.advance(time.Second)
	o.putState(stateReq("d0", "offline"))
	if err := o.sync(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	clock.advance(time.Minute)
	o, db = newTestOutbox(t, path, clock)
	defer db.Close()
	if s := o.stats(); s.waiting != [numClasses]int{1, 1, 2} || s.oldestChange != clock.now().Sub(changed) {
		t.Fatalf("stats after reopen %+v, want waiting [1 1 2] and the oldest change %v old", s, clock.now().Sub(changed))
	}
	want := []string{"d0:state", "d1:twins", "d2:twins", "d0:twins"}
	if got := drain(o); !slices.Equal(got, want) {
		t.Fatalf("sent after reopen %v, want %v", got, want)
	}
	// What edgecore accepted is saved too.
	if err := o.sync(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	o, db = newTestOutbox(t, path, clock)
	defer db.Close()
	o.putTwins(twinReq("d1", "t", "22"))
	o.putState(stateReq("d0", "offline"))
	if s := o.stats(); s.waiting != [numClasses]int{0, 0, 2} {
		t.Fatalf("waiting %v after a second reopen, want 2 steady", s.waiting)
	}
}

// TestOutboxReadsOldEntries opens an entry saved before reports carried
// their change time: it loads as a change of now.
func TestOutboxReadsOldEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := twinReq("old", "t", "1")
	v := binary.BigEndian.AppendUint64(nil, 7)
	v = append(v, kindTwins)
	v, _ = proto.MarshalOptions{}.MarshalAppend(v, req)
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := bucket(tx, outboxBucket)
		if err != nil {
			return err
		}
		return b.Put([]byte(reportKey(kindTwins, "default", "old")), v)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	o, db := newTestOutbox(t, path, &testClock{t: time.Unix(1_700_000_000, 0)})
	defer db.Close()
	r := o.pop()
	if r == nil || !proto.Equal(r.twins, req) || r.seq != 7 || r.class != classChange {
		t.Fatalf("loaded %+v, want the saved twins as a value change", r)
	}
}

// TestOutboxMetrics checks the gauges of waiting reports by class and of
// the age of the oldest change.
func TestOutboxMetrics(t *testing.T) {
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	o, db := newTestOutbox(t, filepath.Join(t.TempDir(), "s.db"), clock)
	defer db.Close()
	m := NewMetrics(nil)
	accept(o, clock, twinReq("calm", "t", "20"), nil)
	o.putTwins(twinReq("calm", "t", "20"))
	o.putState(stateReq("a", "ok"))
	clock.advance(5 * time.Second)
	o.putTwins(twinReq("b", "t", "1"))
	o.putTwins(twinReq("c", "t", "1"))
	clock.advance(2 * time.Second)
	m.observeOutbox(o)
	gauges := func() []float64 {
		return []float64{
			testutil.ToFloat64(m.waiting.WithLabelValues("state_change")),
			testutil.ToFloat64(m.waiting.WithLabelValues("value_change")),
			testutil.ToFloat64(m.waiting.WithLabelValues("steady")),
			testutil.ToFloat64(m.pending),
			testutil.ToFloat64(m.oldestChange),
		}
	}
	if got, want := gauges(), []float64{1, 2, 1, 4, 7}; !slices.Equal(got, want) {
		t.Fatalf("state_change, value_change, steady, pending, oldest change = %v, want %v", got, want)
	}
	o.sent(o.pop()) // the state change
	m.observeOutbox(o)
	if got, want := gauges(), []float64{0, 2, 1, 3, 2}; !slices.Equal(got, want) {
		t.Fatalf("after sending the state change: %v, want %v", got, want)
	}
	drain(o)
	m.observeOutbox(o)
	if got, want := gauges(), []float64{0, 0, 0, 0, 0}; !slices.Equal(got, want) {
		t.Fatalf("empty outbox: %v, want %v", got, want)
	}
}

// recordingEdgecore is a DeviceManagerService client that accepts every
// report and tells the test about it.
type recordingEdgecore struct {
	pb.DeviceManagerServiceClient
	calls chan string
}

func (e *recordingEdgecore) ReportDeviceStatus(_ context.Context, in *pb.ReportDeviceStatusRequest, _ ...grpc.CallOption) (*pb.ReportDeviceStatusResponse, error) {
	e.calls <- in.DeviceName + ":twins"
	return &pb.ReportDeviceStatusResponse{}, nil
}

func (e *recordingEdgecore) ReportDeviceStates(_ context.Context, in *pb.ReportDeviceStatesRequest, _ ...grpc.CallOption) (*pb.ReportDeviceStatesResponse, error) {
	e.calls <- in.DeviceName + ":state"
	return &pb.ReportDeviceStatesResponse{}, nil
}

// TestSendLoopCountsByClass runs the sender over a queued outbox: it sends
// in the outbox's order, counts what it sent by kind and class, and
// records what edgecore accepted.
func TestSendLoopCountsByClass(t *testing.T) {
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	o, db := newTestOutbox(t, filepath.Join(t.TempDir(), "s.db"), clock)
	defer db.Close()
	accept(o, clock, twinReq("calm", "t", "20"), nil)
	o.putTwins(twinReq("calm", "t", "20"))
	o.putTwins(twinReq("hot", "t", "90"))
	o.putState(stateReq("down", "offline"))
	b := &Bridge{
		log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), m: NewMetrics(nil), out: o,
		limiter: rate.NewLimiter(rate.Inf, 1), reregister: make(chan struct{}, 1),
	}
	b.ready.init()
	b.ready.set(true)
	ec := &recordingEdgecore{calls: make(chan string)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.sendLoop(ctx, ec) }()
	var got []string
	for range 3 {
		got = append(got, <-ec.calls)
	}
	cancel()
	<-done
	if want := []string{"down:state", "hot:twins", "calm:twins"}; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	for _, c := range []struct {
		kind, class string
		want        float64
	}{{"state", "state_change", 1}, {"twins", "value_change", 1}, {"twins", "steady", 1}, {"state", "steady", 0}} {
		if n := testutil.ToFloat64(b.m.reportsSent.WithLabelValues(c.kind, c.class)); n != c.want {
			t.Errorf("reports sent {kind=%s,class=%s} = %v, want %v", c.kind, c.class, n, c.want)
		}
	}
	o.putTwins(twinReq("hot", "t", "90"))
	if s := o.stats(); s.waiting != [numClasses]int{0, 0, 1} {
		t.Errorf("waiting %v after resending an accepted value, want 1 steady", s.waiting)
	}
}

// TestRegisterDeviceDuringMapperRegister: a device edgecore sends while
// the host's MapperRegister is under way is kept, though the answer, made
// before edgecore knew the device, does not list it.
func TestRegisterDeviceDuringMapperRegister(t *testing.T) {
	r := newRig(t, nil)
	m := r.createModel(t)
	release := r.ec.HoldRegistrations()
	defer release()
	regs, _, _ := r.ec.Counts()
	r.ec.Stop()
	waitUntil(t, "the bridge to notice edgecore is gone", func() bool { return !r.h.b.ready.isOpen() })
	r.ec.Restart()
	r.ec.WaitFor("the host's MapperRegister at the gate", func() bool { return r.ec.Gated() > 0 })

	pd := dmitest.Device(t, dmitest.JSONRoundTrip(t, simDevice("late", "")))
	if _, err := r.mapper.RegisterDevice(context.Background(), &pb.RegisterDeviceRequest{Device: pd}); err != nil {
		t.Fatal(err)
	}
	release()
	r.ec.WaitFor("the registration answered", func() bool { return len(r.ec.Registrations) > regs })
	waitUntil(t, "the bridge registered again", func() bool { return r.h.b.ready.isOpen() })
	if _, err := r.h.mgr.Device("default", "late"); err != nil {
		t.Fatalf("device sent during the registration removed by its answer: %v", err)
	}
	r.ec.Hold("default", "late", pd, m)
	r.ec.WaitFor("twin reports of the device", func() bool { return r.ec.CountTwins("late", 0) >= 1 })
}
