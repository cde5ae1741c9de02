package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// TestReadManyVirtual reads properties of several devices of the virtual
// plugin in one call, in an order that mixes devices, with an unknown
// device, an unknown property and a removed device among them: every
// entry comes back in request order, with its value converted to the
// property's type or with its own error, and the plugin is called once
// per chunk of abi.MaxBatch requests.
func TestReadManyVirtual(t *testing.T) {
	e := newEnv(t)
	p := e.load("virtual", testenv.Plugin(t, "virtual"), nil)
	if !p.Info().Has(abi.ExportReadMany) {
		t.Fatalf("virtual plugin does not export %s; rebuild it (make plugins)", abi.ExportReadMany)
	}
	c := ctx(t)
	for id := uint32(1); id <= 3; id++ {
		if err := p.AddDevice(c, abi.Device{ID: id, Namespace: "default", Name: fmt.Sprintf("sim-%d", id), Properties: []abi.Property{
			prop(0, "count", "INT", "ReadOnly", fmt.Sprintf(`{"kind":"counter","step":%d}`, id)),
			prop(1, "level", "DOUBLE", "ReadOnly", `{"kind":"sine","amplitude":0}`),
			prop(2, "label", "STRING", "ReadOnly", `{"kind":"counter"}`),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.RemoveDevice(c, 3); err != nil {
		t.Fatal(err)
	}
	reqs := []runtime.ReadReq{{Device: 1, Handle: 0}, {Device: 2, Handle: 0}, {Device: 1, Handle: 1}, {Device: 9, Handle: 0}, {Device: 2, Handle: 7}, {Device: 3, Handle: 0}, {Device: 2, Handle: 2}, {Device: 1, Handle: 0}}
	out, err := p.ReadMany(c, reqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(reqs) {
		t.Fatalf("%d entries for %d requests", len(out), len(reqs))
	}
	want := []struct {
		v    abi.Value
		code abi.Code
	}{
		{abi.Int(1), abi.OK}, {abi.Int(2), abi.OK}, {abi.Double(0), abi.OK}, {abi.Value{}, abi.ErrNotFound},
		{abi.Value{}, abi.ErrNotFound}, {abi.Value{}, abi.ErrNotFound}, {abi.String("1"), abi.OK}, {abi.Int(2), abi.OK},
	}
	for i, e := range out {
		if abi.CodeOf(e.Err) != want[i].code || !e.Value.Equal(want[i].v) {
			t.Errorf("entry %d (%v): %#v, %v; want %#v, code %d", i, reqs[i], e.Value, e.Err, want[i].v, want[i].code)
		}
	}
	calls := func() float64 {
		return testutil.ToFloat64(e.metrics.Calls.WithLabelValues("virtual", abi.ExportReadMany))
	}
	if n := calls(); n != 1 {
		t.Fatalf("%s called %v times, want 1", abi.ExportReadMany, n)
	}

	// More requests than one call may carry: chunks, in order, reusing out.
	many := make([]runtime.ReadReq, abi.MaxBatch+10)
	for i := range many {
		many[i] = runtime.ReadReq{Device: 1, Handle: 0}
	}
	out, err = p.ReadMany(c, many, out[:0])
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range out {
		if e.Err != nil || e.Value.Int() != int64(i+3) {
			t.Fatalf("entry %d: %#v, %v; want counter %d", i, e.Value, e.Err, i+3)
		}
	}
	if n := calls(); n != 3 {
		t.Fatalf("%s called %v times after %d more requests, want 3", abi.ExportReadMany, n, len(many))
	}
	again, err := p.ReadMany(c, reqs[:2], out)
	if err != nil || len(again) != 2 || &again[0] != &out[0] {
		t.Fatalf("ReadMany did not reuse out: %d entries, %v", len(again), err)
	}
}

// readManyWat is a hand-written plugin whose wapper_read_many answers by
// the device of the first request: 1 a result too short for its entry, 2
// one entry for two requests, 3 an entry claiming 4 GiB, 4 a result over
// the ABI's buffer limit, 6 a whole-call error, 7 a trap, and any other a
// valid INT 7 entry. wapper_read answers INT 7, and traps for device 7;
// so does wapper_device_state, which otherwise answers state 1, "up".
// With withMany false it has no wapper_read_many.
func readManyWat(withMany bool) string {
	many := ""
	if withMany {
		many = `
  (func (export "wapper_read_many") (param $p i32) (param $n i32) (result i64)
    (local $d i32)
    (local.set $d (i32.load (local.get $p)))
    (if (i32.eq (local.get $d) (i32.const 1)) (then (return (i64.const 8796093022211))))
    (if (i32.eq (local.get $d) (i32.const 2)) (then (return (i64.const 9019431321615))))
    (if (i32.eq (local.get $d) (i32.const 3)) (then (return (i64.const 9448928051206))))
    (if (i32.eq (local.get $d) (i32.const 4)) (then (return (i64.const 11166920212480))))
    (if (i32.eq (local.get $d) (i32.const 6)) (then (return (i64.const 10737418240005))))
    (if (i32.eq (local.get $d) (i32.const 7)) (then unreachable))
    (i64.const 9878424780815))`
	}
	return `(module
  (memory (export "memory") 128)
  (data (i32.const 2048) "\00\00\05")
  (data (i32.const 2100) "\00\00\09\00\00\00\01\07\00\00\00\00\00\00\00")
  (data (i32.const 2200) "\00\00\f0\ff\ff\ff")
  (data (i32.const 2300) "\00\00\09\00\00\00\01\07\00\00\00\00\00\00\00")
  (data (i32.const 2400) "\00\01\07\00\00\00\00\00\00\00")
  (data (i32.const 2500) "\0enope")
  (data (i32.const 2600) "\00\01up")
  (func (export "wapper_abi_v1") (result i32) i32.const 1)
  (func (export "wapper_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "wapper_free") (param i32))
  (func (export "wapper_init") (param i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_add") (param i32 i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_update") (param i32 i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_remove") (param i32) (result i64) i64.const 0)
  (func (export "wapper_read") (param $d i32) (param i32) (result i64)
    (if (i32.eq (local.get $d) (i32.const 7)) (then unreachable))
    (i64.const 10307921510410))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) i64.const 0)
  (func (export "wapper_device_state") (param $d i32) (result i64)
    (if (i32.eq (local.get $d) (i32.const 7)) (then unreachable))
    (i64.const 11166914969604))` + many + `)`
}

// buildWat turns a module's text into wasm with Debian's wat2wasm
// (package wabt).
func buildWat(t *testing.T, wat string) []byte {
	t.Helper()
	wat2wasm := testenv.Bin(t, "wat2wasm")
	dir := t.TempDir()
	src, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(src, []byte(wat), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(wat2wasm, "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func loadReadMany(t *testing.T, e *env, withMany bool) *runtime.Plugin {
	t.Helper()
	p, err := e.eng.Load(context.Background(), runtime.Config{Name: "many", Wasm: buildWat(t, readManyWat(withMany)), Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	c := ctx(t)
	for id := uint32(1); id <= 8; id++ {
		if err := p.AddDevice(c, abi.Device{ID: id, Namespace: "default", Name: fmt.Sprintf("d%d", id), Properties: []abi.Property{
			{Handle: 0, Name: "v", Type: "INT", AccessMode: "ReadOnly"},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestReadManyMalformed: a plugin whose wapper_read_many result is
// malformed (too short, the wrong count of entries, an entry claiming
// more bytes than there are) fails the readings it was asked for with a
// clear error, and neither the host nor the instance goes down; a whole
// call error result fails every reading with the plugin's code.
func TestReadManyMalformed(t *testing.T) {
	e := newEnv(t)
	p := loadReadMany(t, e, true)
	c := ctx(t)
	for _, tc := range []struct {
		dev  uint32
		n    int
		code abi.Code
		want string
	}{
		{1, 1, abi.ErrInvalid, "malformed wapper_read_many result for 1 readings: batch result of 2 bytes cannot hold 1 entries"},
		{2, 2, abi.ErrInvalid, "truncated at entry 1 of 2"},
		{3, 1, abi.ErrInvalid, "claims 4294967280 bytes"},
		{6, 2, abi.ErrDeviceFailed, "nope"},
		{5, 1, abi.OK, ""},
	} {
		reqs := make([]runtime.ReadReq, tc.n)
		for i := range reqs {
			reqs[i] = runtime.ReadReq{Device: tc.dev}
		}
		out, err := p.ReadMany(c, reqs, nil)
		if err != nil {
			t.Fatalf("device %d: whole call failed: %v", tc.dev, err)
		}
		for i, en := range out {
			if abi.CodeOf(en.Err) != tc.code || (tc.want != "" && !strings.Contains(en.Err.Error(), tc.want)) {
				t.Errorf("device %d entry %d: %v; want code %d with %q", tc.dev, i, en.Err, tc.code, tc.want)
			}
			if tc.code == abi.OK && en.Value.Int() != 7 {
				t.Errorf("device %d entry %d: %#v, want INT 7", tc.dev, i, en.Value)
			}
		}
	}
	if n := p.Restarts(); n != 0 {
		t.Fatalf("malformed entries restarted the instance %d times", n)
	}
}

// TestReadManyIsolatesTraps: when a wapper_read_many call kills its
// instance (a result over the buffer limit, a trap), the chunk is read
// again device by device, so the devices that read fine still get their
// values and only the culprit's readings fail.
func TestReadManyIsolatesTraps(t *testing.T) {
	e := newEnv(t)
	p := loadReadMany(t, e, true)
	c := ctx(t)
	out, err := p.ReadMany(c, []runtime.ReadReq{{Device: 4, Handle: 0}, {Device: 5, Handle: 0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, en := range out {
		if en.Err != nil || en.Value.Int() != 7 {
			t.Errorf("oversized result, entry %d: %#v, %v", i, en.Value, en.Err)
		}
	}
	out, err = p.ReadMany(c, []runtime.ReadReq{{Device: 7, Handle: 0}, {Device: 5, Handle: 0}, {Device: 8, Handle: 0}}, out)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err == nil || out[1].Err != nil || out[2].Err != nil || out[1].Value.Int() != 7 || out[2].Value.Int() != 7 {
		t.Fatalf("trap: entries %#v", out)
	}
	if !strings.Contains(out[0].Err.Error(), "trap") {
		t.Fatalf("the trapping device's entry says %v", out[0].Err)
	}
	if n := p.Restarts(); n < 1 {
		t.Fatalf("instance restarts %d, want at least 1", n)
	}
}

// TestReadManyFallback: a plugin without wapper_read_many is read with one
// call per device, with the same entries.
func TestReadManyFallback(t *testing.T) {
	e := newEnv(t)
	p := loadReadMany(t, e, false)
	c := ctx(t)
	reqs := []runtime.ReadReq{{Device: 1, Handle: 0}, {Device: 1, Handle: 0}, {Device: 2, Handle: 0}, {Device: 9, Handle: 0}, {Device: 1, Handle: 3}}
	out, err := p.ReadMany(c, reqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, en := range out[:3] {
		if en.Err != nil || en.Value.Int() != 7 {
			t.Errorf("entry %d: %#v, %v", i, en.Value, en.Err)
		}
	}
	if abi.CodeOf(out[3].Err) != abi.ErrNotFound || abi.CodeOf(out[4].Err) != abi.ErrNotFound {
		t.Fatalf("unknown device and property: %v, %v", out[3].Err, out[4].Err)
	}
	if n := testutil.ToFloat64(e.metrics.Calls.WithLabelValues("many", abi.ExportRead)); n != 3 {
		t.Fatalf("wapper_read called %v times, want 3", n)
	}
}

// TestReadManyContext: a call whose context has ended fails as a whole,
// and every entry says so.
func TestReadManyContext(t *testing.T) {
	e := newEnv(t)
	p := loadReadMany(t, e, true)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	// Hold the only instance so that the call has to wait for one.
	hold := make(chan struct{})
	held := make(chan struct{})
	go p.Lend(context.Background(), func(runtime.Lent) error { close(held); <-hold; return nil })
	<-held
	defer close(hold)
	out, err := p.ReadMany(c, []runtime.ReadReq{{Device: 5, Handle: 0}, {Device: 9, Handle: 0}}, nil)
	if err == nil {
		t.Fatal("ReadMany with a cancelled context and no free instance worked")
	}
	if out[0].Err == nil || abi.CodeOf(out[1].Err) != abi.ErrNotFound {
		t.Fatalf("entries %v, %v", out[0].Err, out[1].Err)
	}
}

// benchDevices is how many devices the read benchmarks register, with two
// sine properties each, as issue 14's load does.
const benchDevices = 10000

// BenchmarkReadMany compares reading every property of benchDevices
// virtual devices with one batch read per device and with ReadMany; one op
// is one pass over all devices. Run with -benchmem; ns/reading and
// allocs/reading are per property read. WAPPER_BENCH_VIRTUAL names
// another build of the plugin to compare (an older SDK's), and
// WAPPER_BENCH_DEVICES another device count.
func BenchmarkReadMany(b *testing.B) {
	path := os.Getenv("WAPPER_BENCH_VIRTUAL") // an older build, to compare
	if path == "" {
		path = testenv.Plugin(b, "virtual")
	}
	e := newEnvB(b)
	p := e.load("virtual", path, func(c *runtime.Config) { c.Instances = 1; c.CallTimeout = time.Minute })
	ctx := context.Background()
	benchDevices := benchDevices
	if n, err := strconv.Atoi(os.Getenv("WAPPER_BENCH_DEVICES")); err == nil && n > 0 {
		benchDevices = n
	}
	reqs := make([]runtime.ReadReq, 0, 2*benchDevices)
	for id := uint32(1); id <= uint32(benchDevices); id++ {
		if err := p.AddDevice(ctx, abi.Device{ID: id, Namespace: "bench", Name: fmt.Sprintf("d%d", id), Properties: []abi.Property{
			{Handle: 0, Name: "a", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: []byte(`{"kind":"sine"}`)},
			{Handle: 1, Name: "b", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: []byte(`{"kind":"sine","periodMs":1000}`)},
		}}); err != nil {
			b.Fatal(err)
		}
		reqs = append(reqs, runtime.ReadReq{Device: id, Handle: 0}, runtime.ReadReq{Device: id, Handle: 1})
	}
	perReading := func(b *testing.B, pass func()) {
		pass() // warm: every device known to the instance
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		b.ResetTimer()
		for range b.N {
			pass()
		}
		b.StopTimer()
		goruntime.ReadMemStats(&after)
		n := float64(b.N) * float64(len(reqs))
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/reading")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/reading")
	}
	b.Run("batch-per-device", func(b *testing.B) {
		handles := []uint32{0, 1}
		perReading(b, func() {
			for id := uint32(1); id <= uint32(benchDevices); id++ {
				if _, err := p.ReadBatch(ctx, id, handles); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("many", func(b *testing.B) {
		var out []abi.BatchEntry
		perReading(b, func() {
			var err error
			if out, err = p.ReadMany(ctx, reqs, out); err != nil {
				b.Fatal(err)
			}
			if out[0].Err != nil {
				b.Fatal(out[0].Err)
			}
		})
	})
}
