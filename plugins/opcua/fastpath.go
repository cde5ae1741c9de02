package main

// Hand-written encodings of the messages a device sends at every collect
// and publishing cycle: Read and Publish requests, and Read responses.
// gopcua's ua package encodes through reflection, which costs about fifty
// times more in wasm than natively (half a millisecond for a Read request
// in wazero); these produce the same bytes (codec_test.go compares them)
// with the ua package's non-reflective codecs for the parts inside.

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

const null32 = 0xffffffff

// appendTypeID appends the four-byte NodeId of a service's encoding.
func appendTypeID(b []byte, typeID uint16) []byte {
	return binary.LittleEndian.AppendUint16(append(b, 0x01, 0x00), typeID)
}

// appendTime appends a DateTime: 100 ns intervals since 1601.
func appendTime(b []byte, t time.Time) []byte {
	var ts uint64
	if !t.IsZero() {
		ts = uint64(t.UTC().UnixNano()/100 + 116444736000000000)
	}
	return binary.LittleEndian.AppendUint64(b, ts)
}

// appendUAString appends a String as the ua package does: empty is null.
func appendUAString(b []byte, s string) []byte {
	if s == "" {
		return binary.LittleEndian.AppendUint32(b, null32)
	}
	return appendString(b, s)
}

func appendNodeID(b []byte, n *ua.NodeID) ([]byte, error) {
	e, err := n.Encode()
	return append(b, e...), err
}

// appendRequestHeader appends a RequestHeader without diagnostics, audit
// entry or additional header.
func appendRequestHeader(b []byte, h *ua.RequestHeader) ([]byte, error) {
	b, err := appendNodeID(b, h.AuthenticationToken)
	if err != nil {
		return nil, err
	}
	b = appendTime(b, h.Timestamp)
	b = binary.LittleEndian.AppendUint32(b, h.RequestHandle)
	b = binary.LittleEndian.AppendUint32(b, h.ReturnDiagnostics)
	b = binary.LittleEndian.AppendUint32(b, null32) // AuditEntryID
	b = binary.LittleEndian.AppendUint32(b, h.TimeoutHint)
	return append(b, 0, 0, 0), nil // a null ExtensionObject
}

// encodeFast encodes the requests that have a hand-written encoding; ok
// is false for the others.
func encodeFast(req ua.Request) (b []byte, ok bool, err error) {
	switch r := req.(type) {
	case *ua.ReadRequest:
		b, err = encodeRead(r)
		return b, true, err
	case *ua.PublishRequest:
		b, err = encodePublish(r)
		return b, true, err
	}
	return nil, false, nil
}

func encodeRead(r *ua.ReadRequest) ([]byte, error) {
	b := make([]byte, 0, 64+32*len(r.NodesToRead))
	b = appendTypeID(b, id.ReadRequest_Encoding_DefaultBinary)
	b, err := appendRequestHeader(b, r.RequestHeader)
	if err != nil {
		return nil, err
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.MaxAge))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.TimestampsToReturn))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.NodesToRead)))
	for _, n := range r.NodesToRead {
		if b, err = appendNodeID(b, n.NodeID); err != nil {
			return nil, err
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(n.AttributeID))
		b = appendUAString(b, n.IndexRange)
		enc := n.DataEncoding
		if enc == nil {
			enc = &ua.QualifiedName{}
		}
		b = binary.LittleEndian.AppendUint16(b, enc.NamespaceIndex)
		b = appendUAString(b, enc.Name)
	}
	return b, nil
}

func encodePublish(r *ua.PublishRequest) ([]byte, error) {
	b := make([]byte, 0, 64+8*len(r.SubscriptionAcknowledgements))
	b = appendTypeID(b, id.PublishRequest_Encoding_DefaultBinary)
	b, err := appendRequestHeader(b, r.RequestHeader)
	if err != nil {
		return nil, err
	}
	if r.SubscriptionAcknowledgements == nil {
		return binary.LittleEndian.AppendUint32(b, null32), nil
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.SubscriptionAcknowledgements)))
	for _, a := range r.SubscriptionAcknowledgements {
		b = binary.LittleEndian.AppendUint32(b, a.SubscriptionID)
		b = binary.LittleEndian.AppendUint32(b, a.SequenceNumber)
	}
	return b, nil
}

// decodeFast decodes the responses that have a hand-written decoding; ok
// is false for the others.
func decodeFast(body []byte) (v any, ok bool, err error) {
	if len(body) < 4 || body[0] != 0x01 || body[1] != 0x00 ||
		binary.LittleEndian.Uint16(body[2:]) != id.ReadResponse_Encoding_DefaultBinary {
		return nil, false, nil
	}
	r, err := decodeReadResponse(body[4:])
	return r, true, err
}

// arrayLen reads an array length, -1 (null) as 0, refusing one that
// cannot fit in what is left (every element takes at least a byte).
func arrayLen(buf *ua.Buffer, left int) int {
	n := buf.ReadInt32()
	if n < 0 {
		return 0
	}
	if int(n) > left {
		buf.ReadN(left + 1) // sets the buffer's error
		return 0
	}
	return int(n)
}

func decodeReadResponse(b []byte) (*ua.ReadResponse, error) {
	buf := ua.NewBuffer(b)
	left := func() int { return len(b) - buf.Pos() }
	h := &ua.ResponseHeader{
		Timestamp:          buf.ReadTime(),
		RequestHandle:      buf.ReadUint32(),
		ServiceResult:      ua.StatusCode(buf.ReadUint32()),
		ServiceDiagnostics: new(ua.DiagnosticInfo),
		AdditionalHeader:   new(ua.ExtensionObject),
	}
	buf.ReadStruct(h.ServiceDiagnostics)
	for range arrayLen(buf, left()) {
		h.StringTable = append(h.StringTable, buf.ReadString())
	}
	buf.ReadStruct(h.AdditionalHeader)
	r := &ua.ReadResponse{ResponseHeader: h}
	if n := arrayLen(buf, left()); n > 0 {
		r.Results = make([]*ua.DataValue, n)
		for i := range r.Results {
			r.Results[i] = new(ua.DataValue)
			buf.ReadStruct(r.Results[i])
		}
	}
	for range arrayLen(buf, left()) {
		d := new(ua.DiagnosticInfo)
		buf.ReadStruct(d)
		r.DiagnosticInfos = append(r.DiagnosticInfos, d)
	}
	return r, buf.Error()
}
