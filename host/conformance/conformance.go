// Package conformance is the host-side ABI conformance suite: it loads a
// plugin that implements abi/CONFORMANCE.md through host/runtime and checks,
// case by case, that it speaks abi/SPEC.md the way the host expects.
//
// The same cases, with the same expectations, run against every SDK's build
// of the conformance plugin (bin/testplugins/conformance.wasm from sdk-go,
// bin/testplugins/conformance-rust.wasm from sdk-rust). SDK authors run it
// on their own SDK's build with `wapper plugin conformance FILE.wasm`,
// which first asks [Detect] whether the module is a conformance plugin at
// all.
//
// [RunNeutral] is the other half: plugin-neutral checks that hold for any
// plugin (`wapper plugin test FILE.wasm`), such as clean errors for
// garbage, memory that does not grow over add/read/remove cycles, and the
// author's own device read once.
//
// It covers the required exports, alloc/free discipline (guest memory does
// not grow with the number of calls, buffers are freed, live buffers do not
// overlap), error passing (code and exact message), value round trips for
// every property type, batch read, poll and report, device state, methods,
// the kv store, secrets, TLS and datagram sockets under grants, and
// behaviour after re-instantiation (after a panic, a trap or a deadline the
// instance is replaced and the devices are re-added and served).
package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"wapper.dev/wapper/host/runtime"
)

// Options tune a run; the zero value is the default suite.
type Options struct {
	// Logger receives the runtime's and the plugin's logs (default:
	// discarded; the cases provoke failures on purpose, so the log is
	// noisy).
	Logger *slog.Logger
	// MemoryMiB is the plugin's memory limit (default 64).
	MemoryMiB int
	// CallTimeout bounds each ordinary call (default 10 s).
	CallTimeout time.Duration
	// DeadlineTimeout is the call timeout of the case that makes a call run
	// past its deadline (default 1 s).
	DeadlineTimeout time.Duration
	// CaseTimeout bounds each case (default 2 min).
	CaseTimeout time.Duration
	// Cycles is the number of add/write/remove cycles of the memory cases
	// (default 200).
	Cycles int
	// Only selects cases: a case runs when its name equals or starts with
	// one of these followed by "/" (empty: every case).
	Only []string
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 64
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.DeadlineTimeout == 0 {
		o.DeadlineTimeout = time.Second
	}
	if o.CaseTimeout == 0 {
		o.CaseTimeout = 2 * time.Minute
	}
	if o.Cycles == 0 {
		o.Cycles = 200
	}
}

func (o *Options) selected(name string) bool {
	if len(o.Only) == 0 {
		return true
	}
	for _, s := range o.Only {
		if name == s || strings.HasPrefix(name, s+"/") {
			return true
		}
	}
	return false
}

// Result is the outcome of one case.
type Result struct {
	// Name identifies the case ("values/round-trip").
	Name string
	// Doc says what the case checks.
	Doc string
	// Passed is false when any check failed.
	Passed bool
	// Skipped is set when the check could not run here (Notes say why);
	// a skipped check counts as passed.
	Skipped bool
	// Failures lists what went wrong, in order; Notes what was measured.
	Failures []string
	Notes    []string
	// Duration is the case's run time.
	Duration time.Duration
}

// Report is the outcome of a run.
type Report struct {
	// Module is what the loader learned about the module (nil if it is not
	// a wasm module at all).
	Module *runtime.ModuleInfo
	// Results holds one entry per case run, in suite order.
	Results []Result
	// unit names the entries in the summary line ("cases" when empty).
	unit string
}

// Passed reports whether every case passed (and at least one ran).
func (r Report) Passed() bool {
	for _, c := range r.Results {
		if !c.Passed {
			return false
		}
	}
	return len(r.Results) > 0
}

// Failed returns the cases that failed.
func (r Report) Failed() []Result {
	var out []Result
	for _, c := range r.Results {
		if !c.Passed {
			out = append(out, c)
		}
	}
	return out
}

// WriteText prints the report for a person: one line per case, the
// failures under it, and a summary line.
func (r Report) WriteText(w io.Writer) {
	switch m := r.Module; {
	case m == nil:
	case m.ABIMajor == 0:
		fmt.Fprintf(w, "module: %d bytes, no wapper ABI marker\n", m.Size)
	default:
		opt := strings.Join(m.Optional, ", ")
		if opt == "" {
			opt = "none"
		}
		fmt.Fprintf(w, "module: %d bytes, ABI v%d, optional exports: %s\n", m.Size, m.ABIMajor, opt)
	}
	unit := r.unit
	if unit == "" {
		unit = "cases"
	}
	failed, skipped := 0, 0
	for _, c := range r.Results {
		mark := "PASS"
		switch {
		case !c.Passed:
			mark = "FAIL"
			failed++
		case c.Skipped:
			mark = "SKIP"
			skipped++
		}
		fmt.Fprintf(w, "%s  %-22s %6s  %s\n", mark, c.Name, c.Duration.Round(time.Millisecond), c.Doc)
		for _, f := range c.Failures {
			fmt.Fprintf(w, "        - %s\n", indent(f))
		}
		for _, n := range c.Notes {
			fmt.Fprintf(w, "        · %s\n", indent(n))
		}
	}
	switch {
	case failed == 0 && skipped > 0:
		fmt.Fprintf(w, "ok: %d %s passed, %d skipped\n", len(r.Results)-skipped, unit, skipped)
	case failed == 0 && len(r.Results) > 0:
		fmt.Fprintf(w, "ok: all %d %s passed\n", len(r.Results), unit)
	default:
		fmt.Fprintf(w, "FAILED: %d of %d %s\n", failed, len(r.Results), unit)
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n          ") }

// Case names a case of the suite and says what it checks.
type Case struct {
	Name, Doc string
	run       func(*caseRun)
}

// Cases lists the suite's cases in the order Run runs them.
func Cases() []Case { return append([]Case(nil), suite...) }

// Run runs the suite against a module. It never fails as a whole: a module
// the host refuses fails every case, with the loader's reasons.
func Run(ctx context.Context, wasm []byte, opts Options) Report {
	opts.defaults()
	var rep Report
	eng, err := runtime.NewEngine(runtime.EngineOptions{Logger: opts.Logger})
	if err != nil {
		rep.Results = append(rep.Results, Result{Name: "engine", Failures: []string{err.Error()}})
		return rep
	}
	defer eng.Close(context.Background())
	rep.Module, _ = runtime.Check(ctx, wasm)
	probe := NewProbe()
	for _, c := range suite {
		if !opts.selected(c.Name) {
			continue
		}
		probe.Reset()
		rep.Results = append(rep.Results, runCase(ctx, eng, probe, wasm, &opts, c))
	}
	return rep
}

// caseRun is the state of one running case. Its methods record failures; the
// Fatal kind ends the case.
type caseRun struct {
	ctx     context.Context
	eng     *runtime.Engine
	probe   *Probe
	wasm    []byte
	opts    *Options
	res     *Result
	cleanup []func()
}

// errFatal unwinds a case after a fatal failure.
var errFatal = errors.New("case stopped")

func runCase(ctx context.Context, eng *runtime.Engine, probe *Probe, wasm []byte, opts *Options, c Case) Result {
	res := Result{Name: c.Name, Doc: c.Doc}
	ctx, cancel := context.WithTimeout(ctx, opts.CaseTimeout)
	defer cancel()
	t := &caseRun{ctx: ctx, eng: eng, probe: probe, wasm: wasm, opts: opts, res: &res}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != nil && r != errFatal {
				t.Errorf("suite bug: panic: %v\n%s", r, debug.Stack())
			}
		}()
		c.run(t)
	}()
	for i := len(t.cleanup) - 1; i >= 0; i-- {
		t.cleanup[i]()
	}
	res.Duration = time.Since(start)
	res.Passed = len(res.Failures) == 0
	return res
}

// Errorf records a failure and lets the case go on.
func (t *caseRun) Errorf(format string, args ...any) {
	t.res.Failures = append(t.res.Failures, fmt.Sprintf(format, args...))
}

// Fatalf records a failure and ends the case.
func (t *caseRun) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(errFatal)
}

// Skipf marks the case skipped, saying why, and ends it.
func (t *caseRun) Skipf(format string, args ...any) {
	t.res.Skipped = true
	t.Notef(format, args...)
	panic(errFatal)
}

// Notef records a measurement or remark that is not a failure.
func (t *caseRun) Notef(format string, args ...any) {
	t.res.Notes = append(t.res.Notes, fmt.Sprintf(format, args...))
}
