package rest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The requests below never reach the device manager (nil here): they are
// refused by the token check, or stop at a handler's own validation.

type authCase struct {
	method, path, body, auth string
	code                     int
}

func checkAuth(t *testing.T, h http.Handler, cases []authCase) {
	t.Helper()
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.code {
			t.Errorf("%s %s (Authorization %q): %d, want %d: %s", c.method, c.path, c.auth, rec.Code, c.code, rec.Body)
			continue
		}
		if c.code != http.StatusUnauthorized {
			continue
		}
		if wa := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") {
			t.Errorf("%s %s: 401 with WWW-Authenticate %q, want Bearer", c.method, c.path, wa)
		}
		var e ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.BaseResponse == nil || e.StatusCode != 401 || e.Error == "" {
			t.Errorf("%s %s: 401 body is not a JSON error: %s", c.method, c.path, rec.Body)
		}
	}
}

func TestTokenGuardsWrites(t *testing.T) {
	s := New(nil, Options{Token: "s3cret", Gatherer: prometheus.NewRegistry()})
	const put = "/api/v1/device/default/thermostat/setpoint"
	checkAuth(t, s.Handler(), []authCase{
		{"PUT", put, `{"value": 1}`, "", 401},
		{"PUT", put, `{"value": 1}`, "Bearer wrong", 401},
		{"PUT", put, `{"value": 1}`, "Bearer s3cre", 401},
		{"PUT", put, `{"value": 1}`, "Bearer s3cret2", 401},
		{"PUT", put, `{"value": 1}`, "Basic czNjcmV0", 401},
		{"PUT", put, `{"value": 1}`, "Bearer", 401},
		{"POST", "/api/v1/devicemethod/default/thermostat/Reset", `{}`, "", 401},
		{"GET", "/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/30", "", "", 401},
		{"HEAD", "/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/30", "", "", 401},
		{"PUT", "/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/30", "", "Bearer nope", 401},
		{"DELETE", put, "", "", 401},
		{"PATCH", put, "", "", 401},
		{"PUT", "/api/v1/nosuch", "", "", 401},
		// Past the check: the handler refuses the body itself.
		{"PUT", put, `not json`, "Bearer s3cret", 400},
		{"PUT", put, `not json`, "bearer  s3cret ", 400},
		{"DELETE", put, "", "Bearer s3cret", 405},
		// Reads stay open.
		{"GET", "/api/v1/ping", "", "", 200},
		{"GET", "/metrics", "", "", 200},
		{"GET", "/api/v1/nosuch", "", "", 404},
	})
}

func TestTokenGuardsReads(t *testing.T) {
	s := New(nil, Options{Token: "s3cret", AuthReads: true, Gatherer: prometheus.NewRegistry(), Pprof: true})
	checkAuth(t, s.Handler(), []authCase{
		{"GET", "/api/v1/ping", "", "", 200},
		{"HEAD", "/api/v1/ping", "", "", 200},
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", "", "Bearer wrong", 401},
		{"GET", "/metrics", "", "Bearer s3cret", 200},
		{"GET", "/api/v1/devices", "", "", 401},
		{"GET", "/api/v1/device/default/thermostat/temperature", "", "", 401},
		{"GET", "/api/v1/manifests/errors", "", "", 401},
		{"GET", "/debug/pprof/cmdline", "", "", 401},
		{"GET", "/api/v1/nosuch", "", "", 401},
		{"GET", "/api/v1/nosuch", "", "Bearer s3cret", 404},
		{"PUT", "/api/v1/device/default/thermostat/setpoint", `{}`, "", 401},
	})
}

func TestNoTokenNoGuard(t *testing.T) {
	// AuthReads without a token does nothing: the host refuses that flag
	// combination before it gets here.
	s := New(nil, Options{AuthReads: true, Gatherer: prometheus.NewRegistry()})
	checkAuth(t, s.Handler(), []authCase{
		{"PUT", "/api/v1/device/default/thermostat/setpoint", `not json`, "", 400},
		{"GET", "/metrics", "", "", 200},
	})
}

// testCert issues a certificate for 127.0.0.1, signed by parent (self-signed
// when parent is nil).
func testCert(t *testing.T, cn string, parent *tls.Certificate, isCA bool, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true, IsCA: isCA,
	}
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestMutualTLS(t *testing.T) {
	ca := testCert(t, "test CA", nil, true, x509.ExtKeyUsageAny)
	server := testCert(t, "server", &ca, false, x509.ExtKeyUsageServerAuth)
	client := testCert(t, "client", &ca, false, x509.ExtKeyUsageClientAuth)
	stranger := testCert(t, "stranger", nil, true, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)

	s := New(nil, Options{TLS: &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}})
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	get := func(certs ...tls.Certificate) (int, error) {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + addr + "/api/v1/ping")
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(client); err != nil || code != 200 {
		t.Fatalf("ping with a client certificate of the CA: %d %v", code, err)
	}
	if code, err := get(); err == nil {
		t.Errorf("ping without a client certificate answered %d", code)
	}
	if code, err := get(stranger); err == nil {
		t.Errorf("ping with a certificate of another CA answered %d", code)
	}
	// Plain HTTP to the TLS port gets nothing useful.
	if resp, err := http.Get("http://" + addr + "/api/v1/ping"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP ping answered 200")
		}
	}
}
