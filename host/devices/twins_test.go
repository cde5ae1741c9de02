package devices

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/store"
)

// TestTwinTableWaitApplied: a waiter returns when its seq is applied, with
// the write's error when it failed, with the stop error when the device
// cannot run, and when its context ends.
func TestTwinTableWaitApplied(t *testing.T) {
	tt := newTwinTable()
	pc := &propConfig{Property: abi.Property{Name: "sp"}}
	tt.load(nil, []propConfig{*pc})
	tt.setDesired("sp", store.Twin{Desired: "1", DesiredSeq: 5}, pc)
	running := func() error { return nil }

	done := make(chan error, 1)
	go func() { done <- tt.waitApplied(context.Background(), "sp", 5, running) }()
	tt.markApplied("sp", 5, time.Now())
	tt.notify()
	if err := <-done; err != nil {
		t.Fatalf("applied: %v", err)
	}

	tt.setDesired("sp", store.Twin{Desired: "2", DesiredSeq: 6}, pc)
	go func() { done <- tt.waitApplied(context.Background(), "sp", 6, running) }()
	if !tt.writeFailed("sp", 6, "write desired value: broken") {
		t.Error("the first failure of seq 6 is not reported as first")
	}
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("failed write: got %v, want ErrUnavailable", err)
	}
	if tt.writeFailed("sp", 6, "write desired value: broken") {
		t.Error("the second failure of seq 6 is reported as first")
	}

	stopped := errors.New("device in error")
	if err := tt.waitApplied(context.Background(), "sp", 7, func() error { return stopped }); !errors.Is(err, stopped) {
		t.Fatalf("stopped device: got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tt.waitApplied(ctx, "sp", 7, running); !errors.Is(err, context.Canceled) {
		t.Fatalf("ended context: got %v", err)
	}
}

// TestTwinTableReported: a reading is formatted only when looked at, the
// push method is paced by the report cycle, and a reading ends a run of
// failures.
func TestTwinTableReported(t *testing.T) {
	tt := newTwinTable()
	push := &v1beta1.PushMethod{}
	pc := &propConfig{Property: abi.Property{Name: "x", Type: "DOUBLE"}, push: push, report: time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if n := tt.readFailed(pc, "boom", t0); !n.first {
		t.Error("the first failure is not first")
	}
	ended, p := tt.setReported(pc, abi.Double(1.5), t0)
	if ended.n != 1 || p != push {
		t.Errorf("first reading: ended %d failures, push %v; want 1 and the push method", ended.n, p)
	}
	if _, p = tt.setReported(pc, abi.Double(2.5), t0.Add(500*time.Millisecond)); p != nil {
		t.Error("a reading half a report cycle later carries the push method")
	}
	if _, p = tt.setReported(pc, abi.Double(3.5), t0.Add(time.Second)); p != push {
		t.Error("a reading a report cycle later does not carry the push method")
	}
	if ts := tt.status(pc); ts.Reported != "3.5" || ts.Error != "" {
		t.Errorf("status: reported %q, error %q; want 3.5 and none", ts.Reported, ts.Error)
	}
	batch := tt.takeDirty("d", nil)
	if len(batch) != 1 || batch[0].Value != "3.5" || tt.unsaved() != 0 {
		t.Errorf("dirty: %+v, then %d unsaved", batch, tt.unsaved())
	}
}

// TestTwinTableReadingAllocatesNothing: recording a numeric reading costs
// no allocation (its text is formatted when someone looks at it).
func TestTwinTableReadingAllocatesNothing(t *testing.T) {
	tt := newTwinTable()
	pc := &propConfig{Property: abi.Property{Name: "x", Type: "DOUBLE"}}
	tt.load(nil, []propConfig{*pc})
	now := time.Now()
	v := 0.0
	if n := testing.AllocsPerRun(1000, func() {
		v++
		tt.setReported(pc, abi.Double(v), now)
	}); n != 0 {
		t.Errorf("%v allocations per reading, want 0", n)
	}
}
