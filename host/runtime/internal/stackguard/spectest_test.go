package stackguard

import (
	"wapper.dev/wapper/internal/testenv"

	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// wazeroSpecDir returns the WebAssembly 2.0 spec test scripts that ship,
// compiled by wast2json, with the wazero module this repository uses.
func wazeroSpecDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tetratelabs/wazero").Output()
	if err != nil {
		t.Fatalf("find the wazero module: %v (run `go mod download github.com/tetratelabs/wazero`)", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "internal", "integration_test", "spectest", "v2", "testdata")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("wazero's spec tests: %v", err)
	}
	return dir
}

type specScript struct {
	Commands []specCommand `json:"commands"`
}

type specCommand struct {
	Type       string      `json:"type"`
	Line       int         `json:"line"`
	Filename   string      `json:"filename"`
	Name       string      `json:"name"`
	As         string      `json:"as"`
	ModuleType string      `json:"module_type"`
	Action     *specAction `json:"action"`
}

type specAction struct {
	Type   string      `json:"type"`
	Module string      `json:"module"`
	Field  string      `json:"field"`
	Args   []specValue `json:"args"`
}

type specValue struct {
	Type     string          `json:"type"`
	LaneType string          `json:"lane_type"`
	Value    json.RawMessage `json:"value"`
}

func parseUint(s string, bits int) (uint64, error) {
	if u, err := strconv.ParseUint(s, 10, bits); err == nil {
		return u, nil
	}
	i, err := strconv.ParseInt(s, 10, bits)
	return uint64(i) & (math.MaxUint64 >> (64 - bits)), err
}

// words converts a spec test argument to wazero's stack words; ok is false
// for values the differential test does not pass (non-null references).
func (v specValue) words() (w []uint64, ok bool, err error) {
	if v.Type == "v128" {
		var lanes []string
		if err := json.Unmarshal(v.Value, &lanes); err != nil {
			return nil, false, err
		}
		bits := map[string]int{"i8": 8, "i16": 16, "i32": 32, "i64": 64, "f32": 32, "f64": 64}[v.LaneType]
		if bits == 0 || len(lanes)*bits != 128 {
			return nil, false, fmt.Errorf("v128 lanes %s × %d", v.LaneType, len(lanes))
		}
		var lo, hi uint64
		for i, l := range lanes {
			u, err := parseUint(l, bits)
			if err != nil {
				return nil, false, err
			}
			off := i * bits
			if off < 64 {
				lo |= u << off
			} else {
				hi |= u << (off - 64)
			}
		}
		return []uint64{lo, hi}, true, nil
	}
	var s string
	if err := json.Unmarshal(v.Value, &s); err != nil {
		return nil, false, err
	}
	switch v.Type {
	case "i32", "f32":
		u, err := parseUint(s, 32)
		return []uint64{u}, true, err
	case "i64", "f64":
		u, err := parseUint(s, 64)
		return []uint64{u}, true, err
	case "externref", "funcref":
		return []uint64{0}, s == "null", nil
	}
	return nil, false, fmt.Errorf("value type %q", v.Type)
}

// specSide is one of the two runtimes of the differential test.
type specSide struct {
	r       wazero.Runtime
	cur     api.Module
	curBin  []byte
	named   map[string]api.Module
	counter int
	all     []api.Module // every module instantiated, for counterExport
}

// counterExport is the name under which the differential test exports the
// counter of instrumented modules.
const counterExport = "stackguard.counter"

// counters returns the counters of the instrumented modules that are not
// zero, and resets them to zero, as a new instance would start.
func (s *specSide) counters() map[string]uint64 {
	nz := map[string]uint64{}
	for _, m := range s.all {
		if g, ok := m.ExportedGlobal(counterExport).(api.MutableGlobal); ok && g.Get() != 0 {
			nz[m.Name()] = g.Get()
			g.Set(0)
		}
	}
	return nz
}

func newSpecSide(t *testing.T, ctx context.Context, spectest []byte) *specSide {
	s := &specSide{r: wazero.NewRuntime(ctx), named: map[string]api.Module{}}
	t.Cleanup(func() { s.r.Close(context.Background()) })
	if _, err := s.r.InstantiateWithConfig(ctx, spectest, wazero.NewModuleConfig().WithName("spectest")); err != nil {
		t.Fatalf("instantiate spectest: %v", err)
	}
	return s
}

func (s *specSide) instantiate(ctx context.Context, bin []byte, name string) error {
	s.counter++
	if name == "" {
		name = fmt.Sprintf("m%d", s.counter)
	}
	m, err := s.r.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(name))
	s.cur, s.curBin = m, bin
	if err != nil {
		return err
	}
	s.all = append(s.all, m)
	return runStart(ctx, m)
}

// runStart calls the start function Instrument exported, as the host does
// right after instantiation.
func runStart(ctx context.Context, m api.Module) error {
	if f := m.ExportedFunction(StartExport); f != nil {
		if _, err := f.Call(ctx); err != nil {
			return fmt.Errorf("start function: %w", err)
		}
	}
	return nil
}

// invoke runs an action; skip is true when the differential test cannot
// pass its arguments or compare its results.
func (s *specSide) invoke(ctx context.Context, a *specAction) (res []uint64, skip bool, err error) {
	m := s.cur
	if a.Module != "" {
		m = s.named[a.Module]
	}
	if m == nil {
		return nil, true, nil
	}
	switch a.Type {
	case "get":
		g := m.ExportedGlobal(a.Field)
		if g == nil {
			return nil, true, nil
		}
		if g.Type() == api.ValueType(valFuncref) {
			return nil, true, nil
		}
		return []uint64{g.Get()}, false, nil
	case "invoke":
		f := m.ExportedFunction(a.Field)
		if f == nil {
			return nil, true, nil
		}
		if slices.Contains(f.Definition().ResultTypes(), api.ValueType(valFuncref)) {
			return nil, true, nil
		}
		var args []uint64
		for _, v := range a.Args {
			w, ok, err := v.words()
			if err != nil {
				return nil, false, err
			}
			if !ok {
				return nil, true, nil
			}
			args = append(args, w...)
		}
		res, err := f.Call(ctx, args...)
		return res, false, err
	}
	return nil, true, nil
}

// specBudget is the budget of the differential test: 8 MiB of native
// stack, a tenth of wazero's own limit, so that assert_exhaustion traps
// in the guard.
var specBudget = BudgetForBytes(8 << 20)

// TestSpecDifferential runs every WebAssembly 2.0 spec test script that
// wazero ships twice, side by side: once with the original modules and
// once with modules instrumented under specBudget, and checks
// that every action returns the same values or fails the same way. It
// also runs the stack-height analysis in strict mode, which fails on any
// wrong stack effect.
func TestSpecDifferential(t *testing.T) {
	testenv.Slow(t, "the spec test suite takes a while")
	dir := wazeroSpecDir(t)
	scripts, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(scripts) < 100 {
		t.Fatalf("spec test scripts in %s: %d, %v", dir, len(scripts), err)
	}
	spectest, err := os.ReadFile("testdata/spectest.wasm")
	if err != nil {
		t.Fatal(err)
	}
	var modules, actions, skipped int
	for _, script := range scripts {
		name := strings.TrimSuffix(filepath.Base(script), ".json")
		t.Run(name, func(t *testing.T) {
			m, a, s := runSpecScript(t, dir, script, spectest)
			modules, actions, skipped = modules+m, actions+a, skipped+s
		})
	}
	t.Logf("%d scripts, %d modules instrumented, %d actions compared, %d skipped (non-null references)", len(scripts), modules, actions, skipped)
}

func runSpecScript(t *testing.T, dir, script string, spectest []byte) (modules, actions, skipped int) {
	ctx := context.Background()
	raw, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	var sc specScript
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatal(err)
	}
	orig, inst := newSpecSide(t, ctx, spectest), newSpecSide(t, ctx, spectest)
	for _, c := range sc.Commands {
		switch c.Type {
		case "module":
			if c.ModuleType == "text" || !strings.HasSuffix(c.Filename, ".wasm") {
				continue
			}
			bin, err := os.ReadFile(filepath.Join(dir, c.Filename))
			if err != nil {
				t.Fatal(err)
			}
			out, err := instrument(bin, specBudget, options{strict: true, exportCounter: counterExport})
			if err != nil {
				t.Fatalf("line %d: instrument %s: %v", c.Line, c.Filename, err)
			}
			modules++
			e1 := orig.instantiate(ctx, bin, "")
			e2 := inst.instantiate(ctx, out, "")
			if (e1 == nil) != (e2 == nil) {
				t.Fatalf("line %d: instantiate %s: original: %v, instrumented: %v", c.Line, c.Filename, e1, e2)
			}
			if c.Name != "" {
				orig.named[c.Name], inst.named[c.Name] = orig.cur, inst.cur
			}
		case "register":
			for _, s := range []*specSide{orig, inst} {
				m := s.cur
				if c.Name != "" {
					m = s.named[c.Name]
				}
				if m == nil {
					continue
				}
				bin := s.curBin
				rm, err := s.r.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(c.As))
				if err != nil {
					t.Fatalf("line %d: register %s: %v", c.Line, c.As, err)
				}
				s.all = append(s.all, rm)
				if err := runStart(ctx, rm); err != nil {
					t.Fatalf("line %d: register %s: %v", c.Line, c.As, err)
				}
			}
		case "action", "assert_return", "assert_trap", "assert_exhaustion":
			var r1 []uint64
			var skip bool
			var e1 error
			if c.Type == "assert_exhaustion" {
				// The original would grow wazero's stack to its 84 MB
				// ceiling; the spec already says that it fails.
				e1 = errors.New("call stack exhausted")
			} else {
				r1, skip, e1 = orig.invoke(ctx, c.Action)
			}
			if skip {
				skipped++
				continue
			}
			r2, _, e2 := inst.invoke(ctx, c.Action)
			actions++
			// After a trap the host throws the instance away; here the
			// counters are reset instead, so that the script can go on.
			if nz := inst.counters(); e2 == nil && len(nz) > 0 {
				t.Errorf("line %d: %s %s returned but left counters at %v", c.Line, c.Type, c.Action.Field, nz)
			}
			if (e1 == nil) != (e2 == nil) {
				t.Errorf("line %d: %s %s: original: %v, instrumented: %v", c.Line, c.Type, c.Action.Field, e1, e2)
				continue
			}
			if e1 == nil && !slices.Equal(r1, r2) {
				t.Errorf("line %d: %s %s: original returned %v, instrumented %v", c.Line, c.Type, c.Action.Field, r1, r2)
			}
			if c.Type == "assert_exhaustion" && e2 != nil && !strings.Contains(e2.Error(), "unreachable") {
				t.Errorf("line %d: assert_exhaustion %s: the instrumented module failed with %v, not the guard's unreachable", c.Line, c.Action.Field, e2)
			}
			if c.Type == "assert_trap" && e1 == nil {
				t.Errorf("line %d: assert_trap %s did not trap", c.Line, c.Action.Field)
			}
		}
	}
	return modules, actions, skipped
}

// TestSpecBinaries instruments every binary of the spec tests, valid or
// not: Instrument must never panic, must accept every module wazero
// accepts (with the strict stack-height analysis), and its output must
// compile. wazero's interpreter validates modules as its compiler does,
// faster.
func TestSpecBinaries(t *testing.T) {
	testenv.Slow(t, "the spec test suite takes a while")
	ctx := context.Background()
	files, err := filepath.Glob(filepath.Join(wazeroSpecDir(t), "*.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	var valid, refused int
	for _, f := range files {
		bin, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, ierr := instrument(bin, 1000, options{strict: true})
		cm, cerr := r.CompileModule(ctx, bin)
		if cerr != nil {
			refused++
			continue
		}
		cm.Close(ctx)
		valid++
		if ierr != nil {
			t.Errorf("%s: wazero compiles it but Instrument fails: %v", filepath.Base(f), ierr)
			continue
		}
		if cm, err := r.CompileModule(ctx, out); err != nil {
			t.Errorf("%s: the instrumented module does not compile: %v", filepath.Base(f), err)
		} else {
			cm.Close(ctx)
		}
		if hasCode(bin) && bytes.Equal(bin, out) {
			t.Errorf("%s: defines functions but comes out unchanged", filepath.Base(f))
		}
	}
	t.Logf("%d binaries: %d valid and instrumented, %d refused by wazero", len(files), valid, refused)
}

// hasCode reports whether a module defines at least one function.
func hasCode(bin []byte) bool {
	r := reader{b: bin, pos: 8}
	for !r.eof() {
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil {
			return false
		}
		p, err := r.bytes(uint64(size))
		if err != nil {
			return false
		}
		if id == secCode {
			pr := reader{b: p}
			n, _ := pr.u32()
			return n > 0
		}
	}
	return false
}
