// Package testenv finds the real peers and built artifacts that tests use,
// and decides what happens when one is missing. Every skip in the
// repository's tests goes through it, so that a green `make test` (which
// .ci/run runs with CI=true) means what it says:
//
//   - A missing peer, tool or artifact ([Missing], [Bin], [Artifact]): under
//     CI=true the test fails; elsewhere it is skipped with the command that
//     would provide it.
//   - A slow test ([Slow]) is skipped under -short with the reason, except
//     under CI=true, where -short is ignored and it runs.
//   - An opt-in test ([Opt]), such as a benchmark that prints numbers for
//     `make bench`, measures rather than checks: it runs only when its
//     variable is 1, under CI=true too, and says so when skipped. It must
//     not be the only test of anything.
package testenv

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// CI reports whether tests run under CI=true, where no check is skipped.
func CI() bool { return os.Getenv("CI") == "true" }

// Short reports whether a test should do less work (fewer cycles, say):
// under -short, but never under CI=true.
func Short() bool { return testing.Short() && !CI() }

// Slow skips a slow test under -short, saying why it is slow; under
// CI=true it always runs.
func Slow(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		if CI() {
			t.Logf("-short is ignored under CI=true: %s", why)
			return
		}
		t.Skipf("skipped with -short: %s", why)
	}
}

// Opt runs an opt-in test only when the environment variable env is "1",
// and otherwise skips it with why and how to run it. Opt-in tests are
// measurements (benchmarks for `make bench`), not checks, so they are
// skipped under CI=true as well.
func Opt(t testing.TB, env, why string) {
	t.Helper()
	if os.Getenv(env) != "1" {
		t.Skipf("opt-in, runs with %s=1: %s", env, why)
	}
}

// Missing fails the test under CI and skips it elsewhere.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s is missing (CI=true never skips); %s", what, hint)
	}
	t.Skipf("%s is missing; %s", what, hint)
}

// Root returns the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Bin returns the path of an executable on PATH (or at an absolute path),
// or handles it as missing.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, "run `make deps` (hack/deps.sh) to install the test peers")
	}
	return p
}

// Artifact returns the path of a file built under bin/ (such as
// "plugins/virtual.wasm" or "wapper-host"), or handles it as missing.
func Artifact(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Root(), "bin", rel)
	if _, err := os.Stat(p); err != nil {
		Missing(t, "bin/"+rel, "run `make build plugins testplugins` first")
	}
	return p
}

// Plugin returns bin/plugins/NAME.wasm.
func Plugin(t testing.TB, name string) string { return Artifact(t, "plugins/"+name+".wasm") }

// TestPlugin returns bin/testplugins/NAME.wasm, built from abi/testdata/plugins.
func TestPlugin(t testing.TB, name string) string {
	return Artifact(t, "testplugins/"+name+".wasm")
}

// LogWriter returns a writer that logs each write with t.Log, for a
// slog handler or a subprocess's output.
func LogWriter(t testing.TB) io.Writer { return logWriter{t} }

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
