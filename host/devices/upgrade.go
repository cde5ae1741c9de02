package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/runtime"
)

// Hot upgrade of a plugin's module.
//
// When a loaded MapperPlugin changes only in its module (new digest, new
// file content, an image tag that now resolves to another digest) and its
// spec.upgrade.strategy is Hot, the new version is loaded beside the old
// one and the devices move over between two of their jobs (see
// [scheduler.swap]): no collect cycle is missed, a desired value being
// written finishes on the old version and the next one is written by the
// new, and the kv store (one per plugin name) is handed over as the very
// same store. Devices are never removed from the old version on the way
// (a plugin may delete a device's kv state when it is removed): the old
// version is closed as a whole once the last device has moved, and the
// new one likewise after a rollback.
//
// The steps: load and probe the new version (the loader's ABI marker and
// version checks and wapper_init, a call of the marker on an instance,
// each running device added, each ReadOnly property read once: reading
// such a property changes nothing on the device); move the canary share
// of the devices (spec.upgrade.canaryPercent, at least one); wait until
// each canary device has read successfully on the new version; move the
// rest. A failed probe, a canary device whose call kills an instance of
// the new version (a trap, a timeout), or a canary device with no
// successful read within canaryCycles of its collect cycles rolls back:
// the canary devices move back, the new version is closed, and the
// plugin's status ([Manager.Plugins], [Manager.Problems]) says which
// module was rejected and why. That module is not tried again while it is
// the one asked for; once the running module is asked for again (a
// rollback), the rejection is forgotten and the module may be tried anew.
//
// An upgrade does not hold the reconciliation lock (Manager.rec) while it
// runs: a reconciliation that finds a hot upgrade to make (resolving the
// new module under the lock, which is quick: a file read, or a cached
// pull) registers an [upgradeRun] in Manager.upgrades and starts it in a
// goroutine; the load (the compile of the new module), probe, canary and
// moves run beside other reconciliations. Those leave alone what the
// upgrade owns: a change of the plugin itself (a second new module, a
// new spec) and every device that runs on the plugin (on either version)
// or would now run on it (added, changed, removed, moved by a model or a
// pin) are recorded in the run and made once it ends, when the upgrade
// takes the lock again to commit: the plugin's entry becomes the new
// version (or stays the old one after a rollback), the devices that were
// not running and those recorded are planned again (on the version it
// ended on), the recorded plugin change is reconciled (which may start
// the next upgrade), and the version left behind is closed. Devices of
// other plugins, and other plugins, are reconciled meanwhile as ever.
// The caller whose change started an upgrade, or was left to one, waits
// for it (Manager.awaitUpgrades) after releasing the lock, so that Apply
// and the Upsert methods still return once their change is made. An
// upgrade runs on the manager's context: a caller that stops waiting
// does not interrupt it; Close does (it rolls back).
//
// Locks: an upgrade holds no lock while it waits for rec (see the lock
// order at Manager.rec); it sets device configurations under d.mu and its
// plugin entries' fields under Manager.mu, as reconciliation does.

// canaryCycles is how many collect cycles a canary device has to read
// successfully on the new version; canaryWaitMin bounds that wait from
// below, for devices with short cycles on a busy host.
const (
	canaryCycles  = 5
	canaryWaitMin = 2 * time.Second
)

// statusLocked returns the entry's status; callers hold Manager.mu.
func (e *pluginEntry) statusLocked() PluginStatus {
	s := PluginStatus{Name: e.name, Source: e.source, Loaded: e.err == nil, Digest: e.digest,
		RejectedDigest: e.rejected, Rejected: e.rejectedWhy}
	if e.err != nil {
		s.Error = e.err.Error()
	}
	if e.obj != nil {
		s.Grants = e.obj.Spec.Grants.List()
		s.TLSGrants = slices.Clone(e.obj.Spec.Grants.TLS)
		s.Limits = e.obj.Spec.Limits
		s.Limits.Default()
	}
	return s
}

// moduleOnly reports whether two specs differ at most in their module and
// in policies the host applies without a reload (spec.upgrade, and
// spec.rollout, which is wapper-cloud's).
func moduleOnly(a, b *v1alpha1.MapperPluginSpec) bool {
	x, y := *a, *b
	x.Module, y.Module = v1alpha1.Module{}, v1alpha1.Module{}
	x.Upgrade, y.Upgrade = v1alpha1.Upgrade{}, v1alpha1.Upgrade{}
	x.Rollout, y.Rollout = v1alpha1.Rollout{}, v1alpha1.Rollout{}
	bx, errx := json.Marshal(x)
	by, erry := json.Marshal(y)
	return errx == nil && erry == nil && string(bx) == string(by)
}

// hotStrategy reports whether a spec asks for hot upgrades (an empty
// strategy is the default, Hot).
func hotStrategy(s *v1alpha1.MapperPluginSpec) bool {
	return s.Upgrade.Strategy == "" || s.Upgrade.Strategy == v1alpha1.UpgradeHot
}

// moduleChange is what [Manager.changeModule] did.
type moduleChange struct {
	// handled is false when the change is left to a reload (strategy
	// Restart, or the module cannot be resolved).
	handled bool
	// entry is the plugin's entry from now on (old, updated, or the new
	// version's); retired is the old version once every running device
	// has moved to the new one, to close.
	entry   *pluginEntry
	retired *pluginEntry
	// stay are the devices of the old version that were not running
	// (being added, retrying, refused): they start again on the new one.
	stay []*device
	// run is the hot upgrade started, which will make the change (entry
	// is then still old).
	run *upgradeRun
}

// upgradeRun is a hot upgrade in progress, from the reconciliation that
// starts it until it commits (see the comment at the top of this file).
type upgradeRun struct {
	name string
	old  *pluginEntry
	// What reconciliations left to the upgrade while it ran, guarded by
	// the reconciliation lock: the devices to plan once it ends (by
	// key), and whether the plugin changed, was loaded again or is to be
	// checked for a new module file meanwhile (see [changes]).
	devices                    map[string]struct{}
	changed, reloaded, recheck bool
	// committed closes once the upgrade has committed (it is no longer
	// in Manager.upgrades); done once, besides, the upgrades its commit
	// started (for the changes left to it) are done.
	committed, done chan struct{}
}

// startUpgrade starts a hot upgrade of old to module wasm (digest dg), to
// run without the reconciliation lock, which callers hold. It returns nil
// when the manager is closing.
func (m *Manager) startUpgrade(old *pluginEntry, src string, obj *v1alpha1.MapperPlugin, spec string, wasm []byte, dg string) *upgradeRun {
	if m.ctx.Err() != nil {
		return nil
	}
	run := &upgradeRun{name: old.name, old: old, devices: map[string]struct{}{},
		committed: make(chan struct{}), done: make(chan struct{})}
	m.mu.Lock()
	m.upgrades[run.name] = run
	m.mu.Unlock()
	obj = obj.DeepCopy()
	go func() {
		mc := m.hotUpgrade(m.ctx, old, src, obj, spec, wasm, dg)
		m.commitUpgrade(run, mc)
	}()
	return run
}

// commitUpgrade ends upgrade run, whose outcome is mc: under the
// reconciliation lock, the plugin's entry becomes mc.entry, the devices
// that were not running and those left to the upgrade are planned again,
// a change of the plugin left to it is reconciled, and the version left
// behind is closed. Once the manager closes, it commits without the lock
// (Close holds it and waits for the commit), and plans nothing.
func (m *Manager) commitUpgrade(run *upgradeRun, mc moduleChange) {
	locked := m.lockRec(m.ctx) == nil
	closing := m.ctx.Err() != nil
	m.mu.Lock()
	delete(m.upgrades, run.name)
	swapped := m.plugins[run.name] == run.old
	if swapped {
		m.plugins[run.name] = mc.entry
	}
	m.mu.Unlock()
	var retired []*pluginEntry
	switch {
	case swapped && mc.retired != nil:
		retired = append(retired, mc.retired)
	case !swapped && mc.entry != run.old:
		// Close took the plugins already (it gave up waiting): the new
		// version is nobody else's to close.
		retired = append(retired, mc.entry)
	}
	var next []*upgradeRun
	if locked && !closing {
		ch := newChanges()
		for k := range run.devices {
			ch.devices[k] = struct{}{}
		}
		// The devices that were not running start again on the new
		// version.
		for _, d := range mc.stay {
			d.mu.Lock()
			if d.cfg != nil {
				c := *d.cfg
				c.sig = "" // planned again, and configured with the new version
				d.cfg = &c
			}
			d.mu.Unlock()
			ch.devices[d.key] = struct{}{}
		}
		if run.changed {
			ch.plugins[run.name] = struct{}{}
		}
		if run.reloaded {
			ch.reloaded[run.name] = struct{}{}
		}
		if run.recheck {
			ch.recheck[run.name] = struct{}{}
		}
		m.reconcile(m.ctx, ch)
		next = ch.wait
	}
	m.retire(context.WithoutCancel(m.ctx), retired)
	if locked {
		m.unlockRec()
	}
	close(run.committed)
	m.awaitUpgrades(m.ctx, next)
	close(run.done)
}

// awaitUpgrades waits until the upgrades are done, or ctx ends, or the
// manager closes. Callers do not hold the reconciliation lock.
func (m *Manager) awaitUpgrades(ctx context.Context, runs []*upgradeRun) {
	for _, run := range runs {
		select {
		case <-run.done:
		case <-ctx.Done():
			return
		case <-m.ctx.Done():
			return
		}
	}
}

// awaitCommits waits, no longer than ctx, until no upgrade is in
// progress, and returns the plugins of those still in progress then.
// Close calls it, holding the reconciliation lock once the manager's
// context ended: upgrades then end at once and commit without the lock,
// and none starts.
func (m *Manager) awaitCommits(ctx context.Context) []string {
	for {
		m.mu.RLock()
		var run *upgradeRun
		for _, r := range m.upgrades {
			run = r
			break
		}
		m.mu.RUnlock()
		if run == nil {
			return nil
		}
		if !waitDone(ctx, run.committed) {
			m.mu.RLock()
			names := sortedKeys(setOf(m.upgrades))
			m.mu.RUnlock()
			return names
		}
	}
}

// setOf returns the keys of a map as a set.
func setOf[V any](in map[string]V) map[string]struct{} {
	out := make(map[string]struct{}, len(in))
	for k := range in {
		out[k] = struct{}{}
	}
	return out
}

// hook calls the test hook of upgrade steps, if any.
func (m *Manager) hook(plugin, step string) {
	if f := m.upgradeHook.Load(); f != nil {
		(*f)(plugin, step)
	}
}

// changeModule handles a change of a loaded plugin old whose spec differs
// at most in its module and policies (see [moduleOnly]), or whose module
// file may have new content: it resolves the module, and when it is the
// same, keeps the running version with the new spec; when it is the
// module a hot upgrade already rejected, keeps the old version; else,
// with strategy Hot, starts a hot upgrade (see [Manager.startUpgrade]).
// Callers hold the reconciliation lock.
func (m *Manager) changeModule(ctx context.Context, old *pluginEntry, src string, obj *v1alpha1.MapperPlugin, spec string) moduleChange {
	if !hotStrategy(&obj.Spec) {
		// Strategy Restart: reload only when the module changed (a
		// reload resolves it again, and fails as it may).
		wasm, err := m.opts.Modules.Module(ctx, obj)
		if err != nil || moduleDigest(wasm) != old.digest {
			return moduleChange{}
		}
		if old.spec != spec {
			m.setEntrySpec(old, obj, spec)
		}
		return moduleChange{handled: true, entry: old}
	}
	wasm, err := m.opts.Modules.Module(ctx, obj)
	m.mu.Lock()
	if err != nil {
		// The old module keeps running; the new one is resolved again
		// on the backoff of a failed load (see Manager.retryPlugins).
		old.upgradeFailures++
		delay := m.retryDelay(old.upgradeFailures)
		old.upgradeAt = time.Now().Add(delay)
		m.mu.Unlock()
		m.log.Warn("new module of plugin not resolved; the old one keeps running", "plugin", obj.Name, "running", old.digest, "retry-in", delay.Round(time.Millisecond), "err", err)
		return moduleChange{handled: true, entry: old}
	}
	old.upgradeFailures, old.upgradeAt = 0, time.Time{}
	rejected := old.rejected
	dg := moduleDigest(wasm)
	if dg == old.digest {
		// Asked for the running module again (a rollback): a module
		// rejected before is tried again when asked for anew.
		old.rejected, old.rejectedWhy = "", ""
	}
	m.mu.Unlock()
	switch dg {
	case old.digest:
		if old.spec != spec {
			m.setEntrySpec(old, obj, spec)
			m.log.Info("plugin spec changed but not its module; devices stay as they are", "plugin", obj.Name, "digest", dg)
		}
		return moduleChange{handled: true, entry: old}
	case rejected:
		m.log.Debug("module already rejected by a hot upgrade; the plugin keeps its module", "plugin", obj.Name, "running", old.digest, "rejected", dg)
		return moduleChange{handled: true, entry: old}
	}
	return moduleChange{handled: true, entry: old, run: m.startUpgrade(old, src, obj, spec, wasm, dg)}
}

// setEntrySpec records a new spec of a plugin whose module did not
// change.
func (m *Manager) setEntrySpec(e *pluginEntry, obj *v1alpha1.MapperPlugin, spec string) {
	m.mu.Lock()
	e.obj, e.spec = obj.DeepCopy(), spec
	m.mu.Unlock()
}

// moving is one running device in a hot upgrade.
type moving struct {
	d      *device
	l      *loop
	oldCfg *config
	newCfg *config
	moved  bool
}

// canary watches the first reads of the devices moved first: done closes
// once each has read successfully (or one failed the canary, fail says
// why).
type canary struct {
	mu       sync.Mutex // guards the fields below
	waiting  map[uint32]bool
	failWhy  string
	restarts int64 // restarts of the new version before the canary
	closed   bool
	done     chan struct{}
}

func (c *canary) closeLocked() {
	if !c.closed {
		c.closed = true
		close(c.done)
	}
}

// canaryRun is the target of a canary device on the new version: a
// devRun that also tells the canary how its reads went.
type canaryRun struct {
	*devRun
	c *canary
}

func (r *canaryRun) reading(pc *propConfig, v abi.Value, err error, at time.Time, sc *scratch) {
	r.devRun.reading(pc, v, err, at, sc)
	c := r.c
	restarts := r.cfg.plugin.p.Restarts()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	switch {
	case runtime.KilledInstance(err) || restarts > c.restarts:
		c.failWhy = fmt.Sprintf("device %s: reading property %s killed an instance of the new module: %v", r.d.key, pc.Name, err)
		c.closeLocked()
	case err == nil && c.waiting[r.d.id]:
		delete(c.waiting, r.d.id)
		if len(c.waiting) == 0 {
			c.closeLocked()
		}
	}
}

// hotUpgrade loads the module wasm (digest dg) beside the running version
// old and moves old's devices to it, or rolls back (see the comment at
// the top of this file). It runs without the reconciliation lock, as
// the [upgradeRun] of old's plugin, whose commit makes its outcome the
// plugin's.
func (m *Manager) hotUpgrade(ctx context.Context, old *pluginEntry, src string, obj *v1alpha1.MapperPlugin, spec string, wasm []byte, dg string) moduleChange {
	start := time.Now()
	name := obj.Name
	log := m.log.With("plugin", name, "from", old.digest, "to", dg)
	log.Info("plugin upgrade started", "strategy", v1alpha1.UpgradeHot, "canaryPercent", canaryShare(&obj.Spec))
	nw := &pluginEntry{name: name, source: src, spec: spec, obj: obj.DeepCopy(), gen: old.gen,
		readings: old.readings, skips: old.skips, digest: dg, store: old.store}
	reject := func(moved []*moving, why string) moduleChange {
		m.rollBack(ctx, old, nw, moved, dg, why, log)
		return moduleChange{handled: true, entry: old}
	}
	var err error
	if nw.p, err = m.startModule(ctx, nw.obj, wasm, old.store); err != nil {
		log.Warn("plugin upgrade: probe failed", "step", "load", "err", err)
		return reject(nil, fmt.Sprintf("the new module did not load: %v", err))
	}
	running, stay := m.devicesOf(old)
	if why := m.probe(ctx, nw, running); why != "" {
		log.Warn("plugin upgrade: probe failed", "devices", len(running), "reason", why)
		return reject(nil, "probe failed: "+why)
	}
	log.Info("plugin upgrade: probe passed", "devices", len(running), "took", time.Since(start).Round(time.Millisecond))

	n := obj.Spec.Upgrade.Canary(len(running))
	c := &canary{waiting: map[uint32]bool{}, restarts: nw.p.Restarts(), done: make(chan struct{})}
	var longest time.Duration
	for _, mv := range running[:n] {
		if len(mv.oldCfg.props) > 0 {
			c.waiting[mv.d.id] = true
		}
		for _, pc := range mv.oldCfg.props {
			longest = max(longest, pc.collect)
		}
	}
	if len(c.waiting) == 0 {
		c.closeLocked()
	}
	if err := m.move(ctx, running[:n], func(mv *moving) target { return &canaryRun{devRun: &devRun{d: mv.d, cfg: mv.newCfg}, c: c} }, nw); err != nil {
		return reject(running[:n], err.Error())
	}
	log.Info("plugin upgrade: canary devices moved", "devices", n, "of", len(running))
	m.hook(name, "canary")
	wait := min(max(canaryCycles*longest, canaryWaitMin), m.opts.AddTimeout)
	timer := time.NewTimer(wait)
	select {
	case <-c.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	c.mu.Lock()
	c.closeLocked()
	why, late := c.failWhy, len(c.waiting)
	c.mu.Unlock()
	switch {
	case why != "":
	case nw.p.Restarts() > c.restarts:
		why = fmt.Sprintf("an instance of the new module died during the canary (%d restarts)", nw.p.Restarts()-c.restarts)
	case ctx.Err() != nil:
		why = fmt.Sprintf("interrupted: %v", context.Cause(ctx))
	case late > 0:
		why = fmt.Sprintf("%d canary devices did not read successfully on the new module within %s", late, wait)
	}
	if why != "" {
		log.Warn("plugin upgrade: canary failed", "reason", why)
		return reject(running[:n], "canary failed: "+why)
	}
	if err := m.move(ctx, running[n:], func(mv *moving) target { return &devRun{d: mv.d, cfg: mv.newCfg} }, nw); err != nil {
		// Only when the manager closes: the devices moved so far go
		// back to the old module, which kept the others.
		log.Warn("plugin upgrade interrupted", "err", err)
		return reject(running, err.Error())
	}
	// The canary devices read on the new version through canaryRun; give
	// them a plain devRun again now that the canary is over.
	if err := m.move(ctx, running[:n], func(mv *moving) target { return &devRun{d: mv.d, cfg: mv.newCfg} }, nw); err != nil {
		log.Warn("plugin upgrade: canary devices kept their canary watch", "err", err)
	}
	// The devices that were not running start again on the new version
	// once the upgrade commits.
	m.mu.Lock()
	old.released = true
	m.mu.Unlock()
	m.met.upgrades.WithLabelValues(name, "ok").Inc()
	log.Info("plugin upgrade done: every device moved", "devices", len(running), "restarting", len(stay), "took", time.Since(start).Round(time.Millisecond))
	return moduleChange{handled: true, entry: nw, retired: old, stay: stay}
}

// canaryShare is the canary share of a spec, for logs.
func canaryShare(s *v1alpha1.MapperPluginSpec) int32 {
	if s.Upgrade.CanaryPercent == nil {
		return v1alpha1.DefaultCanaryPercent
	}
	return *s.Upgrade.CanaryPercent
}

// devicesOf returns the devices that run on plugin e (scheduled, added
// to it), sorted by key, and those that use it but do not run.
func (m *Manager) devicesOf(e *pluginEntry) (running []*moving, stay []*device) {
	m.mu.RLock()
	all := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		all = append(all, d)
	}
	m.mu.RUnlock()
	slices.SortFunc(all, func(a, b *device) int { return cmpString(a.key, b.key) })
	for _, d := range all {
		d.mu.Lock()
		cfg, l, added := d.cfg, d.loop, d.added
		d.mu.Unlock()
		if cfg == nil || cfg.plugin != e {
			continue
		}
		if l == nil || !added {
			stay = append(stay, d)
			continue
		}
		nc := *cfg
		nc.plugin = nil // set by hotUpgrade's caller of move
		running = append(running, &moving{d: d, l: l, oldCfg: cfg, newCfg: &nc})
	}
	return running, stay
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// probe adds each running device to the new version and reads each of
// its ReadOnly properties once there. It returns why the new version is
// not fit, or "".
func (m *Manager) probe(ctx context.Context, nw *pluginEntry, running []*moving) string {
	pctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
	defer cancel()
	if err := nw.p.Ping(pctx); err != nil {
		return fmt.Sprintf("the ABI marker call failed: %v", err)
	}
	restarts := nw.p.Restarts()
	for _, mv := range running {
		mv.newCfg.plugin = nw
		if err := nw.p.AddDevice(pctx, mv.oldCfg.desc); err != nil {
			return fmt.Sprintf("device %s: the new module refused to add it: %v", mv.d.key, err)
		}
		for i := range mv.oldCfg.props {
			pc := &mv.oldCfg.props[i]
			if pc.AccessMode != string(v1beta1.ReadOnly) {
				continue
			}
			_, err := nw.p.Read(pctx, mv.d.id, pc.Handle)
			if runtime.KilledInstance(err) || nw.p.Restarts() > restarts {
				return fmt.Sprintf("device %s: reading property %s killed an instance of the new module: %v", mv.d.key, pc.Name, err)
			}
			if err == nil {
				continue
			}
			if ts := mv.d.twins.status(pc); ts.Error == "" && !ts.ReportedTime.IsZero() {
				// The old version reads it: the new one must too.
				return fmt.Sprintf("device %s: property %s reads on the old module but not on the new one: %v", mv.d.key, pc.Name, err)
			}
		}
	}
	return ""
}

// errStopped: a device stopped while it was being moved.
var errStopped = errors.New("device stopped while being moved")

// move hands the devices to the targets mk makes for them on plugin to,
// each between two of its jobs, and waits until all have moved.
func (m *Manager) move(ctx context.Context, devs []*moving, mk func(*moving) target, to *pluginEntry) error {
	return m.awaitMove(ctx, devs, m.startMove(devs, mk, to), to)
}

// startMove asks the scheduler to move the devices (see move) and
// returns the requests to wait for with awaitMove.
func (m *Manager) startMove(devs []*moving, mk func(*moving) target, to *pluginEntry) []*swapReq {
	reqs := make([]*swapReq, len(devs))
	for i, mv := range devs {
		reqs[i] = m.sched.swap(mv.l, mk(mv), to)
	}
	return reqs
}

// awaitMove waits for the moves startMove asked and points each moved
// device's configuration to its plugin.
func (m *Manager) awaitMove(ctx context.Context, devs []*moving, reqs []*swapReq, to *pluginEntry) error {
	var err error
	for i, sw := range reqs {
		select {
		case <-sw.done:
		case <-ctx.Done():
			return fmt.Errorf("moving devices: %w", context.Cause(ctx))
		}
		mv := devs[i]
		if !sw.ok {
			err = fmt.Errorf("%s: %w", mv.d.key, errStopped)
			continue
		}
		cfg := mv.oldCfg
		if to == mv.newCfg.plugin {
			cfg = mv.newCfg
		}
		mv.d.mu.Lock()
		mv.d.cfg = cfg
		mv.d.mu.Unlock()
		mv.moved = to == mv.newCfg.plugin
	}
	return err
}

// rollBack moves the devices moved to nw back to old, closes nw and
// records the rejection of module dg on old.
func (m *Manager) rollBack(ctx context.Context, old, nw *pluginEntry, moved []*moving, dg, why string, log *slog.Logger) {
	var back []*moving
	for _, mv := range moved {
		if mv.moved {
			back = append(back, mv)
		}
	}
	reqs := m.startMove(back, func(mv *moving) target { return &devRun{d: mv.d, cfg: mv.oldCfg} }, old)
	if nw.p != nil {
		// Closed before the devices are back: a job of theirs waiting
		// for an instance of the new version (restarting after a trap)
		// ends at once, and they move back before their next cycle.
		cctx, cancel := context.WithTimeout(ctx, m.opts.AddTimeout)
		if err := nw.close(cctx); err != nil {
			log.Warn("rejected module not closed yet; closing it in the background", "err", err)
		}
		cancel()
	}
	if err := m.awaitMove(ctx, back, reqs, old); err != nil {
		log.Warn("plugin upgrade: devices not moved back", "err", err)
	}
	m.mu.Lock()
	old.rejected, old.rejectedWhy = dg, why
	m.mu.Unlock()
	m.met.upgrades.WithLabelValues(old.name, "rolled_back").Inc()
	log.Warn("plugin upgrade rolled back: the old module keeps running", "moved-back", len(back), "reason", why)
}
