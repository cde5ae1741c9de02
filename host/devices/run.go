package devices

import (
	"context"
	"errors"
	"fmt"
	"time"

	"wapper.dev/wapper/abi"
)

// devRun is a device running one configuration: the [target] its loop
// drives. It is made when the device has been added to its plugin and
// dropped when the device stops.
type devRun struct {
	d   *device
	cfg *config
}

// reading records a reading, or a failed read, and emits it.
func (r *devRun) reading(pc *propConfig, v abi.Value, err error, at time.Time, sc *scratch) {
	r.d.readResult(r.cfg, pc, v, err, at, sc)
}

func (r *devRun) skipped(n int) { r.cfg.plugin.skips.Add(float64(n)) }

func (r *devRun) pendingDesired() bool { return r.d.twins.anyPending(r.cfg.props) }

func (r *devRun) applyPending(ctx context.Context) {
	for i := range r.cfg.props {
		pc := &r.cfg.props[i]
		// Failed writes stay pending and are tried again every cycle.
		if seq, val, ok := r.d.twins.pending(pc.Name); ok {
			r.d.applyOne(ctx, r.cfg, pc, seq, val)
		}
	}
}

func (r *devRun) state(res stateResult, busy bool) { r.d.setState(r.cfg, res, busy) }

func (r *devRun) report(at time.Time, sc *scratch) { r.d.report(r.cfg, "", at, sc) }

func (r *devRun) poll(ctx context.Context) (time.Duration, error) {
	next, err := r.cfg.plugin.p.Poll(ctx, r.d.id, r.d.m.opts.PollBudget)
	if err != nil && ctx.Err() == nil {
		r.d.m.log.Debug("poll failed", "device", r.d.key, "err", err)
	}
	return next, err
}

// readResult records a reading of pc taken at now, or its error, and
// emits the reading. sc is scratch space (nil: allocate).
func (d *device) readResult(cfg *config, pc *propConfig, v abi.Value, err error, now time.Time, sc *scratch) {
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
		n := d.twins.readFailed(pc, text, m.now())
		switch {
		case n.first:
			m.log.Warn("read failed", "device", d.key, "property", pc.Name, "code", code.String(), "err", text)
		case n.summary:
			m.log.Warn("read still failing", "device", d.key, "property", pc.Name, "code", code.String(), "err", text,
				"repeated", fmt.Sprintf("%d times in %s", n.repeated, n.since.Round(time.Second)),
				"failing-for", n.lasting.Round(time.Second))
		}
		return
	}
	cfg.plugin.readings.Inc()
	ended, push := d.twins.setReported(pc, v, now)
	if ended.n > 0 {
		d.logRecovered(pc, ended)
	}
	if !m.hasSubscribers() {
		return
	}
	if sc == nil {
		sc = &scratch{}
	}
	sc.hdr = append(sc.hdr[:0], TwinStatus{Property: pc.Name, Type: pc.Type, AccessMode: pc.AccessMode, Push: push})
	sc.tt, sc.pc = d.twins, pc
	sc.ev = Event{Type: EventReading, Device: d.key, Namespace: d.ns, Name: d.name, Time: now, Twins: sc.hdr}
	m.emitLazy(&sc.ev, sc)
	sc.release()
}

// logRecovered logs that the reads of pc succeed again after the run of
// failures f.
func (d *device) logRecovered(pc *propConfig, f readFails) {
	d.m.log.Info("read recovered", "device", d.key, "property", pc.Name, "failed-reads", f.n,
		"failing-for", d.m.now().Sub(f.first).Round(time.Second))
}

// report emits every twin (or only the one named) as one report event.
func (d *device) report(cfg *config, only string, at time.Time, sc *scratch) {
	if !d.m.hasSubscribers() {
		return
	}
	if sc == nil {
		sc = &scratch{}
	}
	sc.hdr = sc.hdr[:0]
	for i := range cfg.props {
		if pc := &cfg.props[i]; only == "" || pc.Name == only {
			sc.hdr = append(sc.hdr, TwinStatus{Property: pc.Name, Type: pc.Type, AccessMode: pc.AccessMode, Push: pc.push})
		}
	}
	sc.tt, sc.props, sc.only = d.twins, cfg.props, only
	sc.ev = Event{Type: EventReport, Device: d.key, Namespace: d.ns, Name: d.name, Time: at, Twins: sc.hdr}
	d.m.emitLazy(&sc.ev, sc)
	sc.release()
}

// setState records and emits the device state res the plugin gave, or
// the failure to ask it. busy says no instance came free in time: the
// state is asked again at the next cycle.
func (d *device) setState(cfg *config, res stateResult, busy bool) {
	st, reason, err := res.State, res.Reason, res.Err
	if err != nil {
		if busy {
			cfg.plugin.skips.Inc()
			return
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

// applyOne writes desired value seq of pc, records the outcome, reads the
// property back and wakes the waiters.
func (d *device) applyOne(ctx context.Context, cfg *config, pc *propConfig, seq uint64, val string) {
	m := d.m
	p := cfg.plugin.p
	v, err := abi.ParseText(pc.typ, val)
	if err == nil {
		err = p.Write(ctx, d.id, pc.Handle, v)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		m.met.writes.WithLabelValues(cfg.plugin.name, "error").Inc()
		if d.twins.writeFailed(pc.Name, seq, "write desired value: "+err.Error()) {
			m.log.Warn("desired value not applied; retrying every collect cycle", "device", d.key, "property", pc.Name, "value", val, "seq", seq, "err", err)
		}
		return
	}
	now := time.Now()
	if err := m.opts.Store.MarkApplied(d.key, pc.Name, seq, now); err != nil {
		m.log.Error("record applied desired value", "device", d.key, "property", pc.Name, "seq", seq, "err", err)
	}
	m.met.writes.WithLabelValues(cfg.plugin.name, "ok").Inc()
	d.twins.markApplied(pc.Name, seq, now)
	m.log.Info("desired value applied", "device", d.key, "property", pc.Name, "value", val, "seq", seq)
	// Read back, so the reported value follows the desired one, before
	// waiters are told.
	rv, rerr := p.Read(ctx, d.id, pc.Handle)
	d.readResult(cfg, pc, rv, rerr, time.Now(), nil)
	d.twins.notify()
	d.report(cfg, pc.Name, time.Now(), nil)
}

// pushed handles a reading a plugin reported itself.
func (d *device) pushed(id uint32, v abi.Value, at time.Time) {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil {
		return
	}
	for i := range cfg.props {
		if cfg.props[i].Handle == id {
			d.readResult(cfg, &cfg.props[i], v, nil, at, nil)
			return
		}
	}
}
