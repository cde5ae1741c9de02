package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/host/push"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

// request is what the HTTP peer received.
type request struct {
	method, path, query string
	header              http.Header
	body                string
}

// message is what an MQTT peer received.
type message struct {
	topic    string
	payload  string
	qos      byte
	retained bool
}

// peers are the consumers of the pushes: an HTTP server, a client of the
// host's broker and a second broker named by pushMethod.mqtt.address, with
// a client of its own.
type peers struct {
	http     chan request
	bus, ext chan message
	busURL   string
	start    time.Time
}

// deviceYAML is standard KubeEdge YAML, as a Device written for
// mapper-framework would be: note pushes over HTTP, label to the host's
// broker (QoS 1, retained), level to another broker.
const deviceYAML = `apiVersion: mappers.wapper.dev/v1alpha1
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
    collectCycle: 200
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "a b&c=d"}}
    pushMethod:
      http: {hostName: "http://HTTPHOST", port: HTTPPORT, requestPath: /ingest, timeout: 2000}
  - name: label
    collectCycle: 200
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: "warm & dry"}}
    pushMethod:
      mqtt: {topic: plant/boiler/label, qos: 1, retained: true}
  - name: level
    collectCycle: 200
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 42}}
    pushMethod:
      mqtt: {address: "tcp://EXTADDR", topic: ext/level, qos: 0}
`

// startHost runs the virtual plugin with deviceYAML, the HTTP pusher and
// the MQTT bridge in format f, and returns the peers.
func startHost(t *testing.T, f push.Format) *peers {
	virtual := testenv.Plugin(t, "virtual")
	p := &peers{http: make(chan request, 100), bus: make(chan message, 100), ext: make(chan message, 100), start: time.Now()}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case p.http <- request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header, string(b)}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	bus, ext := hosttest.Broker(t), hosttest.Broker(t)
	p.busURL = "tcp://" + bus.Addr()
	subscribe(t, p.busURL, "#", p.bus) // all but $hw/...
	subscribe(t, "tcp://"+ext.Addr(), "ext/#", p.ext)

	log := slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	mgr := newManager(t, log, virtual)
	bridge := mqtt.NewBridge(mgr, bus, mqtt.BridgeOptions{Logger: log, PushFormat: f})
	if err := bridge.Subscribe(); err != nil {
		t.Fatal(err)
	}
	pusher := push.NewHTTP(mgr, push.Options{Logger: log, Format: f})
	pusher.Subscribe()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- bridge.Run(ctx) }()
	go func() { done <- pusher.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})

	host, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	hosttest.Apply(t, mgr, strings.NewReplacer("HTTPHOST", host, "HTTPPORT", port, "EXTADDR", ext.Addr()).Replace(deviceYAML))
	return p
}

// newManager returns a device manager that loads the plugin from the
// folder of virtual (reads every 200ms unless a property says otherwise),
// closed at the end of the test, after the cleanups registered later.
func newManager(t *testing.T, log *slog.Logger, virtual string) *devices.Manager {
	t.Helper()
	return hosttest.Manager(t, log, filepath.Dir(virtual), devices.Options{
		DefaultCollectCycle: 200 * time.Millisecond, DefaultReportCycle: time.Second, StateCycle: time.Second, FlushInterval: time.Second,
	})
}

// subscribe sends what a client of the broker at url receives on filter
// to ch, dropping what ch has no room for.
func subscribe(t *testing.T, url, filter string, ch chan message) {
	t.Helper()
	hosttest.Subscribe(t, url, filter, func(m paho.Message) {
		select {
		case ch <- message{m.Topic(), string(m.Payload()), m.Qos(), m.Retained()}:
		default:
		}
	})
}

func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatalf("no %s within 60s", what)
	}
	panic("unreachable")
}

// mfTime matches mapper-framework's time in a payload.
const mfTime = `(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)`

// checkTime checks that a mapper-framework time (local zone, seconds) is
// the time of a reading taken during the test.
func (p *peers) checkTime(t *testing.T, s string) {
	t.Helper()
	ts, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
	if err != nil || ts.Before(p.start.Truncate(time.Second)) || ts.After(time.Now()) {
		t.Errorf("time %q (%v) is not the local time of a reading since %s", s, err, p.start.Format(time.DateTime))
	}
}

// TestMapperFrameworkPayloads checks, with real peers, that by default a
// Device written for mapper-framework gets what mapper-framework's
// generated mappers send: over HTTP a POST of an unescaped form with its
// content type, over MQTT the text on the topic with the QoS and retained
// flag of the pushMethod, on the broker it names.
func TestMapperFrameworkPayloads(t *testing.T) {
	p := startHost(t, "")

	r := receive(t, "HTTP push", p.http)
	if r.method != http.MethodPost || r.path != "/ingest" || r.query != "" {
		t.Errorf("request %s %s?%s, want POST /ingest", r.method, r.path, r.query)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", ct)
	}
	// mapper-framework posts with Go's default client, as wapper does.
	if ua, cl := r.header.Get("User-Agent"), r.header.Get("Content-Length"); ua != "Go-http-client/1.1" || cl != fmt.Sprint(len(r.body)) {
		t.Errorf("User-Agent %q, Content-Length %s for %d bytes", ua, cl, len(r.body))
	}
	m := regexp.MustCompile(`^note=a b&c=d&time=` + mfTime + `$`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("HTTP body %q, want note=a b&c=d&time=YYYY-MM-DD hh:mm:ss", r.body)
	}
	p.checkTime(t, m[1])

	msg := receive(t, "message on the host's broker", p.bus)
	m = regexp.MustCompile(`^time is ` + mfTime + `  plant/boiler/label: warm & dry$`).FindStringSubmatch(msg.payload)
	if msg.topic != "plant/boiler/label" || msg.qos != 1 || m == nil {
		t.Fatalf("message %+v, want QoS 1 on plant/boiler/label: time is YYYY-MM-DD hh:mm:ss  plant/boiler/label: warm & dry", msg)
	}
	p.checkTime(t, m[1])
	// retained: a later subscriber gets the last one at once.
	late := make(chan message, 10)
	subscribe(t, p.busURL, "plant/boiler/label", late)
	if msg := receive(t, "retained message", late); !msg.retained || !strings.HasPrefix(msg.payload, "time is ") {
		t.Errorf("late subscriber got %+v, want the retained text", msg)
	}

	msg = receive(t, "message on pushMethod.mqtt.address", p.ext)
	m = regexp.MustCompile(`^time is ` + mfTime + `  ext/level: 42$`).FindStringSubmatch(msg.payload)
	if msg.topic != "ext/level" || msg.qos != 0 || msg.retained || m == nil {
		t.Fatalf("message %+v, want QoS 0 on ext/level: time is YYYY-MM-DD hh:mm:ss  ext/level: 42", msg)
	}
	p.checkTime(t, m[1])
	for len(p.bus) > 0 {
		if msg := <-p.bus; msg.topic != "plant/boiler/label" {
			t.Errorf("the host's broker got %+v", msg)
		}
	}
}

// TestJSONPayloads checks --push-format json: the whole reading as JSON,
// over HTTP with Content-Type application/json.
func TestJSONPayloads(t *testing.T) {
	p := startHost(t, push.JSON)
	check := func(what, payload, prop, value string) {
		t.Helper()
		var got push.Reading
		dec := json.NewDecoder(strings.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s %q: %v", what, payload, err)
		}
		ts := time.UnixMilli(got.TimeStamp)
		got.TimeStamp = 0
		if want := (push.Reading{DeviceName: "boiler", PropertyName: prop, Namespace: "plant", Value: value, Type: got.Type}); got != want || got.Type == "" {
			t.Errorf("%s %+v, want %+v with a type", what, got, want)
		}
		if ts.Before(p.start) || ts.After(time.Now()) {
			t.Errorf("%s TimeStamp %v is not a reading's", what, ts)
		}
	}
	r := receive(t, "HTTP push", p.http)
	if r.method != http.MethodPost || r.path != "/ingest" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s, Content-Type %q", r.method, r.path, r.header.Get("Content-Type"))
	}
	check("HTTP body", r.body, "note", "a b&c=d")
	msg := receive(t, "message on the host's broker", p.bus)
	check("MQTT payload", msg.payload, "label", "warm & dry")
	msg = receive(t, "message on pushMethod.mqtt.address", p.ext)
	check("MQTT payload", msg.payload, "level", "42")
}
