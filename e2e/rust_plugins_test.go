package e2e

// Rust plugins (sdk-rust) in the real host runtime: the Rust conformance
// plugin (abi/CONFORMANCE.md) and the NMEA mapper against gpsd fed by
// gpsfake.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/conformance"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

type readings struct {
	mu  sync.Mutex
	all []runtime.Reading
}

func (r *readings) add(x runtime.Reading) {
	r.mu.Lock()
	r.all = append(r.all, x)
	r.mu.Unlock()
}

func (r *readings) list() []runtime.Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]runtime.Reading(nil), r.all...)
}

func loadRust(t *testing.T, path string, mod func(*runtime.Config)) *runtime.Plugin {
	t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := runtime.Config{Name: filepath.Base(path), Wasm: wasm, KV: &conformance.MemKV{}}
	if mod != nil {
		mod(&cfg)
	}
	p, err := eng.Load(context.Background(), cfg)
	if err != nil {
		eng.Close(context.Background())
		t.Fatalf("load %s: %v", path, err)
	}
	t.Cleanup(func() {
		p.Close(context.Background())
		eng.Close(context.Background())
	})
	return p
}

func callCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantErr(t *testing.T, err error, code abi.Code, msg string) {
	t.Helper()
	var ae *abi.Error
	if !errors.As(err, &ae) || ae.Code != code || (msg != "" && ae.Message != msg) {
		t.Fatalf("error = %v, want code %d (%v) message %q", err, code, code, msg)
	}
}

func TestRustConformancePlugin(t *testing.T) {
	path := testenv.TestPlugin(t, "conformance-rust")
	got := &readings{}
	p := loadRust(t, path, func(c *runtime.Config) {
		c.Instances = 1
		c.MemoryMiB = 2 // a Rust module needs a few pages, not Go's 32
		c.Report = got.add
	})
	c := callCtx(t)
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "sdk-rust/examples/conformance/testdata/device.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dev abi.Device
	if err := json.Unmarshal(raw, &dev); err != nil {
		t.Fatal(err)
	}
	if err := p.AddDevice(c, dev); err != nil {
		t.Fatal(err)
	}

	// 1. Round trips of every type, after the zero values.
	vals := []abi.Value{abi.Int(-5), abi.Float(1.5), abi.Double(0.1), abi.String(""), abi.Bool(true), abi.Bytes([]byte{0, 1, 255})}
	for h, v := range vals {
		z, err := p.Read(c, 1, uint32(h))
		if err != nil || z.Type() != v.Type() {
			t.Fatalf("zero read of %d: %#v, %v", h, z, err)
		}
		if err := p.Write(c, 1, uint32(h), v); err != nil {
			t.Fatalf("write %d: %v", h, err)
		}
		back, err := p.Read(c, 1, uint32(h))
		if err != nil || !back.Equal(v) {
			t.Fatalf("round trip of %#v: %#v, %v", v, back, err)
		}
	}
	if err := p.Write(c, 1, 3, abi.String("héllo, wörld")); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Read(c, 1, 3); v.Str() != "héllo, wörld" {
		t.Fatalf("string = %q", v.Str())
	}

	// 2. Errors with the plugin's code and exact message.
	_, err = p.Read(c, 1, 6)
	wantErr(t, err, abi.ErrDeviceFailed, "device said no")

	// 5. Batch read.
	entries, err := p.ReadBatch(c, 1, []uint32{0, 6, 8})
	if err != nil || len(entries) != 3 || entries[0].Value.Int() != -5 || abi.CodeOf(entries[1].Err) != abi.ErrDeviceFailed || entries[2].Value.Int() != 0 {
		t.Fatalf("batch = %+v, %v", entries, err)
	}

	t.Run("host functions", func(t *testing.T) {
		// 3. kv round trip and delete through a method.
		_, err := p.Read(c, 1, 7)
		wantErr(t, err, abi.ErrNotFound, `kv key "conf/stored" is absent`)
		if err := p.Write(c, 1, 7, abi.String("hello")); err != nil {
			t.Fatal(err)
		}
		if v, err := p.Read(c, 1, 7); err != nil || v.Str() != "hello" {
			t.Fatalf("kv read = %#v, %v", v, err)
		}
		if _, err := p.CallMethod(c, 1, "kvDelete", json.RawMessage(`{"key":"conf/stored"}`)); err != nil {
			t.Fatal(err)
		}
		_, err = p.Read(c, 1, 7)
		wantErr(t, err, abi.ErrNotFound, "")

		// 4. Poll reports through the host and asks for the next poll.
		next, err := p.Poll(c, 1, time.Second)
		if err != nil || next != 250*time.Millisecond {
			t.Fatalf("poll = %v, %v", next, err)
		}
		if rs := got.list(); len(rs) != 1 || rs[0].Device != 1 || rs[0].Property != 8 || rs[0].Value.Int() != 1 {
			t.Fatalf("reports = %+v", rs)
		}
		if v, err := p.Read(c, 1, 8); err != nil || v.Int() != 1 {
			t.Fatalf("poll counter = %#v, %v", v, err)
		}
	})

	// 6. Read-only, 9. state, 11. methods.
	wantErr(t, p.Write(c, 1, 11, abi.Int(1)), abi.ErrReadOnly, "")
	if st, reason, err := p.State(c, 1); err != nil || st != abi.StateOnline || reason != "" {
		t.Fatalf("state = %v %q %v", st, reason, err)
	}
	res, err := p.CallMethod(c, 1, "echo", json.RawMessage(`{"a": [1, "x"]}`))
	if err != nil || string(res) != `{"a":[1,"x"]}` {
		t.Fatalf("echo = %s, %v", res, err)
	}
	_, err = p.CallMethod(c, 1, "nope", nil)
	wantErr(t, err, abi.ErrNotFound, `unknown method "nope"`)

	// 7. A panic traps in wasm; the host replaces the instance, which
	// starts with empty memory.
	if _, err := p.Read(c, 1, 9); err == nil {
		t.Fatal("panic read succeeded")
	}
	for p.Restarts() < 1 {
		if c.Err() != nil {
			t.Fatal("no restart after the panic")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var v abi.Value
	for {
		if v, err = p.Read(c, 1, 0); err == nil {
			break
		}
		if c.Err() != nil {
			t.Fatalf("never served again: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v.Int() != 0 {
		t.Fatalf("echo after restart = %#v, want the zero value", v)
	}

	// 10. failAdd.
	wantErr(t, p.AddDevice(c, abi.Device{ID: 2, Name: "x", ProtocolConfig: json.RawMessage(`{"failAdd":"no such device"}`)}),
		abi.ErrInvalid, "no such device")
}

func TestRustNMEAPluginWithGpsfake(t *testing.T) {
	path := testenv.Plugin(t, "nmea-rust")
	gpsfake := testenv.Bin(t, "gpsfake")
	testenv.Bin(t, "gpsd")
	p := loadRust(t, path, func(c *runtime.Config) {
		c.Instances, c.MemoryMiB = 1, 2
		if err := runtime.WithGrants(c, grant.Set{Network: []string{"tcp://127.0.0.1:*"}}); err != nil {
			t.Fatal(err)
		}
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(gpsfake, "-q", "-n", "-c", "0.05", "-P", fmt.Sprint(port),
		filepath.Join(testenv.Root(), "plugins/nmea-rust/testdata/walk.nmea"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // gpsd is its child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("gpsd did not listen in 15 s")
		}
	}

	c := callCtx(t)
	dev := abi.Device{ID: 1, Namespace: "default", Name: "gps", Protocol: "nmea",
		ProtocolConfig: json.RawMessage(fmt.Sprintf(`{"address":%q,"gpsd":true,"readTimeoutMs":3000}`, addr)),
		Properties: []abi.Property{
			{Handle: 0, Name: "latitude", Type: "DOUBLE", AccessMode: "ReadOnly"},
			{Handle: 1, Name: "longitude", Type: "DOUBLE", AccessMode: "ReadOnly"},
			{Handle: 2, Name: "satellites", Type: "INT", AccessMode: "ReadOnly"},
			{Handle: 3, Name: "speed", Type: "DOUBLE", AccessMode: "ReadOnly", Visitor: json.RawMessage(`{"unit":"knots"}`)},
		}}
	if err := p.AddDevice(c, dev); err != nil {
		t.Fatal(err)
	}
	var entries []abi.BatchEntry
	for {
		entries, err = p.ReadBatch(c, 1, []uint32{0, 1, 2, 3})
		if err == nil && entries[3].Err == nil {
			break
		}
		if c.Err() != nil {
			t.Fatalf("no complete fix from gpsd: %+v, %v", entries, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	lat, lon := entries[0].Value.Double(), entries[1].Value.Double()
	if lat < 52.52 || lat > 52.521 || lon < 13.41 || lon > 13.4105 {
		t.Fatalf("position %v, %v is not the walk in Berlin", lat, lon)
	}
	if n := entries[2].Value.Int(); n != 9 {
		t.Fatalf("satellites = %d", n)
	}
	if s := entries[3].Value.Double(); s != 3.5 {
		t.Fatalf("speed = %v knots", s)
	}
}
