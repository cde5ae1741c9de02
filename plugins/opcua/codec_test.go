package main

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

// reflective encodes a request with the ua package alone.
func reflective(t *testing.T, req ua.Request) []byte {
	t.Helper()
	buf := ua.NewBuffer(nil)
	buf.WriteStruct(ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(req)))
	buf.WriteStruct(req)
	if err := buf.Error(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func header(auth *ua.NodeID) *ua.RequestHeader {
	return &ua.RequestHeader{
		AuthenticationToken: auth, Timestamp: time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC),
		RequestHandle: 77, TimeoutHint: 2000, AdditionalHeader: ua.NewExtensionObject(nil),
	}
}

func TestFastEncodingsMatchUA(t *testing.T) {
	tokens := []*ua.NodeID{ua.NewTwoByteNodeID(0), ua.NewNumericNodeID(1, 123456), ua.NewByteStringNodeID(0, []byte{1, 2, 3, 4})}
	for _, tok := range tokens {
		reqs := []ua.Request{
			&ua.ReadRequest{MaxAge: 0, TimestampsToReturn: ua.TimestampsToReturnNeither, NodesToRead: []*ua.ReadValueID{
				readValueID(ua.MustParseNodeID("ns=2;s=Temperature"), ua.AttributeIDValue),
				readValueID(ua.MustParseNodeID("i=2258"), ua.AttributeIDDataType),
				{NodeID: ua.MustParseNodeID("ns=3;g=5ce9dbce-5d79-434c-9ac3-1cfba9a6e92c"), AttributeID: ua.AttributeIDValue,
					IndexRange: "1:2", DataEncoding: &ua.QualifiedName{NamespaceIndex: 0, Name: "Default Binary"}},
			}},
			&ua.ReadRequest{MaxAge: 500, TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: []*ua.ReadValueID{}},
			&ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{{SubscriptionID: 5, SequenceNumber: 9}, {SubscriptionID: 5, SequenceNumber: 10}}},
			&ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}},
			&ua.PublishRequest{},
		}
		for _, req := range reqs {
			req.SetHeader(header(tok))
			fast, ok, err := encodeFast(req)
			if !ok || err != nil {
				t.Fatalf("%T: %v %v", req, ok, err)
			}
			if want := reflective(t, req); !bytes.Equal(fast, want) {
				t.Errorf("%T with token %s:\n fast % x\n   ua % x", req, tok, fast, want)
			}
		}
	}
	if _, ok, _ := encodeFast(&ua.WriteRequest{}); ok {
		t.Error("a Write request has a fast encoding")
	}
}

func TestFastReadResponseMatchesUA(t *testing.T) {
	for _, resp := range []*ua.ReadResponse{
		{
			ResponseHeader: &ua.ResponseHeader{
				Timestamp: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), RequestHandle: 9, ServiceResult: ua.StatusOK,
				ServiceDiagnostics: &ua.DiagnosticInfo{}, StringTable: []string{"a", "b"}, AdditionalHeader: ua.NewExtensionObject(nil),
			},
			Results: []*ua.DataValue{
				{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(21.5)},
				{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNodeIDUnknown},
				{EncodingMask: ua.DataValueValue, Value: ua.MustVariant([]int32{1, 2})},
				{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp, Value: ua.MustVariant("x"), SourceTimestamp: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
			},
			DiagnosticInfos: []*ua.DiagnosticInfo{{}},
		},
		{ResponseHeader: &ua.ResponseHeader{ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)}},
	} {
		buf := ua.NewBuffer(nil)
		buf.WriteStruct(ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(resp)))
		buf.WriteStruct(resp)
		body := buf.Bytes()
		fast, ok, err := decodeFast(body)
		if !ok || err != nil {
			t.Fatalf("fast decode: %v %v", ok, err)
		}
		_, slow, err := ua.DecodeService(body)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("fast %#v\nua   %#v", fast, slow)
		}
		// Cut anywhere, it fails cleanly.
		for i := 4; i < len(body); i++ {
			if _, _, err := decodeFast(body[:i]); err == nil {
				t.Errorf("a response cut at %d of %d bytes decoded", i, len(body))
				break
			}
		}
	}
	// A huge array length is refused, not allocated.
	body := appendTypeID(nil, 634)
	body = append(body, make([]byte, 8+4+4)...)             // time, handle, result
	body = append(body, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0) // diagnostics, null string table, null extension object
	body = append(body, 0, 0, 0, 0x7f)                      // 2^31-1 results
	if _, _, err := decodeFast(body); err == nil {
		t.Error("a response claiming 2^31 results decoded")
	}
}
