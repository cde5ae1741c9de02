package push

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/host/devices"
)

func TestUnsupportedMethods(t *testing.T) {
	cases := []struct {
		p    *v1beta1.PushMethod
		want string
	}{
		{nil, ""},
		{&v1beta1.PushMethod{HTTP: &v1beta1.PushMethodHTTP{}, MQTT: &v1beta1.PushMethodMQTT{}}, ""},
		{&v1beta1.PushMethod{DBMethod: &v1beta1.DBMethodConfig{Influxdb2: &v1beta1.DBMethodInfluxdb2{}}, OTEL: &v1beta1.PushMethodOTEL{}}, ""},
		{&v1beta1.PushMethod{OTEL: &v1beta1.PushMethodOTEL{}, MQTT: &v1beta1.PushMethodMQTT{},
			DBMethod:         &v1beta1.DBMethodConfig{Redis: &v1beta1.DBMethodRedis{}},
			AnomalyDetection: &v1beta1.AnomalyDetectionConfig{}},
			"pushMethod.anomalyDetection"},
	}
	for _, c := range cases {
		if got := unsupportedMethods(c.p); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
		if got := hasUnsupported(c.p); got != (c.want != "") {
			t.Errorf("%+v: hasUnsupported %v", c.p, got)
		}
	}
}

// TestUnsupportedWarnsOnce: one warning per device and property, again
// when what is ignored changes or the device comes back after removal, not
// when the Device is rebuilt with the same pushMethod.
func TestUnsupportedWarnsOnce(t *testing.T) {
	var buf bytes.Buffer
	u := NewUnsupported(nil, slog.New(slog.NewTextHandler(&buf, nil)))
	anomaly := &v1beta1.PushMethod{AnomalyDetection: &v1beta1.AnomalyDetectionConfig{}}
	reading := func(dev, prop string, p *v1beta1.PushMethod) {
		u.handle(devices.Event{Type: devices.EventReading, Device: dev, Twins: []devices.TwinStatus{{Property: prop, Push: p}}})
	}
	lines := func() []string {
		s := strings.TrimSpace(buf.String())
		buf.Reset()
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	want := func(what string, n int, text string) {
		t.Helper()
		got := lines()
		if len(got) != n {
			t.Fatalf("%s: %d warnings %q, want %d", what, len(got), got, n)
		}
		for _, l := range got {
			if !strings.Contains(l, text) {
				t.Errorf("%s: %q, want %q", what, l, text)
			}
		}
	}

	for range 3 {
		reading("ns/a", "p", anomaly)
	}
	want("three readings", 1, `level=WARN msg="pushMethod.anomalyDetection is not supported yet; ignored" device=ns/a property=p`)
	reading("ns/a", "q", anomaly)
	reading("ns/b", "p", anomaly)
	want("other property and device", 2, "anomalyDetection")
	same := *anomaly
	reading("ns/a", "p", &same)
	want("same pushMethod, new object", 0, "")
	reading("ns/a", "p", &v1beta1.PushMethod{OTEL: &v1beta1.PushMethodOTEL{}})
	want("dbMethod and otel only", 0, "")
	reading("ns/a", "r", &v1beta1.PushMethod{HTTP: &v1beta1.PushMethodHTTP{}, DBMethod: &v1beta1.DBMethodConfig{}})
	reading("ns/a", "r", nil)
	want("supported or none", 0, "")
	u.handle(devices.Event{Type: devices.EventDeviceRemoved, Device: "ns/a"})
	reading("ns/a", "q", anomaly)
	reading("ns/b", "p", anomaly)
	want("after removal", 1, "device=ns/a property=q")
}
