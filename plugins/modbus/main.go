// Command modbus is wapper's Modbus mapper plugin: Modbus TCP and Modbus
// RTU, configured with KubeEdge's configData fields so that existing
// Device and DeviceModel YAML works unchanged.
//
// Protocol configData (the Device's spec.protocol.configData; the
// DeviceModel's protocolConfigData gives defaults):
//
//   - Modbus TCP: "ip", "port" (default 502)
//   - Modbus RTU: "serialPort", "baudRate" (default 19200), "dataBits" (8),
//     "parity" ("none", "odd", "even" or N/O/E), "stopBits" (1)
//   - both: "slaveID" (default 1), "timeout" per request (milliseconds or a
//     duration such as "2s"; default 1 s)
//
// Property visitor configData:
//
//   - "register": CoilRegister, DiscreteInputRegister, HoldingRegister or
//     InputRegister
//   - "offset": the first register (0-based), "limit": how many registers
//     (default: as many as dataType takes; 1 for coils)
//   - "dataType": int16, uint16, int32, uint32, int64, uint64, float32,
//     float64, boolean, string or bytes (KubeEdge's int, float and double
//     work too); default from the property type
//   - "scale": multiplies the value read (and divides the value written)
//   - "isRegisterSwap": the device sends the least significant register
//     first (word swap); "isSwap": the bytes in each register are swapped
//
// Coils and holding registers are writable. A batch read merges
// neighbouring registers of a device into one request. A Modbus exception
// becomes an error with code "device error" naming the exception. A broken
// connection is dropped and reopened on the next request.
//
// The plugin needs grants for what it reaches: "tcp://IP:PORT" network
// grants and serial path grants.
package main

import (
	"sort"

	wapper "wapper.dev/wapper/sdk-go"
)

// dev is a device's parsed configuration and connection.
type dev struct {
	cli   client
	props map[uint32]*visitor
}

type modbus struct{ wapper.Base }

func (modbus) AddDevice(d *wapper.Device) error { return setup(d) }

func (modbus) UpdateDevice(d *wapper.Device) error { return setup(d) }

func (modbus) RemoveDevice(d *wapper.Device) error {
	if x, ok := d.Data.(*dev); ok {
		x.cli.drop()
	}
	return nil
}

// setup parses the configuration, so that a bad one fails when the device
// is added. An update keeps the connection when the protocol settings are
// unchanged.
func setup(d *wapper.Device) error {
	cfg, err := parseProtocol(d)
	if err != nil {
		return err
	}
	x := &dev{props: map[uint32]*visitor{}}
	for _, p := range d.Properties() {
		v, err := parseVisitor(p)
		if err != nil {
			return err
		}
		x.props[p.Handle] = v
	}
	if old, ok := d.Data.(*dev); ok {
		if *old.cli.cfg == *cfg {
			x.cli = old.cli
		} else {
			old.cli.drop()
		}
	}
	x.cli.cfg = cfg
	d.Data = x
	return nil
}

func state(d *wapper.Device) *dev { return d.Data.(*dev) }

func (modbus) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	x := state(d)
	v := x.props[p.Handle]
	raw, err := x.readRange(v.fc, v.offset, v.limit)
	if err != nil {
		return wapper.Value{}, err
	}
	return v.decodeFrom(raw, v.offset, p.Type())
}

// readRange reads count registers (or bits) from offset and returns the
// raw data: 2 bytes per register, or one byte (0 or 1) per bit.
func (x *dev) readRange(fc byte, offset, count uint16) ([]byte, error) {
	data, err := x.cli.do(readPDU(fc, offset, count))
	if err != nil {
		return nil, err
	}
	if fc == fcReadCoils || fc == fcReadDiscreteInputs {
		bits := make([]byte, count)
		for i := range bits {
			bits[i] = data[i/8] >> (i % 8) & 1
		}
		return bits, nil
	}
	return data, nil
}

// decodeFrom decodes the property's registers from a block read starting
// at base.
func (v *visitor) decodeFrom(block []byte, base uint16, t wapper.Type) (wapper.Value, error) {
	w := 2
	if v.bits() {
		w = 1
	}
	start := int(v.offset-base) * w
	return v.decode(block[start:start+int(v.limit)*w], t)
}

// ReadBatch reads the properties in as few requests as it can: properties
// of one register table whose ranges touch or overlap share one request,
// up to the protocol's request size. When a merged request fails with a
// Modbus exception (a gap the device does not map, say), its properties are
// read one by one.
func (m modbus) ReadBatch(d *wapper.Device, props []*wapper.Property) ([]wapper.Value, []error) {
	x := state(d)
	vals, errs := make([]wapper.Value, len(props)), make([]error, len(props))
	idx := make([]int, len(props))
	for i := range idx {
		idx[i] = i
	}
	vis := func(i int) *visitor { return x.props[props[i].Handle] }
	sort.SliceStable(idx, func(a, b int) bool {
		va, vb := vis(idx[a]), vis(idx[b])
		if va.fc != vb.fc {
			return va.fc < vb.fc
		}
		return va.offset < vb.offset
	})
	for start := 0; start < len(idx); {
		first := vis(idx[start])
		lo, hi := int(first.offset), int(first.offset)+int(first.limit)
		limit := maxReadRegs
		if first.bits() {
			limit = maxReadBits
		}
		end := start + 1
		for ; end < len(idx); end++ {
			v := vis(idx[end])
			vEnd := int(v.offset) + int(v.limit)
			if v.fc != first.fc || int(v.offset) > hi || max(hi, vEnd)-lo > limit {
				break
			}
			hi = max(hi, vEnd)
		}
		group := idx[start:end]
		start = end
		block, err := x.readRange(first.fc, uint16(lo), uint16(hi-lo))
		if err != nil && len(group) > 1 && abiCode(err) == wapper.ErrDeviceFailed {
			for _, i := range group {
				vals[i], errs[i] = m.Read(d, props[i])
			}
			continue
		}
		for _, i := range group {
			if err != nil {
				errs[i] = err
				continue
			}
			vals[i], errs[i] = vis(i).decodeFrom(block, uint16(lo), props[i].Type())
		}
	}
	return vals, errs
}

func (modbus) Write(d *wapper.Device, p *wapper.Property, val wapper.Value) error {
	x := state(d)
	v := x.props[p.Handle]
	switch v.fc {
	case fcReadCoils:
		on, err := wapper.Convert(val, wapper.TypeBoolean)
		if err != nil {
			return wapper.Errorf(wapper.ErrInvalid, "property %q: %v", p.Name, err)
		}
		_, err = x.cli.do(writeCoilPDU(v.offset, on.Bool()))
		return err
	case fcReadHolding:
		b, err := v.encode(val)
		if err != nil {
			return wapper.Errorf(wapper.ErrInvalid, "property %q: %v", p.Name, err)
		}
		if len(b) > maxWriteRegs*2 {
			return wapper.Errorf(wapper.ErrInvalid, "property %q: %d registers exceed one write (%d)", p.Name, len(b)/2, maxWriteRegs)
		}
		_, err = x.cli.do(writeRegsPDU(v.offset, b))
		return err
	}
	return wapper.Errorf(wapper.ErrReadOnly, "property %q maps to %s, which Modbus cannot write", p.Name, v.table)
}

// State is ok while the device answers, unknown before the first request,
// and unhealthy with the last error while it does not.
func (modbus) State(d *wapper.Device) (wapper.State, error) {
	x := state(d)
	switch {
	case x.cli.ok:
		return wapper.StateOK, nil
	case x.cli.lastErr != nil:
		return wapper.StateUnhealthy, x.cli.lastErr
	}
	return wapper.StateUnknown, nil
}

func init() { wapper.Register(modbus{}) }

func main() {}
