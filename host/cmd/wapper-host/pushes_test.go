package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

// pushesYAML: level pushes to the broker its address names, label has no
// address, note has a dbMethod.
const pushesYAML = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: boiler-model, namespace: plant}
spec:
  protocol: virtual
  properties:
  - {name: note, type: STRING, accessMode: ReadWrite}
  - {name: label, type: STRING, accessMode: ReadWrite}
  - {name: level, type: INT, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler, namespace: plant}
spec:
  deviceModelRef: {name: boiler-model}
  protocol: {protocolName: virtual}
  properties:
  - name: note
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "n"}}
    pushMethod:
      dbMethod:
        influxdb2:
          influxdb2ClientConfig: {url: "http://127.0.0.1:1", org: o, bucket: b}
          influxdb2DataConfig: {measurement: m, fieldKey: f}
  - name: label
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "warm"}}
    pushMethod:
      mqtt: {topic: plant/boiler/label}
  - name: level
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 42}}
    pushMethod:
      mqtt: {address: "tcp://EXTADDR", topic: ext/level, qos: 1}
`

// logBuffer keeps JSON log records for the test to count.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Log(strings.TrimRight(string(p), "\n"))
	return b.buf.Write(p)
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), s)
}

// count returns how many records of level WARN have a message starting
// with prefix and the given property.
func (b *logBuffer) count(prefix, property string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var rec struct{ Level, Msg, Property string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "WARN" && strings.HasPrefix(rec.Msg, prefix) && rec.Property == property {
			n++
		}
	}
	return n
}

// counter returns the value of a counter with one label, 0 when absent.
func counter(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// waitFor polls cond until it holds; the minute is only a bound for a
// broken build, not a threshold of the behaviour checked.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
	}
}

// TestPushesWithoutHostBroker: with no host MQTT connection (--mqtt-listen
// "" and no --mqtt-broker, as beside edgecore), the pushes wired as run
// wires them still deliver a pushMethod.mqtt that names its broker, warn
// once and count each reading of one that does not, and warn once about a
// dbMethod whose server is down, showing it in the device's status.
func TestPushesWithoutHostBroker(t *testing.T) {
	virtual := testenv.Plugin(t, "virtual")
	ext := hosttest.Broker(t)
	got := make(chan paho.Message, 100)
	hosttest.Subscribe(t, "tcp://"+ext.Addr(), "#", func(m paho.Message) {
		select {
		case got <- m:
		default:
		}
	})

	logs := &logBuffer{t: t}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	mgr := hosttest.Manager(t, log, filepath.Dir(virtual), devices.Options{
		DefaultCollectCycle: 100 * time.Millisecond, DefaultReportCycle: 100 * time.Millisecond, StateCycle: time.Second, FlushInterval: time.Second,
	})
	o := options{mqttListen: "", sinkBuffer: 1000} // and no --mqtt-broker
	ctx, cancel := context.WithCancel(context.Background())
	lc := newLifecycle(ctx, log, nil)
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := startPushes(o, lc, mgr, nil, st, nil, log, reg); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		if err := lc.Wait(); err != nil {
			t.Errorf("pushes stopped with %v", err)
		}
	}
	stopped := false
	t.Cleanup(func() { // before the manager closes
		if !stopped {
			stop()
		}
	})
	hosttest.Apply(t, mgr, strings.ReplaceAll(pushesYAML, "EXTADDR", ext.Addr()))

	select {
	case m := <-got:
		if m.Topic() != "ext/level" || m.Qos() != 1 || !strings.HasSuffix(string(m.Payload()), "  ext/level: 42") {
			t.Errorf("the address's broker got %q on %s at QoS %d, want mapper-framework's text of level on ext/level at QoS 1", m.Payload(), m.Topic(), m.Qos())
		}
	case <-time.After(time.Minute):
		t.Fatal("nothing on the broker pushMethod.mqtt.address names within a minute")
	}

	// Three readings of label refused, then one warning.
	const noBroker = "pushMethod.mqtt has no address and wapper-host has no MQTT broker"
	waitFor(t, "three label readings counted as no_broker", func() bool {
		return counter(t, reg, "wapper_mqtt_push_failures_total", "reason", "no_broker") >= 3
	})
	const sinkDown = "data sink not taking readings"
	waitFor(t, "dbMethod down warning", func() bool {
		return logs.count(sinkDown, "") > 0 && counter(t, reg, "wapper_sink_write_errors_total", "kind", "influxdb2") >= 2
	})
	d, err := mgr.Device("plant", "boiler")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Sinks) != 1 || d.Sinks[0].Property != "note" || d.Sinks[0].Method != "dbMethod.influxdb2" || d.Sinks[0].Queued == 0 ||
		!strings.Contains(d.Sinks[0].Error, "127.0.0.1:1") {
		t.Errorf("device sinks %+v, want note's influxdb2 down with readings queued", d.Sinks)
	}
	stop()
	stopped = true
	if n := logs.count(noBroker, "label"); n != 1 {
		t.Errorf("%d warnings %q for label, want 1", n, noBroker)
	}
	if !logs.contains("set --mqtt-broker or --mqtt-listen, or pushMethod.mqtt.address") {
		t.Errorf("the warning does not say what to set")
	}
	if n := logs.count(noBroker, "level"); n != 0 {
		t.Errorf("%d no-broker warnings for level, which names its broker", n)
	}
	if n := logs.count(sinkDown, ""); n != 1 {
		t.Errorf("%d warnings %q, want 1 however many writes fail", n, sinkDown)
	}
	nb := counter(t, reg, "wapper_mqtt_push_failures_total", "reason", "no_broker")
	if all := counter(t, reg, "wapper_mqtt_publish_failures_total", "kind", "push"); all < nb {
		t.Errorf("wapper_mqtt_publish_failures_total{kind=push} %v, below its no_broker part %v", all, nb)
	}
	if ok := counter(t, reg, "wapper_mqtt_published_total", "kind", "push"); ok < 1 {
		t.Errorf("wapper_mqtt_published_total{kind=push} %v, want the level pushes", ok)
	}
	// Nothing but the pushes: no EventBus topics without a host broker.
	for _, kind := range []string{"twin", "document", "state"} {
		if n := counter(t, reg, "wapper_mqtt_published_total", "kind", kind); n != 0 {
			t.Errorf("published %v %s messages with no host broker", n, kind)
		}
	}
}
