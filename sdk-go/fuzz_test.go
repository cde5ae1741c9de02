//go:build !wasip1

package wapper

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"wapper.dev/wapper/abi"
)

// Fuzz target for what the SDK decodes from the host (issue 11): the
// device description of wapper_device_add/update, the value of
// wapper_write, the handle list of wapper_read_batch and the request of
// wapper_call_method. Whatever arrives, the operations behind the exports
// return an error with a code instead of panicking (a panic would cost the
// plugin its instance), and what they encode (a batch payload) the host
// decodes. Run it with
//
//	cd sdk-go && go test -run '^$' -fuzz '^FuzzOperations$' -fuzztime 60s .

// fuzzDriver records what reaches it. Reads return the value last written,
// or an error for properties named "broken".
type fuzzDriver struct {
	Base
	vals    map[uint32]Value
	written []Value
	method  string
	args    []byte
}

func (d *fuzzDriver) Read(_ *Device, p *Property) (Value, error) {
	if p.Name == "broken" {
		return Value{}, Errorf(ErrDeviceFailed, "exception 2")
	}
	if v, ok := d.vals[p.Handle]; ok {
		return v, nil
	}
	return Int(int64(p.Handle)), nil
}

func (d *fuzzDriver) Write(_ *Device, p *Property, v Value) error {
	d.vals[p.Handle] = v
	d.written = append(d.written, v)
	return nil
}

func (d *fuzzDriver) CallMethod(_ *Device, method string, args []byte) ([]byte, error) {
	d.method, d.args = method, args
	return []byte(`{"ok":true}`), nil
}

// fuzzDesc is a description as the host sends it.
const fuzzDesc = `{"id":7,"namespace":"plant","name":"plc","model":"plc-model","protocol":"modbus",` +
	`"protocolConfig":{"ip":"10.0.0.7","port":502,"slaveID":1},"modelConfig":{},` +
	`"properties":[{"handle":0,"name":"holding","type":"INT","accessMode":"ReadWrite","visitor":{"register":"HoldingRegister","offset":2},"collectCycle":1000},` +
	`{"handle":1,"name":"temp","type":"FLOAT","accessMode":"ReadOnly","unit":"C"},` +
	`{"handle":2,"name":"broken","type":"INT","accessMode":"ReadOnly"},` +
	`{"handle":3,"name":"label","type":"STRING","accessMode":"ReadWrite"}],` +
	`"methods":[{"name":"reset","propertyNames":["holding"]}]}`

// codeIn checks that err carries one of the codes.
func codeIn(t *testing.T, what string, err error, codes ...Code) {
	t.Helper()
	var ae *abi.Error
	if !errors.As(err, &ae) {
		t.Fatalf("%s: %v is not an *abi.Error", what, err)
	}
	for _, c := range codes {
		if ae.Code == c {
			return
		}
	}
	t.Fatalf("%s: code %v (%v), want one of %v", what, ae.Code, err, codes)
}

// FuzzOperations runs one device through add, write, batch read, method,
// update and remove with fuzzed host input.
func FuzzOperations(f *testing.F) {
	f.Add([]byte(fuzzDesc), uint32(7), uint32(0), Int(42).Encode(), abi.AppendHandles(nil, []uint32{0, 1, 2, 3}), []byte(`{"method":"reset","args":{"to":0}}`))
	f.Add([]byte(fuzzDesc), uint32(7), uint32(3), String("héllo").Encode(), abi.AppendHandles(nil, []uint32{3, 3}), []byte(`{"method":"x"}`))
	f.Add([]byte(fuzzDesc), uint32(7), uint32(1), Float(1).Encode(), abi.AppendHandles(nil, []uint32{9}), []byte(`{"method":1}`))
	f.Add([]byte(fuzzDesc), uint32(6), uint32(0), []byte{1, 2}, []byte{1, 0}, []byte(`not json`))
	f.Add([]byte(`{"id":1,"properties":[{"handle":5,"name":"a","type":"BYTES"},{"handle":5,"name":"b"}]}`), uint32(1), uint32(5), Bytes([]byte{0, 255}).Encode(), abi.AppendHandles(nil, []uint32{5}), []byte(`{"args":null}`))
	f.Add([]byte(`{"id":1,"properties":null}`), uint32(1), uint32(0), []byte{}, []byte{}, []byte{})
	f.Add([]byte(`{"id":"1"}`), uint32(1), uint32(0), []byte{5, 2}, []byte{}, []byte(`{"method":"m","args":[1,`))
	f.Fuzz(func(t *testing.T, desc []byte, id, prop uint32, val, handleBytes, req []byte) {
		drv := &fuzzDriver{vals: map[uint32]Value{}}
		in := &instance{drv: drv, devices: map[uint32]*Device{}}

		var want abi.Device
		jerr := json.Unmarshal(desc, &want)
		err := in.opAdd(id, desc)
		switch {
		case jerr != nil || want.ID != id:
			codeIn(t, "add", err, ErrInvalid)
			if in.devices[id] != nil {
				t.Fatal("refused device was added")
			}
			return
		case err != nil:
			t.Fatalf("add of a good description: %v", err)
		}
		d := in.devices[id]
		if d == nil || d.ID != id || len(d.Properties()) != len(want.Properties) {
			t.Fatalf("device %d not added as described", id)
		}
		for _, p := range d.Properties() {
			if q := d.Property(p.Handle); q == nil || q.Handle != p.Handle || q.Device() != d {
				t.Fatalf("Property(%d) = %v", p.Handle, q)
			}
			if q := d.PropertyByName(p.Name); q == nil || q.Name != p.Name {
				t.Fatalf("PropertyByName(%q) = %v", p.Name, q)
			}
			var visitor map[string]any
			if err := p.Visit(&visitor); err != nil {
				codeIn(t, "visit", err, ErrInvalid)
			}
		}
		var pc map[string]any
		if err := d.ProtocolConfig(&pc); err != nil {
			codeIn(t, "protocol config", err, ErrInvalid)
		}

		// Write.
		err = in.opWrite(id, prop, val)
		p := d.Property(prop)
		v, verr := abi.DecodeValue(val)
		switch {
		case p == nil:
			codeIn(t, "write to an unknown property", err, ErrNotFound)
		case verr != nil:
			codeIn(t, "write of a malformed value", err, ErrInvalid)
		case !p.Writable():
			codeIn(t, "write to a read-only property", err, ErrReadOnly)
		case err != nil:
			t.Fatalf("write: %v", err)
		case len(drv.written) != 1 || !drv.written[0].Equal(v):
			t.Fatalf("driver got %v, want %#v", drv.written, v)
		}

		// Batch read: what the SDK encodes, the host decodes.
		if handles, err := abi.ParseHandles(handleBytes); err == nil && len(handles) <= abi.MaxBatch {
			payload, err := in.opReadBatch(nil, id, handles)
			known := true
			for _, h := range handles {
				known = known && d.Property(h) != nil
			}
			if !known {
				codeIn(t, "batch with an unknown handle", err, ErrNotFound)
			} else if err != nil {
				t.Fatalf("batch: %v", err)
			} else if len(handles) > 0 {
				entries, err := abi.ParseBatch(payload, len(handles))
				if err != nil {
					t.Fatalf("host cannot decode the SDK's batch payload: %v", err)
				}
				for i, e := range entries {
					p := d.Property(handles[i])
					if p.Name == "broken" {
						if abi.CodeOf(e.Err) != ErrDeviceFailed {
							t.Fatalf("entry %d: %v", i, e.Err)
						}
						continue
					}
					want, _ := drv.Read(d, p)
					if e.Err != nil || !e.Value.Equal(want) {
						t.Fatalf("entry %d: %#v, %v, want %#v", i, e.Value, e.Err, want)
					}
				}
			}
		}

		// Method.
		out, err := in.opMethod(id, req)
		var mr abi.MethodRequest
		if json.Unmarshal(req, &mr) != nil {
			codeIn(t, "method with a malformed request", err, ErrInvalid)
		} else if err != nil || !bytes.Equal(out, []byte(`{"ok":true}`)) || drv.method != mr.Method || !bytes.Equal(drv.args, mr.Args) {
			t.Fatalf("method %q %s reached the driver as %q %s (%v)", mr.Method, mr.Args, drv.method, drv.args, err)
		}

		// The description again, as an update (with the id of another
		// device it is refused), then removal.
		if err := in.opUpdate(id+1, desc); err == nil {
			t.Fatal("update with a mismatched id accepted")
		} else {
			codeIn(t, "update with a mismatched id", err, ErrInvalid)
		}
		if err := in.opUpdate(id, desc); err != nil {
			t.Fatalf("update: %v", err)
		}
		if err := in.opRemove(id); err != nil || in.devices[id] != nil {
			t.Fatalf("remove: %v", err)
		}
		if _, _, err := in.opState(id); abi.CodeOf(err) != ErrNotFound {
			t.Fatalf("state after remove: %v", err)
		}
	})
}
