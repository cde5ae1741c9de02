package abi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for the ABI codecs (issue 11). FuzzDecodeValue and
// FuzzParseBatch in abi_test.go check values and that batches never crash;
// these add results, packed results, batch entries with their round trip,
// handle lists, poll and state payloads, twin text, conversions and the
// device description. Run one with
//
//	go test -run '^$' -fuzz '^FuzzParseResult$' -fuzztime 60s .
//
// Their seed corpora (f.Add and testdata/fuzz) run in plain go test.

// heapAllocs returns the bytes allocated on the heap so far.
// runtime.ReadMemStats flushes every P's cached spans first, so the count
// is exact (runtime/metrics counts small objects only when their span
// leaves the cache, which may be inside the measured call).
func heapAllocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// allocSlack covers the few small allocations of an error path.
const allocSlack = 4 << 10

// seedValues are values a real plugin returns: readings of every type,
// edge numbers, empty and binary payloads.
var seedValues = []Value{
	Int(0), Int(-40), Int(math.MaxInt64), Int(math.MinInt64),
	Float(21.5), Float(float32(math.Inf(-1))), Double(3.141592653589793), Double(-0.0), Double(1e300),
	String(""), String("on"), String("21.5"), String("héllo"), Bool(true), Bool(false),
	Bytes(nil), Bytes([]byte{0, 1, 0xff}), Stream([]byte("frame\r\n")),
}

// FuzzParseResult checks the result buffer codec: an empty buffer is
// success, a zero code is success with the rest as payload, anything else
// is an *Error with the code and message, and AppendResult rebuilds the
// buffer.
func FuzzParseResult(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	for _, v := range seedValues {
		f.Add(AppendResult(nil, OK, v.Encode()))
	}
	f.Add(AppendResult(nil, OK, []byte{byte(StateOffline)}))
	f.Add(AppendResult(nil, OK, EncodePollNext(250)))
	f.Add(AppendResult(nil, ErrDeviceFailed, []byte("modbus exception 2 (illegal data address)")))
	f.Add(AppendResult(nil, ErrTimeout, []byte("no answer from 10.0.0.7:502 within 2s")))
	f.Add(AppendResult(nil, ErrPanic, []byte("runtime error: index out of range [3] with length 3\ngoroutine 1 [running]:")))
	f.Add(AppendResult(nil, ErrNotFound, nil))
	f.Add(AppendResult(nil, Code(64), []byte("plugin's own code")))
	f.Add(AppendResult(nil, Code(255), []byte{0xff, 0xfe}))
	f.Fuzz(func(t *testing.T, buf []byte) {
		payload, err := ParseResult(buf)
		if len(buf) == 0 {
			if payload != nil || err != nil {
				t.Fatalf("empty buffer gave %q, %v", payload, err)
			}
			return
		}
		c := Code(buf[0])
		if c == OK {
			if err != nil || !bytes.Equal(payload, buf[1:]) {
				t.Fatalf("% x: success gave %q, %v", buf, payload, err)
			}
			if got := AppendResult(nil, OK, payload); !bytes.Equal(got, buf) {
				t.Fatalf("% x re-encodes as % x", buf, got)
			}
			return
		}
		var ae *Error
		if payload != nil || !errors.As(err, &ae) {
			t.Fatalf("% x: failure gave %q, %#v", buf, payload, err)
		}
		if ae.Code != c || ae.Message != string(buf[1:]) || CodeOf(err) != c || MessageOf(err) != ae.Message {
			t.Fatalf("% x: error %#v", buf, ae)
		}
		if s := err.Error(); !strings.HasPrefix(s, c.String()) || (ae.Message != "" && !strings.HasSuffix(s, ": "+ae.Message)) {
			t.Fatalf("% x: error text %q", buf, s)
		}
		if got := AppendResult(nil, ae.Code, []byte(ae.Message)); !bytes.Equal(got, buf) {
			t.Fatalf("% x re-encodes as % x", buf, got)
		}
	})
}

// FuzzPackedResult checks that a packed i64 result splits into pointer and
// length and packs back, for every 64-bit pattern a guest can return.
func FuzzPackedResult(f *testing.F) {
	f.Add(uint64(0))
	f.Add(Pack(0x0001_0400, 9))
	f.Add(Pack(0x7fff_fff0, 12))
	f.Add(Pack(MaxMemoryBytes-1, 1))
	f.Add(Pack(0x10, MaxMessage+1))
	f.Add(uint64(math.MaxUint64))
	f.Add(uint64(1) << 63)
	f.Fuzz(func(t *testing.T, r uint64) {
		ptr, n := Unpack(r)
		if Pack(ptr, n) != r {
			t.Fatalf("%#x unpacks to %#x+%d which packs to %#x", r, ptr, n, Pack(ptr, n))
		}
		if p2, n2 := Unpack(Pack(n, ptr)); p2 != n || n2 != ptr {
			t.Fatalf("Pack(%#x, %#x) unpacks to %#x, %#x", n, ptr, p2, n2)
		}
		// A guest pointer below MaxMemoryBytes never makes a negative i64.
		if ptr < MaxMemoryBytes && int64(r) < 0 {
			t.Fatalf("%#x+%d packs negative", ptr, n)
		}
	})
}

// seedBatch is a batch-read payload as the Modbus plugin answers one:
// values of several types, a device exception and a timeout.
func seedBatch() []byte {
	b := AppendBatchEntry(nil, OK, Int(1234).Encode())
	b = AppendBatchEntry(b, OK, Float(21.5).Encode())
	b = AppendBatchEntry(b, ErrDeviceFailed, []byte("exception 2"))
	b = AppendBatchEntry(b, OK, Bool(true).Encode())
	b = AppendBatchEntry(b, ErrTimeout, nil)
	return AppendBatchEntry(b, OK, String("ok").Encode())
}

// FuzzBatchEntries checks the batch-read payload codec: what parses
// re-encodes to the same bytes, entry by entry, and a payload never makes
// the parser allocate much more than its own size, whatever count the
// host asks for.
func FuzzBatchEntries(f *testing.F) {
	f.Add(seedBatch(), uint16(6))
	f.Add(seedBatch(), uint16(MaxBatch))
	f.Add(AppendBatchEntry(nil, OK, Double(-1).Encode()), uint16(1))
	f.Add(AppendBatchEntry(nil, ErrUnavailable, []byte("connection refused")), uint16(1))
	f.Add([]byte{}, uint16(MaxBatch))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff}, uint16(1)) // claims 4 GiB
	f.Add([]byte{0, 9, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0}, uint16(1))
	f.Fuzz(func(t *testing.T, payload []byte, count uint16) {
		n := int(count) % (MaxBatch + 1)
		before := heapAllocs()
		entries, err := ParseBatch(payload, n)
		if used := heapAllocs() - before; used > 32*uint64(len(payload))+allocSlack {
			t.Fatalf("ParseBatch of %d bytes for %d entries allocated %d bytes", len(payload), n, used)
		}
		if err != nil {
			if entries != nil {
				t.Fatalf("error %v with %d entries", err, len(entries))
			}
			return
		}
		if len(entries) != n {
			t.Fatalf("%d entries for a count of %d", len(entries), n)
		}
		var back []byte
		for i, e := range entries {
			if e.Err != nil {
				var ae *Error
				if !errors.As(e.Err, &ae) || ae.Code == OK || e.Value.IsValid() {
					t.Fatalf("entry %d: %#v with value %#v", i, e.Err, e.Value)
				}
				back = AppendBatchEntry(back, ae.Code, []byte(ae.Message))
				continue
			}
			if !e.Value.IsValid() {
				t.Fatalf("entry %d: no value and no error", i)
			}
			back = AppendBatchEntry(back, OK, e.Value.Encode())
		}
		if !bytes.Equal(back, payload) {
			t.Fatalf("% x parsed as %d entries which encode as % x", payload, n, back)
		}
		// Decoded values own their bytes.
		for i := range payload {
			payload[i] ^= 0xff
		}
		back2 := []byte(nil)
		for _, e := range entries {
			if e.Err == nil {
				back2 = AppendBatchEntry(back2, OK, e.Value.Encode())
			} else {
				back2 = AppendBatchEntry(back2, CodeOf(e.Err), []byte(MessageOf(e.Err)))
			}
		}
		if !bytes.Equal(back, back2) {
			t.Fatal("decoded entries alias the payload")
		}
	})
}

// FuzzHandles checks the batch-read request codec (the u32 handle list
// the host passes and the SDKs parse).
func FuzzHandles(f *testing.F) {
	f.Add(AppendHandles(nil, []uint32{0, 1, 2, 7}))
	f.Add(AppendHandles(nil, []uint32{math.MaxUint32}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := ParseHandles(b)
		if err != nil {
			if len(b)%4 == 0 {
				t.Fatalf("% x refused: %v", b, err)
			}
			return
		}
		if len(hs) != len(b)/4 || !bytes.Equal(AppendHandles(nil, hs), b) {
			t.Fatalf("% x parsed as %v", b, hs)
		}
	})
}

// FuzzResultPayloads checks the small fixed payloads: the poll delay and
// the device state.
func FuzzResultPayloads(f *testing.F) {
	f.Add(EncodePollNext(250))
	f.Add(EncodePollNext(0))
	f.Add([]byte{})
	f.Add([]byte{byte(StateOK)})
	f.Add(append([]byte{byte(StateUnhealthy)}, "serial line /dev/ttyUSB0 is gone"...))
	f.Add([]byte{byte(StateOffline), 'c', 'a', 'b', 'l', 'e'})
	f.Add([]byte{9})
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParsePollNext(b)
		switch {
		case len(b) == 0 && (err != nil || ms != 0),
			len(b) == 4 && (err != nil || ms != binary.LittleEndian.Uint32(b)),
			len(b) != 0 && len(b) != 4 && err == nil:
			t.Fatalf("ParsePollNext(% x) = %d, %v", b, ms, err)
		}
		if err == nil && len(b) == 4 && !bytes.Equal(EncodePollNext(ms), b) {
			t.Fatalf("poll %d re-encodes as % x", ms, EncodePollNext(ms))
		}
		st, reason, err := ParseStateResult(b)
		if err != nil {
			if len(b) > 0 && b[0] <= byte(StateUnhealthy) {
				t.Fatalf("state % x refused: %v", b, err)
			}
			return
		}
		if byte(st) != b[0] || reason != string(b[1:]) {
			t.Fatalf("state % x = %v %q", b, st, reason)
		}
		if got, ok := ParseState(st.String()); !ok || got != st {
			t.Fatalf("state %v does not survive its name %q", st, st.String())
		}
	})
}

// sameValue is Equal, except that any NaN equals any NaN (twin text does
// not keep NaN payloads).
func sameValue(a, b Value) bool {
	if a.Type() == b.Type() && (a.Type() == TypeFloat || a.Type() == TypeDouble) && math.IsNaN(a.Double()) && math.IsNaN(b.Double()) {
		return true
	}
	return a.Equal(b)
}

// FuzzParseText checks the twin text form: what parses prints as text
// that parses to the same value, an INT is the number the text says, and
// a STRING is valid UTF-8.
func FuzzParseText(f *testing.F) {
	for _, v := range seedValues {
		f.Add(uint8(v.Type()), v.Text())
	}
	for _, s := range []string{"12.0", "-1e3", "ON", "off", "1", "0", "0x1p4", "9223372036854775807", "9223372036854775808.0",
		"-9223372036854775808", "1e19", "Inf", "NaN", "aGk=", "aGk=\n", "\xff", " 42", "+7", "1_000"} {
		f.Add(uint8(TypeInt), s)
		f.Add(uint8(TypeDouble), s)
	}
	f.Add(uint8(TypeBoolean), "True")
	f.Add(uint8(TypeFloat), "3.4028236e38")
	f.Add(uint8(9), "x")
	f.Fuzz(func(t *testing.T, typ uint8, s string) {
		ty := Type(typ)
		v, err := ParseText(ty, s)
		if err != nil {
			if v.IsValid() {
				t.Fatalf("ParseText(%v, %q) gave %#v with %v", ty, s, v, err)
			}
			return
		}
		if v.Type() != ty {
			t.Fatalf("ParseText(%v, %q) gave a %v", ty, s, v.Type())
		}
		back, err := ParseText(ty, v.Text())
		if err != nil || !sameValue(back, v) {
			t.Fatalf("ParseText(%v, %q) = %#v, whose text %q parses as %#v, %v", ty, s, v, v.Text(), back, err)
		}
		if ty == TypeString && !utf8.Valid(v.Bytes()) {
			t.Fatalf("STRING %q is not UTF-8", s)
		}
		if ty == TypeInt {
			// The value is the number the text says, not a wrapped one.
			if fv, ferr := strconv.ParseFloat(s, 64); ferr == nil && float64(v.Int()) != fv {
				t.Fatalf("ParseText(INT, %q) = %d", s, v.Int())
			}
		}
		if dv, err := DecodeValue(v.Encode()); err != nil || !dv.Equal(v) {
			t.Fatalf("%#v does not survive its encoding: %#v, %v", v, dv, err)
		}
	})
}

// FuzzConvert checks Convert, which the host applies to every value a
// plugin returns or reports and to every write: a conversion gives the
// asked type, keeps numbers turned into INT exact, and STRING conversions
// round-trip.
func FuzzConvert(f *testing.F) {
	for _, v := range seedValues {
		for ty := TypeInt; ty <= TypeStream; ty++ {
			f.Add(v.Encode(), uint8(ty))
		}
	}
	f.Add(Double(math.Inf(1)).Encode(), uint8(TypeInt))
	f.Add(Double(9223372036854775808).Encode(), uint8(TypeInt))
	f.Add(Float(-3e38).Encode(), uint8(TypeInt))
	f.Fuzz(func(t *testing.T, enc []byte, typ uint8) {
		v, err := DecodeValue(enc)
		if err != nil {
			return
		}
		ty := Type(typ)
		cv, err := Convert(v, ty)
		if err != nil {
			if cv.IsValid() {
				t.Fatalf("Convert(%#v, %v) gave %#v with %v", v, ty, cv, err)
			}
			return
		}
		if cv.Type() != ty {
			t.Fatalf("Convert(%#v, %v) gave a %v", v, ty, cv.Type())
		}
		if ty == TypeInt && (v.Type() == TypeFloat || v.Type() == TypeDouble) && float64(cv.Int()) != v.Double() {
			t.Fatalf("Convert(%#v, INT) = %d", v, cv.Int())
		}
		if ty == TypeString {
			if !utf8.Valid(cv.Bytes()) {
				t.Fatalf("Convert(%#v, STRING) = %q, not UTF-8", v, cv.Bytes())
			}
			back, err := Convert(cv, v.Type())
			if err != nil || !sameValue(back, v) {
				t.Fatalf("%#v as STRING %q converts back as %#v, %v", v, cv.Str(), back, err)
			}
		}
		if dv, err := DecodeValue(cv.Encode()); err != nil || !dv.Equal(cv) {
			t.Fatalf("%#v does not survive its encoding: %#v, %v", cv, dv, err)
		}
	})
}

// specDevice is the description of abi/SPEC.md §8.
const specDevice = `{
  "id": 7,
  "namespace": "default",
  "name": "thermo-1",
  "model": "thermo-model",
  "protocol": "virtual",
  "protocolConfig": {"seed": 42},
  "modelConfig": {},
  "properties": [
    {"handle": 0, "name": "temperature", "type": "DOUBLE", "accessMode": "ReadOnly",
     "minimum": "0", "maximum": "100", "unit": "C",
     "visitor": {"kind": "sine", "period": "60s"},
     "collectCycle": 1000, "reportCycle": 1000},
    {"handle": 1, "name": "switch", "type": "BOOLEAN", "accessMode": "ReadWrite",
     "visitor": {"kind": "switch"}}
  ],
  "methods": [{"name": "toggle", "propertyNames": ["switch"]}]
}`

// FuzzDeviceDescription checks the device description JSON → Device: no
// panic, property lookup by handle agrees with a plain scan, and what
// decodes encodes to JSON that decodes to the same Device.
func FuzzDeviceDescription(f *testing.F) {
	f.Add([]byte(specDevice))
	f.Add([]byte(`{"id":1,"namespace":"plant","name":"plc","model":"m","protocol":"modbus","protocolConfig":{"host":"10.0.0.7","port":502,"slaveID":1,"timeout":2.5},` +
		`"properties":[{"handle":3,"name":"holding","type":"INT","accessMode":"ReadWrite","visitor":{"register":"HoldingRegister","offset":40001,"limit":1,"scale":0.1}},` +
		`{"handle":0,"name":"coil","type":"boolean","accessMode":"ReadOnly"},{"handle":3,"name":"dup","type":"INT"}],"future":{"x":[1,2]}}`))
	f.Add([]byte(`{"id":4294967295,"properties":null,"protocolConfig":null,"methods":[{"name":""}]}`))
	f.Add([]byte(`{"id":-1}`))
	f.Add([]byte(`{"properties":[{"handle":1e3,"collectCycle":9223372036854775807,"visitor":"<&>"}]}`))
	f.Add([]byte(`{"name":"\ud800\u00e9\xff","properties":[{}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Device
		if err := json.Unmarshal(b, &d); err != nil {
			return
		}
		for i := range d.Properties {
			p := &d.Properties[i]
			p.ValueType()
			p.Writable()
			got := d.Property(p.Handle)
			var want *Property
			for j := range d.Properties {
				if d.Properties[j].Handle == p.Handle {
					want = &d.Properties[j]
					break
				}
			}
			// Handles should be unique; with duplicates, either is fine.
			if got == nil || got.Handle != want.Handle {
				t.Fatalf("Property(%d) = %v, want %v", p.Handle, got, want)
			}
		}
		if got := d.Property(uint32(len(d.Properties)) + 1<<20); got != nil && got.Handle != uint32(len(d.Properties))+1<<20 {
			t.Fatalf("Property found the wrong handle %d", got.Handle)
		}
		enc, err := json.Marshal(&d)
		if err != nil {
			t.Fatalf("decoded description does not encode: %v", err)
		}
		var d2 Device
		if err := json.Unmarshal(enc, &d2); err != nil {
			t.Fatalf("encoded description %s does not decode: %v", enc, err)
		}
		enc2, err := json.Marshal(&d2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("description does not round-trip:\n%s\n%s", enc, enc2)
		}
		if len(d.Properties) != len(d2.Properties) {
			t.Fatalf("%d properties became %d", len(d.Properties), len(d2.Properties))
		}
		// Raw objects are compacted on the way out; everything else is equal.
		d.ProtocolConfig, d.ModelConfig, d2.ProtocolConfig, d2.ModelConfig = nil, nil, nil, nil
		for i := range d.Properties {
			d.Properties[i].Visitor, d2.Properties[i].Visitor = nil, nil
		}
		if !reflect.DeepEqual(normal(d), normal(d2)) {
			t.Fatalf("description changed in a round trip:\n%+v\n%+v", d, d2)
		}
	})
}

// normal maps empty slices to nil, as omitempty does.
func normal(d Device) Device {
	if len(d.Properties) == 0 {
		d.Properties = nil
	}
	if len(d.Methods) == 0 {
		d.Methods = nil
	}
	for i := range d.Methods {
		if len(d.Methods[i].PropertyNames) == 0 {
			d.Methods[i].PropertyNames = nil
		}
	}
	return d
}
