package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// testDevice makes a device from the JSON of its protocol configData and
// of its properties ({"name", "type", "accessMode", "visitor"}), as the
// host describes it.
func testDevice(t *testing.T, protocol string, props ...string) *wapper.Device {
	t.Helper()
	d := &wapper.Device{}
	desc := `{"id": 1, "namespace": "default", "name": "sensor", "protocol": "mqtt", "protocolConfig": ` + protocol +
		`, "properties": [` + strings.Join(props, ",") + `]}`
	if err := json.Unmarshal([]byte(desc), &d.Device); err != nil {
		t.Fatalf("%s: %v", desc, err)
	}
	for i := range d.Device.Properties {
		d.Device.Properties[i].Handle = uint32(i)
	}
	return d
}

const (
	tempRO   = `{"name": "temperature", "type": "DOUBLE", "accessMode": "ReadOnly"}`
	setRW    = `{"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"}`
	fanRWVis = `{"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite", "visitor": {"jsonPath": "status.fan", "qos": 0, "retain": "true"}}`
)

func TestParseDevice(t *testing.T) {
	d := testDevice(t, `{"brokerURL": "tls://broker.local", "clientId": "dev-1", "topic": "room1/deviceinfo/json",
		"username": "edge", "passwordSecret": "mqtt-login/password", "keepAlive": "30", "cleanSession": "false",
		"connectionTTL": "1500ms", "qos": 0, "message": "ignored, as KubeEdge's initial message"}`, tempRO, setRW, fanRWVis)
	c, props, err := parseDevice(d)
	if err != nil {
		t.Fatal(err)
	}
	want := protocolConfig{network: "tls", addr: "broker.local:8883", url: "tls://broker.local:8883", clientID: "dev-1",
		username: "edge", passwordSecret: "mqtt-login/password", keepAlive: 30 * time.Second, cleanSession: false,
		connectTimeout: 1500 * time.Millisecond, qos: 0, topic: "room1/deviceinfo/json"}
	if *c != want {
		t.Errorf("protocol\n got %+v\nwant %+v", *c, want)
	}
	if p := props[0]; p.filter != "room1/deviceinfo/json" || p.path.text != "temperature" || p.command != "" || !p.defaultPath || p.own {
		t.Errorf("temperature %+v", p)
	}
	if p := props[1]; p.command != "room1/setsinglevalue/json" || p.qos != 0 || p.retain {
		t.Errorf("setpoint %+v", p)
	}
	if p := props[2]; p.command != "room1/setsinglevalue/json" || p.path.text != "status.fan" || !p.retain || p.defaultPath {
		t.Errorf("fan %+v", p)
	}

	// KubeEdge's example Device: ip and port, and the connection settings
	// in the visitor.
	d = testDevice(t, `{"ip": "10.0.0.5", "port": 1883}`,
		`{"name": "temperature", "type": "INT", "accessMode": "ReadWrite", "visitor": {"topic": "sensor/data", "qos": 1, "retain": false,
		  "clientId": "temperture_client", "username": "user", "cleanSession": true, "keepAlive": 60}}`)
	c, props, err = parseDevice(d)
	if err != nil {
		t.Fatal(err)
	}
	if c.url != "tcp://10.0.0.5:1883" || c.clientID != "temperture_client" || c.username != "user" || c.keepAlive != time.Minute || !c.cleanSession {
		t.Errorf("KubeEdge example: %+v", *c)
	}
	if p := props[0]; p.filter != "sensor/data" || !p.own || p.command != "sensor/data/set" || p.qos != 1 {
		t.Errorf("KubeEdge example property: %+v", p)
	}

	// Defaults.
	c, props, err = parseDevice(testDevice(t, `{"brokerURL": "127.0.0.1", "topic": "t/+/state", "commandTopic": "t/cmd"}`, tempRO, setRW))
	if err != nil {
		t.Fatal(err)
	}
	if c.url != "tcp://127.0.0.1:1883" || c.clientID != "" || c.keepAlive != defaultKeepAlive || !c.cleanSession || c.connectTimeout != defaultConnectTimeout || c.qos != 1 {
		t.Errorf("defaults: %+v", *c)
	}
	if props[1].command != "t/cmd" {
		t.Errorf("commandTopic: %+v", props[1])
	}
	// A model's protocolConfigData under the device's.
	d = testDevice(t, `{"topic": "dev/2"}`, tempRO)
	d.ModelConfig = json.RawMessage(`{"brokerURL": "mqtts://[::1]:9883", "topic": "model/topic"}`)
	if c, _, err = parseDevice(d); err != nil || c.addr != "[::1]:9883" || c.network != "tls" || c.topic != "dev/2" {
		t.Errorf("model config: %+v %v", c, err)
	}
	// connectionTTL as KubeEdge's time.Duration: nanoseconds.
	if c, _, err = parseDevice(testDevice(t, `{"brokerURL": "tcp://h:1", "topic": "x", "connectionTTL": 5000000000}`, tempRO)); err != nil || c.connectTimeout != 5*time.Second {
		t.Errorf("connectionTTL in ns: %+v %v", c, err)
	}
}

func TestDefaultCommandTopic(t *testing.T) {
	for topic, want := range map[string]string{
		"room1/deviceinfo/json":   "room1/setsinglevalue/json",
		"a/b/deviceinfo/yaml":     "a/b/setsinglevalue/yaml",
		"sensors/t1":              "sensors/t1/set",
		"deviceinfo/json":         "deviceinfo/json/set",
		"room1/+/deviceinfo/json": "",
		"a/#":                     "",
	} {
		if got := defaultCommandTopic(topic); got != want {
			t.Errorf("defaultCommandTopic(%q) = %q, want %q", topic, got, want)
		}
	}
}

// Bad configData is refused with code "invalid argument" and a message
// that says what to do.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		protocol string
		props    []string
		want     string
	}{
		{`{"topic": "t"}`, []string{tempRO}, "set brokerURL"},
		{`{"brokerURL": "tcp://h", "ip": "h", "topic": "t"}`, []string{tempRO}, "not both"},
		{`{"brokerURL": "ws://h", "topic": "t"}`, []string{tempRO}, "websockets"},
		{`{"brokerURL": "http://h", "topic": "t"}`, []string{tempRO}, `scheme "http"`},
		{`{"brokerURL": "tcp://u:p@h", "topic": "t"}`, []string{tempRO}, "carries credentials"},
		{`{"brokerURL": "tcp://h:0", "topic": "t"}`, []string{tempRO}, "outside 1-65535"},
		{`{"brokerURL": "tcp://h/path", "topic": "t"}`, []string{tempRO}, "no path"},
		{`{"ip": "h", "port": 70000, "topic": "t"}`, []string{tempRO}, "port 70000"},
		{`{"brokerURL": "tcp://h", "topic": "t", "password": "secret"}`, []string{tempRO}, `"password" is not accepted`},
		{`{"brokerURL": "tcp://h", "topic": "t"}`, []string{`{"name": "x", "type": "INT", "visitor": {"password": "pass"}}`}, `"password" is not accepted`},
		{`{"brokerURL": "tcp://h", "topic": "t", "passwordSecret": "login"}`, []string{tempRO}, "want NAME/KEY"},
		{`{"brokerURL": "tcp://h", "topic": "t", "passwordSecret": "Login/password"}`, []string{tempRO}, "want NAME/KEY"},
		{`{"brokerURL": "tcp://h", "topic": "t", "passwordSecret": "-login/password"}`, []string{tempRO}, "want NAME/KEY"},
		{`{"brokerURL": "tcp://h", "topic": "t", "passwordSecret": "login/pass/word"}`, []string{tempRO}, "want NAME/KEY"},
		{`{"brokerURL": "tcp://h", "topic": "t", "passwordSecret": "login/password"}`, []string{tempRO}, "needs a username"},
		{`{"brokerURL": "tcp://h", "topic": "t", "cleanSession": false}`, []string{tempRO}, "set clientID too"},
		{`{"brokerURL": "tcp://h", "topic": "t", "cleanSession": "maybe"}`, []string{tempRO}, "not true or false"},
		{`{"brokerURL": "tcp://h", "topic": "t", "qos": 2}`, []string{tempRO}, "qos 2 is not supported"},
		{`{"brokerURL": "tcp://h", "topic": "t", "keepAlive": 70000}`, []string{tempRO}, "keepAlive 70000"},
		{`{"brokerURL": "tcp://h", "topic": "t", "keepAlive": 1.5}`, []string{tempRO}, "not a whole number"},
		{`{"brokerURL": "tcp://h", "topic": "t", "connectionTTL": 30}`, []string{tempRO}, "a number is nanoseconds"},
		{`{"brokerURL": "tcp://h", "topic": "t", "connectionTTL": "soon"}`, []string{tempRO}, "want a duration"},
		{`{"brokerURL": "tcp://h", "topic": "t", "fileType": "xml"}`, []string{tempRO}, `fileType "xml" is not supported`},
		{`{"brokerURL": "tcp://h", "topic": "a/#/b"}`, []string{tempRO}, "# must be the last level"},
		{`{"brokerURL": "tcp://h", "topic": "t", "commandTopic": "c/+"}`, []string{tempRO}, "wildcard"},
		{`{"brokerURL": "tcp://h"}`, []string{tempRO}, `property "temperature" visitor configData: no topic`},
		{`{"brokerURL": "tcp://h", "topic": "t/+"}`, []string{setRW}, "has no command topic"},
		{`{"brokerURL": "tcp://h", "topic": "t"}`, []string{`{"name": "x", "type": "INT", "accessMode": "ReadWrite", "visitor": {"jsonPath": "a[0]"}}`}, "goes through an array"},
		{`{"brokerURL": "tcp://h", "topic": "t"}`, []string{`{"name": "x", "type": "INT", "visitor": {"jsonPath": "a..b"}}`}, "empty member name"},
		{`{"brokerURL": "tcp://h", "topic": "t"}`, []string{`{"name": "x", "type": "INT", "visitor": {"fileType": "yaml"}}`}, "must be JSON"},
		{`{"brokerURL": "tcp://h", "topic": "t"}`, []string{`{"name": "x", "type": "INT", "visitor": {"clientId": "a"}}`, `{"name": "y", "type": "INT", "visitor": {"clientId": "b"}}`}, `property "y"'s visitor sets clientID "b" but property "x"'s visitor sets "a"`},
		{`{"brokerURL": "tcp://h", "topic": "t", "clientID": "p"}`, []string{`{"name": "x", "type": "INT", "visitor": {"clientId": "a"}}`}, "the protocol configData sets"},
		{`{"brokerURL": "tcp://h", "topic": "t", "port": "x"}`, []string{tempRO}, ""}, // port is only read with ip
		{`{"brokerURL": 5, "topic": "t"}`, []string{tempRO}, "protocol configData: json: cannot unmarshal number"},
	} {
		p, err := sdktest.New(newMapper(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var props []sdktest.Property
		for _, s := range c.props {
			var x struct {
				Name, Type, AccessMode string
				Visitor                json.RawMessage
			}
			json.Unmarshal([]byte(s), &x)
			props = append(props, sdktest.Property{Name: x.Name, Type: x.Type, AccessMode: x.AccessMode, Visitor: []byte(x.Visitor)})
			if len(x.Visitor) == 0 {
				props[len(props)-1].Visitor = nil
			}
		}
		_, err = p.Add(sdktest.Description{Name: "sensor", Protocol: "mqtt", ProtocolConfig: c.protocol, Properties: props})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.protocol, err)
		case c.want == "":
		case err == nil:
			t.Errorf("%s %s: accepted", c.protocol, c.props)
		case wapper.CodeOf(err) != wapper.ErrInvalid || !strings.Contains(err.Error(), c.want):
			t.Errorf("%s %s:\n got %v (%s)\nwant %q", c.protocol, c.props, err, wapper.CodeOf(err), c.want)
		}
		p.Close()
	}
}

// A client id may serve one set of settings per broker.
func TestClientIDConflict(t *testing.T) {
	p, err := sdktest.New(newMapper(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	props := []sdktest.Property{{Name: "temperature", Type: "DOUBLE"}}
	if _, err := p.Add(sdktest.Description{Name: "a", ProtocolConfig: `{"brokerURL": "tcp://h", "topic": "a", "clientID": "c", "username": "x"}`, Properties: props}); err != nil {
		t.Fatal(err)
	}
	// The same settings share the connection.
	if _, err := p.Add(sdktest.Description{Name: "b", ProtocolConfig: `{"brokerURL": "tcp://h:1883", "topic": "b", "clientID": "c", "username": "x"}`, Properties: props}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Add(sdktest.Description{Name: "c", ProtocolConfig: `{"brokerURL": "tcp://h", "topic": "c", "clientID": "c", "username": "y"}`, Properties: props})
	if err == nil || !strings.Contains(err.Error(), `clientID "c" on tcp://h:1883 is used by device default/`) {
		t.Fatalf("conflict: %v", err)
	}
	// Without a clientID each set of settings gets its own.
	for _, n := range []string{"d", "e"} {
		if _, err := p.Add(sdktest.Description{Name: n, ProtocolConfig: `{"brokerURL": "tcp://h", "topic": "c", "username": "` + n + `"}`, Properties: props}); err != nil {
			t.Fatal(err)
		}
	}
}
