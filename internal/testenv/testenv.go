// Package testenv finds the real peers and built artifacts that tests use,
// and decides what happens when one is missing: under CI=true the test
// fails, elsewhere it is skipped with the command that would provide it.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// CI reports whether tests run under CI=true, where nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" }

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
