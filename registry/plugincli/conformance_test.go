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

func runConformance(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := plugincli.ConformanceCommand()
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&out)
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

func TestPluginConformancePasses(t *testing.T) {
	for _, plugin := range []string{"conformance", "conformance-rust"} {
		out, err := runConformance(t, "--run", "values,errors,batch", testenv.TestPlugin(t, plugin))
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

// A plugin that is not a conformance plugin is told so, with the command
// to use instead, rather than failed case by case; --force runs the cases.
func TestPluginConformanceOtherPlugins(t *testing.T) {
	for _, file := range []string{testenv.Plugin(t, "virtual"), testenv.TestPlugin(t, "faulty")} {
		out, err := runConformance(t, file)
		want := file + " is not a conformance plugin (abi/CONFORMANCE.md); to test your own plugin use `wapper plugin test " + file + "`"
		if err == nil || !strings.Contains(out, want) || strings.Contains(out, "FAIL") {
			t.Errorf("%s: err = %v, output lacks %q:\n%s", file, err, want, out)
		}
	}
	out, err := runConformance(t, "--force", "--run", "values,methods", testenv.TestPlugin(t, "faulty"))
	if err == nil || !strings.Contains(err.Error(), "conformance cases failed") {
		t.Fatalf("faulty plugin with --force: err = %v\n%s", err, out)
	}
	for _, want := range []string{"FAIL  values/round-trip", "FAIL  methods", "FAILED: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("hello"), 0o644)
	out, err = runConformance(t, notWasm)
	if err == nil || !strings.Contains(out, "not a WebAssembly module") || !strings.Contains(err.Error(), "wapper plugin inspect") {
		t.Fatalf("not wasm: err = %v\n%s", err, out)
	}
	if _, err := runConformance(t, "--run", "nosuchcase", testenv.TestPlugin(t, "conformance-rust")); err == nil || !strings.Contains(err.Error(), "restart/panic") {
		t.Fatalf("unknown case: err = %v", err)
	}
}
