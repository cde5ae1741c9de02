package main

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// holdingServer is a Modbus TCP device on a local port with holding
// registers regs, answering functions 3 (read), 6 (write one) and 16
// (write several).
func holdingServer(t *testing.T, regs []uint16) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					head := make([]byte, 7)
					if _, err := io.ReadFull(c, head); err != nil {
						return
					}
					pdu := make([]byte, binary.BigEndian.Uint16(head[4:])-1)
					if _, err := io.ReadFull(c, pdu); err != nil {
						return
					}
					off, n := binary.BigEndian.Uint16(pdu[1:]), binary.BigEndian.Uint16(pdu[3:])
					var resp []byte
					switch {
					case pdu[0] == fcReadHolding && int(off)+int(n) <= len(regs):
						resp = []byte{pdu[0], byte(2 * n)}
						for _, r := range regs[off : off+n] {
							resp = binary.BigEndian.AppendUint16(resp, r)
						}
					case pdu[0] == 0x06 && int(off) < len(regs):
						regs[off] = n // the value, where a read has the count
						resp = pdu
					case pdu[0] == 0x10 && int(off)+int(n) <= len(regs):
						for i := range n {
							regs[off+i] = binary.BigEndian.Uint16(pdu[6+2*i:])
						}
						resp = pdu[:5]
					default:
						resp = []byte{pdu[0] | 0x80, 2} // illegal data address
					}
					out := append(head[:4:4], 0, byte(len(resp)+1), head[6])
					c.Write(append(out, resp...))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// The plugin as the host runs it, through the SDK's harness: configData
// numbers as edgecore sends them (strings, float32-narrowed numbers),
// against a Modbus TCP simulator.
func TestDeviceThroughHarness(t *testing.T) {
	host, port, _ := net.SplitHostPort(holdingServer(t, []uint16{0, 0, 215, 0x4049, 0x0fdb}))
	p, err := sdktest.New(nil, nil) // the registered modbus driver
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dev, err := p.Add(sdktest.Description{
		Name:           "plc",
		ProtocolConfig: map[string]any{"ip": host, "port": port, "slaveID": 1.0, "timeout": "2s"},
		Properties: []sdktest.Property{
			{Name: "temp", Type: "DOUBLE", AccessMode: "ReadWrite",
				Visitor: map[string]any{"register": "HoldingRegister", "offset": "2", "limit": 1, "scale": "0.1"}},
			{Name: "pi", Type: "FLOAT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 3.0, "dataType": "float32"}},
			{Name: "gap", Type: "INT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 9}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := dev.Read("temp"); err != nil || v.Double() != 21.5 {
		t.Errorf("temp = %#v, %v", v, err)
	}
	vals, errs, err := dev.ReadBatch("temp", "pi", "gap")
	if err != nil || errs[0] != nil || errs[1] != nil || vals[1].Float() != 3.1415927 {
		t.Errorf("batch = %v, %v, %v", vals, errs, err)
	}
	if wapper.CodeOf(errs[2]) != wapper.ErrDeviceFailed {
		t.Errorf("gap: %v", errs[2])
	}
	if err := dev.Write("temp", wapper.String("19.5")); err != nil {
		t.Fatal(err)
	}
	if v, err := dev.Read("temp"); err != nil || v.Double() != 19.5 {
		t.Errorf("temp after write = %#v, %v", v, err)
	}
	if s, _, err := dev.State(); s != wapper.StateOK || err != nil {
		t.Errorf("state %v, %v", s, err)
	}
}

func TestConfigNumbers(t *testing.T) {
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tc := range []struct {
		pc, visitor map[string]any
		want        string
	}{
		{map[string]any{"ip": "10.0.0.1", "port": 502.5}, nil, `protocol configData: field "port": 502.5 is not a whole number`},
		{map[string]any{"ip": "10.0.0.1", "port": "http"}, nil, `protocol configData: field "port": "http" is not a number`},
		{map[string]any{"ip": "10.0.0.1", "slaveID": true}, nil, `protocol configData: field "slaveID": true is not a number`},
		{map[string]any{"ip": "10.0.0.1", "port": 1e6}, nil, `port 1000000 is outside 1-65535`},
		{map[string]any{"ip": "10.0.0.1", "timeout": "soon"}, nil, `field "timeout": "soon" is not a number: want milliseconds or a duration`},
		{map[string]any{"ip": "10.0.0.1"}, map[string]any{"register": "HoldingRegister", "offset": "1.5"}, `visitor: field "offset": 1.5 is not a whole number`},
		{map[string]any{"ip": "10.0.0.1"}, map[string]any{"register": "HoldingRegister", "scale": "x"}, `visitor: field "scale": "x" is not a number`},
		{map[string]any{"ip": "10.0.0.1", "port": "1502", "baudRate": "9600", "timeout": 2.5}, map[string]any{"register": "CoilRegister", "offset": "7"}, ""},
		{map[string]any{"ip": "10.0.0.1", "tls": "yes"}, nil, `"yes" is not true or false`},
		{map[string]any{"serialPort": "/dev/ttyUSB0", "tls": true}, nil, `tls applies to Modbus TCP (ip), not to a serial port`},
		{map[string]any{"ip": "10.0.0.1", "tls": true}, nil, ""},
	} {
		d := sdktest.Description{ProtocolConfig: tc.pc}
		if tc.visitor != nil {
			d.Properties = []sdktest.Property{{Name: "x", Type: "INT", Visitor: tc.visitor}}
		}
		dev, err := p.Add(d)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v %v: %v", tc.pc, tc.visitor, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || wapper.CodeOf(err) != wapper.ErrInvalid):
			t.Errorf("%v %v: %v, want %s", tc.pc, tc.visitor, err, tc.want)
		}
		if dev != nil {
			dev.Remove()
		}
	}
}
