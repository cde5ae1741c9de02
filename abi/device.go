package abi

import "encoding/json"

// Device is the JSON device description the host passes to
// wapper_device_add and wapper_device_update.
type Device struct {
	// ID is the device handle used in every later call.
	ID uint32 `json:"id"`
	// Namespace and Name identify the KubeEdge Device.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Model is the DeviceModel name.
	Model string `json:"model"`
	// Protocol is the protocol name (DeviceModel spec.protocol).
	Protocol string `json:"protocol"`
	// ProtocolConfig is the Device's spec.protocol.configData object, as
	// KubeEdge YAML gives it (flat values: string, number, bool).
	ProtocolConfig json.RawMessage `json:"protocolConfig,omitempty"`
	// ModelConfig is the DeviceModel's spec.protocolConfigData object.
	ModelConfig json.RawMessage `json:"modelConfig,omitempty"`
	// Properties lists every property with its handle.
	Properties []Property `json:"properties"`
	// Methods lists the device methods.
	Methods []Method `json:"methods,omitempty"`
}

// Property describes one device property.
type Property struct {
	// Handle names the property in read, write and report calls. Handles
	// are unique within a device and stable across updates for a property
	// of the same name.
	Handle uint32 `json:"handle"`
	Name   string `json:"name"`
	// Type is KubeEdge's spelling: INT, FLOAT, DOUBLE, STRING, BOOLEAN,
	// BYTES or STREAM.
	Type string `json:"type"`
	// AccessMode is ReadWrite or ReadOnly.
	AccessMode string `json:"accessMode"`
	Minimum    string `json:"minimum,omitempty"`
	Maximum    string `json:"maximum,omitempty"`
	Unit       string `json:"unit,omitempty"`
	// Visitor is the property's visitors.configData object.
	Visitor json.RawMessage `json:"visitor,omitempty"`
	// CollectCycle and ReportCycle are in milliseconds; zero means the
	// host default.
	CollectCycle int64 `json:"collectCycle,omitempty"`
	ReportCycle  int64 `json:"reportCycle,omitempty"`
}

// Method describes one device method.
type Method struct {
	Name          string   `json:"name"`
	Description   string   `json:"description,omitempty"`
	PropertyNames []string `json:"propertyNames,omitempty"`
}

// MethodRequest is the JSON body passed to wapper_call_method.
type MethodRequest struct {
	Method string          `json:"method"`
	Args   json.RawMessage `json:"args,omitempty"`
}

// ValueType returns the property's Type, or TypeInvalid.
func (p *Property) ValueType() Type {
	t, _ := ParseType(p.Type)
	return t
}

// Writable reports whether the access mode allows writes.
func (p *Property) Writable() bool { return p.AccessMode != "ReadOnly" }

// Property returns the property with handle h, or nil.
func (d *Device) Property(h uint32) *Property {
	if int(h) < len(d.Properties) && d.Properties[h].Handle == h {
		return &d.Properties[h]
	}
	for i := range d.Properties {
		if d.Properties[i].Handle == h {
			return &d.Properties[i]
		}
	}
	return nil
}
