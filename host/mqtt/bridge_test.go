package mqtt

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
)

// fakeConn records subscriptions and publications.
type fakeConn struct {
	mu   sync.Mutex
	subs map[string]func(topic string, payload []byte)
	pubs map[string][]byte // topic → last payload
}

func newFakeConn() *fakeConn {
	return &fakeConn{subs: map[string]func(string, []byte){}, pubs: map[string][]byte{}}
}

func (c *fakeConn) Publish(topic string, _ byte, _ bool, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pubs[topic] = append([]byte(nil), payload...)
	return nil
}

func (c *fakeConn) Subscribe(filter string, _ byte, fn func(string, []byte)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs[filter] = fn
	return nil
}

func (c *fakeConn) Close() error { return nil }

func (c *fakeConn) sub(filter string) func(string, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[filter]
}

func (c *fakeConn) pub(topic string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pubs[topic]
}

// newManager returns a device manager without devices.
func newManager(t *testing.T) *devices.Manager {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := devices.New(devices.Options{Engine: eng, Store: st, Modules: devices.ModuleLoader{PluginDir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mgr.Close(ctx)
		eng.Close(ctx)
		st.Close()
	})
	return mgr
}

// TestTwinGetAnswered: the bridge answers twin/get unless NoTwinGet (for
// a broker where edgecore answers it).
func TestTwinGetAnswered(t *testing.T) {
	mgr := newManager(t)
	const get = topicPrefix + "+/+/twin/get"
	for _, no := range []bool{false, true} {
		conn := newFakeConn()
		b := NewBridge(mgr, conn, BridgeOptions{NoTwinGet: no})
		if err := b.Subscribe(); err != nil {
			t.Fatal(err)
		}
		fn := conn.sub(get)
		if conn.sub(topicPrefix+"+/+/twin/update") == nil {
			t.Errorf("NoTwinGet %v: not subscribed to twin/update", no)
		}
		if no {
			if fn != nil {
				t.Errorf("NoTwinGet: subscribed to twin/get")
			}
		} else if fn == nil {
			t.Errorf("subscribed to %v, not to twin/get", conn.subs)
		} else {
			fn(TwinGetTopic("default/nope"), []byte(`{"event_id":"e1"}`))
			var res Result
			if err := json.Unmarshal(conn.pub(TwinGetResultTopic("default/nope")), &res); err != nil || res.EventID != "e1" || res.Code != 404 {
				t.Errorf("twin/get answer %+v, %v", res, err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Run(ctx); err != nil { // ends the subscription at once
			t.Fatal(err)
		}
	}
}

// TestTwinTypesLowerCase: every twin message carries metadata.type as
// edgecore spells it.
func TestTwinTypesLowerCase(t *testing.T) {
	conn := newFakeConn()
	b := NewBridge(nil, conn, BridgeOptions{})
	now := time.Now()
	want := map[string]string{"i": "int", "f": "float", "d": "float", "b": "boolean", "s": "string", "y": "string", "m": "string", "u": "string"}
	types := map[string]string{"i": "INT", "f": "FLOAT", "d": "DOUBLE", "b": "BOOLEAN", "s": "STRING", "y": "BYTES", "m": "stream", "u": ""}
	var twins []devices.TwinStatus
	for p, ty := range types {
		twins = append(twins, devices.TwinStatus{Property: p, Type: ty, Reported: "1", ReportedTime: now, Desired: "2", DesiredTime: now})
	}
	b.handle(devices.Event{Type: devices.EventReport, Device: "default/d", Namespace: "default", Name: "d", Time: now, Twins: twins})
	var upd DeviceTwinUpdate
	var doc DeviceTwinDocument
	var delta DeviceTwinDelta
	for topic, v := range map[string]any{TwinUpdateTopic("default/d"): &upd, TwinDocumentTopic("default/d"): &doc, TwinDeltaTopic("default/d"): &delta} {
		if err := json.Unmarshal(conn.pub(topic), v); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
	}
	for p, w := range want {
		got := []string{upd.Twin[p].Metadata.Type, doc.Twin[p].CurrentState.Metadata.Type, delta.Twin[p].Metadata.Type}
		for _, g := range got {
			if g != w {
				t.Errorf("%s (%q): metadata.type in update, document, delta: %q, want %q", p, types[p], strings.Join(got, ", "), w)
				break
			}
		}
	}
}

// TestNoHostConn: without a host connection the bridge publishes nothing
// on the EventBus topics, and a pushMethod.mqtt without address is counted
// at every reading and warned about once per device and property (again
// after the device is removed).
func TestNoHostConn(t *testing.T) {
	var logs strings.Builder
	b := NewBridge(nil, nil, BridgeOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	now := time.Now()
	pm := &v1beta1.PushMethod{MQTT: &v1beta1.PushMethodMQTT{Topic: "a/b"}}
	tw := devices.TwinStatus{Property: "p", Type: "INT", Reported: "1", ReportedTime: now, Desired: "2", DesiredTime: now, Push: pm}
	ev := func(ty devices.EventType, dev string) devices.Event {
		return devices.Event{Type: ty, Device: dev, Namespace: "ns", Name: dev, Time: now, Twins: []devices.TwinStatus{tw}}
	}
	for _, ty := range []devices.EventType{devices.EventReport, devices.EventDesired, devices.EventState} {
		b.handle(ev(ty, "ns/d")) // would panic publishing on a nil conn
	}
	for range 3 {
		b.handle(ev(devices.EventReading, "ns/d"))
	}
	b.handle(ev(devices.EventReading, "ns/e"))
	b.handle(ev(devices.EventDeviceRemoved, "ns/d"))
	b.handle(ev(devices.EventReading, "ns/d"))
	if n := testutil.ToFloat64(b.pushFailures.WithLabelValues(pushNoBroker)); n != 5 {
		t.Errorf("no_broker failures %v, want 5", n)
	}
	if n := testutil.ToFloat64(b.failures.WithLabelValues("push")); n != 5 {
		t.Errorf("push publish failures %v, want 5", n)
	}
	got := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{"device=ns/d property=p", "device=ns/e property=p", "device=ns/d property=p"}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d", logs.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], "level=WARN") || !strings.Contains(got[i], w) ||
			!strings.Contains(got[i], "set --mqtt-broker or --mqtt-listen, or pushMethod.mqtt.address") {
			t.Errorf("warning %d: %s, want one for %s saying what to set", i, got[i], w)
		}
	}
}
