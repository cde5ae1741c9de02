package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
)

func vis(scale float64, hex bool) *visitor {
	return &visitor{oid: "1.3.6.1.4.1.99999.1.0", scale: scale, hex: hex, max: defaultMaxEntries}
}

func pdu(t gosnmp.Asn1BER, v any) gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Name: ".1.3.6.1.4.1.99999.1.0", Type: t, Value: v}
}

// SNMP values read into each property type, as gosnmp decodes them.
func TestToValue(t *testing.T) {
	for _, tc := range []struct {
		v    *visitor
		pdu  gosnmp.SnmpPDU
		typ  wapper.Type
		want wapper.Value
	}{
		{vis(1, false), pdu(gosnmp.Integer, -42), wapper.TypeInt, wapper.Int(-42)},
		{vis(1, false), pdu(gosnmp.Integer, 42), wapper.TypeDouble, wapper.Double(42)},
		{vis(1, false), pdu(gosnmp.Integer, 42), wapper.TypeString, wapper.String("42")},
		{vis(0.1, false), pdu(gosnmp.Integer, 215), wapper.TypeDouble, wapper.Double(21.5)},
		{vis(0.5, false), pdu(gosnmp.Integer, 215), wapper.TypeFloat, wapper.Float(107.5)},
		{vis(10, false), pdu(gosnmp.Integer, 21), wapper.TypeInt, wapper.Int(210)},
		{vis(1, false), pdu(gosnmp.Counter32, uint(4000000000)), wapper.TypeInt, wapper.Int(4000000000)},
		{vis(1, false), pdu(gosnmp.Gauge32, uint(7)), wapper.TypeInt, wapper.Int(7)},
		{vis(1, false), pdu(gosnmp.TimeTicks, uint32(123456)), wapper.TypeInt, wapper.Int(123456)},
		{vis(1, false), pdu(gosnmp.Uinteger32, uint32(9)), wapper.TypeInt, wapper.Int(9)},
		{vis(1, false), pdu(gosnmp.Counter64, uint64(1)<<40), wapper.TypeInt, wapper.Int(1 << 40)},
		{vis(1, false), pdu(gosnmp.Counter64, uint64(math.MaxUint64)), wapper.TypeString, wapper.String("18446744073709551615")},
		{vis(1, false), pdu(gosnmp.Counter64, uint64(math.MaxUint64)), wapper.TypeDouble, wapper.Double(math.MaxUint64)},
		// TruthValue: 1 true, 2 false.
		{vis(1, false), pdu(gosnmp.Integer, 1), wapper.TypeBoolean, wapper.Bool(true)},
		{vis(1, false), pdu(gosnmp.Integer, 2), wapper.TypeBoolean, wapper.Bool(false)},
		{vis(1, false), pdu(gosnmp.Gauge32, uint(3)), wapper.TypeBoolean, wapper.Bool(true)},
		{vis(1, false), pdu(gosnmp.OpaqueFloat, float32(1.5)), wapper.TypeFloat, wapper.Float(1.5)},
		{vis(1, false), pdu(gosnmp.OpaqueDouble, 2.25), wapper.TypeDouble, wapper.Double(2.25)},
		{vis(1, false), pdu(gosnmp.OpaqueDouble, 2.0), wapper.TypeInt, wapper.Int(2)},
		// OCTET STRINGs.
		{vis(1, false), pdu(gosnmp.OctetString, []byte("wapper-e2e")), wapper.TypeString, wapper.String("wapper-e2e")},
		{vis(1, false), pdu(gosnmp.OctetString, []byte("padded\x00\x00")), wapper.TypeString, wapper.String("padded")},
		{vis(1, false), pdu(gosnmp.OctetString, []byte{0x00, 0x1a, 0x2b, 0xff}), wapper.TypeString, wapper.String("00:1a:2b:ff")},
		{vis(1, true), pdu(gosnmp.OctetString, []byte("AB")), wapper.TypeString, wapper.String("41:42")},
		{vis(1, false), pdu(gosnmp.OctetString, []byte{0x00, 0x1a}), wapper.TypeBytes, wapper.Bytes([]byte{0x00, 0x1a})},
		{vis(1, false), pdu(gosnmp.OctetString, []byte(" 0.15 ")), wapper.TypeDouble, wapper.Double(0.15)},
		{vis(100, false), pdu(gosnmp.OctetString, []byte("0.15")), wapper.TypeInt, wapper.Int(15)},
		{vis(1, false), pdu(gosnmp.OctetString, []byte("42")), wapper.TypeInt, wapper.Int(42)},
		{vis(1, false), pdu(gosnmp.OctetString, []byte("on")), wapper.TypeBoolean, wapper.Bool(true)},
		// OIDs and addresses.
		{vis(1, false), pdu(gosnmp.ObjectIdentifier, ".1.3.6.1.4.1.8072.3.2.10"), wapper.TypeString, wapper.String("1.3.6.1.4.1.8072.3.2.10")},
		{vis(1, false), pdu(gosnmp.IPAddress, "10.0.0.5"), wapper.TypeString, wapper.String("10.0.0.5")},
	} {
		got, err := tc.v.toValue(tc.pdu, tc.typ)
		if err != nil {
			t.Errorf("%s %v as %s: %v", tc.pdu.Type, tc.pdu.Value, tc.typ, err)
			continue
		}
		if !got.Equal(tc.want) {
			t.Errorf("%s %v as %s: %#v, want %#v", tc.pdu.Type, tc.pdu.Value, tc.typ, got, tc.want)
		}
	}
}

func TestToValueErrors(t *testing.T) {
	for _, tc := range []struct {
		pdu  gosnmp.SnmpPDU
		typ  wapper.Type
		code wapper.Code
		want string
	}{
		{pdu(gosnmp.NoSuchObject, nil), wapper.TypeString, wapper.ErrDeviceFailed, "the agent has no value for 1.3.6.1.4.1.99999.1.0 (noSuchObject)"},
		{pdu(gosnmp.NoSuchInstance, nil), wapper.TypeInt, wapper.ErrDeviceFailed, "noSuchInstance"},
		{pdu(gosnmp.EndOfMibView, nil), wapper.TypeInt, wapper.ErrDeviceFailed, "endOfMibView"},
		{pdu(gosnmp.Integer, 3), wapper.TypeBoolean, wapper.ErrInvalid, "TruthValue"},
		{pdu(gosnmp.Counter64, uint64(math.MaxUint64)), wapper.TypeInt, wapper.ErrInvalid, "Counter64 18446744073709551615"},
		{pdu(gosnmp.OctetString, []byte("warm")), wapper.TypeDouble, wapper.ErrInvalid, `OCTET STRING "warm", which does not fit the property's type DOUBLE`},
		{pdu(gosnmp.IPAddress, "10.0.0.5"), wapper.TypeInt, wapper.ErrInvalid, "IpAddress 10.0.0.5"},
		{pdu(gosnmp.UnknownType, nil), wapper.TypeInt, wapper.ErrUnsupported, "cannot map"},
	} {
		_, err := vis(1, false).toValue(tc.pdu, tc.typ)
		if err == nil || !strings.Contains(err.Error(), tc.want) || wapper.CodeOf(err) != tc.code {
			t.Errorf("%s %v as %s: error %v (code %s), want %s saying %q", tc.pdu.Type, tc.pdu.Value, tc.typ, err, wapper.CodeOf(err), tc.code, tc.want)
		}
	}
}

// Values written become the varbind of a set.
func TestToPDU(t *testing.T) {
	withType := func(st gosnmp.Asn1BER, scale float64) *visitor {
		v := vis(scale, false)
		v.setType = st
		return v
	}
	for _, tc := range []struct {
		v    *visitor
		val  wapper.Value
		typ  gosnmp.Asn1BER
		want any
	}{
		{vis(1, false), wapper.Int(-7), gosnmp.Integer, -7},
		{vis(1, false), wapper.Bool(true), gosnmp.Integer, 1},
		{vis(1, false), wapper.Bool(false), gosnmp.Integer, 2},
		{vis(1, false), wapper.String("ops@example"), gosnmp.OctetString, []byte("ops@example")},
		{vis(1, false), wapper.Bytes([]byte{1, 2}), gosnmp.OctetString, []byte{1, 2}},
		{vis(0.1, false), wapper.Double(22.5), gosnmp.Integer, 225},
		{vis(0.1, false), wapper.Float(-0.3), gosnmp.Integer, -3},
		{withType(gosnmp.Gauge32, 1), wapper.Int(4000000000), gosnmp.Gauge32, uint32(4000000000)},
		{withType(gosnmp.TimeTicks, 1), wapper.Int(100), gosnmp.TimeTicks, uint32(100)},
		{withType(gosnmp.Counter64, 1), wapper.Int(1 << 40), gosnmp.Counter64, uint64(1 << 40)},
		{withType(gosnmp.Counter64, 1), wapper.String("18446744073709551615"), gosnmp.Counter64, uint64(math.MaxUint64)},
		{withType(gosnmp.OctetString, 1), wapper.Double(21.5), gosnmp.OctetString, []byte("21.5")},
		{withType(gosnmp.OpaqueFloat, 1), wapper.Float(1.5), gosnmp.OpaqueFloat, float32(1.5)},
		{withType(gosnmp.OpaqueDouble, 1), wapper.Double(2.5), gosnmp.OpaqueDouble, 2.5},
		{withType(gosnmp.IPAddress, 1), wapper.String("10.0.0.9"), gosnmp.IPAddress, "10.0.0.9"},
		{withType(gosnmp.ObjectIdentifier, 1), wapper.String("1.3.6.1.4.1.99999"), gosnmp.ObjectIdentifier, ".1.3.6.1.4.1.99999"},
		{withType(gosnmp.Integer, 1), wapper.String("12"), gosnmp.Integer, 12},
	} {
		got, err := tc.v.toPDU(tc.val)
		if err != nil {
			t.Errorf("%#v: %v", tc.val, err)
			continue
		}
		gb, _ := json.Marshal(got.Value)
		wb, _ := json.Marshal(tc.want)
		if got.Name != ".1.3.6.1.4.1.99999.1.0" || got.Type != tc.typ || string(gb) != string(wb) {
			t.Errorf("%#v: %s %s %#v, want %s %#v", tc.val, got.Name, got.Type, got.Value, tc.typ, tc.want)
		}
		// gosnmp can encode what the plugin makes.
		pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "c", PDUType: gosnmp.SetRequest, Variables: []gosnmp.SnmpPDU{got}}
		if _, err := pkt.MarshalMsg(); err != nil {
			t.Errorf("%#v: gosnmp cannot encode %#v: %v", tc.val, got, err)
		}
	}
}

func TestToPDUErrors(t *testing.T) {
	withType := func(st gosnmp.Asn1BER) *visitor {
		v := vis(1, false)
		v.setType = st
		return v
	}
	for _, tc := range []struct {
		v    *visitor
		val  wapper.Value
		want string
	}{
		{vis(1, false), wapper.Int(1 << 40), "outside -2147483648 to 2147483647"},
		{vis(1, false), wapper.Double(1.5), "needs snmpType"},
		{withType(gosnmp.Gauge32), wapper.Int(-1), "outside 0 to 4294967295"},
		{withType(gosnmp.Counter64), wapper.Int(-1), "negative"},
		{withType(gosnmp.Integer), wapper.String("many"), "not a number"},
		{withType(gosnmp.IPAddress), wapper.String("::1"), "not an IPv4 address"},
		{withType(gosnmp.ObjectIdentifier), wapper.String("sysName"), "not a numeric OID"},
		{withType(gosnmp.Integer), wapper.Bytes([]byte{1}), "bytes are not a number"},
	} {
		_, err := tc.v.toPDU(tc.val)
		if err == nil || !strings.Contains(err.Error(), tc.want) || wapper.CodeOf(err) != wapper.ErrInvalid {
			t.Errorf("%#v: error %v, want invalid argument saying %q", tc.val, err, tc.want)
		}
	}
}

func TestWalkJSON(t *testing.T) {
	got := vis(1, false).walkJSON([]gosnmp.SnmpPDU{
		{Name: ".1.3.6.1.2.1.1.1.0", Type: gosnmp.OctetString, Value: []byte("agent \"one\"")},
		{Name: ".1.3.6.1.2.1.1.2.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.4.1.8072"},
		{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(472)},
		{Name: ".1.3.6.1.2.1.1.10.0", Type: gosnmp.Counter64, Value: uint64(math.MaxUint64)},
		{Name: ".1.3.6.1.2.1.1.11.0", Type: gosnmp.NoSuchInstance},
		{Name: ".1.3.6.1.2.1.1.2.0", Type: gosnmp.OpaqueDouble, Value: math.NaN()},
		{Name: ".1.3.6.1.2.1.2.2.1.6.2", Type: gosnmp.OctetString, Value: []byte{0, 0x1a, 0x2b}},
	})
	want := `{"1.3.6.1.2.1.1.1.0":"agent \"one\"","1.3.6.1.2.1.1.2.0":"1.3.6.1.4.1.8072","1.3.6.1.2.1.1.3.0":472,` +
		`"1.3.6.1.2.1.1.10.0":18446744073709551615,"1.3.6.1.2.1.1.2.0":"NaN","1.3.6.1.2.1.2.2.1.6.2":"00:1a:2b"}`
	if got != want {
		t.Errorf("walk JSON\n got %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Errorf("walk JSON is not valid JSON: %s", got)
	}
	if got := vis(1, false).walkJSON(nil); got != "{}" {
		t.Errorf("empty walk: %s", got)
	}
}
