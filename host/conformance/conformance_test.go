package conformance_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wapper.dev/wapper/host/conformance"
	"wapper.dev/wapper/internal/testenv"
)

// run runs the suite on a test plugin and reports each case as a subtest.
func run(t *testing.T, plugin string, caseTimeout time.Duration) conformance.Report {
	wasm, err := os.ReadFile(testenv.TestPlugin(t, plugin))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	opts := conformance.Options{CaseTimeout: caseTimeout, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if testenv.Short() {
		opts.Cycles = 20
	}
	rep := conformance.Run(context.Background(), wasm, opts)
	var out strings.Builder
	rep.WriteText(&out)
	t.Logf("%s report:\n%s", plugin, out.String())
	return rep
}

// Both SDK builds pass every case with the same expectations.
func TestSDKBuilds(t *testing.T) {
	for _, plugin := range []string{"conformance", "conformance-rust"} {
		t.Run(plugin, func(t *testing.T) {
			rep := run(t, plugin, 0)
			if len(rep.Results) != len(conformance.Cases()) {
				t.Errorf("%d results for %d cases", len(rep.Results), len(conformance.Cases()))
			}
			for _, r := range rep.Results {
				t.Run(r.Name, func(t *testing.T) {
					for _, f := range r.Failures {
						t.Error(f)
					}
				})
			}
		})
	}
}

// A plugin that is not the conformance plugin fails, and the report says
// which cases and why.
func TestFailsOtherPlugin(t *testing.T) {
	rep := run(t, "faulty", 20*time.Second) // it never restarts in restart/deadline
	if rep.Passed() {
		t.Fatal("the faulty plugin passed the suite")
	}
	failed := map[string]bool{}
	for _, r := range rep.Failed() {
		failed[r.Name] = true
		if len(r.Failures) == 0 {
			t.Errorf("case %s failed without a reason", r.Name)
		}
	}
	for _, name := range []string{"values/round-trip", "poll", "methods"} {
		if !failed[name] {
			t.Errorf("case %s passed on the faulty plugin", name)
		}
	}
}

// Options.Only selects cases by name or group.
func TestOnly(t *testing.T) {
	wasm, err := os.ReadFile(testenv.TestPlugin(t, "conformance-rust"))
	if err != nil {
		t.Fatal(err)
	}
	rep := conformance.Run(context.Background(), wasm, conformance.Options{Only: []string{"values", "state"}})
	var names []string
	for _, r := range rep.Results {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, " "); got != "values/zero values/round-trip values/unknown-type state" {
		t.Fatalf("ran %s", got)
	}
	if !rep.Passed() {
		t.Fatalf("failed: %+v", rep.Failed())
	}
}

// The memory cases catch a plugin that keeps what it should free: the Go
// conformance plugin built with -tags leak hoards every written value and
// removed device.
func TestMemoryCasesCatchLeaks(t *testing.T) {
	wasm, err := os.ReadFile(leakyPlugin(t))
	if err != nil {
		t.Fatal(err)
	}
	rep := conformance.Run(context.Background(), wasm, conformance.Options{Only: []string{"memory", "values"}})
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("leaky plugin:\n%s", text.String())
	for _, r := range rep.Results {
		leaks := r.Name == "memory/values" || r.Name == "memory/devices"
		if r.Passed == leaks {
			t.Errorf("case %s: passed = %v on the leaky plugin\\n%s", r.Name, r.Passed, text.String())
		}
	}
}

var leaky struct {
	sync.Mutex
	path string
}

// leakyPlugin builds the Go conformance plugin with -tags leak once per
// test binary and returns its path.
func leakyPlugin(t *testing.T) string {
	t.Helper()
	leaky.Lock()
	defer leaky.Unlock()
	if leaky.path != "" {
		return leaky.path
	}
	gobin := testenv.Bin(t, "go")
	dir, err := os.MkdirTemp("", "leaky-plugin")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "leaky.wasm")
	cmd := exec.Command(gobin, "build", "-tags", "leak", "-buildmode=c-shared", "-o", out, "./conformance")
	cmd.Dir = filepath.Join(testenv.Root(), "abi/testdata/plugins")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the leaky plugin: %v\n%s", err, b)
	}
	leaky.path = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if leaky.path != "" {
		os.RemoveAll(filepath.Dir(leaky.path))
	}
	os.Exit(code)
}
