package push

import (
	"encoding/json"
	"fmt"
	"time"
)

// Format is the shape of what pushMethod.http and pushMethod.mqtt send. It
// is host-wide (wapper-host --push-format): KubeEdge's Device CRD prunes
// unknown keys under pushMethod.http and pushMethod.mqtt, and DMI carries
// only their fixed fields, so a per-property setting could not reach the
// host. The zero value is [MapperFramework].
type Format string

const (
	// MapperFramework sends what the mappers generated from KubeEdge's
	// mapper-framework send (its _template/mapper/data/publish/http and
	// mqtt), byte for byte:
	//
	//   - HTTP: a POST with Content-Type application/x-www-form-urlencoded
	//     and the body PROPERTY=VALUE&time=2006-01-02 15:04:05;
	//   - MQTT: the text "time is 2006-01-02 15:04:05  TOPIC: VALUE" (two
	//     spaces before the topic).
	//
	// Nothing is escaped, and the time is the reading's, to the second, in
	// the host's local time zone. The device, namespace and type are not
	// sent.
	MapperFramework Format = "mapper-framework"
	// JSON sends the whole reading as [Reading] (mapper-framework's
	// common.DataModel as JSON), over HTTP with Content-Type
	// application/json.
	JSON Format = "json"
)

// timeLayout is mapper-framework's time format in push payloads.
const timeLayout = "2006-01-02 15:04:05"

// ParseFormat returns the format named s, or an error naming the choices.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case MapperFramework, JSON:
		return f, nil
	}
	return "", fmt.Errorf("unknown push format %q: want %s (KubeEdge mapper-framework's form and text payloads) or %s", s, MapperFramework, JSON)
}

// Set implements pflag.Value, so that a bad flag value stops wapper-host
// at start.
func (f *Format) Set(s string) error {
	v, err := ParseFormat(s)
	if err == nil {
		*f = v
	}
	return err
}

// String implements pflag.Value.
func (f Format) String() string {
	if f == "" {
		return string(MapperFramework)
	}
	return string(f)
}

// Type implements pflag.Value.
func (Format) Type() string { return "format" }

// mfTime is the reading's time as mapper-framework prints it.
func mfTime(r Reading) string {
	return time.Unix(r.TimeStamp/1e3, 0).Format(timeLayout)
}

// HTTPBody returns the body of the POST for r and its Content-Type.
func (f Format) HTTPBody(r Reading) (body []byte, contentType string) {
	if f == JSON {
		body, _ = json.Marshal(r)
		return body, "application/json"
	}
	return []byte(r.PropertyName + "=" + r.Value + "&time=" + mfTime(r)), "application/x-www-form-urlencoded"
}

// MQTTPayload returns the message published on topic for r.
func (f Format) MQTTPayload(topic string, r Reading) []byte {
	if f == JSON {
		b, _ := json.Marshal(r)
		return b
	}
	return []byte("time is " + mfTime(r) + "  " + topic + ": " + r.Value)
}
