package plugincli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/plugincli"
)

func runTest(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := plugincli.TestCommand()
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&out)
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

func TestPluginTestPasses(t *testing.T) {
	for _, plugin := range []string{"conformance", "conformance-rust"} {
		out, err := runTest(t, "--run", "values,errors,batch", testenv.TestPlugin(t, plugin))
		if err != nil {
			t.Fatalf("%s: %v\n%s", plugin, err, out)
		}
		for _, want := range []string{"PASS  values/round-trip", "PASS  errors", "PASS  batch", "ok: all 5 cases passed"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", plugin, want, out)
			}
		}
	}
}

func TestPluginTestFails(t *testing.T) {
	out, err := runTest(t, "--run", "values,methods", testenv.TestPlugin(t, "faulty"))
	if err == nil || !strings.Contains(err.Error(), "conformance cases failed") {
		t.Fatalf("faulty plugin: err = %v\n%s", err, out)
	}
	for _, want := range []string{"FAIL  values/round-trip", "FAIL  methods", "FAILED: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("hello"), 0o644)
	out, err = runTest(t, "--run", "exports", notWasm)
	if err == nil || !strings.Contains(out, "not a WebAssembly module") {
		t.Fatalf("not wasm: err = %v\n%s", err, out)
	}
	if _, err := runTest(t, "--run", "nosuchcase", testenv.TestPlugin(t, "conformance-rust")); err == nil || !strings.Contains(err.Error(), "restart/panic") {
		t.Fatalf("unknown case: err = %v", err)
	}
}
