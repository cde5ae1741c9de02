package devices

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// device is one Device the manager runs. Which lock guards what:
//
//   - the reconciliation lock (Manager.rec): handles, nextHandle, ignored
//     and invalid, and every call of configure, logIgnored and remove;
//   - d.mu: the fields listed under it, read by any goroutine;
//   - twins has its own lock (see [twinTable]), never held while taking
//     d.mu;
//   - key, ns, name and id never change.
//
// A running device has no goroutine of its own: a short-lived one adds it
// to its plugin (see [device.run]), then the Manager's scheduler runs its
// loop.
type device struct {
	m    *Manager
	key  string
	ns   string
	name string
	id   uint32

	handles    map[string]uint32
	nextHandle uint32
	// ignored maps a property to the spec desired value last logged as
	// not written (the property is not ReadWrite), invalid to the one
	// last logged as not valid for its type.
	ignored map[string]string
	invalid map[string]string

	twins *twinTable

	mu       sync.Mutex // guards every field below
	source   string
	cfg      *config
	model    *v1beta1.DeviceModel
	phase    Phase
	reason   string
	state    abi.State
	stReason string
	stTime   time.Time
	added    bool
	// attempts is the number of failed adds in a row, nextAttempt when
	// the next one is due (zero when not retrying).
	attempts    int
	nextAttempt time.Time
	// cancel ends the device's run, done closes when the goroutine that
	// adds it has ended and settled after its first attempt; nil before
	// the first configure. loop is its schedule once added.
	cancel  context.CancelFunc
	done    chan struct{}
	settled chan struct{}
	loop    *loop
}

func newDevice(m *Manager, key string, id uint32) *device {
	ns, name := splitKey(key)
	d := &device{m: m, key: key, ns: ns, name: name, id: id, handles: map[string]uint32{},
		phase: PhasePending, twins: newTwinTable()}
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
// reconciliation lock (Manager.rec). It does not wait for the plugin: a
// goroutine adds (or updates) the device, with retries, and then the
// scheduler runs it. When the previous run does not stop before ctx ends
// (it is stuck in a plugin call), the device keeps its old configuration,
// and a later reconciliation configures it again.
func (d *device) configure(ctx context.Context, cfg config) {
	m := d.m
	if err := d.stop(ctx); err != nil {
		m.log.Warn("device not reconfigured: its loop did not stop", "device", d.key, "err", err)
		return
	}
	d.mu.Lock()
	old := d.cfg
	added := d.added
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
	// Read the stored twins before any lock: no lock is held across a
	// call into the store.
	var stored map[string]store.Twin
	if !d.twins.loaded() {
		var serr error
		if stored, serr = m.opts.Store.Twins(d.key); serr != nil {
			m.log.Error("read stored twins; the device runs without those not read, and they stay stored", "device", d.key, "err", serr)
		}
	}
	d.twins.load(stored, cfg.props)
	c := cfg
	err := cfg.err
	d.mu.Lock()
	d.cfg = &c
	d.source = cfg.source
	d.model = cfg.model
	d.added = added
	d.attempts, d.nextAttempt = 0, time.Time{}
	if err != nil {
		d.setPhaseLocked(PhaseError, err.Error())
		d.state, d.stReason, d.stTime = abi.StateUnknown, err.Error(), time.Now()
	} else {
		d.setPhaseLocked(PhasePending, fmt.Sprintf("being added to MapperPlugin %s", cfg.plugin.name))
	}
	d.mu.Unlock()
	if err != nil {
		m.log.Error("device cannot run", "device", d.key, "source", cfg.source, "reason", err)
		m.emit(Event{Type: EventState, Device: d.key, Namespace: d.ns, Name: d.name, Time: time.Now(), State: abi.StateUnknown, Reason: err.Error()})
		return
	}
	d.logIgnored(&cfg)
	for _, pc := range d.twins.specDesiredChanged(cfg.props) {
		if _, e := d.setDesired(pc.Name, pc.desired, "spec:"+cfg.source, true); e != nil {
			m.log.Error("store desired value from the Device spec", "device", d.key, "property", pc.Name, "err", e)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if m.ctx.Err() != nil {
		return // closing: Close has collected the devices to stop
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

// stop ends the device's run and waits for it, no longer than ctx: work
// stuck in a plugin call is left to end by itself, and the error says so.
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
	d.mu.Lock()
	l := d.loop
	d.mu.Unlock()
	if l == nil {
		return nil
	}
	if idle := d.m.sched.remove(l); idle != nil && !waitDone(ctx, idle) {
		return fmt.Errorf("device %s: its loop is still in a plugin call: %w", d.key, context.Cause(ctx))
	}
	d.mu.Lock()
	if d.loop == l {
		d.loop = nil
	}
	d.mu.Unlock()
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

// wakeup has a running device write its pending desired values now.
func (d *device) wakeup() {
	d.mu.Lock()
	l := d.loop
	d.mu.Unlock()
	if l != nil {
		d.m.sched.wakeup(l)
	}
}

// setDesired stores a desired value durably and wakes the device.
func (d *device) setDesired(prop, value, by string, spec bool) (TwinStatus, error) {
	t, err := d.m.opts.Store.SetDesired(d.key, prop, value, by, spec, time.Now())
	if err != nil {
		return TwinStatus{}, fmt.Errorf("save desired value: %w", err)
	}
	_, pc := d.findProp(prop)
	ts := d.twins.setDesired(prop, t, pc)
	d.m.log.Info("desired value set", "device", d.key, "property", prop, "value", value, "seq", t.DesiredSeq, "by", by)
	d.m.emit(Event{Type: EventDesired, Device: d.key, Namespace: d.ns, Name: d.name, Time: t.DesiredTime, Twins: []TwinStatus{ts}})
	d.wakeup()
	return ts, nil
}

// findProp returns the device's configuration and its property name (nil
// when there is none).
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

func (d *device) reasonText() string {
	_, r := d.phaseReason()
	if r == "" {
		return "not configured yet"
	}
	return r
}
