package plugincli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/authortest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
	"wapper.dev/wapper/registry/plugincli"
)

// `wapper plugin new` projects are generated outside the repository and
// built offline, as on a machine that has only the wapper binary and a
// toolchain: their make test (native tests) and make build (wasm) must
// pass, the module must pass the host's loader, and in the host's runtime,
// under the generated grants, it must read and write a simulated
// instrument (and be refused one the grants do not name).
func TestPluginNewGo(t *testing.T)   { testPluginNew(t, "go") }
func TestPluginNewRust(t *testing.T) { testPluginNew(t, "rust") }

func testPluginNew(t *testing.T, lang string) {
	testenv.Slow(t, "builds a generated plugin project to wasm and runs its tests")
	mk := testenv.Bin(t, "make")
	env := authortest.OfflineEnv(t, lang)
	sim := authortest.Instrument(t)

	dir := filepath.Join(t.TempDir(), "bench-meter")
	if strings.HasPrefix(dir, testenv.Root()+string(filepath.Separator)) {
		t.Fatalf("%s is inside the repository; the project must build outside it", dir)
	}
	var out bytes.Buffer
	c := plugincli.NewCommand()
	c.SetArgs([]string{lang, "bench-meter", "--protocol", "scpi", "--dir", dir, "--addr", sim})
	c.SetOut(&out)
	c.SetErr(&out)
	if err := c.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("plugin new %s: %v\n%s", lang, err, out.String())
	}
	if !strings.Contains(out.String(), "make test build") {
		t.Errorf("plugin new does not say what to do next:\n%s", out.String())
	}

	cmd := exec.Command(mk, "test", "build")
	cmd.Dir, cmd.Env = dir, env
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make test build in the generated %s project: %v\n%s", lang, err, b)
	}
	t.Logf("make test build:\n%s", lastLines(string(b), 12))
	wasm, err := os.ReadFile(filepath.Join(dir, "bench-meter.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	checkInHost(t, wasm, "scpi", sim, true)
}

// checkInHost loads wasm in wapper-host's runtime with the grants of the
// generated MapperPlugin (the instrument at addr), reads and writes the
// instrument through the sandbox, and checks that an instrument the grants
// do not name is refused.
func checkInHost(t *testing.T, wasm []byte, protocol, addr string, exact bool) {
	t.Helper()
	// Generous: under the race detector wazero compiles a Go module slowly.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if info, err := runtime.Verify(ctx, wasm); err != nil {
		var b bytes.Buffer
		plugincli.Print(&b, "plugin.wasm", info, err)
		t.Fatalf("the host refuses the module:\n%s", b.String())
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	cfg := runtime.Config{Name: "instrument", Wasm: wasm, CallTimeout: 5 * time.Second}
	if err := runtime.WithGrants(&cfg, grant.Set{Network: []string{"tcp://" + addr}}); err != nil {
		t.Fatal(err)
	}
	p, err := eng.Load(ctx, cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer p.Close(context.Background())

	device := func(id uint32, addr string) abi.Device {
		ip, port, _ := net.SplitHostPort(addr)
		pc, _ := json.Marshal(map[string]any{"ip": ip, "port": port, "timeout": 1000})
		return abi.Device{ID: id, Namespace: "default", Name: fmt.Sprintf("instrument-%d", id), Protocol: protocol, ProtocolConfig: pc,
			Properties: []abi.Property{
				{Handle: 0, Name: "temperature", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: json.RawMessage(`{"command": "TEMP?"}`)},
				{Handle: 1, Name: "setpoint", Type: "DOUBLE", AccessMode: "ReadWrite", Visitor: json.RawMessage(`{"command": "SETP?", "setCommand": "SETP"}`)},
			}}
	}
	if err := p.AddDevice(ctx, device(1, addr)); err != nil {
		t.Fatalf("add device: %v", err)
	}
	if v, err := p.Read(ctx, 1, 0); err != nil || v.Type() != abi.TypeDouble || exact && v.Double() != 21.5 {
		t.Fatalf("read temperature in wasm = %#v, %v; want DOUBLE(21.5)", v, err)
	}
	if err := p.Write(ctx, 1, 1, abi.Double(23.5)); err != nil {
		t.Fatalf("write setpoint in wasm: %v", err)
	}
	if v, err := p.Read(ctx, 1, 1); err != nil || v.Double() != 23.5 {
		t.Fatalf("read setpoint in wasm = %#v, %v; want DOUBLE(23.5)", v, err)
	}

	other := authortest.Instrument(t) // a real instrument, but not granted
	if err := p.AddDevice(ctx, device(2, other)); err != nil {
		t.Fatalf("add device: %v", err)
	}
	if _, err := p.Read(ctx, 2, 0); abi.CodeOf(err) != abi.ErrDenied {
		t.Fatalf("read from %s, which the grants do not name: %v; want %s", other, err, abi.ErrDenied)
	}
}

// The examples are generated projects completed with a simulator: their
// native tests pass, they build to wasm, and in the host's runtime they
// read and write the Go example's simulator (sim/, which the Rust example uses too).
func TestTCPInstrumentExamples(t *testing.T) {
	testenv.Slow(t, "builds the tcp-instrument examples to wasm and runs their tests")
	root := testenv.Root()
	goEx := filepath.Join(root, "examples", "tcp-instrument-go")
	rustEx := filepath.Join(root, "examples", "tcp-instrument-rust")
	goBin := testenv.Bin(t, "go")
	tmp := t.TempDir()
	build := func(dir string, env []string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, b)
		}
	}
	// The simulator, as a binary serving on a free port.
	sim := filepath.Join(tmp, "sim")
	build(goEx, os.Environ(), goBin, "build", "-o", sim, "./sim")
	ports, err := testproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	simProc := exec.Command(sim, "-listen", addr)
	if err := simProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { simProc.Process.Kill(); simProc.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("the simulator does not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("go", func(t *testing.T) {
		// Build output outside the tree: go test writes nothing there.
		build(goEx, os.Environ(), goBin, "vet", "./...")
		build(goEx, os.Environ(), goBin, "test", "-count=1", "./...")
		out := filepath.Join(tmp, "tcp-instrument-go.wasm")
		build(goEx, append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm"), goBin, "build", "-buildmode=c-shared", "-o", out, ".")
		wasm, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		checkInHost(t, wasm, "tcp-instrument", addr, false)
	})
	t.Run("rust", func(t *testing.T) {
		env := authortest.OfflineEnv(t, "rust")
		// Build output outside the tree, kept between runs as
		// hack/rust-toolchain.sh keeps it.
		target := filepath.Join(os.Getenv("HOME"), ".cache", "wapper-cargo", "tcp-instrument-rust")
		if c := os.Getenv("WAPPER_CARGO_CACHE"); c != "" {
			target = filepath.Join(c, "tcp-instrument-rust")
		}
		env = append(env, "RUSTC=/usr/bin/rustc", "RUSTDOC=/usr/bin/rustdoc", "CARGO_TARGET_DIR="+target)
		build(rustEx, env, "/usr/bin/cargo", "test", "--offline")
		build(rustEx, env, "/usr/bin/cargo", "build", "--offline", "--release", "--target", "wasm32-wasi")
		wasm, err := os.ReadFile(filepath.Join(target, "wasm32-wasi", "release", "tcp_instrument_rust.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		checkInHost(t, wasm, "tcp-instrument", addr, false)
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
