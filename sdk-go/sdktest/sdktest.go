// Package sdktest runs a wapper plugin's [wapper.Driver] natively, in go
// test, the way wapper-host runs the plugin's wasm module: each call goes
// through the same dispatch as the module's exports (the JSON device
// description, the value encoding, result buffers, the panic guard), and
// what comes back is decoded and checked as the host decodes and checks
// it. A plugin's tests therefore see what KubeEdge would see, without
// building wasm or running a host.
//
//	p, err := sdktest.New(nil, nil) // the driver the plugin registered, config {}
//	if err != nil {
//		t.Fatal(err)
//	}
//	defer p.Close()
//	dev, err := p.Add(sdktest.Description{
//		Name:           "plc-1",
//		ProtocolConfig: map[string]any{"ip": "127.0.0.1", "port": port},
//		Properties: []sdktest.Property{
//			{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"register": "HoldingRegister", "offset": 2}},
//		},
//	})
//	...
//	v, err := dev.Read("temperature")
//
// Like the host, the harness assigns device ids and property handles,
// refuses unknown property types, makes a property without an access mode
// ReadOnly, converts values read (and reported) to the property's
// declared type, and converts values written to it, refusing what would
// lose information. Errors from the plugin come back as *wapper.Error with
// the plugin's code and message; [wapper.CodeOf] tells the code.
//
// Natively, the plugin's host functions are the SDK's in-process ones:
// [wapper.Dial] and [wapper.OpenSerial] reach real sockets and serial
// ports without grants (so a device simulator on a net.Listener works),
// the kv store is a map shared by the test binary, and logs go to
// log/slog. There is no call deadline. A [Plugin] serialises its calls, as
// an instance does; plugins in parallel tests are independent, except for
// that shared kv store and any package variables of the driver.
package sdktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/internal/bridge"
)

// Plugin is a driver under test, as the host sees one plugin instance.
type Plugin struct {
	rt bridge.Runtime

	call sync.Mutex // serialises calls, as within one instance

	mu      sync.Mutex // guards devices and nextID
	devices map[uint32]*Device
	nextID  uint32
}

// New makes a plugin around drv, or around the driver the plugin
// registered with [wapper.Register] when drv is nil, and initialises it
// with config, the MapperPlugin's spec.config: nil for none ({}), JSON
// text as []byte, json.RawMessage or string, or any other value, which is
// marshalled to JSON. An error from the driver's Init is returned.
func New(drv wapper.Driver, config any) (*Plugin, error) {
	p := &Plugin{devices: map[uint32]*Device{}}
	rt, err := bridge.New(drv, p.report)
	if err != nil {
		return nil, err
	}
	p.rt = rt
	cfg, err := object("config", config)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = []byte("{}")
	}
	if _, err := p.do(func(rt bridge.Runtime) []byte { return rt.Init(cfg) }); err != nil {
		return nil, err
	}
	return p, nil
}

// do runs one call and returns a copy of its payload, or its error.
func (p *Plugin) do(f func(bridge.Runtime) []byte) ([]byte, error) {
	p.call.Lock()
	defer p.call.Unlock()
	payload, err := abi.ParseResult(f(p.rt))
	return bytes.Clone(payload), err
}

// Close removes every device still added, as the host does when it stops
// serving them, so that drivers close their connections. It returns the
// first error.
func (p *Plugin) Close() error {
	p.mu.Lock()
	var devs []*Device
	for _, d := range p.devices {
		if !d.removed {
			devs = append(devs, d)
		}
	}
	p.mu.Unlock()
	var first error
	for _, d := range devs {
		if err := d.Remove(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Description is a device as the harness adds it: the fields of the
// host's description (abi/SPEC.md §8) without the ids, which the harness
// assigns.
type Description struct {
	// Namespace and Name identify the device; the namespace defaults to
	// "default", the name to "device-ID".
	Namespace, Name string
	// Model is the DeviceModel name; Protocol its protocol.
	Model, Protocol string
	// ProtocolConfig is the Device's spec.protocol.configData and
	// ModelConfig the DeviceModel's protocolConfigData: nil for none, JSON
	// text ([]byte, json.RawMessage or string), or a value marshalled to
	// JSON, such as a map[string]any. Each must be a JSON object.
	ProtocolConfig, ModelConfig any
	// Properties are given handles in order, from 0.
	Properties []Property
}

// Property is one property of a Description.
type Property struct {
	Name string
	// Type is INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES or STREAM (any
	// case); another type is refused, as the host refuses it.
	Type string
	// AccessMode is ReadWrite or ReadOnly; empty is ReadOnly, as in
	// KubeEdge.
	AccessMode string
	// Minimum, Maximum and Unit are passed as they are.
	Minimum, Maximum, Unit string
	// Visitor is the property's visitors.configData, like ProtocolConfig.
	Visitor any
	// CollectCycle and ReportCycle are passed in milliseconds.
	CollectCycle, ReportCycle time.Duration
}

// object returns v as the JSON text of an object, or nil for nil.
func object(what string, v any) (json.RawMessage, error) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		b = x
	case json.RawMessage:
		b = x
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("sdktest: %s: %v", what, err)
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, fmt.Errorf("sdktest: %s must be a JSON object, not %.40s", what, b)
	}
	return bytes.Clone(b), nil
}

// describe turns d into the host's description, with handles kept from
// old for properties of the same name.
func describe(id uint32, d Description, old *abi.Device) (abi.Device, error) {
	out := abi.Device{ID: id, Namespace: d.Namespace, Name: d.Name, Model: d.Model, Protocol: d.Protocol}
	if out.Namespace == "" {
		out.Namespace = "default"
	}
	if out.Name == "" {
		out.Name = fmt.Sprintf("device-%d", id)
	}
	var err error
	if out.ProtocolConfig, err = object("ProtocolConfig", d.ProtocolConfig); err != nil {
		return out, err
	}
	if out.ModelConfig, err = object("ModelConfig", d.ModelConfig); err != nil {
		return out, err
	}
	handles, next := map[string]uint32{}, uint32(0)
	if old != nil {
		for _, p := range old.Properties {
			handles[p.Name] = p.Handle
			next = max(next, p.Handle+1)
		}
	}
	seen := map[string]bool{}
	for _, p := range d.Properties {
		if p.Name == "" || seen[p.Name] {
			return out, fmt.Errorf("sdktest: device %s: property names must be set and unique (%q)", out.Name, p.Name)
		}
		seen[p.Name] = true
		t, ok := abi.ParseType(p.Type)
		if !ok {
			return out, fmt.Errorf("sdktest: property %q: type %q is not one of INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM", p.Name, p.Type)
		}
		access := p.AccessMode
		switch access {
		case "":
			access = "ReadOnly"
		case "ReadOnly", "ReadWrite":
		default:
			return out, fmt.Errorf("sdktest: property %q: access mode %q is not ReadWrite or ReadOnly", p.Name, p.AccessMode)
		}
		h, ok := handles[p.Name]
		if !ok {
			h = next
			next++
		}
		ap := abi.Property{Handle: h, Name: p.Name, Type: t.String(), AccessMode: access,
			Minimum: p.Minimum, Maximum: p.Maximum, Unit: p.Unit,
			CollectCycle: p.CollectCycle.Milliseconds(), ReportCycle: p.ReportCycle.Milliseconds()}
		if ap.Visitor, err = object(fmt.Sprintf("property %q Visitor", p.Name), p.Visitor); err != nil {
			return out, err
		}
		out.Properties = append(out.Properties, ap)
	}
	return out, nil
}

// Add adds a device, as the host does before any other call naming it,
// with the next free device id. An error from the driver's AddDevice is
// returned, and the device is not added.
func (p *Plugin) Add(d Description) (*Device, error) {
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.mu.Unlock()
	desc, err := describe(id, d, nil)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return nil, err
	}
	return p.add(desc, b)
}

// AddJSON adds a device given as the host's JSON description (abi/SPEC.md
// §8), passed to the plugin as it is; its "id" is the device handle.
func (p *Plugin) AddJSON(desc []byte) (*Device, error) {
	var d abi.Device
	if err := json.Unmarshal(desc, &d); err != nil {
		return nil, fmt.Errorf("sdktest: device description: %v", err)
	}
	p.mu.Lock()
	p.nextID = max(p.nextID, d.ID)
	p.mu.Unlock()
	return p.add(d, bytes.Clone(desc))
}

func (p *Plugin) add(desc abi.Device, b []byte) (*Device, error) {
	// The device is known before the plugin's AddDevice runs, which may
	// report already, as it is to the host.
	d := &Device{p: p, id: desc.ID, desc: desc}
	p.mu.Lock()
	old := p.devices[desc.ID]
	if old != nil && !old.removed {
		p.mu.Unlock()
		return nil, fmt.Errorf("sdktest: device id %d is added already (%s/%s); use Update", desc.ID, old.desc.Namespace, old.desc.Name)
	}
	p.devices[desc.ID] = d
	p.mu.Unlock()
	if _, err := p.do(func(rt bridge.Runtime) []byte { return rt.Add(desc.ID, b) }); err != nil {
		p.mu.Lock()
		if old != nil {
			p.devices[desc.ID] = old
		} else {
			delete(p.devices, desc.ID)
		}
		p.mu.Unlock()
		return nil, err
	}
	return d, nil
}

// Device is a device added to a Plugin. Its methods are the host's calls
// naming it.
type Device struct {
	p  *Plugin
	id uint32
	// desc is the last description the plugin accepted; guarded by p.mu,
	// as are removed and reports.
	desc    abi.Device
	removed bool
	reports []Reading
}

// ID returns the device handle.
func (d *Device) ID() uint32 { return d.id }

// String names the device as namespace/name.
func (d *Device) String() string {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	return d.desc.Namespace + "/" + d.desc.Name
}

// property returns the described property called name.
func (d *Device) property(name string) (abi.Property, error) {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	for _, p := range d.desc.Properties {
		if p.Name == name {
			return p, nil
		}
	}
	return abi.Property{}, abi.Errorf(abi.ErrNotFound, "device %s/%s has no property %q", d.desc.Namespace, d.desc.Name, name)
}

// Update passes a new description, as the host does when the Device or its
// model changes. Properties keep their handles by name. The device has the
// new description even when the driver's UpdateDevice fails, as in the
// SDK.
func (d *Device) Update(desc Description) error {
	d.p.mu.Lock()
	old := d.desc
	d.p.mu.Unlock()
	nd, err := describe(d.id, desc, &old)
	if err != nil {
		return err
	}
	b, err := json.Marshal(nd)
	if err != nil {
		return err
	}
	return d.update(nd, b)
}

// UpdateJSON passes a new description as the host's JSON, as it is. Its
// "id" must be the device's.
func (d *Device) UpdateJSON(desc []byte) error {
	var nd abi.Device
	if err := json.Unmarshal(desc, &nd); err != nil {
		return fmt.Errorf("sdktest: device description: %v", err)
	}
	return d.update(nd, bytes.Clone(desc))
}

// update passes a new description. Like the SDK, the device has it while
// the driver's UpdateDevice runs (which may report), and keeps it when
// UpdateDevice fails.
func (d *Device) update(nd abi.Device, b []byte) error {
	if nd.ID != d.id {
		return fmt.Errorf("sdktest: the description's id %d is not the device's, %d", nd.ID, d.id)
	}
	d.p.mu.Lock()
	d.desc, d.removed = nd, false
	d.p.mu.Unlock()
	_, err := d.p.do(func(rt bridge.Runtime) []byte { return rt.Update(d.id, b) })
	return err
}

// Remove removes the device, as the host does when it stops serving it.
// Later calls still reach the plugin, which no longer knows the device.
func (d *Device) Remove() error {
	d.p.mu.Lock()
	d.removed = true
	d.p.mu.Unlock()
	_, err := d.p.do(func(rt bridge.Runtime) []byte { return rt.Remove(d.id) })
	return err
}

// convert converts a value from the plugin to p's declared type, as the
// host does with reads and reports.
func convert(p abi.Property, v wapper.Value) (wapper.Value, error) {
	t := p.ValueType()
	if t == abi.TypeInvalid || v.Type() == t {
		return v, nil
	}
	cv, err := abi.Convert(v, t)
	if err != nil {
		return wapper.Value{}, abi.Errorf(abi.ErrInvalid, "property %q is %s but the plugin returned %s: %v", p.Name, t, v.Type(), err)
	}
	return cv, nil
}

// Read reads a property with the plugin's read export and returns the
// value converted to the property's declared type.
func (d *Device) Read(name string) (wapper.Value, error) {
	p, err := d.property(name)
	if err != nil {
		return wapper.Value{}, err
	}
	payload, err := d.p.do(func(rt bridge.Runtime) []byte { return rt.Read(d.id, p.Handle) })
	if err != nil {
		return wapper.Value{}, err
	}
	v, err := abi.DecodeValue(payload)
	if err != nil {
		return wapper.Value{}, abi.Errorf(abi.ErrInvalid, "property %q: plugin returned a malformed value: %v", p.Name, err)
	}
	return convert(p, v)
}

// ReadBatch reads several properties in one call of the plugin's batch
// read export, which is how the host collects a Go plugin's properties
// (through [wapper.BatchReader] when the driver implements it). It returns
// one value or error per property; err is for the whole call.
func (d *Device) ReadBatch(names ...string) (vals []wapper.Value, errs []error, err error) {
	props := make([]abi.Property, len(names))
	handles := make([]uint32, len(names))
	for i, n := range names {
		if props[i], err = d.property(n); err != nil {
			return nil, nil, err
		}
		handles[i] = props[i].Handle
	}
	if len(names) == 0 {
		return nil, nil, nil
	}
	b := abi.AppendHandles(nil, handles)
	payload, err := d.p.do(func(rt bridge.Runtime) []byte { return rt.ReadBatch(d.id, b) })
	if err != nil {
		return nil, nil, err
	}
	entries, err := abi.ParseBatch(payload, len(names))
	if err != nil {
		return nil, nil, abi.Errorf(abi.ErrInvalid, "plugin returned a malformed batch result: %v", err)
	}
	vals, errs = make([]wapper.Value, len(names)), make([]error, len(names))
	for i, e := range entries {
		if e.Err != nil {
			errs[i] = e.Err
			continue
		}
		vals[i], errs[i] = convert(props[i], e.Value)
	}
	return vals, errs, nil
}

// Write writes a property as the host does: a ReadOnly property is
// refused without calling the plugin, and v is converted to the
// property's declared type first (a STRING is parsed as twin text, so
// wapper.String("42") writes an INT 42), refusing what would lose
// information.
func (d *Device) Write(name string, v wapper.Value) error {
	p, err := d.property(name)
	if err != nil {
		return err
	}
	if !p.Writable() {
		return abi.Errorf(abi.ErrReadOnly, "property %q of %s is %s", p.Name, d, p.AccessMode)
	}
	if t := p.ValueType(); t != abi.TypeInvalid {
		cv, err := abi.Convert(v, t)
		if err != nil {
			return abi.Errorf(abi.ErrInvalid, "property %q is %s: %v", p.Name, t, err)
		}
		v = cv
	}
	b := v.Encode()
	_, err = d.p.do(func(rt bridge.Runtime) []byte { return rt.Write(d.id, p.Handle, b) })
	return err
}

// State returns the device state and its reason, as the host receives
// them (see [wapper.Reason]).
func (d *Device) State() (wapper.State, string, error) {
	payload, err := d.p.do(func(rt bridge.Runtime) []byte { return rt.State(d.id) })
	if err != nil {
		return wapper.StateUnknown, "", err
	}
	s, reason, err := abi.ParseStateResult(payload)
	if err != nil {
		return wapper.StateUnknown, "", abi.Errorf(abi.ErrInvalid, "plugin returned a malformed state: %v", err)
	}
	return s, reason, nil
}

// Call calls a custom device method ([wapper.MethodCaller]) with args:
// nil for none, JSON text ([]byte, json.RawMessage or string), or a value
// marshalled to JSON. It returns the method's JSON result.
func (d *Device) Call(method string, args any) ([]byte, error) {
	var raw json.RawMessage
	switch x := args.(type) {
	case nil:
	case []byte:
		raw = x
	case json.RawMessage:
		raw = x
	case string:
		raw = json.RawMessage(x)
	default:
		var err error
		if raw, err = json.Marshal(args); err != nil {
			return nil, fmt.Errorf("sdktest: method args: %v", err)
		}
	}
	req, err := json.Marshal(abi.MethodRequest{Method: method, Args: raw})
	if err != nil {
		return nil, fmt.Errorf("sdktest: method args: %v", err)
	}
	return d.p.do(func(rt bridge.Runtime) []byte { return rt.Method(d.id, req) })
}

// Poll calls the plugin's poll export ([wapper.Poller]) with a time
// budget and returns when the plugin wants to be polled again (0: not
// until the device is updated). What the plugin reported comes back from
// Reports.
func (d *Device) Poll(budget time.Duration) (next time.Duration, err error) {
	ms := min(max(budget.Milliseconds(), 0), 1<<32-1)
	payload, err := d.p.do(func(rt bridge.Runtime) []byte { return rt.Poll(d.id, uint32(ms)) })
	if err != nil {
		return 0, err
	}
	n, err := abi.ParsePollNext(payload)
	if err != nil {
		return 0, abi.Errorf(abi.ErrInvalid, "plugin returned a malformed poll result: %v", err)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// Reading is a value a plugin reported with [wapper.Report].
type Reading struct {
	// Property is the property's name.
	Property string
	// Value is converted to the property's declared type, as the host
	// converts it.
	Value wapper.Value
}

// Reports returns the device's readings reported since the last call, in
// order, and forgets them.
func (d *Device) Reports() []Reading {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	r := d.reports
	d.reports = nil
	return r
}

// report is the host function report (ABI §6.2) for the plugin's devices.
func (p *Plugin) report(dev, prop uint32, val []byte) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devices[dev]
	if d == nil {
		return -int32(abi.ErrNotFound)
	}
	pd := d.desc.Property(prop)
	if pd == nil {
		return -int32(abi.ErrNotFound)
	}
	v, err := abi.DecodeValue(val)
	if err != nil {
		return -int32(abi.ErrInvalid)
	}
	if v, err = convert(*pd, v); err != nil {
		return -int32(abi.ErrInvalid)
	}
	d.reports = append(d.reports, Reading{Property: pd.Name, Value: v})
	return 0
}
