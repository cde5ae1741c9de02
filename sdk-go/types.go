package wapper

import "wapper.dev/wapper/abi"

// Value is a typed property value: one of the types of a KubeEdge
// property (its [Type]) and the value. The zero Value is invalid (no
// type). Make one with [Int], [Float], [Double], [String], [Bool] or
// [Bytes], or [ParseText] from a twin string; [Convert] converts between
// types where nothing is lost.
//
// Value is an alias of abi.Value, whose methods are:
//
//	Type() Type                       the value's type
//	IsValid() bool                    whether v holds a value (is not the zero Value)
//	Int() int64                       an INT; FLOAT, DOUBLE and BOOLEAN converted
//	Double() float64                  a FLOAT or DOUBLE; INT and BOOLEAN converted
//	Float() float32                   the value as float32
//	Bool() bool                       a BOOLEAN, or whether a number is non-zero
//	Str() string                      a STRING's text; for other types, Text()
//	Bytes() []byte                    the bytes of a STRING, BYTES or STREAM (shared with v)
//	Text() string                     the KubeEdge twin text: 42, 2500000.5, true, base64 for BYTES
//	Equal(w Value) bool               same type and same content
//	Encode() []byte                   the ABI encoding (type byte, payload; ABI §4)
//	AppendEncode(dst []byte) []byte   Encode, appended to dst
//	EncodedLen() int                  the length of Encode()
//	GoString() string                 "INT(42)", for %#v
//
// See the abi package for their full documentation.
type Value = abi.Value

// Type is a KubeEdge property type. Its methods (of abi.Type): String()
// gives KubeEdge's spelling ("INT"), TwinType() the type name KubeEdge's
// twin metadata uses ("int", "float", "boolean", "string").
type Type = abi.Type

// State is a device state. Its method String() (of abi.State) gives
// KubeEdge's spelling ("ok", "offline").
type State = abi.State

// Code is an ABI status code. Its method String() (of abi.Code) names it
// ("not found", "plugin code 70").
type Code = abi.Code

// Error is an error with a status code; return one from a Driver method to
// choose the code the host sees. Other errors are reported as "internal".
// Its fields are Code and Message (the text the host sees, without the
// code's name); [Errorf] makes one.
type Error = abi.Error

// Property types.
const (
	TypeInt     = abi.TypeInt
	TypeFloat   = abi.TypeFloat
	TypeDouble  = abi.TypeDouble
	TypeString  = abi.TypeString
	TypeBoolean = abi.TypeBoolean
	TypeBytes   = abi.TypeBytes
	TypeStream  = abi.TypeStream
)

// Device states.
const (
	StateUnknown   = abi.StateUnknown
	StateOK        = abi.StateOK
	StateOnline    = abi.StateOnline
	StateOffline   = abi.StateOffline
	StateUnhealthy = abi.StateUnhealthy
)

// Status codes.
const (
	OK              = abi.OK
	ErrInternal     = abi.ErrInternal
	ErrInvalid      = abi.ErrInvalid
	ErrNotFound     = abi.ErrNotFound
	ErrUnsupported  = abi.ErrUnsupported
	ErrTimeout      = abi.ErrTimeout
	ErrUnavailable  = abi.ErrUnavailable
	ErrDenied       = abi.ErrDenied
	ErrReadOnly     = abi.ErrReadOnly
	ErrTooLarge     = abi.ErrTooLarge
	ErrLimit        = abi.ErrLimit
	ErrClosed       = abi.ErrClosed
	ErrIO           = abi.ErrIO
	ErrPanic        = abi.ErrPanic
	ErrDeviceFailed = abi.ErrDeviceFailed
)

// Errorf returns an error with a status code and a formatted message.
func Errorf(c Code, format string, args ...any) error { return abi.Errorf(c, format, args...) }

// CodeOf returns the status code err carries (found through wrapping):
// OK for nil, the code of an [Error], else ErrInternal, as the host
// reports it.
func CodeOf(err error) Code { return abi.CodeOf(err) }

// Int returns an INT value.
func Int(v int64) Value { return abi.Int(v) }

// Float returns a FLOAT value.
func Float(v float32) Value { return abi.Float(v) }

// Double returns a DOUBLE value.
func Double(v float64) Value { return abi.Double(v) }

// String returns a STRING value.
func String(v string) Value { return abi.String(v) }

// Bool returns a BOOLEAN value.
func Bool(v bool) Value { return abi.Bool(v) }

// Bytes returns a BYTES value.
func Bytes(b []byte) Value { return abi.Bytes(b) }

// ParseText parses a twin string as a value of type t.
func ParseText(t Type, s string) (Value, error) { return abi.ParseText(t, s) }

// Convert converts v to type t where nothing is lost.
func Convert(v Value, t Type) (Value, error) { return abi.Convert(v, t) }
