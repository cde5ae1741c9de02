package devices

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
)

// fakeEnv is a scheduler environment with a clock that moves only when the
// test says so.
type fakeEnv struct {
	mu   sync.Mutex
	t    time.Time
	wctx context.Context
}

func newFakeEnv() *fakeEnv {
	return &fakeEnv{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), wctx: context.Background()}
}

func (e *fakeEnv) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.t
}

func (e *fakeEnv) set(t time.Time) {
	e.mu.Lock()
	e.t = t
	e.mu.Unlock()
}

func (e *fakeEnv) waitCtx() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wctx
}

// fakeReader answers every request with the request's device number as a
// value, counting calls; when block is set, calls wait for it to close.
type fakeReader struct {
	mu    sync.Mutex
	n     int
	homes int   // device d's home is d % homes; none when 0
	calls []int // requests per call
	block chan struct{}
	err   error
}

func (r *fakeReader) parallel() int { return r.n }
func (r *fakeReader) home(dev uint32) int {
	if r.homes == 0 {
		return -1
	}
	return int(dev) % r.homes
}

func (r *fakeReader) readMany(ctx context.Context, reqs []readReq, out []abi.BatchEntry) ([]abi.BatchEntry, error) {
	r.mu.Lock()
	r.calls = append(r.calls, len(reqs))
	block, err := r.block, r.err
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return out[:0], err
	}
	out = out[:0]
	for _, q := range reqs {
		out = append(out, abi.BatchEntry{Value: abi.Int(int64(q.Device))})
	}
	return out, nil
}

func (r *fakeReader) states(_ context.Context, devs []uint32, out []stateResult) []stateResult {
	return append(out[:0], make([]stateResult, len(devs))...)
}

func (r *fakeReader) callSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.calls...)
}

// fakeTarget records what its loop does.
type fakeTarget struct {
	mu       sync.Mutex
	readings map[string][]time.Time // by property
	values   []int64
	errs     int
	skips    int
	applies  int
	states   int
	reports  []time.Time
	polls    int
	pollNext []time.Duration // answers of poll, in turn; 0 after
	pending  bool
}

func newFakeTarget() *fakeTarget { return &fakeTarget{readings: map[string][]time.Time{}} }

func (t *fakeTarget) reading(pc *propConfig, v abi.Value, err error, at time.Time, _ *scratch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.errs++
		return
	}
	t.readings[pc.Name] = append(t.readings[pc.Name], at)
	t.values = append(t.values, v.Int())
}
func (t *fakeTarget) skipped(n int) { t.mu.Lock(); t.skips += n; t.mu.Unlock() }
func (t *fakeTarget) pendingDesired() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}
func (t *fakeTarget) applyPending(context.Context) {
	t.mu.Lock()
	t.applies++
	t.pending = false
	t.mu.Unlock()
}
func (t *fakeTarget) state(stateResult, bool) { t.mu.Lock(); t.states++; t.mu.Unlock() }
func (t *fakeTarget) report(at time.Time, _ *scratch) {
	t.mu.Lock()
	t.reports = append(t.reports, at)
	t.mu.Unlock()
}
func (t *fakeTarget) poll(context.Context) (time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.polls++
	if len(t.pollNext) == 0 {
		return 0, nil
	}
	next := t.pollNext[0]
	t.pollNext = t.pollNext[1:]
	return next, nil
}

func (t *fakeTarget) count(prop string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.readings[prop])
}

// testConfig is a device configuration with properties of the given
// collect cycles (named p0, p1, …), report cycle report and state cycle
// state.
func testConfig(report, state time.Duration, cycles ...time.Duration) *config {
	cfg := &config{state: state}
	for i, c := range cycles {
		cfg.props = append(cfg.props, propConfig{Property: abi.Property{Handle: uint32(i + 1), Name: fmt.Sprint("p", i)},
			collect: c, report: report})
	}
	return cfg
}

// stepTo moves the clock to t, steps the scheduler and waits for the jobs
// it started.
func stepTo(s *scheduler, env *fakeEnv, t time.Time) {
	env.set(t)
	s.step(t)
	s.running.Wait()
}

// TestSchedulerKeepsEachCycle: each group of a device's properties is
// read on its own cycle, the state and report on theirs, with nothing
// skipped, on a fake clock stepped every tick.
func TestSchedulerKeepsEachCycle(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	r := &fakeReader{n: 2}
	tg := newFakeTarget()
	t0 := env.now()
	cfg := testConfig(300*time.Millisecond, time.Second, 100*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond)
	l := newLoop(context.Background(), tg, r, 7, cfg, time.Second, t0, false, 0)
	s.add(l)
	const span = 2 * time.Second
	for at := t0; !at.After(t0.Add(span)); at = at.Add(schedTick) {
		stepTo(s, env, at)
	}
	for _, c := range []struct {
		prop  string
		cycle time.Duration
	}{{"p0", 100 * time.Millisecond}, {"p1", 200 * time.Millisecond}, {"p2", 100 * time.Millisecond}} {
		got := tg.readings[c.prop]
		if min := int(span / c.cycle); len(got) < min || len(got) > min+1 {
			t.Errorf("%s read %d times in %s, want %d or %d", c.prop, len(got), span, min, min+1)
		}
		for i := 1; i < len(got); i++ {
			if d := got[i].Sub(got[i-1]); d != c.cycle {
				t.Errorf("%s read %s after the previous reading, want its cycle %s", c.prop, d, c.cycle)
			}
		}
	}
	if tg.skips != 0 || tg.errs != 0 {
		t.Errorf("skipped %d, errors %d; want none", tg.skips, tg.errs)
	}
	for i := 1; i < len(tg.reports); i++ {
		if d := tg.reports[i].Sub(tg.reports[i-1]); d != 300*time.Millisecond {
			t.Errorf("report %s after the previous one, want 300ms", d)
		}
	}
	if n := len(tg.reports); n < 6 || n > 7 {
		t.Errorf("%d reports in %s, want 6 or 7", n, span)
	}
	if tg.states < 2 || tg.states > 3 {
		t.Errorf("%d state queries in %s, want 2 or 3", tg.states, span)
	}
	for _, v := range tg.values {
		if v != 7 {
			t.Fatalf("a reading of device 7 got the value of device %d", v)
		}
	}
}

// TestSchedulerOneReadPerPluginPerStep: the reads due together are made
// with one call per plugin, split into as many parallel calls as the
// plugin has instances (but none smaller than chunkMin requests), and a
// device's requests stay in one call.
func TestSchedulerOneReadPerPluginPerStep(t *testing.T) {
	for _, c := range []struct {
		devices, instances, homes int
		want                      []int
	}{
		{devices: 40, instances: 1, want: []int{80}},
		{devices: 40, instances: 4, want: []int{20, 20, 20, 20}},
		{devices: 4, instances: 4, want: []int{8}},
		{devices: 12, instances: 4, want: []int{12, 12}},
		// Devices held by instances: one read per instance, of at most
		// chunkMax requests.
		{devices: 40, instances: 4, homes: 1, want: []int{80}},
		{devices: 40, instances: 4, homes: 4, want: []int{20, 20, 20, 20}},
		{devices: 600, instances: 4, homes: 2, want: []int{300, 300, 300, 300}},
	} {
		t.Run(fmt.Sprint(c.devices, "x", c.instances, "/", c.homes), func(t *testing.T) {
			env := newFakeEnv()
			s := newScheduler(env, schedTick, 0)
			r := &fakeReader{n: c.instances, homes: c.homes}
			other := &fakeReader{n: 1}
			t0 := env.now()
			targets := make([]*fakeTarget, c.devices)
			for i := range c.devices {
				targets[i] = newFakeTarget()
				l := newLoop(context.Background(), targets[i], r, uint32(i+1), testConfig(time.Second, time.Second, time.Second, time.Second), time.Second, t0, false, 0)
				s.add(l)
			}
			lo := newLoop(context.Background(), newFakeTarget(), other, 99, testConfig(time.Second, time.Second, time.Second), time.Second, t0, false, 0)
			s.add(lo)
			// Every first read is due within a second.
			stepTo(s, env, t0.Add(time.Second))
			got := r.callSizes()
			if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(c.want)) {
				t.Errorf("read calls of %v requests, want %v", got, c.want)
			}
			if got := other.callSizes(); len(got) != 1 || got[0] != 1 {
				t.Errorf("other plugin: read calls of %v requests, want [1]", got)
			}
			for i, tg := range targets {
				if tg.count("p0") != 1 || tg.count("p1") != 1 {
					t.Fatalf("device %d: read %d and %d times, want once each", i+1, tg.count("p0"), tg.count("p1"))
				}
				for _, v := range tg.values {
					if v != int64(i+1) {
						t.Fatalf("device %d got the reading of device %d", i+1, v)
					}
				}
			}
		})
	}
}

func sorted(a []int) []int {
	b := append([]int(nil), a...)
	for i := range b {
		for j := i + 1; j < len(b); j++ {
			if b[j] > b[i] {
				b[i], b[j] = b[j], b[i]
			}
		}
	}
	return b
}

// TestSchedulerSkipsWhileBusy: a device whose read is still running when
// it is due again is skipped (counted), not queued; and a read whose wait
// for an instance ran out is skipped too.
func TestSchedulerSkipsWhileBusy(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	block := make(chan struct{})
	r := &fakeReader{n: 1, block: block}
	tg := newFakeTarget()
	t0 := env.now()
	l := newLoop(context.Background(), tg, r, 1, testConfig(time.Hour, time.Hour, 100*time.Millisecond), time.Hour, t0, false, 0)
	s.add(l)
	at := t0.Add(100 * time.Millisecond)
	env.set(at)
	s.step(at) // starts a read that blocks
	for i := 1; i <= 3; i++ {
		at = at.Add(100 * time.Millisecond)
		env.set(at)
		s.step(at)
	}
	close(block)
	s.running.Wait()
	if got := r.callSizes(); len(got) != 1 {
		t.Errorf("%d read calls while the first was stuck, want 1", len(got))
	}
	if tg.skips != 3 || tg.count("p0") != 1 {
		t.Errorf("skipped %d, read %d; want 3 and 1", tg.skips, tg.count("p0"))
	}

	// The pool stays busy: the wait for an instance ends with an error.
	wctx, cancel := context.WithCancel(context.Background())
	cancel()
	env.mu.Lock()
	env.wctx = wctx
	env.mu.Unlock()
	r.mu.Lock()
	r.block, r.err = nil, abi.Errorf(abi.ErrUnavailable, "no instance free")
	r.mu.Unlock()
	stepTo(s, env, at.Add(100*time.Millisecond))
	if tg.skips != 4 || tg.errs != 0 {
		t.Errorf("skipped %d, read errors %d; want 4 and 0", tg.skips, tg.errs)
	}
}

// TestSchedulerWakeup: a wakeup writes the pending desired values at once,
// without reading; one that comes while a job runs runs right after it.
func TestSchedulerWakeup(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	r := &fakeReader{n: 1}
	tg := newFakeTarget()
	t0 := env.now()
	l := newLoop(context.Background(), tg, r, 1, testConfig(time.Hour, time.Hour, time.Hour), time.Hour, t0, false, 0)
	s.add(l)
	next := s.step(t0)
	s.wakeup(l)
	if got := s.step(t0); !got.Equal(l.dueAt()) {
		t.Errorf("next step at %v, want the device's next read at %v (was %v)", got, l.dueAt(), next)
	}
	s.running.Wait()
	if tg.applies != 1 || len(r.callSizes()) != 0 {
		t.Errorf("after a wakeup: %d applies and %d reads, want 1 and 0", tg.applies, len(r.callSizes()))
	}
	// Pending values are written with every job, wakeup or not.
	tg.pending = true
	stepTo(s, env, l.dueAt())
	if tg.applies != 2 {
		t.Errorf("%d applies after a job with a pending value, want 2", tg.applies)
	}
}

// TestSchedulerRemoveWaitsForJob: removing a loop returns at once when
// it is idle, else a channel that closes when its job ends; a removed
// loop is not run again.
func TestSchedulerRemoveWaitsForJob(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	block := make(chan struct{})
	r := &fakeReader{n: 1, block: block}
	tg := newFakeTarget()
	t0 := env.now()
	l := newLoop(context.Background(), tg, r, 1, testConfig(time.Hour, time.Hour, 100*time.Millisecond), time.Hour, t0, false, 0)
	s.add(l)
	at := t0.Add(100 * time.Millisecond)
	env.set(at)
	s.step(at)
	idle := s.remove(l)
	if idle == nil {
		t.Fatal("remove returned no wait while a read runs")
	}
	select {
	case <-idle:
		t.Fatal("idle before the read ended")
	default:
	}
	close(block)
	<-idle
	s.running.Wait()
	if next := s.step(at.Add(time.Hour)); !next.IsZero() {
		t.Errorf("a step is still planned at %v after the only loop was removed", next)
	}
	if got := len(r.callSizes()); got != 1 {
		t.Errorf("%d reads, want 1", got)
	}
	if idle := s.remove(l); idle != nil {
		t.Error("removing an idle, removed loop returned a wait")
	}
}

// TestSchedulerPolls: a device whose plugin asked to be polled is polled
// when it asked, until it asks no more.
func TestSchedulerPolls(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	tg := newFakeTarget()
	tg.pollNext = []time.Duration{50 * time.Millisecond, 30 * time.Millisecond}
	t0 := env.now()
	l := newLoop(context.Background(), tg, &fakeReader{n: 1}, 1, testConfig(time.Hour, time.Hour, time.Hour), time.Hour, t0, true, 20*time.Millisecond)
	s.add(l)
	for _, c := range []struct {
		at    time.Duration
		polls int
	}{{10 * time.Millisecond, 0}, {20 * time.Millisecond, 1}, {60 * time.Millisecond, 1}, {70 * time.Millisecond, 2}, {100 * time.Millisecond, 3}, {time.Second, 3}} {
		stepTo(s, env, t0.Add(c.at))
		if tg.polls != c.polls {
			t.Fatalf("at %s: %d polls, want %d", c.at, tg.polls, c.polls)
		}
	}
}

// TestSchedulerStopsOnContext: a stopping device's readings are dropped and
// its other work is not done.
func TestSchedulerStopsOnContext(t *testing.T) {
	env := newFakeEnv()
	s := newScheduler(env, schedTick, 0)
	r := &fakeReader{n: 1, err: context.Canceled}
	tg := newFakeTarget()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wctx, wcancel := context.WithCancel(context.Background())
	wcancel()
	env.wctx = wctx
	t0 := env.now()
	l := newLoop(ctx, tg, r, 1, testConfig(time.Millisecond, time.Millisecond, time.Millisecond), time.Hour, t0, false, 0)
	s.add(l)
	stepTo(s, env, t0.Add(time.Second))
	if tg.skips != 0 || tg.errs != 0 || tg.states != 0 || len(tg.reports) != 0 || tg.applies != 0 {
		t.Errorf("a stopping device: %d skipped, %d errors, %d states, %d reports, %d applies; want none",
			tg.skips, tg.errs, tg.states, len(tg.reports), tg.applies)
	}
	if !errors.Is(r.err, context.Canceled) {
		t.Fatal("reader changed")
	}
}
