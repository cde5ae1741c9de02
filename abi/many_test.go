package abi

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
)

// FuzzReadReqs checks the wapper_read_many request codec: a list whose
// length is a multiple of ReadReqSize parses into that many requests that
// encode back to the same bytes, appended after what dst held; anything
// else is refused and leaves dst as it was.
func FuzzReadReqs(f *testing.F) {
	f.Add(AppendReadReqs(nil, []ReadReq{{Device: 1, Handle: 0}, {Device: 1, Handle: 1}, {Device: 7, Handle: 3}}))
	f.Add(AppendReadReqs(nil, []ReadReq{{math.MaxUint32, math.MaxUint32}}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		prefix := []ReadReq{{Device: 42, Handle: 9}}
		got, err := ParseReadReqs(prefix, b)
		if len(b)%ReadReqSize != 0 {
			if err == nil || len(got) != 1 {
				t.Fatalf("% x: parsed %v, %v", b, got, err)
			}
			return
		}
		if err != nil || len(got) != 1+len(b)/ReadReqSize || got[0] != prefix[0] {
			t.Fatalf("% x: parsed %v, %v", b, got, err)
		}
		if back := AppendReadReqs(nil, got[1:]); !bytes.Equal(back, b) {
			t.Fatalf("% x re-encodes as % x", b, back)
		}
	})
}

// FuzzParseBatchAppend checks that ParseBatchAppend agrees with ParseBatch
// on every payload, keeps what dst held, leaves dst's length alone on
// error, and grows dst only by the entries it decoded.
func FuzzParseBatchAppend(f *testing.F) {
	f.Add(seedBatch(), uint16(6))
	f.Add(seedBatch(), uint16(5))
	f.Add(AppendBatchEntry(nil, OK, []byte{99}), uint16(1))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff}, uint16(1))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, payload []byte, count uint16) {
		n := int(count) % (MaxBatch + 1)
		want, wantErr := ParseBatch(payload, n)
		keep := BatchEntry{Value: Int(-1)}
		dst := make([]BatchEntry, 1, 4)
		dst[0] = keep
		got, err := ParseBatchAppend(dst, payload, n)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("ParseBatchAppend error %v, ParseBatch error %v", err, wantErr)
		}
		if !reflect.DeepEqual(got[0], keep) {
			t.Fatalf("dst[0] became %+v", got[0])
		}
		if err != nil {
			if len(got) != 1 {
				t.Fatalf("failed parse left %d entries", len(got))
			}
			return
		}
		if len(got) != 1+n {
			t.Fatalf("got %d entries, want %d", len(got)-1, n)
		}
		for i, e := range got[1:] {
			w := want[i]
			if !e.Value.Equal(w.Value) || (e.Err == nil) != (w.Err == nil) {
				t.Fatalf("entry %d: %+v, ParseBatch gave %+v", i, e, w)
			}
			var ae, we *Error
			if e.Err != nil && (!errors.As(e.Err, &ae) || !errors.As(w.Err, &we) || *ae != *we) {
				t.Fatalf("entry %d error %v, ParseBatch gave %v", i, e.Err, w.Err)
			}
		}
	})
}

// TestParseBatchAppendReuses checks that decoding numeric readings into a
// slice with room allocates nothing.
func TestParseBatchAppendReuses(t *testing.T) {
	payload := AppendBatchEntry(nil, OK, Double(21.5).Encode())
	payload = AppendBatchEntry(payload, OK, Int(7).Encode())
	payload = AppendBatchEntry(payload, OK, Bool(true).Encode())
	dst := make([]BatchEntry, 0, 3)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if dst, err = ParseBatchAppend(dst[:0], payload, 3); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ParseBatchAppend allocated %v times a run", allocs)
	}
	if dst[0].Value.Double() != 21.5 || !dst[2].Value.Equal(Bool(true)) {
		t.Fatalf("decoded %+v", dst)
	}
}
