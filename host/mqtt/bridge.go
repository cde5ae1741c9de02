package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/push"
)

// BridgeOptions configure a Bridge.
type BridgeOptions struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Buffer is the event channel size (default 65536).
	Buffer int
	// NoTwinGet leaves $hw/events/device/+/twin/get unanswered, for a
	// broker where KubeEdge's edgecore answers it (its devicetwin serves
	// twin/get for every device it holds), so that a requester gets one
	// answer, not two.
	NoTwinGet bool
	// PushFormat is the payload of pushMethod.mqtt messages (default
	// mapper-framework's text, see [push.MapperFramework]).
	PushFormat push.Format
}

// Bridge publishes device events on KubeEdge's EventBus topics and feeds
// desired values and twin queries back to the device manager. It also
// publishes the readings of properties with a pushMethod.mqtt: on the
// host's connection, or on the broker the pushMethod's address names.
type Bridge struct {
	mgr  *devices.Manager
	conn Conn
	log  *slog.Logger
	opts BridgeOptions

	published    *prometheus.CounterVec
	failures     *prometheus.CounterVec
	received     *prometheus.CounterVec
	pushFailures *prometheus.CounterVec

	last map[string][]twinText // device -> the last twin sent of each property, by name
	cur  []twinText            // the twins of the report being sent (reused)
	// noBroker holds the properties warned about for a pushMethod.mqtt
	// without address while there is no host connection (device ->
	// property); like last, only the event goroutine uses it.
	noBroker map[string]map[string]bool

	// self is the first byte of the twin update being published, so that
	// the embedded broker's synchronous delivery of our own message to our
	// own twin/update subscription is recognised without parsing it.
	self atomic.Pointer[byte]

	extMu sync.Mutex          // guards ext
	ext   map[string]*extConn // pushMethod.mqtt brokers by address

	events <-chan devices.Event // from Subscribe
	cancel func()               // ends the event subscription
}

type extConn struct {
	c   Conn
	err error
}

// NewBridge returns a bridge between mgr and conn; call Subscribe, then
// Run.
//
// conn is nil when the host has no MQTT connection (no embedded broker and
// no external one): then the bridge publishes only the pushMethod.mqtt
// readings whose address names a broker, and counts (and warns once per
// device and property about) those without one.
func NewBridge(mgr *devices.Manager, conn Conn, o BridgeOptions) *Bridge {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Buffer <= 0 {
		o.Buffer = 1 << 16
	}
	b := &Bridge{mgr: mgr, conn: conn, log: o.Logger, opts: o, last: map[string][]twinText{}, noBroker: map[string]map[string]bool{}, ext: map[string]*extConn{},
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_mqtt_published_total",
			Help: "MQTT messages published, by kind (twin, document, delta, state, push, get)."}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_mqtt_publish_failures_total",
			Help: "MQTT messages that could not be published, by kind."}, []string{"kind"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_mqtt_received_total",
			Help: "MQTT requests received, by kind (update, get) and result (ok, error)."}, []string{"kind", "result"}),
		pushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_mqtt_push_failures_total",
			Help: "pushMethod.mqtt readings not published, by reason (no_broker: no address and no host MQTT connection; connect: the address's broker is not connected; publish: the publish failed). Each also counts in wapper_mqtt_publish_failures_total{kind=\"push\"}."}, []string{"reason"}),
	}
	for _, r := range []string{pushNoBroker, pushConnect, pushPublish} {
		b.pushFailures.WithLabelValues(r)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(b.published, b.failures, b.received, b.pushFailures)
	}
	return b
}

// Reasons of wapper_mqtt_push_failures_total.
const (
	pushNoBroker = "no_broker"
	pushConnect  = "connect"
	pushPublish  = "publish"
)

// Subscribe subscribes to the request topics and to the device events
// that Run publishes (without a host connection, only the pushMethod.mqtt
// readings). It is Run's synchronous first step: call it before devices
// start, so that Run misses no event; Run calls it if it was not.
func (b *Bridge) Subscribe() error {
	if b.events != nil {
		return nil
	}
	if b.conn != nil {
		if err := b.conn.Subscribe(topicPrefix+"+/+/twin/update", 1, b.onTwinUpdate); err != nil {
			return err
		}
		if !b.opts.NoTwinGet {
			if err := b.conn.Subscribe(topicPrefix+"+/+/twin/get", 1, b.onTwinGet); err != nil {
				return err
			}
		}
	}
	hostConn := b.conn != nil
	events, cancel := b.mgr.SubscribeFunc("mqtt", b.opts.Buffer, func(ev *devices.Event) bool {
		if ev.Type == devices.EventReading {
			return ev.PushesMQTT()
		}
		return hostConn || ev.Type == devices.EventDeviceRemoved
	})
	b.events, b.cancel = events, cancel
	return nil
}

// Run publishes device events until ctx ends, then ends the subscription
// after the events already received, closes the connections to
// pushMethod brokers and returns nil; it fails only when Subscribe does.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.Subscribe(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range b.events {
			b.handle(ev)
		}
	}()
	<-ctx.Done()
	b.cancel()
	<-done
	b.extMu.Lock()
	defer b.extMu.Unlock()
	for addr, e := range b.ext {
		if e.c != nil {
			if err := e.c.Close(); err != nil {
				b.log.Debug("close pushMethod.mqtt broker connection", "broker", addr, "err", err)
			}
		}
	}
	return nil
}

func base(t time.Time) BaseMessage {
	return BaseMessage{EventID: eventID(), Timestamp: t.UnixMilli()}
}

func strp(s string) *string { return &s }

func byName(a, b twinText) int { return strings.Compare(a.name, b.name) }

func msgTwin(t devices.TwinStatus) *MsgTwin {
	mt := &MsgTwin{Metadata: &TypeMetadata{Type: twinType(t.Type)}}
	if t.Desired != "" {
		mt.Expected = &TwinValue{Value: strp(t.Desired), Metadata: &ValueMetadata{Timestamp: t.DesiredTime.UnixMilli()}}
	}
	if !t.ReportedTime.IsZero() {
		mt.Actual = &TwinValue{Value: strp(t.Reported), Metadata: &ValueMetadata{Timestamp: t.ReportedTime.UnixMilli()}}
	}
	return mt
}

func (b *Bridge) publish(kind, topic string, qos byte, retain bool, v any) {
	payload, err := json.Marshal(v)
	if err == nil {
		err = b.conn.Publish(topic, qos, retain, payload)
	}
	b.count(kind, topic, err)
}

func (b *Bridge) publishRaw(kind, topic string, payload []byte) {
	b.self.Store(&payload[0])
	err := b.conn.Publish(topic, 0, false, payload)
	b.self.Store(nil)
	b.count(kind, topic, err)
}

func (b *Bridge) count(kind, topic string, err error) {
	if err != nil {
		b.failures.WithLabelValues(kind).Inc()
		b.log.Debug("MQTT publish failed", "topic", topic, "err", err)
		return
	}
	b.published.WithLabelValues(kind).Inc()
}

func (b *Bridge) handle(ev devices.Event) {
	if b.conn == nil && ev.Type != devices.EventReading && ev.Type != devices.EventDeviceRemoved {
		return // no EventBus without a host connection
	}
	switch ev.Type {
	case devices.EventReport:
		cur := b.cur[:0]
		pending := false
		for i := range ev.Twins {
			t := &ev.Twins[i]
			if t.ReportedTime.IsZero() {
				continue
			}
			cur = append(cur, newTwinText(t))
			pending = pending || (t.Desired != "" && t.Desired != t.Reported)
		}
		b.cur = cur
		if len(cur) == 0 {
			return
		}
		slices.SortFunc(cur, byName)
		last := b.last[ev.Device]
		b.publishRaw("twin", TwinUpdateTopic(ev.Device), encodeTwinUpdate(base(ev.Time), cur))
		b.publishRaw("document", TwinDocumentTopic(ev.Device), encodeTwinDocument(base(ev.Time), cur, last))
		b.last[ev.Device] = mergeTwins(last, cur)
		clear(cur) // drops the strings until the next report
		if pending {
			b.publishDelta(ev)
		}
	case devices.EventDesired:
		b.publishDelta(ev)
	case devices.EventReading:
		for _, t := range ev.Twins {
			if t.Push != nil && t.Push.MQTT != nil {
				b.pushMQTT(ev, t)
			}
		}
	case devices.EventState:
		b.publish("state", StateUpdateTopic(ev.Device), 0, false, DeviceStateUpdate{BaseMessage: base(ev.Time), State: ev.State.String()})
	case devices.EventDeviceRemoved:
		delete(b.last, ev.Device)
		delete(b.noBroker, ev.Device)
	}
}

func (b *Bridge) publishDelta(ev devices.Event) {
	twins := map[string]*MsgTwin{}
	delta := map[string]string{}
	for _, t := range ev.Twins {
		if t.Desired == "" {
			continue
		}
		twins[t.Property] = msgTwin(t)
		if t.Desired != t.Reported || t.ReportedTime.IsZero() {
			delta[t.Property] = t.Desired
		}
	}
	if len(delta) == 0 {
		return
	}
	b.publish("delta", TwinDeltaTopic(ev.Device), 0, false, DeviceTwinDelta{BaseMessage: base(ev.Time), Twin: twins, Delta: delta})
}

func (b *Bridge) pushMQTT(ev devices.Event, t devices.TwinStatus) {
	pm := t.Push.MQTT
	conn := b.conn
	switch {
	case pm.Address != "":
		if conn = b.extBroker(pm.Address); conn == nil {
			b.pushFailed(pushConnect)
			return
		}
	case conn == nil:
		b.warnNoBroker(ev, t)
		b.pushFailed(pushNoBroker)
		return
	}
	payload := b.opts.PushFormat.MQTTPayload(pm.Topic, push.Reading{
		DeviceName: ev.Name, Namespace: ev.Namespace, PropertyName: t.Property,
		Value: t.Reported, Type: t.Type, TimeStamp: t.ReportedTime.UnixMilli(),
	})
	err := conn.Publish(pm.Topic, byte(pm.QoS), pm.Retained, payload)
	if err != nil {
		b.pushFailures.WithLabelValues(pushPublish).Inc()
	}
	b.count("push", pm.Topic, err)
}

// pushFailed counts a pushMethod.mqtt reading not published.
func (b *Bridge) pushFailed(reason string) {
	b.failures.WithLabelValues("push").Inc()
	b.pushFailures.WithLabelValues(reason).Inc()
}

// warnNoBroker warns, once per device and property (again after the device
// is removed and added back), that a pushMethod.mqtt without address has
// no broker to go to.
func (b *Bridge) warnNoBroker(ev devices.Event, t devices.TwinStatus) {
	warned := b.noBroker[ev.Device]
	if warned[t.Property] {
		return
	}
	if warned == nil {
		warned = map[string]bool{}
		b.noBroker[ev.Device] = warned
	}
	warned[t.Property] = true
	b.log.Warn("pushMethod.mqtt has no address and wapper-host has no MQTT broker: its readings are not published; set --mqtt-broker or --mqtt-listen, or pushMethod.mqtt.address",
		"device", ev.Device, "property", t.Property, "topic", t.Push.MQTT.Topic)
}

// extBroker returns the connection to a pushMethod.mqtt address, dialling
// it in the background the first time (messages are counted as failures
// until it is up).
func (b *Bridge) extBroker(addr string) Conn {
	b.extMu.Lock()
	defer b.extMu.Unlock()
	if e, ok := b.ext[addr]; ok {
		return e.c
	}
	e := &extConn{}
	b.ext[addr] = e
	go func() {
		url := addr
		if !strings.Contains(url, "://") {
			url = "tcp://" + url
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := Dial(ctx, ClientOptions{URL: url, ClientID: "wapper-host-push-" + uuid.NewString()[:8], Logger: b.log})
		b.extMu.Lock()
		defer b.extMu.Unlock()
		if err != nil {
			b.log.Error("pushMethod.mqtt broker unreachable; will retry on a later reading", "address", addr, "err", err)
			delete(b.ext, addr)
			return
		}
		e.c = c
	}()
	return nil
}

// splitTopic parses $hw/events/device/{ns}/{name}/rest.
func splitTopic(topic string) (ns, name, rest string, ok bool) {
	s, found := strings.CutPrefix(topic, topicPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

func (b *Bridge) onTwinUpdate(topic string, payload []byte) {
	if len(payload) > 0 && b.self.Load() == &payload[0] {
		return // our own report
	}
	if !bytes.Contains(payload, []byte(`"expected"`)) && json.Valid(payload) {
		return // our own reports (actual values only): nothing to set
	}
	ns, name, _, ok := splitTopic(topic)
	if !ok {
		return
	}
	var msg DeviceTwinUpdate
	if err := json.Unmarshal(payload, &msg); err != nil {
		b.received.WithLabelValues("update", "error").Inc()
		b.log.Warn("bad twin update message", "topic", topic, "err", err)
		b.publish("result", topic+"/result", 0, false, Result{BaseMessage: BaseMessage{Timestamp: time.Now().UnixMilli()}, Code: 400, Reason: "cannot parse twin update: " + err.Error()})
		return
	}
	for prop, t := range msg.Twin {
		if t == nil || t.Expected == nil || t.Expected.Value == nil {
			continue // our own reports carry actual values only
		}
		_, err := b.mgr.SetDesired(context.Background(), ns, name, prop, *t.Expected.Value, "mqtt")
		if err != nil {
			b.received.WithLabelValues("update", "error").Inc()
			b.log.Warn("desired value from MQTT refused", "device", ns+"/"+name, "property", prop, "err", err)
			b.publish("result", topic+"/result", 0, false, Result{BaseMessage: BaseMessage{EventID: msg.EventID, Timestamp: time.Now().UnixMilli()}, Code: httpCode(err), Reason: err.Error()})
			continue
		}
		b.received.WithLabelValues("update", "ok").Inc()
	}
}

func (b *Bridge) onTwinGet(topic string, payload []byte) {
	ns, name, _, ok := splitTopic(topic)
	if !ok {
		return
	}
	var req BaseMessage
	_ = json.Unmarshal(payload, &req) // an empty or odd request still gets an answer
	resTopic := topic + "/result"
	st, err := b.mgr.Device(ns, name)
	if err != nil {
		b.received.WithLabelValues("get", "error").Inc()
		b.publish("get", resTopic, 0, false, Result{BaseMessage: BaseMessage{EventID: req.EventID, Timestamp: time.Now().UnixMilli()}, Code: httpCode(err), Reason: err.Error()})
		return
	}
	twins := map[string]*MsgTwin{}
	for _, t := range st.Twins {
		twins[t.Property] = msgTwin(t)
	}
	b.received.WithLabelValues("get", "ok").Inc()
	b.publish("get", resTopic, 0, false, DeviceTwinResult{BaseMessage: BaseMessage{EventID: req.EventID, Timestamp: time.Now().UnixMilli()}, Twin: twins})
}

func httpCode(err error) int {
	switch {
	case errors.Is(err, devices.ErrNotFound):
		return 404
	case errors.Is(err, devices.ErrInvalid):
		return 400
	case errors.Is(err, devices.ErrReadOnly):
		return 403
	case errors.Is(err, devices.ErrConflict):
		return 409
	}
	return 500
}
