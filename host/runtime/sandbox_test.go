package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// hostile is a hand-written plugin: every required export, with the
// attack in the parts a test fills in.
type hostile struct {
	imports    string // more imports
	table      string // table declaration, e.g. "(table 1 funcref)", or data segments
	initialize string // body of _initialize; empty: no _initialize
	read       string // body of wapper_read, which must leave an i64
	memory     string // memory declaration (default 2 pages)
}

func (h hostile) wat() string {
	mem := h.memory
	if mem == "" {
		mem = `(memory (export "memory") 2)`
	}
	init := ""
	if h.initialize != "" {
		init = `(func (export "_initialize") ` + h.initialize + `)`
	}
	read := h.read
	if read == "" {
		read = "i64.const 0"
	}
	return `(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "log" (func $log (param i32 i32 i32)))
  ` + h.imports + `
  ` + mem + `
  ` + h.table + `
  ;; a WASI clock subscription of 10 minutes at 0, its event at 64, nevents at 128
  (func $sleep
    (i64.store (i32.const 0) (i64.const 1))           ;; userdata
    (i32.store8 (i32.const 8) (i32.const 0))          ;; eventtype clock
    (i32.store (i32.const 16) (i32.const 1))          ;; clock id: monotonic
    (i64.store (i32.const 24) (i64.const 600000000000)) ;; timeout: 10 minutes
    (i64.store (i32.const 32) (i64.const 0))          ;; precision
    (i32.store16 (i32.const 40) (i32.const 0))        ;; flags: relative
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
  (func $flood (local $i i32)
    (loop $l
      (call $log (i32.const 1) (i32.const 0) (i32.const 8192))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 20000)))))
  ` + init + `
  (func (export "wapper_abi_v1") (result i32) i32.const 0)
  (func (export "wapper_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "wapper_free") (param i32))
  (func (export "wapper_init") (param i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_add") (param i32 i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_update") (param i32 i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_remove") (param i32) (result i64) i64.const 0)
  (func (export "wapper_read") (param i32 i32) (result i64) ` + read + `)
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_state") (param i32) (result i64) i64.const 0))`
}

// build turns the module into wasm with Debian's wat2wasm (package wabt).
func (h hostile) build(t *testing.T) []byte {
	t.Helper()
	wat2wasm := testenv.Bin(t, "wat2wasm")
	dir := t.TempDir()
	src := filepath.Join(dir, "m.wat")
	if err := os.WriteFile(src, []byte(h.wat()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.wasm")
	if b, err := exec.Command(wat2wasm, "--enable-all", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func (e *env) loadWasm(name string, wasm []byte, timeout time.Duration) (*runtime.Plugin, error) {
	p, err := e.eng.Load(context.Background(), runtime.Config{Name: name, Wasm: wasm, CallTimeout: timeout, Instances: 1})
	if err == nil {
		e.t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, err
}

// waitFor runs f and fails the test if it has not returned after a bound
// far above the deadline under test: the point is that it returns at all.
func waitFor(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); f() }()
	select {
	case <-done:
		t.Logf("%s returned after %v", what, time.Since(start).Round(time.Millisecond))
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s still blocked after 2 minutes", what)
	}
}

// TestTablesAreBounded: a table with no maximum, or one above the host's
// bound, is capped by the loader, so table.grow by 0xFFFFFF00 fails in the
// guest instead of killing the host with an out-of-memory fatal error (as
// it once did in a read, and in _initialize under `wapper plugin inspect`);
// a table that starts above the bound is refused.
func TestTablesAreBounded(t *testing.T) {
	grow := `(if (i32.ne (table.grow 0 (ref.null func) (i32.const 0xFFFFFF00)) (i32.const -1)) (then unreachable))`
	for _, tc := range []struct {
		name, table string
		elements    uint64
	}{
		{"no-max", `(table 1 funcref)`, 1},
		{"huge-max", `(table 1 0xFFFFFFFF funcref)`, runtime.MaxTableElements},
		{"fill", `(table 1 funcref)`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hostile{table: tc.table, initialize: grow, read: grow + " i64.const 0"}
			if tc.name == "fill" {
				// grow by 2^27 then fill: once a 20 s stall of the whole host
				h.read = `(drop (table.grow 0 (ref.null func) (i32.const 0x8000000))) (table.fill 0 (i32.const 0) (ref.null func) (i32.const 0x8000000)) i64.const 0`
			}
			wasm := h.build(t)
			info, err := runtime.Check(context.Background(), wasm)
			if err != nil {
				t.Fatal(err)
			}
			if info.TableMaxElements != tc.elements {
				t.Fatalf("table capped at %d elements, want %d", info.TableMaxElements, tc.elements)
			}
			if _, err := runtime.Verify(context.Background(), wasm); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			e := newEnv(t)
			p, err := e.loadWasm("t", wasm, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AddDevice(ctx(t), abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{}`)}}); err != nil {
				t.Fatal(err)
			}
			_, err = p.Read(ctx(t), 1, 0)
			if tc.name == "fill" {
				if err == nil || !strings.Contains(err.Error(), "trap") {
					t.Fatalf("table.fill out of bounds: %v, want a trap", err)
				}
			} else if err != nil && strings.Contains(err.Error(), "instance thrown away") {
				t.Fatalf("table.grow past the cap succeeded: %v", err)
			}
		})
	}
	t.Run("huge-min", func(t *testing.T) {
		wasm := hostile{table: `(table 2000000 funcref)`}.build(t)
		if _, err := runtime.Check(context.Background(), wasm); err == nil || !strings.Contains(err.Error(), "above the host's bound") {
			t.Fatalf("Check: %v", err)
		}
	})
	t.Run("go-plugin", func(t *testing.T) {
		wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
		if err != nil {
			t.Fatal(err)
		}
		info, err := runtime.Check(context.Background(), wasm)
		if err != nil {
			t.Fatal(err)
		}
		if info.TableMaxElements == 0 || info.TableMaxElements > 100000 {
			t.Fatalf("Go plugin's table capped at %d elements", info.TableMaxElements)
		}
		t.Logf("Go plugin table: %d elements (%d KiB of host memory)", info.TableMaxElements, info.TableMaxElements*8>>10)
	})
	t.Run("counted-in-memory", func(t *testing.T) {
		// 2^20 elements take 8 MiB and the wasm stacks 13 × 2 × 128 KiB
		// (3.25 MiB): an 11 MiB plugin has no room left for linear memory,
		// a 12 MiB one keeps 12 pages.
		table := `(table 1 1048576 funcref)`
		e := newEnv(t)
		wasm := hostile{table: table}.build(t)
		_, err := e.eng.Load(context.Background(), runtime.Config{Name: "t", Wasm: wasm, MemoryMiB: 11, StackKiB: 128})
		if err == nil || !strings.Contains(err.Error(), "tables can take 8192 KiB") {
			t.Fatalf("11 MiB: %v", err)
		}
		p, err := e.eng.Load(context.Background(), runtime.Config{Name: "t", Wasm: wasm, MemoryMiB: 12, StackKiB: 128})
		if err != nil {
			t.Fatalf("12 MiB: %v", err)
		}
		p.Close(context.Background())
		big := hostile{table: table, memory: `(memory (export "memory") 13)`}.build(t)
		_, err = e.eng.Load(context.Background(), runtime.Config{Name: "t", Wasm: big, MemoryMiB: 12, StackKiB: 128})
		if err == nil || !strings.Contains(err.Error(), "once its tables and wasm stacks are counted") {
			t.Fatalf("13 pages in 12 MiB with an 8 MiB table: %v", err)
		}
	})
}

// TestStackIsBounded: unbounded recursion traps at the plugin's stack
// budget, long before wazero's own ceiling of about 84 MB a stack, and the
// plugin keeps serving with a new instance.
func TestStackIsBounded(t *testing.T) {
	h := hostile{read: "(call $rec (i32.const 0)) i64.const 0"}
	h.table = `(func $rec (param i32) (call $rec (i32.add (local.get 0) (i32.const 1))))`
	e := newEnv(t)
	p, err := e.loadWasm("t", h.build(t), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddDevice(ctx(t), abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{}`)}}); err != nil {
		t.Fatal(err)
	}
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	_, err = p.Read(ctx(t), 1, 0)
	goruntime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("endless recursion: %v, want the stack guard's trap", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 16<<20 {
		t.Fatalf("endless recursion allocated %d MiB before it was stopped", grown>>20)
	}
	// The next read runs on a new instance and traps the same way, not
	// earlier: the counter of the old instance went with it.
	if _, err := p.Read(ctx(t), 1, 0); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("second read: %v", err)
	}
}

// TestSleepsEndAtTheDeadline: a WASI sleep of ten minutes ends at the call
// deadline, in a read and in _initialize, for a hand-written module and
// for a Go plugin's time.Sleep.
func TestSleepsEndAtTheDeadline(t *testing.T) {
	dev := abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{"fault":"sleep","ms":600000}`)}}
	t.Run("read", func(t *testing.T) {
		e := newEnv(t)
		p, err := e.loadWasm("t", hostile{read: "call $sleep i64.const 0"}.build(t), 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AddDevice(ctx(t), dev); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "sleeping read", func() {
			if _, err := p.Read(ctx(t), 1, 0); abi.CodeOf(err) != abi.ErrTimeout {
				t.Errorf("read: %v, want a timeout", err)
			}
		})
	})
	t.Run("initialize", func(t *testing.T) {
		e := newEnv(t)
		wasm := hostile{initialize: "call $sleep"}.build(t)
		waitFor(t, "load", func() {
			if _, err := e.loadWasm("t", wasm, 500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "deadline") {
				t.Errorf("load: %v, want a deadline error", err)
			}
		})
	})
	t.Run("initialize-loop", func(t *testing.T) {
		e := newEnv(t)
		wasm := hostile{initialize: "(loop $l (br $l))"}.build(t)
		waitFor(t, "load", func() {
			if _, err := e.loadWasm("t", wasm, 500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "deadline") {
				t.Errorf("load: %v, want a deadline error", err)
			}
		})
	})
	t.Run("go-time.Sleep", func(t *testing.T) {
		e := newEnv(t)
		p := e.load("faulty", testenv.TestPlugin(t, "faulty"), func(c *runtime.Config) { c.CallTimeout = time.Second; c.Instances = 1 })
		if err := p.AddDevice(ctx(t), dev); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "time.Sleep(10*time.Minute) in a Go plugin", func() {
			if _, err := p.Read(ctx(t), 1, 0); abi.CodeOf(err) != abi.ErrTimeout {
				t.Errorf("read: %v, want a timeout", err)
			}
		})
		// The plugin comes back with a new instance.
		waitFor(t, "close", func() { p.Close(context.Background()) })
	})
	t.Run("close-wakes-sleeper", func(t *testing.T) {
		// Closing the plugin while a read sleeps (with a long deadline)
		// ends the sleep: shutdown never waits for a guest's sleep.
		e := newEnv(t)
		p, err := e.loadWasm("t", hostile{read: "call $sleep i64.const 0"}.build(t), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AddDevice(ctx(t), dev); err != nil {
			t.Fatal(err)
		}
		go p.Read(context.Background(), 1, 0)
		time.Sleep(200 * time.Millisecond) // let the read start; the test holds either way
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		waitFor(t, "Close", func() { p.Close(c) })
	})
}

// TestLogFloodIsLimited: a plugin writing 8 KiB log lines as fast as it can
// leaves a bounded log, counts what it dropped and says so once.
func TestLogFloodIsLimited(t *testing.T) {
	e := newEnv(t)
	p, err := e.loadWasm("flood", hostile{read: "call $flood i64.const 0"}.build(t), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddDevice(ctx(t), abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{}`)}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 3 {
		p.Read(ctx(t), 1, 0) // 3 × 20,000 lines of 8 KiB: 480 MiB offered
	}
	p.Close(context.Background())
	elapsed := time.Since(start)
	logged := strings.Count(e.logs.String(), "\n")
	// The limiter lets through its burst plus its rate over the run.
	bound := (64<<10 + int(elapsed.Seconds()+1)*runtime.DefaultLogBytesPerSecond) / 8192
	lines := strings.Count(e.logs.String(), "level=WARN msg=")
	t.Logf("%d log lines (%d warnings) in %v; bound %d", logged, lines, elapsed, bound)
	if lines > bound+10 {
		t.Fatalf("%d plugin lines logged, more than the limit allows (%d)", lines, bound)
	}
	if !strings.Contains(e.logs.String(), "plugin log lines dropped") {
		t.Fatal("no summary of dropped lines")
	}
	if n := testutil.ToFloat64(e.metrics.LogDrops.WithLabelValues("flood")); n == 0 {
		t.Fatal("wapper_plugin_log_lines_dropped_total did not count the dropped lines")
	}
}

// TestGuestTextIsClipped: a plugin's error message or value of 4 MiB does
// not reach the log, the twins and the clients whole.
func TestGuestTextIsClipped(t *testing.T) {
	// An error result: status byte 14 (device failed) and a 3 MiB message.
	read := `(i32.store8 (i32.const 4096) (i32.const 14))
	  (memory.fill (i32.const 4097) (i32.const 65) (i32.const 3145728))
	  (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const 3145729))`
	e := newEnv(t)
	p, err := e.loadWasm("t", hostile{read: read, memory: `(memory (export "memory") 64)`}.build(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddDevice(ctx(t), abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{}`)}}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Read(ctx(t), 1, 0)
	if err == nil || len(err.Error()) > runtime.MaxGuestText+100 || !strings.Contains(err.Error(), "bytes cut") {
		t.Fatalf("read error of %d bytes: %.200v", len(fmt.Sprint(err)), err)
	}
}

// TestTrappingDeviceIsSetAside: a device whose every read kills the
// instance is set aside after each failure, with a growing pause, so the
// neighbours sharing the plugin's one instance keep being served instead of
// waiting for instance restarts.
func TestTrappingDeviceIsSetAside(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	p := e.load("faulty", testenv.TestPlugin(t, "faulty"), func(cfg *runtime.Config) { cfg.Instances = 1; cfg.CallTimeout = time.Minute })
	for id, fault := range map[uint32]string{1: "trap", 2: "none"} {
		if err := p.AddDevice(c, abi.Device{ID: id, Name: fault, Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{"fault":"`+fault+`"}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	setAside := 0
	for i := range 10 {
		_, err := p.Read(c, 1, 0)
		switch {
		case err == nil:
			t.Fatal("trapping read succeeded")
		case strings.Contains(err.Error(), "set aside"):
			if abi.CodeOf(err) != abi.ErrUnavailable {
				t.Fatalf("set-aside read: code %v, want unavailable", abi.CodeOf(err))
			}
			setAside++
		}
		if _, err := p.Read(c, 2, 0); err != nil {
			t.Fatalf("neighbour read %d: %v", i, err)
		}
	}
	if setAside == 0 {
		t.Fatal("the trapping device was never set aside")
	}
	t.Logf("%d of 10 trapping reads set aside; %d instance restarts", setAside, p.Restarts())
}

// TestSecretGetBounds: secret_get with references and destinations outside
// guest memory, or a destination that ends past it, returns -2 and never
// writes out of bounds; a granted secret is copied exactly when it fits,
// and an ungranted one is -7. The module traps (unreachable) on any other
// answer, so a read that returns means every answer was right.
func TestSecretGetBounds(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "s"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"s/k": "abc", "other/k": "no"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// expect calls secret_get and traps unless it returns want.
	expect := func(refPtr, refLen, dst, dstCap string, want int) string {
		return fmt.Sprintf("(if (i32.ne (call $secret (i32.const %s) (i32.const %s) (i32.const %s) (i32.const %s)) (i32.const %d)) (then unreachable))\n",
			refPtr, refLen, dst, dstCap, want)
	}
	const end = 2 * 65536
	read := expect("200000", "3", "0", "0", -2) + // reference outside memory
		expect("2048", "-1", "0", "0", -2) + // reference length of 4 GiB
		expect("2048", "3", "0", "0", 3) + // fits nowhere: only the length
		expect("2048", "3", fmt.Sprint(end-3), "3", 3) + // ends at the last byte
		expect("2048", "3", fmt.Sprint(end-2), "3", -2) + // one byte past the end
		expect("2048", "3", "-1", "3", -2) + // destination at 4 GiB - 1
		expect("2048", "3", "4096", "-1", 3) + // a capacity above memory, a value that fits
		expect("2064", "7", "4096", "16", -7) + // not granted
		`(if (i32.ne (i32.load8_u (i32.const 4098)) (i32.const 99)) (then unreachable)) ;; "c"
		i64.const 0`
	h := hostile{
		imports: `(import "wapper" "secret_get" (func $secret (param i32 i32 i32 i32) (result i32)))`,
		table:   `(data (i32.const 2048) "s/k") (data (i32.const 2064) "other/k")`,
		read:    read,
	}
	e := readChecked(t, h, grant.Set{Secrets: []string{"s"}}, hostio.SecretDir(dir))
	if strings.Contains(e.logs.String(), "abc") {
		t.Error("the secret's value is in the host log")
	}
}

// readChecked loads the hostile module h with grants and secrets, adds a
// device and reads it once; h traps (unreachable) when a host call
// answered wrong, which fails the test.
func readChecked(t *testing.T, h hostile, g grant.Set, secrets hostio.Secrets) *env {
	t.Helper()
	e := newEnv(t)
	cfg := runtime.Config{Name: "t", Wasm: h.build(t), CallTimeout: 5 * time.Second, Instances: 1}
	if err := runtime.WithGrants(&cfg, g); err != nil {
		t.Fatal(err)
	}
	if secrets != nil {
		runtime.SetSecrets(&cfg, secrets)
	}
	p, err := e.eng.Load(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if err := p.AddDevice(ctx(t), abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{}`)}}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Read(ctx(t), 1, 0)
	if abi.CodeOf(err) == abi.ErrPanic || strings.Contains(fmt.Sprint(err), "unreachable") {
		t.Fatalf("a host call answered wrong: %v", err)
	}
	t.Logf("read: %v", err) // the module returns no value
	return e
}

// TestDgramBounds: dgram_* calls with buffers outside guest memory, a
// sender buffer too small for an address, or a handle of another kind,
// are refused with -2 or -3 and never write out of bounds; a bind refused
// by the grants is -7. The module traps on any other answer.
func TestDgramBounds(t *testing.T) {
	expect := func(call string, want int) string {
		return fmt.Sprintf("(if (i32.ne %s (i32.const %d)) (then unreachable))\n", call, want)
	}
	const end = 2 * 65536
	read := `(local.set $h (call $open (i32.const 2048) (i32.const 2)))
		(if (i32.le_s (local.get $h) (i32.const 0)) (then unreachable))` + "\n" +
		expect("(call $recv (local.get $h) (i32.const 4096) (i32.const 16) (i32.const 8192) (i32.const 47) (i32.const 10))", -2) + // sender buffer of 47 bytes
		expect(fmt.Sprintf("(call $recv (local.get $h) (i32.const 4096) (i32.const 16) (i32.const %d) (i32.const 48) (i32.const 10))", end-40), -2) + // it ends past memory
		expect("(call $recv (local.get $h) (i32.const -1) (i32.const 16) (i32.const 8192) (i32.const 48) (i32.const 10))", -2) + // destination at 4 GiB - 1
		expect("(call $recv (local.get $h) (i32.const 4096) (i32.const 16) (i32.const 8192) (i32.const 48) (i32.const 10))", -5) + // nothing to hear
		expect("(call $send (local.get $h) (i32.const 200000) (i32.const 9) (i32.const 0) (i32.const 1) (i32.const 10))", -2) + // address outside memory
		expect("(call $send (local.get $h) (i32.const 2064) (i32.const 14) (i32.const 0) (i32.const -1) (i32.const 10))", -2) + // 4 GiB datagram
		expect("(call $send (i32.const 999) (i32.const 2064) (i32.const 14) (i32.const 0) (i32.const 1) (i32.const 10))", -3) + // unknown handle
		expect("(call $open (i32.const 2080) (i32.const 4))", -7) + // :162 is not granted
		`i64.const 0`
	h := hostile{
		imports: `(import "wapper" "dgram_open" (func $open (param i32 i32) (result i32)))
  (import "wapper" "dgram_send" (func $send (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapper" "dgram_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))`,
		table: `(data (i32.const 2048) ":0") (data (i32.const 2064) "127.0.0.1:9999") (data (i32.const 2080) ":162")`,
		read:  read,
	}
	h.read = "(local $h i32) " + h.read
	readChecked(t, h, grant.Set{Network: []string{"udp://127.0.0.1:*"}}, nil)
}
