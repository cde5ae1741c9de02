package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// MemKV is an in-memory runtime.KV shared by every instance of a plugin,
// like the host's bbolt store.
type MemKV struct {
	mu sync.Mutex // guards m
	m  map[string][]byte
}

// Get implements runtime.KV.
func (k *MemKV) Get(key []byte) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[string(key)]
	return v, ok, nil
}

// Set implements runtime.KV.
func (k *MemKV) Set(key, val []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string][]byte{}
	}
	k.m[string(key)] = append([]byte(nil), val...)
	return nil
}

// Delete implements runtime.KV.
func (k *MemKV) Delete(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, string(key))
	return nil
}

// reports collects the readings a plugin pushes.
type reports struct {
	mu  sync.Mutex // guards all
	all []runtime.Reading
}

func (r *reports) add(x runtime.Reading) {
	r.mu.Lock()
	r.all = append(r.all, x)
	r.mu.Unlock()
}

// take returns the readings so far and forgets them.
func (r *reports) take() []runtime.Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.all
	r.all = nil
	return out
}

// loaded is a plugin under test with what watches it. The probe is the
// case's: it sees every plugin the case loads.
type loaded struct {
	*runtime.Plugin
	probe   *Probe
	reports *reports
}

// load loads the module under test with one instance (so that the probe
// and restarts are unambiguous), the suite's limits and kv, and mod's
// changes. It ends the case when the module does not load.
func (t *caseRun) load(kv runtime.KV, mod func(*runtime.Config)) *loaded {
	p, err := t.tryLoad(kv, mod)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func (t *caseRun) tryLoad(kv runtime.KV, mod func(*runtime.Config)) (*loaded, error) {
	l := &loaded{probe: t.probe, reports: &reports{}}
	if kv == nil {
		kv = &MemKV{}
	}
	cfg := runtime.Config{
		Name: "conformance", Wasm: t.wasm, KV: kv, Report: l.reports.add,
		Instances: 1, MemoryMiB: t.opts.MemoryMiB, CallTimeout: t.opts.CallTimeout,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := t.eng.Load(l.probe.Context(t.ctx), cfg)
	if err != nil {
		return nil, err
	}
	l.Plugin = p
	t.cleanup = append(t.cleanup, func() { p.Close(context.Background()) })
	return l, nil
}

// add adds a device, ending the case if the plugin refuses it.
func (t *caseRun) add(p *loaded, d abi.Device) {
	if err := p.AddDevice(t.ctx, d); err != nil {
		t.Fatalf("add device %d (%s): %v", d.ID, d.Name, err)
	}
}

// wantErr checks that err carries code and, unless msg is "*", exactly
// the message msg. It returns whether it did.
func (t *caseRun) wantErr(what string, err error, code abi.Code, msg string) bool {
	var ae *abi.Error
	switch {
	case err == nil:
		t.Errorf("%s: succeeded, want code %d (%v)", what, code, code)
	case !errors.As(err, &ae):
		t.Errorf("%s: error %v carries no ABI code, want code %d (%v)", what, err, code, code)
	case ae.Code != code:
		t.Errorf("%s: code %d (%v), want %d (%v); message %q", what, ae.Code, ae.Code, code, code, ae.Message)
	case msg != "*" && ae.Message != msg:
		t.Errorf("%s: message %q, want exactly %q", what, ae.Message, msg)
	default:
		return true
	}
	return false
}

// short formats a value for a message, cut to a readable length.
func short(v abi.Value) string {
	s := v.GoString()
	if len(s) > 80 {
		s = fmt.Sprintf("%s… (%d bytes)", s[:60], len(v.Bytes()))
	}
	return s
}

// read reads a property and checks the value; it returns whether it
// matched.
func (t *caseRun) wantRead(p *loaded, dev, prop uint32, want abi.Value) bool {
	got, err := p.Read(t.ctx, dev, prop)
	switch {
	case err != nil:
		t.Errorf("read %d/%d: %v, want %s", dev, prop, err, short(want))
	case !got.Equal(want):
		t.Errorf("read %d/%d = %s, want %s", dev, prop, short(got), short(want))
	default:
		return true
	}
	return false
}

func (t *caseRun) write(p *loaded, dev, prop uint32, v abi.Value) bool {
	if err := p.Write(t.ctx, dev, prop, v); err != nil {
		t.Errorf("write %d/%d %s: %v", dev, prop, short(v), err)
		return false
	}
	return true
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	cx, _ := json.Marshal(x) // map keys sorted: a canonical form
	cy, _ := json.Marshal(y)
	return string(cx) == string(cy)
}
