package wapper

import "wapper.dev/wapper/abi"

// Value is a typed property value; see the constructors Int, Float, Double,
// String, Bool and Bytes.
type Value = abi.Value

// Type is a KubeEdge property type.
type Type = abi.Type

// State is a device state.
type State = abi.State

// Code is an ABI status code.
type Code = abi.Code

// Error is an error with a status code; return one from a Driver method to
// choose the code the host sees. Other errors are reported as "internal".
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
