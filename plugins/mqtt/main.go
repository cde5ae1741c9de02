// Command mqtt is wapper's MQTT mapper plugin, for devices that publish
// their state as JSON to an MQTT broker and take commands on a topic. It
// follows the configData of KubeEdge's MQTT mapper (kubeedge/mappers-go,
// mappers/device-v1beta1/mqtt-mapper), so that its Device YAML applies;
// docs/mqtt.md has an example and the differences.
//
// Protocol configData (the Device's spec.protocol.configData; the
// DeviceModel's protocolConfigData gives defaults):
//
//   - "brokerURL": "tcp://HOST:PORT" (plain, default port 1883) or
//     "tls://HOST:PORT" (TLS made by the host with the CA and client
//     certificate of the MapperPlugin's grants.tls; default port 8883;
//     "mqtt://", "ssl://" and "mqtts://" work too). Or "ip" and "port"
//     (plain), as KubeEdge's example Device has them.
//   - "clientID": the MQTT client id (default: "wapper-" and 12 random
//     hex digits, one per plugin instance)
//   - "topic": the topic (or filter) the device publishes its JSON state
//     on, such as "room1/deviceinfo/json"
//   - "commandTopic": where writes are published (wapper's; default:
//     the topic with "deviceinfo" replaced by "setsinglevalue" when it
//     has KubeEdge's DEVICE/OPERATION/FORMAT shape, else TOPIC/set)
//   - "username", and "passwordSecret": "NAME/KEY", a Secret the
//     MapperPlugin's grants.secrets lists. A plain "password" is refused.
//   - "keepAlive" in seconds (default 60; 0 turns it off),
//     "cleanSession" (default true), "qos" of subscriptions and commands
//     (0 or 1, default 1), "connectionTTL": how long connecting may take
//     ("5s"; a number is nanoseconds, as in KubeEdge; default 3s)
//   - "fileType": "json" (the only payload format supported)
//
// Property visitor configData:
//
//   - "jsonPath": where the value is in the payload, such as "status.fan"
//     or "$.sensors[0].temp" (default: the property name; "$" is the
//     whole payload)
//   - "topic": the property's own topic, instead of the device's. A
//     payload there that is not a JSON object (23.5, "ON") is the value
//     itself, unless a jsonPath is set.
//   - "commandTopic", "qos", "retain": how writes of this property are
//     published
//   - "clientId", "username", "cleanSession", "keepAlive": taken as the
//     device's when its protocol configData lacks them (KubeEdge's
//     example puts them here); properties must agree.
//
// The plugin keeps one MQTT 3.1.1 connection per broker (and client id,
// user and settings) in each instance, shared by its devices, and
// subscribes to their topics. Its poll, every 100 ms, reads the messages
// that arrived (without waiting for more) and reports the properties
// whose jsonPath is in a message; a read answers the last value
// received, or an error until one came. A write publishes
// {"KEY": VALUE} (nested along the jsonPath) to the command topic and, at
// QoS 1, waits for the broker's PUBACK. The connection is kept alive with
// PINGREQ and opened again when the broker closes it.
//
// The MapperPlugin grants "tcp://HOST:PORT" or "tls://HOST:PORT" in
// grants.network (with a grants.tls entry for TLS), and the password's
// Secret in grants.secrets.
package main

import (
	"fmt"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// device is a device's parsed configuration, the session it uses and the
// last value of each property.
type device struct {
	d     *wapper.Device
	cfg   *protocolConfig
	props map[uint32]*prop
	sess  *session
}

// prop is a property's mapping and last reading.
type prop struct {
	propConfig
	handle uint32
	name   string
	typ    wapper.Type
	// The last message that carried the property: its value, or why it
	// could not be read; have is set once one came.
	val   wapper.Value
	err   error
	have  bool
	topic string
}

// mapper is the driver: the sessions of this instance, by key.
type mapper struct {
	wapper.Base
	sessions map[string]*session
}

func newMapper() *mapper { return &mapper{sessions: map[string]*session{}} }

func (m *mapper) AddDevice(d *wapper.Device) error { return m.setup(d) }

func (m *mapper) UpdateDevice(d *wapper.Device) error { return m.setup(d) }

func (m *mapper) RemoveDevice(d *wapper.Device) error {
	if x, ok := d.Data.(*device); ok {
		m.detach(x)
	}
	d.Data = nil
	return nil
}

// setup parses the configuration, so that a bad one fails when the device
// is added, and attaches the device to its session. Nothing is dialled
// here: the first poll connects.
func (m *mapper) setup(d *wapper.Device) error {
	cfg, pcs, err := parseDevice(d)
	if err != nil {
		return err
	}
	x := &device{d: d, cfg: cfg, props: map[uint32]*prop{}}
	old, _ := d.Data.(*device)
	for _, p := range d.Properties() {
		pr := &prop{propConfig: *pcs[p.Handle], handle: p.Handle, name: p.Name, typ: p.Type()}
		if old != nil {
			// An update that keeps the mapping keeps the last value.
			if o := old.props[p.Handle]; o != nil && o.typ == pr.typ && o.filter == pr.filter && o.path.text == pr.path.text && o.own == pr.own {
				pr.val, pr.err, pr.have, pr.topic = o.val, o.err, o.have, o.topic
			}
		}
		x.props[p.Handle] = pr
	}
	s, err := m.session(cfg, d)
	if err != nil {
		return err
	}
	if old != nil && old.sess != s {
		m.detach(old)
	}
	x.sess = s
	s.devs[d.ID] = x
	d.Data = x
	return nil
}

// session returns the session for cfg, made when there is none. A
// configured client id may serve one session per broker: a broker keeps
// one connection per client id.
func (m *mapper) session(cfg *protocolConfig, d *wapper.Device) (*session, error) {
	key := cfg.sessionKey()
	if s, ok := m.sessions[key]; ok {
		return s, nil
	}
	if cfg.clientID != "" {
		for _, s := range m.sessions {
			if s.cfg.url != cfg.url || s.cfg.clientID != cfg.clientID {
				continue
			}
			for id, other := range s.devs {
				if id != d.ID {
					return nil, wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: clientID %q on %s is used by device %s with another username, passwordSecret, keepAlive, cleanSession or connectionTTL; a broker keeps one connection per client id: give this device its own clientID, or the same settings",
						d, cfg.clientID, cfg.url, other.d)
				}
			}
		}
	}
	s := newSession(key, cfg)
	m.sessions[key] = s
	return s, nil
}

// detach takes a device off its session, which ends with its last device.
func (m *mapper) detach(x *device) {
	s := x.sess
	if s == nil || s.devs[x.d.ID] != x {
		return
	}
	delete(s.devs, x.d.ID)
	if len(s.devs) == 0 {
		s.close()
		delete(m.sessions, s.key)
	}
}

func state(d *wapper.Device) *device { return d.Data.(*device) }

// received records what a message on topic says about a property, and
// reports the value.
func (x *device) received(pr *prop, topic string, doc any, derr error, payload []byte) {
	var v wapper.Value
	var err error
	obj, isObj := doc.(map[string]any)
	switch {
	case derr != nil && (pr.path.whole() || pr.own && pr.defaultPath):
		// A plain payload on the property's own topic: the value itself.
		v, err = valueOf(string(payload), pr.typ)
	case derr != nil:
		err = fmt.Errorf("the payload is not JSON: %v", derr)
	case pr.path.whole() || !isObj && pr.own && pr.defaultPath:
		v, err = valueOf(doc, pr.typ)
	default:
		val, ok := pr.path.lookup(obj)
		if !ok {
			return // the message is about other properties
		}
		v, err = valueOf(val, pr.typ)
	}
	pr.topic, pr.have = topic, true
	if err != nil {
		pr.val, pr.err = wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "the last message on %q: %s: %v", topic, pr.path.text, err)
		return
	}
	pr.val, pr.err = v, nil
	if p := x.d.Property(pr.handle); p != nil {
		wapper.Report(p, v)
	}
}

// Poll connects when needed, reads the messages that have arrived (it
// does not wait for more) and reports what they carry. It asks to be
// polled again in pollEvery, or at once while messages keep coming.
func (m *mapper) Poll(d *wapper.Device, budget time.Duration) (time.Duration, error) {
	s := state(d).sess
	deadline := time.Now().Add(budget)
	fresh := s.conn == nil
	if err := s.ensure(deadline); err != nil {
		return time.Second, err
	}
	if !fresh && time.Since(s.lastPump) < pollEvery/2 {
		// Another device of the connection has just read it; an empty
		// read would only hold the instance for its timeout.
		return pollEvery, nil
	}
	busy, err := s.pump(earlier(deadline, time.Now().Add(pollDrain)))
	if err != nil && !fresh && wapper.IsClosed(err) && time.Now().Before(deadline) {
		// The broker hung up: connect again at once.
		if err = s.ensure(deadline); err == nil {
			busy, err = s.pump(earlier(deadline, time.Now().Add(pollDrain)))
		}
	}
	switch {
	case err != nil:
		return time.Second, err
	case busy:
		return time.Millisecond, nil
	}
	return pollEvery, nil
}

// Read answers the property's last value. It does no I/O: polls read
// the broker, at most pollEvery before.
func (m *mapper) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	x := state(d)
	pr := x.props[p.Handle]
	s := x.sess
	if pr.have {
		return pr.val, pr.err
	}
	why := ""
	switch {
	case s.subError(pr.filter) != nil:
		return wapper.Value{}, s.subError(pr.filter)
	case s.live():
		why = " (connected to the broker)"
	case s.lastErr != nil:
		why = "; the broker connection failed: " + s.lastErr.Error()
	default:
		why = " (not connected to the broker yet)"
	}
	return wapper.Value{}, wapper.Errorf(wapper.ErrUnavailable, "no message with %s on topic %q yet%s", pr.path.text, pr.filter, why)
}

// writeTimeout bounds a write beyond connecting.
const writeTimeout = 2 * time.Second

// Write publishes the command that sets the property, connecting first
// when needed, and once more when the broker had closed the connection.
func (m *mapper) Write(d *wapper.Device, p *wapper.Property, v wapper.Value) error {
	x := state(d)
	pr := x.props[p.Handle]
	if pr.command == "" {
		return wapper.Errorf(wapper.ErrReadOnly, "property %q has no command topic", p.Name)
	}
	payload, err := pr.path.command(v)
	if err != nil {
		return wapper.Errorf(wapper.ErrInvalid, "property %q: %v", p.Name, err)
	}
	s := x.sess
	deadline := time.Now().Add(s.cfg.connectTimeout + writeTimeout)
	fresh := s.conn == nil
	if err := s.ensure(deadline); err != nil {
		return err
	}
	err = s.publish(pr.command, payload, pr.qos, pr.retain, deadline)
	if err != nil && !fresh && s.conn == nil && wapper.IsClosed(err) && time.Now().Before(deadline) {
		if err = s.ensure(deadline); err == nil {
			err = s.publish(pr.command, payload, pr.qos, pr.retain, deadline)
		}
	}
	return err
}

// State is ok while the broker connection is up and its subscriptions
// are accepted, unhealthy with the reason when not, and unknown before
// the first connect.
func (m *mapper) State(d *wapper.Device) (wapper.State, error) {
	x := state(d)
	s := x.sess
	if s.live() {
		for _, pr := range x.props {
			if err := s.subError(pr.filter); err != nil {
				return wapper.StateUnhealthy, err
			}
		}
		return wapper.StateOK, nil
	}
	if s.lastErr != nil {
		return wapper.StateUnhealthy, s.lastErr
	}
	return wapper.StateUnknown, nil
}

func init() { wapper.Register(newMapper()) }

func main() {}
