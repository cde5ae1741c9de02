package e2e

// Modbus RTU: the plugin on one end of a socat pty pair, pymodbus's RTU
// server (Debian's python3-pymodbus) on the other, 9600 8N1.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/testenv"
)

const pymodbusRTUServer = `
import sys, logging
from pymodbus.server import StartSerialServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
from pymodbus.transaction import ModbusRtuFramer

hr = [0] * 100
hr[10] = 1234
hr[20], hr[21] = 0x4020, 0x0000   # 2.5 as a big-endian float32
hr[30], hr[31] = 0xFFFF, 0xFFF6   # -10 as a big-endian int32
store = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 100),
    co=ModbusSequentialDataBlock(0, [0] * 100),
    hr=ModbusSequentialDataBlock(0, hr),
    ir=ModbusSequentialDataBlock(0, [0] * 100),
    zero_mode=True)
context = ModbusServerContext(slaves={7: store}, single=False)
print("serving", flush=True)
StartSerialServer(context=context, framer=ModbusRtuFramer, port=sys.argv[1],
                  baudrate=9600, bytesize=8, parity="N", stopbits=1, timeout=0.05)
`

// startProcess runs a peer until the test ends.
func startProcess(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out syncLog
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd
}

func TestModbusRTU(t *testing.T) {
	socat := testenv.Bin(t, "socat")
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import pymodbus.server, serial").Run(); err != nil {
		testenv.Missing(t, "python3-pymodbus", "run `make deps` (hack/deps.sh) to install it")
	}
	dir := t.TempDir()
	plugSide, serverSide := filepath.Join(dir, "plugin"), filepath.Join(dir, "server")
	startProcess(t, socat, "-d", "-d",
		"pty,raw,echo=0,link="+plugSide, "pty,raw,echo=0,link="+serverSide)
	eventually(t, "socat pty pair", func() error {
		for _, p := range []string{plugSide, serverSide} {
			if _, err := os.Stat(p); err != nil {
				return err
			}
		}
		return nil
	})
	script := filepath.Join(dir, "server.py")
	if err := os.WriteFile(script, []byte(pymodbusRTUServer), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, python, script, serverSide)

	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{Serial: []string{dir + "/plugin"}}, nil)
	ctx := context.Background()
	dev := abi.Device{ID: 1, Namespace: "default", Name: "rtu-1", Protocol: "modbus",
		ProtocolConfig: json.RawMessage(fmt.Sprintf(
			`{"serialPort":%q,"baudRate":9600,"dataBits":8,"parity":"none","stopBits":1,"slaveID":7,"timeout":1000}`, plugSide)),
		Properties: []abi.Property{
			prop(0, "setpoint", "INT", "ReadWrite", `{"register":"HoldingRegister","offset":10}`),
			prop(1, "flow", "FLOAT", "ReadWrite", `{"register":"HoldingRegister","offset":20,"limit":2}`),
			prop(2, "level", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":30,"limit":2,"dataType":"int32"}`),
			prop(3, "pump", "BOOLEAN", "ReadWrite", `{"register":"CoilRegister","offset":3}`),
			prop(4, "next", "INT", "ReadWrite", `{"register":"HoldingRegister","offset":11,"dataType":"int16"}`),
		}}
	if err := p.AddDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	// The server takes a moment to start; the plugin reopens the port after
	// each failed request.
	eventually(t, "first RTU read", func() error {
		v, err := p.Read(ctx, 1, 0)
		if err == nil && v.Int() != 1234 {
			return fmt.Errorf("setpoint %s, want 1234", v.Text())
		}
		return err
	})
	if v, err := p.Read(ctx, 1, 1); err != nil || v.Float() != 2.5 {
		t.Errorf("float32 at 20: %v, %v; want 2.5", v, err)
	}
	if v, err := p.Read(ctx, 1, 2); err != nil || v.Int() != -10 {
		t.Errorf("int32 at 30: %v, %v; want -10", v, err)
	}
	if err := p.Write(ctx, 1, 4, abi.Int(-5)); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, 1, 1, abi.Float(-1.25)); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, 1, 3, abi.Bool(true)); err != nil {
		t.Fatal(err)
	}
	entries, err := p.ReadBatch(ctx, 1, []uint32{0, 4, 1, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1234", "-5", "-1.25", "true"}
	for i, e := range entries {
		if e.Err != nil || e.Value.Text() != want[i] {
			t.Errorf("batch entry %d: %v %v, want %s", i, e.Value.Text(), e.Err, want[i])
		}
	}
	// A slave address nobody answers to times out and leaves the device
	// unhealthy; the next good request works again.
	bad := dev
	bad.ID, bad.Name = 2, "rtu-absent"
	bad.ProtocolConfig = json.RawMessage(strings.Replace(string(dev.ProtocolConfig), `"slaveID":7`, `"slaveID":9`, 1))
	if err := p.AddDevice(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(ctx, 2, 0); abi.CodeOf(err) != abi.ErrTimeout {
		t.Errorf("read from an absent slave: %v, want timeout", err)
	}
	eventually(t, "read after another slave timed out", func() error {
		_, err := p.Read(ctx, 1, 0)
		return err
	})
}
