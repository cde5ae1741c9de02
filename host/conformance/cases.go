package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// suite is every case, in run order.
var suite = []Case{
	{"exports", "ABI marker, required exports with their signatures, optional exports read_batch, read_many, call_method, poll", caseExports},
	{"init", "wapper_init takes any config object; failInit fails with code 2 and the exact message", caseInit},
	{"device/add", "a refused wapper_device_add passes code and message, and the device is not kept", caseAdd},
	{"device/update-remove", "update keeps a device's state and applies the new description; remove forgets it", caseUpdateRemove},
	{"values/zero", "an echo property of every type reads its zero value before any write", caseZero},
	{"values/round-trip", "every type survives write then read (and batch read) bit for bit", caseRoundTrip},
	{"values/unknown-type", "a property of an unknown declared type fails read and write with code 2", caseUnknownType},
	{"errors", "errors reach the host with their exact code (1-255) and message", caseErrors},
	{"state", "wapper_device_state: every state byte, and unhealthy with a reason", caseState},
	{"methods", "wapper_call_method echoes JSON args; an unknown method fails with code 3", caseMethods},
	{"kv", "kv_get/kv_set/kv_delete through the host store, which outlives instances", caseKV},
	{"secrets", "secret_get returns granted values byte for byte; ungranted (7), absent (3) and malformed (2) references fail", caseSecrets},
	{"tls", "sock_open kind 2: the host's TLS handshake with the granted CA and client certificate; untrusted server (6), tcp:// grant only (7)", caseTLS},
	{"datagrams", "dgram_open/send/recv: a round trip with its sender; an ungranted sender's datagram dropped (5 when alone); ungranted destination (7); a fixed bind needs grants.listen (7)", caseDatagrams},
	{"batch", "wapper_read_batch: entries in request order with their own errors; bad handles; empty and 4096-handle batches", caseBatch},
	{"read_many", "wapper_read_many: many devices in one call, entries in request order with their own errors; unknown handles in their entry; malformed requests", caseReadMany},
	{"poll", "wapper_poll reports through the host in description order and returns next_ms", casePoll},
	{"memory/buffers", "every buffer the host allocates is freed; live buffers never overlap", caseBuffers},
	{"memory/values", "many large writes and reads do not grow guest memory", caseMemoryValues},
	{"memory/devices", "many add/write/remove cycles do not grow guest memory", caseMemoryDevices},
	{"restart/panic", "after a panic the instance is replaced, devices are re-added and served, memory state is fresh, kv kept", casePanic},
	{"restart/waiting-caller", "a call for another device made while the instance is replaced waits for the new instance and is served", caseWaitingCaller},
	{"restart/deadline", "a call past its deadline fails with code 5; the instance is replaced and serves again", caseDeadline},
}

func caseExports(t *caseRun) {
	info, err := runtime.Check(t.ctx, t.wasm)
	if err != nil {
		t.Fatalf("the host refuses the module: %v", err)
	}
	if info.ABIMajor != abi.Major {
		t.Errorf("ABI major %d, want %d", info.ABIMajor, abi.Major)
	}
	for _, e := range []string{abi.ExportReadBatch, abi.ExportReadMany, abi.ExportMethod, abi.ExportPoll} {
		if !info.Has(e) {
			t.Errorf("optional export %s is missing; the conformance plugin implements it", e)
		}
	}
	t.Notef("%d bytes, initial memory %d KiB", info.Size, info.MemoryMinPages*64)
}

func caseInit(t *caseRun) {
	_, err := t.tryLoad(nil, func(c *runtime.Config) { c.PluginConfig = json.RawMessage(`{"failInit": "bad config"}`) })
	t.wantErr("load with failInit", err, abi.ErrInvalid, "bad config")
	for _, cfg := range []string{`{}`, `{"failInit": 5, "nested": {"a": [1, "x", null]}, "s": "é"}`} {
		p, err := t.tryLoad(nil, func(c *runtime.Config) { c.PluginConfig = json.RawMessage(cfg) })
		if err != nil {
			t.Errorf("load with config %s: %v", cfg, err)
			continue
		}
		t.add(p, FullDevice(1, ""))
		t.wantRead(p, 1, hInt, abi.Int(0))
	}
}

func caseAdd(t *caseRun) {
	p := t.load(nil, nil)
	err := p.AddDevice(t.ctx, device(2, `{"failAdd": "no such device"}`, prop(0, "int", "INT", "ReadWrite", `{"kind": "echo"}`)))
	t.wantErr("add with failAdd", err, abi.ErrInvalid, "no such device")
	_, err = p.Read(t.ctx, 2, 0)
	t.wantErr("read of the refused device", err, abi.ErrNotFound, "*")
	t.add(p, FullDevice(2, ""))
	t.wantRead(p, 2, hInt, abi.Int(0))
	t.add(p, FullDevice(3, ""))
	t.write(p, 3, hInt, abi.Int(3))
	t.wantRead(p, 2, hInt, abi.Int(0)) // devices keep separate state
	t.wantRead(p, 3, hInt, abi.Int(3))
}

func caseUpdateRemove(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	t.write(p, 1, hInt, abi.Int(7))
	d := FullDevice(1, `{"state": "offline"}`)
	d.Properties[hFail].Visitor = json.RawMessage(`{"kind": "error", "code": "64", "message": "changed"}`)
	if err := p.UpdateDevice(t.ctx, d); err != nil {
		t.Fatalf("update: %v", err)
	}
	t.wantRead(p, 1, hInt, abi.Int(7))
	if st, _, err := p.State(t.ctx, 1); err != nil || st != abi.StateOffline {
		t.Errorf("state after update = %v, %v; want offline", st, err)
	}
	_, err := p.Read(t.ctx, 1, hFail)
	t.wantErr("read with the updated visitor", err, 64, "changed")
	if err := p.RemoveDevice(t.ctx, 1); err != nil {
		t.Errorf("remove: %v", err)
	}
	_, err = p.Read(t.ctx, 1, hInt)
	t.wantErr("read of a removed device", err, abi.ErrNotFound, "*")
	t.add(p, FullDevice(1, ""))
	t.wantRead(p, 1, hInt, abi.Int(0)) // remove forgot the echo value
	if n := p.probe.Calls(abi.ExportDeviceRemove); n != 1 {
		t.Errorf("wapper_device_remove ran %d times, want 1", n)
	}
}

func caseZero(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	for _, e := range echoHandles {
		t.wantRead(p, 1, e.h, zero(e.t))
	}
}

// roundTrips are the values each echo property must keep exactly.
func roundTrips() map[uint32][]abi.Value {
	long := make([]byte, 64<<10)
	for i := range long {
		long[i] = byte(i * 7)
	}
	return map[uint32][]abi.Value{
		hInt:   {abi.Int(0), abi.Int(-5), abi.Int(1), abi.Int(math.MaxInt64), abi.Int(math.MinInt64)},
		hFloat: {abi.Float(1.5), abi.Float(float32(math.Copysign(0, -1))), abi.Float(math.MaxFloat32), abi.Float(math.SmallestNonzeroFloat32), abi.Float(float32(math.Inf(1))), abi.Float(float32(math.Inf(-1))), abi.Float(math.Float32frombits(0x7fc00000))},
		hDouble: {abi.Double(0.1), abi.Double(math.Copysign(0, -1)), abi.Double(math.MaxFloat64), abi.Double(math.SmallestNonzeroFloat64),
			abi.Double(math.Inf(-1)), abi.Double(math.Float64frombits(0x7ff8000000000000)), abi.Double(-1e-300)},
		hString: {abi.String(""), abi.String("hello"), abi.String("héllo, wörld ✓ 🚀"), abi.String("nul\x00inside"), abi.String("quote \" backslash \\ newline \n tab \t"), abi.String(strings.Repeat("long ", 20000))},
		hBool:   {abi.Bool(true), abi.Bool(false), abi.Bool(true)},
		hBytes:  {abi.Bytes(nil), abi.Bytes([]byte{0}), abi.Bytes([]byte{0, 1, 255}), abi.Bytes(long)},
		hStream: {abi.Stream(nil), abi.Stream([]byte{0, 7, 0}), abi.Stream(long[:1000])},
	}
}

func caseRoundTrip(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	var hs []uint32
	var last []abi.Value
	for _, e := range echoHandles {
		vals := roundTrips()[e.h]
		for _, v := range vals {
			if t.write(p, 1, e.h, v) {
				t.wantRead(p, 1, e.h, v)
			}
		}
		hs = append(hs, e.h)
		last = append(last, vals[len(vals)-1])
	}
	entries, err := p.ReadBatch(t.ctx, 1, hs)
	if err != nil {
		t.Fatalf("batch read of every type: %v", err)
	}
	for i, en := range entries {
		if en.Err != nil || !en.Value.Equal(last[i]) {
			t.Errorf("batch entry %d (handle %d) = %s, %v; want %s", i, hs[i], short(en.Value), en.Err, short(last[i]))
		}
	}
}

func caseUnknownType(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	_, err := p.Read(t.ctx, 1, hWidget)
	t.wantErr("read of type WIDGET", err, abi.ErrInvalid, "*")
	t.wantErr("write of type WIDGET", p.Write(t.ctx, 1, hWidget, abi.Int(1)), abi.ErrInvalid, "*")
}

func caseErrors(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	_, err := p.Read(t.ctx, 1, hFail)
	t.wantErr("read of kind error", err, abi.ErrDeviceFailed, "device said no")
	t.wantErr("write of kind error", p.Write(t.ctx, 1, hFail, abi.Int(1)), abi.ErrDeviceFailed, "device said no")
	t.wantErr("write of a ReadOnly property", p.Write(t.ctx, 1, hReadOnly, abi.Int(1)), abi.ErrReadOnly, "*")

	odd := "état \"sensor\" ✗\nline 2\ttab"
	// The host keeps a message of up to runtime.MaxGuestText bytes whole.
	long := strings.Repeat("é", runtime.MaxGuestText/2)
	t.add(p, device(2, "",
		prop(0, "own", "INT", "ReadWrite", `{"kind": "error", "code": "200", "message": "plugin's own code"}`),
		prop(1, "bare", "INT", "ReadWrite", `{"kind": "error", "code": 5}`),
		prop(2, "odd", "STRING", "ReadWrite", fmt.Sprintf(`{"kind": "error", "code": 14, "message": %q}`, odd)),
		prop(3, "nope", "INT", "ReadWrite", `{"kind": "nope"}`),
		prop(4, "none", "INT", "ReadWrite", ``),
		prop(5, "poll", "INT", "ReadWrite", `{"kind": "poll"}`),
		prop(6, "spin", "INT", "ReadWrite", `{"kind": "spin", "ms": 1}`),
		prop(7, "long", "BYTES", "ReadWrite", fmt.Sprintf(`{"kind": "error", "code": 255, "message": %q}`, long)),
		prop(8, "max", "INT", "ReadWrite", `{"kind": "error", "code": "64", "message": "plugin code 64"}`),
	))
	cases := []struct {
		h    uint32
		code abi.Code
		msg  string
		v    abi.Value // to write; the write fails the same way
	}{
		{0, 200, "plugin's own code", abi.Int(1)},
		{1, abi.ErrTimeout, "", abi.Int(1)},
		{2, abi.ErrDeviceFailed, odd, abi.String("x")},
		{3, abi.ErrUnsupported, `unknown visitor kind "nope"`, abi.Int(1)},
		{4, abi.ErrUnsupported, `unknown visitor kind ""`, abi.Int(1)},
		{7, 255, long, abi.Bytes([]byte{1})},
		{8, 64, "plugin code 64", abi.Int(1)},
	}
	for _, c := range cases {
		_, err := p.Read(t.ctx, 2, c.h)
		t.wantErr(fmt.Sprintf("read of handle %d", c.h), err, c.code, c.msg)
		t.wantErr(fmt.Sprintf("write of handle %d", c.h), p.Write(t.ctx, 2, c.h, c.v), c.code, c.msg)
	}
	t.wantErr("write of a poll property", p.Write(t.ctx, 2, 5, abi.Int(1)), abi.ErrUnsupported, "poll properties are not writable")
	t.wantErr("write of a spin property", p.Write(t.ctx, 2, 6, abi.Int(1)), abi.ErrUnsupported, "spin properties are not writable")
	// The instance survives plugin errors.
	if n := p.Restarts(); n != 0 {
		t.Errorf("%d instance restarts after plain errors, want 0", n)
	}
	t.wantRead(p, 1, hInt, abi.Int(0))
}

func caseState(t *caseRun) {
	p := t.load(nil, nil)
	cases := []struct {
		cfg    string
		st     abi.State
		reason string
	}{
		{``, abi.StateOK, ""},
		{`{}`, abi.StateOK, ""},
		{`{"state": "unknown"}`, abi.StateUnknown, ""},
		{`{"state": "ok"}`, abi.StateOK, ""},
		{`{"state": "online"}`, abi.StateOnline, ""},
		{`{"state": "offline"}`, abi.StateOffline, ""},
		{`{"state": "unhealthy"}`, abi.StateUnhealthy, ""},
		{`{"state": "weird"}`, abi.StateUnhealthy, `unknown state "weird"`},
		{`{"state": "online", "reason": "cable cut"}`, abi.StateUnhealthy, "cable cut"},
	}
	for i, c := range cases {
		id := uint32(10 + i)
		t.add(p, device(id, c.cfg))
		st, reason, err := p.State(t.ctx, id)
		if err != nil || st != c.st || reason != c.reason {
			t.Errorf("state with protocolConfig %s = %v %q, %v; want %v %q", c.cfg, st, reason, err, c.st, c.reason)
		}
	}
}

func caseMethods(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	for _, args := range []string{`{"a": [1, "x"]}`, `{"n": 12345678901234567890, "s": "é\"\\", "f": 1.5e300, "b": true, "z": null, "o": {}, "l": []}`, `[1, 2]`, `"text"`} {
		res, err := p.CallMethod(t.ctx, 1, "echo", json.RawMessage(args))
		if err != nil || !jsonEqual(res, []byte(args)) {
			t.Errorf("method echo with %s = %s, %v; want the same JSON", args, res, err)
		}
	}
	res, err := p.CallMethod(t.ctx, 1, "echo", nil)
	if err != nil || !jsonEqual(res, []byte("null")) {
		t.Errorf("method echo without args = %q, %v; want null", res, err)
	}
	_, err = p.CallMethod(t.ctx, 1, "nope", nil)
	t.wantErr("method nope", err, abi.ErrNotFound, `unknown method "nope"`)
}

func caseKV(t *caseRun) {
	kv := &MemKV{}
	p := t.load(kv, nil)
	t.add(p, FullDevice(1, ""))
	absent := fmt.Sprintf("kv key %q is absent", storedKey)
	_, err := p.Read(t.ctx, 1, hStored)
	t.wantErr("read of an absent key", err, abi.ErrNotFound, absent)
	t.write(p, 1, hStored, abi.String("hello"))
	t.wantRead(p, 1, hStored, abi.String("hello"))
	if v, ok, _ := kv.Get([]byte(storedKey)); !ok || !equalBytes(v, abi.String("hello").Encode()) {
		t.Errorf("host store holds %q under %q, want the encoded value %q", v, storedKey, abi.String("hello").Encode())
	}
	// A new plugin (new instances) over the same store sees the value.
	q := t.load(kv, nil)
	t.add(q, FullDevice(1, ""))
	t.wantRead(q, 1, hStored, abi.String("hello"))
	if _, err := q.CallMethod(t.ctx, 1, "kvDelete", json.RawMessage(`{"key": "`+storedKey+`"}`)); err != nil {
		t.Errorf("method kvDelete: %v", err)
	}
	_, err = p.Read(t.ctx, 1, hStored)
	t.wantErr("read after kvDelete", err, abi.ErrNotFound, absent)
	if _, ok, _ := kv.Get([]byte(storedKey)); ok {
		t.Errorf("key %q is still in the host store after kvDelete", storedKey)
	}
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

func caseBatch(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	t.write(p, 1, hInt, abi.Int(-5))
	t.write(p, 1, hString, abi.String("s"))
	entries, err := p.ReadBatch(t.ctx, 1, []uint32{hInt, hFail, hTicks})
	switch {
	case err != nil:
		t.Errorf("batch [0 6 8]: %v", err)
	case len(entries) != 3:
		t.Errorf("batch [0 6 8]: %d entries, want 3", len(entries))
	default:
		if en := entries[0]; en.Err != nil || !en.Value.Equal(abi.Int(-5)) {
			t.Errorf("batch entry 0 = %#v, %v; want INT(-5)", en.Value, en.Err)
		}
		t.wantErr("batch entry 1", entries[1].Err, abi.ErrDeviceFailed, "device said no")
		if en := entries[2]; en.Err != nil || !en.Value.Equal(abi.Int(0)) {
			t.Errorf("batch entry 2 = %#v, %v; want INT(0)", en.Value, en.Err)
		}
	}
	_, err = p.ReadBatch(t.ctx, 1, []uint32{hInt, 99})
	t.wantErr("batch with handle 99", err, abi.ErrNotFound, "*")

	entries, err = p.ReadBatch(t.ctx, 1, []uint32{hString, hStored, hWidget, hString, hInt})
	if err != nil || len(entries) != 5 {
		t.Errorf("batch [3 7 13 3 0] = %d entries, %v; want 5", len(entries), err)
	} else {
		for _, i := range []int{0, 3} {
			if !entries[i].Value.Equal(abi.String("s")) {
				t.Errorf("batch entry %d = %#v, %v; want STRING(s)", i, entries[i].Value, entries[i].Err)
			}
		}
		t.wantErr("batch entry 1 (kv absent)", entries[1].Err, abi.ErrNotFound, fmt.Sprintf("kv key %q is absent", storedKey))
		t.wantErr("batch entry 2 (unknown type)", entries[2].Err, abi.ErrInvalid, "*")
		if !entries[4].Value.Equal(abi.Int(-5)) {
			t.Errorf("batch entry 4 = %#v, %v; want INT(-5)", entries[4].Value, entries[4].Err)
		}
	}

	if entries, err = p.ReadBatch(t.ctx, 1, []uint32{}); err != nil || len(entries) != 0 {
		t.Errorf("empty batch = %d entries, %v; want none", len(entries), err)
	}
	all := make([]uint32, abi.MaxBatch)
	entries, err = p.ReadBatch(t.ctx, 1, all)
	if err != nil || len(entries) != abi.MaxBatch {
		t.Errorf("batch of %d handles = %d entries, %v", abi.MaxBatch, len(entries), err)
	} else {
		for i, en := range entries {
			if en.Err != nil || !en.Value.Equal(abi.Int(-5)) {
				t.Errorf("batch of %d: entry %d = %#v, %v", abi.MaxBatch, i, en.Value, en.Err)
				break
			}
		}
	}
}

func casePoll(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	for round := int64(1); round <= 2; round++ {
		next, err := p.Poll(t.ctx, 1, time.Second)
		if err != nil || next != 250*time.Millisecond {
			t.Errorf("poll %d = %v, %v; want 250ms", round, next, err)
		}
		rs := p.reports.take()
		if len(rs) != 1 || rs[0].Device != 1 || rs[0].Property != hTicks || !rs[0].Value.Equal(abi.Int(round)) {
			t.Errorf("poll %d reported %s; want device 1 property %d INT(%d)", round, fmtReports(rs), hTicks, round)
		}
		t.wantRead(p, 1, hTicks, abi.Int(round))
	}

	t.add(p, device(2, "",
		prop(0, "a", "INT", "ReadOnly", `{"kind": "poll"}`),
		prop(1, "x", "INT", "ReadWrite", `{"kind": "echo"}`),
		prop(2, "b", "INT", "ReadOnly", `{"kind": "poll", "every": 40}`)))
	next, err := p.Poll(t.ctx, 2, time.Second)
	if err != nil || next != 100*time.Millisecond {
		t.Errorf("poll without every = %v, %v; want the default 100ms", next, err)
	}
	rs := p.reports.take()
	if len(rs) != 2 || rs[0].Property != 0 || rs[1].Property != 2 || !rs[0].Value.Equal(abi.Int(1)) || !rs[1].Value.Equal(abi.Int(1)) {
		t.Errorf("poll of two poll properties reported %s; want properties 0 then 2, INT(1) each", fmtReports(rs))
	}

	t.add(p, device(3, "", prop(0, "x", "INT", "ReadWrite", `{"kind": "echo"}`)))
	next, err = p.Poll(t.ctx, 3, time.Second)
	if err != nil || next != 0 {
		t.Errorf("poll without poll properties = %v, %v; want 0 (do not poll again)", next, err)
	}
	if rs := p.reports.take(); len(rs) != 0 {
		t.Errorf("poll without poll properties reported %s", fmtReports(rs))
	}
	t.wantRead(p, 1, hTicks, abi.Int(2)) // counters are per device
}

func fmtReports(rs []runtime.Reading) string {
	if len(rs) == 0 {
		return "nothing"
	}
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d/%d %#v", r.Device, r.Property, r.Value)
	}
	return b.String()
}

func caseBuffers(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	t.write(p, 1, hString, abi.String(""))
	t.write(p, 1, hBytes, abi.Bytes(make([]byte, 1<<20)))
	t.wantRead(p, 1, hBytes, abi.Bytes(make([]byte, 1<<20)))
	if _, err := p.ReadBatch(t.ctx, 1, []uint32{}); err != nil {
		t.Errorf("empty batch: %v", err) // answered by the host without a call (SPEC §3.2)
	}
	if _, err := p.CallMethod(t.ctx, 1, "echo", json.RawMessage(`{"x": 1}`)); err != nil {
		t.Errorf("method echo: %v", err)
	}
	for _, pr := range p.probe.Problems() {
		t.Errorf("%s", pr)
	}
	allocs, frees, zeroSize, live := p.probe.Buffers()
	if allocs != frees || live != 0 {
		t.Errorf("%d buffers allocated, %d freed, %d still live", allocs, frees, live)
	}
	t.Notef("%d buffers allocated and freed, %d of size 0", allocs, zeroSize)
}

// warmUp is the number of cycles a memory case runs before it measures:
// enough for a garbage-collected guest to reach its steady heap (a Go
// plugin's levels off after about 50 add/remove cycles).
const warmUp = 60

// cycles runs cycle warmUp times, then Options.Cycles times, and returns
// the guest's memory size after the warm-up and at the end, and the
// number of measured cycles. It ends the case when a cycle fails.
func (t *caseRun) cycles(p *loaded, cycle func(i int) bool) (m0, m1 uint32, n int) {
	for i := range warmUp {
		if !cycle(i) {
			t.Fatalf("warm-up cycle %d failed", i)
		}
	}
	m0, n = p.probe.Memory(), t.opts.Cycles
	for i := range n {
		if !cycle(warmUp + i) {
			t.Fatalf("cycle %d of %d failed", i, n)
		}
	}
	return m0, p.probe.Memory(), n
}

// growthLimit is how much guest memory may grow over a memory case: a
// quarter of what a plugin that kept every buffer would need.
func growthLimit(cycles, perCycle int) uint32 { return uint32(cycles * perCycle / 4) }

func caseMemoryValues(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	const size = 256 << 10
	buf := make([]byte, size)
	cycle := func(i int) bool {
		buf[i%size] = byte(i)
		buf[0] = byte(i >> 8)
		v := abi.Bytes(buf)
		return t.write(p, 1, hBytes, v) && t.wantRead(p, 1, hBytes, v)
	}
	m0, m1, n := t.cycles(p, cycle)
	if m1 > m0+growthLimit(n, 2*size) {
		t.Errorf("guest memory grew from %d KiB to %d KiB over %d writes and reads of %d KiB: buffers are not freed", m0>>10, m1>>10, n, size>>10)
	}
	t.Notef("guest memory %d KiB after warm-up, %d KiB after %d writes and reads of %d KiB", m0>>10, m1>>10, n, size>>10)
	if r := p.Restarts(); r != 0 {
		t.Errorf("%d instance restarts", r)
	}
}

// bigDevice is a description of about 40 KiB.
func bigDevice(id uint32) abi.Device {
	d := device(id, `{"state": "online"}`)
	pad := strings.Repeat("p", 200)
	for h := range uint32(128) {
		d.Properties = append(d.Properties, prop(h, fmt.Sprintf("%s-%d", pad, h), "STRING", "ReadWrite", `{"kind": "echo"}`))
	}
	return d
}

func caseMemoryDevices(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	text := abi.String(strings.Repeat("v", 16<<10))
	raw, _ := json.Marshal(bigDevice(0))
	cycle := func(i int) bool {
		id := uint32(1000 + i)
		if err := p.AddDevice(t.ctx, bigDevice(id)); err != nil {
			t.Errorf("cycle %d: add: %v", i, err)
			return false
		}
		ok := t.write(p, id, 5, text) && t.wantRead(p, id, 5, text)
		if err := p.RemoveDevice(t.ctx, id); err != nil {
			t.Errorf("cycle %d: remove: %v", i, err)
			return false
		}
		return ok
	}
	m0, m1, n := t.cycles(p, cycle)
	per := len(raw) + 16<<10
	if m1 > m0+growthLimit(n, per) {
		t.Errorf("guest memory grew from %d KiB to %d KiB over %d cycles of add (%d KiB description), write, remove: removed devices are kept", m0>>10, m1>>10, n, len(raw)>>10)
	}
	if got := p.probe.Calls(abi.ExportDeviceRemove); got != n+warmUp {
		t.Errorf("wapper_device_remove ran %d times for %d removals", got, n+warmUp)
	}
	t.Notef("guest memory %d KiB after warm-up, %d KiB after %d add/write/remove cycles of a %d KiB device", m0>>10, m1>>10, n, len(raw)>>10)
	t.wantRead(p, 1, hInt, abi.Int(0))
}

// waitRestarts waits until the plugin has replaced n instances.
func (t *caseRun) waitRestarts(p *loaded, n int64) {
	for p.Restarts() < n {
		select {
		case <-t.ctx.Done():
			t.Fatalf("the instance was not replaced (%d restarts, want %d)", p.Restarts(), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func casePanic(t *caseRun) {
	kv := &MemKV{}
	p := t.load(kv, nil)
	t.add(p, FullDevice(1, ""))
	t.add(p, FullDevice(2, `{"state": "offline"}`))
	t.write(p, 1, hInt, abi.Int(7))
	t.write(p, 2, hInt, abi.Int(9))
	t.write(p, 1, hStored, abi.String("kept"))
	if _, err := p.Poll(t.ctx, 1, time.Second); err != nil {
		t.Errorf("poll: %v", err)
	}

	before := p.probe.Instances()
	_, err := p.Read(t.ctx, 1, hBoom)
	switch code := abi.CodeOf(err); {
	case err == nil:
		t.Fatalf("read of a panicking property succeeded")
	case code == abi.ErrPanic:
		if !strings.Contains(err.Error(), "conformance panic") {
			t.Errorf("panic error %q lacks the panic message %q", err, "conformance panic")
		}
		t.Notef("panic reported as code 13 (plugin panic)")
	default:
		t.Notef("panic reported as a trap: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	t.waitRestarts(p, 1)
	t.awaitReadd(p, before, 2)
	// The new instance starts empty and has both devices again.
	t.wantRead(p, 2, hInt, abi.Int(0))
	t.wantRead(p, 1, hInt, abi.Int(0))
	t.wantRead(p, 1, hTicks, abi.Int(0))
	if st, _, err := p.State(t.ctx, 2); err != nil || st != abi.StateOffline {
		t.Errorf("state of device 2 after the restart = %v, %v; want offline (its description re-added)", st, err)
	}
	t.wantRead(p, 1, hStored, abi.String("kept"))
	if n := p.probe.Instances(); n < 2 {
		t.Errorf("the probe saw %d instances, want a new one", n)
	}

	// A panic inside a batch fails the whole batch the same way.
	t.write(p, 1, hInt, abi.Int(8))
	before = p.probe.Instances()
	if _, err := p.ReadBatch(t.ctx, 1, []uint32{hInt, hBoom}); err == nil {
		t.Errorf("batch with a panicking property succeeded")
	}
	t.waitRestarts(p, 2)
	t.awaitReadd(p, before, 2)
	t.wantRead(p, 1, hInt, abi.Int(0))
}

// awaitReadd waits, for a while, until a new instance has been made
// after the probe had seen before instances and devices have been added to
// it, so that the case's next calls find the replacement ready. A host may
// also re-add lazily, on each device's next call; then this gives up after
// a few seconds and the calls do the adding.
func (t *caseRun) awaitReadd(p *loaded, before, devices int) {
	for range 500 {
		if p.probe.Instances() > before && p.probe.Calls(abi.ExportDeviceAdd) >= devices {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Notef("devices were not re-added to the new instance before their next call")
}

func caseWaitingCaller(t *caseRun) {
	p := t.load(nil, nil)
	t.add(p, FullDevice(1, ""))
	t.add(p, FullDevice(2, ""))
	t.write(p, 2, hInt, abi.Int(9))
	if _, err := p.Read(t.ctx, 1, hBoom); err == nil {
		t.Fatalf("read of a panicking property succeeded")
	}
	// Right away, while the instance is being replaced: the call waits for
	// the replacement and is served by it.
	ctx, cancel := context.WithTimeout(t.ctx, WaitingCallerTimeout)
	defer cancel()
	v, err := p.Read(ctx, 2, hInt)
	switch {
	case err != nil:
		t.Errorf("a call for another device made while the instance was replaced was not served within %v: %v", WaitingCallerTimeout, err)
	case !v.Equal(abi.Int(0)):
		t.Errorf("read 2/0 = %s on the new instance, want INT(0)", short(v))
	}
}

// WaitingCallerTimeout bounds the call of case restart/waiting-caller,
// which waits for a replacement instance (a restart backoff of 100 ms and
// one instantiation).
const WaitingCallerTimeout = 15 * time.Second

func caseDeadline(t *caseRun) {
	p := t.load(nil, func(c *runtime.Config) { c.CallTimeout = t.opts.DeadlineTimeout })
	t.add(p, device(1, "",
		prop(0, "forever", "INT", "ReadOnly", `{"kind": "spin", "ms": 0}`),
		prop(1, "x", "INT", "ReadWrite", `{"kind": "echo"}`),
		prop(2, "short", "INT", "ReadOnly", `{"kind": "spin", "ms": "5"}`)))
	if v, err := p.Read(t.ctx, 1, 2); err != nil || v.Type() != abi.TypeInt || v.Int() < 5 {
		t.Errorf("spin of 5 ms = %#v, %v; want INT ≥ 5", v, err)
	}
	t.write(p, 1, 1, abi.Int(3))
	_, err := p.Read(t.ctx, 1, 0)
	t.wantErr("endless spin", err, abi.ErrTimeout, "*")
	t.waitRestarts(p, 1)
	t.wantRead(p, 1, 1, abi.Int(0))
	t.write(p, 1, 1, abi.Int(4))
	t.wantRead(p, 1, 1, abi.Int(4))
}
