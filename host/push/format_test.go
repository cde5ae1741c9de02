package push

import (
	"strings"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
)

// TestMain runs the tests in a fixed zone east of UTC, so that the
// mapper-framework times below show that the host's local zone is used.
func TestMain(m *testing.M) {
	time.Local = time.FixedZone("UTC+2", 2*3600)
	m.Run()
}

// reading is 2023-11-14 22:13:20.123 UTC.
var reading = Reading{DeviceName: "boiler", PropertyName: "temp", Namespace: "plant",
	Value: "a b&c=d é", Type: "string", TimeStamp: 1700000000123}

// TestPayloads checks each format against the bytes that KubeEdge's
// mapper-framework (_template/mapper/data/publish/http and mqtt) produces
// for the same common.DataModel: no escaping, the time to the second in the
// local zone, two spaces before the MQTT topic.
func TestPayloads(t *testing.T) {
	const wantJSON = `{"DeviceName":"boiler","PropertyName":"temp","Namespace":"plant","Value":"a b\u0026c=d é","Type":"string","TimeStamp":1700000000123}`
	for _, c := range []struct {
		f               Format
		httpBody, ctype string
		mqtt            string
	}{
		{MapperFramework, "temp=a b&c=d é&time=2023-11-15 00:13:20", "application/x-www-form-urlencoded",
			"time is 2023-11-15 00:13:20  plant/boiler/temp: a b&c=d é"},
		{"", "temp=a b&c=d é&time=2023-11-15 00:13:20", "application/x-www-form-urlencoded",
			"time is 2023-11-15 00:13:20  plant/boiler/temp: a b&c=d é"},
		{JSON, wantJSON, "application/json", wantJSON},
	} {
		body, ctype := c.f.HTTPBody(reading)
		if string(body) != c.httpBody || ctype != c.ctype {
			t.Errorf("%q: HTTP body %q (%s), want %q (%s)", c.f, body, ctype, c.httpBody, c.ctype)
		}
		if got := c.f.MQTTPayload("plant/boiler/temp", reading); string(got) != c.mqtt {
			t.Errorf("%q: MQTT payload %q, want %q", c.f, got, c.mqtt)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"mapper-framework", "json"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	for _, s := range []string{"", "JSON", "form", "text"} {
		_, err := ParseFormat(s)
		if err == nil || !strings.Contains(err.Error(), `unknown push format "`+s+`"`) || !strings.Contains(err.Error(), "want mapper-framework") {
			t.Errorf("ParseFormat(%q): error %v, want one naming the value and the choices", s, err)
		}
	}
	var f Format
	if f.String() != "mapper-framework" {
		t.Errorf("zero Format prints %q", f.String())
	}
	if err := f.Set("xml"); err == nil || f != "" {
		t.Errorf("Set(xml) = %v, format now %q", err, f)
	}
	if err := f.Set("json"); err != nil || f != JSON {
		t.Errorf("Set(json) = %v, format now %q", err, f)
	}
}

func TestURL(t *testing.T) {
	for _, c := range []struct {
		host string
		port int64
		path string
		want string
	}{
		// As mapper-framework builds it: hostName + ":" + port + requestPath.
		{"http://127.0.0.1", 8080, "/ingest", "http://127.0.0.1:8080/ingest"},
		{"https://collector.example", 443, "/v1/data", "https://collector.example:443/v1/data"},
		// Beyond it: a bare host, no port, a path without "/".
		{"127.0.0.1", 8080, "ingest", "http://127.0.0.1:8080/ingest"},
		{"http://collector/", 0, "", "http://collector"},
	} {
		if got := URL(&v1beta1.PushMethodHTTP{HostName: c.host, Port: c.port, RequestPath: c.path}); got != c.want {
			t.Errorf("URL(%s, %d, %s) = %s, want %s", c.host, c.port, c.path, got, c.want)
		}
	}
}
