package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/runtime"
)

// NeutralOptions tune RunNeutral; the zero value checks a plugin under the
// host's default limits with a device of no properties.
type NeutralOptions struct {
	// Logger receives the runtime's and the plugin's logs (default:
	// discarded, the checks provoke errors on purpose).
	Logger *slog.Logger
	// Config is the plugin config handed to wapper_init (default {}).
	Config json.RawMessage
	// Grants are the plugin's MapperPlugin grants (default none: every
	// open is denied).
	Grants v1alpha1.Grants
	// Device is the author's device, added and read once property by
	// property, then cycled; nil uses a device with no properties.
	Device *abi.Device
	// Slow names a property of Device whose read outlasts CallTimeout;
	// without it the timeout check is skipped.
	Slow string
	// MemoryMiB and CallTimeout are the plugin's limits (default 64 and
	// 5 s, the host's).
	MemoryMiB   int
	CallTimeout time.Duration
	// Cycles is the number of measured add/read/remove cycles of the leak
	// check, after a warm-up of 60 (default 200).
	Cycles int
}

// Neutral checks, in run order, for docs and the CLI's help.
var neutralDocs = [][2]string{
	{"module", "the loader's checks: ABI marker, required exports and their signatures, memory, imports"},
	{"load", "instantiation, _initialize and wapper_init with the plugin config"},
	{"errors/empty-config", "a device with no protocol config and no properties: added, or refused with a clean error"},
	{"errors/garbage-config", "a device whose configs and visitors hold wrong types: a clean error, never a trap"},
	{"errors/bad-description", "wapper_device_add of bytes that are not a JSON object: an error result, not a trap"},
	{"errors/unknown-device", "read, write, state (and batch, method, poll) of a device never added: an error result"},
	{"errors/unknown-property", "read and write of a property handle the device lacks, and an unknown method: an error result"},
	{"errors/remove-unknown", "wapper_device_remove of a device never added: a result, not a trap"},
	{"device/add", "the --device added through the host (then device/read NAME: each property read once)"},
	{"memory/buffers", "wapper_alloc: 0 to 4 MiB, inside memory, never overlapping a live buffer; freed buffers are reused"},
	{"memory/cycles", "add, read, state, remove cycles do not grow guest memory after a warm-up"},
	{"timeout", "a read past the call timeout (--slow) is cut with code 5, the instance replaced and the device served again"},
}

// NeutralChecks lists the checks RunNeutral runs, as "name: what it checks".
func NeutralChecks() []string {
	out := make([]string, len(neutralDocs))
	for i, d := range neutralDocs {
		out[i] = d[0] + ": " + d[1]
	}
	return out
}

func neutralDoc(name string) string {
	for _, d := range neutralDocs {
		if d[0] == name {
			return d[1]
		}
	}
	return ""
}

func (o *NeutralOptions) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = runtime.DefaultMemoryMiB
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = runtime.DefaultCallTimeout
	}
	if o.Cycles == 0 {
		o.Cycles = 200
	}
	if len(o.Config) == 0 {
		o.Config = json.RawMessage("{}")
	}
}

// neutral is the state of a RunNeutral run, shared by its checks.
type neutral struct {
	ctx   context.Context
	opts  NeutralOptions
	wasm  []byte
	eng   *runtime.Engine
	reg   *prometheus.Registry // holds the runtime's metrics: traps
	probe *Probe
	copts Options // for runCase
	rep   Report

	p    *runtime.Plugin // loaded by "load", used by every host-side check
	raw  *runtime.Plugin // a second copy, for Lend, loaded on first use
	stop string          // why the remaining checks do not run

	added    bool     // the plugin accepted opts.Device
	readable []uint32 // handles of opts.Device that read without error
}

// RunNeutral runs plugin-neutral checks on any plugin module: what every
// plugin must do whatever its protocol (`wapper plugin test`). Host-side
// checks load the module through host/runtime with one instance; checks
// that need arguments the host never sends (unknown handles, a description
// that is not JSON) call the exports of an instance lent out by a second
// copy of the plugin (runtime.Plugin.Lend). A call that kills the instance
// (a trap, a panic, the deadline, a malformed result) fails the check it
// is in.
func RunNeutral(ctx context.Context, wasm []byte, opts NeutralOptions) Report {
	opts.defaults()
	n := &neutral{ctx: ctx, opts: opts, wasm: wasm, probe: NewProbe(), reg: prometheus.NewRegistry(),
		copts: Options{CaseTimeout: 30 * time.Minute}, rep: Report{unit: "checks"}}
	eng, err := runtime.NewEngine(runtime.EngineOptions{Logger: opts.Logger, Metrics: runtime.NewMetrics(n.reg)})
	if err != nil {
		n.rep.Results = append(n.rep.Results, Result{Name: "engine", Failures: []string{err.Error()}})
		return n.rep
	}
	n.eng = eng
	defer eng.Close(context.Background())
	defer func() {
		if n.p != nil {
			n.p.Close(context.Background())
		}
		if n.raw != nil {
			n.raw.Close(context.Background())
		}
	}()
	n.rep.Module, _ = runtime.Check(ctx, wasm)
	n.run("module", n.checkModule)
	n.run("load", n.checkLoad)
	n.run("errors/empty-config", n.checkEmptyConfig)
	n.run("errors/garbage-config", n.checkGarbageConfig)
	n.run("errors/bad-description", n.checkBadDescription)
	n.run("errors/unknown-device", n.checkUnknownDevice)
	n.run("errors/unknown-property", n.checkUnknownProperty)
	n.run("errors/remove-unknown", n.checkRemoveUnknown)
	if opts.Device != nil {
		n.run("device/add", n.checkDeviceAdd)
		for _, pd := range opts.Device.Properties {
			n.run("device/read "+pd.Name, func(t *caseRun) { n.checkRead(t, pd) })
		}
	}
	n.run("memory/buffers", n.checkBuffers)
	n.run("memory/cycles", n.checkCycles)
	n.run("timeout", n.checkTimeout)
	return n.rep
}

// run runs one check, or records it as not run once a check has stopped
// the run.
func (n *neutral) run(name string, fn func(*caseRun)) {
	doc := neutralDoc(name)
	if strings.HasPrefix(name, "device/read ") {
		doc = "read once"
	}
	if n.stop != "" {
		n.rep.Results = append(n.rep.Results, Result{Name: name, Doc: doc, Passed: true, Skipped: true, Notes: []string{n.stop}})
		return
	}
	n.rep.Results = append(n.rep.Results, runCase(n.ctx, n.eng, n.probe, n.wasm, &n.copts, Case{Name: name, Doc: doc, run: fn}))
}

// kills returns how many plugin instances were thrown away so far.
func (n *neutral) kills() int {
	mfs, _ := n.reg.Gather()
	total := 0
	for _, mf := range mfs {
		if mf.GetName() == "wapper_plugin_traps_total" {
			for _, m := range mf.GetMetric() {
				total += int(m.GetCounter().GetValue())
			}
		}
	}
	return total
}

// clean runs a host-side call and reports whether it came back without
// killing the instance; a kill is a failure of the check.
func (n *neutral) clean(t *caseRun, what string, call func() error) (ok bool, err error) {
	before := n.kills()
	err = call()
	if n.kills() > before {
		t.Errorf("%s: %s", what, brief(err))
		return false, err
	}
	return true, err
}

// brief is an error's text without the Go stack trace wazero adds to a
// trap it recovered from a host-side panic.
func brief(err error) string {
	s := fmt.Sprint(err)
	if i := strings.Index(s, "\n\nGo runtime stack trace:"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// base is a device of the author's protocol (or "wapper-test") with no
// config and no properties.
func (n *neutral) base(id uint32) abi.Device {
	d := device(id, "")
	d.Name, d.Model, d.Protocol = fmt.Sprintf("wapper-test-%d", id), "wapper-test", "wapper-test"
	if n.opts.Device != nil {
		d.Protocol = n.opts.Device.Protocol
	}
	return d
}

func (n *neutral) checkModule(t *caseRun) {
	info, err := runtime.Check(t.ctx, n.wasm)
	if err != nil {
		n.stop = "not run: the host refuses the module"
		for _, p := range info.Problems {
			t.Errorf("%s", p)
		}
		for _, h := range Hints(info, nil) {
			t.Notef("hint: %s", h)
		}
		return
	}
	t.Notef("ABI v%d, %d KiB, initial memory %d KiB", info.ABIMajor, info.Size>>10, info.MemoryMinPages*64)
}

func (n *neutral) checkLoad(t *caseRun) {
	cfg := runtime.Config{Name: "plugin-test", Wasm: n.wasm, PluginConfig: n.opts.Config, KV: &MemKV{}, Report: func(runtime.Reading) {},
		Instances: 1, MemoryMiB: n.opts.MemoryMiB, CallTimeout: n.opts.CallTimeout}
	if err := runtime.WithGrants(&cfg, n.opts.Grants.Set()); err != nil {
		n.stop = "not run: the grants are invalid"
		t.Fatalf("grants: %v", err)
	}
	p, err := n.eng.Load(n.probe.Context(n.ctx), cfg)
	if err != nil {
		n.stop = "not run: the plugin does not load"
		t.Errorf("%s", brief(err))
		for _, h := range Hints(n.rep.Module, err) {
			t.Notef("hint: %s", h)
		}
		return
	}
	n.p = p
	t.Notef("ABI 1.%d; wapper_init(%s) succeeded", p.Info().ABIMinor, clip(string(n.opts.Config), 60))
	for _, g := range Grants(p.Info()) {
		t.Notef("device I/O needs %s", g)
	}
}

func (n *neutral) checkEmptyConfig(t *caseRun) {
	d := n.base(1)
	ok, err := n.clean(t, "add", func() error { return n.p.AddDevice(t.ctx, d) })
	switch {
	case !ok:
	case err != nil:
		t.Notef("refused cleanly: %v", err)
	default:
		t.Notef("accepted")
		n.clean(t, "state", func() error { _, _, err := n.p.State(t.ctx, d.ID); return err })
		n.clean(t, "remove", func() error { return n.p.RemoveDevice(t.ctx, d.ID) })
	}
}

// garbage is a description whose configs and visitors hold the wrong
// types for any plausible field.
func (n *neutral) garbage(id uint32) abi.Device {
	const junk = `{"address": [], "host": {"x": [1]}, "port": -1, "slaveID": "zero", "baudRate": "fast", "serialPort": 7, ` +
		`"line": true, "pin": null, "timeout": "soon", "kind": 42, "register": "HOLDING?", "offset": -5.5, "dataType": {}, "": "\u0000é"}`
	d := n.base(id)
	d.ProtocolConfig, d.ModelConfig = json.RawMessage(junk), json.RawMessage(`{"x": [[[]]], "y": 1e308}`)
	for i, typ := range []string{"INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"} {
		d.Properties = append(d.Properties, prop(uint32(i), "garbage-"+strings.ToLower(typ), typ, "ReadWrite", junk))
	}
	return d
}

func (n *neutral) checkGarbageConfig(t *caseRun) {
	d := n.garbage(2)
	ok, err := n.clean(t, "add", func() error { return n.p.AddDevice(t.ctx, d) })
	switch {
	case !ok:
		return
	case err != nil:
		t.Notef("refused cleanly: %v", err)
		return
	}
	var errs []string
	for _, pd := range d.Properties {
		if ok, err := n.clean(t, "read "+pd.Name, func() error { _, err := n.p.Read(t.ctx, d.ID, pd.Handle); return err }); ok && err != nil {
			errs = append(errs, fmt.Sprintf("code %d", abi.CodeOf(err)))
		}
	}
	n.clean(t, "state", func() error { _, _, err := n.p.State(t.ctx, d.ID); return err })
	n.clean(t, "remove", func() error { return n.p.RemoveDevice(t.ctx, d.ID) })
	t.Notef("accepted; %d of %d reads failed cleanly (%s)", len(errs), len(d.Properties), strings.Join(slices.Compact(errs), ", "))
}

// lend runs fn on an instance of a second copy of the plugin, kept apart
// from the host-side checks' devices, for calls the host never makes.
func (n *neutral) lend(t *caseRun, fn func(l runtime.Lent)) {
	if n.raw == nil {
		cfg := n.p.Config()
		cfg.Name = "plugin-test-raw"
		p, err := n.eng.Load(n.probe.Context(n.ctx), cfg)
		if err != nil {
			t.Fatalf("load a second copy: %v", err)
		}
		n.raw = p
	}
	if err := n.raw.Lend(t.ctx, func(l runtime.Lent) error { fn(l); return nil }); err != nil {
		t.Fatalf("%v", err)
	}
}

// result calls an export on a lent instance, as the host would with its
// buffers, and returns its payload or error result; ok is false when the
// call killed the instance, which fails the check.
func (n *neutral) result(t *caseRun, l runtime.Lent, what, export string, buf []byte, args ...uint64) (ok bool, payload []byte, err error) {
	before := n.kills()
	payload, err = l.Result(export, buf, args...)
	if n.kills() > before {
		t.Errorf("%s: %s", what, brief(err))
		return false, nil, err
	}
	return true, payload, err
}

// wantError checks that a call came back with an error result. Other
// codes than want are noted, not failed: SPEC.md §5 names the code to use,
// but any error is clean.
func (n *neutral) wantError(t *caseRun, l runtime.Lent, what, export string, buf []byte, want abi.Code, args ...uint64) {
	ok, _, err := n.result(t, l, what, export, buf, args...)
	switch code := abi.CodeOf(err); {
	case !ok:
	case err == nil:
		t.Errorf("%s: succeeded, want an error (code %d, %v)", what, want, want)
	case code != want:
		t.Notef("%s: code %d (%v) %q; SPEC.md §5 suggests %d (%v)", what, code, code, clip(abi.MessageOf(err), 80), want, want)
	}
}

func (n *neutral) checkBadDescription(t *caseRun) {
	n.lend(t, func(l runtime.Lent) {
		for _, b := range []string{"this is not JSON {", `[1, 2, 3]`} {
			n.wantError(t, l, fmt.Sprintf("wapper_device_add(7, %q)", b), abi.ExportDeviceAdd, []byte(b), abi.ErrInvalid, 7)
		}
	})
}

// unknownDev is a device handle no check adds.
const unknownDev = 4242

func (n *neutral) checkUnknownDevice(t *caseRun) {
	n.lend(t, func(l runtime.Lent) {
		n.wantError(t, l, "wapper_read", abi.ExportRead, nil, abi.ErrNotFound, unknownDev, 0)
		n.wantError(t, l, "wapper_write", abi.ExportWrite, abi.Int(1).Encode(), abi.ErrNotFound, unknownDev, 0)
		ok, payload, err := n.result(t, l, "wapper_device_state", abi.ExportState, nil, unknownDev)
		switch st, reason, perr := abi.ParseStateResult(payload); {
		case !ok:
		case err == nil && perr == nil && st == abi.StateUnhealthy && reason != "":
			// sdk-rust answers so; the host never asks about a device it
			// has not added, so this is clean enough.
			t.Notef("wapper_device_state: unhealthy, %q; SPEC.md §3.1 says error %d (not found)", clip(reason, 80), abi.ErrNotFound)
		case err == nil:
			t.Errorf("wapper_device_state: succeeded (state %v), want an error (code %d, %v)", st, abi.ErrNotFound, abi.ErrNotFound)
		case abi.CodeOf(err) != abi.ErrNotFound:
			t.Notef("wapper_device_state: %v; SPEC.md §3.1 says code %d (not found)", err, abi.ErrNotFound)
		}
		if l.Has(abi.ExportMethod) {
			n.wantError(t, l, "wapper_call_method", abi.ExportMethod, []byte(`{"method": "wapper-test", "args": {}}`), abi.ErrNotFound, unknownDev)
		}
		if l.Has(abi.ExportPoll) {
			n.result(t, l, "wapper_poll", abi.ExportPoll, nil, unknownDev, 10)
		}
	})
}

func (n *neutral) checkUnknownProperty(t *caseRun) {
	n.lend(t, func(l runtime.Lent) {
		var d *abi.Device
		var refused []string
		for _, c := range []*abi.Device{n.opts.Device, ptr(n.base(3))} {
			if c == nil {
				continue
			}
			raw, _ := json.Marshal(c)
			ok, _, err := n.result(t, l, "wapper_device_add of "+c.Name, abi.ExportDeviceAdd, raw, uint64(c.ID))
			if !ok {
				return
			}
			if err == nil {
				d = c
				break
			}
			refused = append(refused, fmt.Sprintf("%s: %s", c.Name, clip(err.Error(), 100)))
		}
		if d == nil {
			t.Skipf("the plugin refused every device (%s); give --device with one it accepts", strings.Join(refused, "; "))
		}
		const h = 4242
		n.wantError(t, l, "wapper_read of property 4242", abi.ExportRead, nil, abi.ErrNotFound, uint64(d.ID), h)
		n.wantError(t, l, "wapper_write of property 4242", abi.ExportWrite, abi.Int(1).Encode(), abi.ErrNotFound, uint64(d.ID), h)
		if l.Has(abi.ExportMethod) {
			n.wantError(t, l, "wapper_call_method of an unknown method", abi.ExportMethod, []byte(`{"method": "wapper-test-no-such-method", "args": {}}`), abi.ErrNotFound, uint64(d.ID))
		}
		n.result(t, l, "wapper_device_remove", abi.ExportDeviceRemove, nil, uint64(d.ID))
		t.Notef("on device %s", d.Name)
	})
}

func (n *neutral) checkRemoveUnknown(t *caseRun) {
	n.lend(t, func(l runtime.Lent) {
		switch ok, _, err := n.result(t, l, "wapper_device_remove", abi.ExportDeviceRemove, nil, unknownDev); {
		case !ok:
		case err == nil:
			t.Notef("succeeded")
		default:
			t.Notef("%v", err)
		}
	})
}

func (n *neutral) checkDeviceAdd(t *caseRun) {
	d := *n.opts.Device
	ok, err := n.clean(t, "add", func() error { return n.p.AddDevice(t.ctx, d) })
	switch {
	case !ok:
		return
	case err != nil:
		t.Errorf("add %s: %v", d.Name, err)
		if abi.CodeOf(err) == abi.ErrDenied {
			t.Notef("hint: the grants do not allow it; add a MapperPlugin with spec.grants to the YAML")
		}
		return
	}
	n.added = true
	var st abi.State
	var reason string
	if ok, err := n.clean(t, "state", func() (err error) { st, reason, err = n.p.State(t.ctx, d.ID); return err }); ok {
		if err != nil {
			t.Errorf("state: %v", err)
		} else {
			t.Notef("state %v", strings.TrimSpace(fmt.Sprintf("%v %s", st, reason)))
		}
	}
}

func (n *neutral) checkRead(t *caseRun, pd abi.Property) {
	switch {
	case !n.added:
		t.Skipf("not run: the device was not added")
	case pd.Name == n.opts.Slow:
		t.Skipf("the --slow property, read by the timeout check")
	}
	var v abi.Value
	start := time.Now()
	ok, err := n.clean(t, "read", func() (err error) { v, err = n.p.Read(t.ctx, n.opts.Device.ID, pd.Handle); return err })
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case !ok:
	case err != nil:
		t.Errorf("%v (after %v)", err, took)
	default:
		t.res.Doc = "read once: " + short(v)
		n.readable = append(n.readable, pd.Handle)
	}
}

// checkBuffers holds buffers of every size the host may ask for live at
// once, which the host itself never does, and lets the probe check every
// wapper_alloc answer (not 0, inside memory, not overlapping a live
// buffer) here and in all the checks before.
func (n *neutral) checkBuffers(t *caseRun) {
	n.lend(t, func(l runtime.Lent) {
		call := func(export string, arg uint64) uint64 {
			before := n.kills()
			r, err := l.Call(export, arg)
			if err != nil || n.kills() > before {
				t.Fatalf("%s(%#x): %s", export, arg, brief(err))
			}
			return r
		}
		type buf struct{ ptr, size uint32 }
		var live []buf
		mem := l.Memory()
		for i, size := range []uint32{0, 1, 7, 64, 4096, 64 << 10, 1 << 20, abi.MaxMessage} {
			ptr := uint32(call(abi.ExportAlloc, uint64(size)))
			if ptr != 0 && mem.Write(ptr, bytes.Repeat([]byte{byte(i + 1)}, int(size))) {
				live = append(live, buf{ptr, size})
			}
		}
		for i, b := range live {
			if got, _ := mem.Read(b.ptr, b.size); bytes.Count(got, []byte{byte(i + 1)}) != int(b.size) {
				t.Errorf("the live buffer %#x+%d was overwritten by later wapper_alloc calls", b.ptr, b.size)
			}
			call(abi.ExportFree, uint64(b.ptr))
		}
		const rounds, size = 500, 64 << 10
		m0 := mem.Size()
		for range rounds {
			if ptr := call(abi.ExportAlloc, size); ptr != 0 {
				call(abi.ExportFree, ptr)
			}
		}
		if m1 := mem.Size(); m1 > m0+growthLimit(rounds, size) {
			t.Errorf("guest memory grew from %d KiB to %d KiB over %d wapper_alloc/wapper_free of %d KiB: freed buffers are not reused", m0>>10, m1>>10, rounds, size>>10)
		}
	})
	for _, p := range n.probe.Problems() {
		t.Errorf("%s", p)
	}
	allocs, _, zero, _ := n.probe.Buffers()
	t.Notef("%d wapper_alloc calls so far (%d of size 0)", allocs, zero)
}

// padKey is the protocol-config field that makes each cycle's description
// large, so that a plugin keeping removed devices shows in its memory.
const padKey = "wapperTestPadding"

func (n *neutral) checkCycles(t *caseRun) {
	dev, reads := n.base(0), []uint32(nil)
	if n.added {
		dev, reads = *n.opts.Device, n.readable
	}
	mk := func(i int, pad bool) abi.Device {
		d := dev
		d.ID, d.Name = uint32(1000+i), fmt.Sprintf("%s-%d", dev.Name, i)
		if pad {
			d.ProtocolConfig = padded(dev.ProtocolConfig)
		}
		return d
	}
	// The first cycle settles the description: padded if the plugin takes
	// it, else as it is, else refused (then only refusals are cycled).
	pad, refused := true, ""
	for _, try := range []bool{true, false} {
		d := mk(0, try)
		ok, err := n.clean(t, "add", func() error { return n.p.AddDevice(t.ctx, d) })
		if !ok {
			t.Fatalf("the plugin instance died in the first cycle")
		}
		if pad, refused = try, ""; err == nil {
			n.clean(t, "remove", func() error { return n.p.RemoveDevice(t.ctx, d.ID) })
			break
		}
		refused = err.Error()
	}
	cycle := func(i int) bool {
		d := mk(i, pad)
		ok, err := n.clean(t, fmt.Sprintf("cycle %d: add", i), func() error { return n.p.AddDevice(t.ctx, d) })
		if !ok || err != nil {
			return ok
		}
		for _, h := range reads {
			if ok, _ := n.clean(t, fmt.Sprintf("cycle %d: read %d", i, h), func() error { _, err := n.p.Read(t.ctx, d.ID, h); return err }); !ok {
				return false
			}
		}
		ok, _ = n.clean(t, fmt.Sprintf("cycle %d: state", i), func() error { _, _, err := n.p.State(t.ctx, d.ID); return err })
		if ok2, _ := n.clean(t, fmt.Sprintf("cycle %d: remove", i), func() error { return n.p.RemoveDevice(t.ctx, d.ID) }); !ok2 {
			return false
		}
		return ok
	}
	for i := range warmUp {
		if !cycle(1 + i) {
			t.Fatalf("the plugin instance died in warm-up cycle %d", i)
		}
	}
	// A garbage-collected guest may still be growing to its steady heap
	// after the warm-up, so the bound is on the second half of the cycles:
	// a plugin that keeps what it should free grows in both halves.
	half := max(n.opts.Cycles/2, 1)
	var m0, mh uint32
	for i := range n.opts.Cycles {
		switch i {
		case 0:
			m0 = n.probe.Memory()
		case half:
			mh = n.probe.Memory()
		}
		if !cycle(1 + warmUp + i) {
			t.Fatalf("the plugin instance died in cycle %d of %d", i, n.opts.Cycles)
		}
	}
	m1 := n.probe.Memory()
	if n.opts.Cycles == 1 {
		mh = m0
	}
	raw, _ := json.Marshal(mk(0, pad))
	limit := max(growthLimit(n.opts.Cycles-half, len(raw)), 1<<20)
	if m1 > mh+limit {
		t.Errorf("guest memory grew from %d KiB to %d KiB over the last %d cycles (bound +%d KiB): the plugin keeps something of every device it removed", mh>>10, m1>>10, n.opts.Cycles-half, limit>>10)
	}
	what := fmt.Sprintf("add a %d KiB description, read %d properties, state, remove", len(raw)>>10, len(reads))
	switch {
	case refused != "":
		what = "add, refused: " + clip(refused, 120) + "; only the refusal path was cycled (give --device with a device the plugin accepts)"
	case !pad:
		what += fmt.Sprintf(" (the plugin refused the %s padding field, so the bound is loose)", padKey)
	}
	t.Notef("guest memory %d KiB after %d warm-up cycles, %d KiB after %d more, %d KiB after %d; each cycle: %s", m0>>10, warmUp, mh>>10, half, m1>>10, n.opts.Cycles, what)
}

// padded adds a 32 KiB string field to a protocol config object.
func padded(cfg json.RawMessage) json.RawMessage {
	m := map[string]any{}
	if len(cfg) > 0 && json.Unmarshal(cfg, &m) != nil {
		return cfg
	}
	m[padKey] = strings.Repeat("w", 32<<10)
	b, _ := json.Marshal(m)
	return b
}

func (n *neutral) checkTimeout(t *caseRun) {
	if n.opts.Slow == "" {
		t.Skipf("no way to make this plugin slow: give --slow PROPERTY, a property of --device whose read outlasts --call-timeout (such as the virtual plugin's delayMs)")
	}
	if !n.added {
		t.Skipf("not run: --slow needs the device of --device, which was not added")
	}
	d := n.opts.Device
	i := slices.IndexFunc(d.Properties, func(p abi.Property) bool { return p.Name == n.opts.Slow })
	if i < 0 {
		t.Fatalf("--slow %q: the device has no such property", n.opts.Slow)
	}
	r0, start := n.p.Restarts(), time.Now()
	_, err := n.p.Read(t.ctx, d.ID, d.Properties[i].Handle)
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatalf("the read of %q returned a value in %v, within the call timeout %v: it is not slow", n.opts.Slow, took.Round(time.Millisecond), n.opts.CallTimeout)
	case abi.CodeOf(err) != abi.ErrTimeout:
		t.Fatalf("the read of %q failed with %v, want code 5 (timeout) from the host's deadline", n.opts.Slow, err)
	case took > n.opts.CallTimeout+2*time.Second:
		t.Errorf("the call was cut only after %v (call timeout %v)", took.Round(time.Millisecond), n.opts.CallTimeout)
	}
	for wait := time.Now(); n.p.Restarts() == r0; time.Sleep(10 * time.Millisecond) {
		if time.Since(wait) > 30*time.Second {
			t.Fatalf("the instance was not replaced within 30 s")
		}
	}
	var st abi.State
	ok, err := n.clean(t, "state after the restart", func() (err error) { st, _, err = n.p.State(t.ctx, d.ID); return err })
	switch {
	case !ok:
	case err != nil:
		t.Errorf("the new instance does not serve the device: state: %v", err)
	default:
		t.Notef("cut after %v, instance replaced, the device re-added to it (state %v)", took.Round(time.Millisecond), st)
	}
}

func ptr[T any](v T) *T { return &v }

// clip cuts s to n bytes for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
