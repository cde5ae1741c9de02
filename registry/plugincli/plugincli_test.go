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

func run(t *testing.T, file string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := plugincli.InspectCommand()
	c.SetArgs([]string{file})
	c.SetOut(&out)
	c.SetErr(&out)
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

func TestInspect(t *testing.T) {
	out, err := run(t, testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatalf("virtual refused: %v\n%s", err, out)
	}
	for _, want := range []string{"abi:      1.0", "wapper_read(i32, i32) -> (i64)", "wapper.kv_get(", "verdict:  loads", "wapper_read_batch"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	virtual, _ := os.ReadFile(testenv.Plugin(t, "virtual"))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := []struct {
		file, want string
	}{
		{write("text.wasm", []byte("hello, not wasm")), "not a WebAssembly module"},
		{write("half.wasm", virtual[:len(virtual)/2]), "invalid or truncated module"},
		{testenv.TestPlugin(t, "badimport"), "imports wapper.teleport, which this host does not provide"},
		{testenv.TestPlugin(t, "partial"), "missing required export wapper_init"},
		{testenv.TestPlugin(t, "nomarker"), "no wapper ABI marker"},
	}
	for _, b := range bad {
		out, err := run(t, b.file)
		if err == nil || !strings.Contains(out, "verdict:  REFUSED") || !strings.Contains(out, b.want) {
			t.Errorf("%s: err=%v, output lacks %q:\n%s", filepath.Base(b.file), err, b.want, out)
		}
	}
}
