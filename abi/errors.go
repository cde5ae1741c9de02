package abi

import "fmt"

// Code is an ABI status code. Exports put it in the first byte of a result
// buffer; host functions return it negated.
type Code uint8

// Status codes. Zero is success. Values below 64 are reserved for the ABI;
// 64–255 are free for plugins and reported as-is.
const (
	OK              Code = 0
	ErrInternal     Code = 1  // a bug or an unexpected condition in the plugin or host
	ErrInvalid      Code = 2  // a malformed argument, description or value
	ErrNotFound     Code = 3  // unknown device, property, key or handle
	ErrUnsupported  Code = 4  // the plugin does not implement the operation
	ErrTimeout      Code = 5  // the device or an I/O call did not answer in time
	ErrUnavailable  Code = 6  // the device cannot be reached now; retry later
	ErrDenied       Code = 7  // the MapperPlugin grants do not allow the resource
	ErrReadOnly     Code = 8  // write to a read-only property
	ErrTooLarge     Code = 9  // a buffer or store exceeds a limit
	ErrLimit        Code = 10 // too many handles or another resource cap
	ErrClosed       Code = 11 // the handle was closed
	ErrIO           Code = 12 // an I/O error other than a timeout
	ErrPanic        Code = 13 // the plugin panicked; the host drops the instance
	ErrDeviceFailed Code = 14 // the device answered with an error (for example a Modbus exception)
)

var codeNames = [...]string{
	OK:              "ok",
	ErrInternal:     "internal",
	ErrInvalid:      "invalid argument",
	ErrNotFound:     "not found",
	ErrUnsupported:  "unsupported",
	ErrTimeout:      "timeout",
	ErrUnavailable:  "unavailable",
	ErrDenied:       "denied by grants",
	ErrReadOnly:     "read-only",
	ErrTooLarge:     "too large",
	ErrLimit:        "limit reached",
	ErrClosed:       "closed",
	ErrIO:           "i/o error",
	ErrPanic:        "plugin panic",
	ErrDeviceFailed: "device error",
}

// String names the code.
func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("plugin code %d", uint8(c))
}

// Error is a status code with the plugin's message. Both SDK and host use it.
type Error struct {
	Code    Code
	Message string
}

// Error formats the code and message.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

// Errorf returns an *Error with a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code carried by err: OK for nil, the code of an *Error
// (found with errors.As semantics by the caller if wrapped), else ErrInternal.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	for e := err; e != nil; {
		if ae, ok := e.(*Error); ok {
			return ae.Code
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return ErrInternal
}

// MessageOf returns the message to send with err's code: the Message of an
// *Error, else err.Error().
func MessageOf(err error) string {
	if ae, ok := err.(*Error); ok {
		return ae.Message
	}
	return err.Error()
}
