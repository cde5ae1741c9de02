package runtime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
)

// fakeInst stands in for an instance in the pool's tests.
type fakeInst struct {
	n      int
	dead   bool
	closed bool
}

func (f *fakeInst) failed() bool { return f.dead }
func (f *fakeInst) close()       { f.closed = true }

// poolRig is a pool of fake instances with a clock the test moves and
// restart backoffs the test ends.
type poolRig struct {
	t       *testing.T
	p       *pool[*fakeInst]
	mu      sync.Mutex // guards now, live, started, revived
	now     time.Time
	live    int
	started int
	revived [][2]*fakeInst
	backoff chan time.Time
	delays  chan time.Duration
}

func newPoolRig(t *testing.T, max int) *poolRig {
	r := &poolRig{t: t, now: time.Unix(1000, 0), backoff: make(chan time.Time), delays: make(chan time.Duration, 16)}
	cfg := poolConfig[*fakeInst]{
		name: "fake", max: max, growAfter: 20 * time.Millisecond, stealAfter: 100 * time.Millisecond,
		start: func(*poolSlot[*fakeInst]) (*fakeInst, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.started++
			return &fakeInst{n: r.started}, nil
		},
		revive: func(_ *poolSlot[*fakeInst], fresh, dead *fakeInst) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.revived = append(r.revived, [2]*fakeInst{fresh, dead})
			return nil
		},
		live: func(d int) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.live += d
		},
		restarted: func() {},
		log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		now: func() time.Time {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.now
		},
		after: func(d time.Duration) <-chan time.Time {
			r.delays <- d
			return r.backoff
		},
	}
	r.started = 1
	r.p = newPool(cfg, &poolSlot[*fakeInst]{}, &fakeInst{n: 1})
	t.Cleanup(func() {
		r.p.close(context.Background())
		close(r.backoff)
		r.p.closeIdle()
	})
	return r
}

func (r *poolRig) advance(d time.Duration) {
	r.mu.Lock()
	r.now = r.now.Add(d)
	r.mu.Unlock()
}

// addSlot adds a live slot at once, as a finished growth would.
func (r *poolRig) addSlot() *poolSlot[*fakeInst] {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.mu.Lock()
	r.started++
	in := &fakeInst{n: r.started}
	r.mu.Unlock()
	s := &poolSlot[*fakeInst]{id: len(r.p.slots), in: in, state: slotLive}
	r.p.slots = append(r.p.slots, s)
	r.p.cfg.live(1)
	return s
}

type acquired struct {
	s   *poolSlot[*fakeInst]
	err error
}

// acquireAsync starts an acquire and waits until it has queued.
func (r *poolRig) acquireAsync(ctx context.Context, home *poolSlot[*fakeInst]) <-chan acquired {
	r.t.Helper()
	return r.acquireAsyncN(ctx, home, 1)
}

// acquireAsyncN is acquireAsync for a call that moves n devices.
func (r *poolRig) acquireAsyncN(ctx context.Context, home *poolSlot[*fakeInst], n int) <-chan acquired {
	r.t.Helper()
	before := r.queued()
	ch := make(chan acquired, 1)
	go func() {
		s, err := r.p.acquireN(ctx, home, n)
		ch <- acquired{s, err}
	}()
	for r.queued() == before {
		select {
		case a := <-ch:
			r.t.Fatalf("acquire did not queue: got slot %v, err %v", a.s, a.err)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	return ch
}

// queued counts the callers waiting.
func (r *poolRig) queued() int {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	n := len(r.p.anyQ)
	for _, s := range r.p.slots {
		n += len(s.waiters)
	}
	return n
}

// check runs the pool's periodic check now.
func (r *poolRig) check() {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.p.check()
}

func (r *poolRig) mustAcquire(home *poolSlot[*fakeInst]) *poolSlot[*fakeInst] {
	r.t.Helper()
	s, err := r.p.acquire(context.Background(), home)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func TestPoolServesHomeInOrder(t *testing.T) {
	r := newPoolRig(t, 2)
	a, b := r.p.slots[0], r.addSlot()
	if s := r.mustAcquire(b); s != b {
		t.Fatalf("idle home %d not taken: got %d", b.id, s.id)
	}
	held := r.mustAcquire(a)
	first := r.acquireAsync(context.Background(), a)
	second := r.acquireAsync(context.Background(), a)
	r.p.release(held)
	if got := <-first; got.s != a {
		t.Fatalf("first waiter got %v, want its home", got.s)
	}
	r.p.release(a)
	if got := <-second; got.s != a {
		t.Fatalf("second waiter got %v, want its home", got.s)
	}
	r.p.release(a)
	r.p.release(b)
}

func TestPoolStealsOnlyAfterStealAfter(t *testing.T) {
	r := newPoolRig(t, 2)
	a, b := r.p.slots[0], r.addSlot()
	held := r.mustAcquire(a)
	w := r.acquireAsync(context.Background(), a)
	// Waiting less than stealAfter: the idle slot leaves it to its home.
	r.advance(99 * time.Millisecond)
	r.check()
	if r.queued() != 1 || b.busy {
		t.Fatalf("caller served by another slot before stealAfter (queued %d, other busy %v)", r.queued(), b.busy)
	}
	r.advance(time.Millisecond)
	r.check()
	if got := <-w; got.s != b {
		t.Fatalf("caller waiting stealAfter got %v, want the idle slot %d", got.s, b.id)
	}
	r.p.release(b)
	r.p.release(held)
}

// TestPoolStealsBatchesOnlyToEvenTheLoad: a call that would move many
// devices waits for its home however long, unless its home holds so many
// more devices than the idle slot that moving them evens the load.
func TestPoolStealsBatchesOnlyToEvenTheLoad(t *testing.T) {
	r := newPoolRig(t, 2)
	a, b := r.p.slots[0], r.addSlot()
	a.homed, b.homed = 100, 90
	held := r.mustAcquire(a)
	w := r.acquireAsyncN(context.Background(), a, 10)
	r.advance(time.Second)
	r.check()
	if r.queued() != 1 || b.busy {
		t.Fatalf("batch of 10 moved from a home of 100 devices to one of 90 (queued %d, other busy %v)", r.queued(), b.busy)
	}
	a.homed = 110
	r.check()
	if got := <-w; got.s != b {
		t.Fatalf("batch of 10 waiting on a home of 110 devices got %v, want the idle slot of 90", got.s)
	}
	r.p.release(b)
	r.p.release(held)
}

func TestPoolReleaseServesLongestWaiterOfAnotherSlot(t *testing.T) {
	r := newPoolRig(t, 2)
	a, b := r.p.slots[0], r.addSlot()
	ha, hb := r.mustAcquire(a), r.mustAcquire(b)
	w := r.acquireAsync(context.Background(), a)
	r.advance(200 * time.Millisecond)
	// b comes free with no caller of its own: it serves a's.
	r.p.release(hb)
	if got := <-w; got.s != b {
		t.Fatalf("got %v, want slot %d", got.s, b.id)
	}
	r.p.release(b)
	r.p.release(ha)
}

func TestPoolGrowsWhenCallersQueue(t *testing.T) {
	r := newPoolRig(t, 2)
	held := r.mustAcquire(nil)
	w := r.acquireAsync(context.Background(), nil)
	r.advance(19 * time.Millisecond)
	r.check()
	if n := r.p.size(); n != 1 {
		t.Fatalf("pool grew to %d before growAfter", n)
	}
	r.advance(time.Millisecond)
	r.check()
	got := <-w // the new instance serves the caller with no home
	if got.err != nil || got.s == held || got.s.in.n != 2 {
		t.Fatalf("queued caller got slot %v (err %v), want the new instance", got.s, got.err)
	}
	// Full: no more growth.
	w2 := r.acquireAsync(context.Background(), nil)
	r.advance(time.Second)
	r.check()
	if n := r.p.size(); n != 2 {
		t.Fatalf("pool of max 2 grew to %d", n)
	}
	r.p.release(held)
	if got := <-w2; got.s != held {
		t.Fatalf("got %v, want the released slot", got.s)
	}
	r.p.release(held)
	r.p.release(got.s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live != 2 {
		t.Fatalf("%d live instances counted, want 2", r.live)
	}
}

func TestPoolRestartsFailedInstance(t *testing.T) {
	r := newPoolRig(t, 2)
	a, b := r.p.slots[0], r.addSlot()
	s := r.mustAcquire(a)
	old := s.in
	w := r.acquireAsync(context.Background(), a)
	old.dead = true
	r.p.release(s)
	// Its caller goes to the other slot at once: its home is restarting.
	if got := <-w; got.s != b {
		t.Fatalf("caller of a failed slot got %v, want slot %d", got.s, b.id)
	}
	if d := <-r.delays; d != backoffMin {
		t.Fatalf("first restart after %v, want %v", d, backoffMin)
	}
	r.mu.Lock()
	live := r.live
	r.mu.Unlock()
	if live != 1 {
		t.Fatalf("%d live instances while one restarts, want 1", live)
	}
	r.backoff <- time.Time{}
	for r.p.restarts.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	s2 := r.mustAcquire(a) // waits for the restart to finish
	if s2 != a || s2.in == old {
		t.Fatalf("got slot %v with instance %v, want slot %d with a new instance", s2, s2.in, a.id)
	}
	r.mu.Lock()
	if len(r.revived) != 1 || r.revived[0][1] != old || r.revived[0][0] != s2.in {
		t.Errorf("revive calls %v, want one with the new and the dead instance", r.revived)
	}
	r.mu.Unlock()
	r.p.release(s2)
	r.p.release(b)
}

func TestPoolWaitEndsWithContextOrClose(t *testing.T) {
	r := newPoolRig(t, 1)
	held := r.mustAcquire(nil)
	ctx, cancel := context.WithCancel(context.Background())
	w := r.acquireAsync(ctx, held)
	cancel()
	if got := <-w; abi.CodeOf(got.err) != abi.ErrUnavailable {
		t.Fatalf("cancelled wait: %v, want unavailable", got.err)
	}
	if n := r.queued(); n != 0 {
		t.Fatalf("%d callers still queued after their wait ended", n)
	}
	w = r.acquireAsync(context.Background(), held)
	closed := make(chan int, 1)
	stop, cancelStop := context.WithCancel(context.Background())
	go func() { closed <- r.p.close(stop) }()
	if got := <-w; !errors.Is(got.err, ErrClosed) {
		t.Fatalf("wait as the pool closes: %v, want ErrClosed", got.err)
	}
	cancelStop()
	if n := <-closed; n != 1 {
		t.Fatalf("close with a call in progress reports %d busy, want 1", n)
	}
	r.p.release(held)
	if n := r.p.close(context.Background()); n != 0 {
		t.Fatalf("close after the last release reports %d busy", n)
	}
	if _, err := r.p.acquire(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire on a closed pool: %v", err)
	}
}

func TestPoolRehomeQueuesRemovals(t *testing.T) {
	r := newPoolRig(t, 2)
	a, b := r.p.slots[0], r.addSlot()
	r.p.rehome(nil, a, 7)
	r.p.rehome(a, b, 7)
	r.p.rehome(b, nil, 7)
	if a.homed != 0 || b.homed != 0 {
		t.Fatalf("homed counts %d and %d after the device left both", a.homed, b.homed)
	}
	if got := r.p.takePending(a, nil); len(got) != 1 || got[0] != 7 {
		t.Fatalf("pending removals of the first slot %v, want [7]", got)
	}
	if got := r.p.takePending(a, nil); len(got) != 0 {
		t.Fatalf("pending removals taken twice: %v", got)
	}
	if got := r.p.takePending(b, nil); len(got) != 1 {
		t.Fatalf("pending removals of the second slot %v, want [7]", got)
	}
}

func TestRegistryKeepsNewerDevice(t *testing.T) {
	reg := newRegistry()
	d1 := newDevice(abi.Device{ID: 3, Name: "a"}, nil, reg.nextVersion())
	if !reg.add(3, d1) || reg.add(3, d1) {
		t.Fatal("a free handle refused, or a taken one accepted")
	}
	reg.remove(3, d1)
	d2 := newDevice(abi.Device{ID: 3, Name: "b"}, nil, reg.nextVersion())
	if !reg.add(3, d2) {
		t.Fatal("a handle freed by remove stays taken")
	}
	reg.remove(3, d1) // a late removal of the old device
	if reg.get(3) != d2 {
		t.Fatal("removing a device dropped the newer one with its handle")
	}
	if d2.cur.Load().version <= d1.cur.Load().version {
		t.Fatal("description versions do not grow")
	}
}
