package devices

import (
	"context"
	"math/rand/v2"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// readReq names one property of one device to read.
type readReq = runtime.ReadReq

// stateResult is a device's state, or the error of asking it.
type stateResult = runtime.StateResult

// reader reads properties of many devices of one plugin in one call:
// entry i of the result answers reqs[i], with a value or its own error,
// and the error is for the whole call (see [runtime.Plugin.ReadMany]).
// states asks the state of many devices in one call likewise (see
// [runtime.Plugin.StateMany]). Both reuse out's array. parallel is how
// many calls may usefully run at once (the plugin's instances).
type reader interface {
	readMany(ctx context.Context, reqs []readReq, out []abi.BatchEntry) ([]abi.BatchEntry, error)
	states(ctx context.Context, devs []uint32, out []stateResult) []stateResult
	parallel() int
	// home is the instance that holds device dev, or -1 (see
	// [runtime.Plugin.Home]): the scheduler batches reads per home.
	home(dev uint32) int
}

// target is the running device a loop drives: it takes the readings and
// does the device's other periodic work. Each method is called by one
// goroutine at a time per loop, never with a scheduler lock held.
type target interface {
	// reading hands over a reading of pc taken at at, or its error;
	// sc is scratch space the call may use until it returns.
	reading(pc *propConfig, v abi.Value, err error, at time.Time, sc *scratch)
	// skipped counts reads skipped because the plugin stayed busy.
	skipped(n int)
	// pendingDesired tells whether a desired value waits to be written;
	// applyPending writes those values.
	pendingDesired() bool
	applyPending(ctx context.Context)
	// state records and reports the device state the scheduler asked;
	// busy says the plugin stayed busy so long that it was not asked.
	state(r stateResult, busy bool)
	// report emits every twin.
	report(at time.Time, sc *scratch)
	// poll calls the plugin's wapper_poll; next is when to call again,
	// 0 for never.
	poll(ctx context.Context) (next time.Duration, err error)
}

// scratch is the reusable space of one worker, so that handing over a
// reading or a report allocates nothing unless a subscriber keeps it (see
// [Manager.emitLazy]).
type scratch struct {
	ev  Event
	hdr []TwinStatus // the twins' headers keep sees
	// What fill completes the kept event with: the twins of props in tt
	// (only the one named, when only is set), or, for a reading (pc set),
	// the twin of pc with the push method of the header.
	tt    *twinTable
	props []propConfig
	only  string
	pc    *propConfig
}

// fill implements [eventFiller].
func (sc *scratch) fill(ev *Event) {
	if sc.pc != nil {
		ts := sc.tt.status(sc.pc)
		ts.Push = sc.hdr[0].Push
		ev.Twins = []TwinStatus{ts}
		return
	}
	ev.Twins = sc.tt.appendStatus(make([]TwinStatus, 0, len(sc.hdr)), sc.props, sc.only)
}

// release drops what the scratch space refers to, once the event is out.
func (sc *scratch) release() { sc.ev, sc.tt, sc.props, sc.pc = Event{}, nil, nil, nil }

// group is a device's properties that share a collect cycle: they are
// read together.
type group struct {
	cycle time.Duration
	props []*propConfig
	next  time.Time
}

// loop is the schedule of one running device: when each group of its
// properties is read next, when its state is asked and its twins
// reported, and whether its plugin is polled. The [scheduler] runs it; a
// loop has at most one job (reads, then the rest) and one poll running
// at a time. Its fields other than the scheduler's are set before it is
// scheduled and then owned by whoever runs its job.
type loop struct {
	t   target
	r   reader
	ctx context.Context // ends when the device stops
	dev uint32

	groups      []group
	stateCycle  time.Duration
	reportCycle time.Duration
	nextState   time.Time
	nextReport  time.Time
	// polls is set when the plugin asked to be polled; pollWait is the
	// backoff after a failed poll.
	polls    bool
	pollWait time.Duration

	// What the job being run does, set by take and used by finish: the
	// due groups, where their requests start in the job, and whether the
	// state and report are due.
	due              []int
	reqStart, reqEnd int
	state, report    bool
	applyNow         bool
	askState         bool // the job asks the state (set by the scheduler)

	// nextIn links the scheduler's loops added since its last step.
	nextIn *loop

	// Guarded by the scheduler's lock.
	main, polling entry
	wake          bool          // a desired value was set: apply it now
	stating       bool          // its state query runs
	stopped       bool          // no longer scheduled
	idle          chan struct{} // closed when the running job or poll ends, for stop
}

// entry is one place of a loop in the scheduler's heap: its job or its
// poll.
type entry struct {
	l     *loop
	poll  bool
	at    time.Time // when due
	index int       // in the heap, -1 when not in it
	busy  bool      // its work runs
}

// newLoop returns the loop of a device running cfg, its first reads
// spread over their cycle (at most a second) from now so that many
// devices do not all read at the same instant; the state is asked and the
// twins reported in the same wakeups as the first reads, which keeps the
// scheduler's work per device and cycle at one job.
func newLoop(ctx context.Context, t target, r reader, dev uint32, cfg *config, defReport time.Duration, now time.Time, polls bool, firstPoll time.Duration) *loop {
	l := &loop{t: t, r: r, ctx: ctx, dev: dev, stateCycle: cfg.state, polls: polls}
	l.main = entry{l: l, index: -1}
	l.polling = entry{l: l, poll: true, index: -1}
	first := time.Time{}
	for i := range cfg.props {
		pc := &cfg.props[i]
		gi := -1
		for j := range l.groups {
			if l.groups[j].cycle == pc.collect {
				gi = j
			}
		}
		if gi < 0 {
			next := now.Add(time.Duration(rand.Int64N(int64(min(pc.collect, time.Second)))))
			l.groups = append(l.groups, group{cycle: pc.collect, next: next})
			gi = len(l.groups) - 1
			if first.IsZero() || next.Before(first) {
				first = next
			}
		}
		l.groups[gi].props = append(l.groups[gi].props, pc)
		if l.reportCycle == 0 || pc.report < l.reportCycle {
			l.reportCycle = pc.report
		}
	}
	if l.reportCycle == 0 {
		l.reportCycle = defReport
	}
	if first.IsZero() {
		first = now
	}
	l.nextState, l.nextReport = first, first.Add(l.reportCycle)
	l.main.at = l.dueAt()
	l.polling.at = now.Add(firstPoll)
	return l
}

// dueAt is when the loop's job is due next.
func (l *loop) dueAt() time.Time {
	next := l.nextReport
	if l.nextState.Before(next) {
		next = l.nextState
	}
	for i := range l.groups {
		if l.groups[i].next.Before(next) {
			next = l.groups[i].next
		}
	}
	return next
}

// advance moves a due time on by one cycle, or to a cycle from now when
// it fell behind (the device was busy that long).
func advance(next time.Time, cycle time.Duration, now time.Time) time.Time {
	next = next.Add(cycle)
	if next.Before(now) {
		next = now.Add(cycle)
	}
	return next
}

// take decides what the loop's job does at now, appends the requests of
// its due groups to reqs, and moves its due times on. It returns reqs.
func (l *loop) take(now time.Time, reqs []readReq) []readReq {
	l.due = l.due[:0]
	l.reqStart = len(reqs)
	for i := range l.groups {
		g := &l.groups[i]
		if now.Before(g.next) {
			continue
		}
		l.due = append(l.due, i)
		for _, pc := range g.props {
			reqs = append(reqs, readReq{Device: l.dev, Handle: pc.Handle})
		}
		g.next = advance(g.next, g.cycle, now)
	}
	l.state = !now.Before(l.nextState)
	if l.state {
		l.nextState = advance(l.nextState, l.stateCycle, now)
	}
	l.report = !now.Before(l.nextReport)
	if l.report {
		l.nextReport = advance(l.nextReport, l.reportCycle, now)
	}
	l.reqEnd = len(reqs)
	return reqs
}

// skip is take for a job that cannot run (the previous one still runs):
// the due reads are counted as skipped and the due times move on.
func (l *loop) skip(now time.Time) {
	n := 0
	for i := range l.groups {
		if g := &l.groups[i]; !now.Before(g.next) {
			g.next = advance(g.next, g.cycle, now)
			n++
		}
	}
	if !now.Before(l.nextState) {
		l.nextState = advance(l.nextState, l.stateCycle, now)
	}
	if !now.Before(l.nextReport) {
		l.nextReport = advance(l.nextReport, l.reportCycle, now)
	}
	if n > 0 {
		l.t.skipped(n)
	}
}

// finish hands the job's readings over (entries answer the job's
// requests; err is for the whole call, and rctx bounded the wait for an
// instance), then writes pending desired values and reports, as take
// decided. The state is asked after (see [scheduler.work]), so that a
// slow state call does not hold up the job's other loops.
func (l *loop) finish(rctx context.Context, at time.Time, entries []abi.BatchEntry, err error, sc *scratch) {
	pos := l.reqStart
	if len(l.due) > 0 {
		// A failed call whose wait for an instance ran out: the pool
		// stayed busy, and the reading is skipped rather than queued.
		busy := err != nil && rctx.Err() != nil
		switch {
		case busy && l.ctx.Err() != nil:
			// stopping
		case busy:
			l.t.skipped(len(l.due))
		default:
			for _, gi := range l.due {
				for _, pc := range l.groups[gi].props {
					if err != nil {
						l.t.reading(pc, abi.Value{}, err, at, sc)
					} else {
						l.t.reading(pc, entries[pos].Value, entries[pos].Err, at, sc)
					}
					pos++
				}
			}
		}
	}
	if l.ctx.Err() != nil {
		return
	}
	if l.applyNow || l.t.pendingDesired() {
		l.t.applyPending(l.ctx)
	}
	if l.report {
		l.t.report(at, sc)
	}
}

// pollOnce polls the plugin for the device and returns when to poll
// again: what the plugin asked, a backoff after a failure (from 100 ms,
// doubling to 10 s), or 0 for never.
func (l *loop) pollOnce() time.Duration {
	next, err := l.t.poll(l.ctx)
	if err != nil {
		if l.ctx.Err() != nil {
			return 0
		}
		l.pollWait = min(max(2*l.pollWait, pollBackoffMin), pollBackoffMax)
		return l.pollWait
	}
	l.pollWait = 0
	return next
}

const (
	pollBackoffMin = 100 * time.Millisecond
	pollBackoffMax = 10 * time.Second
)
