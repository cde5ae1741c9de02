package push_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/push"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

// unsupportedYAML: temp writes to InfluxDB, rate goes to OTel, an anomaly
// detector and two databases, label only over MQTT (supported).
const unsupportedYAML = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: meter-model, namespace: plant}
spec:
  protocol: virtual
  properties:
  - {name: temp, type: INT, accessMode: ReadWrite}
  - {name: rate, type: INT, accessMode: ReadWrite}
  - {name: label, type: STRING, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: meter, namespace: plant}
spec:
  deviceModelRef: {name: meter-model}
  protocol: {protocolName: virtual}
  properties:
  - name: temp
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 21}}
    pushMethod:
      dbMethod:
        influxdb2:
          influxdb2ClientConfig: {url: "http://127.0.0.1:1", org: o, bucket: b}
          influxdb2DataConfig: {measurement: m, fieldKey: f}
  - name: rate
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 5}}
    pushMethod:
      otel: {endpointURL: "http://127.0.0.1:1/v1/metrics"}
      dbMethod:
        redis: {redisClientConfig: {addr: "127.0.0.1:1"}}
        mysql: {mysqlClientConfig: {addr: "127.0.0.1:1", database: d}}
      anomalyDetection: {model: threshold}
  - name: label
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: x}}
    pushMethod:
      mqtt: {address: "tcp://127.0.0.1:1", topic: t}
`

// syncBuffer is a log sink read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnsupportedLoggedOnce: a running device whose properties have a
// anomalyDetection gets one warning per property, however many readings
// carry the pushMethod, and none for a property with only supported push
// methods (dbMethod and otel included).
func TestUnsupportedLoggedOnce(t *testing.T) {
	virtual := testenv.Plugin(t, "virtual")
	var warnings syncBuffer
	log := slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	mgr := newManager(t, log, virtual)
	u := push.NewUnsupported(mgr, slog.New(slog.NewTextHandler(&warnings, nil)))
	u.Subscribe()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stop()
			<-done
		}
	})
	// Count the readings that carry each pushMethod; once the warner has
	// had three of each (it got every event this subscription got, by the
	// time Run returns), stop it.
	events, cancel := mgr.SubscribeFunc("test", 1024, func(ev *devices.Event) bool { return ev.Type == devices.EventReading })
	defer cancel()
	hosttest.Apply(t, mgr, unsupportedYAML)
	pushed := map[string]int{}
	for pushed["temp"] < 3 || pushed["rate"] < 3 || pushed["label"] < 3 {
		ev := receive(t, "reading", events)
		for _, tw := range ev.Twins {
			if tw.Push != nil {
				pushed[tw.Property]++
			}
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stopped = true

	got := strings.Split(strings.TrimSpace(warnings.String()), "\n")
	want := []string{
		`level=WARN msg="pushMethod.anomalyDetection is not supported yet; ignored" device=plant/meter property=rate`,
	}
	if len(got) != len(want) {
		t.Fatalf("after %v readings with a pushMethod, warnings:\n%s\nwant one for rate", pushed, strings.Join(got, "\n"))
	}
	for _, w := range want {
		n := 0
		for _, g := range got {
			if strings.Contains(g, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d warnings %q in:\n%s", n, w, strings.Join(got, "\n"))
		}
	}
}
