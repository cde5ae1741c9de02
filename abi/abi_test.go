package abi

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestValueRoundTrip(t *testing.T) {
	values := []Value{
		Int(0), Int(-1), Int(math.MaxInt64), Int(math.MinInt64),
		Float(0), Float(-1.5), Float(math.MaxFloat32), Float(float32(math.Inf(1))),
		Double(3.141592653589793), Double(-0.0), Double(math.SmallestNonzeroFloat64),
		String(""), String("héllo, wörld"), Bool(true), Bool(false),
		Bytes(nil), Bytes([]byte{0, 1, 2, 255}), Stream([]byte("frame")),
	}
	for _, v := range values {
		enc := v.Encode()
		if len(enc) != v.EncodedLen() {
			t.Errorf("%#v: EncodedLen %d, encoding %d bytes", v, v.EncodedLen(), len(enc))
		}
		got, err := DecodeValue(enc)
		if err != nil || !got.Equal(v) {
			t.Errorf("%#v: decoded %#v, %v", v, got, err)
		}
		// Twin text round trip.
		back, err := ParseText(v.Type(), v.Text())
		if err != nil || !back.Equal(v) {
			t.Errorf("%#v: text %q parsed as %#v, %v", v, v.Text(), back, err)
		}
	}
}

func TestKnownEncodings(t *testing.T) {
	cases := []struct {
		v    Value
		want []byte
	}{
		{Int(-2), []byte{1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{Float(1), []byte{2, 0, 0, 0x80, 0x3f}},
		{Double(1), []byte{3, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}},
		{String("ok"), []byte{4, 'o', 'k'}},
		{Bool(true), []byte{5, 1}},
		{Bytes([]byte{9}), []byte{6, 9}},
	}
	for _, c := range cases {
		if got := c.v.Encode(); !bytes.Equal(got, c.want) {
			t.Errorf("%#v encodes as % x, want % x", c.v, got, c.want)
		}
	}
	if Float(21.5).Text() != "21.5" || Double(1e21).Text() != "1000000000000000000000" || Bytes([]byte("hi")).Text() != "aGk=" {
		t.Errorf("text forms: %q %q %q", Float(21.5).Text(), Double(1e21).Text(), Bytes([]byte("hi")).Text())
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	bad := map[string][]byte{
		"empty":          nil,
		"unknown type":   {99, 1},
		"short int":      {1, 1, 2},
		"long float":     {2, 0, 0, 0, 0, 0},
		"bool 2":         {5, 2},
		"bool empty":     {5},
		"invalid utf8":   {4, 0xff, 0xfe},
		"type zero":      {0},
		"double trailer": {3, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	}
	for name, b := range bad {
		if v, err := DecodeValue(b); err == nil {
			t.Errorf("%s: decoded %#v", name, v)
		}
	}
}

func TestParseText(t *testing.T) {
	ok := []struct {
		t    Type
		s    string
		want Value
	}{
		{TypeInt, "42", Int(42)}, {TypeInt, "12.0", Int(12)}, {TypeBoolean, "ON", Bool(true)},
		{TypeBoolean, "0", Bool(false)}, {TypeDouble, "-1e3", Double(-1000)}, {TypeFloat, "0.5", Float(0.5)},
	}
	for _, c := range ok {
		if v, err := ParseText(c.t, c.s); err != nil || !v.Equal(c.want) {
			t.Errorf("ParseText(%v, %q) = %#v, %v", c.t, c.s, v, err)
		}
	}
	for _, c := range []struct {
		t Type
		s string
	}{{TypeInt, "12.5"}, {TypeInt, "x"}, {TypeBoolean, "maybe"}, {TypeFloat, "warm"}, {TypeBytes, "!!"}} {
		if _, err := ParseText(c.t, c.s); err == nil {
			t.Errorf("ParseText(%v, %q) accepted", c.t, c.s)
		}
	}
}

func TestConvert(t *testing.T) {
	if v, err := Convert(Int(3), TypeDouble); err != nil || v.Double() != 3 {
		t.Error(v, err)
	}
	if v, err := Convert(Double(2.5), TypeString); err != nil || v.Str() != "2.5" {
		t.Error(v, err)
	}
	if v, err := Convert(String("true"), TypeBoolean); err != nil || !v.Bool() {
		t.Error(v, err)
	}
	if _, err := Convert(Double(2.5), TypeInt); err == nil {
		t.Error("2.5 converted to INT")
	}
	if _, err := Convert(Bytes([]byte{1}), TypeInt); err == nil {
		t.Error("BYTES converted to INT")
	}
}

func TestTypesAndStates(t *testing.T) {
	for _, n := range []string{"INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"} {
		ty, ok := ParseType(n)
		if !ok || ty.String() != n {
			t.Errorf("ParseType(%q) = %v, %v", n, ty, ok)
		}
	}
	if ty, ok := ParseType("boolean"); !ok || ty != TypeBoolean {
		t.Error("lower case type refused")
	}
	if _, ok := ParseType("DECIMAL"); ok {
		t.Error("DECIMAL accepted")
	}
	for s := StateUnknown; s <= StateUnhealthy; s++ {
		if got, ok := ParseState(s.String()); !ok || got != s {
			t.Errorf("state %v round trip = %v", s, got)
		}
	}
}

func TestResultsAndBatch(t *testing.T) {
	ptr, n := Unpack(Pack(0x7fff_fff0, 12))
	if ptr != 0x7fff_fff0 || n != 12 {
		t.Fatal(ptr, n)
	}
	if p, err := ParseResult(AppendResult(nil, OK, []byte{7})); err != nil || !bytes.Equal(p, []byte{7}) {
		t.Fatal(p, err)
	}
	_, err := ParseResult(AppendResult(nil, ErrDeviceFailed, []byte("exception 2")))
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != ErrDeviceFailed || ae.Message != "exception 2" || err.Error() != "device error: exception 2" {
		t.Fatalf("%#v", err)
	}
	buf := AppendBatchEntry(nil, OK, Int(5).Encode())
	buf = AppendBatchEntry(buf, ErrTimeout, []byte("no answer"))
	entries, err := ParseBatch(buf, 2)
	if err != nil || entries[0].Value.Int() != 5 || CodeOf(entries[1].Err) != ErrTimeout {
		t.Fatalf("%+v %v", entries, err)
	}
	if _, err := ParseBatch(buf, 3); err == nil {
		t.Error("short batch accepted")
	}
	if _, err := ParseBatch(append(buf, 0), 2); err == nil {
		t.Error("trailing bytes accepted")
	}
	if _, err := ParseBatch(buf[:len(buf)-1], 2); err == nil {
		t.Error("truncated entry accepted")
	}
	hs, err := ParseHandles(AppendHandles(nil, []uint32{1, 2, 0xffffffff}))
	if err != nil || fmt.Sprint(hs) != "[1 2 4294967295]" {
		t.Fatal(hs, err)
	}
	if _, err := ParseHandles([]byte{1, 2, 3}); err == nil {
		t.Error("ragged handles accepted")
	}
	if ms, err := ParsePollNext(EncodePollNext(250)); err != nil || ms != 250 {
		t.Fatal(ms, err)
	}
	if st, why, err := ParseStateResult(append([]byte{byte(StateOffline)}, "cable"...)); err != nil || st != StateOffline || why != "cable" {
		t.Fatal(st, why, err)
	}
	if _, _, err := ParseStateResult([]byte{9}); err == nil {
		t.Error("state 9 accepted")
	}
}

func TestCodeOf(t *testing.T) {
	wrapped := fmt.Errorf("reading: %w", Errorf(ErrTimeout, "slow"))
	if CodeOf(wrapped) != ErrTimeout || CodeOf(errors.New("x")) != ErrInternal || CodeOf(nil) != OK {
		t.Fatal("CodeOf")
	}
	if MessageOf(Errorf(ErrIO, "eof")) != "eof" || !strings.Contains(Code(77).String(), "77") {
		t.Fatal("MessageOf/String")
	}
}

// FuzzDecodeValue checks that no input crashes the decoder and that what
// decodes re-encodes to the same bytes.
func FuzzDecodeValue(f *testing.F) {
	for _, v := range []Value{Int(1), Float(2), Double(3), String("s"), Bool(true), Bytes([]byte{1})} {
		f.Add(v.Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		if !bytes.Equal(v.Encode(), b) {
			t.Fatalf("% x decoded to %#v which encodes as % x", b, v, v.Encode())
		}
	})
}

// FuzzParseBatch checks that no batch payload crashes the parser.
func FuzzParseBatch(f *testing.F) {
	f.Add(AppendBatchEntry(nil, OK, Int(1).Encode()), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		ParseBatch(b, n)
	})
}
