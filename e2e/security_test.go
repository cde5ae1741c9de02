package e2e

// Securing actuation (issue 11, item 9): a password and a TLS listener on
// the embedded broker, checked with Debian's mosquitto clients; a bearer
// token on REST writes (and reads with --http-auth-reads); and the warning
// logged when either listens beyond loopback without authentication.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/hostproc"
	"wapper.dev/wapper/internal/testenv"
)

// secFile writes a file of the test and returns its path.
func secFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secCert writes a self-signed certificate for localhost and 127.0.0.1 and
// its key, in PEM.
func secCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return secFile(t, dir, "tls.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		secFile(t, dir, "tls.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
}

// secMosquitto runs a mosquitto client with args (after -h and -p) and
// returns its output and whether it succeeded.
func secMosquitto(t *testing.T, name, addr string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Bin(t, name)
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

// secNoWarning fails if the host warned about an address beyond loopback.
func secNoWarning(t *testing.T, h *saHost) {
	t.Helper()
	if strings.Contains(h.Logs(), "non-loopback") {
		t.Errorf("a host on loopback warned about a non-loopback address:\n%s", h.Logs())
	}
}

func secThermostatRunning(t *testing.T, ready func() (saDevice, error)) {
	t.Helper()
	saEventually(t, "thermostat running", 60*time.Second, func() error {
		d, err := ready()
		if err == nil && d.Phase != "Running" {
			err = fmt.Errorf("phase %s", d.Phase)
		}
		return err
	})
}

func TestSecureBrokerPassword(t *testing.T) {
	dir := t.TempDir()
	pass := secFile(t, dir, "mqtt-password", "edge-pass\n")
	cert, key := secCert(t, dir)
	plain, tlsAddr := saPort(t), saPort(t)
	h := saStart(t, t.TempDir(), "--manifests", saManifests(t, nil),
		"--mqtt-listen", plain, "--mqtt-listen-username", "edge", "--mqtt-listen-password-file", pass,
		"--mqtt-tls-listen", tlsAddr, "--mqtt-tls-cert", cert, "--mqtt-tls-key", key)
	secThermostatRunning(t, func() (saDevice, error) { return h.device("default/thermostat") })
	before, _ := h.device("default/thermostat")

	// Anonymous clients and wrong passwords are refused at CONNECT, on
	// both listeners, and what they tried to set is not set.
	_, tlsPort, _ := strings.Cut(tlsAddr, ":")
	tlsLocal := "localhost:" + tlsPort
	set := func(prop, v string) string {
		return fmt.Sprintf(`{"event_id":"e-%s","timestamp":0,"twin":{"%s":{"expected":{"value":"%s"}}}}`, prop, prop, v)
	}
	for _, c := range []struct {
		name, addr string
		args       []string
	}{
		{"anonymous", plain, nil},
		{"wrong password", plain, []string{"-u", "edge", "-P", "edge-pas"}},
		{"unknown user", plain, []string{"-u", "root", "-P", "edge-pass"}},
		{"anonymous over TLS", tlsLocal, []string{"--cafile", cert}},
		{"wrong password over TLS", tlsLocal, []string{"--cafile", cert, "-u", "edge", "-P", "x"}},
	} {
		out, err := secMosquitto(t, "mosquitto_pub", c.addr, append(c.args, "-q", "1", "-t", thermo+"/twin/update", "-m", set("setpoint", "30.5"))...)
		if err == nil {
			t.Errorf("%s: mosquitto_pub succeeded: %s", c.name, out)
		} else if !strings.Contains(strings.ToLower(out), "refused") {
			t.Errorf("%s: mosquitto_pub failed otherwise than by a refusal: %v: %s", c.name, err, out)
		}
	}

	// The right password sets a desired value; the refused writes never
	// reached the host.
	if out, err := secMosquitto(t, "mosquitto_pub", plain, "-u", "edge", "-P", "edge-pass", "-q", "1", "-t", thermo+"/twin/update", "-m", set("heating", "true")); err != nil {
		t.Fatalf("mosquitto_pub with the password: %v: %s", err, out)
	}
	saEventually(t, "heating applied after the authenticated write", 30*time.Second, func() error {
		d, err := h.device("default/thermostat")
		if err != nil {
			return err
		}
		if tw := d.twin("heating"); tw.Desired != "true" || tw.Reported != "true" || tw.AppliedSeq != tw.DesiredSeq {
			return fmt.Errorf("heating twin %+v", tw)
		}
		return nil
	})
	if d, _ := h.device("default/thermostat"); d.twin("setpoint").Desired == "30.5" || d.twin("setpoint").DesiredSeq != before.twin("setpoint").DesiredSeq {
		t.Errorf("a refused client set the setpoint: before %+v, now %+v", before.twin("setpoint"), d.twin("setpoint"))
	}

	// Over TLS, mosquitto_sub trusts the host's certificate with --cafile
	// and sees twin updates; mosquitto_pub sets a value.
	out, err := secMosquitto(t, "mosquitto_sub", tlsLocal, "--cafile", cert, "-u", "edge", "-P", "edge-pass", "-v", "-t", thermo+"/twin/update", "-C", "1")
	if err != nil || !strings.HasPrefix(out, thermo+"/twin/update {") {
		t.Fatalf("mosquitto_sub over TLS: %v: %s", err, out)
	}
	if out, err := secMosquitto(t, "mosquitto_pub", tlsLocal, "--cafile", cert, "-u", "edge", "-P", "edge-pass", "-q", "1", "-t", thermo+"/twin/update", "-m", set("setpoint", "22.5")); err != nil {
		t.Fatalf("mosquitto_pub over TLS: %v: %s", err, out)
	}
	saEventually(t, "setpoint applied after the write over TLS", 30*time.Second, func() error {
		d, err := h.device("default/thermostat")
		if err != nil {
			return err
		}
		if tw := d.twin("setpoint"); tw.Desired != "22.5" || tw.Reported != "22.5" {
			return fmt.Errorf("setpoint twin %+v", tw)
		}
		return nil
	})
	// A client that trusts another certificate does not connect.
	other, _ := secCert(t, t.TempDir())
	if out, err := secMosquitto(t, "mosquitto_sub", tlsLocal, "--cafile", other, "-u", "edge", "-P", "edge-pass", "-t", "#", "-C", "1", "-W", "20"); err == nil {
		t.Errorf("mosquitto_sub without the CA connected over TLS: %s", out)
	}
	secNoWarning(t, h)
}

// secDo sends a request with an optional bearer token and returns the
// status, the WWW-Authenticate header and the body.
func secDo(t *testing.T, method, url, token, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b
}

func TestSecureRESTToken(t *testing.T) {
	const token = "tok-6f1d2c"
	tokFile := secFile(t, t.TempDir(), "http-token", token+"\n")
	h := saStart(t, t.TempDir(), "--manifests", saManifests(t, nil), "--http-token-file", tokFile, "--http-auth-reads")
	base := "http://" + h.http
	// device reads the thermostat with a token.
	device := func(tok string) (saDevice, int, error) {
		code, _, b := secDo(t, "GET", base+"/api/v1/device/default/thermostat", tok, "")
		if code != 200 {
			return saDevice{}, code, fmt.Errorf("status %d: %s", code, b)
		}
		var resp struct {
			Device saDevice `json:"device"`
		}
		err := json.Unmarshal(b, &resp)
		return resp.Device, code, err
	}
	secThermostatRunning(t, func() (saDevice, error) { d, _, err := device(token); return d, err })
	read := func() saTwin {
		t.Helper()
		d, _, err := device(token)
		if err != nil {
			t.Fatalf("GET device with the token: %v", err)
		}
		return d.twin("setpoint")
	}
	before := read()

	// Writes without the right token: 401, a JSON error, WWW-Authenticate,
	// and nothing set.
	for _, c := range []struct{ method, path, token, body string }{
		{"PUT", "/api/v1/device/default/thermostat/setpoint", "", `{"value": 27.5}`},
		{"PUT", "/api/v1/device/default/thermostat/setpoint?wait=5s", "wrong", `{"value": 27.5}`},
		{"PUT", "/api/v1/device/default/thermostat/setpoint", token[:len(token)-1], `{"value": 27.5}`},
		{"GET", "/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/28.5", "", ""},
		{"PUT", "/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/28.5", "nope", ""},
		{"POST", "/api/v1/devicemethod/default/thermostat/SetTemperature", "", `{}`},
		{"DELETE", "/api/v1/device/default/thermostat/setpoint", "", ""},
		// --http-auth-reads: reads and /metrics too.
		{"GET", "/api/v1/devices", "", ""},
		{"GET", "/api/v1/device/default/thermostat/temperature", "wrong", ""},
		{"GET", "/metrics", "", ""},
	} {
		code, wa, b := secDo(t, c.method, base+c.path, c.token, c.body)
		var e struct {
			StatusCode int    `json:"statusCode"`
			Error      string `json:"error"`
		}
		if code != 401 || !strings.HasPrefix(wa, "Bearer") || json.Unmarshal(b, &e) != nil || e.StatusCode != 401 || e.Error == "" {
			t.Errorf("%s %s with token %q: %d, WWW-Authenticate %q, body %s; want 401 with a JSON error and Bearer", c.method, c.path, c.token, code, wa, b)
		}
	}
	if _, code, _ := device(""); code != 401 {
		t.Errorf("device read without the token: %d, want 401", code)
	}
	if now := read(); now.DesiredSeq != before.DesiredSeq || now.Desired == "27.5" || now.Desired == "28.5" {
		t.Fatalf("a refused write set the setpoint: before %+v, now %+v", before, now)
	}

	// With the token: applied. Ping stays open for health checks.
	code, _, b := secDo(t, "PUT", base+"/api/v1/device/default/thermostat/setpoint?wait=20s", token, `{"value": 24.25}`)
	var tw struct {
		Twin saTwin `json:"twin"`
	}
	if code != 200 || json.Unmarshal(b, &tw) != nil || tw.Twin.Desired != "24.25" || tw.Twin.Reported != "24.25" {
		t.Fatalf("PUT with the token: %d %s", code, b)
	}
	if code, _, b := secDo(t, "GET", base+"/api/v1/devicemethod/default/thermostat/SetTemperature/setpoint/19.5", token, ""); code != 200 {
		t.Fatalf("method write with the token: %d %s", code, b)
	}
	if tw := read(); tw.Reported != "19.5" {
		t.Errorf("after the method write the setpoint is %+v", tw)
	}
	if code, _, b := secDo(t, "GET", base+"/metrics", token, ""); code != 200 || !strings.Contains(string(b), "wapper_desired_writes_total") {
		t.Errorf("/metrics with the token: %d", code)
	}
	if code, _, _ := secDo(t, "GET", base+"/api/v1/ping", "", ""); code != 200 {
		t.Errorf("ping without a token: %d, want 200", code)
	}
	secNoWarning(t, h)
}

// secRun starts bin/wapper-host with exactly args (and JSON logs) and
// waits until it logs that it runs.
func secRun(t *testing.T, args ...string) *saHost {
	t.Helper()
	h := &saHost{t: t, state: t.TempDir()}
	h.Proc = hostproc.Start(t, testenv.Artifact(t, "wapper-host"), append([]string{"--state-dir", h.state, "--log-format", "json"}, args...)...)
	t.Cleanup(h.stop) // before the Proc's cleanup, which then logs the output if the test failed
	saEventually(t, "wapper-host running", 60*time.Second, func() error {
		select {
		case <-h.Done():
			t.Fatalf("wapper-host exited early:\n%s", h.Logs())
		default:
		}
		if len(h.Logged("wapper-host running")) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	return h
}

// secWarnings returns the messages of the WARN records.
func secWarnings(h *saHost) []string {
	var out []string
	for _, line := range strings.Split(h.Logs(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "WARN" {
			out = append(out, fmt.Sprint(rec["msg"]))
		}
	}
	return out
}

func TestSecureWarnsBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	pass := secFile(t, dir, "mqtt-password", "pw\n")
	tok := secFile(t, dir, "http-token", "tok\n")
	has := func(warnings []string, all ...string) bool {
		for _, w := range warnings {
			ok := true
			for _, s := range all {
				ok = ok && strings.Contains(w, s)
			}
			if ok {
				return true
			}
		}
		return false
	}

	// Open on every interface: both warn, naming the flags to set.
	h := secRun(t, "--mqtt-listen", "0.0.0.0:0", "--http-listen", "0.0.0.0:0")
	w := secWarnings(h)
	if !has(w, "MQTT", "non-loopback", "--mqtt-listen-username", "--mqtt-listen-password-file") {
		t.Errorf("no warning about the open broker; warnings: %q", w)
	}
	if !has(w, "REST", "non-loopback", "--http-token-file") {
		t.Errorf("no warning about the open REST API; warnings: %q", w)
	}
	h.stop()

	// With a password and a token but no TLS: no warning about anonymous
	// access, one each about secrets in clear text.
	h = secRun(t, "--mqtt-listen", "0.0.0.0:0", "--mqtt-listen-username", "u", "--mqtt-listen-password-file", pass,
		"--http-listen", "0.0.0.0:0", "--http-token-file", tok)
	w = secWarnings(h)
	if has(w, "anonymous") || has(w, "without authentication") {
		t.Errorf("warned about open access with a password and a token set: %q", w)
	}
	if !has(w, "MQTT", "clear text", "--mqtt-tls-listen") || !has(w, "REST", "clear text", "--http-tls-cert") {
		t.Errorf("no warnings about secrets in clear text: %q", w)
	}
	h.stop()

	// On loopback: no warning.
	h = secRun(t, "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if w := secWarnings(h); has(w, "non-loopback") {
		t.Errorf("warned on loopback: %q", w)
	}
}

func TestSecureFlagErrors(t *testing.T) {
	bin := testenv.Artifact(t, "wapper-host")
	dir := t.TempDir()
	pass := secFile(t, dir, "pw", "pw\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mqtt-listen-username", "u"}, "--mqtt-listen-password-file"},
		{[]string{"--mqtt-listen-username", "u", "--mqtt-listen-password-file", pass, "--mqtt-broker", "tcp://127.0.0.1:1"}, "--mqtt-broker"},
		{[]string{"--mqtt-tls-listen", "127.0.0.1:0"}, "--mqtt-tls-cert"},
		{[]string{"--http-auth-reads"}, "--http-token-file"},
		{[]string{"--http-token-file", filepath.Join(dir, "missing")}, "--http-token-file"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, bin, append([]string{"--state-dir", t.TempDir(), "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"}, c.args...)...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("wapper-host %q: %v, output %s; want a refusal naming %s", c.args, err, out, c.want)
		}
	}
}
