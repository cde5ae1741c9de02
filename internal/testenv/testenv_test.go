package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// tb records what the helpers ask of a test, without skipping or failing
// this one. Skipf and Fatalf end the goroutine, as testing's do; run the
// helper with call.
type tb struct {
	testing.TB
	skipped, failed, logged string
}

func (r *tb) Helper()                   {}
func (r *tb) Skipf(f string, a ...any)  { r.skipped = fmt.Sprintf(f, a...); runtime.Goexit() }
func (r *tb) Fatalf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...); runtime.Goexit() }
func (r *tb) Logf(f string, a ...any)   { r.logged = fmt.Sprintf(f, a...) }

// call runs f with a new tb on its own goroutine and returns the tb.
func call(f func(testing.TB)) *tb {
	r := &tb{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestMissingFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := call(func(t testing.TB) { Missing(t, "mosquitto", "run make deps") })
	if r.failed == "" || r.skipped != "" {
		t.Fatalf("under CI=true: failed %q, skipped %q", r.failed, r.skipped)
	}
	t.Setenv("CI", "")
	r = call(func(t testing.TB) { Missing(t, "mosquitto", "run make deps") })
	if r.skipped == "" || r.failed != "" || !strings.Contains(r.skipped, "run make deps") {
		t.Fatalf("outside CI: failed %q, skipped %q", r.failed, r.skipped)
	}
}

func TestOpt(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		t.Setenv("WAPPER_TESTENV_OPT", "")
		r := call(func(t testing.TB) { Opt(t, "WAPPER_TESTENV_OPT", "a measurement") })
		if !strings.Contains(r.skipped, "WAPPER_TESTENV_OPT=1") || !strings.Contains(r.skipped, "a measurement") || r.failed != "" {
			t.Fatalf("CI=%q, variable unset: skipped %q, failed %q", ci, r.skipped, r.failed)
		}
		t.Setenv("WAPPER_TESTENV_OPT", "1")
		r = call(func(t testing.TB) { Opt(t, "WAPPER_TESTENV_OPT", "a measurement") })
		if r.skipped != "" || r.failed != "" {
			t.Fatalf("CI=%q, variable set: skipped %q, failed %q", ci, r.skipped, r.failed)
		}
	}
}

func TestShortNeverUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	if Short() {
		t.Fatal("Short() under CI=true")
	}
	r := call(func(t testing.TB) { Slow(t, "slow") })
	if r.skipped != "" {
		t.Fatalf("Slow skipped under CI=true: %q", r.skipped)
	}
}
