package e2e

// The Modbus plugin (plugins/modbus) in the host runtime against real
// peers: a github.com/simonvetter/modbus TCP server, Debian's mbpoll as an
// independent client, and pymodbus as an RTU server on a pty pair.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

func prop(h uint32, name, typ, access, visitor string) abi.Property {
	return abi.Property{Handle: h, Name: name, Type: typ, AccessMode: access, Visitor: json.RawMessage(visitor)}
}

func tcpDevice(id uint32, port int, timeoutMS int, props ...abi.Property) abi.Device {
	return abi.Device{
		ID: id, Namespace: "default", Name: fmt.Sprintf("modbus-%d", id), Protocol: "modbus",
		ProtocolConfig: json.RawMessage(fmt.Sprintf(`{"ip":"127.0.0.1","port":%d,"slaveID":1,"timeout":%d}`, port, timeoutMS)),
		Properties:     props,
	}
}

// The properties of the TCP test device.
const (
	pCoil uint32 = iota
	pHolding
	pFloatABCD
	pFloatCDAB
	pInput
	pDiscrete
	pUnmapped
	pPairA
	pPairB
	pPairC
)

func tcpProps() []abi.Property {
	return []abi.Property{
		prop(pCoil, "coil", "BOOLEAN", "ReadWrite", `{"register":"CoilRegister","offset":3,"limit":1}`),
		prop(pHolding, "holding", "INT", "ReadWrite", `{"register":"HoldingRegister","offset":10,"limit":1,"dataType":"int16"}`),
		prop(pFloatABCD, "floatABCD", "FLOAT", "ReadWrite", `{"register":"HoldingRegister","offset":20,"limit":2,"dataType":"float32"}`),
		prop(pFloatCDAB, "floatCDAB", "FLOAT", "ReadWrite", `{"register":"HoldingRegister","offset":30,"limit":2,"dataType":"float32","isRegisterSwap":true}`),
		prop(pInput, "temperature", "DOUBLE", "ReadOnly", `{"register":"InputRegister","offset":5,"limit":1,"scale":0.1}`),
		prop(pDiscrete, "door", "BOOLEAN", "ReadOnly", `{"register":"DiscreteInputRegister","offset":7}`),
		prop(pUnmapped, "unmapped", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":5000}`),
		prop(pPairA, "a", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":100,"dataType":"uint16"}`),
		prop(pPairB, "b", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":101,"limit":2,"dataType":"int32"}`),
		prop(pPairC, "c", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":103,"dataType":"uint16"}`),
	}
}

var mbpollValue = regexp.MustCompile(`\[(\d+)\]:\s+(\S+)`)

// mbpoll runs Debian's mbpoll against the server (0-based references) and
// returns the values it printed, by reference.
func mbpoll(t *testing.T, port int, opts []string, values ...string) map[int]string {
	t.Helper()
	bin := testenv.Bin(t, "mbpoll")
	full := append([]string{"-m", "tcp", "-p", strconv.Itoa(port), "-a", "1", "-0", "-1", "-o", "5"}, opts...)
	full = append(append(full, "127.0.0.1"), values...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("mbpoll %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	vals := map[int]string{}
	for _, m := range mbpollValue.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[1])
		vals[n] = m[2]
	}
	return vals
}

func TestModbusTCPWithMbpoll(t *testing.T) {
	port := freePort(t)
	regs := &regMap{}
	regs.input[5] = 251 // 25.1 after scale 0.1
	regs.discrete[7] = true
	regs.holding[100], regs.holding[101], regs.holding[102], regs.holding[103] = 7, 0xFFFF, 0xFFFE, 9
	startModbusServer(t, port, regs)
	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{Network: []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}}, nil)
	ctx := context.Background()
	if err := p.AddDevice(ctx, tcpDevice(1, port, 2000, tcpProps()...)); err != nil {
		t.Fatal(err)
	}
	read := func(h uint32) abi.Value {
		t.Helper()
		v, err := p.Read(ctx, 1, h)
		if err != nil {
			t.Fatalf("read property %d: %v", h, err)
		}
		return v
	}
	write := func(h uint32, v abi.Value) {
		t.Helper()
		if err := p.Write(ctx, 1, h, v); err != nil {
			t.Fatalf("write property %d = %s: %v", h, v.Text(), err)
		}
	}

	t.Run("plugin writes, mbpoll reads", func(t *testing.T) {
		write(pCoil, abi.Bool(true))
		if got := mbpoll(t, port, []string{"-t", "0", "-r", "3"}); got[3] != "1" {
			t.Errorf("mbpoll coil 3 = %q, want 1", got[3])
		}
		write(pHolding, abi.Int(-1234))
		if got := mbpoll(t, port, []string{"-t", "4:hex", "-r", "10"}); got[10] != "0xFB2E" {
			t.Errorf("mbpoll holding 10 = %q, want 0xFB2E (-1234)", got[10])
		}
		write(pFloatABCD, abi.Float(3.25))
		if got := mbpoll(t, port, []string{"-t", "4:float", "-B", "-r", "20"}); got[20] != "3.25" {
			t.Errorf("mbpoll big-endian float at 20 = %q, want 3.25", got[20])
		}
		write(pFloatCDAB, abi.Float(-7.5))
		if got := mbpoll(t, port, []string{"-t", "4:float", "-r", "30"}); got[30] != "-7.5" {
			t.Errorf("mbpoll little-endian-word float at 30 = %q, want -7.5", got[30])
		}
	})

	t.Run("mbpoll writes, plugin reads", func(t *testing.T) {
		mbpoll(t, port, []string{"-t", "0", "-r", "3"}, "0")
		if v := read(pCoil); v.Bool() {
			t.Errorf("coil after mbpoll wrote 0: %s", v.Text())
		}
		mbpoll(t, port, []string{"-t", "4", "-r", "10"}, "4321")
		if v := read(pHolding); v.Int() != 4321 {
			t.Errorf("holding after mbpoll wrote 4321: %s", v.Text())
		}
		mbpoll(t, port, []string{"-t", "4:float", "-B", "-r", "20"}, "1.75")
		if v := read(pFloatABCD); v.Float() != 1.75 {
			t.Errorf("big-endian float after mbpoll wrote 1.75: %s", v.Text())
		}
		mbpoll(t, port, []string{"-t", "4:float", "-r", "30"}, "--", "-0.125")
		if v := read(pFloatCDAB); v.Float() != -0.125 {
			t.Errorf("word-swapped float after mbpoll wrote -0.125: %s", v.Text())
		}
	})

	t.Run("read-only tables and scale", func(t *testing.T) {
		if v := read(pInput); math.Abs(v.Double()-25.1) > 1e-9 {
			t.Errorf("input register 5 scaled by 0.1 = %s, want 25.1", v.Text())
		}
		if v := read(pDiscrete); !v.Bool() {
			t.Errorf("discrete input 7 = %s, want true", v.Text())
		}
		if err := p.Write(ctx, 1, pInput, abi.Double(1)); abi.CodeOf(err) != abi.ErrReadOnly {
			t.Errorf("write to an input register: %v, want read-only", err)
		}
	})

	t.Run("exception", func(t *testing.T) {
		_, err := p.Read(ctx, 1, pUnmapped)
		if abi.CodeOf(err) != abi.ErrDeviceFailed || !strings.Contains(err.Error(), "illegal data address") {
			t.Fatalf("read of an unmapped register: %v, want a device error naming the exception", err)
		}
		// The device answered, so it is still ok.
		if st, _, err := p.State(ctx, 1); err != nil || st != abi.StateOK {
			t.Errorf("state after an exception: %v, %v", st, err)
		}
	})

	t.Run("batch merges neighbours", func(t *testing.T) {
		before := len(regs.holdingReads())
		entries, err := p.ReadBatch(ctx, 1, []uint32{pPairC, pPairA, pHolding, pPairB, pUnmapped})
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]int64{0: 9, 1: 7, 2: 4321, 3: -2}
		for i, w := range want {
			if entries[i].Err != nil || entries[i].Value.Int() != w {
				t.Errorf("batch entry %d: %v, value %s, want %d", i, entries[i].Err, entries[i].Value.Text(), w)
			}
		}
		if abi.CodeOf(entries[4].Err) != abi.ErrDeviceFailed {
			t.Errorf("batch entry for the unmapped register: %v, want device error", entries[4].Err)
		}
		reads := regs.holdingReads()[before:]
		merged := false
		for _, r := range reads {
			if r == [2]uint16{100, 4} {
				merged = true
			}
			if r[0] >= 100 && r[0] < 104 && r != [2]uint16{100, 4} {
				t.Errorf("registers 100-103 read separately: %v", reads)
			}
		}
		if !merged {
			t.Errorf("no single read of holding registers 100+4 in %v", reads)
		}
	})
}

func TestModbusReconnect(t *testing.T) {
	port := freePort(t)
	regs := &regMap{}
	regs.holding[10] = 11
	stop := startModbusServer(t, port, regs)
	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{Network: []string{"tcp://127.0.0.1:*"}}, nil)
	ctx := context.Background()
	if err := p.AddDevice(ctx, tcpDevice(1, port, 1000, tcpProps()...)); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Read(ctx, 1, pHolding); err != nil || v.Int() != 11 {
		t.Fatalf("first read: %v, %v", v, err)
	}
	stop()
	_, err := p.Read(ctx, 1, pHolding)
	if c := abi.CodeOf(err); c == abi.OK {
		t.Fatal("read with the server stopped succeeded")
	}
	if st, reason, _ := p.State(ctx, 1); st != abi.StateUnhealthy || reason == "" {
		t.Errorf("state with the server stopped: %v %q, want unhealthy with a reason", st, reason)
	}
	regs.holding[10] = 12
	startModbusServer(t, port, regs)
	eventually(t, "read after the server came back", func() error {
		v, err := p.Read(ctx, 1, pHolding)
		if err == nil && v.Int() != 12 {
			return fmt.Errorf("value %s", v.Text())
		}
		return err
	})
	if st, _, _ := p.State(ctx, 1); st != abi.StateOK {
		t.Errorf("state after reconnecting: %v", st)
	}
}

func TestModbusGrantsRefused(t *testing.T) {
	port := freePort(t)
	regs := &regMap{}
	startModbusServer(t, port, regs)
	// Granted: another port only, and no serial ports.
	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{Network: []string{fmt.Sprintf("tcp://127.0.0.1:%d", port+1)}, Serial: []string{"/dev/ttyUSB*"}}, nil)
	ctx := context.Background()
	if err := p.AddDevice(ctx, tcpDevice(1, port, 1000, tcpProps()...)); err != nil {
		t.Fatal(err)
	}
	_, err := p.Read(ctx, 1, pHolding)
	if abi.CodeOf(err) != abi.ErrDenied || !strings.Contains(err.Error(), fmt.Sprintf("tcp://127.0.0.1:%d", port)) {
		t.Fatalf("read from an address not granted: %v, want denied naming the address", err)
	}
	if st, reason, _ := p.State(ctx, 1); st != abi.StateUnhealthy || !strings.Contains(reason, "denied") {
		t.Errorf("device state after a refusal: %v %q, want unhealthy with the refusal", st, reason)
	}
	rtu := abi.Device{ID: 2, Namespace: "default", Name: "rtu", Protocol: "modbus",
		ProtocolConfig: json.RawMessage(`{"serialPort":"/dev/ttyS0","baudRate":9600,"slaveID":1}`),
		Properties:     []abi.Property{prop(0, "h", "INT", "ReadOnly", `{"register":"HoldingRegister","offset":0}`)}}
	if err := p.AddDevice(ctx, rtu); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(ctx, 2, 0); abi.CodeOf(err) != abi.ErrDenied || !strings.Contains(err.Error(), "/dev/ttyS0") {
		t.Fatalf("read over a serial port not granted: %v, want denied", err)
	}
	logs := p.logs.String()
	for _, want := range []string{
		fmt.Sprintf("resource=tcp://127.0.0.1:%d", port), "resource=/dev/ttyS0",
		"device=default/modbus-1", "device=default/rtu", "plugin=modbus", "refused by grants",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("host log lacks %q", want)
		}
	}
	if n := p.denials("network"); n < 1 {
		t.Errorf("network denials counted: %v", n)
	}
	if n := p.denials("serial"); n < 1 {
		t.Errorf("serial denials counted: %v", n)
	}
	if len(regs.holdingReads()) != 0 {
		t.Errorf("the server saw requests although the address was refused")
	}
}

func TestModbusBadConfig(t *testing.T) {
	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{}, nil)
	ctx := context.Background()
	for i, tc := range []struct {
		proto, visitor, want string
	}{
		{`{}`, `{"register":"HoldingRegister"}`, "serialPort"},
		{`{"ip":"127.0.0.1","port":70000}`, `{"register":"HoldingRegister"}`, "port"},
		{`{"ip":"127.0.0.1"}`, `{"register":"Holding Register"}`, "HoldingRegister"},
		{`{"ip":"127.0.0.1"}`, `{"register":"HoldingRegister","dataType":"float32","limit":1}`, "limit"},
		{`{"serialPort":"/dev/ttyUSB0","parity":"mark"}`, `{"register":"HoldingRegister"}`, "parity"},
	} {
		d := abi.Device{ID: uint32(10 + i), Namespace: "default", Name: "bad", ProtocolConfig: json.RawMessage(tc.proto),
			Properties: []abi.Property{prop(0, "x", "INT", "ReadOnly", tc.visitor)}}
		err := p.AddDevice(ctx, d)
		if abi.CodeOf(err) != abi.ErrInvalid || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
			t.Errorf("device %s / %s: %v, want invalid argument mentioning %q", tc.proto, tc.visitor, err, tc.want)
		}
	}
}

// silentServer accepts TCP connections and never answers; it returns the
// port.
func silentServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestModbusIsolation: a device that accepts connections but never answers
// holds one instance for its timeout at a time; a second device of the same
// plugin keeps being read meanwhile.
func TestModbusIsolation(t *testing.T) {
	port := freePort(t)
	regs := &regMap{}
	regs.holding[10] = 5
	startModbusServer(t, port, regs)
	silentPort := silentServer(t)
	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{Network: []string{"tcp://127.0.0.1:*"}}, nil)
	ctx := context.Background()
	if err := p.AddDevice(ctx, tcpDevice(1, silentPort, 1000, tcpProps()...)); err != nil {
		t.Fatal(err)
	}
	if err := p.AddDevice(ctx, tcpDevice(2, port, 1000, tcpProps()...)); err != nil {
		t.Fatal(err)
	}
	// Three reads of the silent device, one after another, each waiting
	// for its 1 s timeout; meanwhile the good device is read at a 20 ms
	// cycle.
	done := make(chan error, 1)
	go func() {
		for range 3 {
			if _, err := p.Read(ctx, 1, pHolding); abi.CodeOf(err) != abi.ErrTimeout {
				done <- fmt.Errorf("read of the silent device: %v, want timeout", err)
				return
			}
		}
		done <- nil
	}()
	good := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			// 3 s of a 20 ms cycle is 150 reads; 30 leaves room for a
			// slow machine while a stalled device would allow about 3.
			if good < 30 {
				t.Fatalf("the good device was read %d times while the silent one timed out three times", good)
			}
			t.Logf("good device: %d reads while the silent one timed out 3 times", good)
			if p.Restarts() != 0 {
				t.Errorf("%d instance restarts: a device timeout must not kill an instance", p.Restarts())
			}
			return
		default:
		}
		v, err := p.Read(ctx, 2, pHolding)
		if err != nil || v.Int() != 5 {
			t.Fatalf("good device read %d: %v, %v", good, v, err)
		}
		good++
		time.Sleep(20 * time.Millisecond)
	}
}

// TestModbusTimeoutCappedByCallDeadline: a request timeout longer than the
// plugin's call timeout ends before the call's deadline, so the plugin
// reports a timeout and its instance survives.
func TestModbusTimeoutCappedByCallDeadline(t *testing.T) {
	p := loadIOPlugin(t, "modbus", v1alpha1.Grants{Network: []string{"tcp://127.0.0.1:*"}}, func(c *runtime.Config) {
		c.CallTimeout = time.Second
	})
	ctx := context.Background()
	if err := p.AddDevice(ctx, tcpDevice(1, silentServer(t), 60_000, tcpProps()...)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := p.Read(ctx, 1, pHolding); abi.CodeOf(err) != abi.ErrTimeout {
			t.Fatalf("read %d from a silent device with a 60 s request timeout and a 1 s call timeout: %v, want timeout", i, err)
		}
	}
	if n := p.Restarts(); n != 0 {
		t.Errorf("%d instance restarts: the I/O timeout must end before the call's deadline", n)
	}
	if strings.Contains(p.logs.String(), "throwing it away") {
		t.Errorf("an instance was thrown away")
	}
}
