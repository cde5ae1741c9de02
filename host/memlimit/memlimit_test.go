package memlimit

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSetting(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Setting
		str  string
	}{
		{"auto", Setting{Mode: Auto}, "auto"},
		{"AUTO", Setting{Mode: Auto}, "auto"},
		{"off", Setting{Mode: Off}, "off"},
		{"0", Setting{Mode: Off}, "off"},
		{"512MiB", Setting{Mode: Fixed, Bytes: 512 << 20}, "512MiB"},
		{"1GiB", Setting{Mode: Fixed, Bytes: 1 << 30}, "1GiB"},
		{"2GB", Setting{Mode: Fixed, Bytes: 2e9}, "1953125KiB"},
		{"300000000", Setting{Mode: Fixed, Bytes: 3e8}, "300000000"},
		{"64 KiB", Setting{Mode: Fixed, Bytes: 64 << 10}, "64KiB"},
		{"100B", Setting{Mode: Fixed, Bytes: 100}, "100"},
	} {
		var s Setting
		if err := s.Set(tc.in); err != nil || s != tc.want || s.String() != tc.str {
			t.Errorf("Set(%q) = %+v %q, %v; want %+v %q", tc.in, s, s.String(), err, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "-1", "lots", "12XB", "1.5GiB", "MiB", "99999999999TiB"} {
		var s Setting
		if err := s.Set(bad); err == nil || !strings.Contains(err.Error(), "want auto, off, or a size") {
			t.Errorf("Set(%q) = %+v, %v; want a refusal", bad, s, err)
		}
	}
}

// fake is a runtime whose memory limit the test reads.
type fake struct {
	limit int64
	calls int
}

func (f *fake) set(n int64) int64 {
	old := f.limit
	if n >= 0 {
		f.limit = n
		f.calls++
	}
	return old
}

func TestUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setting string
		env     string
		devices []int // counts seen by successive Updates
		want    []int64
		applied int64 // the runtime's limit at the end
		calls   int
	}{
		{"auto follows the count", "auto", "", []int{0, 10, 10, 3}, []int64{DefaultBase, DefaultBase + 10*DefaultPerDevice, DefaultBase + 10*DefaultPerDevice, DefaultBase + 3*DefaultPerDevice}, DefaultBase + 3*DefaultPerDevice, 3},
		{"fixed", "512MiB", "", []int{0, 1000}, []int64{512 << 20, 512 << 20}, 512 << 20, 1},
		{"off", "off", "", []int{5}, []int64{0}, math.MaxInt64, 1},
		{"GOMEMLIMIT wins", "auto", "300MiB", []int{0, 50}, []int64{300 << 20, 300 << 20}, 300 << 20, 0},
		{"GOMEMLIMIT=off wins", "512MiB", "off", []int{0}, []int64{0}, math.MaxInt64, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fake{limit: math.MaxInt64}
			switch tc.env {
			case "300MiB":
				rt.limit = 300 << 20 // as the runtime set it at start
			}
			var s Setting
			if err := s.Set(tc.setting); err != nil {
				t.Fatal(err)
			}
			var n atomic.Int64
			reg := prometheus.NewRegistry()
			var logs bytes.Buffer
			l, err := New(Options{Setting: s, Devices: func() int { return int(n.Load()) }, Registerer: reg,
				Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
				lookupEnv: func(string) (string, bool) { return tc.env, tc.env != "" }, setMemoryLimit: rt.set})
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range tc.devices {
				n.Store(int64(c))
				if got := l.Update(); got != tc.want[i] {
					t.Errorf("update %d (%d devices): limit %d, want %d", i, c, got, tc.want[i])
				}
				if g := testutil.ToFloat64(l.gauge); g != float64(tc.want[i]) {
					t.Errorf("update %d: gauge %v, want %d", i, g, tc.want[i])
				}
			}
			if rt.limit != tc.applied || rt.calls != tc.calls {
				t.Errorf("runtime limit %d after %d sets, want %d after %d", rt.limit, rt.calls, tc.applied, tc.calls)
			}
			if tc.env != "" && !strings.Contains(logs.String(), "GOMEMLIMIT") {
				t.Errorf("GOMEMLIMIT not logged: %s", logs.String())
			}
			if c, err := testutil.GatherAndCount(reg, "wapper_memory_limit_bytes"); err != nil || c != 1 {
				t.Errorf("gauge registered %d times, %v", c, err)
			}
		})
	}
}

// TestRunFollowsCount: in auto mode Run applies the limit at once and again
// at every tick, and returns nil when ctx ends.
func TestRunFollowsCount(t *testing.T) {
	rt := &fake{limit: math.MaxInt64}
	tick := make(chan time.Time)
	var n atomic.Int64
	l, err := New(Options{Devices: func() int { return int(n.Load()) }, Logger: slog.New(slog.DiscardHandler),
		lookupEnv: func(string) (string, bool) { return "", false }, setMemoryLimit: rt.set, tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	n.Store(100)
	tick <- time.Time{} // the first Update ran before Run read the tick
	tick <- time.Time{} // the Update of the first tick has finished
	if got := testutil.ToFloat64(l.gauge); got != float64(For(100)) {
		t.Fatalf("gauge %v after the count rose to 100, want %d", got, For(100))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rt.limit != For(100) {
		t.Fatalf("runtime limit %d, want %d", rt.limit, For(100))
	}
}

// TestLoosen: while a Loosen is not done the runtime has no limit (the
// gauge says so); loosens nest, a done func counts once, an Update
// meanwhile takes effect when the last is done, and GOMEMLIMIT is never
// lifted.
func TestLoosen(t *testing.T) {
	rt := &fake{limit: math.MaxInt64}
	var n atomic.Int64
	l, err := New(Options{Devices: func() int { return int(n.Load()) }, Logger: slog.New(slog.DiscardHandler),
		lookupEnv: func(string) (string, bool) { return "", false }, setMemoryLimit: rt.set})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, want int64) {
		t.Helper()
		gauge := want
		if want == math.MaxInt64 {
			gauge = 0
		}
		if rt.limit != want || testutil.ToFloat64(l.gauge) != float64(gauge) {
			t.Fatalf("%s: runtime limit %d, gauge %v; want %d", step, rt.limit, testutil.ToFloat64(l.gauge), want)
		}
	}
	early := l.Loosen() // before the first Update: nothing to lift yet
	l.Update()
	check("Update while loosened", math.MaxInt64)
	early()
	check("done", For(0))
	a, b := l.Loosen(), l.Loosen()
	check("two loosens", math.MaxInt64)
	a()
	a()
	check("one done twice, one left", math.MaxInt64)
	n.Store(1000)
	l.Update()
	check("Update while loosened", math.MaxInt64)
	b()
	check("last done", For(1000))

	env := &fake{limit: 300 << 20}
	l, err = New(Options{Devices: func() int { return 0 }, Logger: slog.New(slog.DiscardHandler),
		lookupEnv: func(string) (string, bool) { return "300MiB", true }, setMemoryLimit: env.set})
	if err != nil {
		t.Fatal(err)
	}
	l.Update()
	l.Loosen()()
	if env.limit != 300<<20 || env.calls != 0 {
		t.Fatalf("GOMEMLIMIT changed by Loosen: %d after %d sets", env.limit, env.calls)
	}
}

func TestNewNeedsDevicesInAuto(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("auto mode without Devices accepted")
	}
	if _, err := New(Options{Setting: Setting{Mode: Off}}); err != nil {
		t.Fatal(err)
	}
}
