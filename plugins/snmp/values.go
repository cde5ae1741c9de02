package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
)

// SNMP types and wapper property types.
//
// Reading, an SNMP value becomes the property's declared type:
//
//   - INTEGER, Counter32, Gauge32, TimeTicks, Unsigned32, Counter64 are
//     numbers (INT, or FLOAT/DOUBLE, times the visitor's scale; STRING
//     as decimal text). A BOOLEAN property reads an INTEGER as a
//     TruthValue: 1 true, 2 false (0 is false too).
//   - OCTET STRING is text for STRING (hex "0a:1b:..." when it is not
//     printable UTF-8, or with format hex), raw bytes for BYTES, and is
//     parsed for numbers and BOOLEAN (agents such as net-snmp's UCD MIB
//     give loads as "0.15").
//   - OBJECT IDENTIFIER (dotted, without the leading dot) and IpAddress
//     are text.
//   - Opaque float and double are numbers.
//   - noSuchObject, noSuchInstance and endOfMibView are errors with code
//     "device error".
//
// Writing, the value goes out as the visitor's snmpType, else as the
// property type suggests: INT as INTEGER, BOOLEAN as a TruthValue
// INTEGER, STRING and BYTES as OCTET STRING, FLOAT and DOUBLE as an
// INTEGER divided by the scale (a FLOAT or DOUBLE property without a
// scale must name its snmpType).

// objectName returns an OID as configData writes it: without a leading
// dot.
func objectName(oid string) string { return strings.TrimPrefix(oid, ".") }

// missing reports a varbind that carries no value: the agent's
// exceptions (and a NULL).
func missing(pdu gosnmp.SnmpPDU) error {
	var why string
	switch pdu.Type {
	case gosnmp.NoSuchObject:
		why = "noSuchObject"
	case gosnmp.NoSuchInstance:
		why = "noSuchInstance"
	case gosnmp.EndOfMibView:
		why = "endOfMibView"
	case gosnmp.Null:
		why = "NULL"
	default:
		return nil
	}
	return wapper.Errorf(wapper.ErrDeviceFailed, "the agent has no value for %s (%s)", objectName(pdu.Name), why)
}

// number is an SNMP number: an integer (signed or not) or a float.
type number struct {
	i     int64
	u     uint64 // when big: above MaxInt64
	f     float64
	big   bool
	float bool
}

func (n number) value() wapper.Value {
	switch {
	case n.float:
		return wapper.Double(n.f)
	case n.big:
		return wapper.Double(float64(n.u))
	}
	return wapper.Int(n.i)
}

func (n number) text() string {
	switch {
	case n.float:
		return strconv.FormatFloat(n.f, 'f', -1, 64)
	case n.big:
		return strconv.FormatUint(n.u, 10)
	}
	return strconv.FormatInt(n.i, 10)
}

// numberOf returns a varbind's number, if it is one.
func numberOf(pdu gosnmp.SnmpPDU) (number, bool) {
	switch x := pdu.Value.(type) {
	case int:
		return number{i: int64(x)}, true
	case int64:
		return number{i: x}, true
	case uint:
		return unsigned(uint64(x)), true
	case uint32:
		return number{i: int64(x)}, true
	case uint64:
		return unsigned(x), true
	case float32:
		return number{f: float64(x), float: true}, true
	case float64:
		return number{f: x, float: true}, true
	}
	return number{}, false
}

func unsigned(u uint64) number {
	if u > math.MaxInt64 {
		return number{u: u, big: true}
	}
	return number{i: int64(u)}
}

// printable reports whether b reads as text: UTF-8 without control
// characters other than tab and line ends.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

// hexText writes bytes as net-snmp and most tools show MAC addresses and
// other binary strings: "00:1a:2b".
func hexText(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", c)
	}
	return sb.String()
}

// octets returns an OCTET STRING as text.
func (v *visitor) octets(b []byte) string {
	t := strings.TrimRight(string(b), "\x00")
	if v.hex || !printable([]byte(t)) {
		return hexText(b)
	}
	return t
}

// toValue converts a varbind to the property type t.
func (v *visitor) toValue(pdu gosnmp.SnmpPDU, t wapper.Type) (wapper.Value, error) {
	if err := missing(pdu); err != nil {
		return wapper.Value{}, err
	}
	bad := func(what string, err error) (wapper.Value, error) {
		return wapper.Value{}, wapper.Errorf(wapper.ErrInvalid, "%s is %s %s, which does not fit the property's type %s: %v", objectName(pdu.Name), typeName(pdu.Type), what, t, err)
	}
	if n, ok := numberOf(pdu); ok {
		if t == wapper.TypeBoolean && pdu.Type == gosnmp.Integer && v.scale == 1 {
			switch n.i {
			case 1:
				return wapper.Bool(true), nil
			case 0, 2:
				return wapper.Bool(false), nil
			}
			return bad(n.text(), fmt.Errorf("a BOOLEAN property reads an INTEGER as a TruthValue: 1 true, 2 false"))
		}
		if t == wapper.TypeString && v.scale == 1 {
			return wapper.String(n.text()), nil
		}
		val := n.value()
		if v.scale != 1 {
			val = wapper.Double(v.mul(val.Double()))
		}
		out, err := wapper.Convert(val, t)
		if err != nil {
			return bad(n.text(), err)
		}
		return out, nil
	}
	switch x := pdu.Value.(type) {
	case []byte:
		switch t {
		case wapper.TypeBytes, wapper.TypeStream:
			val, _ := wapper.Convert(wapper.Bytes(append([]byte(nil), x...)), t)
			return val, nil
		case wapper.TypeString:
			return wapper.String(v.octets(x)), nil
		}
		s := strings.TrimSpace(strings.TrimRight(string(x), "\x00"))
		return v.parse(s, t, func(err error) (wapper.Value, error) { return bad(strconv.Quote(s), err) })
	case string: // OBJECT IDENTIFIER, IpAddress
		s := x
		if pdu.Type == gosnmp.ObjectIdentifier {
			s = objectName(s)
		}
		if t == wapper.TypeString {
			return wapper.String(s), nil
		}
		return v.parse(s, t, func(err error) (wapper.Value, error) { return bad(s, err) })
	case nil:
		if pdu.Type == gosnmp.IPAddress { // an empty IpAddress, from buggy agents
			return bad("empty", fmt.Errorf("no address"))
		}
	}
	return wapper.Value{}, wapper.Errorf(wapper.ErrUnsupported, "%s is of SNMP type %s, which this plugin cannot map to a property", objectName(pdu.Name), typeName(pdu.Type))
}

// parse parses text as type t, scaling numbers.
func (v *visitor) parse(s string, t wapper.Type, bad func(error) (wapper.Value, error)) (wapper.Value, error) {
	switch t {
	case wapper.TypeInt, wapper.TypeFloat, wapper.TypeDouble:
		if v.scale == 1 {
			val, err := wapper.ParseText(t, s)
			if err != nil {
				return bad(err)
			}
			return val, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad(fmt.Errorf("not a number"))
		}
		val, err := wapper.Convert(wapper.Double(v.mul(f)), t)
		if err != nil {
			return bad(err)
		}
		return val, nil
	}
	val, err := wapper.ParseText(t, s)
	if err != nil {
		return bad(err)
	}
	return val, nil
}

// mul scales a number read. A scale such as 0.1 divides by its inverse
// instead, which is exact where the multiplication is not: 873 × 0.1 is
// 87.30000000000001, 873 / 10 is 87.3.
func (v *visitor) mul(f float64) float64 {
	if inv := 1 / v.scale; math.Abs(v.scale) < 1 && inv == math.Round(inv) {
		return f / inv
	}
	return f * v.scale
}

// div unscales a number written, the inverse of mul.
func (v *visitor) div(f float64) float64 {
	if inv := 1 / v.scale; math.Abs(v.scale) < 1 && inv == math.Round(inv) {
		return f * inv
	}
	return f / v.scale
}

// typeName names an SNMP type as the MIBs spell it.
func typeName(t gosnmp.Asn1BER) string {
	switch t {
	case gosnmp.Integer:
		return "INTEGER"
	case gosnmp.OctetString:
		return "OCTET STRING"
	case gosnmp.ObjectIdentifier:
		return "OBJECT IDENTIFIER"
	case gosnmp.IPAddress:
		return "IpAddress"
	case gosnmp.Uinteger32:
		return "Unsigned32"
	}
	return t.String()
}

// walkJSON writes the varbinds of a walk as a JSON object of OID to
// value, in the agent's (lexicographic OID) order: numbers as JSON
// numbers, everything else as strings.
func (v *visitor) walkJSON(pdus []gosnmp.SnmpPDU) string {
	var sb strings.Builder
	sb.WriteByte('{')
	first := true
	for _, pdu := range pdus {
		if missing(pdu) != nil {
			continue
		}
		var val []byte
		if n, ok := numberOf(pdu); ok {
			if n.float && (math.IsNaN(n.f) || math.IsInf(n.f, 0)) {
				val, _ = json.Marshal(n.text())
			} else {
				val = []byte(n.text())
			}
		} else {
			switch x := pdu.Value.(type) {
			case []byte:
				val, _ = json.Marshal(v.octets(x))
			case string:
				if pdu.Type == gosnmp.ObjectIdentifier {
					x = objectName(x)
				}
				val, _ = json.Marshal(x)
			default:
				val = []byte("null")
			}
		}
		if !first {
			sb.WriteByte(',')
		}
		first = false
		key, _ := json.Marshal(objectName(pdu.Name))
		sb.Write(key)
		sb.WriteByte(':')
		sb.Write(val)
	}
	sb.WriteByte('}')
	return sb.String()
}

// snmpTypeFor returns the SNMP type a write of a property of type t sends
// when the visitor names none.
func (v *visitor) snmpTypeFor(t wapper.Type) (gosnmp.Asn1BER, error) {
	if v.setType != 0 {
		return v.setType, nil
	}
	switch t {
	case wapper.TypeInt, wapper.TypeBoolean:
		return gosnmp.Integer, nil
	case wapper.TypeString, wapper.TypeBytes, wapper.TypeStream:
		return gosnmp.OctetString, nil
	case wapper.TypeFloat, wapper.TypeDouble:
		if v.scale != 1 {
			return gosnmp.Integer, nil
		}
	}
	return 0, fmt.Errorf("a writable %s property needs snmpType (the SNMP type to send, such as Integer, OctetString or OpaqueFloat) or a scale (to send an Integer)", t)
}

// toPDU makes the varbind a write of val sends.
func (v *visitor) toPDU(val wapper.Value) (gosnmp.SnmpPDU, error) {
	st, err := v.snmpTypeFor(val.Type())
	if err != nil {
		return gosnmp.SnmpPDU{}, wapper.Errorf(wapper.ErrInvalid, "%v", err)
	}
	pdu := gosnmp.SnmpPDU{Name: "." + v.oid, Type: st}
	bad := func(format string, args ...any) (gosnmp.SnmpPDU, error) {
		return gosnmp.SnmpPDU{}, wapper.Errorf(wapper.ErrInvalid, "%s %s as %s: "+format, append([]any{val.Type(), val.Text(), typeName(st)}, args...)...)
	}
	// num is the value to send as a number: divided by the scale, and a
	// BOOLEAN as a TruthValue.
	num := func() (float64, error) {
		switch val.Type() {
		case wapper.TypeBoolean:
			if st == gosnmp.Integer && v.scale == 1 {
				if val.Bool() {
					return 1, nil
				}
				return 2, nil
			}
			return float64(val.Int()), nil
		case wapper.TypeString:
			f, err := strconv.ParseFloat(strings.TrimSpace(val.Str()), 64)
			if err != nil {
				return 0, fmt.Errorf("not a number")
			}
			return v.div(f), nil
		case wapper.TypeBytes, wapper.TypeStream:
			return 0, fmt.Errorf("bytes are not a number")
		}
		if v.scale == 1 && val.Type() == wapper.TypeInt {
			return float64(val.Int()), nil
		}
		return v.div(val.Double()), nil
	}
	integer := func(lo, hi float64) (float64, error) {
		if val.Type() == wapper.TypeInt && v.scale == 1 {
			n := val.Int()
			if float64(n) < lo || float64(n) > hi {
				return 0, fmt.Errorf("outside %.0f to %.0f", lo, hi)
			}
			return float64(n), nil
		}
		f, err := num()
		if err != nil {
			return 0, err
		}
		f = math.Round(f)
		if math.IsNaN(f) || f < lo || f > hi {
			return 0, fmt.Errorf("outside %.0f to %.0f", lo, hi)
		}
		return f, nil
	}
	switch st {
	case gosnmp.Integer:
		f, err := integer(math.MinInt32, math.MaxInt32)
		if err != nil {
			return bad("%v", err)
		}
		pdu.Value = int(f)
	case gosnmp.Gauge32, gosnmp.Counter32, gosnmp.TimeTicks, gosnmp.Uinteger32:
		f, err := integer(0, math.MaxUint32)
		if err != nil {
			return bad("%v", err)
		}
		pdu.Value = uint32(f)
	case gosnmp.Counter64:
		if val.Type() == wapper.TypeInt && v.scale == 1 {
			if val.Int() < 0 {
				return bad("negative")
			}
			pdu.Value = uint64(val.Int())
			break
		}
		if val.Type() == wapper.TypeString && v.scale == 1 {
			u, err := strconv.ParseUint(strings.TrimSpace(val.Str()), 10, 64)
			if err != nil {
				return bad("not an unsigned 64-bit number")
			}
			pdu.Value = u
			break
		}
		f, err := integer(0, math.Nextafter(math.MaxUint64, 0))
		if err != nil {
			return bad("%v", err)
		}
		pdu.Value = uint64(f)
	case gosnmp.OpaqueFloat, gosnmp.OpaqueDouble:
		f, err := num()
		if err != nil {
			return bad("%v", err)
		}
		if st == gosnmp.OpaqueFloat {
			pdu.Value = float32(f)
		} else {
			pdu.Value = f
		}
	case gosnmp.OctetString:
		switch val.Type() {
		case wapper.TypeBytes, wapper.TypeStream, wapper.TypeString:
			pdu.Value = append([]byte(nil), val.Bytes()...)
		default:
			pdu.Value = []byte(val.Text())
		}
	case gosnmp.IPAddress:
		ip := net.ParseIP(strings.TrimSpace(val.Str())).To4()
		if ip == nil {
			return bad("not an IPv4 address")
		}
		pdu.Value = ip.String()
	case gosnmp.ObjectIdentifier:
		oid, err := normOID(val.Str())
		if err != nil {
			return bad("%v", err)
		}
		pdu.Value = "." + oid
	default:
		return bad("unsupported")
	}
	return pdu, nil
}
