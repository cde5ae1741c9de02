package wapper

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"wapper.dev/wapper/abi"
)

// Driver is what a plugin implements. The host calls it for one device at a
// time per instance; methods never run concurrently.
type Driver interface {
	// Init receives the MapperPlugin's spec.config as JSON ("{}" if none).
	Init(config []byte) error
	// AddDevice is called before any other call naming the device.
	AddDevice(d *Device) error
	// UpdateDevice is called with the new description; d.Data is kept.
	UpdateDevice(d *Device) error
	// RemoveDevice is the last call naming the device on this instance:
	// the device was deleted, or it moved to another instance of the
	// plugin, which was given it first. The kv store is shared by the
	// instances: do not delete the device's kv state here (ABI SPEC §2).
	RemoveDevice(d *Device) error
	// Read returns the current value of one property.
	Read(d *Device, p *Property) (Value, error)
	// Write sets a property. v already has the property's declared type.
	Write(d *Device, p *Property, v Value) error
	// State reports the device state. To give the state a reason, return
	// a [Reason] as the error:
	//
	//	return wapper.StateOffline, wapper.Reason("no answer from %s", addr)
	//
	// Any other error means the plugin cannot tell the state: the host
	// sees StateUnhealthy with the error's message as the reason.
	State(d *Device) (State, error)
}

// Reason returns the reason for the state a [Driver]'s State reports, in
// the place of its error: the host shows the state State returned with
// this text (ABI §3.1, the reason after the state byte). The arguments are
// formatted as by fmt.Errorf, so %w works. It is not a failure: an error
// of any other kind makes the state StateUnhealthy.
func Reason(format string, args ...any) error {
	return &stateReason{fmt.Errorf(format, args...)}
}

// stateReason is a Reason: the text of a state, carried as State's error.
type stateReason struct{ err error }

func (r *stateReason) Error() string { return r.err.Error() }

func (r *stateReason) Unwrap() error { return r.err }

// BatchReader is optional: a plugin that can read several properties of a
// device at once (for example neighbouring Modbus registers in one request).
// It returns one value or error per property, in order.
type BatchReader interface {
	ReadBatch(d *Device, props []*Property) ([]Value, []error)
}

// MethodCaller is optional: custom device methods. args and the result are
// JSON.
type MethodCaller interface {
	CallMethod(d *Device, method string, args []byte) ([]byte, error)
}

// Poller is optional: devices that push data. Poll may block in host I/O
// for at most budget, calls [Report] for what arrived, and returns when the
// host should poll this device again (0: not until it is updated).
type Poller interface {
	Poll(d *Device, budget time.Duration) (next time.Duration, err error)
}

// Base gives a plugin default methods; embed it and override what you need.
type Base struct{}

// Init accepts any config.
func (Base) Init([]byte) error { return nil }

// AddDevice accepts any device.
func (Base) AddDevice(*Device) error { return nil }

// UpdateDevice accepts any update.
func (Base) UpdateDevice(*Device) error { return nil }

// RemoveDevice does nothing.
func (Base) RemoveDevice(*Device) error { return nil }

// Write reports that the property cannot be written.
func (Base) Write(_ *Device, p *Property, _ Value) error {
	return Errorf(ErrUnsupported, "property %q cannot be written by this plugin", p.Name)
}

// State reports ok.
func (Base) State(*Device) (State, error) { return StateOK, nil }

// Device is a device as the plugin sees it: the host's description plus
// plugin-owned Data, kept across updates.
//
// The SDK makes the devices a Driver gets. A Device built by hand, in a
// unit test, takes its properties from its description
// (Device.Device.Properties); package sdktest drives a Driver with
// devices made the way the host makes them.
type Device struct {
	abi.Device
	// Data is free for the plugin: a connection, parsed config, caches.
	Data any
	// props mirrors Device.Properties; src is the first element of the
	// slice they were made from, to notice a new slice.
	props []Property
	src   *abi.Property
	// in is the instance that added the device (nil for one built by
	// hand).
	in *instance
}

// Property is one property of a device.
type Property struct {
	abi.Property
	dev *Device
}

// Device returns the device the property belongs to.
func (p *Property) Device() *Device { return p.dev }

// Visit decodes the property's visitor configData into v, a struct or a
// [Config].
func (p *Property) Visit(v any) error {
	if len(p.Visitor) == 0 {
		return nil
	}
	if err := json.Unmarshal(p.Visitor, v); err != nil {
		return Errorf(ErrInvalid, "property %q visitor config: %v", p.Name, err)
	}
	return nil
}

// Type returns the property's declared value type.
func (p *Property) Type() Type { return p.ValueType() }

// ProtocolConfig decodes the device's protocol configData into v, a struct
// or a [Config].
func (d *Device) ProtocolConfig(v any) error {
	if len(d.Device.ProtocolConfig) == 0 {
		return nil
	}
	if err := json.Unmarshal(d.Device.ProtocolConfig, v); err != nil {
		return Errorf(ErrInvalid, "device %s/%s protocol config: %v", d.Namespace, d.Name, err)
	}
	return nil
}

// ProtocolConfigs decodes the DeviceModel's protocolConfigData and then
// the Device's protocol configData over it into each of vs (structs or
// [Config]s), so that a device's settings override its model's, as
// KubeEdge's mappers read them.
func (d *Device) ProtocolConfigs(vs ...any) error {
	for _, b := range [][]byte{d.ModelConfig, d.Device.ProtocolConfig} {
		if len(b) == 0 {
			continue
		}
		for _, v := range vs {
			if err := json.Unmarshal(b, v); err != nil {
				return Errorf(ErrInvalid, "device %s: protocol configData: %v", d, err)
			}
		}
	}
	return nil
}

// properties returns the device's properties, made again from the
// description when that holds another slice (a Device built by hand, or
// one whose description a test replaced).
func (d *Device) properties() []Property {
	ps := d.Device.Properties
	if len(d.props) != len(ps) || (len(ps) > 0 && d.src != &ps[0]) {
		d.props = make([]Property, len(ps))
		for i, p := range ps {
			d.props[i] = Property{Property: p, dev: d}
		}
		d.src = nil
		if len(ps) > 0 {
			d.src = &ps[0]
		}
	}
	return d.props
}

// Properties returns the device's properties.
func (d *Device) Properties() []*Property {
	props := d.properties()
	out := make([]*Property, len(props))
	for i := range props {
		out[i] = &props[i]
	}
	return out
}

// Property returns the property with the given handle, or nil.
func (d *Device) Property(handle uint32) *Property {
	props := d.properties()
	if int(handle) < len(props) && props[handle].Handle == handle {
		return &props[handle]
	}
	for i := range props {
		if props[i].Handle == handle {
			return &props[i]
		}
	}
	return nil
}

// PropertyByName returns the named property, or nil.
func (d *Device) PropertyByName(name string) *Property {
	props := d.properties()
	for i := range props {
		if props[i].Name == name {
			return &props[i]
		}
	}
	return nil
}

// String names the device as namespace/name.
func (d *Device) String() string { return d.Namespace + "/" + d.Name }

func (d *Device) setDesc(desc abi.Device) {
	d.Device = desc
	d.props = nil
	d.properties()
}

// instance is one plugin instance's state: the driver and its devices. The
// wasm exports serve the package's global instance; the native test harness
// (package sdktest) makes one of its own per plugin under test.
type instance struct {
	drv     Driver
	devices map[uint32]*Device
	// dense holds the devices whose handle is below maxDense by handle, so
	// that the read path finds a device without a map lookup: in wasm
	// every loop iteration of a map probe is costly.
	dense []*Device
	// result is the buffer of the last result; it stays valid until the
	// next call, as the ABI allows.
	result []byte
	// report, when set, receives the device's reports instead of the host
	// function (the native harness).
	report func(dev, prop uint32, val []byte) int32
	// many holds the reusable buffers of wapper_read_many.
	many manyScratch
}

// global is the instance the wasm exports serve.
var global = &instance{devices: map[uint32]*Device{}}

// Register installs the plugin's driver. Call it from an init function;
// with -buildmode=c-shared, main is never run.
func Register(d Driver) {
	if global.drv != nil {
		panic("wapper.Register called twice")
	}
	global.drv = d
}

// maxDense bounds instance.dense: 64 Ki handles take 256 KiB in wasm.
const maxDense = 1 << 16

// setDevice records d (nil: none) under handle id.
func (in *instance) setDevice(id uint32, d *Device) {
	if d == nil {
		delete(in.devices, id)
	} else {
		in.devices[id] = d
	}
	if id >= maxDense {
		return
	}
	if int(id) >= len(in.dense) {
		if d == nil {
			return
		}
		in.dense = append(in.dense, make([]*Device, int(id)+1-len(in.dense))...)
	}
	in.dense[id] = d
}

func (in *instance) lookup(id uint32) (*Device, error) {
	if int(id) < len(in.dense) {
		if d := in.dense[id]; d != nil {
			return d, nil
		}
	}
	d, ok := in.devices[id]
	if !ok {
		return nil, Errorf(ErrNotFound, "device handle %d is not added", id)
	}
	return d, nil
}

func (in *instance) lookupProp(id, h uint32) (*Device, *Property, error) {
	d, err := in.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	p := d.Property(h)
	if p == nil {
		return nil, nil, Errorf(ErrNotFound, "device %s has no property handle %d", d, h)
	}
	return d, p, nil
}

func (in *instance) driver() (Driver, error) {
	if in.drv == nil {
		return nil, Errorf(ErrInternal, "no driver registered: call wapper.Register from an init function")
	}
	return in.drv, nil
}

func decodeDesc(id uint32, b []byte) (abi.Device, error) {
	var desc abi.Device
	if err := json.Unmarshal(b, &desc); err != nil {
		return desc, Errorf(ErrInvalid, "device description: %v", err)
	}
	if desc.ID != id {
		return desc, Errorf(ErrInvalid, "device description id %d does not match handle %d", desc.ID, id)
	}
	return desc, nil
}

// Operations behind the exports, free of wasm specifics so they can be
// tested natively. dispatch.go turns their results into result buffers.

func (in *instance) opInit(cfg []byte) error {
	drv, err := in.driver()
	if err != nil {
		return err
	}
	return drv.Init(cfg)
}

func (in *instance) opAdd(id uint32, b []byte) error {
	drv, err := in.driver()
	if err != nil {
		return err
	}
	desc, err := decodeDesc(id, b)
	if err != nil {
		return err
	}
	if old, ok := in.devices[id]; ok {
		// Re-adding a known handle is an update; the host may re-add after
		// it lost track of an instance's state.
		old.setDesc(desc)
		return drv.UpdateDevice(old)
	}
	d := &Device{in: in}
	d.setDesc(desc)
	if err := drv.AddDevice(d); err != nil {
		return err
	}
	in.setDevice(id, d)
	return nil
}

func (in *instance) opUpdate(id uint32, b []byte) error {
	drv, err := in.driver()
	if err != nil {
		return err
	}
	desc, err := decodeDesc(id, b)
	if err != nil {
		return err
	}
	d, ok := in.devices[id]
	if !ok {
		return in.opAdd(id, b)
	}
	d.setDesc(desc)
	return drv.UpdateDevice(d)
}

func (in *instance) opRemove(id uint32) error {
	drv, err := in.driver()
	if err != nil {
		return err
	}
	d, ok := in.devices[id]
	if !ok {
		return nil
	}
	in.setDevice(id, nil)
	return drv.RemoveDevice(d)
}

func (in *instance) opRead(id, h uint32) (Value, error) {
	d, p, err := in.lookupProp(id, h)
	if err != nil {
		return Value{}, err
	}
	return in.drv.Read(d, p)
}

func (in *instance) opWrite(id, h uint32, val []byte) error {
	d, p, err := in.lookupProp(id, h)
	if err != nil {
		return err
	}
	v, err := abi.DecodeValue(val)
	if err != nil {
		return Errorf(ErrInvalid, "value for %s: %v", p.Name, err)
	}
	if !p.Writable() {
		return Errorf(ErrReadOnly, "property %q is %s", p.Name, p.AccessMode)
	}
	return in.drv.Write(d, p, v)
}

// opState returns the device state and its reason. A State error that is
// not a Reason means the plugin cannot tell: unhealthy, with the message.
func (in *instance) opState(id uint32) (State, string, error) {
	d, err := in.lookup(id)
	if err != nil {
		return StateUnknown, "", err
	}
	s, err := in.drv.State(d)
	if err == nil {
		return s, "", nil
	}
	var r *stateReason
	if errors.As(err, &r) {
		return s, err.Error(), nil
	}
	return StateUnhealthy, abi.MessageOf(err), nil
}

// opReadBatch appends the batch payload to dst.
func (in *instance) opReadBatch(dst []byte, id uint32, handles []uint32) ([]byte, error) {
	d, err := in.lookup(id)
	if err != nil {
		return dst, err
	}
	props := make([]*Property, len(handles))
	for i, h := range handles {
		if props[i] = d.Property(h); props[i] == nil {
			return dst, Errorf(ErrNotFound, "device %s has no property handle %d", d, h)
		}
	}
	var vals []Value
	var errs []error
	if br, ok := in.drv.(BatchReader); ok {
		vals, errs = br.ReadBatch(d, props)
		if len(vals) != len(props) || (errs != nil && len(errs) != len(props)) {
			return dst, Errorf(ErrInternal, "ReadBatch returned %d values and %d errors for %d properties", len(vals), len(errs), len(props))
		}
	} else {
		vals, errs = make([]Value, len(props)), make([]error, len(props))
		for i, p := range props {
			vals[i], errs[i] = in.drv.Read(d, p)
		}
	}
	for i := range props {
		var e error
		if errs != nil {
			e = errs[i]
		}
		if e == nil && !vals[i].IsValid() {
			e = Errorf(ErrInternal, "property %q: plugin returned no value and no error", props[i].Name)
		}
		if e != nil {
			dst = abi.AppendBatchEntry(dst, abi.CodeOf(e), []byte(abi.MessageOf(e)))
			continue
		}
		dst = appendValueEntry(dst, vals[i])
	}
	return dst, nil
}

func (in *instance) opMethod(id uint32, req []byte) ([]byte, error) {
	d, err := in.lookup(id)
	if err != nil {
		return nil, err
	}
	mc, ok := in.drv.(MethodCaller)
	if !ok {
		return nil, Errorf(ErrUnsupported, "plugin has no custom device methods")
	}
	var r abi.MethodRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, Errorf(ErrInvalid, "method request: %v", err)
	}
	return mc.CallMethod(d, r.Method, r.Args)
}

func (in *instance) opPoll(id uint32, budgetMS uint32) (uint32, error) {
	d, err := in.lookup(id)
	if err != nil {
		return 0, err
	}
	p, ok := in.drv.(Poller)
	if !ok {
		return 0, nil
	}
	next, err := p.Poll(d, time.Duration(budgetMS)*time.Millisecond)
	if err != nil || next <= 0 {
		return 0, err
	}
	ms := next.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if ms > 1<<31 {
		ms = 1 << 31
	}
	return uint32(ms), nil
}
