package runtime_test

// The limits of abi/SPEC.md §9 and §10, each through the real host runtime
// and the real test plugins: the 4 MiB boundary buffer, the 8 KiB log
// line, the kv key, value and store limits, WASI with nothing in it, the
// restart backoff, and a device's preference for the instance that served
// it last. No assertion depends on the machine's speed: call timeouts are
// far longer than any call here needs (they only bound a hang), and the
// tests that need an instance busy hold it until they release it.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// limHang bounds a call or a wait that should end at once: only a hang
// reaches it.
const limHang = 5 * time.Minute

// logRec is one host log record.
type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]slog.Value
}

// logStore keeps every record its handlers see.
type logStore struct {
	mu   sync.Mutex
	recs []logRec
}

func (s *logStore) all() []logRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs)
}

// summary is the log for a failure message, long lines cut.
func (s *logStore) summary() string {
	var b strings.Builder
	for _, r := range s.all() {
		msg := r.msg
		if len(msg) > 120 {
			msg = fmt.Sprintf("%s... (%d bytes)", msg[:120], len(msg))
		}
		fmt.Fprintf(&b, "%s %s", r.level, msg)
		for k, v := range r.attrs {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// recHandler is a slog.Handler that records into a logStore.
type recHandler struct {
	s     *logStore
	attrs []slog.Attr
}

func (recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{level: r.Level, msg: r.Message, attrs: map[string]slog.Value{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.Resolve()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Resolve()
		return true
	})
	h.s.mu.Lock()
	h.s.recs = append(h.s.recs, rec)
	h.s.mu.Unlock()
	return nil
}

func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{s: h.s, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h recHandler) WithGroup(string) slog.Handler { return h }

// limEnv is an engine whose log is recorded, and a bbolt database for the
// plugins' kv stores.
type limEnv struct {
	t    *testing.T
	eng  *runtime.Engine
	db   *bolt.DB
	logs *logStore
	ctx  context.Context
}

func newLimEnv(t *testing.T) *limEnv {
	t.Helper()
	logs := &logStore{}
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: cacheDir, Logger: slog.New(recHandler{s: logs})})
	if err != nil {
		t.Fatal(err)
	}
	// NoSync: the store's limits are the subject, not its durability.
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), limHang)
	t.Cleanup(func() {
		cancel()
		db.Close()
		eng.Close(context.Background())
		if t.Failed() {
			t.Logf("host log:\n%s", logs.summary())
		}
	})
	return &limEnv{t: t, eng: eng, db: db, logs: logs, ctx: c}
}

// load loads a test plugin (bin/testplugins) with a real kv store, a call
// timeout that only bounds a hang, and cfg changed by mod.
func (e *limEnv) load(name string, mod func(*runtime.Config)) (*runtime.Plugin, *kv.Store) {
	e.t.Helper()
	wasm, err := os.ReadFile(testenv.TestPlugin(e.t, name))
	if err != nil {
		e.t.Fatal(err)
	}
	store, err := kv.Open(e.db, name, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := runtime.Config{Name: name, Wasm: wasm, KV: store, CallTimeout: limHang}
	if mod != nil {
		mod(&cfg)
	}
	p, err := e.eng.Load(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("load %s: %v", name, err)
	}
	e.t.Cleanup(func() { p.Close(context.Background()) })
	return p, store
}

func (e *limEnv) add(p *runtime.Plugin, d abi.Device) {
	e.t.Helper()
	if err := p.AddDevice(e.ctx, d); err != nil {
		e.t.Fatalf("add device %s: %v", d.Name, err)
	}
}

// wantCode fails the test unless err has code c.
func wantCode(t *testing.T, what string, err error, c abi.Code) {
	t.Helper()
	if got := abi.CodeOf(err); got != c {
		t.Fatalf("%s: code %v (%v), want %v", what, got, err, c)
	}
}

// TestBoundaryBufferLimit: every buffer across the boundary may be
// abi.MaxMessage (4 MiB) long, and not one byte more (SPEC §10): arguments
// (a written value, a method request, a device description), results (a
// read, a method result) and the handles of a batch read (4096).
func TestBoundaryBufferLimit(t *testing.T) {
	e := newLimEnv(t)
	p, _ := e.load("conformance", func(c *runtime.Config) { c.MemoryMiB = 256 })
	c := e.ctx
	e.add(p, abi.Device{ID: 1, Name: "buf", Properties: []abi.Property{
		prop(0, "s", "STRING", "ReadWrite", `{"kind":"echo"}`)}})
	str := func(n int) abi.Value { return abi.String(strings.Repeat("s", n)) }

	// A written value: its encoding (type byte + payload) is the argument.
	if err := p.Write(c, 1, 0, str(abi.MaxMessage-1)); err != nil {
		t.Fatalf("write of a %d-byte argument (the limit): %v", abi.MaxMessage, err)
	}
	wantCode(t, "write of an argument one byte over", p.Write(c, 1, 0, str(abi.MaxMessage)), abi.ErrTooLarge)
	// The read result holds a status byte too: the value written last (at
	// the argument limit) cannot come back, one byte shorter can.
	_, err := p.Read(c, 1, 0)
	wantCode(t, "read of a result one byte over", err, abi.ErrTooLarge)
	if err := p.Write(c, 1, 0, str(abi.MaxMessage-2)); err != nil {
		t.Fatal(err)
	}
	v, err := p.Read(c, 1, 0)
	if err != nil || v.Str() != str(abi.MaxMessage-2).Str() {
		t.Fatalf("read of a %d-byte result (the limit): %d bytes, %v", abi.MaxMessage, len(v.Str()), err)
	}

	// A method request: {"method":"echo","args":ARGS}, ARGS a JSON string.
	reqLen := func(args []byte) int {
		b, err := json.Marshal(abi.MethodRequest{Method: "echo", Args: args})
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	args := []byte(`""`)
	args = []byte(`"` + strings.Repeat("a", abi.MaxMessage-reqLen(args)) + `"`)
	if n := reqLen(args); n != abi.MaxMessage {
		t.Fatalf("request of %d bytes", n)
	}
	out, err := p.CallMethod(c, 1, "echo", args)
	if err != nil || string(out) != string(args) {
		t.Fatalf("method with a %d-byte request (the limit): %d bytes back, %v", abi.MaxMessage, len(out), err)
	}
	args = append(args[:1], append([]byte("a"), args[1:]...)...)
	_, err = p.CallMethod(c, 1, "echo", args)
	wantCode(t, "method with a request one byte over", err, abi.ErrTooLarge)

	// A device description, padded through its model name.
	desc := abi.Device{ID: 2, Name: "big", Properties: []abi.Property{prop(0, "s", "STRING", "ReadWrite", `{"kind":"echo"}`)}}
	desc.Model = "m"
	raw, err := json.Marshal(desc)
	if err != nil {
		t.Fatal(err)
	}
	desc.Model = strings.Repeat("m", abi.MaxMessage-len(raw)+1)
	if raw, _ := json.Marshal(desc); len(raw) != abi.MaxMessage {
		t.Fatalf("description of %d bytes", len(raw))
	}
	if err := p.AddDevice(c, desc); err != nil {
		t.Fatalf("add with a %d-byte description (the limit): %v", abi.MaxMessage, err)
	}
	desc.ID, desc.Model = 3, desc.Model+"m"
	wantCode(t, "add with a description one byte over", p.AddDevice(c, desc), abi.ErrTooLarge)
	if _, err := p.Read(c, 3, 0); abi.CodeOf(err) != abi.ErrNotFound {
		t.Fatalf("a device refused as too large is kept: %v", err)
	}

	// A batch read: 4096 handles, not 4097 (of a short value: 4096 copies
	// of a 4 MiB one would not fit any result).
	if err := p.Write(c, 1, 0, abi.String("s")); err != nil {
		t.Fatal(err)
	}
	handles := make([]uint32, abi.MaxBatch)
	entries, err := p.ReadBatch(c, 1, handles)
	if err != nil || len(entries) != abi.MaxBatch || entries[abi.MaxBatch-1].Err != nil {
		t.Fatalf("batch of %d handles (the limit): %d entries, %v", abi.MaxBatch, len(entries), err)
	}
	_, err = p.ReadBatch(c, 1, append(handles, 0))
	wantCode(t, "batch of one handle over", err, abi.ErrTooLarge)
	if p.Restarts() != 0 {
		t.Fatalf("%d restarts: a refused buffer must not cost the instance", p.Restarts())
	}

	// A result the host itself must refuse: the faulty plugin's method
	// blob returns N bytes, and its SDK does not check method results.
	f, _ := e.load("faulty", func(c *runtime.Config) { c.MemoryMiB = 256 })
	e.add(f, abi.Device{ID: 1, Name: "f", Properties: []abi.Property{prop(0, "n", "INT", "ReadOnly", `{"fault":"none"}`)}})
	out, err = f.CallMethod(c, 1, "blob", json.RawMessage(fmt.Sprintf(`{"n":%d}`, abi.MaxMessage-1)))
	if err != nil || len(out) != abi.MaxMessage-1 {
		t.Fatalf("method result of %d bytes (the limit with its status byte): %d bytes, %v", abi.MaxMessage, len(out), err)
	}
	_, err = f.CallMethod(c, 1, "blob", json.RawMessage(fmt.Sprintf(`{"n":%d}`, abi.MaxMessage)))
	wantCode(t, "method result one byte over", err, abi.ErrTooLarge)
	if _, err := f.Read(c, 1, 0); err != nil {
		t.Fatalf("read after an oversized result: %v", err)
	}
}

// TestLogLineLimit: a line a plugin logs, through the log host function or
// on stdout, is cut at abi.MaxLogMessage (8 KiB): a line of exactly 8 KiB
// is logged whole, a longer one as its first 8 KiB (not dropped, not split
// into more lines), and a 1 MiB line neither crashes nor costs the
// instance. (The lines here stay under the plugin's log rate burst.)
func TestLogLineLimit(t *testing.T) {
	e := newLimEnv(t)
	p, _ := e.load("faulty", nil)
	line := func(n int) string { return "line:" + strings.Repeat("x", n-5) } // as the plugin makes it
	sizes := []int{abi.MaxLogMessage, abi.MaxLogMessage + 1, 1 << 20}
	var props []abi.Property
	for _, fault := range []string{"log", "stdout"} {
		for _, n := range sizes {
			props = append(props, prop(uint32(len(props)), fmt.Sprint(fault, n), "INT", "ReadOnly", fmt.Sprintf(`{"fault":%q,"n":%d}`, fault, n)))
		}
	}
	e.add(p, abi.Device{ID: 1, Name: "logger", Properties: props})
	logged := func() []string {
		var out []string
		for _, r := range e.logs.all() {
			if strings.HasPrefix(r.msg, "line:") || r.attrs["stream"].String() == "stdout" {
				out = append(out, r.msg)
			}
		}
		return out
	}
	for h, pr := range props {
		n := sizes[h%len(sizes)]
		if _, err := p.Read(e.ctx, 1, uint32(h)); err != nil {
			t.Fatalf("read that logs %d bytes (%s): %v", n, pr.Name, err)
		}
		lines := logged()
		if len(lines) != h+1 {
			t.Fatalf("after a line of %d bytes (%s), %d lines in the log, want %d", n, pr.Name, len(lines), h+1)
		}
		want := line(n)[:min(n, abi.MaxLogMessage)]
		if got := lines[h]; got != want {
			t.Fatalf("line of %d bytes (%s) logged as %d bytes, want its first %d", n, pr.Name, len(got), len(want))
		}
	}
	if p.Restarts() != 0 {
		t.Fatalf("logging cost %d instances", p.Restarts())
	}
}

// TestKVLimits: through kv_set and kv_get, a key may be 512 bytes, a value
// 1 MiB, and a plugin's store 64 MiB of keys and values (SPEC §6.3, §10);
// one byte more is refused with code 9, and the plugin keeps running.
func TestKVLimits(t *testing.T) {
	e := newLimEnv(t)
	p, store := e.load("conformance", func(c *runtime.Config) { c.MemoryMiB = 128 })
	c := e.ctx
	key := func(n int) string { return strings.Repeat("k", n) }
	const fills = 70
	props := []abi.Property{
		prop(0, "key512", "STRING", "ReadWrite", fmt.Sprintf(`{"kind":"kv","key":%q}`, key(abi.MaxKVKey))),
		prop(1, "key513", "STRING", "ReadWrite", fmt.Sprintf(`{"kind":"kv","key":%q}`, key(abi.MaxKVKey+1))),
		prop(2, "value", "STRING", "ReadWrite", `{"kind":"kv","key":"value"}`),
	}
	for i := range fills {
		props = append(props, prop(uint32(10+i), fmt.Sprint("fill", i), "STRING", "ReadWrite", fmt.Sprintf(`{"kind":"kv","key":"fill/%02d"}`, i)))
	}
	e.add(p, abi.Device{ID: 1, Name: "kv", Properties: props})

	// Keys.
	if err := p.Write(c, 1, 0, abi.String("v")); err != nil {
		t.Fatalf("kv_set with a %d-byte key (the limit): %v", abi.MaxKVKey, err)
	}
	if v, err := p.Read(c, 1, 0); err != nil || v.Str() != "v" {
		t.Fatalf("kv_get with a %d-byte key: %#v, %v", abi.MaxKVKey, v, err)
	}
	wantCode(t, "kv_set with a key one byte over", p.Write(c, 1, 1, abi.String("v")), abi.ErrTooLarge)
	if _, err := p.Read(c, 1, 1); err == nil {
		t.Fatal("kv_get with a key one byte over succeeded")
	}

	// Values: the conformance plugin stores the encoded value (a type byte
	// and the string).
	if err := p.Write(c, 1, 2, abi.String(strings.Repeat("v", abi.MaxKVValue-1))); err != nil {
		t.Fatalf("kv_set of a %d-byte value (the limit): %v", abi.MaxKVValue, err)
	}
	if v, err := p.Read(c, 1, 2); err != nil || len(v.Str()) != abi.MaxKVValue-1 {
		t.Fatalf("kv_get of a %d-byte value: %d bytes, %v", abi.MaxKVValue, len(v.Str()), err)
	}
	wantCode(t, "kv_set of a value one byte over", p.Write(c, 1, 2, abi.String(strings.Repeat("v", abi.MaxKVValue))), abi.ErrTooLarge)

	// The store: fill it to exactly abi.MaxKVBytes with whole values, then
	// a last one that fits to the byte.
	const fillKey = len("fill/00")
	i := 0
	for ; abi.MaxKVBytes-store.Size() >= int64(fillKey+abi.MaxKVValue); i++ {
		if i == fills {
			t.Fatalf("%d values of 1 MiB did not fill the store (%d bytes)", fills, store.Size())
		}
		if err := p.Write(c, 1, uint32(10+i), abi.String(strings.Repeat("f", abi.MaxKVValue-1))); err != nil {
			t.Fatalf("fill value %d (store at %d bytes): %v", i, store.Size(), err)
		}
	}
	last := int(abi.MaxKVBytes - store.Size() - int64(fillKey)) // encoded length of the last value
	if err := p.Write(c, 1, uint32(10+i), abi.String(strings.Repeat("f", last-1))); err != nil {
		t.Fatalf("the value that fills the store to its limit: %v", err)
	}
	if store.Size() != abi.MaxKVBytes {
		t.Fatalf("store holds %d bytes, want %d", store.Size(), abi.MaxKVBytes)
	}
	wantCode(t, "kv_set of a new key in a full store", p.Write(c, 1, uint32(10+i+1), abi.String("")), abi.ErrTooLarge)
	wantCode(t, "kv_set that grows a value in a full store", p.Write(c, 1, 0, abi.String("vv")), abi.ErrTooLarge)
	if err := p.Write(c, 1, 0, abi.String("w")); err != nil {
		t.Fatalf("kv_set of a value of the same size in a full store: %v", err)
	}
	// Deleting makes room again.
	if _, err := p.CallMethod(c, 1, "kvDelete", json.RawMessage(`{"key":"fill/00"}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(c, 1, uint32(10+i+1), abi.String("")); err != nil {
		t.Fatalf("kv_set after a delete freed room: %v", err)
	}
	if p.Restarts() != 0 {
		t.Fatalf("kv refusals cost %d instances", p.Restarts())
	}
}

// TestWASIIsEmpty: a Go plugin sees no arguments, no environment and an
// empty stdin, and cannot open, read, create or list any file (SPEC §7).
func TestWASIIsEmpty(t *testing.T) {
	e := newLimEnv(t)
	p, _ := e.load("faulty", nil)
	e.add(p, abi.Device{ID: 1, Name: "wasi", Properties: []abi.Property{prop(0, "wasi", "STRING", "ReadOnly", `{"fault":"wasi"}`)}})
	v, err := p.Read(e.ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		Stdin   int      `json:"stdin"`
		Open    string   `json:"open"`
		Read    string   `json:"read"`
		Create  string   `json:"create"`
		ReadDir string   `json:"readDir"`
	}
	if err := json.Unmarshal([]byte(v.Str()), &got); err != nil {
		t.Fatalf("%s: %v", v.Str(), err)
	}
	t.Logf("the plugin's WASI: %s", v.Str())
	if len(got.Args) != 0 || len(got.Env) != 0 || got.Stdin != 0 {
		t.Errorf("args %q, env %q, %d bytes of stdin: want none", got.Args, got.Env, got.Stdin)
	}
	for what, e := range map[string]string{"open /": got.Open, "read /etc/hostname": got.Read, "create /tmp/wapper-faulty": got.Create, "list .": got.ReadDir} {
		if e == "" {
			t.Errorf("%s succeeded", what)
		}
	}
}

// TestRestartBackoff: instances that fail are restarted after 100 ms,
// doubling with each failure in a row up to 30 s, and back to 100 ms once
// the plugin has gone a minute without failing (SPEC §9). The delays are
// read from the host's log of each restart, not timed; the cap and the
// reset are reached through SetFailuresForTest instead of being waited
// for.
func TestRestartBackoff(t *testing.T) {
	e := newLimEnv(t)
	p, _ := e.load("faulty", func(c *runtime.Config) { c.Instances = 2 })
	// Each failure comes from another device: a device whose calls kill
	// the instance twice in a row is set aside, and this test is about the
	// plugin's restarts.
	for id := uint32(1); id <= 5; id++ {
		e.add(p, abi.Device{ID: id, Name: fmt.Sprintf("crash%d", id), Properties: []abi.Property{
			prop(0, "boom", "INT", "ReadOnly", `{"fault":"panic"}`),
			prop(1, "ok", "INT", "ReadOnly", `{"fault":"none"}`)}})
	}
	delays := func() []time.Duration {
		var out []time.Duration
		for _, r := range e.logs.all() {
			if a, ok := r.attrs["after"]; ok && strings.Contains(r.msg, "restarting") {
				out = append(out, a.Duration())
			}
		}
		return out
	}
	crash := func(dev uint32) {
		t.Helper()
		_, err := p.Read(e.ctx, dev, 0)
		wantCode(t, "panicking read", err, abi.ErrPanic)
	}
	restarted := func(n int64) {
		t.Helper()
		for p.Restarts() < n {
			if e.ctx.Err() != nil {
				t.Fatalf("%d restarts, want %d", p.Restarts(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Failures in a row, each after the previous restart: 100, 200, 400 ms.
	for i := range 3 {
		crash(uint32(i + 1))
		restarted(int64(i + 1))
	}
	// Many failures in a row: capped at 30 s. The other instance serves
	// meanwhile.
	runtime.SetFailuresForTest(p, 20, time.Now())
	crash(4)
	if _, err := p.Read(e.ctx, 1, 1); err != nil {
		t.Fatalf("read while one instance waits 30 s to restart: %v", err)
	}
	// The last failure a minute ago or more: back to 100 ms.
	runtime.SetFailuresForTest(p, 20, time.Now().Add(-61*time.Second))
	crash(5)
	restarted(4)
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 30 * time.Second, 100 * time.Millisecond}
	if got := delays(); !slices.Equal(got, want) {
		t.Fatalf("restart delays %v, want %v", got, want)
	}
	if _, err := p.Read(e.ctx, 1, 1); err != nil {
		t.Fatalf("read after the restarts: %v", err)
	}
}

// TestDevicePrefersLastInstance: calls for a device go to the instance
// that served it last when it is idle, even when another idle instance
// comes first in the pool (SPEC §9), so connections a plugin keeps per
// device stay warm. The faulty plugin's "instance" property tells which
// instance served a read; "hold" keeps an instance busy until the test
// releases it through the plugin's kv store.
func TestDevicePrefersLastInstance(t *testing.T) {
	e := newLimEnv(t)
	p, store := e.load("faulty", func(c *runtime.Config) { c.Instances = 2 })
	who := prop(0, "who", "INT", "ReadOnly", `{"fault":"instance"}`)
	e.add(p, abi.Device{ID: 1, Name: "a", Properties: []abi.Property{who}})
	e.add(p, abi.Device{ID: 2, Name: "b", Properties: []abi.Property{who, prop(1, "hold", "INT", "ReadOnly", `{"fault":"hold","key":"h"}`)}})
	instance := func(dev uint32) int64 {
		t.Helper()
		v, err := p.Read(e.ctx, dev, 0)
		if err != nil {
			t.Fatalf("read which instance serves device %d: %v", dev, err)
		}
		return v.Int()
	}
	// Both devices start on the first instance of the pool.
	first := instance(2)
	if got := instance(1); got != first {
		t.Fatalf("devices added one after the other to an idle pool are on instances %d and %d", got, first)
	}
	// Device b holds the first instance; device a moves to the other.
	held := make(chan error, 1)
	go func() {
		_, err := p.Read(e.ctx, 2, 1)
		held <- err
	}()
	for {
		if _, ok, _ := store.Get([]byte("h/held")); ok {
			break
		}
		if e.ctx.Err() != nil {
			t.Fatal("the hold never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := instance(1)
	if second == first {
		t.Fatalf("device a was served by the held instance %d", first)
	}
	if err := store.Set([]byte("h/release"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("held read: %v", err)
	}
	// Both instances idle: each device goes back to its own.
	for i := range 10 {
		if got := instance(1); got != second {
			t.Fatalf("read %d of device a on instance %d, want %d, which served it last", i, got, second)
		}
		if got := instance(2); got != first {
			t.Fatalf("read %d of device b on instance %d, want %d, which served it last", i, got, first)
		}
	}
}
