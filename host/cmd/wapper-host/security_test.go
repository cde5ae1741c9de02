package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.3.4.5:1": true, "[::1]:7777": true, "localhost:80": true,
		"0.0.0.0:1883": false, "[::]:1883": false, ":1883": false, "192.168.1.10:1883": false,
		"example.org:80": false, "[fe80::1%eth0]:80": false, "garbage": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestLoadSecurity(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	base := options{mqttListen: "127.0.0.1:1883", httpListen: "127.0.0.1:7777"}
	with := func(f func(o *options)) options { o := base; f(&o); return o }

	for name, o := range map[string]options{
		"user without password":   with(func(o *options) { o.sec.mqttUser = "u" }),
		"password without user":   with(func(o *options) { o.sec.mqttPasswordFile = secret }),
		"empty password":          with(func(o *options) { o.sec.mqttUser, o.sec.mqttPasswordFile = "u", empty }),
		"missing password file":   with(func(o *options) { o.sec.mqttUser, o.sec.mqttPasswordFile = "u", filepath.Join(dir, "nope") }),
		"user with --mqtt-broker": with(func(o *options) { o.mqttBroker, o.sec.mqttUser, o.sec.mqttPasswordFile = "tcp://b:1883", "u", secret }),
		"user without a broker":   with(func(o *options) { o.mqttListen, o.sec.mqttUser, o.sec.mqttPasswordFile = "", "u", secret }),
		"tls listen without cert": with(func(o *options) { o.sec.mqttTLSListen = "127.0.0.1:8883" }),
		"tls cert without listen": with(func(o *options) { o.sec.mqttTLSCert, o.sec.mqttTLSKey = cert, key }),
		"tls key is the cert": with(func(o *options) {
			o.sec.mqttTLSListen, o.sec.mqttTLSCert, o.sec.mqttTLSKey = "127.0.0.1:8883", cert, cert
		}),
		"empty token":              with(func(o *options) { o.sec.httpTokenFile = empty }),
		"auth reads without token": with(func(o *options) { o.sec.httpAuthReads = true }),
		"token without REST":       with(func(o *options) { o.httpListen, o.sec.httpTokenFile = "", secret }),
		"http cert without key":    with(func(o *options) { o.sec.httpTLSCert = cert }),
		"client CA without TLS":    with(func(o *options) { o.sec.httpClientCA = cert }),
		"client CA is not PEM": with(func(o *options) {
			o.sec.httpTLSCert, o.sec.httpTLSKey, o.sec.httpClientCA = cert, key, secret
		}),
	} {
		if _, err := loadSecurity(o); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "--") {
			t.Errorf("%s: error %q names no flag", name, err)
		}
	}

	sec, err := loadSecurity(with(func(o *options) {
		o.mqttListen = ""
		o.sec = securityOptions{mqttUser: "u", mqttPasswordFile: secret, mqttTLSListen: "127.0.0.1:0", mqttTLSCert: cert, mqttTLSKey: key,
			httpTokenFile: secret, httpAuthReads: true, httpTLSCert: cert, httpTLSKey: key, httpClientCA: cert}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if sec.mqttUser != "u" || sec.mqttPassword != "s3cret" || sec.mqttTLS == nil || sec.httpToken != "s3cret" || !sec.httpAuthReads ||
		sec.httpTLS == nil || sec.httpTLS.ClientCAs == nil || !sec.httpClientCerts {
		t.Fatalf("%+v", sec)
	}
	if sec, err := loadSecurity(base); err != nil || *sec != (security{}) {
		t.Fatalf("no security flags: %+v %v", sec, err)
	}
}

func TestWarnings(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	warned := func(f func()) string { buf.Reset(); f(); return buf.String() }

	for _, c := range []struct {
		name  string
		f     func()
		wants []string // substrings; none for no warning
	}{
		{"open broker on loopback", func() { (&security{}).warnBroker(log, "127.0.0.1:1883", "[::1]:8883") }, nil},
		{"open broker beyond loopback", func() { (&security{}).warnBroker(log, "0.0.0.0:1883", "") }, []string{"level=WARN", "--mqtt-listen-username", "addr=0.0.0.0:1883"}},
		{"open TLS listener beyond loopback", func() { (&security{}).warnBroker(log, "127.0.0.1:1883", "[::]:8883") }, []string{"--mqtt-listen-username", "--mqtt-tls-listen to 127.0.0.1"}},
		{"password in clear", func() { (&security{mqttUser: "u"}).warnBroker(log, "0.0.0.0:1883", "") }, []string{"clear text", "--mqtt-tls-listen"}},
		{"password over TLS", func() { (&security{mqttUser: "u"}).warnBroker(log, "127.0.0.1:1883", "0.0.0.0:8883") }, nil},
		{"open REST on loopback", func() { (&security{}).warnREST(log, "127.0.0.1:7777") }, nil},
		{"open REST beyond loopback", func() { (&security{}).warnREST(log, "[::]:7777") }, []string{"level=WARN", "--http-token-file"}},
		{"token in clear", func() { (&security{httpToken: "t"}).warnREST(log, "0.0.0.0:7777") }, []string{"clear text", "--http-tls-cert"}},
		{"token over HTTPS", func() { (&security{httpToken: "t", httpTLS: &tls.Config{}}).warnREST(log, "0.0.0.0:7777") }, nil},
		{"client certificates", func() { (&security{httpTLS: &tls.Config{}, httpClientCerts: true}).warnREST(log, "0.0.0.0:7777") }, nil},
		{"HTTPS without a token", func() { (&security{httpTLS: &tls.Config{}}).warnREST(log, "0.0.0.0:7777") }, []string{"--http-token-file"}},
	} {
		out := warned(c.f)
		if len(c.wants) == 0 && out != "" {
			t.Errorf("%s: unexpected log %s", c.name, out)
		}
		for _, w := range c.wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: log %q lacks %q", c.name, out, w)
			}
		}
	}
}
