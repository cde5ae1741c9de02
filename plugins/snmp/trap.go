package main

import (
	"crypto/subtle"
	"net"
	"sort"
	"time"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
)

// Traps. Each trap port (trapListen) is one datagram socket of the
// instance, bound through the host (wapper.ListenPacket) when a device
// listening on it is first polled, and shared by the devices of the
// instance that listen on the same port. Whichever of them is polled
// reads what has arrived and hands each trap to the devices it comes
// from. The host delivers only datagrams whose sender grants.network
// covers.

// trapSocket is one trap port.
type trapSocket struct {
	addr string
	pc   *wapper.PacketConn
	devs map[*wapper.Device]bool
	buf  []byte
}

// trapSockets are this instance's trap ports, by trapListen.
var trapSockets = map[string]*trapSocket{}

// How long a poll waits for traps, at most (the host's budget may be
// longer): a poll holds the device, so its reads wait behind it. After a
// trap, the poll waits only a little for more, so that a burst is read in
// one poll and a lone trap is not held back.
const (
	maxTrapWait   = 250 * time.Millisecond
	trapBurstWait = 10 * time.Millisecond
	pollAgain     = time.Millisecond
)

// listen registers d as a listener on addr ("" for none).
func listen(d *wapper.Device, addr string) {
	if addr == "" {
		return
	}
	ts := trapSockets[addr]
	if ts == nil {
		ts = &trapSocket{addr: addr, devs: map[*wapper.Device]bool{}}
		trapSockets[addr] = ts
	}
	ts.devs[d] = true
}

// unlisten removes d from the listeners on addr, and closes the socket
// when it was the last.
func unlisten(d *wapper.Device, addr string) {
	ts := trapSockets[addr]
	if ts == nil {
		return
	}
	delete(ts.devs, d)
	if len(ts.devs) == 0 {
		if ts.pc != nil {
			ts.pc.Close()
		}
		delete(trapSockets, addr)
	}
}

// poll receives traps for up to budget (at most maxTrapWait) and reports
// their values. A device without trapListen is not polled.
func poll(d *wapper.Device, budget time.Duration) (time.Duration, error) {
	x := state(d)
	if x.cfg.trapListen == "" {
		return 0, nil
	}
	ts := trapSockets[x.cfg.trapListen]
	if ts == nil { // cannot happen: setup registered it
		listen(d, x.cfg.trapListen)
		ts = trapSockets[x.cfg.trapListen]
	}
	if ts.pc == nil {
		pc, err := wapper.ListenPacket(ts.addr)
		if err != nil {
			x.trapErr = wapper.Errorf(wapper.CodeOf(err), "traps on udp %s: %v", ts.addr, err)
			return 0, x.trapErr
		}
		ts.pc = pc
		if ts.buf == nil {
			ts.buf = make([]byte, 65535)
		}
	}
	x.trapErr = nil
	deadline := time.Now().Add(min(budget, maxTrapWait))
	for {
		ts.pc.SetReadDeadline(deadline)
		n, from, err := ts.pc.ReadFrom(ts.buf)
		if err != nil {
			if wapper.CodeOf(err) == wapper.ErrTimeout {
				return pollAgain, nil
			}
			// The socket is gone (its instance was replaced) or broken:
			// bind again on the next poll.
			ts.pc.Close()
			ts.pc = nil
			x.trapErr = wapper.Errorf(wapper.CodeOf(err), "traps on udp %s: %v", ts.addr, err)
			return 0, x.trapErr
		}
		ts.deliver(ts.buf[:n], from)
		deadline = minTime(deadline, time.Now().Add(trapBurstWait))
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// v12 decodes SNMPv1 and v2c traps; the community is checked per device.
var v12 = &gosnmp.GoSNMP{Version: gosnmp.Version2c}

// deliver hands one datagram to the devices it comes from, and
// acknowledges an SNMPv2c inform that one of them took. (An SNMPv3
// inform's sender first discovers the receiver's engine, and the plugin
// is no authoritative engine: v3 informs are not supported.)
func (ts *trapSocket) deliver(msg []byte, from net.Addr) {
	var sender net.IP
	if ua, ok := from.(*net.UDPAddr); ok {
		sender = ua.IP
	}
	devs := make([]*wapper.Device, 0, len(ts.devs))
	for d := range ts.devs {
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
	var inform *gosnmp.SnmpPacket
	taken := false
	for _, d := range devs {
		x := state(d)
		if !x.from(sender) {
			continue
		}
		pkt, err := x.decodeTrap(msg)
		if err != nil {
			wapper.Log.Warn("trap dropped", "device", d.String(), "from", from.String(), "err", err.Error())
			continue
		}
		taken = true
		x.apply(d, pkt)
		if pkt.PDUType == gosnmp.InformRequest && pkt.Version != gosnmp.Version3 {
			inform = pkt
		}
	}
	if !taken {
		wapper.Log.Debug("trap from a sender no device on this port has as its address", "port", ts.addr, "from", from.String())
	}
	if inform != nil {
		inform.PDUType, inform.Error, inform.ErrorIndex = gosnmp.GetResponse, gosnmp.NoError, 0
		if b, err := inform.MarshalMsg(); err == nil {
			ts.pc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := ts.pc.WriteTo(b, from); err != nil {
				wapper.Log.Warn("inform not acknowledged", "from", from.String(), "err", err.Error())
			}
		}
	}
}

// from reports whether a trap from sender is the device's: its address,
// or any sender when the address is a host name (which the plugin cannot
// resolve; the host's grants still filter the senders).
func (x *dev) from(sender net.IP) bool {
	ip := net.ParseIP(x.cfg.address)
	return ip == nil || ip.Equal(sender)
}

// decodeTrap decodes and authenticates a trap for the device: SNMPv1 and
// v2c for v1 and v2c devices, with the community of trapCommunitySecret
// when set; SNMPv3 for v3 devices, with the device's user and passwords.
func (x *dev) decodeTrap(msg []byte) (*gosnmp.SnmpPacket, error) {
	c := x.cfg
	if c.version != gosnmp.Version3 {
		pkt, err := v12.UnmarshalTrap(msg, false)
		if err != nil {
			return nil, err
		}
		if pkt.Version == gosnmp.Version3 {
			return nil, wapper.Errorf(wapper.ErrInvalid, "an SNMPv3 trap for a device of version %s", c.version)
		}
		if c.trapCommunitySecret != "" {
			want, err := readSecret("trapCommunitySecret", c.trapCommunitySecret)
			if err != nil {
				return nil, err
			}
			if subtle.ConstantTimeCompare([]byte(want), []byte(pkt.Community)) != 1 {
				return nil, wapper.Errorf(wapper.ErrDenied, "wrong community (not the one of trapCommunitySecret %s)", c.trapCommunitySecret)
			}
		}
		return pkt, nil
	}
	if x.v3traps == nil {
		g, err := newGoSNMP(c)
		if err != nil {
			return nil, err
		}
		x.v3traps = g
	}
	pkt, err := x.v3traps.UnmarshalTrap(msg, true)
	if err != nil {
		x.v3traps = nil // read the secrets again for the next one
		return nil, err
	}
	if pkt.Version != gosnmp.Version3 {
		return nil, wapper.Errorf(wapper.ErrInvalid, "an SNMP%s trap for an SNMPv3 device", pkt.Version)
	}
	return pkt, nil
}

// apply reports the varbinds of a trap that match the device's
// properties.
func (x *dev) apply(d *wapper.Device, pkt *gosnmp.SnmpPacket) {
	props := d.Properties()
	for _, pdu := range pkt.Variables {
		name := objectName(pdu.Name)
		for _, p := range props {
			v := x.props[p.Handle]
			if v == nil || v.walk || v.oid != name {
				continue
			}
			val, err := v.toValue(pdu, p.Type())
			if err != nil {
				wapper.Log.Warn("trap varbind not reported", "device", d.String(), "property", p.Name, "err", err.Error())
				continue
			}
			if v.trapOnly {
				x.trapped[p.Handle] = val
			}
			if err := wapper.Report(p, val); err != nil {
				wapper.Log.Warn("trap varbind not reported", "device", d.String(), "property", p.Name, "err", err.Error())
			}
		}
	}
}
