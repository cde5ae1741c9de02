package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
)

func TestFromVariant(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 500_000_000, time.UTC)
	for _, tc := range []struct {
		in   any
		want wapper.Value
	}{
		{true, wapper.Bool(true)},
		{int8(-3), wapper.Int(-3)},
		{uint8(200), wapper.Int(200)},
		{int16(-300), wapper.Int(-300)},
		{uint16(60000), wapper.Int(60000)},
		{int32(-70000), wapper.Int(-70000)},
		{uint32(4000000000), wapper.Int(4000000000)},
		{int64(math.MinInt64), wapper.Int(math.MinInt64)},
		{uint64(math.MaxUint64), wapper.String("18446744073709551615")},
		{float32(1.5), wapper.Float(1.5)},
		{21.5, wapper.Double(21.5)},
		{"boiler-1", wapper.String("boiler-1")},
		{[]byte{1, 2}, wapper.Bytes([]byte{1, 2})},
		{ts, wapper.String("2024-05-06T07:08:09.5Z")},
		{ua.NewLocalizedText("hot"), wapper.String("hot")},
		{ua.NewStringNodeID(2, "X"), wapper.String("ns=2;s=X")},
		{[]int32{1, 2, 3}, wapper.String("[1,2,3]")},
		{[]string{"a", "b"}, wapper.String(`["a","b"]`)},
	} {
		v, err := ua.NewVariant(tc.in)
		if err != nil {
			t.Fatalf("%T: %v", tc.in, err)
		}
		got, err := fromVariant(v)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("%T %v: %#v, %v; want %#v", tc.in, tc.in, got, err, tc.want)
		}
	}
	if _, err := fromVariant(&ua.Variant{}); err == nil {
		t.Error("a null variant converted")
	}
}

func TestToVariant(t *testing.T) {
	for _, tc := range []struct {
		in   wapper.Value
		typ  ua.TypeID
		want any
	}{
		{wapper.Double(72.25), ua.TypeIDDouble, 72.25},
		{wapper.Int(3), ua.TypeIDDouble, 3.0},
		{wapper.Double(3), ua.TypeIDInt32, int32(3)},
		{wapper.Int(-128), ua.TypeIDSByte, int8(-128)},
		{wapper.Int(255), ua.TypeIDByte, uint8(255)},
		{wapper.Int(65535), ua.TypeIDUint16, uint16(65535)},
		{wapper.Int(1 << 40), ua.TypeIDInt64, int64(1 << 40)},
		{wapper.Int(7), ua.TypeIDUint64, uint64(7)},
		{wapper.Double(1.5), ua.TypeIDFloat, float32(1.5)},
		{wapper.String("true"), ua.TypeIDBoolean, true},
		{wapper.Int(42), ua.TypeIDString, "42"},
		{wapper.Bytes([]byte{9}), ua.TypeIDByteString, []byte{9}},
	} {
		v, err := toVariant(tc.in, tc.typ)
		if err != nil {
			t.Errorf("%#v to %s: %v", tc.in, typeName(tc.typ), err)
			continue
		}
		if v.Type() != tc.typ {
			t.Errorf("%#v to %s: variant of type %s", tc.in, typeName(tc.typ), typeName(v.Type()))
		}
		if b, ok := tc.want.([]byte); ok {
			if string(v.Value().([]byte)) != string(b) {
				t.Errorf("%#v to ByteString: %v", tc.in, v.Value())
			}
			continue
		}
		if v.Value() != tc.want {
			t.Errorf("%#v to %s: %#v, want %#v", tc.in, typeName(tc.typ), v.Value(), tc.want)
		}
	}
	for _, tc := range []struct {
		in   wapper.Value
		typ  ua.TypeID
		want string
	}{
		{wapper.Int(300), ua.TypeIDByte, "does not fit Byte"},
		{wapper.Int(-1), ua.TypeIDUint32, "does not fit UInt32"},
		{wapper.Int(1 << 40), ua.TypeIDInt32, "does not fit Int32"},
		{wapper.String("warm"), ua.TypeIDDouble, ""},
		{wapper.String("yesterday"), ua.TypeIDDateTime, "RFC 3339"},
		{wapper.Int(1), ua.TypeIDGUID, "not supported"},
	} {
		if _, err := toVariant(tc.in, tc.typ); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%#v to %s: %v, want an error mentioning %q", tc.in, typeName(tc.typ), err, tc.want)
		}
	}
}

func TestWritableType(t *testing.T) {
	if typ, ok := writableType(ua.MustVariant(int32(1))); !ok || typ != ua.TypeIDInt32 {
		t.Errorf("Int32: %v %v", typ, ok)
	}
	if _, ok := writableType(ua.MustVariant([]int32{1})); ok {
		t.Error("an array is writable as a scalar")
	}
	if _, ok := writableType(&ua.Variant{}); ok {
		t.Error("a null value has a type")
	}
}
