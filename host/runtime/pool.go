package runtime

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"wapper.dev/wapper/abi"
)

// member is what the pool needs of an instance.
type member interface {
	comparable
	// failed reports whether a call threw the instance away.
	failed() bool
	// close releases the instance; it is not called during a call.
	close()
}

// slotState is where a pool slot is in its life.
type slotState uint8

const (
	slotStarting   slotState = iota // its first instance is being created
	slotLive                        // it has an instance that can serve
	slotRestarting                  // its instance failed; a new one comes after a backoff
	slotGone                        // closed, or its first start failed
)

// poolSlot is one place for an instance in a pool. Every field is guarded
// by the pool's mu; in is also read, without it, by the holder of the slot
// (acquire hands the slot, and its instance, to one caller at a time).
type poolSlot[T member] struct {
	id    int
	in    T
	state slotState
	busy  bool
	// homed counts the devices whose home this slot is, so that a new
	// device goes to the slot with the fewest.
	homed int
	// waiters queue, oldest first, for this slot: callers whose device
	// has it as home.
	waiters []*waiter[T]
	// pending holds handles of devices that left this slot (moved to
	// another or removed); the instance forgets them at its next use.
	pending  []uint32
	npending atomic.Int32
}

// waiter is a caller queued for a slot.
type waiter[T member] struct {
	home  *poolSlot[T] // nil: any slot
	since time.Time
	// moves is how many devices the call moves to the slot that serves
	// it when that is not home: another slot takes a call of more than
	// one only when that evens out the devices homed on the two.
	moves int
	ch    chan *poolSlot[T] // receives the slot handed over; capacity 1
}

// poolConfig is what a pool does with its instances.
type poolConfig[T member] struct {
	name string // the plugin, for errors and logs
	max  int    // most slots
	// growAfter is how long a caller may queue before the pool adds an
	// instance (while it has fewer than max); stealAfter is how long a
	// caller may wait for its device's home before another slot that
	// becomes free serves it (the device then moves).
	growAfter, stealAfter time.Duration
	// start creates the instance of slot s.
	start func(s *poolSlot[T]) (T, error)
	// revive prepares a restarted instance of s (re-adds the devices its
	// dead one served) before it serves; an error makes the pool try
	// again after the next backoff.
	revive func(s *poolSlot[T], fresh, dead T) error
	// live is told when the number of live instances changes.
	live func(delta int)
	// restarted is told when a slot got a new instance after a failure.
	restarted func()
	log       *slog.Logger
	now       func() time.Time
	after     func(time.Duration) <-chan time.Time // restart backoff
}

// pool is a plugin's set of instances. Callers acquire a slot preferring
// their device's home, queue FIFO behind it when it is busy, and are
// served by another slot when theirs stays busy or restarts. The pool
// starts with one instance and adds one, up to max, when callers queue;
// a slot whose instance failed restarts it after an exponential backoff
// while the others serve.
//
// Lock order: the pool's mu is a leaf: nothing else is locked, and no
// guest code runs, while it is held.
type pool[T member] struct {
	cfg    poolConfig[T]
	closed chan struct{} // closed by close: acquire fails, waiters leave

	mu       sync.Mutex // guards the fields below and every slot
	slots    []*poolSlot[T]
	anyQ     []*waiter[T] // callers with no home, or whose home is not live
	growing  bool
	growHold time.Time // no growth before: adding an instance failed
	failures int       // instance failures in a row, for the backoff
	lastFail time.Time
	closing  bool
	timer    *time.Timer // runs check while callers queue
	armed    bool

	idle     chan struct{} // signalled when a slot is released while closing
	wg       sync.WaitGroup
	restarts atomic.Int64
}

// Restart backoff after an instance fails.
const (
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 30 * time.Second
	backoffReset = time.Minute
)

// Defaults of when a pool grows and when a device moves to another slot.
// A move costs the plugin a device add (a Go plugin's is some 100 times a
// read), so a caller first waits for its home a while.
const (
	defaultGrowAfter  = 20 * time.Millisecond
	defaultStealAfter = 100 * time.Millisecond
)

var waiterPool sync.Pool

// newPool makes a pool whose first slot is s0, holding first (made by
// the caller, so that a plugin whose first instance fails is refused).
func newPool[T member](cfg poolConfig[T], s0 *poolSlot[T], first T) *pool[T] {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.after == nil {
		cfg.after = time.After
	}
	p := &pool[T]{cfg: cfg, closed: make(chan struct{}), idle: make(chan struct{}, 1)}
	s0.id, s0.in, s0.state = 0, first, slotLive
	p.slots = []*poolSlot[T]{s0}
	p.timer = time.AfterFunc(time.Hour, p.tick)
	p.timer.Stop()
	cfg.live(1)
	return p
}

// acquire takes a slot, preferring home (nil: any, the least loaded). It
// waits for one until ctx ends or the pool closes.
func (p *pool[T]) acquire(ctx context.Context, home *poolSlot[T]) (*poolSlot[T], error) {
	return p.acquireN(ctx, home, 1)
}

// acquireN is acquire for a call that moves moves devices to the slot
// that serves it, when that is not home (see waiter.moves).
func (p *pool[T]) acquireN(ctx context.Context, home *poolSlot[T], moves int) (*poolSlot[T], error) {
	select {
	case <-p.closed:
		return nil, ErrClosed
	default:
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if s := p.pick(home); s != nil {
		s.busy = true
		p.mu.Unlock()
		return s, nil
	}
	w, _ := waiterPool.Get().(*waiter[T])
	if w == nil {
		w = &waiter[T]{ch: make(chan *poolSlot[T], 1)}
	}
	w.home, w.since, w.moves = home, p.cfg.now(), moves
	if home != nil && home.state == slotLive {
		home.waiters = append(home.waiters, w)
	} else {
		w.home = nil
		p.anyQ = append(p.anyQ, w)
	}
	p.arm()
	p.mu.Unlock()
	var err error
	select {
	case s := <-w.ch:
		w.home = nil
		waiterPool.Put(w)
		return s, nil
	case <-ctx.Done():
		err = abi.Errorf(abi.ErrUnavailable, "plugin %s: no instance free before the deadline (%d instances, all busy or restarting)", p.cfg.name, p.size())
	case <-p.closed:
		err = ErrClosed
	}
	p.mu.Lock()
	queued := p.unqueue(w)
	p.mu.Unlock()
	if !queued {
		// A slot was handed over as the wait ended: pass it on.
		p.release(<-w.ch)
	}
	w.home = nil
	waiterPool.Put(w)
	return nil, err
}

// size returns how many slots the pool has.
func (p *pool[T]) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.slots)
}

// pick returns a free live slot for a caller preferring home, or nil when
// it must queue: home when it is free; when home is nil or not live, the
// free slot with the fewest devices.
func (p *pool[T]) pick(home *poolSlot[T]) *poolSlot[T] {
	if home != nil && home.state == slotLive {
		if !home.busy && len(home.waiters) == 0 {
			return home
		}
		return nil
	}
	var best *poolSlot[T]
	for _, s := range p.slots {
		if s.state == slotLive && !s.busy && (best == nil || s.homed < best.homed) {
			best = s
		}
	}
	return best
}

// unqueue removes w from its queue; false when it is in none (a slot was
// handed to it).
func (p *pool[T]) unqueue(w *waiter[T]) bool {
	q := &p.anyQ
	if w.home != nil {
		q = &w.home.waiters
	}
	for i, x := range *q {
		if x == w {
			*q = append((*q)[:i], (*q)[i+1:]...)
			return true
		}
	}
	return false
}

// release returns a slot. A slot whose instance failed restarts it in the
// background.
func (p *pool[T]) release(s *poolSlot[T]) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		if s.in.failed() {
			p.drop(s, slotGone)
		}
		s.busy = false
		select {
		case p.idle <- struct{}{}:
		default:
		}
		return
	}
	if !s.in.failed() {
		p.dispatch(s)
		return
	}
	dead := s.in
	p.drop(s, slotRestarting)
	s.busy = false
	// Its waiters may go to any slot now.
	p.anyQ = append(p.anyQ, s.waiters...)
	clear(s.waiters)
	s.waiters = s.waiters[:0]
	for _, w := range p.anyQ {
		w.home = nil
	}
	now := p.cfg.now()
	if now.Sub(p.lastFail) > backoffReset {
		p.failures = 0
	}
	p.failures++
	p.lastFail = now
	delay := min(backoffMin<<min(p.failures-1, 16), backoffMax)
	p.dispatchIdle()
	p.wg.Add(1)
	go p.restart(s, dead, delay)
}

// drop takes a slot's instance out of service.
func (p *pool[T]) drop(s *poolSlot[T], state slotState) {
	var zero T
	s.in, s.state = zero, state
	p.cfg.live(-1)
}

// dispatch hands a free live slot to the caller that should have it, or
// marks it idle: the oldest of its own waiters and the callers any slot
// may serve; else the oldest caller waiting for another slot longer than
// stealAfter.
func (p *pool[T]) dispatch(s *poolSlot[T]) {
	w := p.next(s)
	if w == nil {
		s.busy = false
		return
	}
	s.busy = true
	w.ch <- s
}

// next dequeues the caller s should serve, or returns nil.
func (p *pool[T]) next(s *poolSlot[T]) *waiter[T] {
	own, anyq := len(s.waiters) > 0, len(p.anyQ) > 0
	switch {
	case own && (!anyq || !p.anyQ[0].since.Before(s.waiters[0].since)):
		return popFront(&s.waiters)
	case anyq:
		return popFront(&p.anyQ)
	}
	now := p.cfg.now()
	var from *poolSlot[T]
	for _, o := range p.slots {
		if o == s || len(o.waiters) == 0 || now.Sub(o.waiters[0].since) < p.cfg.stealAfter {
			continue
		}
		// A batch waits for its home unless moving it here evens the
		// load: under load every home is busy, and moving batches
		// around (a wapper_device_add per device) would cost more than
		// the waits it saves, and make more.
		if w := o.waiters[0]; w.moves > 1 && o.homed-s.homed < 2*w.moves {
			continue
		}
		if from == nil || o.waiters[0].since.Before(from.waiters[0].since) {
			from = o
		}
	}
	if from == nil {
		return nil
	}
	return popFront(&from.waiters)
}

func popFront[W any](q *[]*W) *W {
	w := (*q)[0]
	(*q)[0] = nil
	*q = (*q)[1:]
	if len(*q) == 0 {
		*q = (*q)[:0:0] // let the array go; append makes a new one
	}
	return w
}

// dispatchIdle offers every idle live slot to the callers waiting.
func (p *pool[T]) dispatchIdle() {
	for _, s := range p.slots {
		if s.state == slotLive && !s.busy {
			p.dispatch(s)
		}
	}
}

// waiting reports whether any caller queues, and since when the oldest.
func (p *pool[T]) waiting() (bool, time.Time) {
	var oldest time.Time
	found := false
	note := func(q []*waiter[T]) {
		if len(q) > 0 && (!found || q[0].since.Before(oldest)) {
			oldest, found = q[0].since, true
		}
	}
	note(p.anyQ)
	for _, s := range p.slots {
		note(s.waiters)
	}
	return found, oldest
}

// arm makes sure check runs while callers queue.
func (p *pool[T]) arm() {
	if !p.armed {
		p.armed = true
		p.timer.Reset(min(p.cfg.growAfter, p.cfg.stealAfter))
	}
}

func (p *pool[T]) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	p.check()
}

// check grows the pool when a caller has queued growAfter, lets idle
// slots serve callers that waited stealAfter for theirs, and runs again
// later while callers queue.
func (p *pool[T]) check() {
	if p.closing {
		return
	}
	found, oldest := p.waiting()
	if !found {
		return
	}
	if p.cfg.now().Sub(oldest) >= p.cfg.growAfter {
		p.grow()
	}
	p.dispatchIdle()
	if found, _ = p.waiting(); found {
		p.arm()
	}
}

// grow adds a slot and starts its instance in the background, unless the
// pool is full, a slot is starting already, or the last instance failure
// is too recent.
func (p *pool[T]) grow() {
	if p.growing || len(p.slots) >= p.cfg.max {
		return
	}
	if p.cfg.now().Before(p.growHold) {
		return
	}
	s := &poolSlot[T]{id: len(p.slots), state: slotStarting}
	p.slots = append(p.slots, s)
	p.growing = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		in, err := p.cfg.start(s)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.growing = false
		if err != nil || p.closing {
			if err != nil {
				p.cfg.log.Error("adding a plugin instance failed; the pool stays smaller for a while", "instance", s.id, "err", err, "for", backoffMax)
				p.growHold = p.cfg.now().Add(backoffMax)
			} else {
				in.close()
			}
			s.state = slotGone
			if p.slots[len(p.slots)-1] == s {
				p.slots = p.slots[:len(p.slots)-1]
			}
			return
		}
		s.in, s.state = in, slotLive
		p.cfg.live(1)
		p.cfg.log.Info("plugin instance added: calls queued", "instance", s.id, "instances", len(p.slots))
		p.dispatch(s)
		if found, _ := p.waiting(); found {
			p.arm()
		}
	}()
}

// restart recreates a slot's instance after delay, revives it, and puts
// it in service.
func (p *pool[T]) restart(s *poolSlot[T], dead T, delay time.Duration) {
	defer p.wg.Done()
	for {
		p.cfg.log.Warn("restarting plugin instance", "instance", s.id, "after", delay)
		select {
		case <-p.cfg.after(delay):
		case <-p.closed:
			return
		}
		in, err := p.cfg.start(s)
		if err == nil {
			p.restarts.Add(1)
			p.cfg.restarted()
			if err = p.cfg.revive(s, in, dead); err != nil {
				in.close()
			}
		}
		if err != nil {
			p.cfg.log.Error("plugin instance restart failed", "instance", s.id, "err", err)
			delay = min(delay*2, backoffMax)
			continue
		}
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			in.close()
			return
		}
		s.in, s.state = in, slotLive
		p.cfg.live(1)
		p.dispatch(s)
		p.mu.Unlock()
		p.cfg.log.Info("plugin instance restarted", "instance", s.id)
		return
	}
}

// rehome records that a device moved from one slot's care to another's
// (from or to nil: it was added or removed). The instance of from
// forgets it at its next use.
func (p *pool[T]) rehome(from, to *poolSlot[T], id uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from != nil {
		from.homed--
		from.pending = append(from.pending, id)
		from.npending.Store(int32(len(from.pending)))
	}
	if to != nil {
		to.homed++
	}
}

// takePending appends the handles of devices that left s to dst and
// clears them.
func (p *pool[T]) takePending(s *poolSlot[T], dst []uint32) []uint32 {
	if s.npending.Load() == 0 {
		return dst
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dst = append(dst, s.pending...)
	s.pending = s.pending[:0]
	s.npending.Store(0)
	return dst
}

// close stops the pool: acquire fails from now on and waiters leave. It
// waits until no slot is in use or ctx ends, and returns how many are
// still in use. It may be called again, with another ctx, to wait longer.
func (p *pool[T]) close(ctx context.Context) int {
	p.mu.Lock()
	if !p.closing {
		p.closing = true
		close(p.closed)
		p.timer.Stop()
	}
	p.mu.Unlock()
	for {
		p.mu.Lock()
		busy := 0
		for _, s := range p.slots {
			if s.busy {
				busy++
			}
		}
		p.mu.Unlock()
		if busy == 0 {
			return 0
		}
		select {
		case <-p.idle:
		case <-ctx.Done():
			return busy
		}
	}
}

// closeIdle waits for the pool's goroutines and closes every instance no
// call is using. Call it after close.
func (p *pool[T]) closeIdle() {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.state == slotLive && !s.busy {
			s.in.close()
			p.drop(s, slotGone)
		}
	}
}

// each calls fn with every live instance, under the pool's lock.
func (p *pool[T]) each(fn func(T)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.state == slotLive {
			fn(s.in)
		}
	}
}
