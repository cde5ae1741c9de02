package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/kv"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// syncBuf is a log sink safe for concurrent writers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t       testing.TB
	eng     *runtime.Engine
	metrics *runtime.Metrics
	db      *bolt.DB
	logs    *syncBuf
}

// cacheDir is shared by the package's tests, as a host shares it across
// plugins, so each module compiles once.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wapper-runtime-test")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newEnv(t *testing.T) *env { return newEnvB(t) }

func newEnvB(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	logs := &syncBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	metrics := runtime.NewMetrics(nil)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: cacheDir, Logger: logger, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		eng.Close(context.Background())
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	return &env{t: t, eng: eng, metrics: metrics, db: db, logs: logs}
}

func (e *env) load(name, path string, mod func(*runtime.Config)) *runtime.Plugin {
	e.t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	store, err := kv.Open(e.db, name, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := runtime.Config{Name: name, Wasm: wasm, KV: store}
	if mod != nil {
		mod(&cfg)
	}
	p, err := e.eng.Load(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("load %s: %v", name, err)
	}
	e.t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func prop(h uint32, name, typ, access, visitor string) abi.Property {
	return abi.Property{Handle: h, Name: name, Type: typ, AccessMode: access, Visitor: json.RawMessage(visitor)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestVirtualRoundTrip(t *testing.T) {
	e := newEnv(t)
	p := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	c := ctx(t)
	dev := abi.Device{ID: 1, Namespace: "default", Name: "sim", Protocol: "virtual", Properties: []abi.Property{
		prop(0, "count", "INT", "ReadOnly", `{"kind":"counter","step":2}`),
		prop(1, "switch", "BOOLEAN", "ReadWrite", `{"kind":"switch"}`),
		prop(2, "setpoint", "DOUBLE", "ReadWrite", `{"kind":"setpoint","initial":20.5}`),
		prop(3, "wave", "FLOAT", "ReadOnly", `{"kind":"sine","amplitude":10,"offset":50}`),
		prop(4, "label", "STRING", "ReadWrite", `{"kind":"setpoint","initial":"hello"}`),
	}}
	if err := p.AddDevice(c, dev); err != nil {
		t.Fatal(err)
	}
	v1, err := p.Read(c, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := p.Read(c, 1, 0)
	if v1.Type() != abi.TypeInt || v2.Int() != v1.Int()+2 {
		t.Fatalf("counter: %#v then %#v, want +2", v1, v2)
	}
	if v, err := p.Read(c, 1, 2); err != nil || v.Double() != 20.5 {
		t.Fatalf("initial setpoint = %#v, %v", v, err)
	}
	if err := p.Write(c, 1, 1, abi.Bool(true)); err != nil {
		t.Fatal(err)
	}
	// Written through one instance, read through any: state is in kv.
	for range 4 {
		if v, err := p.Read(c, 1, 1); err != nil || !v.Bool() {
			t.Fatalf("switch after write = %#v, %v", v, err)
		}
	}
	// The host converts a written value to the declared type.
	if err := p.Write(c, 1, 2, abi.String("42.25")); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Read(c, 1, 2); v.Type() != abi.TypeDouble || v.Double() != 42.25 {
		t.Fatalf("setpoint = %#v", v)
	}
	if err := p.Write(c, 1, 4, abi.String("héllo wörld")); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Read(c, 1, 4); v.Str() != "héllo wörld" {
		t.Fatalf("label = %#v", v)
	}
	if v, _ := p.Read(c, 1, 3); v.Type() != abi.TypeFloat || v.Double() < 40 || v.Double() > 60 {
		t.Fatalf("sine = %#v", v)
	}
	// Refusals carry codes.
	if err := p.Write(c, 1, 0, abi.Int(1)); abi.CodeOf(err) != abi.ErrReadOnly {
		t.Fatalf("write read-only: %v", err)
	}
	if err := p.Write(c, 1, 2, abi.String("warm")); abi.CodeOf(err) != abi.ErrInvalid {
		t.Fatalf("write bad number: %v", err)
	}
	if _, err := p.Read(c, 1, 99); abi.CodeOf(err) != abi.ErrNotFound {
		t.Fatalf("read unknown property: %v", err)
	}
	if _, err := p.Read(c, 7, 0); abi.CodeOf(err) != abi.ErrNotFound {
		t.Fatalf("read unknown device: %v", err)
	}
	entries, err := p.ReadBatch(c, 1, []uint32{1, 2, 4})
	if err != nil || len(entries) != 3 || !entries[0].Value.Bool() || entries[1].Value.Double() != 42.25 || entries[2].Value.Str() != "héllo wörld" {
		t.Fatalf("batch = %+v, %v", entries, err)
	}
	if st, _, err := p.State(c, 1); err != nil || st != abi.StateOK {
		t.Fatalf("state = %v, %v", st, err)
	}
	// Update keeps state in kv; remove forgets the device.
	dev.Properties[0].Visitor = json.RawMessage(`{"kind":"counter","step":10}`)
	if err := p.UpdateDevice(c, dev); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Read(c, 1, 0); v.Int() != v2.Int()+10 {
		t.Fatalf("counter after update = %#v, want %d", v, v2.Int()+10)
	}
	if err := p.RemoveDevice(c, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(c, 1, 0); abi.CodeOf(err) != abi.ErrNotFound {
		t.Fatalf("read removed device: %v", err)
	}
}

func TestAddDeviceRefusedByPlugin(t *testing.T) {
	e := newEnv(t)
	p := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	err := p.AddDevice(ctx(t), abi.Device{ID: 3, Name: "bad", Properties: []abi.Property{
		prop(0, "x", "INT", "ReadOnly", `{"kind":"teleporter"}`),
	}})
	if abi.CodeOf(err) != abi.ErrInvalid || !strings.Contains(err.Error(), `unknown kind "teleporter"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := p.Read(ctx(t), 3, 0); abi.CodeOf(err) != abi.ErrNotFound {
		t.Fatalf("refused device is kept: %v", err)
	}
}

func TestLoaderRefusals(t *testing.T) {
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(testenv.TestPlugin(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		wasm []byte
		want []string
	}{
		{"not wasm", []byte("#!/bin/sh\necho hi\n"), []string{"not a WebAssembly module"}},
		{"truncated", virtual[:len(virtual)/2], []string{"invalid or truncated module"}},
		{"no marker", read("nomarker"), []string{"no wapper ABI marker (wapper_abi_v1)"}},
		{"abi v2", read("abiv2"), []string{"ABI major 2 is not supported"}},
		{"missing exports", read("partial"), []string{
			"missing required export wapper_alloc(i32) -> (i32)",
			"export wapper_read has signature (i32) -> (i32), want (i32, i32) -> (i64)",
		}},
		{"unknown import", read("badimport"), []string{"imports wapper.teleport, which this host does not provide"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runtime.Check(context.Background(), tc.wasm)
			var refused *runtime.RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("Check = %v, want a refusal", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			e := newEnv(t)
			if _, err := e.eng.Load(context.Background(), runtime.Config{Name: "x", Wasm: tc.wasm}); !errors.As(err, &refused) {
				t.Fatalf("Load = %v, want a refusal", err)
			}
		})
	}
	info, err := runtime.Check(context.Background(), virtual)
	if err != nil {
		t.Fatalf("virtual refused: %v", err)
	}
	if info.ABIMajor != 1 || !info.Has(abi.ExportReadBatch) || !info.Has(abi.ExportPoll) {
		t.Fatalf("info = %+v", info)
	}
}

func TestMemoryLimitBelowModuleMinimum(t *testing.T) {
	e := newEnv(t)
	wasm, _ := os.ReadFile(testenv.Plugin(t, "virtual"))
	_, err := e.eng.Load(context.Background(), runtime.Config{Name: "tiny", Wasm: wasm, MemoryMiB: 1})
	if err == nil || !strings.Contains(err.Error(), "initial memory is larger than limits.memoryMiB allows") {
		t.Fatalf("err = %v", err)
	}
}

// TestOnLoadBracketsEachLoad: EngineOptions.OnLoad is called as each
// load starts and its done func once the load ends, loaded or refused.
func TestOnLoadBracketsEachLoad(t *testing.T) {
	var mu sync.Mutex
	var started, done int
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: cacheDir, Logger: slog.New(slog.DiscardHandler),
		OnLoad: func() func() {
			mu.Lock()
			started++
			mu.Unlock()
			return func() {
				mu.Lock()
				done++
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return started, done
	}
	wasm, _ := os.ReadFile(testenv.Plugin(t, "virtual"))
	p, err := eng.Load(context.Background(), runtime.Config{Name: "virtual", Wasm: wasm})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if s, d := count(); s != 1 || d != 1 {
		t.Fatalf("after a load: OnLoad called %d times, done %d; want 1, 1", s, d)
	}
	if _, err := eng.Load(context.Background(), runtime.Config{Name: "garbage", Wasm: []byte("\x00asm\x01\x00\x00\x00\xff")}); err == nil {
		t.Fatal("garbage module loaded")
	}
	if s, d := count(); s != 2 || d != 2 {
		t.Fatalf("after a refused load: OnLoad called %d times, done %d; want 2, 2", s, d)
	}
}

// TestFaultsAreContained runs each misbehaving read while a healthy device
// of the same plugin and a device of another plugin keep being read. Each
// fault must fail only its own call with its own code, be logged with its
// reason, and the plugin must come back with a new instance that serves the
// device again.
//
// Nothing here depends on the machine's speed: every fault but "loop" ends
// on its own, at once, under a call timeout far longer than it needs (so a
// busy machine cannot turn it into a timeout), and "oom" asks for one chunk
// larger than the whole memory limit, so it fails on its first allocation
// instead of racing the deadline while the heap fills. "loop" ends only by
// its deadline, which is long enough that the neighbours' reads are done
// long before it.
func TestFaultsAreContained(t *testing.T) {
	faults := []struct {
		fault, visitor string
		timeout        time.Duration
		code           abi.Code
		err            string // in the call's error
		log            string // in the host log
	}{
		{"loop", `{"fault":"loop"}`, 20 * time.Second, abi.ErrTimeout, "exceeded its deadline", "reason=timeout"},
		{"trap", `{"fault":"trap"}`, 5 * time.Minute, abi.ErrInternal, "trap", "reason=trap"},
		{"panic", `{"fault":"panic"}`, 5 * time.Minute, abi.ErrPanic, "faulty plugin panics on purpose", "reason=panic"},
		// When memory.grow fails, Go's runtime prints "fatal error: out of
		// memory" to stderr and aborts: a trap (unreachable).
		{"oom", `{"fault":"oom","mb":256}`, 5 * time.Minute, abi.ErrInternal, "trap", "out of memory"},
		{"exit", `{"fault":"exit"}`, 5 * time.Minute, abi.ErrInternal, "exited with code 3", "reason=exit"},
	}
	for _, f := range faults {
		t.Run(f.fault, func(t *testing.T) {
			e := newEnv(t)
			// Bounds a hang only; it outlasts the loop's deadline and a
			// restart on a busy machine.
			c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			faulty := e.load("faulty", testenv.TestPlugin(t, "faulty"), func(cfg *runtime.Config) {
				cfg.CallTimeout = f.timeout
				cfg.MemoryMiB = 48
			})
			virtual := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
			if err := virtual.AddDevice(c, abi.Device{ID: 1, Name: "good", Properties: []abi.Property{
				prop(0, "n", "INT", "ReadOnly", `{"kind":"counter"}`)}}); err != nil {
				t.Fatal(err)
			}
			if err := faulty.AddDevice(c, abi.Device{ID: 1, Name: "bad", Properties: []abi.Property{
				prop(0, "boom", "INT", "ReadOnly", f.visitor),
				prop(1, "ok", "INT", "ReadOnly", `{"fault":"none"}`)}}); err != nil {
				t.Fatal(err)
			}
			if err := faulty.AddDevice(c, abi.Device{ID: 2, Name: "neighbour", Properties: []abi.Property{
				prop(0, "ok", "INT", "ReadOnly", `{"fault":"none"}`)}}); err != nil {
				t.Fatal(err)
			}

			done := make(chan error, 1)
			go func() {
				_, err := faulty.Read(c, 1, 0)
				done <- err
			}()
			// While the fault runs (a loop lasts until the deadline), a
			// neighbour on the same plugin and a device of another plugin are
			// served; the fault's call must not have returned before them
			// for "loop", and must not block them for the others.
			for i := range 5 {
				if _, err := virtual.Read(c, 1, 0); err != nil {
					t.Fatalf("healthy plugin read %d: %v", i, err)
				}
				if _, err := faulty.Read(c, 2, 0); err != nil {
					t.Fatalf("neighbour read %d during the %s: %v", i, f.fault, err)
				}
			}
			if f.fault == "loop" {
				select {
				case err := <-done:
					t.Fatalf("looping read returned before the neighbours were served: %v", err)
				default:
				}
			}
			err := <-done
			if err == nil {
				t.Fatal("faulty read succeeded")
			}
			t.Logf("fault %s: %v", f.fault, err)
			if got := abi.CodeOf(err); got != f.code {
				t.Errorf("error code = %v, want %v (%v)", got, f.code, err)
			}
			if !strings.Contains(err.Error(), f.err) {
				t.Errorf("error %q lacks %q", err, f.err)
			}
			// The plugin recovers: the same device is served again, by a
			// new instance when the old one was thrown away.
			var v abi.Value
			for {
				if v, err = faulty.Read(c, 1, 1); err == nil {
					break
				}
				if c.Err() != nil {
					t.Fatalf("device never served again: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if v.Int() < 1 {
				t.Fatalf("read after recovery = %#v", v)
			}
			for faulty.Restarts() < 1 {
				if c.Err() != nil {
					t.Fatal("no instance restart recorded")
				}
				time.Sleep(20 * time.Millisecond)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "throwing it away") || !strings.Contains(logs, f.log) {
				t.Fatalf("log lacks the failure with %s:\n%s", f.log, logs)
			}
			if _, err := virtual.Read(c, 1, 0); err != nil {
				t.Fatalf("healthy plugin after the fault: %v", err)
			}
		})
	}
}

func TestPluginErrorsKeepInstance(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	p := e.load("faulty", testenv.TestPlugin(t, "faulty"), func(cfg *runtime.Config) { cfg.Instances = 1 })
	if err := p.AddDevice(c, abi.Device{ID: 5, Name: "d", Properties: []abi.Property{
		prop(0, "err", "INT", "ReadOnly", `{"fault":"error"}`),
		prop(1, "bad", "INT", "ReadOnly", `{"fault":"badvalue"}`),
		prop(2, "ok", "INT", "ReadOnly", `{"fault":"none"}`),
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := p.Read(c, 5, 0)
	var ae *abi.Error
	if !errors.As(err, &ae) || ae.Code != abi.ErrDeviceFailed || ae.Message != "device said no" {
		t.Fatalf("err = %#v", err)
	}
	if _, err := p.Read(c, 5, 1); abi.CodeOf(err) != abi.ErrInvalid || !strings.Contains(err.Error(), "is INT but the plugin returned STRING") {
		t.Fatalf("bad value: %v", err)
	}
	entries, err := p.ReadBatch(c, 5, []uint32{0, 1, 2})
	if err != nil || abi.CodeOf(entries[0].Err) != abi.ErrDeviceFailed || abi.CodeOf(entries[1].Err) != abi.ErrInvalid || entries[2].Err != nil {
		t.Fatalf("batch = %+v, %v", entries, err)
	}
	if p.Restarts() != 0 {
		t.Fatalf("an error result restarted the instance")
	}
}

func TestStatePersistsAcrossReload(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	dev := abi.Device{ID: 1, Name: "sim", Properties: []abi.Property{prop(0, "sp", "INT", "ReadWrite", `{"kind":"setpoint"}`)}}
	p := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	if err := p.AddDevice(c, dev); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(c, 1, 0, abi.Int(77)); err != nil {
		t.Fatal(err)
	}
	p.Close(c)
	p = e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	if err := p.AddDevice(c, dev); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Read(c, 1, 0); err != nil || v.Int() != 77 {
		t.Fatalf("after reload = %#v, %v", v, err)
	}
}
