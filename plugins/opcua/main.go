// Command opcua is wapper's OPC UA mapper plugin: an OPC UA client over
// the binary protocol (opc.tcp) that reads and writes variables, finds
// them by NodeId or by browse path, and subscribes to data changes. It
// reaches the server only through the host's sockets and reads its
// credentials from Secrets; docs/opcua.md has a Device YAML example and
// the grants.
//
// Protocol configData (the Device's spec.protocol.configData; the
// DeviceModel's protocolConfigData gives defaults), KubeEdge's names where
// they mean the same:
//
//   - "url": the endpoint, opc.tcp://HOST:PORT[/PATH] (port 4840 by
//     default)
//   - "securityPolicy": None (default) or Basic256Sha256;
//     "securityMode": None, Sign or SignAndEncrypt (default: None for
//     None, SignAndEncrypt for Basic256Sha256)
//   - "certificateSecret": with a security policy, the Secret with the
//     client's application instance certificate and RSA key (tls.crt,
//     tls.key; PEM or DER). The certificate's URI (subject alternative
//     name) is the client's application URI.
//   - "serverCertificateSecret" (the server's certificate itself, tls.crt:
//     pinned) or "caSecret" (the CA that issued it, ca.crt: the plugin
//     first asks the server for its endpoints over a channel without
//     security, then checks the certificate of the chosen endpoint against
//     that CA): one of them is needed with a security policy. The chain
//     and validity are checked, not the host name.
//   - "userName" and "passwordSecret": "NAME/KEY", or
//     "userCertificateSecret" (tls.crt, tls.key: an X.509 user); else the
//     anonymous user. The password is encrypted for the server's
//     certificate as its user token policy says; one that would cross in
//     clear text is refused unless the channel encrypts. A "password",
//     "certificate" or "privateKey" in configData is refused.
//   - "timeout" per request (milliseconds or a duration such as "2s";
//     default 2s), "publishingInterval" of the subscription (default
//     500ms), "sessionTimeout" (default 1m), "channelLifetime" of a
//     security token (default 1h; renewed at three quarters)
//
// Property visitor configData:
//
//   - "nodeID": the variable's NodeId, such as "ns=2;s=Temperature" or
//     "i=2258"; or "browsePath": its browse names from the Root folder
//     along hierarchical references, such as
//     "/Objects/2:Boiler/2:Temperature" (resolved with
//     TranslateBrowsePathsToNodeIds once per connection)
//   - "subscribe": true monitors the variable in the device's
//     subscription and reports each data change (wapper_poll sends the
//     Publish requests and reports what they bring); reads still read
//   - "samplingInterval": of the monitored item (default: the
//     publishing interval)
//   - "dataType": the built-in type to write (Boolean, SByte, Byte,
//     Int16, UInt16, Int32, UInt32, Int64, UInt64, Float, Double, String,
//     DateTime, ByteString, LocalizedText); by default the type of the
//     value the node holds
//
// Reads of a device's properties go in one Read request. A Bad status
// becomes an error with code "device error" naming the status. A broken
// connection or a lost session is opened again on the next request.
//
// The MapperPlugin grants "tcp://HOST:PORT" in grants.network and the
// Secrets above in grants.secrets.
package main

import (
	"errors"
	"time"

	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
)

// dev is a device's parsed configuration and client.
type dev struct {
	cfg   *protocolConfig
	cli   *client
	props map[uint32]*visitor
	// learned are the built-in types of the nodes written, by property
	// handle, for visitors without a dataType.
	learned map[uint32]ua.TypeID
	subs    bool
}

type opcua struct{ wapper.Base }

func (opcua) AddDevice(d *wapper.Device) error { return setup(d) }

func (opcua) UpdateDevice(d *wapper.Device) error { return setup(d) }

func (opcua) RemoveDevice(d *wapper.Device) error {
	if x, ok := d.Data.(*dev); ok {
		x.cli.close()
	}
	return nil
}

// setup parses the configuration, so that a bad one fails when the device
// is added. An update keeps the connection when neither the protocol
// settings nor the node mappings changed.
func setup(d *wapper.Device) error {
	cfg, err := parseProtocol(d)
	if err != nil {
		return err
	}
	x := &dev{cfg: cfg, props: map[uint32]*visitor{}, learned: map[uint32]ua.TypeID{}}
	for _, p := range d.Properties() {
		v, err := parseVisitor(p)
		if err != nil {
			return err
		}
		x.props[p.Handle] = v
		x.subs = x.subs || v.subscribe
	}
	if old, ok := d.Data.(*dev); ok {
		if *old.cfg == *cfg && sameVisitors(old.props, x.props) {
			x.cli, x.learned = old.cli, old.learned
		} else {
			old.cli.close()
		}
	}
	if x.cli == nil {
		x.cli = &client{cfg: cfg, name: d.String()}
	}
	x.cli.onData = func(h uint32, dv *ua.DataValue) { x.notified(d, h, dv) }
	x.cli.items = func() ([]*ua.MonitoredItemCreateRequest, error) { return x.items(d) }
	d.Data = x
	return nil
}

func sameVisitors(a, b map[uint32]*visitor) bool {
	if len(a) != len(b) {
		return false
	}
	for h, v := range a {
		if w, ok := b[h]; !ok || w.key != v.key {
			return false
		}
	}
	return true
}

func state(d *wapper.Device) *dev { return d.Data.(*dev) }

// notified reports a data change of a monitored property.
func (x *dev) notified(d *wapper.Device, h uint32, dv *ua.DataValue) {
	p := d.Property(h)
	if p == nil {
		return
	}
	if isBad(dv.Status) {
		wapper.Log.Debug("data change with a bad status", "property", p.Name, "status", statusText(dv.Status))
		return
	}
	v, err := fromVariant(dv.Value)
	if err != nil {
		wapper.Log.Debug("data change without a usable value", "property", p.Name, "err", err)
		return
	}
	if err := wapper.Report(p, v); err != nil {
		wapper.Log.Debug("report failed", "property", p.Name, "err", err)
	}
}

// items are the monitored items of the subscribed properties.
func (x *dev) items(d *wapper.Device) ([]*ua.MonitoredItemCreateRequest, error) {
	var props []*wapper.Property
	for _, p := range d.Properties() {
		if v := x.props[p.Handle]; v != nil && v.subscribe {
			props = append(props, p)
		}
	}
	ids, errs := x.nodes(props)
	var items []*ua.MonitoredItemCreateRequest
	for i, p := range props {
		if errs[i] != nil {
			if len(props) == 1 {
				return nil, errs[i]
			}
			wapper.Log.Warn("property not subscribed", "property", p.Name, "err", errs[i])
			continue
		}
		sampling := float64(-1)
		if v := x.props[p.Handle]; v.sampling >= 0 {
			sampling = float64(v.sampling) / float64(time.Millisecond)
		}
		items = append(items, &ua.MonitoredItemCreateRequest{
			ItemToMonitor:  readValueID(ids[i], ua.AttributeIDValue),
			MonitoringMode: ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{
				ClientHandle:     p.Handle,
				SamplingInterval: sampling,
				Filter:           ua.NewExtensionObject(nil),
				QueueSize:        1,
				DiscardOldest:    true,
			},
		})
	}
	if len(items) == 0 {
		return nil, errors.Join(errs...)
	}
	return items, nil
}

func readValueID(id *ua.NodeID, attr ua.AttributeID) *ua.ReadValueID {
	return &ua.ReadValueID{NodeID: id, AttributeID: attr, DataEncoding: &ua.QualifiedName{}}
}

// nodes returns the node of each property, resolving in one request the
// browse paths not yet resolved on this connection.
func (x *dev) nodes(props []*wapper.Property) ([]*ua.NodeID, []error) {
	ids, errs := make([]*ua.NodeID, len(props)), make([]error, len(props))
	var paths []*ua.BrowsePath
	var at []int
	for i, p := range props {
		v := x.props[p.Handle]
		switch {
		case v.nodeID != nil:
			ids[i] = v.nodeID
		case x.cli.resolved[v.path] != nil:
			ids[i] = x.cli.resolved[v.path]
		default:
			paths = append(paths, &ua.BrowsePath{
				StartingNode: ua.NewNumericNodeID(0, rootFolder),
				RelativePath: &ua.RelativePath{Elements: v.elems},
			})
			at = append(at, i)
		}
	}
	if len(paths) == 0 {
		return ids, errs
	}
	resp, err := x.translate(paths)
	for k, i := range at {
		path := x.props[props[i].Handle].path
		if err != nil {
			errs[i] = err
			continue
		}
		ids[i], errs[i] = target(path, resp.Results[k])
		if errs[i] == nil && x.cli.resolved != nil {
			x.cli.resolved[path] = ids[i]
		}
	}
	return ids, errs
}

func (x *dev) translate(paths []*ua.BrowsePath) (*ua.TranslateBrowsePathsToNodeIDsResponse, error) {
	v, err := x.cli.call(&ua.TranslateBrowsePathsToNodeIDsRequest{BrowsePaths: paths})
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*ua.TranslateBrowsePathsToNodeIDsResponse)
	if !ok || len(resp.Results) != len(paths) {
		return nil, wapper.Errorf(wapper.ErrIO, "TranslateBrowsePathsToNodeIds: malformed response")
	}
	return resp, nil
}

// target picks the node a browse path leads to.
func target(path string, r *ua.BrowsePathResult) (*ua.NodeID, error) {
	if r == nil {
		return nil, wapper.Errorf(wapper.ErrIO, "browse path %s: no result", path)
	}
	if isBad(r.StatusCode) {
		return nil, wapper.Errorf(wapper.ErrDeviceFailed, "browse path %s: %s", path, statusText(r.StatusCode))
	}
	for _, t := range r.Targets {
		if t == nil || t.TargetID == nil || t.RemainingPathIndex != 0xFFFFFFFF {
			continue
		}
		if t.TargetID.ServerIndex != 0 || t.TargetID.NamespaceURI != "" {
			return nil, wapper.Errorf(wapper.ErrUnsupported, "browse path %s leads to a node on another server", path)
		}
		return ua.NewNodeIDFromExpandedNodeID(t.TargetID), nil
	}
	return nil, wapper.Errorf(wapper.ErrDeviceFailed, "browse path %s leads to no node", path)
}

func (m opcua) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	vals, errs := m.ReadBatch(d, []*wapper.Property{p})
	return vals[0], errs[0]
}

// ReadBatch reads the properties in one Read request.
func (opcua) ReadBatch(d *wapper.Device, props []*wapper.Property) ([]wapper.Value, []error) {
	x := state(d)
	vals := make([]wapper.Value, len(props))
	ids, errs := x.nodes(props)
	var nodes []*ua.ReadValueID
	var at []int
	for i := range props {
		if errs[i] == nil {
			nodes = append(nodes, readValueID(ids[i], ua.AttributeIDValue))
			at = append(at, i)
		}
	}
	if len(nodes) == 0 {
		return vals, errs
	}
	results, err := x.read(nodes)
	for k, i := range at {
		if err != nil {
			errs[i] = err
			continue
		}
		vals[i], errs[i] = value(x.props[props[i].Handle], results[k])
	}
	return vals, errs
}

// read sends a Read request of the nodes' attributes.
func (x *dev) read(nodes []*ua.ReadValueID) ([]*ua.DataValue, error) {
	v, err := x.cli.call(&ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither, NodesToRead: nodes})
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*ua.ReadResponse)
	if !ok || len(resp.Results) != len(nodes) {
		return nil, wapper.Errorf(wapper.ErrIO, "Read: %d results for %d nodes", len(resp.Results), len(nodes))
	}
	return resp.Results, nil
}

// value converts a read result.
func value(v *visitor, dv *ua.DataValue) (wapper.Value, error) {
	if dv == nil {
		return wapper.Value{}, wapper.Errorf(wapper.ErrIO, "node %s: no result", v.node())
	}
	if isBad(dv.Status) {
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "node %s: %s", v.node(), statusText(dv.Status))
	}
	val, err := fromVariant(dv.Value)
	if err != nil {
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "node %s: %v", v.node(), err)
	}
	return val, nil
}

func (opcua) Write(d *wapper.Device, p *wapper.Property, val wapper.Value) error {
	x := state(d)
	v := x.props[p.Handle]
	ids, errs := x.nodes([]*wapper.Property{p})
	if errs[0] != nil {
		return errs[0]
	}
	id := ids[0]
	t := v.dataType
	if t == 0 {
		var err error
		if t, err = x.nodeType(p.Handle, v, id); err != nil {
			return err
		}
	}
	variant, err := toVariant(val, t)
	if err != nil {
		return wapper.Errorf(wapper.ErrInvalid, "property %q (node %s, %s): %v", p.Name, v.node(), typeName(t), err)
	}
	resp, err := x.cli.call(&ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID:      id,
		AttributeID: ua.AttributeIDValue,
		Value:       &ua.DataValue{EncodingMask: ua.DataValueValue, Value: variant},
	}}})
	if err != nil {
		return err
	}
	w, ok := resp.(*ua.WriteResponse)
	if !ok || len(w.Results) != 1 {
		return wapper.Errorf(wapper.ErrIO, "Write: malformed response")
	}
	switch s := w.Results[0]; {
	case s == ua.StatusBadNotWritable || s == ua.StatusBadUserAccessDenied:
		return wapper.Errorf(wapper.ErrReadOnly, "property %q: node %s: %s", p.Name, v.node(), statusText(s))
	case s == ua.StatusBadTypeMismatch:
		delete(x.learned, p.Handle)
		return wapper.Errorf(wapper.ErrInvalid, "property %q: node %s does not take a %s: %s (set the visitor's dataType)", p.Name, v.node(), typeName(t), statusText(s))
	case isBad(s):
		return wapper.Errorf(wapper.ErrDeviceFailed, "property %q: node %s: %s", p.Name, v.node(), statusText(s))
	}
	return nil
}

// nodeType learns the built-in type to write a node with: that of the
// value it holds, else its DataType attribute when that is a built-in
// type.
func (x *dev) nodeType(h uint32, v *visitor, id *ua.NodeID) (ua.TypeID, error) {
	if t, ok := x.learned[h]; ok {
		return t, nil
	}
	res, err := x.read([]*ua.ReadValueID{readValueID(id, ua.AttributeIDValue), readValueID(id, ua.AttributeIDDataType)})
	if err != nil {
		return 0, err
	}
	if isBad(res[0].Status) {
		return 0, wapper.Errorf(wapper.ErrDeviceFailed, "node %s: %s", v.node(), statusText(res[0].Status))
	}
	t, ok := writableType(res[0].Value)
	if !ok && !isBad(res[1].Status) && res[1].Value != nil {
		if dt, isID := res[1].Value.Value().(*ua.NodeID); isID && dt.Namespace() == 0 {
			if _, known := canonical[ua.TypeID(dt.IntID())]; known {
				t, ok = ua.TypeID(dt.IntID()), true
			}
		}
	}
	if !ok {
		return 0, wapper.Errorf(wapper.ErrUnsupported, "node %s: cannot tell which built-in type to write; set the visitor's dataType", v.node())
	}
	x.learned[h] = t
	return t, nil
}

// pollWait is how long a poll waits for a Publish response when none is
// there yet: the responses the server sent since the last call are
// already waiting in the host's socket.
const pollWait = 5 * time.Millisecond

// Poll keeps the subscription's Publish requests at the server and
// reports the data changes they bring; it is called again after the
// publishing interval. Devices without subscribed properties are not
// polled.
func (opcua) Poll(d *wapper.Device, budget time.Duration) (time.Duration, error) {
	x := state(d)
	if !x.subs {
		return 0, nil
	}
	return x.cfg.publishingInterval, x.cli.poll(min(budget, pollWait))
}

// State is ok while the server answers, unknown before the first request,
// and unhealthy with the last error while it does not.
func (opcua) State(d *wapper.Device) (wapper.State, error) {
	x := state(d)
	switch {
	case x.cli.ok:
		return wapper.StateOK, nil
	case x.cli.lastErr != nil:
		return wapper.StateUnhealthy, x.cli.lastErr
	}
	return wapper.StateUnknown, nil
}

func init() { wapper.Register(opcua{}) }

func main() {}
