package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// num is a number in configData, given as a JSON number or a numeric
// string (KubeEdge passes configData values as either).
type num struct {
	v   float64
	set bool
}

func (n *num) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if s == "" {
			return nil
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		n.v, n.set = v, true
		return nil
	}
	if err := json.Unmarshal(b, &n.v); err != nil {
		return fmt.Errorf("%s is not a number", b)
	}
	n.set = true
	return nil
}

func (n num) int(def int) int {
	if !n.set {
		return def
	}
	return int(n.v)
}

// flag is a bool in configData: true/false or "true"/"false".
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil && s != "" {
			return fmt.Errorf("%q is not true or false", s)
		}
		*f = flag(v)
		return nil
	}
	var v bool
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s is not true or false", b)
	}
	*f = flag(v)
	return nil
}

// timeoutValue is a timeout in milliseconds (a number) or a Go duration
// string ("500ms", "2s").
type timeoutValue time.Duration

func (t *timeoutValue) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if d, err := time.ParseDuration(s); err == nil {
			*t = timeoutValue(d)
			return nil
		}
	}
	var n num
	if err := n.UnmarshalJSON(b); err != nil {
		return fmt.Errorf("%s: want milliseconds or a duration such as \"2s\"", b)
	}
	*t = timeoutValue(time.Duration(n.v * float64(time.Millisecond)))
	return nil
}

// rawProtocol is the protocol configData, KubeEdge's field names.
type rawProtocol struct {
	IP         string       `json:"ip"`
	Port       num          `json:"port"`
	SerialPort string       `json:"serialPort"`
	BaudRate   num          `json:"baudRate"`
	DataBits   num          `json:"dataBits"`
	Parity     string       `json:"parity"`
	StopBits   num          `json:"stopBits"`
	SlaveID    num          `json:"slaveID"`
	Timeout    timeoutValue `json:"timeout"`
}

// protocolConfig is a device's checked connection settings.
type protocolConfig struct {
	ip         string
	port       int
	serialPort string
	baudRate   int
	dataBits   int
	parity     wapper.Parity
	stopBits   int
	slave      byte
	timeout    time.Duration
}

// defaultTimeout bounds one request when configData has no timeout. It is
// below the host's default call timeout, so a silent device fails a call
// cleanly instead of running into the call's deadline.
const defaultTimeout = time.Second

// parseProtocol reads the DeviceModel's protocolConfigData, then the
// Device's configData over it.
func parseProtocol(d *wapper.Device) (*protocolConfig, error) {
	var raw rawProtocol
	for _, b := range [][]byte{d.ModelConfig, d.Device.ProtocolConfig} {
		if len(b) == 0 {
			continue
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: %v", d, err)
		}
	}
	c := &protocolConfig{
		ip: raw.IP, port: raw.Port.int(502), serialPort: raw.SerialPort,
		baudRate: raw.BaudRate.int(19200), dataBits: raw.DataBits.int(8), stopBits: raw.StopBits.int(1),
		timeout: time.Duration(raw.Timeout),
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: "+format, append([]any{d}, args...)...)
	}
	switch {
	case c.ip == "" && c.serialPort == "":
		return nil, bad("set ip (and port) for Modbus TCP, or serialPort for Modbus RTU")
	case c.ip != "" && c.serialPort != "":
		return nil, bad("set either ip (Modbus TCP) or serialPort (Modbus RTU), not both")
	case c.port < 1 || c.port > 65535:
		return nil, bad("port %d is outside 1-65535", c.port)
	case c.dataBits < 5 || c.dataBits > 8:
		return nil, bad("dataBits %d is outside 5-8", c.dataBits)
	case c.stopBits != 1 && c.stopBits != 2:
		return nil, bad("stopBits %d: want 1 or 2", c.stopBits)
	case c.timeout < 0:
		return nil, bad("timeout must be positive")
	}
	var err error
	if c.parity, err = wapper.ParseParity(raw.Parity); err != nil {
		return nil, bad("%v", err)
	}
	slave := raw.SlaveID.int(1)
	if slave < 0 || slave > 255 {
		return nil, bad("slaveID %d is outside 0-255", slave)
	}
	c.slave = byte(slave)
	if c.timeout == 0 {
		c.timeout = defaultTimeout
	}
	return c, nil
}

// Register tables, in KubeEdge's spelling.
const (
	regCoil     = "CoilRegister"
	regDiscrete = "DiscreteInputRegister"
	regHolding  = "HoldingRegister"
	regInput    = "InputRegister"
)

// rawVisitor is a property's visitor configData, KubeEdge's field names
// plus dataType.
type rawVisitor struct {
	Register       string `json:"register"`
	Offset         num    `json:"offset"`
	Limit          num    `json:"limit"`
	Scale          num    `json:"scale"`
	IsSwap         flag   `json:"isSwap"`
	IsRegisterSwap flag   `json:"isRegisterSwap"`
	DataType       string `json:"dataType"`
}

// visitor is a property's checked register mapping.
type visitor struct {
	fc             byte // read function code
	table          string
	offset         uint16
	limit          uint16 // registers or bits
	scale          float64
	isSwap         bool
	isRegisterSwap bool
	dataType       dataType
}

func (v *visitor) bits() bool { return v.fc == fcReadCoils || v.fc == fcReadDiscreteInputs }

func parseVisitor(p *wapper.Property) (*visitor, error) {
	var raw rawVisitor
	if err := p.Visit(&raw); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "property %q visitor: "+format, append([]any{p.Name}, args...)...)
	}
	v := &visitor{table: raw.Register, scale: 1, isSwap: bool(raw.IsSwap), isRegisterSwap: bool(raw.IsRegisterSwap)}
	switch strings.ToLower(raw.Register) {
	case "coilregister", "coil", "coils":
		v.fc, v.table = fcReadCoils, regCoil
	case "discreteinputregister", "discreteinput", "discreteinputs":
		v.fc, v.table = fcReadDiscreteInputs, regDiscrete
	case "holdingregister", "holding":
		v.fc, v.table = fcReadHolding, regHolding
	case "inputregister", "input":
		v.fc, v.table = fcReadInput, regInput
	default:
		return nil, bad("register %q: want CoilRegister, DiscreteInputRegister, HoldingRegister or InputRegister", raw.Register)
	}
	off := raw.Offset.int(0)
	if off < 0 || off > 65535 {
		return nil, bad("offset %d is outside 0-65535", off)
	}
	v.offset = uint16(off)
	if raw.Scale.set && raw.Scale.v != 0 {
		v.scale = raw.Scale.v
	}
	dt, err := pickType(raw.DataType, v.bits(), p.Type(), raw.Limit.int(0))
	if err != nil {
		return nil, bad("%v", err)
	}
	v.dataType = dt
	limit := raw.Limit.int(0)
	if limit == 0 {
		limit = dt.regs
	}
	switch {
	case v.bits() && limit != 1:
		return nil, bad("limit %d: a %s property reads one bit (limit 1)", limit, v.table)
	case !v.bits() && dt.regs != 0 && limit != dt.regs:
		return nil, bad("limit %d does not fit dataType %s, which takes %d registers", limit, dt.name, dt.regs)
	case limit < 1 || limit > maxReadRegs:
		return nil, bad("limit %d is outside 1-%d", limit, maxReadRegs)
	case off+limit > 65536:
		return nil, bad("offset %d + limit %d passes register 65535", off, limit)
	}
	v.limit = uint16(limit)
	return v, nil
}
