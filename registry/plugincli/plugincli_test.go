package plugincli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/abi"
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
	for _, want := range []string{fmt.Sprintf("abi:      %d.%d", abi.Major, abi.Minor), "wapper_read(i32, i32) -> (i64)", "wapper.kv_get(", "verdict:  loads\n", "wapper_read_batch",
		"needs:    no grants", "protocol: none declared"} {
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

// Inspect names the grants a module's device I/O needs.
func TestInspectGrants(t *testing.T) {
	for plugin, want := range map[string][]string{
		"modbus": {"needs:    grants.network (imports wapper.sock_open", "grants.serial (imports wapper.serial_open"},
		"gpio":   {"needs:    grants.gpio (imports wapper.gpio_open"},
	} {
		out, err := run(t, testenv.Plugin(t, plugin))
		if err != nil {
			t.Fatalf("%s: %v\n%s", plugin, err, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", plugin, w, out)
			}
		}
	}
}

// buildWasm builds the Go package in dir for wasip1, as a reactor when
// cShared, offline.
func buildWasm(t *testing.T, dir string, cShared bool) string {
	t.Helper()
	out := filepath.Join(dir, "plugin.wasm")
	args := []string{"build", "-o", out}
	if cShared {
		args = append(args, "-buildmode=c-shared")
	}
	cmd := exec.Command(testenv.Bin(t, "go"), append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "GOPROXY=off", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A module built with go build's default buildmode (a WASI command) would
// trap at its first call; the loader refuses it and says how to rebuild it.
func TestInspectNotCShared(t *testing.T) {
	src := "package main\n\n"
	for _, e := range []struct{ name, sig string }{
		{"wapper_abi_v1", "() int32"}, {"wapper_alloc", "(int32) int32"}, {"wapper_free", "(int32)"},
		{"wapper_init", "(int32, int32) int64"}, {"wapper_device_add", "(int32, int32, int32) int64"},
		{"wapper_device_update", "(int32, int32, int32) int64"}, {"wapper_device_remove", "(int32) int64"},
		{"wapper_read", "(int32, int32) int64"}, {"wapper_write", "(int32, int32, int32, int32) int64"},
		{"wapper_device_state", "(int32) int64"},
	} {
		body := "{}"
		if strings.Contains(e.sig, ") int") || strings.HasPrefix(e.sig, "() ") {
			body = "{ return 0 }"
		}
		src += "//go:wasmexport " + e.name + "\nfunc " + strings.ReplaceAll(e.name, "wapper_", "x_") + e.sig + " " + body + "\n\n"
	}
	src += "func main() {}\n"
	dir := writeFiles(t, map[string]string{"go.mod": "module command\n\ngo 1.26\n", "main.go": src})
	out, err := run(t, buildWasm(t, dir, false))
	if err == nil || !strings.Contains(out, "verdict:  REFUSED") || !strings.Contains(out, "the module is a WASI command") ||
		!strings.Contains(out, "rebuild it as a reactor: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared") {
		t.Fatalf("err = %v:\n%s", err, out)
	}
}

// A module whose driver is registered in main (which c-shared never runs)
// loads, but every call fails; inspect says so.
func TestInspectNoDriver(t *testing.T) {
	root := testenv.Root()
	dir := writeFiles(t, map[string]string{
		"go.mod": "module nodriver\n\ngo 1.26\n\nrequire (\n\twapper.dev/wapper/abi v0.0.0\n\twapper.dev/wapper/sdk-go v0.0.0\n)\n\n" +
			"replace (\n\twapper.dev/wapper/abi => " + filepath.Join(root, "abi") + "\n\twapper.dev/wapper/sdk-go => " + filepath.Join(root, "sdk-go") + "\n)\n",
		"main.go": `package main

import wapper "wapper.dev/wapper/sdk-go"

type thermo struct{ wapper.Base }

func (thermo) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	return wapper.Double(21.5), nil
}

func main() { wapper.Register(thermo{}) }
`})
	out, err := run(t, buildWasm(t, dir, true))
	if err == nil || !strings.Contains(out, "verdict:  loads, but every call fails") ||
		!strings.Contains(out, "hint:     the module registers no driver: call wapper.Register(yourDriver) from an init function") {
		t.Fatalf("err = %v:\n%s", err, out)
	}
	if strings.Contains(out, "verdict:  loads\n") {
		t.Errorf("plain verdict:\n%s", out)
	}
}
