package devices

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/store"
)

// twinState is the twin of one property, as the device keeps it.
type twinState struct {
	store.Twin
	// val is the last reading; when stale, Twin.Reported has not been
	// formatted from it yet (see [twinState.text]): a reading that nobody
	// looks at before the next one costs no string.
	val      abi.Value
	stale    bool
	dirty    bool      // Reported not saved yet
	err      string    // last read or write error, cleared by a success
	errSeq   uint64    // the desired seq whose write failed last
	pushedAt time.Time // when a reading last carried the pushMethod
	fails    readFails
}

// text brings Reported up to date with the last reading.
func (t *twinState) text() string {
	if t.stale {
		t.Reported, t.stale = t.val.Text(), false
	}
	return t.Reported
}

// readFails is a run of failed reads of one property, for the rate limit
// of their warnings: the first is logged, then a summary at most every
// readWarnEvery, and a line when a read succeeds again.
type readFails struct {
	n         int       // failed reads in the run
	first     time.Time // when the run started
	logged    time.Time // when its last warning was logged
	sinceLast int       // failed reads since that warning
}

// readWarnEvery is how often a run of failed reads is summed up.
const readWarnEvery = time.Minute

// failNote says what a failed read should log: nothing (quiet), its first
// failure (first), or a summary of the run (summary, with the failures
// since the last warning and how long that was, and how long the run has
// lasted).
type failNote struct {
	first, summary bool
	repeated       int
	since, lasting time.Duration
}

// twinTable holds the twins of one device: reported, desired and applied
// values, errors, and the waiters for applied desired values. Its lock
// (mu) guards every field and is held only for short sections that never
// call out (no plugin, store, log or event call), so any goroutine may
// take it, including with the device's own lock held (never the other
// way round).
type twinTable struct {
	mu    sync.Mutex
	twins map[string]*twinState // by property name; nil until loaded
	// applied is closed, and replaced, each time a desired value is
	// written or fails to be: [twinTable.waitApplied] waits on it.
	applied chan struct{}
}

func newTwinTable() *twinTable { return &twinTable{applied: make(chan struct{})} }

// loaded tells whether the twins were loaded (from the store) yet.
func (tt *twinTable) loaded() bool {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.twins != nil
}

// load fills a table not loaded yet with the stored twins, and adds an
// empty twin for each property in names that has none.
func (tt *twinTable) load(stored map[string]store.Twin, props []propConfig) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.twins == nil {
		tt.twins = make(map[string]*twinState, max(len(stored), len(props)))
		for k, t := range stored {
			tt.twins[k] = &twinState{Twin: t}
		}
	}
	for i := range props {
		if tt.twins[props[i].Name] == nil {
			tt.twins[props[i].Name] = &twinState{}
		}
	}
}

// specDesiredChanged returns the properties of props whose spec desired
// value differs from the one last stored from the spec.
func (tt *twinTable) specDesiredChanged(props []propConfig) []propConfig {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var out []propConfig
	for _, pc := range props {
		if t := tt.twins[pc.Name]; pc.desired != "" && (t == nil || pc.desired != t.SpecDesired) {
			out = append(out, pc)
		}
	}
	return out
}

// get returns the twin of a property, adding it when missing. Callers
// hold tt.mu.
func (tt *twinTable) getLocked(name string) *twinState {
	if tt.twins == nil {
		tt.twins = map[string]*twinState{}
	}
	t := tt.twins[name]
	if t == nil {
		t = &twinState{}
		tt.twins[name] = t
	}
	return t
}

// statusLocked fills ts with the twin of pc. Callers hold tt.mu.
func (tt *twinTable) statusLocked(pc *propConfig, t *twinState, ts *TwinStatus) {
	errText := t.err
	if pc.invalidWhy != "" {
		if errText != "" {
			errText += "; "
		}
		errText += pc.invalidWhy
	}
	*ts = TwinStatus{Property: pc.Name, Type: pc.Type, AccessMode: pc.AccessMode,
		Desired: t.Desired, DesiredSeq: t.DesiredSeq, DesiredTime: t.DesiredTime, DesiredBy: t.DesiredBy,
		AppliedSeq: t.AppliedSeq, AppliedTime: t.AppliedTime,
		Reported: t.text(), ReportedTime: t.ReportedTime, Error: errText, Push: pc.push}
}

// status returns the twin of pc.
func (tt *twinTable) status(pc *propConfig) TwinStatus {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var ts TwinStatus
	tt.statusLocked(pc, tt.getLocked(pc.Name), &ts)
	return ts
}

// appendStatus appends the twins of props (only those only names, when
// only is not empty) to out.
func (tt *twinTable) appendStatus(out []TwinStatus, props []propConfig, only string) []TwinStatus {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for i := range props {
		pc := &props[i]
		if only != "" && pc.Name != only {
			continue
		}
		out = append(out, TwinStatus{})
		tt.statusLocked(pc, tt.getLocked(pc.Name), &out[len(out)-1])
	}
	return out
}

// setReported records a reading of pc taken at now. It returns the run
// of failed reads the reading ends (n is 0 when none), and the property's
// pushMethod when the reading carries it: as in mapper-framework, a
// property's reportCycle paces its pushMethod, so a reading carries it at
// most once a cycle. The reported text is formatted only when asked for.
func (tt *twinTable) setReported(pc *propConfig, v abi.Value, now time.Time) (ended readFails, push *v1beta1.PushMethod) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.getLocked(pc.Name)
	ended, t.fails = t.fails, readFails{}
	switch v.Type() {
	case abi.TypeString, abi.TypeBytes, abi.TypeStream:
		// Their bytes may belong to a buffer the reader reuses.
		t.Reported, t.stale = v.Text(), false
	default:
		t.val, t.stale = v, true
	}
	t.ReportedTime, t.dirty, t.err = now, true, ""
	if push = pc.push; push != nil {
		if !t.pushedAt.IsZero() && now.Sub(t.pushedAt) < pc.report {
			push = nil
		} else {
			t.pushedAt = now
		}
	}
	return ended, push
}

// readFailed records a failed read of pc at clock and says what to log.
func (tt *twinTable) readFailed(pc *propConfig, text string, clock time.Time) failNote {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.getLocked(pc.Name)
	t.err = text
	f := &t.fails
	f.n++
	switch {
	case f.n == 1:
		f.first, f.logged, f.sinceLast = clock, clock, 0
		return failNote{first: true}
	case clock.Sub(f.logged) >= readWarnEvery:
		f.sinceLast++
		n := failNote{summary: true, repeated: f.sinceLast, since: clock.Sub(f.logged), lasting: clock.Sub(f.first)}
		f.logged, f.sinceLast = clock, 0
		return n
	default:
		f.sinceLast++
		return failNote{}
	}
}

// setDesired records a desired value the store has saved, and returns the
// twin of pc (zero when pc is nil: the device does not run the property).
func (tt *twinTable) setDesired(prop string, saved store.Twin, pc *propConfig) TwinStatus {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.getLocked(prop)
	t.Desired, t.DesiredSeq, t.DesiredTime, t.DesiredBy, t.SpecDesired = saved.Desired, saved.DesiredSeq, saved.DesiredTime, saved.DesiredBy, saved.SpecDesired
	var ts TwinStatus
	if pc != nil {
		tt.statusLocked(pc, t, &ts)
	}
	return ts
}

// pending returns the desired value of prop not yet written, if any
// (failed writes stay pending and are tried again).
func (tt *twinTable) pending(prop string) (seq uint64, value string, ok bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.twins[prop]
	if t == nil || !t.Pending() {
		return 0, "", false
	}
	return t.DesiredSeq, t.Desired, true
}

// anyPending tells whether a desired value of props waits to be written.
func (tt *twinTable) anyPending(props []propConfig) bool {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for i := range props {
		if t := tt.twins[props[i].Name]; t != nil && t.Pending() {
			return true
		}
	}
	return false
}

// writeFailed records that writing desired value seq of prop failed, wakes
// the waiters, and says whether it is the first failure of that seq.
func (tt *twinTable) writeFailed(prop string, seq uint64, text string) (first bool) {
	tt.mu.Lock()
	t := tt.getLocked(prop)
	first = t.errSeq != seq
	t.err, t.errSeq = text, seq
	tt.mu.Unlock()
	tt.notify()
	return first
}

// markApplied records that desired value seq of prop was written at now.
// Waiters are woken by [twinTable.notify], after the read-back.
func (tt *twinTable) markApplied(prop string, seq uint64, now time.Time) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.getLocked(prop)
	if seq > t.AppliedSeq {
		t.AppliedSeq, t.AppliedTime = seq, now
	}
	t.err, t.errSeq = "", 0
}

// notify wakes every waiter of [twinTable.waitApplied].
func (tt *twinTable) notify() {
	tt.mu.Lock()
	ch := tt.applied
	tt.applied = make(chan struct{})
	tt.mu.Unlock()
	close(ch)
}

// waitApplied waits until desired value seq of prop has been written, or
// its write failed (the error wraps [ErrUnavailable]), or stopped returns
// an error (the device cannot run), or ctx ends. stopped is asked after
// each change, without tt.mu held.
func (tt *twinTable) waitApplied(ctx context.Context, prop string, seq uint64, stopped func() error) error {
	for {
		tt.mu.Lock()
		ch := tt.applied
		var applied bool
		var werr string
		if t := tt.twins[prop]; t != nil {
			applied = t.AppliedSeq >= seq
			if t.errSeq == seq {
				werr = t.err
			}
		}
		tt.mu.Unlock()
		switch {
		case applied:
			return nil
		case werr != "":
			return fmt.Errorf("%w: %s", ErrUnavailable, werr)
		}
		if err := stopped(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// takeDirty appends the reported values not saved yet to batch, as saved
// from now on.
func (tt *twinTable) takeDirty(device string, batch []store.Reported) []store.Reported {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for name, t := range tt.twins {
		if t.dirty {
			batch = append(batch, store.Reported{Device: device, Property: name, Value: t.text(), Time: t.ReportedTime})
			t.dirty = false
		}
	}
	return batch
}

// unsaved counts the reported values not saved yet.
func (tt *twinTable) unsaved() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	n := 0
	for _, t := range tt.twins {
		if t.dirty {
			n++
		}
	}
	return n
}
