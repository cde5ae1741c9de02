package devices

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"wapper.dev/wapper/abi"
)

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

// run adds the device to its plugin, with retries (see [device.attach]),
// asks the plugin once whether it polls the device, and hands the device
// to the Manager's scheduler; then it ends. It closes done when it ends.
func (d *device) run(ctx context.Context, cfg *config, done, settled chan struct{}) {
	defer close(done)
	if !d.attach(ctx, cfg, settled) {
		return
	}
	m := d.m
	p := cfg.plugin.p
	polls, firstPoll := false, time.Duration(0)
	if p.HasPoll() {
		// Most plugins export wapper_poll (the Go SDK always does) but
		// poll nothing: ask once before scheduling polls.
		next, err := p.Poll(ctx, d.id, m.opts.PollBudget)
		polls, firstPoll = err != nil || next > 0, next
	}
	l := newLoop(ctx, &devRun{d: d, cfg: cfg}, cfg.plugin, d.id, cfg, m.opts.DefaultReportCycle, time.Now(), polls, firstPoll)
	// Write the desired values left pending at once, as the first job.
	l.wake = true
	l.main.at = time.Now()
	d.mu.Lock()
	if ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	d.loop = l
	d.mu.Unlock()
	m.sched.add(l)
}
