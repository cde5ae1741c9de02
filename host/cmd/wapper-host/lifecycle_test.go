package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
)

// recorder records the order in which components stop.
type recorder struct {
	mu      sync.Mutex
	stopped []string
}

// component returns a Run that waits for its context, checks that the
// components it must outlive have stopped, and records its own stop.
func (r *recorder) component(t *testing.T, name string, after ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, a := range after {
			if !slices.Contains(r.stopped, a) {
				t.Errorf("%s stopped before %s", name, a)
			}
		}
		r.stopped = append(r.stopped, name)
		return nil
	}
}

// TestLifecycleStopsInStages: on the parent's end the stages stop in
// order, each after the ones before it have returned, and Wait returns
// nil.
func TestLifecycleStopsInStages(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	began := false
	lc := newLifecycle(ctx, slog.New(slog.DiscardHandler), func() { began = true })
	var r recorder
	lc.Go(stageCore, "devices", r.component(t, "devices", "rest", "watcher", "bridge", "bus"))
	lc.Go(stageBus, "bus", r.component(t, "bus", "rest", "watcher", "bridge"))
	lc.Go(stageOutputs, "bridge", r.component(t, "bridge", "rest", "watcher"))
	lc.Go(stageInputs, "rest", r.component(t, "rest"))
	lc.Go(stageInputs, "watcher", r.component(t, "watcher"))
	if got := lc.Running(); !slices.Equal(got, []string{"bridge", "bus", "devices", "rest", "watcher"}) {
		t.Fatalf("running %q", got)
	}
	cancel()
	if err := lc.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if !began || len(r.stopped) != 5 || len(lc.Running()) != 0 {
		t.Fatalf("onStop called %v, stopped %q, running %q", began, r.stopped, lc.Running())
	}
}

// TestLifecycleFailureStopsAll: a component's failure stops the others in
// order, and Wait returns it with the component's name.
func TestLifecycleFailureStopsAll(t *testing.T) {
	lc := newLifecycle(context.Background(), slog.New(slog.DiscardHandler), nil)
	var r recorder
	boom := errors.New("boom")
	lc.Go(stageCore, "devices", r.component(t, "devices", "rest"))
	lc.Go(stageInputs, "rest", r.component(t, "rest"))
	lc.Go(stageOutputs, "bridge", func(context.Context) error { return boom })
	err := lc.Wait()
	if !errors.Is(err, boom) || err.Error() != "bridge: boom" {
		t.Fatalf("Wait: %v, want bridge: boom", err)
	}
	if !slices.Equal(r.stopped, []string{"rest", "devices"}) {
		t.Fatalf("stopped %q", r.stopped)
	}
}

// TestLifecycleFail: Fail during the setup stops what was started and is
// what Wait returns.
func TestLifecycleFail(t *testing.T) {
	lc := newLifecycle(context.Background(), slog.New(slog.DiscardHandler), nil)
	var r recorder
	lc.Go(stageCore, "devices", r.component(t, "devices"))
	lc.Fail(errors.New("REST API cannot listen"))
	if err := lc.Wait(); err == nil || err.Error() != "REST API cannot listen" {
		t.Fatalf("Wait: %v", err)
	}
	if !slices.Equal(r.stopped, []string{"devices"}) {
		t.Fatalf("stopped %q", r.stopped)
	}
}
