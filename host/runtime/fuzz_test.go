package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"wapper.dev/wapper/abi"
)

// Fuzz targets for how the host decodes what a guest hands it (issue 11):
// the packed i64 result of an export, the result buffer it points to, and
// the payloads read, batch read, state and poll decode from it, plus the
// arguments of the report host function. A plugin controls all of these,
// so none may crash the host or be taken for something it is not. Run one
// with
//
//	go test -run '^$' -fuzz '^FuzzCallResult$' -fuzztime 60s ./host/runtime

// memModule is the smallest module with an exported memory of one page,
// so that the targets read guest memory through wazero's own bounds
// checks: (module (memory (export "memory") 1)).
var memModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, min 1 page
	0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, // export "memory"
}

// guestBase is where a target puts its bytes in guest memory; the pages
// below and above it are zero, as in a fresh guest.
const guestBase = 1024

// fuzzGuest is a plugin stub with one real guest memory. Each input gets a
// fresh instance on it, as the host makes after a failure.
type fuzzGuest struct {
	p   *Plugin
	mem api.Memory
}

func newFuzzGuest(f *testing.F) *fuzzGuest {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	f.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Instantiate(ctx, memModule)
	if err != nil {
		f.Fatal(err)
	}
	p := &Plugin{
		name:    "fuzz",
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		timeout: time.Minute,
		m:       newPluginMetrics(NewMetrics(nil), "fuzz"),
		reg:     newRegistry(),
	}
	p.logs = newLogLimiter(p, 0)
	return &fuzzGuest{p: p, mem: mod.Memory()}
}

// instance returns a new instance whose guest memory holds b at guestBase
// (cut to fit the page), and a function that clears it again.
func (g *fuzzGuest) instance(b []byte) (*instance, func()) {
	if max := int(g.mem.Size()) - guestBase; len(b) > max {
		b = b[:max]
	}
	if !g.mem.Write(guestBase, b) {
		panic("guest memory write failed")
	}
	in := &instance{p: g.p, id: 1, mem: g.mem, known: map[uint32]known{}}
	in.ctx, in.cancel = context.WithCancel(context.WithValue(context.Background(), instKey{}, in))
	in.watchdog = time.AfterFunc(time.Hour, func() { in.timedOut.Store(true); in.cancel() })
	in.watchdog.Stop()
	return in, func() {
		in.cancel()
		g.mem.Write(guestBase, make([]byte, len(b)))
	}
}

// returning is an export that returns a fixed i64 result.
type returning struct {
	api.Function
	r uint64
}

func (f returning) CallWithStack(_ context.Context, stack []uint64) error {
	stack[0] = f.r
	return nil
}

// Exports whose results the targets decode.
const (
	fuzzRead = iota
	fuzzBatch
	fuzzState
	fuzzPoll
	fuzzMethod
	numFuzzExports
)

var fuzzExportNames = [numFuzzExports]string{abi.ExportRead, abi.ExportReadBatch, abi.ExportState, abi.ExportPoll, abi.ExportMethod}

// fuzzProps are declared properties of every type, for the conversions.
var fuzzProps = []abi.Property{
	{Name: "count", Type: "INT"}, {Name: "temp", Type: "FLOAT"}, {Name: "pi", Type: "DOUBLE"},
	{Name: "label", Type: "STRING"}, {Name: "on", Type: "boolean"}, {Name: "raw", Type: "BYTES"},
	{Name: "frames", Type: "STREAM"}, {Name: "untyped", Type: ""}, {Name: "odd", Type: "DECIMAL"},
}

// ptrAt packs a result pointing at the guest bytes.
func ptrAt(n int) uint64 { return abi.Pack(guestBase, uint32(n)) }

// FuzzCallResult feeds an export's packed result and the guest memory it
// points into through the host's result handling (instance.call) and the
// payload decoders of calls.go. A result out of bounds, too long or with
// code 13 throws the instance away; any other failure code is the
// plugin's error, with a message that no longer aliases guest memory; a
// payload that does not decode is an invalid-argument error; a decoded
// value has the property's declared type.
func FuzzCallResult(f *testing.F) {
	add := func(export int, mem []byte, r uint64, typ uint8, count uint16) {
		f.Add(uint8(export), mem, r, typ, count)
	}
	for i, v := range []abi.Value{abi.Int(-40), abi.Float(21.5), abi.Double(3.25), abi.String("21.5"), abi.Bool(true), abi.Bytes([]byte{0, 1}), abi.Stream(nil), abi.String("true")} {
		buf := abi.AppendResult(nil, abi.OK, v.Encode())
		add(fuzzRead, buf, ptrAt(len(buf)), uint8(i), 0)
		add(fuzzRead, buf, ptrAt(len(buf)), uint8(i+1), 0)
	}
	batch := abi.AppendBatchEntry([]byte{byte(abi.OK)}, abi.OK, abi.Int(7).Encode())
	batch = abi.AppendBatchEntry(batch, abi.ErrDeviceFailed, []byte("exception 2"))
	batch = abi.AppendBatchEntry(batch, abi.OK, abi.String("12.0").Encode())
	add(fuzzBatch, batch, ptrAt(len(batch)), 0, 3)
	add(fuzzBatch, batch, ptrAt(len(batch)), 0, 4096)
	state := append([]byte{byte(abi.OK), byte(abi.StateUnhealthy)}, "serial line gone"...)
	add(fuzzState, state, ptrAt(len(state)), 0, 0)
	add(fuzzPoll, []byte{0, 250, 0, 0, 0}, ptrAt(5), 0, 0)
	add(fuzzPoll, []byte{0, 250, 0}, ptrAt(3), 0, 0)
	method := append([]byte{byte(abi.OK)}, `{"ok":true}`...)
	add(fuzzMethod, method, ptrAt(len(method)), 0, 0)
	fail := append([]byte{byte(abi.ErrTimeout)}, "no answer from 10.0.0.7:502"...)
	add(fuzzRead, fail, ptrAt(len(fail)), 0, 0)
	panicked := append([]byte{byte(abi.ErrPanic)}, "index out of range"...)
	add(fuzzRead, panicked, ptrAt(len(panicked)), 0, 0)
	add(fuzzRead, nil, 0, 0, 0)                               // success, no payload
	add(fuzzRead, []byte{0, 1}, abi.Pack(guestBase, 0), 0, 0) // zero length
	add(fuzzRead, []byte{0}, abi.Pack(65535, 2), 0, 0)        // runs off the page
	add(fuzzRead, []byte{0}, abi.Pack(0xffff_fff0, 0x20), 0, 0)
	add(fuzzRead, []byte{0}, abi.Pack(guestBase, abi.MaxMessage+1), 0, 0)
	add(fuzzState, []byte{0}, abi.Pack(guestBase, 1), 0, 0) // empty state

	g := newFuzzGuest(f)
	f.Fuzz(func(t *testing.T, export uint8, mem []byte, r uint64, typ uint8, count uint16) {
		ex := int(export) % numFuzzExports
		in, clear := g.instance(mem)
		defer clear()
		payload, err := in.call(fuzzExportNames[ex], returning{r: r})

		ptr, n := abi.Unpack(r)
		buf, inBounds := g.mem.Read(ptr, n)
		switch {
		case r == 0:
			if payload != nil || err != nil || in.dead {
				t.Fatalf("zero result gave %q, %v, dead %v", payload, err, in.dead)
			}
			return
		case n == 0 || n > abi.MaxMessage || !inBounds:
			want := abi.ErrInternal
			if n > abi.MaxMessage {
				want = abi.ErrTooLarge
			}
			if payload != nil || !in.dead || abi.CodeOf(err) != want {
				t.Fatalf("result %#x+%d (bad) gave %q, %v, dead %v", ptr, n, payload, err, in.dead)
			}
			return
		case buf[0] == byte(abi.ErrPanic):
			if payload != nil || !in.dead || abi.CodeOf(err) != abi.ErrPanic {
				t.Fatalf("panic result gave %q, %v, dead %v", payload, err, in.dead)
			}
			return
		case buf[0] != byte(abi.OK):
			var ae *abi.Error
			if payload != nil || in.dead || !errors.As(err, &ae) || ae.Code != abi.Code(buf[0]) || ae.Message != string(buf[1:]) {
				t.Fatalf("failure result % x gave %q, %#v, dead %v", buf, payload, err, in.dead)
			}
			// The message is the host's copy.
			msg := ae.Message
			clear()
			if ae.Message != msg {
				t.Fatal("error message aliases guest memory")
			}
			return
		}
		if err != nil || in.dead || !bytes.Equal(payload, buf[1:]) {
			t.Fatalf("success result % x gave %q, %v, dead %v", buf, payload, err, in.dead)
		}

		switch ex {
		case fuzzRead:
			pd := &fuzzProps[int(typ)%len(fuzzProps)]
			v, err := decodeFor(pd, payload)
			checkDecoded(t, pd, v, err)
		case fuzzBatch:
			// The host asks for 1..MaxBatch properties.
			cnt := 1 + int(count)%abi.MaxBatch
			entries, err := abi.ParseBatch(payload, cnt)
			if err != nil {
				if entries != nil {
					t.Fatalf("batch error %v with entries", err)
				}
				return
			}
			if len(entries) != cnt {
				t.Fatalf("%d entries for %d properties", len(entries), cnt)
			}
			for i := range entries {
				pd := &fuzzProps[(int(typ)+i)%len(fuzzProps)]
				if entries[i].Err == nil {
					entries[i].Value, entries[i].Err = convertFor(pd, entries[i].Value)
					checkDecoded(t, pd, entries[i].Value, entries[i].Err)
				} else if c := abi.CodeOf(entries[i].Err); c == abi.OK {
					t.Fatalf("entry %d failed with code 0", i)
				}
			}
		case fuzzState:
			st, reason, err := abi.ParseStateResult(payload)
			if err == nil && (st > abi.StateUnhealthy || reason != string(payload[1:])) {
				t.Fatalf("state % x = %v %q", payload, st, reason)
			}
		case fuzzPoll:
			ms, err := abi.ParsePollNext(payload)
			if err == nil && time.Duration(ms)*time.Millisecond < 0 {
				t.Fatalf("poll delay %d ms overflows", ms)
			}
		}
	})
}

// checkDecoded checks a value decoded for property pd: an error is an
// invalid-argument *abi.Error, a value has pd's declared type.
func checkDecoded(t *testing.T, pd *abi.Property, v abi.Value, err error) {
	t.Helper()
	if err != nil {
		var ae *abi.Error
		if !errors.As(err, &ae) || ae.Code != abi.ErrInvalid || v.IsValid() {
			t.Fatalf("property %s (%s): %#v, %#v", pd.Name, pd.Type, v, err)
		}
		return
	}
	if !v.IsValid() {
		t.Fatalf("property %s (%s): no value and no error", pd.Name, pd.Type)
	}
	if want := pd.ValueType(); want != abi.TypeInvalid && v.Type() != want {
		t.Fatalf("property %s (%s): value %#v", pd.Name, pd.Type, v)
	}
	if dv, err := abi.DecodeValue(v.Encode()); err != nil || !dv.Equal(v) {
		t.Fatalf("value %#v does not survive its encoding: %v", v, err)
	}
}

// FuzzHostReport feeds the report host function (report(dev, prop,
// val_ptr, val_len)) arbitrary arguments and guest memory: it returns 0,
// -2 or -3 and never traps, and a reading it accepts is delivered once,
// converted to the property's declared type.
func FuzzHostReport(f *testing.F) {
	for i, v := range []abi.Value{abi.Int(5), abi.Float(1.5), abi.Double(2), abi.String("7"), abi.Bool(false), abi.Bytes([]byte("x")), abi.Stream([]byte("y")), abi.Double(1e300)} {
		enc := v.Encode()
		f.Add(uint64(1), uint64(i), uint64(guestBase), uint64(len(enc)), enc)
	}
	f.Add(uint64(1), uint64(0), uint64(guestBase), uint64(3), []byte{1, 2, 3})                 // malformed INT
	f.Add(uint64(2), uint64(0), uint64(guestBase), uint64(9), abi.Int(1).Encode())             // unknown device
	f.Add(uint64(1), uint64(99), uint64(guestBase), uint64(9), abi.Int(1).Encode())            // unknown property
	f.Add(uint64(1), uint64(0), uint64(65530), uint64(9), abi.Int(1).Encode())                 // off the page
	f.Add(uint64(1), uint64(0), uint64(1)<<32|guestBase, uint64(1)<<32|9, abi.Int(1).Encode()) // high bits set
	f.Add(uint64(1), uint64(0), uint64(guestBase), uint64(abi.MaxMessage+1), []byte{1})

	g := newFuzzGuest(f)
	props := make([]abi.Property, len(fuzzProps))
	for i, p := range fuzzProps {
		p.Handle = uint32(i)
		props[i] = p
	}
	g.p.reg.add(1, newDevice(abi.Device{ID: 1, Namespace: "ns", Name: "d", Properties: props}, nil, 1))
	var got []Reading
	g.p.cfg.Report = func(r Reading) { got = append(got, r) }

	f.Fuzz(func(t *testing.T, dev, prop, ptr, n uint64, mem []byte) {
		in, clear := g.instance(mem)
		defer clear()
		got = got[:0]
		stack := []uint64{dev, prop, ptr, n}
		hostReport(context.Background(), in, g.mem, stack)
		switch rc := int32(stack[0]); rc {
		case 0:
			if len(got) != 1 {
				t.Fatalf("accepted report delivered %d readings", len(got))
			}
			r := got[0]
			pd := g.p.device(1).desc.Property(uint32(prop))
			if uint32(dev) != 1 || pd == nil || r.Device != 1 || r.Property != uint32(prop) {
				t.Fatalf("report of %d/%d delivered as %+v", dev, prop, r)
			}
			if want := pd.ValueType(); want != abi.TypeInvalid && r.Value.Type() != want {
				t.Fatalf("property %s (%s) got %#v", pd.Name, pd.Type, r.Value)
			}
		case -int32(abi.ErrInvalid), -int32(abi.ErrNotFound):
			if len(got) != 0 {
				t.Fatalf("refused report (%d) delivered %d readings", rc, len(got))
			}
		default:
			t.Fatalf("report returned %d", rc)
		}
		if in.dead {
			t.Fatal("a report killed the instance")
		}
	})
}
