package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// Phase says whether a device runs.
type Phase string

// Device phases.
const (
	// PhasePending: being added to its plugin, or waiting to retry after a
	// transient failure (Reason and DeviceStatus.Attempts say so).
	PhasePending Phase = "Pending"
	// PhaseRunning: added to its plugin and polled.
	PhaseRunning Phase = "Running"
	// PhaseError: cannot run until its objects change or its plugin
	// loads; Reason says why.
	PhaseError Phase = "Error"
)

// TwinStatus is the twin of one property.
type TwinStatus struct {
	Property   string `json:"property"`
	Type       string `json:"type"`
	AccessMode string `json:"accessMode"`
	// Desired is the desired value (KubeEdge twin text), DesiredSeq its
	// host-wide sequence number and AppliedSeq the last one written to the
	// device; Desired is pending while DesiredSeq > AppliedSeq.
	Desired     string    `json:"desired,omitempty"`
	DesiredSeq  uint64    `json:"desiredSeq,omitempty"`
	DesiredTime time.Time `json:"desiredTime,omitzero"`
	DesiredBy   string    `json:"desiredBy,omitempty"`
	AppliedSeq  uint64    `json:"appliedSeq,omitempty"`
	AppliedTime time.Time `json:"appliedTime,omitzero"`
	// Reported is the last value read, at ReportedTime.
	Reported     string    `json:"reported,omitempty"`
	ReportedTime time.Time `json:"reportedTime,omitzero"`
	// Error is the last read or write error, cleared by a success. When
	// the Device spec's desired value is not written because it is not
	// valid for the property's type, Error says so (after the read or
	// write error, if any) until the spec changes.
	Error string `json:"error,omitempty"`
	// Push is the property's pushMethod from the Device spec. A reading
	// event carries it at most once per the property's reportCycle (as
	// mapper-framework pushes every reportCycle); the others have nil.
	Push *v1beta1.PushMethod `json:"-"`
}

// DeviceStatus is a device with its state and twins.
type DeviceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Source    string `json:"source"`
	Model     string `json:"model,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
	Plugin    string `json:"plugin,omitempty"`
	Phase     Phase  `json:"phase"`
	Reason    string `json:"reason,omitempty"`
	// Attempts counts the failed attempts in a row to add the device to
	// its plugin; NextAttempt is when it is tried again (phase Pending).
	Attempts    int          `json:"attempts,omitempty"`
	NextAttempt time.Time    `json:"nextAttempt,omitzero"`
	State       string       `json:"state"`
	StateReason string       `json:"stateReason,omitempty"`
	StateTime   time.Time    `json:"stateTime,omitzero"`
	Twins       []TwinStatus `json:"twins"`
	Methods     []abi.Method `json:"methods,omitempty"`
}

type twinState struct {
	store.Twin
	dirty    bool
	err      string
	errSeq   uint64 // the desired seq whose write failed last
	lastRead time.Time
	pushedAt time.Time // when a reading last carried the pushMethod
	fails    readFails
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

type device struct {
	m    *Manager
	key  string
	ns   string
	name string
	id   uint32

	// handles and nextHandle belong to reconciliation (the Manager's
	// reconciliation lock).
	handles    map[string]uint32
	nextHandle uint32
	// ignored maps a property to the spec desired value last logged as
	// not written (the property is not ReadWrite), invalid to the one
	// last logged as not valid for its type; reconciliation owns them.
	ignored map[string]string
	invalid map[string]string

	mu        sync.Mutex // guards every field below
	source    string
	cfg       *config
	model     *v1beta1.DeviceModel
	phase     Phase
	reason    string
	state     abi.State
	stReason  string
	stTime    time.Time
	twins     map[string]*twinState
	added     bool
	appliedCh chan struct{}
	// attempts is the number of failed adds in a row, nextAttempt when
	// the next one is due (zero when not retrying).
	attempts    int
	nextAttempt time.Time
	// cancel ends the device's loop, done closes when it has ended and
	// settled after its first attempt to add; nil before the first loop.
	cancel  context.CancelFunc
	done    chan struct{}
	settled chan struct{}

	wake chan struct{}
}

func newDevice(m *Manager, key string, id uint32) *device {
	ns, name := splitKey(key)
	d := &device{m: m, key: key, ns: ns, name: name, id: id, handles: map[string]uint32{},
		phase: PhasePending, appliedCh: make(chan struct{}), wake: make(chan struct{}, 1)}
	m.met.phases.WithLabelValues(string(PhasePending)).Inc()
	return d
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "default", k
}

// handleFor returns the stable handle of a property name. Only
// reconciliation calls it (under the reconciliation lock).
func (d *device) handleFor(name string) uint32 {
	if h, ok := d.handles[name]; ok {
		return h
	}
	d.nextHandle++
	d.handles[name] = d.nextHandle
	return d.nextHandle
}

func (d *device) sig() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg == nil {
		return ""
	}
	return d.cfg.sig
}

func (d *device) phaseReason() (Phase, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.phase, d.reason
}

// configure (re)starts the device with cfg. Callers hold the
// reconciliation lock (Manager.rec). It does not wait for the plugin: the
// device's goroutine adds (or updates) it, with retries, and then polls it.
// When the previous loop does not stop before ctx ends (it is stuck in a
// plugin call), the device keeps its old configuration, and a later
// reconciliation configures it again.
func (d *device) configure(ctx context.Context, cfg config) {
	m := d.m
	if err := d.stop(ctx); err != nil {
		m.log.Warn("device not reconfigured: its loop did not stop", "device", d.key, "err", err)
		return
	}
	d.mu.Lock()
	old := d.cfg
	added := d.added
	loadTwins := d.twins == nil
	d.mu.Unlock()
	var oldPlugin *runtime.Plugin
	if old != nil && old.plugin != nil {
		oldPlugin = old.plugin.p
	}
	var newPlugin *runtime.Plugin
	if cfg.plugin != nil {
		newPlugin = cfg.plugin.p
	}
	if added && oldPlugin != nil && (cfg.err != nil || oldPlugin != newPlugin) {
		rctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
		if err := oldPlugin.RemoveDevice(rctx, d.id); err != nil {
			m.log.Debug("remove device from its previous plugin", "device", d.key, "err", err)
		}
		cancel()
		added = false
	}
	// Read the stored twins before taking d.mu: no lock is held across a
	// call into the store.
	var stored map[string]store.Twin
	if loadTwins {
		var serr error
		if stored, serr = m.opts.Store.Twins(d.key); serr != nil {
			m.log.Error("read stored twins; the device runs without those not read, and they stay stored", "device", d.key, "err", serr)
		}
	}
	d.mu.Lock()
	if d.twins == nil {
		d.twins = map[string]*twinState{}
		for k, t := range stored {
			d.twins[k] = &twinState{Twin: t}
		}
	}
	for _, pc := range cfg.props {
		if d.twins[pc.Name] == nil {
			d.twins[pc.Name] = &twinState{}
		}
	}
	c := cfg
	d.cfg = &c
	d.source = cfg.source
	d.model = cfg.model
	d.added = added
	d.attempts, d.nextAttempt = 0, time.Time{}
	err := cfg.err
	if err != nil {
		d.setPhaseLocked(PhaseError, err.Error())
		d.state, d.stReason, d.stTime = abi.StateUnknown, err.Error(), time.Now()
	} else {
		d.setPhaseLocked(PhasePending, fmt.Sprintf("being added to MapperPlugin %s", cfg.plugin.name))
	}
	var specDesired []propConfig
	if err == nil {
		for _, pc := range cfg.props {
			if pc.desired != "" && pc.desired != d.twins[pc.Name].SpecDesired {
				specDesired = append(specDesired, pc)
			}
		}
	}
	d.mu.Unlock()
	if err != nil {
		m.log.Error("device cannot run", "device", d.key, "source", cfg.source, "reason", err)
		m.emit(Event{Type: EventState, Device: d.key, Namespace: d.ns, Name: d.name, Time: time.Now(), State: abi.StateUnknown, Reason: err.Error()})
		return
	}
	d.logIgnored(&cfg)
	for _, pc := range specDesired {
		if _, e := d.setDesired(pc.Name, pc.desired, "spec:"+cfg.source, true); e != nil {
			m.log.Error("store desired value from the Device spec", "device", d.key, "property", pc.Name, "err", e)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if m.ctx.Err() != nil {
		return // closing: Close has collected the loops to wait for
	}
	runCtx, cancel := context.WithCancel(m.ctx)
	d.cancel, d.done, d.settled = cancel, make(chan struct{}), make(chan struct{})
	go d.run(runCtx, &c, d.done, d.settled)
}

// logIgnored logs each spec desired value that is not written, because its
// property is not ReadWrite or because it is not valid for the property's
// type: once per property, and again only when the value changes. Callers
// hold the reconciliation lock.
func (d *device) logIgnored(cfg *config) {
	seen, bad := map[string]string{}, map[string]string{}
	for _, pc := range cfg.props {
		if pc.ignored != "" {
			seen[pc.Name] = pc.ignored
			if d.ignored[pc.Name] != pc.ignored {
				d.m.log.Info("desired value on a ReadOnly property ignored: only ReadWrite properties are written; it is still read and reported",
					"device", d.key, "property", pc.Name, "accessMode", pc.AccessMode, "value", pc.ignored, "source", cfg.source)
			}
		}
		if pc.invalid != "" {
			bad[pc.Name] = pc.invalid
			if d.invalid[pc.Name] != pc.invalid {
				d.m.log.Warn("desired value in the Device spec is not valid for its property's type and is not written; the property is still read and reported",
					"device", d.key, "property", pc.Name, "type", pc.Type, "value", pc.invalid, "source", cfg.source, "reason", pc.invalidWhy)
			}
		}
	}
	d.ignored, d.invalid = seen, bad
}

// waitSettled waits until the first attempt to add the device since its
// last configure has an outcome (running, refused or retrying later), or
// ctx ends.
func (d *device) waitSettled(ctx context.Context) {
	d.mu.Lock()
	settled, done := d.settled, d.done
	d.mu.Unlock()
	if settled == nil {
		return
	}
	select {
	case <-settled:
	case <-done:
	case <-ctx.Done():
	}
}

// setPhaseLocked changes the phase and reason, keeping the phase gauge in
// step. Callers hold d.mu.
func (d *device) setPhaseLocked(ph Phase, reason string) {
	if ph != d.phase {
		d.m.met.phases.WithLabelValues(string(d.phase)).Dec()
		d.m.met.phases.WithLabelValues(string(ph)).Inc()
		d.phase = ph
	}
	d.reason = reason
}

// transient tells whether a failed add or update may succeed if tried
// again unchanged: the pool was busy or restarting, a call timed out, the
// device was unreachable. Refusals of the description (invalid, denied,
// unsupported, too large) are not: they need a changed object.
func transient(err error) bool {
	switch abi.CodeOf(err) {
	case abi.ErrInvalid, abi.ErrNotFound, abi.ErrUnsupported, abi.ErrDenied, abi.ErrReadOnly, abi.ErrTooLarge:
		return false
	}
	return true
}

// retryDelay is the wait before attempt n+1 (n ≥ 1): exponential from
// RetryMin to RetryMax, with up to ±25% jitter so that devices that failed
// together do not retry together.
func (m *Manager) retryDelay(n int) time.Duration {
	d := m.opts.RetryMin << min(n-1, 20)
	if d > m.opts.RetryMax || d <= 0 {
		d = m.opts.RetryMax
	}
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// attach adds the device to its plugin (or updates it there), retrying
// transient failures with backoff until it succeeds, the plugin refuses
// the device, or ctx ends. It reports whether the device runs.
func (d *device) attach(ctx context.Context, cfg *config, settledCh chan struct{}) bool {
	m := d.m
	p := cfg.plugin.p
	settled := sync.OnceFunc(func() { close(settledCh) })
	defer settled()
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			settled()
		}
		select {
		case m.addSem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		d.mu.Lock()
		added := d.added
		d.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
		var err error
		if added {
			err = p.UpdateDevice(actx, cfg.desc)
			if abi.CodeOf(err) == abi.ErrNotFound {
				err = p.AddDevice(actx, cfg.desc) // the plugin lost it (a failed add)
			}
		} else {
			err = p.AddDevice(actx, cfg.desc)
		}
		cancel()
		<-m.addSem
		if err == nil {
			d.mu.Lock()
			d.added = true // even if stopping now: the plugin has it
			d.mu.Unlock()
		}
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			d.mu.Lock()
			d.attempts, d.nextAttempt = 0, time.Time{}
			d.setPhaseLocked(PhaseRunning, "")
			d.mu.Unlock()
			m.log.Info("device running", "device", d.key, "source", cfg.source, "plugin", cfg.plugin.name, "properties", len(cfg.props), "attempts", attempt)
			settled()
			return true
		}
		verb := "add"
		if added {
			verb = "update"
		}
		if !transient(err) {
			if added {
				rctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
				_ = p.RemoveDevice(rctx, d.id)
				cancel()
			}
			reason := fmt.Sprintf("MapperPlugin %s refused to %s the device: %s (fix the Device or DeviceModel)", cfg.plugin.name, verb, abi.MessageOf(err))
			now := time.Now()
			d.mu.Lock()
			d.added = false
			d.setPhaseLocked(PhaseError, reason)
			d.state, d.stReason, d.stTime = abi.StateUnknown, reason, now
			d.mu.Unlock()
			m.log.Error("device cannot run", "device", d.key, "source", cfg.source, "reason", reason)
			m.emit(Event{Type: EventState, Device: d.key, Namespace: d.ns, Name: d.name, Time: now, State: abi.StateUnknown, Reason: reason})
			return false
		}
		delay := m.retryDelay(attempt)
		m.met.addRetries.WithLabelValues(cfg.plugin.name, abi.CodeOf(err).String()).Inc()
		d.mu.Lock()
		d.attempts, d.nextAttempt = attempt, time.Now().Add(delay)
		d.setPhaseLocked(PhasePending, fmt.Sprintf("retrying in %s (attempt %d failed): MapperPlugin %s could not %s the device: %s",
			delay.Round(time.Millisecond), attempt, cfg.plugin.name, verb, abi.MessageOf(err)))
		d.mu.Unlock()
		lvl := slog.LevelDebug
		if attempt == 1 || attempt%10 == 0 {
			lvl = slog.LevelWarn
		}
		m.log.Log(ctx, lvl, "device not added yet; retrying", "device", d.key, "plugin", cfg.plugin.name, "attempt", attempt, "retry-in", delay.Round(time.Millisecond), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// stop ends the device's loop and waits for it, no longer than ctx: a
// loop stuck in a plugin call is left to end by itself, and the error
// says so.
func (d *device) stop(ctx context.Context) error {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	if !waitDone(ctx, done) {
		return fmt.Errorf("device %s: its loop is still in a plugin call: %w", d.key, context.Cause(ctx))
	}
	return nil
}

// remove stops the device and removes it from its plugin.
func (d *device) remove(ctx context.Context) {
	if err := d.stop(ctx); err != nil {
		d.m.log.Warn("removing a device whose loop has not stopped", "device", d.key, "err", err)
	}
	d.mu.Lock()
	var p *runtime.Plugin
	if d.added && d.cfg != nil && d.cfg.plugin != nil {
		p = d.cfg.plugin.p
	}
	d.added = false
	d.m.met.phases.WithLabelValues(string(d.phase)).Dec()
	d.mu.Unlock()
	if p != nil {
		rctx, cancel := context.WithTimeout(ctx, d.m.opts.AddTimeout)
		defer cancel()
		if err := p.RemoveDevice(rctx, d.id); err != nil {
			d.m.log.Warn("plugin failed to remove device", "device", d.key, "err", err)
		}
	}
}

func (d *device) wakeup() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

type group struct {
	cycle   time.Duration
	props   []*propConfig
	handles []uint32
	next    time.Time
}

func (d *device) run(ctx context.Context, cfg *config, done, settled chan struct{}) {
	defer close(done)
	if !d.attach(ctx, cfg, settled) {
		return
	}
	p := cfg.plugin.p
	var wg sync.WaitGroup
	if p.HasPoll() {
		// Most plugins export wapper_poll (the Go SDK always does) but
		// poll nothing: ask once before spending a goroutine on it.
		next, err := p.Poll(ctx, d.id, d.m.opts.PollBudget)
		if err != nil || next > 0 {
			wg.Add(1)
			go func() { defer wg.Done(); d.pollLoop(ctx, p, next) }()
		}
	}
	defer wg.Wait()
	now := time.Now()
	byCycle := map[time.Duration]*group{}
	var groups []*group
	reportCycle := time.Duration(0)
	for i := range cfg.props {
		pc := &cfg.props[i]
		g := byCycle[pc.collect]
		if g == nil {
			// Spread the first reads over the cycle so that many devices
			// do not all read at the same instant.
			g = &group{cycle: pc.collect, next: now.Add(time.Duration(rand.Int64N(int64(min(pc.collect, time.Second)))))}
			byCycle[pc.collect] = g
			groups = append(groups, g)
		}
		g.props = append(g.props, pc)
		g.handles = append(g.handles, pc.Handle)
		if reportCycle == 0 || pc.report < reportCycle {
			reportCycle = pc.report
		}
	}
	if reportCycle == 0 {
		reportCycle = d.m.opts.DefaultReportCycle
	}
	// Report and ask the state in the same wakeups as the first collect
	// (a report just after the reads it carries): one timer wakeup per
	// device and cycle instead of three, which is most of the scheduler's
	// work with thousands of devices.
	first := now
	if len(groups) > 0 {
		first = groups[0].next
		for _, g := range groups {
			if g.next.Before(first) {
				first = g.next
			}
		}
	}
	nextReport := first.Add(reportCycle)
	nextState := first
	timer := time.NewTimer(0)
	defer timer.Stop()
	d.applyPending(ctx, p, cfg)
	for {
		next := nextReport
		if nextState.Before(next) {
			next = nextState
		}
		for _, g := range groups {
			if g.next.Before(next) {
				next = g.next
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
		now := time.Now()
		for _, g := range groups {
			if !now.Before(g.next) {
				d.collect(ctx, p, cfg, g)
				g.next = g.next.Add(g.cycle)
				if g.next.Before(now) {
					g.next = now.Add(g.cycle)
				}
			}
		}
		d.applyPending(ctx, p, cfg)
		if !now.Before(nextState) {
			d.pollState(ctx, p, cfg)
			nextState = nextState.Add(cfg.state)
			if nextState.Before(now) {
				nextState = now.Add(cfg.state)
			}
		}
		if !now.Before(nextReport) {
			d.report(cfg, nil)
			nextReport = nextReport.Add(reportCycle)
			if nextReport.Before(now) {
				nextReport = now.Add(reportCycle)
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (d *device) pollLoop(ctx context.Context, p *runtime.Plugin, first time.Duration) {
	backoff := 100 * time.Millisecond
	select {
	case <-ctx.Done():
		return
	case <-time.After(first):
	}
	for ctx.Err() == nil {
		next, err := p.Poll(ctx, d.id, d.m.opts.PollBudget)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.m.log.Debug("poll failed", "device", d.key, "err", err)
			next = backoff
			backoff = min(backoff*2, 10*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
		if next == 0 && err == nil {
			<-ctx.Done()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// collect reads a group of properties. Waiting for a free instance is
// bounded (see [Manager.waitCtx]): when the pool stays busy that long, the
// reading is skipped (counted in wapper_reads_skipped_total) rather than
// queued behind the next one.
func (d *device) collect(ctx context.Context, p *runtime.Plugin, cfg *config, g *group) {
	rctx := d.m.waitCtx()
	skipped := func(err error) bool {
		if err == nil || rctx.Err() == nil {
			return false
		}
		if ctx.Err() == nil { // not stopping: the pool stayed busy
			d.m.met.skipped.WithLabelValues(cfg.plugin.name).Inc()
		}
		return true
	}
	rc := &cfg.plugin.reads
	batch, probing := len(g.handles) > 1, false
	if batch {
		batch, probing = rc.pick()
	}
	if !batch {
		var wall, cpu time.Duration
		for i, h := range g.handles {
			var v abi.Value
			var err error
			if probing {
				w, c := probe(func() { v, err = p.Read(rctx, d.id, h) })
				wall, cpu = wall+w, cpu+c
			} else {
				v, err = p.Read(rctx, d.id, h)
			}
			if skipped(err) {
				return
			}
			d.readResult(cfg, g.props[i], v, err, time.Now())
		}
		if probing {
			rc.record(false, wall, cpu, len(g.handles))
		}
		return
	}
	start := time.Now()
	var entries []abi.BatchEntry
	var err error
	read := func() { entries, err = p.ReadBatch(rctx, d.id, g.handles) }
	if probing {
		wall, cpu := probe(read)
		if err == nil {
			rc.record(true, wall, cpu, len(g.handles))
		}
	} else {
		read()
	}
	if skipped(err) {
		return
	}
	for i, pc := range g.props {
		if err != nil {
			d.readResult(cfg, pc, abi.Value{}, err, start)
			continue
		}
		d.readResult(cfg, pc, entries[i].Value, entries[i].Err, start)
	}
}

func (d *device) readResult(cfg *config, pc *propConfig, v abi.Value, err error, now time.Time) {
	m := d.m
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		code := abi.CodeOf(err)
		m.met.readErrors.WithLabelValues(cfg.plugin.name, code.String()).Inc()
		text := err.Error()
		if text == "" {
			text = code.String()
		}
		clock := m.now()
		d.mu.Lock()
		t := d.twins[pc.Name]
		f := &t.fails
		f.n++
		switch {
		case f.n == 1:
			f.first, f.logged, f.sinceLast = clock, clock, 0
			m.log.Warn("read failed", "device", d.key, "property", pc.Name, "code", code.String(), "err", text)
		case clock.Sub(f.logged) >= readWarnEvery:
			f.sinceLast++
			m.log.Warn("read still failing", "device", d.key, "property", pc.Name, "code", code.String(), "err", text,
				"repeated", fmt.Sprintf("%d times in %s", f.sinceLast, clock.Sub(f.logged).Round(time.Second)),
				"failing-for", clock.Sub(f.first).Round(time.Second))
			f.logged, f.sinceLast = clock, 0
		default:
			f.sinceLast++
		}
		t.err = text
		d.mu.Unlock()
		return
	}
	cfg.plugin.readings.Inc()
	ts := d.setReported(pc, v.Text(), now)
	m.emit(Event{Type: EventReading, Device: d.key, Namespace: d.ns, Name: d.name, Time: now, Twins: []TwinStatus{ts}})
}

// setReported records a reading. One that ends a run of failed reads
// logs that the reads recovered.
func (d *device) setReported(pc *propConfig, text string, now time.Time) TwinStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.twins[pc.Name]
	if f := t.fails; f.n > 0 {
		t.fails = readFails{}
		d.m.log.Info("read recovered", "device", d.key, "property", pc.Name, "failed-reads", f.n,
			"failing-for", d.m.now().Sub(f.first).Round(time.Second))
	}
	t.Reported, t.ReportedTime, t.dirty, t.err = text, now, true, ""
	ts := d.twinStatusLocked(pc, t)
	// As in mapper-framework, a property's reportCycle paces its
	// pushMethod: a reading carries it at most once a cycle.
	if ts.Push != nil {
		if !t.pushedAt.IsZero() && now.Sub(t.pushedAt) < pc.report {
			ts.Push = nil
		} else {
			t.pushedAt = now
		}
	}
	return ts
}

// pushed handles a reading a plugin reported itself.
func (d *device) pushed(r runtime.Reading) {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil {
		return
	}
	for i := range cfg.props {
		if cfg.props[i].Handle == r.Property {
			d.readResult(cfg, &cfg.props[i], r.Value, nil, r.Time)
			return
		}
	}
}

func (d *device) twinStatusLocked(pc *propConfig, t *twinState) TwinStatus {
	errText := t.err
	if pc.invalidWhy != "" {
		if errText != "" {
			errText += "; "
		}
		errText += pc.invalidWhy
	}
	return TwinStatus{Property: pc.Name, Type: pc.Type, AccessMode: pc.AccessMode,
		Desired: t.Desired, DesiredSeq: t.DesiredSeq, DesiredTime: t.DesiredTime, DesiredBy: t.DesiredBy,
		AppliedSeq: t.AppliedSeq, AppliedTime: t.AppliedTime,
		Reported: t.Reported, ReportedTime: t.ReportedTime, Error: errText, Push: pc.push}
}

// report emits every twin (or only those named) as one report event.
func (d *device) report(cfg *config, only map[string]bool) {
	d.mu.Lock()
	twins := make([]TwinStatus, 0, len(cfg.props))
	for i := range cfg.props {
		pc := &cfg.props[i]
		if only != nil && !only[pc.Name] {
			continue
		}
		twins = append(twins, d.twinStatusLocked(pc, d.twins[pc.Name]))
	}
	d.mu.Unlock()
	d.m.emit(Event{Type: EventReport, Device: d.key, Namespace: d.ns, Name: d.name, Time: time.Now(), Twins: twins})
}

func (d *device) pollState(ctx context.Context, p *runtime.Plugin, cfg *config) {
	sctx := d.m.waitCtx()
	st, reason, err := p.State(sctx, d.id)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if sctx.Err() != nil {
			d.m.met.skipped.WithLabelValues(cfg.plugin.name).Inc()
			return // the pool was busy all along; ask at the next cycle
		}
		st, reason = abi.StateUnknown, "state call failed: "+abi.MessageOf(err)
	}
	now := time.Now()
	d.mu.Lock()
	changed := st != d.state || reason != d.stReason
	d.state, d.stReason = st, reason
	if changed {
		d.stTime = now
	}
	d.mu.Unlock()
	if changed {
		d.m.log.Info("device state", "device", d.key, "state", st.String(), "reason", reason)
	}
	d.m.emit(Event{Type: EventState, Device: d.key, Namespace: d.ns, Name: d.name, Time: now, State: st, Reason: reason, Changed: changed})
}

// applyPending writes the desired values not yet applied.
func (d *device) applyPending(ctx context.Context, p *runtime.Plugin, cfg *config) {
	for i := range cfg.props {
		pc := &cfg.props[i]
		d.mu.Lock()
		t := d.twins[pc.Name]
		pending := t != nil && t.Pending() // failed writes retry every collect cycle
		seq, val := t.DesiredSeq, t.Desired
		d.mu.Unlock()
		if !pending {
			continue
		}
		d.applyOne(ctx, p, cfg, pc, seq, val)
	}
}

func (d *device) applyOne(ctx context.Context, p *runtime.Plugin, cfg *config, pc *propConfig, seq uint64, val string) {
	m := d.m
	v, err := abi.ParseText(pc.typ, val)
	if err == nil {
		err = p.Write(ctx, d.id, pc.Handle, v)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		m.met.writes.WithLabelValues(cfg.plugin.name, "error").Inc()
		d.mu.Lock()
		t := d.twins[pc.Name]
		first := t.errSeq != seq
		t.err, t.errSeq = "write desired value: "+err.Error(), seq
		ch := d.appliedCh
		d.appliedCh = make(chan struct{})
		d.mu.Unlock()
		close(ch)
		if first {
			m.log.Warn("desired value not applied; retrying every collect cycle", "device", d.key, "property", pc.Name, "value", val, "seq", seq, "err", err)
		}
		return
	}
	now := time.Now()
	if err := m.opts.Store.MarkApplied(d.key, pc.Name, seq, now); err != nil {
		m.log.Error("record applied desired value", "device", d.key, "property", pc.Name, "seq", seq, "err", err)
	}
	m.met.writes.WithLabelValues(cfg.plugin.name, "ok").Inc()
	d.mu.Lock()
	t := d.twins[pc.Name]
	if seq > t.AppliedSeq {
		t.AppliedSeq, t.AppliedTime = seq, now
	}
	t.err, t.errSeq = "", 0
	d.mu.Unlock()
	m.log.Info("desired value applied", "device", d.key, "property", pc.Name, "value", val, "seq", seq)
	// Read back, so the reported value follows the desired one, before
	// waiters are told.
	rv, rerr := p.Read(ctx, d.id, pc.Handle)
	d.readResult(cfg, pc, rv, rerr, time.Now())
	d.mu.Lock()
	ch := d.appliedCh
	d.appliedCh = make(chan struct{})
	d.mu.Unlock()
	close(ch)
	d.report(cfg, map[string]bool{pc.Name: true})
}

// setDesired stores a desired value durably and wakes the device loop.
func (d *device) setDesired(prop, value, by string, spec bool) (TwinStatus, error) {
	t, err := d.m.opts.Store.SetDesired(d.key, prop, value, by, spec, time.Now())
	if err != nil {
		return TwinStatus{}, fmt.Errorf("save desired value: %w", err)
	}
	d.mu.Lock()
	tw := d.twins[prop]
	if tw == nil {
		tw = &twinState{}
		d.twins[prop] = tw
	}
	tw.Desired, tw.DesiredSeq, tw.DesiredTime, tw.DesiredBy, tw.SpecDesired = t.Desired, t.DesiredSeq, t.DesiredTime, t.DesiredBy, t.SpecDesired
	var ts TwinStatus
	if d.cfg != nil {
		for i := range d.cfg.props {
			if d.cfg.props[i].Name == prop {
				ts = d.twinStatusLocked(&d.cfg.props[i], tw)
			}
		}
	}
	d.mu.Unlock()
	d.m.log.Info("desired value set", "device", d.key, "property", prop, "value", value, "seq", t.DesiredSeq, "by", by)
	d.m.emit(Event{Type: EventDesired, Device: d.key, Namespace: d.ns, Name: d.name, Time: t.DesiredTime, Twins: []TwinStatus{ts}})
	d.wakeup()
	return ts, nil
}

func (d *device) status() DeviceStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DeviceStatus{Namespace: d.ns, Name: d.name, Source: d.source, Phase: d.phase, Reason: d.reason, Attempts: d.attempts, NextAttempt: d.nextAttempt,
		State: d.state.String(), StateReason: d.stReason, StateTime: d.stTime, Twins: []TwinStatus{}}
	if c := d.cfg; c != nil {
		if c.model != nil {
			s.Model, s.Protocol = c.model.Name, c.model.Spec.Protocol
		}
		if c.plugin != nil {
			s.Plugin = c.plugin.name
		}
		s.Methods = c.desc.Methods
		for i := range c.props {
			s.Twins = append(s.Twins, d.twinStatusLocked(&c.props[i], d.twins[c.props[i].Name]))
		}
	}
	return s
}

func (d *device) findProp(name string) (*config, *propConfig) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg == nil {
		return nil, nil
	}
	for i := range d.cfg.props {
		if d.cfg.props[i].Name == name {
			return d.cfg, &d.cfg.props[i]
		}
	}
	return d.cfg, nil
}

// Devices returns every device, sorted by namespace/name.
func (m *Manager) Devices() []DeviceStatus {
	m.mu.RLock()
	devs := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	m.mu.RUnlock()
	sort.Slice(devs, func(i, j int) bool { return devs[i].key < devs[j].key })
	out := make([]DeviceStatus, len(devs))
	for i, d := range devs {
		out[i] = d.status()
	}
	return out
}

// Device returns one device.
func (m *Manager) Device(namespace, name string) (DeviceStatus, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return DeviceStatus{}, err
	}
	return d.status(), nil
}

// SetDesired sets the desired value of a ReadWrite property (KubeEdge twin
// text, such as "true" or "21.5"). The value is saved durably before
// SetDesired returns; the device applies it asynchronously (see
// [Manager.WaitApplied]). by names the writer for logs ("rest", "mqtt", a
// source name). A write to a ReadOnly property is refused with an error
// wrapping [ErrReadOnly], and a value that is not valid for the property's
// type with one wrapping [ErrInvalid]; a desired value in a Device spec on
// such a property, or not valid for its type, by contrast, is not written
// (logged once, and shown in the twin's Error when not valid) and the
// device runs.
func (m *Manager) SetDesired(ctx context.Context, namespace, name, property, value, by string) (TwinStatus, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return TwinStatus{}, err
	}
	cfg, pc := d.findProp(property)
	if pc == nil {
		if cfg == nil || cfg.err != nil && len(cfg.props) == 0 {
			return TwinStatus{}, fmt.Errorf("%w: device %s is not running: %s", ErrUnavailable, d.key, d.reasonText())
		}
		return TwinStatus{}, fmt.Errorf("%w: device %s has no property %q", ErrNotFound, d.key, property)
	}
	if pc.AccessMode != string(v1beta1.ReadWrite) {
		return TwinStatus{}, fmt.Errorf("%w: property %q of %s is %s in its DeviceModel", ErrReadOnly, property, d.key, pc.AccessMode)
	}
	if _, err := abi.ParseText(pc.typ, value); err != nil {
		return TwinStatus{}, fmt.Errorf("%w: %q is not a valid %s for property %q: %v", ErrInvalid, value, pc.typ, property, err)
	}
	return d.setDesired(property, value, by, false)
}

func (d *device) reasonText() string {
	_, r := d.phaseReason()
	if r == "" {
		return "not configured yet"
	}
	return r
}

// WaitApplied waits until desired value seq of a property has been written
// to the device, or its write failed (the error is returned), or ctx ends.
func (m *Manager) WaitApplied(ctx context.Context, namespace, name, property string, seq uint64) error {
	d, err := m.get(namespace, name)
	if err != nil {
		return err
	}
	for {
		d.mu.Lock()
		t := d.twins[property]
		ch := d.appliedCh
		var applied bool
		var werr string
		if t != nil {
			applied = t.AppliedSeq >= seq
			if t.errSeq == seq {
				werr = t.err
			}
		}
		phase, reason := d.phase, d.reason
		d.mu.Unlock()
		switch {
		case applied:
			return nil
		case werr != "":
			return fmt.Errorf("%w: %s", ErrUnavailable, werr)
		case phase == PhaseError:
			return fmt.Errorf("%w: device %s: %s", ErrUnavailable, d.key, reason)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Read reads a property from the device now, through its plugin, and
// updates the reported value.
func (m *Manager) Read(ctx context.Context, namespace, name, property string) (TwinStatus, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return TwinStatus{}, err
	}
	cfg, pc := d.findProp(property)
	if pc == nil {
		return TwinStatus{}, fmt.Errorf("%w: device %s has no property %q", ErrNotFound, d.key, property)
	}
	ph, reason := d.phaseReason()
	if ph != PhaseRunning {
		return TwinStatus{}, fmt.Errorf("%w: device %s: %s", ErrUnavailable, d.key, reason)
	}
	v, err := cfg.plugin.p.Read(ctx, d.id, pc.Handle)
	if err != nil {
		d.readResult(cfg, pc, v, err, time.Now())
		return TwinStatus{}, fmt.Errorf("%w: read %s of %s: %w", ErrUnavailable, property, d.key, err)
	}
	d.readResult(cfg, pc, v, nil, time.Now())
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.twinStatusLocked(pc, d.twins[pc.Name]), nil
}

// CallMethod calls a device method declared in the Device's spec.methods
// through the plugin, with args as JSON.
func (m *Manager) CallMethod(ctx context.Context, namespace, name, method string, args []byte) ([]byte, error) {
	d, err := m.get(namespace, name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil || cfg.err != nil {
		return nil, fmt.Errorf("%w: device %s: %s", ErrUnavailable, d.key, d.reasonText())
	}
	found := false
	for _, mt := range cfg.desc.Methods {
		found = found || mt.Name == method
	}
	if !found {
		return nil, fmt.Errorf("%w: device %s has no method %q in spec.methods", ErrNotFound, d.key, method)
	}
	out, err := cfg.plugin.p.CallMethod(ctx, d.id, method, args)
	if err != nil {
		switch abi.CodeOf(err) {
		case abi.ErrInvalid:
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		case abi.ErrNotFound, abi.ErrUnsupported:
			return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return out, nil
}

// every calls fn every period until the manager closes, then closes done.
func (m *Manager) every(period time.Duration, done chan struct{}, fn func()) {
	defer close(done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// flush saves the reported values read since the last save, and returns
// how many it saved.
func (m *Manager) flush() (int, error) {
	m.mu.RLock()
	devs := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	m.mu.RUnlock()
	var batch []store.Reported
	for _, d := range devs {
		d.mu.Lock()
		for name, t := range d.twins {
			if t.dirty {
				batch = append(batch, store.Reported{Device: d.key, Property: name, Value: t.Reported, Time: t.ReportedTime})
				t.dirty = false
			}
		}
		d.mu.Unlock()
	}
	if err := m.opts.Store.SaveReported(batch); err != nil {
		m.log.Error("save reported values", "count", len(batch), "err", err)
		return 0, fmt.Errorf("save %d reported values: %w", len(batch), err)
	}
	return len(batch), nil
}
