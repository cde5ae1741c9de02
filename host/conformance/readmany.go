package conformance

import (
	"fmt"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// caseReadMany checks wapper_read_many (ABI minor 1, SPEC §3.3): through
// the host, one call reads several devices in request order, each reading
// with its own value or error; asked directly, the plugin fails an unknown
// device or property in its own entry and refuses a malformed request as a
// whole.
func caseReadMany(t *caseRun) {
	p := t.load(nil, nil)
	if !p.Info().Has(abi.ExportReadMany) {
		t.Fatalf("the module does not export %s", abi.ExportReadMany)
	}
	t.add(p, FullDevice(1, ""))
	t.add(p, FullDevice(2, ""))
	t.write(p, 1, hInt, abi.Int(-5))
	t.write(p, 2, hInt, abi.Int(9))
	t.write(p, 2, hString, abi.String("two"))
	before := p.probe.Calls(abi.ExportReadMany)
	reqs := []runtime.ReadReq{{Device: 1, Handle: hInt}, {Device: 2, Handle: hInt}, {Device: 2, Handle: hString}, {Device: 1, Handle: hFail}, {Device: 2, Handle: hInt}, {Device: 1, Handle: hTicks}}
	out, err := p.ReadMany(t.ctx, reqs, nil)
	if err != nil {
		t.Fatalf("read_many %v: %v", reqs, err)
	}
	if n := p.probe.Calls(abi.ExportReadMany) - before; n != 1 {
		t.Errorf("the host made %d %s calls for %d readings, want 1", n, abi.ExportReadMany, len(reqs))
	}
	want := []abi.Value{abi.Int(-5), abi.Int(9), abi.String("two"), {}, abi.Int(9), abi.Int(0)}
	for i, en := range out {
		if i == 3 {
			t.wantErr("read_many entry 3 (fail)", en.Err, abi.ErrDeviceFailed, "device said no")
			continue
		}
		if en.Err != nil || !en.Value.Equal(want[i]) {
			t.Errorf("read_many entry %d (%v) = %s, %v; want %s", i, reqs[i], short(en.Value), en.Err, short(want[i]))
		}
	}

	// Straight to the plugin: handles the host would never send.
	err = p.Lend(t.ctx, func(l runtime.Lent) error {
		call := func(count uint32, req []byte) ([]byte, error) {
			ptr, err := l.Call(abi.ExportAlloc, uint64(len(req)))
			if err != nil || ptr == 0 {
				return nil, fmt.Errorf("wapper_alloc(%d) = %d, %v", len(req), ptr, err)
			}
			if !l.Memory().Write(uint32(ptr), req) {
				return nil, fmt.Errorf("wapper_alloc returned %#x, outside memory", ptr)
			}
			payload, err := l.Result(abi.ExportReadMany, nil, ptr, uint64(count))
			if _, ferr := l.Call(abi.ExportFree, ptr); ferr != nil && err == nil {
				err = ferr
			}
			return payload, err
		}
		raw := abi.AppendReadReqs(nil, []abi.ReadReq{{Device: 1, Handle: hInt}, {Device: 77, Handle: hInt}, {Device: 1, Handle: 99}, {Device: 2, Handle: hInt}})
		payload, err := call(4, raw)
		if err != nil {
			t.Errorf("read_many with unknown handles failed as a whole: %v", err)
		} else if entries, err := abi.ParseBatch(payload, 4); err != nil {
			t.Errorf("read_many with unknown handles: %v", err)
		} else {
			if !entries[0].Value.Equal(abi.Int(-5)) || !entries[3].Value.Equal(abi.Int(9)) {
				t.Errorf("read_many entries 0 and 3 = %#v, %#v; want INT(-5), INT(9)", entries[0], entries[3])
			}
			t.wantErr("read_many entry for unknown device 77", entries[1].Err, abi.ErrNotFound, "*")
			t.wantErr("read_many entry for unknown property 99", entries[2].Err, abi.ErrNotFound, "*")
		}
		_, err = call(abi.MaxBatch+1, raw)
		t.wantErr(fmt.Sprintf("read_many of %d requests", abi.MaxBatch+1), err, abi.ErrTooLarge, "*")
		_, err = call(8, raw)
		t.wantErr("read_many claiming more requests than its buffer holds", err, abi.ErrInvalid, "*")
		return nil
	})
	if err != nil {
		t.Errorf("lend an instance: %v", err)
	}
}
