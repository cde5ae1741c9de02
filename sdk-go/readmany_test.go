//go:build !wasip1

package wapper

import (
	"strings"
	"testing"

	"wapper.dev/wapper/abi"
)

// batchDriver is testDriver with a BatchReader that counts its calls.
type batchDriver struct {
	testDriver
	batches int
}

func (d *batchDriver) ReadBatch(dev *Device, props []*Property) ([]Value, []error) {
	d.batches++
	vals, errs := make([]Value, len(props)), make([]error, len(props))
	for i, p := range props {
		vals[i], errs[i] = d.Read(dev, p)
	}
	return vals, errs
}

func newTestInstance(t *testing.T, drv Driver, ids ...uint32) *instance {
	t.Helper()
	in := &instance{drv: drv, devices: map[uint32]*Device{}}
	for _, id := range ids {
		if err := in.opAdd(id, desc(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

// TestReadMany checks the entries of wapper_read_many in request order:
// values, a driver error, an unknown property and an unknown device each
// in their own entry, through Read and through a BatchReader alike.
func TestReadMany(t *testing.T) {
	reqs := []abi.ReadReq{{Device: 5, Handle: 0}, {Device: 5, Handle: 2}, {Device: 6, Handle: 1}, {Device: 9, Handle: 0}, {Device: 5, Handle: 7}, {Device: 6, Handle: 0}}
	for _, tc := range []struct {
		name string
		drv  Driver
	}{
		{"read", &testDriver{vals: map[uint32]Value{0: Int(1), 1: Int(2)}}},
		{"batch", &batchDriver{testDriver: testDriver{vals: map[uint32]Value{0: Int(1), 1: Int(2)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newTestInstance(t, tc.drv, 5, 6)
			res := in.callReadMany(abi.AppendReadReqs(nil, reqs))
			payload, err := abi.ParseResult(res)
			if err != nil {
				t.Fatal(err)
			}
			entries, err := abi.ParseBatch(payload, len(reqs))
			if err != nil {
				t.Fatal(err)
			}
			want := []struct {
				v    Value
				code abi.Code
			}{{Int(1), OK}, {Value{}, ErrTimeout}, {Int(2), OK}, {Value{}, ErrNotFound}, {Value{}, ErrNotFound}, {Int(1), OK}}
			for i, e := range entries {
				if abi.CodeOf(e.Err) != want[i].code || !e.Value.Equal(want[i].v) {
					t.Errorf("entry %d (%v): %#v, %v; want %#v, code %d", i, reqs[i], e.Value, e.Err, want[i].v, want[i].code)
				}
			}
			if bd, ok := tc.drv.(*batchDriver); ok && bd.batches != 3 {
				t.Errorf("ReadBatch called %d times, want 3 (one per run of a known device)", bd.batches)
			}
		})
	}
}

// TestReadManyRefuses checks the whole-call errors: a malformed request
// and one over the count limit.
func TestReadManyRefuses(t *testing.T) {
	in := newTestInstance(t, &testDriver{vals: map[uint32]Value{}}, 5)
	if _, err := abi.ParseResult(in.callReadMany([]byte{1, 2, 3})); abi.CodeOf(err) != ErrInvalid {
		t.Fatalf("malformed request: %v", err)
	}
	big := make([]byte, (abi.MaxBatch+1)*abi.ReadReqSize)
	if _, err := abi.ParseResult(in.callReadMany(big)); abi.CodeOf(err) != ErrTooLarge {
		t.Fatalf("request over the limit: %v", err)
	}
	if res := in.callReadMany(nil); len(res) != 1 || res[0] != byte(OK) {
		t.Fatalf("empty request gave % x", res)
	}
}

// bigDriver returns a 3 MiB STRING for every read.
type bigDriver struct{ Base }

func (bigDriver) Read(*Device, *Property) (Value, error) {
	return String(strings.Repeat("x", 3<<20)), nil
}

// TestReadManyFull checks that values past the ABI's result limit become
// "result full" entries, so the result stays within abi.MaxMessage.
func TestReadManyFull(t *testing.T) {
	in := newTestInstance(t, bigDriver{}, 5)
	reqs := []abi.ReadReq{{Device: 5, Handle: 0}, {Device: 5, Handle: 1}, {Device: 5, Handle: 0}}
	res := in.callReadMany(abi.AppendReadReqs(nil, reqs))
	if len(res) > abi.MaxMessage {
		t.Fatalf("result of %d bytes exceeds %d", len(res), abi.MaxMessage)
	}
	payload, err := abi.ParseResult(res)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := abi.ParseBatch(payload, len(reqs))
	if err != nil {
		t.Fatal(err)
	}
	if entries[0].Err != nil || abi.CodeOf(entries[1].Err) != ErrTooLarge || abi.CodeOf(entries[2].Err) != ErrTooLarge {
		t.Fatalf("entries: %v / %v / %v", entries[0].Err, entries[1].Err, entries[2].Err)
	}
}

// TestReadManyAllocs checks that a read_many call in steady state
// allocates nothing in the SDK: the request, the run buffers and the
// result are reused.
func TestReadManyAllocs(t *testing.T) {
	in := newTestInstance(t, &testDriver{vals: map[uint32]Value{0: Int(1), 1: Int(2)}}, 5, 6, 7)
	var reqs []abi.ReadReq
	for _, id := range []uint32{5, 6, 7} {
		reqs = append(reqs, abi.ReadReq{Device: id, Handle: 0}, abi.ReadReq{Device: id, Handle: 1})
	}
	b := abi.AppendReadReqs(nil, reqs)
	in.callReadMany(b)
	if allocs := testing.AllocsPerRun(100, func() { in.callReadMany(b) }); allocs != 0 {
		t.Fatalf("read_many of %d readings allocated %v times a call", len(reqs), allocs)
	}
}

// TestLookupDenseAndSparse checks that devices are found by handle below
// and above maxDense, and are gone once removed.
func TestLookupDenseAndSparse(t *testing.T) {
	in := newTestInstance(t, &testDriver{vals: map[uint32]Value{0: Int(1)}}, 5, maxDense+3)
	for _, id := range []uint32{5, maxDense + 3} {
		if _, err := in.lookup(id); err != nil {
			t.Fatalf("device %d: %v", id, err)
		}
		if err := in.opRemove(id); err != nil {
			t.Fatal(err)
		}
		if _, err := in.lookup(id); abi.CodeOf(err) != ErrNotFound {
			t.Fatalf("device %d after removal: %v", id, err)
		}
	}
	if len(in.dense) > 6 {
		t.Fatalf("dense table of %d entries for handles up to 5", len(in.dense))
	}
}
