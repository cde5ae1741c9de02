package abi

import (
	"encoding/binary"
	"fmt"
)

// Pack packs a guest pointer and length into the i64 an export returns.
func Pack(ptr, length uint32) uint64 { return uint64(ptr)<<32 | uint64(length) }

// Unpack splits a packed result into pointer and length.
func Unpack(r uint64) (ptr, length uint32) { return uint32(r >> 32), uint32(r) }

// AppendResult appends a result buffer: the status code, then the payload
// (on success) or the UTF-8 error message.
func AppendResult(dst []byte, c Code, payload []byte) []byte {
	dst = append(dst, byte(c))
	return append(dst, payload...)
}

// ParseResult splits a result buffer. An empty buffer (from a zero packed
// result) is success with no payload. A failure is returned as *Error.
func ParseResult(buf []byte) (payload []byte, err error) {
	if len(buf) == 0 {
		return nil, nil
	}
	if c := Code(buf[0]); c != OK {
		return nil, &Error{Code: c, Message: string(buf[1:])}
	}
	return buf[1:], nil
}

// AppendBatchEntry appends one entry of a batch-read payload: the status
// code, a 4-byte little-endian length, then the encoded value or error text.
func AppendBatchEntry(dst []byte, c Code, data []byte) []byte {
	dst = append(dst, byte(c))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	return append(dst, data...)
}

// BatchEntry is one decoded batch-read entry.
type BatchEntry struct {
	Value Value
	Err   error // an *Error when the plugin failed this property
}

// ParseBatch decodes a batch-read payload holding exactly n entries.
func ParseBatch(payload []byte, n int) ([]BatchEntry, error) {
	// Every entry takes at least 5 bytes: check before allocating n.
	if n < 0 || n > len(payload)/5 {
		return nil, fmt.Errorf("batch result of %d bytes cannot hold %d entries", len(payload), n)
	}
	out, err := ParseBatchAppend(make([]BatchEntry, 0, n), payload, n)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppendHandles encodes a batch-read request: n little-endian uint32
// property handles.
func AppendHandles(dst []byte, handles []uint32) []byte {
	for _, h := range handles {
		dst = binary.LittleEndian.AppendUint32(dst, h)
	}
	return dst
}

// ParseHandles decodes a batch-read request.
func ParseHandles(b []byte) ([]uint32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("handle list of %d bytes is not a multiple of 4", len(b))
	}
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[i*4:])
	}
	return out, nil
}

// EncodePollNext encodes a poll result payload: the delay in milliseconds
// before the host polls the device again. Zero means "do not poll this
// device until it is updated".
func EncodePollNext(ms uint32) []byte { return binary.LittleEndian.AppendUint32(nil, ms) }

// ParsePollNext decodes a poll result payload; an empty payload means zero.
func ParsePollNext(payload []byte) (uint32, error) {
	switch len(payload) {
	case 0:
		return 0, nil
	case 4:
		return binary.LittleEndian.Uint32(payload), nil
	}
	return 0, fmt.Errorf("poll result payload has %d bytes, want 0 or 4", len(payload))
}

// ParseStateResult decodes a wapper_device_state payload: one state byte,
// then an optional UTF-8 reason.
func ParseStateResult(payload []byte) (State, string, error) {
	if len(payload) == 0 {
		return StateUnknown, "", fmt.Errorf("state result is empty")
	}
	if payload[0] > byte(StateUnhealthy) {
		return StateUnknown, "", fmt.Errorf("state byte %d is not a known state", payload[0])
	}
	return State(payload[0]), string(payload[1:]), nil
}
