package devices

import (
	"container/heap"
	"context"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"wapper.dev/wapper/abi"
)

// schedEnv is what the scheduler needs from its surroundings.
type schedEnv interface {
	// now is the clock.
	now() time.Time
	// waitCtx bounds a read's wait for a free plugin instance (see
	// [Manager.waitCtx]).
	waitCtx() context.Context
}

// Sizes of the jobs the scheduler makes of the reads due at one step
// (see [scheduler.split]): never more than chunkMax requests in one job,
// and jobs of devices no instance holds yet spread over the plugin's
// instances, unless that makes them smaller than chunkMin requests.
const (
	chunkMin = 16
	chunkMax = 512
)

// scheduler runs the loops of every running device of a Manager without
// a goroutine per device: it keeps their next due times in a min-heap,
// and at each step gathers everything due, makes one read of all the due
// properties per plugin instance (the devices' homes, which serve one
// call at a time, so that the reads of different instances run in
// parallel and each is one guest call), and runs the jobs on a pool of
// workers, which
// hand the readings to the devices and then do their other due work.
// Steps are at least tick apart; a wakeup (a desired value to write)
// starts one at once.
type scheduler struct {
	env     schedEnv
	tick    time.Duration
	workers int

	// incoming holds the loops added since the last step, newest first
	// (linked by loop.nextIn): thousands of devices starting at once
	// push onto it without taking mu, which the step and the jobs need.
	incoming atomic.Pointer[loop]

	mu    sync.Mutex // guards the fields below, and the loops' scheduler fields
	heap  entryHeap
	kicks chan struct{} // a step is due earlier than planned

	jobs    chan *job      // to idle workers
	running sync.WaitGroup // jobs dispatched and not done

	freeMu sync.Mutex // guards free
	free   []*job     // released jobs, for reuse

	// Scratch of step, which one goroutine runs at a time.
	byReader map[batchKey]*batch
	batches  []*batch

	// swaps holds the loops waiting to change reader and target (see
	// swap) until their work in progress ends.
	swaps map[*loop]*swapReq
}

// swapReq is a loop's pending change of reader and target.
type swapReq struct {
	t    target
	r    reader
	ok   bool          // swapped, rather than the loop stopped
	done chan struct{} // closed once swapped or stopped
}

// batch is what one step reads from one plugin instance (home), or from
// the devices of a plugin that no instance holds yet (home -1).
type batch struct {
	r     reader
	home  int
	loops []*loop
	reqs  []readReq
}

// batchKey is a batch's plugin and instance.
type batchKey struct {
	r    reader
	home int
}

// job is work for a worker: the reads of some loops and what follows
// them, or one poll.
type job struct {
	poll  *loop
	ask   []*loop // whose state the job asks, after the reads
	r     reader
	loops []*loop
	reqs  []readReq
	out   []abi.BatchEntry
	ids   []uint32 // the devices of ask
	sts   []stateResult
	sc    scratch
}

// newScheduler returns a scheduler whose steps are at least tick apart and
// whose run keeps workers idle workers; it runs nothing until run is
// called (tests call step instead).
func newScheduler(env schedEnv, tick time.Duration, workers int) *scheduler {
	return &scheduler{env: env, tick: tick, workers: workers, kicks: make(chan struct{}, 1),
		jobs: make(chan *job), byReader: map[batchKey]*batch{}}
}

// run steps the scheduler until ctx ends, with a pool of workers.
func (s *scheduler) run(ctx context.Context) {
	for range s.workers {
		go s.worker(ctx)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := s.env.now()
		next := s.step(now)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(now), s.tick)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.kicks:
		case <-timer.C:
		}
	}
}

// worker runs the jobs handed to it until ctx ends.
func (s *scheduler) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.jobs:
			s.work(j)
		}
	}
}

// kick has the scheduler step now.
func (s *scheduler) kick() {
	select {
	case s.kicks <- struct{}{}:
	default:
	}
}

// add schedules a loop, from the next step on.
func (s *scheduler) add(l *loop) {
	for {
		head := s.incoming.Load()
		l.nextIn = head
		if s.incoming.CompareAndSwap(head, l) {
			break
		}
	}
	s.kick()
}

// admitLocked moves the loops added since the last step into the heap.
// Callers hold s.mu.
func (s *scheduler) admitLocked() {
	for l := s.incoming.Swap(nil); l != nil; {
		next := l.nextIn
		l.nextIn = nil
		if !l.stopped {
			heap.Push(&s.heap, &l.main)
			if l.polls {
				heap.Push(&s.heap, &l.polling)
			}
		}
		l = next
	}
}

// remove unschedules a loop and returns a channel closed once its job
// and poll in progress, if any, have ended (nil when none runs).
func (s *scheduler) remove(l *loop) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	l.stopped = true
	for _, e := range []*entry{&l.main, &l.polling} {
		if e.index >= 0 {
			heap.Remove(&s.heap, e.index)
		}
	}
	if sw := s.swaps[l]; sw != nil {
		delete(s.swaps, l)
		close(sw.done)
	}
	if !l.main.busy && !l.polling.busy && !l.stating {
		return nil
	}
	if l.idle == nil {
		l.idle = make(chan struct{})
	}
	return l.idle
}

// wakeup has the loop write its pending desired values now.
func (s *scheduler) wakeup(l *loop) {
	s.mu.Lock()
	l.wake = true
	e := &l.main
	now := false
	if !e.busy && e.index >= 0 {
		e.at = s.env.now()
		heap.Fix(&s.heap, e.index)
		now = true
	} // else the job in progress schedules it when done
	s.mu.Unlock()
	if now {
		s.kick()
	}
}

// step starts everything due at now and returns when the next step is
// due (zero when nothing is scheduled). One goroutine steps at a time.
func (s *scheduler) step(now time.Time) time.Time {
	s.mu.Lock()
	s.admitLocked()
	var polls []*loop
	for len(s.heap) > 0 && !s.heap[0].at.After(now) {
		e := heap.Pop(&s.heap).(*entry)
		l := e.l
		if e.poll {
			e.busy = true
			polls = append(polls, l)
			continue
		}
		if e.busy {
			// The previous job still runs (its plugin is slow or
			// stuck): skip this round rather than queue it.
			l.skip(now)
			e.at = l.dueAt()
			heap.Push(&s.heap, e)
			continue
		}
		e.busy = true
		k := batchKey{l.r, l.r.home(l.dev)}
		b := s.byReader[k]
		if b == nil {
			b = s.newBatch(l.r, k.home)
			s.byReader[k] = b
		}
		b.loops = append(b.loops, l)
		b.reqs = l.take(now, b.reqs)
		l.applyNow, l.wake = l.wake, false
		// A state query still running from the last cycle is not
		// doubled: the state is asked at the next cycle.
		l.askState = l.state && !l.stating
		l.stating = l.stating || l.askState
		e.at = l.dueAt()
		heap.Push(&s.heap, e)
	}
	var next time.Time
	if len(s.heap) > 0 {
		next = s.heap[0].at
	}
	s.mu.Unlock()
	for _, l := range polls {
		j := s.newJob(nil)
		j.poll = l
		s.dispatch(j)
	}
	for _, b := range s.batches {
		s.split(b)
	}
	s.mu.Lock()
	for _, b := range s.batches {
		clear(b.loops)
		b.r, b.loops, b.reqs = nil, b.loops[:0], b.reqs[:0]
	}
	s.batches = s.batches[:0]
	clear(s.byReader)
	s.mu.Unlock()
	return next
}

// newBatch returns an empty batch for reader r, reusing those of earlier
// steps.
func (s *scheduler) newBatch(r reader, home int) *batch {
	n := len(s.batches)
	if n < cap(s.batches) {
		s.batches = s.batches[:n+1]
		if s.batches[n] == nil {
			s.batches[n] = &batch{}
		}
	} else {
		s.batches = append(s.batches, &batch{})
	}
	b := s.batches[n]
	b.r, b.home = r, home
	return b
}

// split makes jobs of a batch of at most chunkMax requests (a device's
// requests stay in one job): as few as that allows when the batch is one
// instance's, which serves one call at a time; else up to the plugin's
// parallelism, of at least chunkMin requests.
func (s *scheduler) split(b *batch) {
	n := len(b.reqs)
	jobs := 1
	if b.home < 0 {
		jobs = min(max((n+chunkMin-1)/chunkMin, 1), max(b.r.parallel(), 1))
	}
	jobs = max(jobs, (n+chunkMax-1)/chunkMax)
	size := (n + jobs - 1) / jobs
	j := s.newJob(b.r)
	for _, l := range b.loops {
		from, to := l.reqStart, l.reqEnd
		l.reqStart = len(j.reqs)
		j.reqs = append(j.reqs, b.reqs[from:to]...)
		j.loops = append(j.loops, l)
		if len(j.reqs) >= size && size > 0 {
			s.dispatch(j)
			j = s.newJob(b.r)
		}
	}
	if len(j.loops) > 0 {
		s.dispatch(j)
	} else {
		s.release(j)
	}
}

// newJob returns an empty job for reader r, reusing a released one.
func (s *scheduler) newJob(r reader) *job {
	s.freeMu.Lock()
	var j *job
	if n := len(s.free); n > 0 {
		j, s.free = s.free[n-1], s.free[:n-1]
	} else {
		j = &job{}
	}
	s.freeMu.Unlock()
	j.r = r
	return j
}

// release keeps a finished job for reuse.
func (s *scheduler) release(j *job) {
	clear(j.loops)
	clear(j.ask)
	clear(j.sts)
	j.poll, j.r, j.loops, j.ask, j.reqs, j.out = nil, nil, j.loops[:0], j.ask[:0], j.reqs[:0], j.out[:0]
	j.ids, j.sts = j.ids[:0], j.sts[:0]
	s.freeMu.Lock()
	s.free = append(s.free, j)
	s.freeMu.Unlock()
}

// dispatch hands a job to an idle worker, or to a new goroutine when
// every worker is busy (a plugin call may be stuck).
func (s *scheduler) dispatch(j *job) {
	s.running.Add(1)
	select {
	case s.jobs <- j:
	default:
		go s.work(j)
	}
}

// work runs a job.
func (s *scheduler) work(j *job) {
	defer s.running.Done()
	if l := j.poll; l != nil {
		next := l.pollOnce()
		s.mu.Lock()
		l.polling.busy = false
		if next > 0 && !l.stopped {
			l.polling.at = s.env.now().Add(next)
			heap.Push(&s.heap, &l.polling)
		}
		s.idleLocked(l)
		s.mu.Unlock()
		if next > 0 {
			s.kick()
		}
		s.release(j)
		return
	}
	rctx := s.env.waitCtx()
	at := s.env.now()
	var entries []abi.BatchEntry
	var err error
	if len(j.reqs) > 0 {
		entries, err = j.r.readMany(rctx, j.reqs, j.out[:0])
		if cap(entries) > cap(j.out) {
			j.out = entries[:0]
		}
	}
	for _, l := range j.loops {
		if l.askState { // read before the loop is free to be taken again
			j.ask = append(j.ask, l)
		}
		l.finish(rctx, at, entries, err, &j.sc)
	}
	s.jobDone(j.loops)
	// The state queries come last, after every loop of the job is free
	// again: they must not hold up the readings.
	if len(j.ask) > 0 {
		for _, l := range j.ask {
			j.ids = append(j.ids, l.dev)
		}
		sctx := s.env.waitCtx()
		j.sts = j.r.states(sctx, j.ids, j.sts)
		busy := sctx.Err() != nil
		for i, l := range j.ask {
			if l.ctx.Err() == nil {
				l.t.state(j.sts[i], busy)
			}
		}
		s.mu.Lock()
		for _, l := range j.ask {
			l.stating = false
			s.idleLocked(l)
		}
		s.mu.Unlock()
	}
	s.release(j)
}

// jobDone ends the job of loops, under one lock (thousands of loops end
// their jobs every second): a wakeup that came meanwhile runs at once.
func (s *scheduler) jobDone(loops []*loop) {
	woken := false
	s.mu.Lock()
	now := s.env.now()
	for _, l := range loops {
		e := &l.main
		e.busy = false
		if l.wake && !l.stopped && e.index >= 0 {
			e.at = now
			heap.Fix(&s.heap, e.index)
			woken = true
		}
		s.idleLocked(l)
	}
	s.mu.Unlock()
	if woken {
		s.kick()
	}
}

// swap has the loop read through r and hand its work to t from its next
// job on (a hot upgrade moving the device to another plugin): at once
// when none of its work runs, else as soon as its job, poll and state
// query in progress have ended, so that a desired value being written
// finishes where it started and no cycle is skipped. The returned request
// is done once swapped (ok) or once the loop stopped (not ok).
func (s *scheduler) swap(l *loop, t target, r reader) *swapReq {
	sw := &swapReq{t: t, r: r, done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.stopped {
		close(sw.done)
		return sw
	}
	if old := s.swaps[l]; old != nil {
		close(old.done) // superseded
	}
	if s.swaps == nil {
		s.swaps = map[*loop]*swapReq{}
	}
	s.swaps[l] = sw
	s.swapLocked(l)
	return sw
}

// swapLocked makes a loop's pending swap once none of its work runs.
// Callers hold s.mu.
func (s *scheduler) swapLocked(l *loop) {
	sw := s.swaps[l]
	if sw == nil || l.main.busy || l.polling.busy || l.stating {
		return
	}
	l.t, l.r, sw.ok = sw.t, sw.r, true
	delete(s.swaps, l)
	close(sw.done)
}

// idleLocked tells a stopping loop's waiter that its work has ended, and
// makes a pending swap. Callers hold s.mu.
func (s *scheduler) idleLocked(l *loop) {
	if len(s.swaps) > 0 {
		s.swapLocked(l)
	}
	if l.stopped && !l.main.busy && !l.polling.busy && !l.stating && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
}

// entryHeap orders entries by due time.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// schedTick is the least time between two steps of a Manager's scheduler:
// the reads due within it are made together.
const schedTick = 10 * time.Millisecond

// managerClock is the scheduler's environment in a Manager: the wall
// clock and the Manager's bound on waiting for an instance.
type managerClock struct{ m *Manager }

func (c managerClock) now() time.Time           { return time.Now() }
func (c managerClock) waitCtx() context.Context { return c.m.waitCtx() }

// startScheduler starts the Manager's scheduler, which ends with the
// Manager's context.
func (m *Manager) startScheduler() {
	m.sched = newScheduler(managerClock{m}, schedTick, max(16, 4*goruntime.GOMAXPROCS(0)))
	go m.sched.run(m.ctx)
}
