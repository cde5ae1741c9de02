package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"wapper.dev/wapper/internal/testenv"
)

// saPaho connects a paho client to addr and collects messages by topic.
type saPaho struct {
	c    paho.Client
	mu   sync.Mutex
	msgs map[string][][]byte
}

func saConnect(t *testing.T, addr string, filters ...string) *saPaho {
	t.Helper()
	p := &saPaho{msgs: map[string][][]byte{}}
	p.c = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("test-%d", time.Now().UnixNano())))
	if tok := p.c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect to %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(100) })
	for _, f := range filters {
		tok := p.c.Subscribe(f, 1, func(_ paho.Client, m paho.Message) {
			p.mu.Lock()
			p.msgs[m.Topic()] = append(p.msgs[m.Topic()], append([]byte(nil), m.Payload()...))
			p.mu.Unlock()
		})
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("paho subscribe %s: %v", f, tok.Error())
		}
	}
	return p
}

func (p *saPaho) got(topic string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.msgs[topic]...)
}

func (p *saPaho) publish(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := p.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("paho publish: %v", tok.Error())
	}
}

// mosquittoSub runs mosquitto_sub until it has count messages, returning
// "topic payload" lines.
func mosquittoSub(t *testing.T, addr, filter string, count int) []string {
	t.Helper()
	bin := testenv.Bin(t, "mosquitto_sub")
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-v", "-t", filter, "-C", strconv.Itoa(count)).Output()
	if err != nil {
		t.Fatalf("mosquitto_sub %s: %v (%s)", filter, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func mosquittoPub(t *testing.T, addr, topic, payload string) {
	t.Helper()
	bin := testenv.Bin(t, "mosquitto_pub")
	host, port, _ := strings.Cut(addr, ":")
	if out, err := exec.Command(bin, "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", payload).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v (%s)", err, out)
	}
}

const thermo = "$hw/events/device/default/thermostat"

// checkEventBus exercises the KubeEdge topics over a broker at addr.
func checkEventBus(t *testing.T, h *saHost, addr string) {
	// Debian's mosquitto_sub sees KubeEdge twin updates with actual values.
	// A twin/update may carry some twins only (the read-back after a
	// desired write has just that property): take one with temperature.
	lines := mosquittoSub(t, addr, thermo+"/twin/update", 3)
	line := lines[len(lines)-1]
	for _, l := range lines {
		if strings.Contains(l, `"temperature"`) {
			line = l
			break
		}
	}
	topic, payload, _ := strings.Cut(line, " ")
	if topic != thermo+"/twin/update" {
		t.Fatalf("topic %q", topic)
	}
	var upd struct {
		EventID   string `json:"event_id"`
		Timestamp int64  `json:"timestamp"`
		Twin      map[string]struct {
			Actual *struct {
				Value    string `json:"value"`
				Metadata struct {
					Timestamp int64 `json:"timestamp"`
				} `json:"metadata"`
			} `json:"actual"`
			Expected *json.RawMessage `json:"expected"`
			Metadata struct {
				Type string `json:"type"`
			} `json:"metadata"`
		} `json:"twin"`
	}
	if err := json.Unmarshal([]byte(payload), &upd); err != nil {
		t.Fatalf("twin/update is not KubeEdge JSON: %v: %s", err, payload)
	}
	temp := upd.Twin["temperature"]
	if upd.EventID == "" || upd.Timestamp == 0 || temp.Actual == nil || temp.Metadata.Type != "float" || temp.Expected != nil {
		t.Fatalf("twin/update lacks fields: %s", payload)
	}
	if _, err := strconv.ParseFloat(temp.Actual.Value, 64); err != nil {
		t.Fatalf("temperature %q is not a number", temp.Actual.Value)
	}

	// A paho client sees state, documents, deltas, twin/get results and
	// the pushMethod.mqtt topic (retained).
	p := saConnect(t, addr, thermo+"/#", "demo/#")
	saEventually(t, "state/update, twin/update/document and the pushMethod topic", 30*time.Second, func() error {
		for _, tp := range []string{thermo + "/state/update", thermo + "/twin/update/document", "demo/thermostat/temperature"} {
			if len(p.got(tp)) == 0 {
				return fmt.Errorf("nothing on %s yet", tp)
			}
		}
		return nil
	})
	var st struct {
		State string `json:"state"`
	}
	json.Unmarshal(p.got(thermo + "/state/update")[0], &st)
	if st.State != "ok" {
		t.Errorf("state/update state = %q, want ok", st.State)
	}
	// mapper-framework's text by default (host/push).
	if push := string(p.got("demo/thermostat/temperature")[0]); !regexp.MustCompile(`^time is \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  demo/thermostat/temperature: -?[0-9.]+$`).MatchString(push) {
		t.Errorf("pushMethod.mqtt payload %q", push)
	}
	var doc struct {
		Twin map[string]struct {
			Current *struct {
				Actual *struct{ Value string } `json:"actual"`
			} `json:"current"`
		} `json:"twin"`
	}
	json.Unmarshal(p.got(thermo + "/twin/update/document")[0], &doc)
	if doc.Twin["temperature"].Current == nil || doc.Twin["temperature"].Current.Actual == nil {
		t.Errorf("twin/update/document lacks current.actual: %s", p.got(thermo + "/twin/update/document")[0])
	}

	// mosquitto_pub sends an expected value: it becomes desired, a delta
	// is published, and the reported value follows.
	mosquittoPub(t, addr, thermo+"/twin/update", `{"event_id":"e1","timestamp":0,"twin":{"heating":{"expected":{"value":"true"}}}}`)
	saEventually(t, "heating reported true after the MQTT expected value", 30*time.Second, func() error {
		d, err := h.device("default/thermostat")
		if err != nil {
			return err
		}
		if tw := d.twin("heating"); tw.Desired != "true" || tw.Reported != "true" || tw.AppliedSeq != tw.DesiredSeq {
			return fmt.Errorf("heating twin %+v", tw)
		}
		return nil
	})
	saEventually(t, "twin/update/delta for heating", 30*time.Second, func() error {
		for _, m := range p.got(thermo + "/twin/update/delta") {
			var d struct {
				Delta map[string]string `json:"delta"`
			}
			json.Unmarshal(m, &d)
			if d.Delta["heating"] == "true" {
				return nil
			}
		}
		return errors.New("no delta with heating=true")
	})

	// twin/get is answered on twin/get/result with the same event id.
	p.publish(t, thermo+"/twin/get", `{"event_id":"get-42","timestamp":0}`)
	saEventually(t, "twin/get/result", 30*time.Second, func() error {
		for _, m := range p.got(thermo + "/twin/get/result") {
			var r struct {
				EventID string `json:"event_id"`
				Twin    map[string]struct {
					Expected *struct{ Value string } `json:"expected"`
					Actual   *struct{ Value string } `json:"actual"`
				} `json:"twin"`
			}
			json.Unmarshal(m, &r)
			if r.EventID == "get-42" && r.Twin["heating"].Expected != nil && r.Twin["heating"].Expected.Value == "true" && r.Twin["temperature"].Actual != nil {
				return nil
			}
		}
		return errors.New("no matching result")
	})

	// A bad expected value is refused on twin/update/result, and changes nothing.
	p.publish(t, thermo+"/twin/update", `{"event_id":"bad","timestamp":0,"twin":{"ticks":{"expected":{"value":"5"}}}}`)
	saEventually(t, "twin/update/result refusing a read-only property", 30*time.Second, func() error {
		for _, m := range p.got(thermo + "/twin/update/result") {
			var r struct {
				EventID string `json:"event_id"`
				Code    int    `json:"code"`
			}
			json.Unmarshal(m, &r)
			if r.EventID == "bad" && r.Code == 403 {
				return nil
			}
		}
		return errors.New("no refusal")
	})
}

func TestStandaloneEmbeddedBroker(t *testing.T) {
	h := saStart(t, t.TempDir(), "--manifests", saManifests(t, nil))
	saEventually(t, "thermostat running with readings", 60*time.Second, func() error {
		d, err := h.device("default/thermostat")
		if err != nil {
			return err
		}
		if d.Phase != "Running" || d.twin("temperature").Reported == "" {
			return fmt.Errorf("%+v", d)
		}
		return nil
	})
	checkEventBus(t, h, h.mqtt)
}

func TestStandaloneExternalMosquitto(t *testing.T) {
	bin := testenv.Bin(t, "mosquitto")
	addr := saPort(t)
	_, port, _ := strings.Cut(addr, ":")
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\n"), 0o644)
	broker := exec.Command(bin, "-c", conf)
	var blog bytes.Buffer
	broker.Stdout, broker.Stderr = &blog, &blog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	h := saStart(t, t.TempDir(), "--manifests", saManifests(t, nil), "--mqtt-listen", "", "--mqtt-broker", "tcp://"+addr)
	if !strings.Contains(h.Logs(), "connected to MQTT broker") {
		saEventually(t, "host connected to mosquitto", 30*time.Second, func() error {
			if strings.Contains(h.Logs(), "connected to MQTT broker") {
				return nil
			}
			return errors.New("not yet")
		})
	}
	checkEventBus(t, h, addr)
}

func TestStandaloneREST(t *testing.T) {
	h := saStart(t, t.TempDir(), "--manifests", saManifests(t, nil))
	saEventually(t, "thermostat running", 60*time.Second, func() error {
		d, err := h.device("default/thermostat")
		if err == nil && d.Phase != "Running" {
			err = fmt.Errorf("phase %s", d.Phase)
		}
		return err
	})
	var ping struct {
		APIVersion string `json:"apiVersion"`
		StatusCode int    `json:"statusCode"`
		Message    string
	}
	if _, err := h.get("/api/v1/ping", &ping); err != nil || ping.StatusCode != 200 || ping.APIVersion != "v1" || ping.Message == "" {
		t.Fatalf("ping: %+v %v", ping, err)
	}
	// mapper-framework read: a live read through the plugin.
	var rd struct {
		Data struct {
			DeviceName, PropertyName, Value, Type string
			TimeStamp                             int64
		}
	}
	if _, err := h.get("/api/v1/device/default/thermostat/ticks", &rd); err != nil {
		t.Fatal(err)
	}
	if rd.Data.DeviceName != "thermostat" || rd.Data.PropertyName != "ticks" || rd.Data.Type != "INT" || rd.Data.TimeStamp == 0 {
		t.Fatalf("read: %+v", rd)
	}
	n1, _ := strconv.Atoi(rd.Data.Value)
	h.get("/api/v1/device/default/thermostat/ticks", &rd)
	if n2, _ := strconv.Atoi(rd.Data.Value); n2 <= n1 {
		t.Errorf("counter did not advance across live reads: %d then %d", n1, n2)
	}

	// PUT a desired value and wait for it: the reported value follows.
	var tw struct {
		Twin saTwin `json:"twin"`
	}
	code, err := h.do("PUT", "/api/v1/device/default/thermostat/setpoint?wait=20s", `{"value": 24.25}`, &tw)
	if err != nil || code != 200 || tw.Twin.Desired != "24.25" || tw.Twin.Reported != "24.25" || tw.Twin.AppliedSeq != tw.Twin.DesiredSeq {
		t.Fatalf("PUT setpoint: %d %v %+v", code, err, tw.Twin)
	}
	// Without wait: accepted, applied later.
	code, err = h.do("PUT", "/api/v1/device/default/thermostat/heating", `{"value": true}`, &tw)
	if err != nil || code != 202 || tw.Twin.Desired != "true" {
		t.Fatalf("PUT heating: %d %v %+v", code, err, tw.Twin)
	}
	saEventually(t, "heating applied", 30*time.Second, func() error {
		d, _ := h.device("default/thermostat")
		if d.twin("heating").Reported != "true" {
			return fmt.Errorf("%+v", d.twin("heating"))
		}
		return nil
	})

	// Errors are JSON with proper codes.
	for _, c := range []struct {
		method, path, body string
		code               int
	}{
		{"PUT", "/api/v1/device/default/thermostat/ticks", `{"value": 1}`, 403},
		{"PUT", "/api/v1/device/default/thermostat/setpoint", `{"value": "warm"}`, 400},
		{"PUT", "/api/v1/device/default/thermostat/setpoint", `{"valu": 1}`, 400},
		{"PUT", "/api/v1/device/default/thermostat/setpoint", `not json`, 400},
		{"PUT", "/api/v1/device/default/nosuch/setpoint", `{"value": 1}`, 404},
		{"GET", "/api/v1/device/default/thermostat/nosuch", ``, 404},
		{"GET", "/api/v1/device/default/nosuch/temperature", ``, 404},
		{"DELETE", "/api/v1/device/default/thermostat/setpoint", ``, 405},
		{"GET", "/api/v1/nosuch", ``, 404},
		{"GET", "/api/v1/devicemethod/default/thermostat/Nope/setpoint/1", ``, 404},
		{"GET", "/api/v1/devicemethod/default/thermostat/SetTemperature/heating/1", ``, 404},
		{"GET", "/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/hot", ``, 400},
	} {
		code, err := h.do(c.method, c.path, c.body, nil)
		if code != c.code || err == nil || strings.Contains(err.Error(), "not a JSON error") {
			t.Errorf("%s %s %s: got %d %v, want a JSON error %d", c.method, c.path, c.body, code, err, c.code)
		}
	}

	// Device methods, mapper-framework style.
	var ms struct {
		Data struct {
			Methods []struct {
				Name, Path string
				Parameters []struct{ PropertyName, ValueType string }
			}
		}
	}
	if _, err := h.get("/api/v1/devicemethod/default/thermostat", &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms.Data.Methods) != 2 || ms.Data.Methods[0].Name != "SetTemperature" || ms.Data.Methods[0].Parameters[0].ValueType != "DOUBLE" {
		t.Fatalf("methods: %+v", ms)
	}
	var wr struct {
		StatusCode int `json:"statusCode"`
		Message    string
	}
	if _, err := h.get("/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/19.5", &wr); err != nil || wr.StatusCode != 200 {
		t.Fatalf("method write: %v %+v", err, wr)
	}
	if d, _ := h.device("default/thermostat"); d.twin("setpoint").Reported != "19.5" {
		t.Errorf("after method write the reported setpoint is %q", d.twin("setpoint").Reported)
	}
	// mapper-framework's common.DeviceModel, inline.
	var model struct {
		StatusCode int    `json:"statusCode"`
		ID         string `json:"id"`
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
		Properties []struct {
			Name       string `json:"name"`
			DataType   string `json:"dataType"`
			AccessMode string `json:"accessMode"`
		} `json:"properties"`
	}
	if _, err := h.get("/api/v1/meta/model/default/thermostat", &model); err != nil || model.StatusCode != 200 ||
		model.ID != "default/thermostat-model" || model.Name != "thermostat-model" || model.Namespace != "default" || len(model.Properties) == 0 {
		t.Fatalf("model: %v %+v", err, model)
	}
	for _, p := range model.Properties {
		if p.Name == "setpoint" && (p.DataType != "DOUBLE" || p.AccessMode != "ReadWrite") {
			t.Fatalf("model property %+v", p)
		}
	}
	// Metrics.
	resp, err := http.Get("http://" + h.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var mb bytes.Buffer
	mb.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"wapper_readings_total{plugin=\"virtual\"}", "wapper_desired_writes_total", "wapper_mqtt_published_total", "wapper_devices{phase=\"Running\"} 1", "wapper_manifest_problems 0"} {
		if !strings.Contains(mb.String(), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// TestStandaloneHTTPPush checks pushMethod.http against a real HTTP server:
// mapper-framework's form by default, JSON with --push-format json.
func TestStandaloneHTTPPush(t *testing.T) {
	for _, c := range []struct {
		args        []string
		contentType string
		body        *regexp.Regexp
	}{
		{nil, "application/x-www-form-urlencoded", regexp.MustCompile(`^count=\d+&time=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)},
		{[]string{"--push-format", "json"}, "application/json",
			regexp.MustCompile(`^\{"DeviceName":"pushed","PropertyName":"count","Namespace":"default","Value":"\d+","Type":"\w+","TimeStamp":\d+\}$`)},
	} {
		t.Run(c.contentType, func(t *testing.T) {
			got := make(chan string, 100)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var b bytes.Buffer
				b.ReadFrom(r.Body)
				select {
				case got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + b.String():
				default:
				}
			})}
			addr := saPort(t)
			ln, err := netListen(addr)
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			host, port, _ := strings.Cut(addr, ":")
			dev := strings.Replace(saVirtualDevice("pushed", "pushed-model", 200), "      visitors: {protocolName: virtual, configData: {kind: counter}}",
				"      visitors: {protocolName: virtual, configData: {kind: counter}}\n      pushMethod: {http: {hostName: \"http://"+host+"\", port: "+port+", requestPath: /ingest, timeout: 2000}}", 1)
			saStart(t, t.TempDir(), append([]string{"--manifests", saManifests(t, map[string]string{"pushed.yaml": dev})}, c.args...)...)
			select {
			case m := <-got:
				want := "POST /ingest " + c.contentType + " "
				if body, ok := strings.CutPrefix(m, want); !ok || !c.body.MatchString(body) {
					t.Fatalf("push %q, want %q and a body matching %s", m, want, c.body)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("no HTTP push within 60s")
			}
		})
	}
}
