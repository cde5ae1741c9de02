package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// rawProtocol is the protocol configData's text fields, KubeEdge's
// names. Numbers are read from a wapper.Config, which takes them as JSON
// numbers or numeric strings, as KubeEdge passes them.
type rawProtocol struct {
	IP         string `json:"ip"`
	SerialPort string `json:"serialPort"`
	// TLS selects Modbus/TCP Security: Modbus TCP inside TLS, which the
	// host makes (grants.network tls://..., grants.tls for the CA and the
	// client certificate); the port then defaults to 802.
	TLS    wapper.Flag `json:"tls"`
	Parity string      `json:"parity"`
	// Timeout is milliseconds (a number) or a duration string ("2s").
	Timeout json.RawMessage `json:"timeout"`
}

// timeoutOf reads a timeout: a Go duration string ("500ms", "2s"), else
// milliseconds.
func timeoutOf(b json.RawMessage) (time.Duration, error) {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			return d, nil
		}
	}
	ms, err := wapper.Config{"timeout": b}.Float("timeout", 0)
	if err != nil {
		return 0, fmt.Errorf("%v: want milliseconds or a duration such as \"2s\"", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// ints reads integer members of a Config, keeping the first error.
type ints struct {
	cfg wapper.Config
	err error
}

func (n *ints) get(name string, def int64) int64 {
	v, err := n.cfg.Int(name, def)
	if err != nil && n.err == nil {
		n.err = err
	}
	return v
}

// protocolConfig is a device's checked connection settings.
type protocolConfig struct {
	ip         string
	port       int
	serialPort string
	tls        bool
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
	cfg := wapper.Config{}
	if err := d.ProtocolConfigs(&raw, &cfg); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: "+format, append([]any{d}, args...)...)
	}
	n := ints{cfg: cfg}
	defPort := int64(502)
	if raw.TLS {
		defPort = 802
	}
	port, baud, dataBits, stopBits, slave := n.get("port", defPort), n.get("baudRate", 19200), n.get("dataBits", 8), n.get("stopBits", 1), n.get("slaveID", 1)
	if n.err != nil {
		return nil, bad("%v", n.err)
	}
	timeout, err := timeoutOf(raw.Timeout)
	if err != nil {
		return nil, bad("%v", err)
	}
	switch {
	case raw.IP == "" && raw.SerialPort == "":
		return nil, bad("set ip (and port) for Modbus TCP, or serialPort for Modbus RTU")
	case raw.IP != "" && raw.SerialPort != "":
		return nil, bad("set either ip (Modbus TCP) or serialPort (Modbus RTU), not both")
	case bool(raw.TLS) && raw.SerialPort != "":
		return nil, bad("tls applies to Modbus TCP (ip), not to a serial port")
	case port < 1 || port > 65535:
		return nil, bad("port %d is outside 1-65535", port)
	case baud < 0 || baud > 1<<31-1:
		return nil, bad("baudRate %d is not a baud rate", baud)
	case dataBits < 5 || dataBits > 8:
		return nil, bad("dataBits %d is outside 5-8", dataBits)
	case stopBits != 1 && stopBits != 2:
		return nil, bad("stopBits %d: want 1 or 2", stopBits)
	case slave < 0 || slave > 255:
		return nil, bad("slaveID %d is outside 0-255", slave)
	case timeout < 0:
		return nil, bad("timeout must be positive")
	}
	c := &protocolConfig{
		ip: raw.IP, port: int(port), serialPort: raw.SerialPort, tls: bool(raw.TLS),
		baudRate: int(baud), dataBits: int(dataBits), stopBits: int(stopBits),
		slave: byte(slave), timeout: timeout,
	}
	if c.parity, err = wapper.ParseParity(raw.Parity); err != nil {
		return nil, bad("%v", err)
	}
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

// rawVisitor is a property's visitor configData: KubeEdge's text fields
// plus dataType. Numbers (offset, limit, scale) are read from a
// wapper.Config.
type rawVisitor struct {
	Register       string      `json:"register"`
	IsSwap         wapper.Flag `json:"isSwap"`
	IsRegisterSwap wapper.Flag `json:"isRegisterSwap"`
	DataType       string      `json:"dataType"`
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
	var cfg wapper.Config
	if err := p.Visit(&raw); err != nil {
		return nil, err
	}
	if err := p.Visit(&cfg); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "property %q visitor: "+format, append([]any{p.Name}, args...)...)
	}
	n := ints{cfg: cfg}
	off, limit := n.get("offset", 0), n.get("limit", 0)
	if n.err != nil {
		return nil, bad("%v", n.err)
	}
	scale, err := cfg.Float("scale", 0)
	if err != nil {
		return nil, bad("%v", err)
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
	if off < 0 || off > 65535 {
		return nil, bad("offset %d is outside 0-65535", off)
	}
	v.offset = uint16(off)
	if scale != 0 {
		v.scale = scale
	}
	dt, err := pickType(raw.DataType, v.bits(), p.Type(), int(limit))
	if err != nil {
		return nil, bad("%v", err)
	}
	v.dataType = dt
	if limit == 0 {
		limit = int64(dt.regs)
	}
	switch {
	case v.bits() && limit != 1:
		return nil, bad("limit %d: a %s property reads one bit (limit 1)", limit, v.table)
	case !v.bits() && dt.regs != 0 && limit != int64(dt.regs):
		return nil, bad("limit %d does not fit dataType %s, which takes %d registers", limit, dt.name, dt.regs)
	case limit < 1 || limit > maxReadRegs:
		return nil, bad("limit %d is outside 1-%d", limit, maxReadRegs)
	case off+limit > 65536:
		return nil, bad("offset %d + limit %d passes register 65535", off, limit)
	}
	v.limit = uint16(limit)
	return v, nil
}
