package plugincli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/simonvetter/modbus"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
	"wapper.dev/wapper/registry/plugincli"
)

// lockedBuffer is an output the command and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRun runs `plugin run` in-process; wait returns its error once it
// has ended.
func startRun(ctx context.Context, args ...string) (stdout, stderr *lockedBuffer, wait func() error) {
	stdout, stderr = &lockedBuffer{}, &lockedBuffer{}
	c := plugincli.RunCommand()
	c.SetArgs(args)
	c.SetOut(stdout)
	c.SetErr(stderr)
	done := make(chan error, 1)
	go func() { done <- c.ExecuteContext(ctx) }()
	return stdout, stderr, func() error { return <-done }
}

// compileCache is a --compile-cache folder the runs of one test share,
// so that each test compiles a module once.
func compileCache(t *testing.T) []string {
	t.Helper()
	compileCaches.Lock()
	defer compileCaches.Unlock()
	dir, ok := compileCaches.dirs[t]
	if !ok {
		dir = t.TempDir()
		compileCaches.dirs[t] = dir
		t.Cleanup(func() {
			compileCaches.Lock()
			delete(compileCaches.dirs, t)
			compileCaches.Unlock()
		})
	}
	return []string{"--compile-cache", dir}
}

var compileCaches = struct {
	sync.Mutex
	dirs map[*testing.T]string
}{dirs: map[*testing.T]string{}}

// execRun runs `plugin run` to its end.
func execRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	o, e, wait := startRun(context.Background(), append(args, compileCache(t)...)...)
	err = wait()
	return o.String(), e.String(), err
}

func writeYAML(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dev.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// virtualYAML is a device of the virtual plugin; kind is the visitor of
// its "ticks" property.
func virtualYAML(kind string) string {
	return `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermo-model}
spec:
  protocol: virtual
  properties:
    - {name: ticks, type: INT, accessMode: ReadOnly}
    - {name: setpoint, type: DOUBLE, accessMode: ReadWrite}
    - {name: heating, type: BOOLEAN, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: thermo}
spec:
  deviceModelRef: {name: thermo-model}
  protocol: {protocolName: virtual}
  properties:
    - name: ticks
      collectCycle: 100
      visitors: {protocolName: virtual, configData: {kind: ` + kind + `}}
    - name: setpoint
      visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 20}}
    - name: heating
      visitors: {protocolName: virtual, configData: {kind: switch}}
`
}

func TestRunVirtualReadWrite(t *testing.T) {
	wasm := testenv.Plugin(t, "virtual")
	dev := writeYAML(t, virtualYAML("counter"))
	out, errOut, err := execRun(t, wasm, "--device", dev, "--read", "ticks", "--read", "thermo/setpoint", "--write", "setpoint=42.5")
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "thermo setpoint 42.5" || !strings.HasPrefix(lines[1], "thermo ticks ") || lines[2] != "thermo setpoint 42.5" {
		t.Errorf("stdout: want the written setpoint read back, ticks, then setpoint again; got:\n%s", out)
	}
	// The plugin's own log line (the SDK's log through the host), and the
	// host's device and desired-value lines.
	for _, want := range []string{`msg="writable kind on a ReadOnly property`, "plugin=virtual instance=0 device=default/thermo", `msg="device running"`, `msg="desired value applied"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %s:\n%s", want, errOut)
		}
	}
}

func TestRunVirtualRefusedDevice(t *testing.T) {
	wasm := testenv.Plugin(t, "virtual")
	out, errOut, err := execRun(t, wasm, "--device", writeYAML(t, virtualYAML("bogus")), "--read", "ticks")
	if err == nil {
		t.Fatalf("a refused device exited 0\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	for _, want := range []string{"device thermo cannot run", "MapperPlugin virtual refused to add the device", `unknown kind "bogus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if out != "" {
		t.Errorf("stdout of a refused device: %q", out)
	}
	// Streaming refuses it the same way.
	if _, _, err := execRun(t, wasm, "--device", writeYAML(t, virtualYAML("bogus"))); err == nil || !strings.Contains(err.Error(), `unknown kind "bogus"`) {
		t.Errorf("streaming a refused device: err = %v", err)
	}
}

// TestRunVirtualStream reads the plain lines (stdout is not a terminal, so
// --watch prints lines too) until three readings of ticks came, then
// stops the command as Ctrl-C would.
func TestRunVirtualStream(t *testing.T) {
	wasm := testenv.Plugin(t, "virtual")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut, wait := startRun(ctx, append([]string{wasm, "--device", writeYAML(t, virtualYAML("counter")), "--watch"}, compileCache(t)...)...)
	ended := make(chan error, 1)
	go func() { ended <- wait() }()
	for strings.Count(out.String(), " thermo ticks ") < 3 {
		select {
		case err := <-ended:
			t.Fatalf("run ended before three readings: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("stopped run: %v", err)
	}
	var prev int
	n := 0
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[1] == "thermo" && f[2] == "ticks" {
			var v int
			if _, err := fmt.Sscan(f[3], &v); err != nil || v <= prev {
				t.Errorf("ticks line %q: want a counter above %d", l, prev)
			}
			prev = v
			n++
		}
	}
	if n < 3 {
		t.Errorf("%d ticks lines:\n%s", n, out)
	}

	// --for ends by itself, with exit code 0.
	if o, e, err := execRun(t, wasm, "--device", writeYAML(t, virtualYAML("counter")), "--for", "1ms"); err != nil {
		t.Fatalf("--for: %v\n%s\n%s", err, o, e)
	}
}

// TestRunVirtualWatchTerminal runs --watch with stdout and stderr on a
// pseudo-terminal: the table is redrawn in place, with the log under it.
func TestRunVirtualWatchTerminal(t *testing.T) {
	wasm := testenv.Plugin(t, "virtual")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	screen := &lockedBuffer{}
	go func() { _, _ = io.Copy(screen, ptmx) }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := plugincli.RunCommand()
	c.SetArgs([]string{wasm, "--device", writeYAML(t, virtualYAML("counter")), "--watch"})
	c.SetOut(tty)
	c.SetErr(tty)
	ended := make(chan error, 1)
	go func() { ended <- c.ExecuteContext(ctx) }()
	// Wait for two redraws that show ticks read.
	for {
		frames := strings.Split(screen.String(), "\x1b[H\x1b[2J")
		n := 0
		for _, f := range frames {
			if strings.Contains(f, "DEVICE") && regexp.MustCompile(`thermo +ticks +[1-9]`).MatchString(f) {
				n++
			}
		}
		if n >= 2 {
			break
		}
		select {
		case err := <-ended:
			t.Fatalf("run ended: %v\n%s", err, screen)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("stopped run: %v", err)
	}
	// The terminal turns each "\n" into "\r\n".
	frames := strings.Split(strings.ReplaceAll(screen.String(), "\r\n", "\n"), "\x1b[H\x1b[2J")
	last := frames[len(frames)-1]
	for _, want := range []string{"PROPERTY", "VALUE", "AGE", "ERROR", "thermo", "(Running, state ok)", "setpoint", "heating", "\nlog:\n", `msg="device running"`} {
		if !strings.Contains(last, want) {
			t.Errorf("last frame lacks %q:\n%s", want, last)
		}
	}
}

func TestRunBadInput(t *testing.T) {
	wasm := testenv.Plugin(t, "virtual")
	dev := writeYAML(t, virtualYAML("counter"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--grant", "tcp://127.0.0.1"}, `bad --grant "tcp://127.0.0.1": missing :PORT`},
		{[]string{"--grant", "GPIO17"}, `bad --grant "GPIO17": want tcp://, udp:// or tls://HOST:PORT`},
		{[]string{"--grant", "secret:Bad_Name"}, `bad --grant "secret:Bad_Name": character 'B' is not allowed`},
		{[]string{"--grant", "listen:udp://plc.local:162"}, `bad --grant "listen:udp://plc.local:162": want an IP address`},
		{[]string{"--grant", "serial:dev/tty*"}, `bad --grant "serial:dev/tty*"`},
		{[]string{"--read", "nosuch"}, `"nosuch" matches no device property; there are: thermo/ticks, thermo/setpoint, thermo/heating`},
		{[]string{"--write", "ticks=3", "--write", "setpoint=warm"}, "2 of 2 reads and writes failed\n" +
			`thermo ticks: write "3" failed: read-only` + "\n" + `"warm" is not a valid DOUBLE`},
		{[]string{"--read", "ticks", "--watch"}, "do not combine"},
	} {
		_, errOut, err := execRun(t, append([]string{wasm, "--device", dev}, c.args...)...)
		for _, want := range strings.Split(c.want, "\n") { // each in the error or on stderr
			if msg := fmt.Sprint(err) + errOut; err == nil || !strings.Contains(msg, want) {
				t.Errorf("%v: want an error with %q, got %v\n%s", c.args, want, err, errOut)
			}
		}
	}
	// A manifest the host would refuse, with the host's reason.
	bad := writeYAML(t, strings.Replace(virtualYAML("counter"), "type: INT", "type: NUMBER", 1))
	if _, _, err := execRun(t, wasm, "--device", bad); err == nil || !strings.Contains(err.Error(), "spec.properties[0].type") {
		t.Errorf("bad model: err = %v", err)
	}
	// A file that is not a module.
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("hello"), 0o644)
	if _, _, err := execRun(t, notWasm, "--device", dev, "--read", "ticks"); err == nil || !strings.Contains(err.Error(), "cannot run") {
		t.Errorf("not a module: err = %v", err)
	}
}

// registers is a Modbus server's memory: 100 holding and 100 input
// registers.
type registers struct {
	mu      sync.Mutex
	holding [100]uint16
	input   [100]uint16
}

func (r *registers) HandleCoils(*modbus.CoilsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (r *registers) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (r *registers) HandleHoldingRegisters(q *modbus.HoldingRegistersRequest) ([]uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(q.Addr)+int(q.Quantity) > len(r.holding) {
		return nil, modbus.ErrIllegalDataAddress
	}
	if q.IsWrite {
		copy(r.holding[q.Addr:], q.Args)
		return nil, nil
	}
	return append([]uint16(nil), r.holding[q.Addr:q.Addr+q.Quantity]...), nil
}

func (r *registers) HandleInputRegisters(q *modbus.InputRegistersRequest) ([]uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(q.Addr)+int(q.Quantity) > len(r.input) {
		return nil, modbus.ErrIllegalDataAddress
	}
	return append([]uint16(nil), r.input[q.Addr:q.Addr+q.Quantity]...), nil
}

func modbusYAML(port int) string {
	return fmt.Sprintf(`apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plc-model}
spec:
  protocol: modbus
  properties:
    - {name: setpoint, type: INT, accessMode: ReadWrite}
    - {name: temperature, type: DOUBLE, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: plc-1}
spec:
  deviceModelRef: {name: plc-model}
  protocol:
    protocolName: modbus
    configData: {ip: 127.0.0.1, port: %d, slaveID: 1, timeout: 1000}
  properties:
    - name: setpoint
      visitors: {protocolName: modbus, configData: {register: HoldingRegister, offset: 10, dataType: int16}}
    - name: temperature
      visitors: {protocolName: modbus, configData: {register: InputRegister, offset: 5, limit: 1, scale: 0.1}}
`, port)
}

func TestRunModbus(t *testing.T) {
	wasm := testenv.Plugin(t, "modbus")
	ports, err := testproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	regs := &registers{}
	regs.input[5] = 251
	regs.holding[10] = 7
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: fmt.Sprintf("tcp://127.0.0.1:%d", port), Timeout: time.Minute, MaxClients: 8}, regs)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	dev := writeYAML(t, modbusYAML(port))
	grant := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	out, errOut, err := execRun(t, wasm, "--device", dev, "--grant", grant, "--read", "temperature", "--write", "plc-1/setpoint=42")
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if want := "plc-1 setpoint 42\nplc-1 temperature 25.1\n"; out != want {
		t.Errorf("stdout %q, want %q\nstderr:\n%s", out, want, errOut)
	}
	regs.mu.Lock()
	got := regs.holding[10]
	regs.mu.Unlock()
	if got != 42 {
		t.Errorf("holding register 10 = %d after --write setpoint=42", got)
	}

	// The same device with a grant for other addresses only: the read
	// fails with the host's grant refusal, and the run exits non-zero.
	out, errOut, err = execRun(t, wasm, "--device", dev, "--grant", "tcp://10.0.0.0/8:502", "--read", "temperature")
	if err == nil {
		t.Fatalf("denied read exited 0\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	if !strings.Contains(err.Error(), "1 of 1 reads and writes failed") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(errOut, "plc-1 temperature: read failed: denied by grants") || !strings.Contains(errOut, fmt.Sprint(port)) {
		t.Errorf("stderr lacks the grant refusal of port %d:\n%s", port, errOut)
	}
	if out != "" {
		t.Errorf("stdout of a denied read: %q", out)
	}
}
