package abi

import (
	"encoding/binary"
	"fmt"
)

// ReadReq names one property of one device in a wapper_read_many request
// (SPEC.md §3.2): the device handle and the property handle.
type ReadReq struct{ Device, Handle uint32 }

// ReadReqSize is the encoded size of one ReadReq: two little-endian u32.
const ReadReqSize = 8

// AppendReadReq appends one wapper_read_many request entry.
func AppendReadReq(dst []byte, dev, handle uint32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, dev)
	return binary.LittleEndian.AppendUint32(dst, handle)
}

// AppendReadReqs encodes a wapper_read_many request.
func AppendReadReqs(dst []byte, reqs []ReadReq) []byte {
	for _, r := range reqs {
		dst = AppendReadReq(dst, r.Device, r.Handle)
	}
	return dst
}

// ParseReadReqs decodes a wapper_read_many request and appends its entries
// to dst, so that a caller reusing dst decodes without allocating.
func ParseReadReqs(dst []ReadReq, b []byte) ([]ReadReq, error) {
	if len(b)%ReadReqSize != 0 {
		return dst, fmt.Errorf("read request list of %d bytes is not a multiple of %d", len(b), ReadReqSize)
	}
	for ; len(b) > 0; b = b[ReadReqSize:] {
		dst = append(dst, ReadReq{Device: binary.LittleEndian.Uint32(b), Handle: binary.LittleEndian.Uint32(b[4:])})
	}
	return dst, nil
}

// ParseBatchAppend decodes a batch-read payload holding exactly n entries,
// the payload of wapper_read_batch and of wapper_read_many alike, and
// appends them to dst. Values are copied out of payload; only STRING,
// BYTES and STREAM values and failed entries allocate. On error dst is
// returned with its original length.
func ParseBatchAppend(dst []BatchEntry, payload []byte, n int) ([]BatchEntry, error) {
	// Every entry takes at least 5 bytes: check before growing dst by n.
	if n < 0 || n > len(payload)/5 {
		return dst, fmt.Errorf("batch result of %d bytes cannot hold %d entries", len(payload), n)
	}
	base := len(dst)
	dst = grow(dst, n)
	out := dst[base:]
	for i := range n {
		if len(payload) < 5 {
			return dst[:base], fmt.Errorf("batch result truncated at entry %d of %d", i, n)
		}
		c, l := Code(payload[0]), binary.LittleEndian.Uint32(payload[1:5])
		payload = payload[5:]
		if uint64(l) > uint64(len(payload)) {
			return dst[:base], fmt.Errorf("batch entry %d claims %d bytes, %d left", i, l, len(payload))
		}
		data := payload[:l]
		payload = payload[l:]
		if c != OK {
			out[i] = BatchEntry{Err: &Error{Code: c, Message: string(data)}}
			continue
		}
		v, err := DecodeValue(data)
		if err != nil {
			return dst[:base], fmt.Errorf("batch entry %d: %w", i, err)
		}
		out[i] = BatchEntry{Value: v}
	}
	if len(payload) != 0 {
		return dst[:base], fmt.Errorf("batch result has %d trailing bytes after %d entries", len(payload), n)
	}
	return dst, nil
}

// grow returns dst extended by n zeroed entries, reusing its capacity.
func grow(dst []BatchEntry, n int) []BatchEntry {
	if cap(dst)-len(dst) < n {
		nd := make([]BatchEntry, len(dst), len(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:len(dst)+n]
	clear(dst[len(dst)-n:])
	return dst
}
