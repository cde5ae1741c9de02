package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCRC16(t *testing.T) {
	// The CRC-16/MODBUS check value.
	if got := crc16([]byte("123456789")); got != 0x4B37 {
		t.Fatalf("crc16(123456789) = %#04x, want 0x4b37", got)
	}
}

func TestRTUFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slave byte
		pdu   []byte
		want  string
	}{
		{"read holding 0+10", 1, readPDU(fcReadHolding, 0, 10), "01 03 0000 000A C5CD"},
		{"read coils 0x13+0x25", 0x11, readPDU(fcReadCoils, 0x13, 0x25), "11 01 0013 0025 0E84"},
		{"write single register", 0x11, writeRegsPDU(1, []byte{0, 3}), "11 06 0001 0003 9A9B"},
		{"write coil on", 1, writeCoilPDU(0xAC, true), "01 05 00AC FF00 4C1B"},
	} {
		if got := rtuFrame(tc.slave, tc.pdu); !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("%s: frame % X, want %s", tc.name, got, tc.want)
		}
	}
}

func TestCheckRTU(t *testing.T) {
	// A response to "read holding 0x6B+3" from slave 0x11.
	frame := unhex(t, "11 03 06 AE41 5652 4340 49AD")
	n, err := rtuResponseLen(frame[:3])
	if err != nil || n != len(frame) {
		t.Fatalf("rtuResponseLen = %d, %v; want %d", n, err, len(frame))
	}
	pdu, err := checkRTU(0x11, frame)
	if err != nil {
		t.Fatal(err)
	}
	data, err := checkResponse(readPDU(fcReadHolding, 0x6B, 3), pdu)
	if err != nil || !bytes.Equal(data, unhex(t, "AE41 5652 4340")) {
		t.Fatalf("data % X, %v", data, err)
	}
	bad := bytes.Clone(frame)
	bad[4] ^= 1
	if _, err := checkRTU(0x11, bad); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Fatalf("corrupt frame: %v, want a CRC error", err)
	}
	if _, err := checkRTU(0x12, frame); err == nil {
		t.Fatal("frame from another slave accepted")
	}
	if n, _ := rtuResponseLen([]byte{1, 0x83, 2}); n != 5 {
		t.Fatalf("exception frame length %d, want 5", n)
	}
}

func TestMBAP(t *testing.T) {
	got := mbap(1, 1, readPDU(fcReadHolding, 0, 2))
	if want := unhex(t, "0001 0000 0006 01 03 0000 0002"); !bytes.Equal(got, want) {
		t.Fatalf("MBAP frame % X, want % X", got, want)
	}
	got = mbap(0x1234, 0xFF, writeRegsPDU(0x10, []byte{1, 2, 3, 4}))
	if want := unhex(t, "1234 0000 000B FF 10 0010 0002 04 01020304"); !bytes.Equal(got, want) {
		t.Fatalf("MBAP frame % X, want % X", got, want)
	}
}

func TestCheckResponse(t *testing.T) {
	req := readPDU(fcReadHolding, 100, 2)
	_, err := checkResponse(req, []byte{0x83, 0x02})
	var ex *Exception
	if !errors.As(err, &ex) || ex.Code != 2 || !strings.Contains(err.Error(), "illegal data address") {
		t.Fatalf("exception: %v", err)
	}
	if _, err := checkResponse(req, []byte{0x03, 4, 0, 1}); err == nil {
		t.Fatal("short read response accepted")
	}
	if _, err := checkResponse(req, []byte{0x04, 4, 0, 1, 0, 2}); err == nil {
		t.Fatal("response with another function accepted")
	}
	coils := readPDU(fcReadCoils, 0, 10)
	if data, err := checkResponse(coils, []byte{0x01, 2, 0xFF, 0x03}); err != nil || len(data) != 2 {
		t.Fatalf("coils: % X, %v", data, err)
	}
	w := writeRegsPDU(5, []byte{0, 1, 0, 2})
	if _, err := checkResponse(w, []byte{0x10, 0, 5, 0, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := checkResponse(w, []byte{0x10, 0, 5, 0, 3}); err == nil {
		t.Fatal("write echo with the wrong count accepted")
	}
}

func TestCodec(t *testing.T) {
	f15 := unhex(t, "3FC0 0000") // 1.5 as float32, big-endian
	for _, tc := range []struct {
		name string
		v    visitor
		raw  []byte
		typ  wapper.Type
		want wapper.Value
	}{
		{"float32 ABCD", visitor{dataType: dataTypes["float32"], limit: 2, scale: 1}, f15, wapper.TypeFloat, wapper.Float(1.5)},
		{"float32 CDAB", visitor{dataType: dataTypes["float32"], limit: 2, scale: 1, isRegisterSwap: true}, unhex(t, "0000 3FC0"), wapper.TypeFloat, wapper.Float(1.5)},
		{"float32 BADC", visitor{dataType: dataTypes["float32"], limit: 2, scale: 1, isSwap: true}, unhex(t, "C03F 0000"), wapper.TypeDouble, wapper.Double(1.5)},
		{"int16 negative", visitor{dataType: dataTypes["int16"], limit: 1, scale: 1}, unhex(t, "FFFE"), wapper.TypeInt, wapper.Int(-2)},
		{"uint16", visitor{dataType: dataTypes["uint16"], limit: 1, scale: 1}, unhex(t, "FFFE"), wapper.TypeInt, wapper.Int(65534)},
		{"int32 scaled", visitor{dataType: dataTypes["int32"], limit: 2, scale: 0.1}, unhex(t, "0000 00FB"), wapper.TypeDouble, wapper.Double(25.1)},
		{"uint32 word swapped", visitor{dataType: dataTypes["uint32"], limit: 2, scale: 1, isRegisterSwap: true}, unhex(t, "5678 1234"), wapper.TypeInt, wapper.Int(0x12345678)},
		{"float64", visitor{dataType: dataTypes["float64"], limit: 4, scale: 1}, unhex(t, "400921FB54442D18"), wapper.TypeDouble, wapper.Double(3.141592653589793)},
		{"string", visitor{dataType: dataTypes["string"], limit: 2, scale: 1}, []byte("hi\x00\x00"), wapper.TypeString, wapper.String("hi")},
	} {
		got, err := tc.v.decode(tc.raw, tc.typ)
		if err != nil {
			t.Errorf("%s: decode: %v", tc.name, err)
			continue
		}
		if tc.name == "int32 scaled" {
			if d := got.Double() - 25.1; d > 1e-9 || d < -1e-9 {
				t.Errorf("%s: got %v, want 25.1", tc.name, got.Text())
			}
		} else if !got.Equal(tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, got, tc.want)
		}
		if tc.v.dataType.kind == kString {
			continue
		}
		enc, err := tc.v.encode(tc.want)
		if err != nil || !bytes.Equal(enc, tc.raw) {
			t.Errorf("%s: encode: % X, %v; want % X", tc.name, enc, err, tc.raw)
		}
	}
	v := visitor{dataType: dataTypes["int16"], limit: 1, scale: 1}
	if _, err := v.encode(wapper.Int(40000)); err == nil {
		t.Error("int16 40000 encoded")
	}
}

func TestVisitorConfig(t *testing.T) {
	p := func(typ, visitor string) *wapper.Property {
		return &wapper.Property{Property: abi.Property{Name: "x", Type: typ, Visitor: []byte(visitor)}}
	}
	v, err := parseVisitor(p("FLOAT", `{"register":"HoldingRegister","offset":"4","limit":2,"isRegisterSwap":"true"}`))
	if err != nil || v.fc != fcReadHolding || v.offset != 4 || v.limit != 2 || !v.isRegisterSwap || v.dataType.name != "float32" {
		t.Fatalf("visitor %+v, %v", v, err)
	}
	for _, bad := range []string{
		`{"register":"Holding Register"}`,
		`{"register":"HoldingRegister","dataType":"float32","limit":1}`,
		`{"register":"CoilRegister","limit":3}`,
		`{"register":"HoldingRegister","offset":70000}`,
		`{"register":"HoldingRegister","dataType":"complex"}`,
	} {
		if _, err := parseVisitor(p("FLOAT", bad)); abi.CodeOf(err) != abi.ErrInvalid {
			t.Errorf("visitor %s: %v, want invalid argument", bad, err)
		}
	}
}
