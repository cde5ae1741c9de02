package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// connect connects a paho client to url and returns it, or the error of
// the connection.
func connect(t *testing.T, url, user, password string, tc *tls.Config) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("t-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(password).SetAutoReconnect(false).SetConnectTimeout(30 * time.Second)
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(60 * time.Second) {
		t.Fatalf("connect to %s: no answer in 60s", url)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// selfSigned returns a certificate for 127.0.0.1 and localhost.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestBrokerPassword(t *testing.T) {
	cert := selfSigned(t)
	b, err := Serve(BrokerOptions{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Username: "edge", Password: "pa ss\tword"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.Addr() == "" || b.TLSAddr() == "" || b.Addr() == b.TLSAddr() {
		t.Fatalf("addresses %q and %q", b.Addr(), b.TLSAddr())
	}

	// The host's inline client still subscribes and publishes.
	got := make(chan string, 10)
	if err := b.Subscribe("$hw/events/device/+/+/twin/update", 1, func(topic string, payload []byte) { got <- string(payload) }); err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	tc := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	for _, l := range []struct {
		url string
		tc  *tls.Config
	}{{"tcp://" + b.Addr(), nil}, {"ssl://" + b.TLSAddr(), tc}} {
		for _, bad := range [][2]string{{"", ""}, {"edge", ""}, {"edge", "wrong"}, {"edge", "pa ss\twor"}, {"other", "pa ss\tword"}} {
			if _, err := connect(t, l.url, bad[0], bad[1], l.tc); err == nil || !strings.Contains(err.Error(), "not Authorized") && !strings.Contains(err.Error(), "bad user name or password") {
				t.Errorf("%s user %q password %q: connect error %v, want a refusal", l.url, bad[0], bad[1], err)
			}
		}
		c, err := connect(t, l.url, "edge", "pa ss\tword", l.tc)
		if err != nil {
			t.Fatalf("%s with the right password: %v", l.url, err)
		}
		msg := "from " + l.url
		if tok := c.Publish("$hw/events/device/default/d/twin/update", 1, false, msg); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish over %s: %v", l.url, tok.Error())
		}
		select {
		case m := <-got:
			if m != msg {
				t.Fatalf("inline subscriber got %q, want %q", m, msg)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("inline subscriber got nothing from %s", l.url)
		}
		// And the client receives what the host publishes.
		recv := make(chan string, 1)
		if tok := c.Subscribe("demo/#", 1, func(_ paho.Client, m paho.Message) { recv <- string(m.Payload()) }); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe over %s: %v", l.url, tok.Error())
		}
		if err := b.Publish("demo/x", 1, false, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-recv:
			if m != "hello" {
				t.Fatalf("client got %q", m)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("client on %s got nothing from the host", l.url)
		}
	}
}

func TestBrokerOpenByDefault(t *testing.T) {
	b, err := Serve(BrokerOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.TLSAddr() != "" {
		t.Errorf("TLSAddr %q without a TLS listener", b.TLSAddr())
	}
	if _, err := connect(t, "tcp://"+b.Addr(), "", "", nil); err != nil {
		t.Fatalf("anonymous connect to a broker without credentials: %v", err)
	}
}

func TestBrokerOptionErrors(t *testing.T) {
	for _, o := range []BrokerOptions{
		{},
		{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0"},
		{Addr: "127.0.0.1:0", TLS: &tls.Config{}},
		{Addr: "127.0.0.1:0", Username: "u"},
		{Addr: "127.0.0.1:0", Password: "p"},
	} {
		if b, err := Serve(o); err == nil {
			b.Close()
			t.Errorf("Serve(%+v) accepted", o)
		}
	}
}

// TestBrokerSubscriptionsSkipOwnMessages: the host's subscriptions to the
// embedded broker get what clients publish, under the filter's rules, and
// not what the host publishes itself.
func TestBrokerSubscriptionsSkipOwnMessages(t *testing.T) {
	b, err := Serve(BrokerOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	got := make(chan string, 10)
	for _, f := range []string{"$hw/events/device/+/+/twin/update", "a/#"} {
		if err := b.Subscribe(f, 1, func(topic string, payload []byte) { got <- topic + " " + string(payload) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a/b+", "a#"} {
		if err := b.Subscribe(bad, 1, func(string, []byte) {}); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
	// The host's own publish is handled before Publish returns: had it
	// been delivered, it would be first in got.
	if err := b.Publish("$hw/events/device/ns/d/twin/update", 1, false, []byte("own")); err != nil {
		t.Fatal(err)
	}
	c, err := connect(t, "tcp://"+b.Addr(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"$hw/events/device/ns/d/twin/update/document", "b/c", "a", "$hw/events/device/ns/d/twin/update"} {
		if tok := c.Publish(topic, 1, false, "client"); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	for _, want := range []string{"a client", "$hw/events/device/ns/d/twin/update client"} {
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("subscriber got %q, want %q", m, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("subscriber got nothing, want %q", want)
		}
	}

	// A retained message reaches a later subscription as it subscribes;
	// the host's own does not.
	if tok := c.Publish("late/x", 1, true, "retained"); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish retained: %v", tok.Error())
	}
	// The broker acknowledges before it delivers: once a later message
	// of the same client is delivered, the retained one has been handled
	// (else the subscription below could also get it live).
	if tok := c.Publish("a/sync", 1, false, "client"); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m != "a/sync client" {
			t.Fatalf("subscriber got %q, want a/sync", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("subscriber got nothing, want a/sync")
	}
	if err := b.Publish("late/own", 1, true, []byte("own")); err != nil {
		t.Fatal(err)
	}
	var late []string
	if err := b.Subscribe("late/#", 1, func(topic string, payload []byte) { late = append(late, topic+" "+string(payload)) }); err != nil {
		t.Fatal(err)
	}
	if len(late) != 1 || late[0] != "late/x retained" {
		t.Fatalf("retained messages at subscribe: %q, want the client's only", late)
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$hw/x", false},
		{"+/x", "$hw/x", false},
		{"$hw/+", "$hw/x", true},
		{"+", "", true},
		{"a/b", "a/c", false},
	} {
		if got := matchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}
