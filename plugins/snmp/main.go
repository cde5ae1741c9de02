// Command snmp is wapper's SNMP mapper plugin: SNMPv1, v2c and v3 (USM)
// gets, sets and walks of an agent's objects, and traps and informs
// pushed as readings. It reaches agents only through the host: a
// connected UDP socket to the agent (grants.network udp://HOST:PORT) and,
// for traps, a datagram socket bound to the trap port (grants.listen).
// Community strings and SNMPv3 passwords come from secrets
// (grants.secrets), never from configData.
//
// Protocol configData (the Device's spec.protocol.configData; the
// DeviceModel's protocolConfigData gives defaults):
//
//   - "address": the agent's host name or IP; "port" (default 161)
//   - "version": "1", "2c" (default) or "3"
//   - v1 and v2c: "communitySecret": "NAME/KEY" of the secret holding the
//     community; without it the community is "public", the well-known
//     read-only one, the only community configData may name in plain
//     text ("community": "public"). Any other plain community is refused.
//   - v3: "user"; "securityLevel" noAuthNoPriv, authNoPriv or authPriv
//     (default: from the secrets set); "authProtocol" MD5, SHA (default),
//     SHA224, SHA256, SHA384 or SHA512; "authPasswordSecret": "NAME/KEY";
//     "privProtocol" DES, AES (default), AES192, AES256, AES192C or
//     AES256C; "privPasswordSecret": "NAME/KEY"; "contextName".
//     Passwords in plain configData (authPassword, privPassword, ...)
//     are refused.
//   - "timeout" per request (milliseconds or a duration such as "2s";
//     default 1 s), "retries" (default 1), "maxOids" per get request
//     (default 60), "maxRepetitions" per GETBULK of a walk (default 25)
//   - "trapListen": the local address to receive traps on, such as
//     ":1162" or ":162"; "trapCommunitySecret": "NAME/KEY" of the
//     community traps must carry (v1 and v2c; without it the community of
//     a trap is not checked, and only the host's sender filter applies).
//     SNMPv3 traps must be authenticated (and encrypted) as the device's
//     securityLevel says, with its user and passwords.
//
// Property visitor configData:
//
//   - "oid": the object's numeric OID, such as "1.3.6.1.2.1.1.5.0"
//     (sysName.0); MIB names are not resolved
//   - "walk": true reads the subtree under oid (GETBULK, or GETNEXT for
//     v1) into a STRING property, as a JSON object of OID to value in
//     the agent's order; "maxEntries" bounds it (default 1000)
//   - "trapOnly": true takes the value only from traps: a read returns
//     the last value a trap carried (snmpTrapOID.0, 1.3.6.1.6.3.1.1.4.1.0,
//     gives the trap's OID)
//   - "snmpType": the SNMP type a write sends (Integer, OctetString,
//     Gauge32, Counter32, Counter64, TimeTicks, Unsigned32, IpAddress,
//     ObjectIdentifier, OpaqueFloat, OpaqueDouble); default from the
//     property type (values.go)
//   - "scale": multiplies numbers read (and divides numbers written)
//   - "format": "hex" shows OCTET STRINGs as hex ("00:1a:2b"); by default
//     they are text when printable
//
// A batch read gets up to maxOids scalar objects of a device in one
// request. Every trap or inform (v2c informs are acknowledged) whose
// sender is the device's address (any granted sender when the address is
// a host name) updates the properties whose oid matches a varbind, and
// the host pushes them as readings.
//
// Grants: "udp://AGENT:PORT" in grants.network for requests; for traps,
// grants.listen must cover the trap port ("udp://0.0.0.0:1162"), and the
// host delivers only the traps whose sender a udp entry of grants.network
// covers: agents send traps from a port of their own, so that is usually
// "udp://AGENT:1024-65535" or "udp://AGENT:*" (or the agent's fixed trap
// source port); grants.secrets
// names the secrets. With a fixed trap port, run the plugin with
// limits.instances 1: the port can be bound by one instance only.
package main

import (
	"time"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
)

// dev is a device's parsed configuration, session and trap state.
type dev struct {
	cfg   *protocolConfig
	sess  session
	props map[uint32]*visitor
	// trapped holds the last value a trap carried, by property handle,
	// for trapOnly properties.
	trapped map[uint32]wapper.Value
	// trapErr is why the trap port cannot be received on, if so.
	trapErr error
	// v3traps decodes the device's SNMPv3 traps, made with its secrets.
	v3traps *gosnmp.GoSNMP
}

type snmp struct{ wapper.Base }

func (snmp) AddDevice(d *wapper.Device) error { return setup(d) }

func (snmp) UpdateDevice(d *wapper.Device) error { return setup(d) }

func (snmp) RemoveDevice(d *wapper.Device) error {
	if x, ok := d.Data.(*dev); ok {
		x.sess.close()
		unlisten(d, x.cfg.trapListen)
	}
	return nil
}

// setup parses the configuration, so that a bad one fails when the device
// is added. An update keeps the session when the protocol settings are
// unchanged.
func setup(d *wapper.Device) error {
	cfg, err := parseProtocol(d)
	if err != nil {
		return err
	}
	x := &dev{cfg: cfg, props: map[uint32]*visitor{}, trapped: map[uint32]wapper.Value{}}
	for _, p := range d.Properties() {
		v, err := parseVisitor(p)
		if err != nil {
			return err
		}
		x.props[p.Handle] = v
	}
	if old, ok := d.Data.(*dev); ok {
		if *old.cfg == *cfg {
			x.sess, x.v3traps = old.sess, old.v3traps
		} else {
			old.sess.close()
		}
		for h, val := range old.trapped {
			if x.props[h] != nil {
				x.trapped[h] = val
			}
		}
		x.trapErr = old.trapErr
		if old.cfg.trapListen != cfg.trapListen {
			unlisten(d, old.cfg.trapListen)
			x.trapErr = nil
		}
	}
	x.sess.cfg = cfg
	d.Data = x
	listen(d, cfg.trapListen)
	return nil
}

func state(d *wapper.Device) *dev { return d.Data.(*dev) }

func (snmp) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	x := state(d)
	v := x.props[p.Handle]
	switch {
	case v.trapOnly:
		if val, ok := x.trapped[p.Handle]; ok {
			return val, nil
		}
		return wapper.Value{}, wapper.Errorf(wapper.ErrUnavailable, "no trap has carried %s yet", v.oid)
	case v.walk:
		return x.walk(v)
	}
	pdus, err := x.get([]string{v.oid})
	if err != nil {
		return wapper.Value{}, err
	}
	return v.toValue(pdus[0], p.Type())
}

// get reads scalar objects in one request and returns their varbinds in
// the order of oids.
func (x *dev) get(oids []string) ([]gosnmp.SnmpPDU, error) {
	req := make([]string, len(oids))
	for i, o := range oids {
		req[i] = "." + o
	}
	pkt, err := x.sess.do(func(g *gosnmp.GoSNMP) (*gosnmp.SnmpPacket, error) { return g.Get(req) })
	if err != nil {
		return nil, err
	}
	if err := status(pkt, "get"); err != nil {
		return nil, err
	}
	byName := make(map[string]gosnmp.SnmpPDU, len(pkt.Variables))
	for _, pdu := range pkt.Variables {
		byName[objectName(pdu.Name)] = pdu
	}
	out := make([]gosnmp.SnmpPDU, len(oids))
	for i, o := range oids {
		pdu, ok := byName[o]
		if !ok {
			return nil, wapper.Errorf(wapper.ErrDeviceFailed, "the agent's answer does not hold %s", o)
		}
		out[i] = pdu
	}
	return out, nil
}

// walk reads the subtree under v.oid as a JSON object.
func (x *dev) walk(v *visitor) (wapper.Value, error) {
	var pdus []gosnmp.SnmpPDU
	_, err := x.sess.do(func(g *gosnmp.GoSNMP) (*gosnmp.SnmpPacket, error) {
		pdus = pdus[:0]
		collect := func(pdu gosnmp.SnmpPDU) error {
			if len(pdus) >= v.max {
				return wapper.Errorf(wapper.ErrTooLarge, "the walk of %s passed maxEntries (%d): raise it, or walk a smaller subtree", v.oid, v.max)
			}
			pdus = append(pdus, pdu)
			return nil
		}
		if g.Version == gosnmp.Version1 {
			return &gosnmp.SnmpPacket{}, g.Walk("."+v.oid, collect)
		}
		return &gosnmp.SnmpPacket{}, g.BulkWalk("."+v.oid, collect)
	})
	if err != nil {
		return wapper.Value{}, err
	}
	return wapper.String(v.walkJSON(pdus)), nil
}

// ReadBatch gets the scalar properties of a device in as few requests as
// maxOids allows. When a request fails with an error status (an SNMPv1
// agent's noSuchName, say), its properties are read one by one, so that
// each gets its own answer.
func (m snmp) ReadBatch(d *wapper.Device, props []*wapper.Property) ([]wapper.Value, []error) {
	x := state(d)
	vals, errs := make([]wapper.Value, len(props)), make([]error, len(props))
	var scalar []int
	for i, p := range props {
		v := x.props[p.Handle]
		if v.walk || v.trapOnly {
			vals[i], errs[i] = m.Read(d, p)
			continue
		}
		scalar = append(scalar, i)
	}
	for len(scalar) > 0 {
		group := scalar[:min(len(scalar), x.cfg.maxOids)]
		scalar = scalar[len(group):]
		oids := make([]string, len(group))
		for j, i := range group {
			oids[j] = x.props[props[i].Handle].oid
		}
		pdus, err := x.get(oids)
		if err != nil && len(group) > 1 && wapper.CodeOf(err) == wapper.ErrDeviceFailed {
			for _, i := range group {
				vals[i], errs[i] = m.Read(d, props[i])
			}
			continue
		}
		for j, i := range group {
			if err != nil {
				errs[i] = err
				continue
			}
			vals[i], errs[i] = x.props[props[i].Handle].toValue(pdus[j], props[i].Type())
		}
	}
	return vals, errs
}

func (snmp) Write(d *wapper.Device, p *wapper.Property, val wapper.Value) error {
	x := state(d)
	v := x.props[p.Handle]
	if v.walk || v.trapOnly {
		return wapper.Errorf(wapper.ErrReadOnly, "property %q is a walk or trapOnly, which cannot be written", p.Name)
	}
	pdu, err := v.toPDU(val)
	if err != nil {
		return wapper.Errorf(wapper.CodeOf(err), "property %q: %v", p.Name, err)
	}
	pkt, err := x.sess.do(func(g *gosnmp.GoSNMP) (*gosnmp.SnmpPacket, error) { return g.Set([]gosnmp.SnmpPDU{pdu}) })
	if err != nil {
		return err
	}
	return status(pkt, "set")
}

// State is ok while the agent answers (and the trap port, if any, is
// bound), unknown before the first request, and unhealthy with the last
// error otherwise.
func (snmp) State(d *wapper.Device) (wapper.State, error) {
	x := state(d)
	switch {
	case x.trapErr != nil:
		return wapper.StateUnhealthy, x.trapErr
	case x.sess.ok:
		return wapper.StateOK, nil
	case x.sess.lastErr != nil:
		return wapper.StateUnhealthy, x.sess.lastErr
	}
	return wapper.StateUnknown, nil
}

// Poll receives the device's traps (trap.go).
func (snmp) Poll(d *wapper.Device, budget time.Duration) (time.Duration, error) {
	return poll(d, budget)
}

func init() { wapper.Register(snmp{}) }

func main() {}
