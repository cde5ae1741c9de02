package runtime_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// modbusServer accepts connections and answers every Modbus TCP request
// for holding registers with zeros; conns receives each accepted
// connection.
func modbusServer(t *testing.T) (addr string, conns chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				req := make([]byte, 12)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					n := int(req[11]) // quantity (low byte)
					resp := append([]byte{req[0], req[1], 0, 0, 0, byte(3 + 2*n), req[6], 3, byte(2 * n)}, make([]byte, 2*n)...)
					c.Write(resp)
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

func modbusDevice(addr string) abi.Device {
	host, port, _ := net.SplitHostPort(addr)
	return abi.Device{ID: 1, Namespace: "default", Name: "plc", Protocol: "modbus",
		ProtocolConfig: json.RawMessage(fmt.Sprintf(`{"ip":%q,"port":%s}`, host, port)),
		Properties:     []abi.Property{prop(0, "h", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":0}`)}}
}

func TestIOImportsPassCheck(t *testing.T) {
	wasm, err := os.ReadFile(testenv.Plugin(t, "modbus"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.Check(ctx(t), wasm); err != nil {
		t.Fatalf("the modbus plugin, which imports the device I/O functions, is refused: %v", err)
	}
}

// TestIOHandlesDieWithInstance: the sockets an instance opened are closed
// when the plugin (and so the instance) is closed.
func TestIOHandlesDieWithInstance(t *testing.T) {
	addr, conns := modbusServer(t)
	e := newEnv(t)
	p := e.load("modbus", testenv.Plugin(t, "modbus"), func(c *runtime.Config) {
		c.Instances = 1
		if err := runtime.WithGrants(c, grant.Set{Network: []string{"tcp://" + addr}}); err != nil {
			t.Fatal(err)
		}
	})
	c := ctx(t)
	if err := p.AddDevice(c, modbusDevice(addr)); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Read(c, 1, 0); err != nil || v.Int() != 0 {
		t.Fatalf("read: %v, %v", v, err)
	}
	var server net.Conn
	select {
	case server = <-conns:
	case <-time.After(30 * time.Second):
		t.Fatal("the plugin never connected")
	}
	p.Close(c)
	server.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server side after the plugin closed: %v, want EOF (the instance's socket closed)", err)
	}
}

// TestIOWithoutGrants: a plugin loaded without grants opens nothing, and
// the refusal is logged with the device.
func TestIOWithoutGrants(t *testing.T) {
	addr, _ := modbusServer(t)
	e := newEnv(t)
	p := e.load("modbus", testenv.Plugin(t, "modbus"), nil)
	c := ctx(t)
	if err := p.AddDevice(c, modbusDevice(addr)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(c, 1, 0); abi.CodeOf(err) != abi.ErrDenied {
		t.Fatalf("read without grants: %v, want denied", err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "refused by grants") || !strings.Contains(logs, "resource=tcp://"+addr) || !strings.Contains(logs, "device=default/plc") {
		t.Errorf("the refusal is not logged with the resource and device:\n%s", logs)
	}
	if err := runtime.WithGrants(&runtime.Config{}, grant.Set{Network: []string{"ftp://x:1"}}); err == nil {
		t.Error("a bad grant was accepted")
	}
}
