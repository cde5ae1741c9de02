package conformance

import (
	"encoding/json"
	"fmt"

	"wapper.dev/wapper/abi"
)

// Property handles of FullDevice. Handles 0–11 are the description of
// abi/CONFORMANCE.md; 12 and 13 add a STREAM and an unknown type.
const (
	hInt = iota
	hFloat
	hDouble
	hString
	hBool
	hBytes
	hFail
	hStored
	hTicks
	hBoom
	hBusy
	hReadOnly
	hStream
	hWidget
)

// echoHandles are the echo properties of every known type, with their types.
var echoHandles = []struct {
	h uint32
	t abi.Type
}{
	{hInt, abi.TypeInt}, {hFloat, abi.TypeFloat}, {hDouble, abi.TypeDouble}, {hString, abi.TypeString},
	{hBool, abi.TypeBoolean}, {hBytes, abi.TypeBytes}, {hStream, abi.TypeStream},
}

// storedKey is the kv key of property hStored.
const storedKey = "conf/stored"

func prop(h uint32, name, typ, access, visitor string) abi.Property {
	p := abi.Property{Handle: h, Name: name, Type: typ, AccessMode: access}
	if visitor != "" {
		p.Visitor = json.RawMessage(visitor)
	}
	return p
}

// FullDevice is the conformance description that covers every kind, with
// the given handle and protocol config ("": {"state": "online"}).
func FullDevice(id uint32, protocolConfig string) abi.Device {
	if protocolConfig == "" {
		protocolConfig = `{"state": "online"}`
	}
	return abi.Device{
		ID: id, Namespace: "default", Name: fmt.Sprintf("conf-%d", id), Model: "conformance", Protocol: "conformance",
		ProtocolConfig: json.RawMessage(protocolConfig),
		Properties: []abi.Property{
			prop(hInt, "int", "INT", "ReadWrite", `{"kind": "echo"}`),
			prop(hFloat, "float", "FLOAT", "ReadWrite", `{"kind": "echo"}`),
			prop(hDouble, "double", "DOUBLE", "ReadWrite", `{"kind": "echo"}`),
			prop(hString, "string", "STRING", "ReadWrite", `{"kind": "echo"}`),
			prop(hBool, "boolean", "BOOLEAN", "ReadWrite", `{"kind": "echo"}`),
			prop(hBytes, "bytes", "BYTES", "ReadWrite", `{"kind": "echo"}`),
			prop(hFail, "fail", "INT", "ReadWrite", `{"kind": "error", "code": 14, "message": "device said no"}`),
			prop(hStored, "stored", "STRING", "ReadWrite", `{"kind": "kv", "key": "`+storedKey+`"}`),
			prop(hTicks, "ticks", "INT", "ReadOnly", `{"kind": "poll", "every": "250"}`),
			prop(hBoom, "boom", "INT", "ReadOnly", `{"kind": "panic"}`),
			prop(hBusy, "busy", "INT", "ReadOnly", `{"kind": "spin", "ms": 50}`),
			prop(hReadOnly, "readonly", "INT", "ReadOnly", `{"kind": "echo"}`),
			prop(hStream, "stream", "STREAM", "ReadWrite", `{"kind": "echo"}`),
			prop(hWidget, "widget", "WIDGET", "ReadWrite", `{"kind": "echo"}`),
		},
	}
}

// device is a small description with the given properties.
func device(id uint32, protocolConfig string, props ...abi.Property) abi.Device {
	d := abi.Device{ID: id, Namespace: "default", Name: fmt.Sprintf("dev-%d", id), Protocol: "conformance", Properties: props}
	if protocolConfig != "" {
		d.ProtocolConfig = json.RawMessage(protocolConfig)
	}
	if d.Properties == nil {
		d.Properties = []abi.Property{}
	}
	return d
}

// zero is the value an echo property reads before any write.
func zero(t abi.Type) abi.Value {
	switch t {
	case abi.TypeInt:
		return abi.Int(0)
	case abi.TypeFloat:
		return abi.Float(0)
	case abi.TypeDouble:
		return abi.Double(0)
	case abi.TypeString:
		return abi.String("")
	case abi.TypeBoolean:
		return abi.Bool(false)
	case abi.TypeBytes:
		return abi.Bytes(nil)
	default:
		return abi.Stream(nil)
	}
}
