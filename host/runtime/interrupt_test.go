package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"wapper.dev/wapper/abi"
)

// spinFuncs are module fields for guests that never end by themselves,
// spliced in through hostile's table field. $started logs "spinning" once.
const spinFuncs = `
  (data (i32.const 512) "spinning")
  (func $started (call $log (i32.const 0) (i32.const 512) (i32.const 8)))
  ;; Arithmetic on locals only: no call and no global in the loop body. It
  ;; would end after 2^64 iterations.
  (func $count (result i64) (local $i i64) (local $x i64)
    (local.set $i (i64.const 1))
    (loop $l
      (local.set $x (i64.xor (local.get $x) (i64.mul (local.get $i) (i64.const 0x9e3779b97f4a7c15))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.ne (local.get $i) (i64.const 0))))
    (local.get $x))
  ;; Exponential recursion without a loop: fib(60) makes 3.6e12 calls.
  (func $fib (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (i64.add
        (call $fib (i64.sub (local.get $n) (i64.const 1)))
        (call $fib (i64.sub (local.get $n) (i64.const 2)))))))`

// TestGuestStoppedAtDeadline: a read that loops or recurses forever, in
// every shape the guest's stop checks must catch, ends at the call's
// deadline as a timeout, the instance is thrown away, and the plugin goes
// on serving calls (property 1 returns at once) on a new instance.
// Property 1 returns no value, which the host refuses as malformed; what
// counts is that the call returns.
func TestGuestStoppedAtDeadline(t *testing.T) {
	for _, tc := range []struct{ name, spin string }{
		{"br-self", "(loop $l (br $l))"},
		{"arithmetic-loop", "(drop (call $count))"},
		{"recursion", "(drop (call $fib (i64.const 60)))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := hostile{table: spinFuncs, read: "(if (i32.eqz (local.get 1)) (then " + tc.spin + ")) i64.const 0"}
			p, err := e.loadWasm("spin", h.build(t), 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for id := uint32(1); id <= 2; id++ {
				dev := abi.Device{ID: id, Name: fmt.Sprint("d", id), Properties: []abi.Property{prop(0, "spin", "INT", "ReadOnly", `{}`), prop(1, "quick", "INT", "ReadOnly", `{}`)}}
				if err := p.AddDevice(ctx(t), dev); err != nil {
					t.Fatal(err)
				}
			}
			timeouts := e.metrics.Traps.WithLabelValues("spin", "timeout")
			for i := range 2 {
				waitFor(t, "endless read", func() {
					_, err := p.Read(ctx(t), 1, 0)
					if abi.CodeOf(err) != abi.ErrTimeout || !strings.Contains(err.Error(), "call exceeded its deadline (limits.callTimeout)") {
						t.Errorf("read %d: %v, want the deadline's timeout", i, err)
					}
				})
				if n := testutil.ToFloat64(timeouts); n != float64(i+1) {
					t.Fatalf("after read %d: %v instances thrown away for a timeout, want %d", i, n, i+1)
				}
			}
			// Device 1 is set aside after two kills; device 2 is not.
			if _, err := p.Read(ctx(t), 2, 1); abi.CodeOf(err) == abi.ErrTimeout || abi.CodeOf(err) == abi.ErrUnavailable {
				t.Fatalf("a quick read after the timeouts: %v", err)
			}
			if n := testutil.ToFloat64(e.metrics.Traps.WithLabelValues("spin", "trap")); n != 0 {
				t.Fatalf("%v timeouts were counted as traps", n)
			}
			if logs := e.logs.String(); !strings.Contains(logs, "reason=timeout") {
				t.Fatalf("log lacks reason=timeout:\n%s", logs)
			}
		})
	}
}

// TestStartFunctionStoppedAtDeadline: a wasm start function that never
// ends cannot hold the load: it runs under the instantiation deadline.
func TestStartFunctionStoppedAtDeadline(t *testing.T) {
	e := newEnv(t)
	h := hostile{table: spinFuncs + `
  (func $forever (loop $l (br $l)))
  (start $forever)`}
	wasm := h.build(t)
	waitFor(t, "load", func() {
		if _, err := e.loadWasm("start", wasm, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Errorf("load: %v, want a deadline error", err)
		}
	})
}

// TestCloseStopsSpinningGuest: closing a plugin while a read spins under a
// deadline of an hour stops the guest, and the read ends.
func TestCloseStopsSpinningGuest(t *testing.T) {
	e := newEnv(t)
	h := hostile{table: spinFuncs, read: "(call $started) (loop $l (br $l)) i64.const 0"}
	p, err := e.loadWasm("spin", h.build(t), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddDevice(ctx(t), abi.Device{ID: 1, Name: "d", Properties: []abi.Property{prop(0, "p", "INT", "ReadOnly", `{}`)}}); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := p.Read(context.Background(), 1, 0)
		read <- err
	}()
	early := false
	waitFor(t, "the read to start", func() {
		for !strings.Contains(e.logs.String(), "spinning") {
			select {
			case err := <-read:
				t.Errorf("the read returned before it spun: %v", err)
				early = true
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	if early {
		t.FailNow()
	}
	// A done context: Close stops the running call at once instead of
	// letting it finish first.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	waitFor(t, "Close", func() { p.Close(done) })
	waitFor(t, "the spinning read", func() {
		if err := <-read; abi.CodeOf(err) != abi.ErrUnavailable {
			t.Errorf("read after Close: %v, want a cancelled call", err)
		}
	})
	if logs := e.logs.String(); strings.Contains(logs, "calls still running") {
		t.Fatalf("Close left the call running:\n%s", logs)
	}
}
