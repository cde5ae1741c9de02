package abi

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Type is a KubeEdge property type, as it travels in the first byte of an
// encoded value.
type Type uint8

// Property types. The numbers are part of the ABI.
const (
	TypeInvalid Type = 0
	TypeInt     Type = 1 // int64, 8 bytes little-endian two's complement
	TypeFloat   Type = 2 // float32, 4 bytes little-endian IEEE 754
	TypeDouble  Type = 3 // float64, 8 bytes little-endian IEEE 754
	TypeString  Type = 4 // UTF-8 text, any length up to MaxMessage
	TypeBoolean Type = 5 // 1 byte, 0 or 1
	TypeBytes   Type = 6 // raw bytes
	TypeStream  Type = 7 // raw bytes, KubeEdge's STREAM
)

var typeNames = [...]string{"", "INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"}

// String returns KubeEdge's spelling ("INT", "FLOAT", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) && t != TypeInvalid {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType maps KubeEdge's spelling to a Type. It accepts lower case too.
func ParseType(s string) (Type, bool) {
	for i := 1; i < len(typeNames); i++ {
		if equalFold(typeNames[i], s) {
			return Type(i), true
		}
	}
	return TypeInvalid, false
}

func equalFold(upper, s string) bool {
	if len(upper) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// Value is a typed property value. The zero Value is invalid.
type Value struct {
	t Type
	n uint64 // INT, FLOAT, DOUBLE, BOOLEAN
	b []byte // STRING, BYTES, STREAM
}

// Int returns an INT value.
func Int(v int64) Value { return Value{t: TypeInt, n: uint64(v)} }

// Float returns a FLOAT value.
func Float(v float32) Value { return Value{t: TypeFloat, n: uint64(math.Float32bits(v))} }

// Double returns a DOUBLE value.
func Double(v float64) Value { return Value{t: TypeDouble, n: math.Float64bits(v)} }

// String returns a STRING value.
func String(v string) Value { return Value{t: TypeString, b: []byte(v)} }

// Bool returns a BOOLEAN value.
func Bool(v bool) Value {
	if v {
		return Value{t: TypeBoolean, n: 1}
	}
	return Value{t: TypeBoolean}
}

// Bytes returns a BYTES value. It keeps b; do not change b afterwards.
func Bytes(b []byte) Value { return Value{t: TypeBytes, b: b} }

// Stream returns a STREAM value. It keeps b.
func Stream(b []byte) Value { return Value{t: TypeStream, b: b} }

// Type returns the value's type.
func (v Value) Type() Type { return v.t }

// IsValid reports whether v holds a value.
func (v Value) IsValid() bool { return v.t != TypeInvalid }

// Int returns an INT as int64, and FLOAT, DOUBLE and BOOLEAN converted.
func (v Value) Int() int64 {
	switch v.t {
	case TypeFloat, TypeDouble:
		return int64(v.Double())
	}
	return int64(v.n)
}

// Double returns a FLOAT or DOUBLE as float64, and INT and BOOLEAN converted.
func (v Value) Double() float64 {
	switch v.t {
	case TypeFloat:
		return float64(math.Float32frombits(uint32(v.n)))
	case TypeDouble:
		return math.Float64frombits(v.n)
	case TypeInt:
		return float64(int64(v.n))
	case TypeBoolean:
		return float64(v.n)
	}
	return 0
}

// Float returns the value as float32.
func (v Value) Float() float32 {
	if v.t == TypeFloat {
		return math.Float32frombits(uint32(v.n))
	}
	return float32(v.Double())
}

// Bool returns a BOOLEAN, or whether a number is non-zero.
func (v Value) Bool() bool {
	if v.t == TypeFloat || v.t == TypeDouble {
		return v.Double() != 0
	}
	return v.n != 0
}

// Bytes returns the raw bytes of a STRING, BYTES or STREAM value. The slice
// is shared with v.
func (v Value) Bytes() []byte { return v.b }

// Str returns a STRING's text. For other types it returns Text().
func (v Value) Str() string {
	if v.t == TypeString {
		return string(v.b)
	}
	return v.Text()
}

// Text returns the value as a KubeEdge twin string: INT in decimal; FLOAT
// and DOUBLE as the shortest plain decimal that parses back to the same
// number, never with an exponent (2500000.5, 1e20 as
// 100000000000000000000, 1e-7 as 0.0000001, -0), infinities as "Inf" and
// "-Inf", NaN as "NaN"; BOOLEAN "true"/"false"; STRING as-is; BYTES and
// STREAM in standard base64. Numbers thus never contain '+', which
// edgecore's twin value check refuses.
func (v Value) Text() string {
	switch v.t {
	case TypeInt:
		return strconv.FormatInt(int64(v.n), 10)
	case TypeFloat:
		return formatFloat(float64(math.Float32frombits(uint32(v.n))), 32)
	case TypeDouble:
		return formatFloat(math.Float64frombits(v.n), 64)
	case TypeBoolean:
		return strconv.FormatBool(v.n != 0)
	case TypeString:
		return string(v.b)
	case TypeBytes, TypeStream:
		return base64.StdEncoding.EncodeToString(v.b)
	}
	return ""
}

// formatFloat formats f as Text does, with the shortest digits for a
// float of bits bits.
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf" // strconv says "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'f', -1, bits) // NaN is "NaN"
}

// TwinType returns the twin type KubeEdge's edgecore accepts for t in a
// twin's metadata.type (edgecore's ValidateValue knows only int, integer,
// float, boolean and string, in lower case): "int" for INT, "float" for
// FLOAT and DOUBLE, "boolean" for BOOLEAN and "string" for the rest.
func (t Type) TwinType() string {
	switch t {
	case TypeInt:
		return "int"
	case TypeFloat, TypeDouble:
		return "float"
	case TypeBoolean:
		return "boolean"
	}
	return "string"
}

// ParseText parses a KubeEdge twin string as a value of type t: the inverse
// of Text. Booleans also accept "1"/"0", "on"/"off" in any case; numbers
// also accept exponents ("1e+06") and "+Inf"; BYTES and STREAM accept the
// URL-safe base64 alphabet and missing padding too.
func ParseText(t Type, s string) (Value, error) {
	switch t {
	case TypeInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			// Accept an integral float such as "12.0".
			f, ferr := strconv.ParseFloat(s, 64)
			var ok bool
			if n, ok = floatToInt(f); ferr != nil || !ok {
				return Value{}, fmt.Errorf("%q is not an INT", s)
			}
		}
		return Int(n), nil
	case TypeFloat:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return Value{}, fmt.Errorf("%q is not a FLOAT", s)
		}
		return Float(float32(f)), nil
	case TypeDouble:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%q is not a DOUBLE", s)
		}
		return Double(f), nil
	case TypeBoolean:
		switch {
		case equalFold("TRUE", s), s == "1", equalFold("ON", s):
			return Bool(true), nil
		case equalFold("FALSE", s), s == "0", equalFold("OFF", s):
			return Bool(false), nil
		}
		return Value{}, fmt.Errorf("%q is not a BOOLEAN (want true or false)", s)
	case TypeString:
		if !utf8.ValidString(s) {
			return Value{}, fmt.Errorf("STRING is not valid UTF-8")
		}
		return String(s), nil
	case TypeBytes, TypeStream:
		b, err := decodeBase64(s)
		if err != nil {
			return Value{}, fmt.Errorf("%s value is not base64: %v", t, err)
		}
		return Value{t: t, b: b}, nil
	}
	return Value{}, fmt.Errorf("unknown property type %v", t)
}

// decodeBase64 decodes the standard or the URL-safe base64 alphabet
// (RFC 4648 §4 and §5), padded or not. A text using both alphabets is
// refused.
func decodeBase64(s string) ([]byte, error) {
	enc, padded := base64.StdEncoding, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '-', '_':
			enc = base64.URLEncoding
		case '=':
			padded = true
		}
	}
	if !padded {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

// Convert returns v as type t when that loses nothing a user would miss:
// numbers to numbers, numbers and booleans to each other, anything to
// STRING, and STRING parsed as t.
func Convert(v Value, t Type) (Value, error) {
	if v.t == t {
		return v, nil
	}
	switch t {
	case TypeInt:
		switch v.t {
		case TypeFloat, TypeDouble:
			f := v.Double()
			n, ok := floatToInt(f)
			if !ok {
				return Value{}, fmt.Errorf("%s %v is not an integer in INT's range", v.t, f)
			}
			return Int(n), nil
		case TypeBoolean:
			return Int(int64(v.n)), nil
		}
	case TypeFloat:
		if v.t == TypeInt || v.t == TypeDouble || v.t == TypeBoolean {
			return Float(float32(v.Double())), nil
		}
	case TypeDouble:
		if v.t == TypeInt || v.t == TypeFloat || v.t == TypeBoolean {
			return Double(v.Double()), nil
		}
	case TypeBoolean:
		if v.t == TypeInt || v.t == TypeFloat || v.t == TypeDouble {
			return Bool(v.Bool()), nil
		}
	case TypeString:
		return String(v.Text()), nil
	case TypeBytes, TypeStream:
		if v.t == TypeBytes || v.t == TypeStream {
			return Value{t: t, b: v.b}, nil
		}
	}
	if v.t == TypeString {
		return ParseText(t, string(v.b))
	}
	return Value{}, fmt.Errorf("cannot convert %s to %s", v.t, t)
}

// floatToInt returns f as an int64 when f is integral and in int64's
// range (Go leaves the conversion of anything else undefined: on amd64 it
// gives math.MinInt64).
func floatToInt(f float64) (int64, bool) {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// EncodedLen returns the length of v's encoding.
func (v Value) EncodedLen() int {
	switch v.t {
	case TypeInt, TypeDouble:
		return 9
	case TypeFloat:
		return 5
	case TypeBoolean:
		return 2
	}
	return 1 + len(v.b)
}

// AppendEncode appends v's ABI encoding (a type byte and the payload) to dst.
func (v Value) AppendEncode(dst []byte) []byte {
	dst = append(dst, byte(v.t))
	switch v.t {
	case TypeInt, TypeDouble:
		return binary.LittleEndian.AppendUint64(dst, v.n)
	case TypeFloat:
		return binary.LittleEndian.AppendUint32(dst, uint32(v.n))
	case TypeBoolean:
		return append(dst, byte(v.n))
	}
	return append(dst, v.b...)
}

// Encode returns v's ABI encoding.
func (v Value) Encode() []byte { return v.AppendEncode(make([]byte, 0, v.EncodedLen())) }

// DecodeValue decodes an ABI value. Variable-length payloads are copied, so
// the result never aliases b.
func DecodeValue(b []byte) (Value, error) {
	v, err := DecodeValueNoCopy(b)
	if err == nil && v.b != nil {
		v.b = append([]byte(nil), v.b...)
	}
	return v, err
}

// DecodeValueNoCopy decodes an ABI value whose variable-length payload
// aliases b.
func DecodeValueNoCopy(b []byte) (Value, error) {
	if len(b) == 0 {
		return Value{}, fmt.Errorf("empty value")
	}
	if len(b) > MaxMessage {
		return Value{}, fmt.Errorf("value of %d bytes exceeds the %d byte limit", len(b), MaxMessage)
	}
	t, p := Type(b[0]), b[1:]
	want := 0
	switch t {
	case TypeInt, TypeDouble:
		want = 8
	case TypeFloat:
		want = 4
	case TypeBoolean:
		want = 1
	case TypeString:
		if !utf8.Valid(p) {
			return Value{}, fmt.Errorf("STRING value is not valid UTF-8")
		}
		return Value{t: t, b: p}, nil
	case TypeBytes, TypeStream:
		return Value{t: t, b: p}, nil
	default:
		return Value{}, fmt.Errorf("unknown value type byte %d", b[0])
	}
	if len(p) != want {
		return Value{}, fmt.Errorf("%s value has %d payload bytes, want %d", t, len(p), want)
	}
	switch want {
	case 8:
		return Value{t: t, n: binary.LittleEndian.Uint64(p)}, nil
	case 4:
		return Value{t: t, n: uint64(binary.LittleEndian.Uint32(p))}, nil
	}
	if p[0] > 1 {
		return Value{}, fmt.Errorf("BOOLEAN byte is %d, want 0 or 1", p[0])
	}
	return Value{t: t, n: uint64(p[0])}, nil
}

// Equal reports whether two values have the same type and content.
func (v Value) Equal(w Value) bool {
	if v.t != w.t || v.n != w.n || len(v.b) != len(w.b) {
		return false
	}
	for i := range v.b {
		if v.b[i] != w.b[i] {
			return false
		}
	}
	return true
}

// GoString shows the type and text, for tests and logs.
func (v Value) GoString() string { return v.t.String() + "(" + v.Text() + ")" }
