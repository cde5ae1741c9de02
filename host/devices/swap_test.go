package devices

import (
	"context"
	"testing"
	"time"
)

// TestSwapBetweenJobs: a loop moved to another reader and target while
// its job runs keeps that job (and the desired value it writes) on the
// old ones and reads on the new ones from its next cycle, without a cycle
// skipped on either side; a loop that stops meanwhile ends the request.
func TestSwapBetweenJobs(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	oldR, newR := &fakeReader{n: 1, block: make(chan struct{})}, &fakeReader{n: 1}
	oldT, newT := newFakeTarget(), newFakeTarget()
	oldT.pending = true
	t0 := env.now()
	cycle := 100 * time.Millisecond
	l := newLoop(context.Background(), oldT, oldR, 1, testConfig(time.Second, time.Hour, cycle), time.Second, t0, false, 0)
	s.add(l)
	first := l.main.at
	env.set(first)
	s.step(first) // the job starts and blocks in the old reader
	sw := s.swap(l, newT, newR)
	select {
	case <-sw.done:
		t.Fatal("swapped while the job runs")
	default:
	}
	close(oldR.block)
	s.running.Wait()
	<-sw.done
	if !sw.ok {
		t.Fatal("swap not made")
	}
	if oldT.count("p0") != 1 || oldT.applies != 1 || newT.applies != 0 {
		t.Fatalf("old target: %d readings, %d writes; new: %d writes", oldT.count("p0"), oldT.applies, newT.applies)
	}
	for at := first.Add(cycle); !at.After(first.Add(5 * cycle)); at = at.Add(schedTick) {
		stepTo(s, env, at)
	}
	if got := newT.count("p0"); got != 5 {
		t.Errorf("new target read %d times in 5 cycles, want 5", got)
	}
	if oldT.count("p0") != 1 || len(oldR.callSizes()) != 1 {
		t.Errorf("old reader called again after the swap: %v", oldR.callSizes())
	}
	if oldT.skips+newT.skips != 0 {
		t.Errorf("skipped %d", oldT.skips+newT.skips)
	}
	for i, ts := range newT.readings["p0"] {
		if want := first.Add(time.Duration(i+1) * cycle); !ts.Equal(want) {
			t.Errorf("reading %d on the new target at %s, want %s", i, ts.Sub(t0), want.Sub(t0))
		}
	}

	// Swapping back while idle is at once; a stopped loop ends the
	// request, not swapped.
	if sw := s.swap(l, oldT, oldR); !sw.ok {
		t.Fatal("idle loop not swapped at once")
	}
	blocked := &fakeReader{n: 1, block: make(chan struct{})}
	s.swap(l, oldT, blocked)
	next := l.main.at
	env.set(next)
	s.step(next)
	sw = s.swap(l, newT, newR)
	s.remove(l)
	<-sw.done
	if sw.ok {
		t.Fatal("a stopped loop reported swapped")
	}
	close(blocked.block)
	s.running.Wait()
}
