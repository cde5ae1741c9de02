package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// broker is an in-process mochi-mqtt broker that lets in user "edge"
// with password "s3cret", and records what is published on filters.
type broker struct {
	srv  *mochi.Server
	addr string
	mu   sync.Mutex
	got  map[string][]string
}

func startBroker(t *testing.T) *broker {
	t.Helper()
	b := &broker{srv: mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), got: map[string][]string{}}
	err := b.srv.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{Users: auth.Users{
		"edge": {Username: "edge", Password: "s3cret"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := b.srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.srv.Close() })
	b.addr = tcp.Address()
	return b
}

// record keeps the payloads published on filter.
func (b *broker) record(t *testing.T, filter string) {
	t.Helper()
	err := b.srv.Subscribe(filter, 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		b.mu.Lock()
		b.got[pk.TopicName] = append(b.got[pk.TopicName], string(pk.Payload))
		b.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (b *broker) published(topic string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got[topic]...)
}

// secrets writes the secrets folder the native SDK reads.
func secrets(t *testing.T, files map[string]string) {
	dir := t.TempDir()
	for ref, v := range files {
		p := filepath.Join(dir, ref)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("WAPPER_SECRETS_DIR", dir)
}

// pollUntil polls d until cond holds.
func pollUntil(t *testing.T, d *sdktest.Device, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if _, err := d.Poll(300 * time.Millisecond); err != nil {
			t.Logf("poll: %v", err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func readText(d *sdktest.Device, prop string) string {
	v, err := d.Read(prop)
	if err != nil {
		return "error: " + err.Error()
	}
	return v.Text()
}

// The plugin against a real broker, natively: connect with a password
// from a secret, subscribe, readings reported and read, a command
// published, the connection taken over by the broker and reopened.
func TestAgainstBroker(t *testing.T) {
	b := startBroker(t)
	b.record(t, "room1/#")
	secrets(t, map[string]string{"mqtt-login/password": "s3cret\n", "wrong/password": "nope"})
	m := newMapper()
	p, err := sdktest.New(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d, err := p.Add(sdktest.Description{Name: "room1", Protocol: "mqtt",
		ProtocolConfig: map[string]any{"brokerURL": "tcp://" + b.addr, "topic": "room1/deviceinfo/json", "clientID": "room1-test",
			"username": "edge", "passwordSecret": "mqtt-login/password", "keepAlive": 1},
		Properties: []sdktest.Property{
			{Name: "temperature", Type: "DOUBLE"},
			{Name: "setpoint", Type: "INT", AccessMode: "ReadWrite"},
			{Name: "fan", Type: "BOOLEAN", AccessMode: "ReadWrite", Visitor: map[string]any{"jsonPath": "status.fan", "qos": 0}},
			{Name: "humidity", Type: "DOUBLE", Visitor: map[string]any{"topic": "room1/humidity"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := d.State(); st != wapper.StateUnknown {
		t.Errorf("state before the first poll: %s", st)
	}
	if _, err := d.Read("temperature"); wapper.CodeOf(err) != wapper.ErrUnavailable || !strings.Contains(err.Error(), "not connected to the broker yet") {
		t.Errorf("read before any message: %v", err)
	}
	if _, err := d.Poll(time.Second); err != nil {
		t.Fatalf("first poll: %v", err)
	}
	if st, reason, _ := d.State(); st != wapper.StateOK {
		t.Fatalf("state after connecting: %s %s", st, reason)
	}
	if _, err := d.Read("temperature"); wapper.CodeOf(err) != wapper.ErrUnavailable || !strings.Contains(err.Error(), `no message with temperature on topic "room1/deviceinfo/json" yet (connected`) {
		t.Errorf("read before any message: %v", err)
	}

	b.srv.Publish("room1/deviceinfo/json", []byte(`{"temperature": 21.5, "setpoint": 20, "status": {"fan": "on"}}`), false, 1)
	b.srv.Publish("room1/humidity", []byte(`40.5`), false, 0)
	var reports []sdktest.Reading
	pollUntil(t, d, "four readings", func() bool {
		reports = append(reports, d.Reports()...)
		return len(reports) >= 4
	})
	got := map[string]string{}
	for _, r := range reports {
		got[r.Property] = r.Value.Text()
	}
	want := map[string]string{"temperature": "21.5", "setpoint": "20", "fan": "true", "humidity": "40.5"}
	for k, v := range want {
		if got[k] != v || readText(d, k) != v {
			t.Errorf("%s: reported %q, read %q, want %q", k, got[k], readText(d, k), v)
		}
	}

	// A message with some keys updates those only; one with a value of
	// the wrong type makes that property's read fail.
	b.srv.Publish("room1/deviceinfo/json", []byte(`{"setpoint": "x"}`), false, 1)
	b.srv.Publish("room1/deviceinfo/json", []byte(`{"temperature": 22}`), false, 1)
	pollUntil(t, d, "temperature 22", func() bool { return readText(d, "temperature") == "22" })
	if _, err := d.Read("setpoint"); wapper.CodeOf(err) != wapper.ErrDeviceFailed || !strings.Contains(err.Error(), `"x" is not a INT`) {
		t.Errorf("setpoint after a bad value: %v", err)
	}

	// Writes publish {"key": value} on the command topic.
	if err := d.Write("setpoint", wapper.Int(30)); err != nil {
		t.Fatal(err)
	}
	if err := d.Write("fan", wapper.Bool(false)); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, d, "the commands", func() bool { return len(b.published("room1/setsinglevalue/json")) >= 2 })
	if cmds := b.published("room1/setsinglevalue/json"); cmds[0] != `{"setpoint":30}` || cmds[1] != `{"status":{"fan":false}}` {
		t.Errorf("commands %q", cmds)
	}

	// Keepalive: a PINGREQ goes out after half the keepAlive, and its
	// PINGRESP comes back.
	s := m.sessions[state(deviceOf(t, m, "room1")).cfg.sessionKey()]
	time.Sleep(600 * time.Millisecond)
	d.Poll(100 * time.Millisecond)
	if s.pingSent.IsZero() {
		t.Errorf("no PINGREQ after half the keepAlive")
	}
	pollUntil(t, d, "PINGRESP", func() bool { return s.pingSent.IsZero() })

	// The broker drops the client: the next poll connects again.
	cl, ok := b.srv.Clients.Get("room1-test")
	if !ok {
		t.Fatal("the broker does not know client room1-test")
	}
	cl.Stop(errors.New("test kicks the client"))
	pollUntil(t, d, "a new connection", func() bool {
		c2, ok := b.srv.Clients.Get("room1-test")
		return ok && c2 != cl && s.live()
	})
	b.srv.Publish("room1/deviceinfo/json", []byte(`{"temperature": 23.5}`), false, 1)
	pollUntil(t, d, "temperature 23.5 after reconnecting", func() bool { return readText(d, "temperature") == "23.5" })

	// A wrong password: the state says so.
	d2, err := p.Add(sdktest.Description{Name: "room2", Protocol: "mqtt",
		ProtocolConfig: map[string]any{"brokerURL": "tcp://" + b.addr, "topic": "room2/state", "username": "edge", "passwordSecret": "wrong/password"},
		Properties:     []sdktest.Property{{Name: "temperature", Type: "DOUBLE"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Poll(time.Second); wapper.CodeOf(err) != wapper.ErrDeviceFailed {
		t.Errorf("poll with a wrong password: %v", err)
	}
	if st, reason, _ := d2.State(); st != wapper.StateUnhealthy || !strings.Contains(reason, "refused the connection: not authorized (check username and the passwordSecret)") {
		t.Errorf("state with a wrong password: %s %q", st, reason)
	}
	if _, err := d2.Read("temperature"); !strings.Contains(err.Error(), "the broker connection failed") {
		t.Errorf("read with a wrong password: %v", err)
	}

	// A password Secret that does not exist: the state says where it is
	// looked for.
	d3, err := p.Add(sdktest.Description{Name: "room3", Protocol: "mqtt",
		ProtocolConfig: map[string]any{"brokerURL": "tcp://" + b.addr, "topic": "room3/state", "username": "edge", "passwordSecret": "missing/password"},
		Properties:     []sdktest.Property{{Name: "temperature", Type: "DOUBLE"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d3.Poll(time.Second); wapper.CodeOf(err) != wapper.ErrNotFound || !strings.Contains(err.Error(), "--secrets-dir") {
		t.Errorf("poll with a missing secret: %v", err)
	}

	// Removing the last device of a session ends its connection.
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if len(m.sessions) != 2 || s.conn != nil {
		t.Errorf("sessions after removing room1: %d, conn %v", len(m.sessions), s.conn)
	}
}

// deviceOf finds a device of the mapper by name.
func deviceOf(t *testing.T, m *mapper, name string) *wapper.Device {
	for _, s := range m.sessions {
		for _, x := range s.devs {
			if x.d.Name == name {
				return x.d
			}
		}
	}
	t.Fatalf("no device %s", name)
	return nil
}

// Two devices on one broker share one connection, and a message reaches
// both through either's poll.
func TestSharedSession(t *testing.T) {
	b := startBroker(t)
	secrets(t, map[string]string{"mqtt-login/password": "s3cret"})
	m := newMapper()
	p, err := sdktest.New(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var devs []*sdktest.Device
	for _, n := range []string{"a", "b"} {
		d, err := p.Add(sdktest.Description{Name: n, Protocol: "mqtt",
			ProtocolConfig: map[string]any{"brokerURL": b.addr, "topic": "site/" + n, "username": "edge", "passwordSecret": "mqtt-login/password"},
			Properties:     []sdktest.Property{{Name: "level", Type: "INT"}}})
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	if len(m.sessions) != 1 {
		t.Fatalf("%d sessions for one broker", len(m.sessions))
	}
	if _, err := devs[0].Poll(time.Second); err != nil {
		t.Fatal(err)
	}
	b.srv.Publish("site/b", []byte(`{"level": 7}`), true, 0)
	pollUntil(t, devs[0], "b's level through a's poll", func() bool { return readText(devs[1], "level") == "7" })
	if r := devs[1].Reports(); len(r) != 1 || r[0].Value.Text() != "7" {
		t.Errorf("b's reports %+v", r)
	}
	// An update to another topic resubscribes on the same connection.
	if err := devs[1].Update(sdktest.Description{Name: "b", Protocol: "mqtt",
		ProtocolConfig: map[string]any{"brokerURL": b.addr, "topic": "site/b2", "username": "edge", "passwordSecret": "mqtt-login/password"},
		Properties:     []sdktest.Property{{Name: "level", Type: "INT"}}}); err != nil {
		t.Fatal(err)
	}
	b.srv.Publish("site/b2", []byte(`{"level": 8}`), true, 0)
	pollUntil(t, devs[1], "level 8 on the new topic", func() bool { return readText(devs[1], "level") == "8" })
	s := m.sessions[state(deviceOf(t, m, "a")).cfg.sessionKey()]
	if _, ok := s.subs["site/b"]; ok || len(m.sessions) != 1 {
		t.Errorf("site/b still subscribed (%v) or sessions %d", s.subs, len(m.sessions))
	}
}
