package e2e

// The OPC UA peer: node-opcua's server (hack/opcua/server.js, installed by
// hack/opcua/ensure-node-opcua.sh into ~/.cache/wapper), with RSA
// certificates made here, the secrets the plugin reads, and gopcua's
// native client to check what the plugin wrote.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// opcuaServer is a running node-opcua server and the secrets folder
// (--secrets-dir) of a client that talks to it:
//
//   - opcua-client: tls.crt, tls.key, the client's application certificate
//   - opcua-ca: ca.crt, the CA that issued the server's certificate (also
//     as plant-ca, the name examples/opcua gives it)
//   - opcua-server: tls.crt, the server's certificate (to pin)
//   - opcua-user: tls.crt, tls.key, an X.509 user
//   - opcua-login: password, the password of user "operator"
//   - opcua-wrong: password, a wrong one
type opcuaServer struct {
	url      string
	port     int
	secrets  string
	password string
	proc     *testproc.Proc
}

// opcuaUser is the user the server accepts with opcua-login's password.
const opcuaUser = "operator"

// nodeOPCUA returns the node_modules folder of the cached node-opcua, or
// handles it as missing.
func nodeOPCUA(t testing.TB) string {
	t.Helper()
	script := filepath.Join(testenv.Root(), "hack/opcua/ensure-node-opcua.sh")
	out, err := exec.Command(script, "--no-install").Output()
	if err != nil {
		testenv.Missing(t, "node-opcua (npm)", "run hack/opcua/ensure-node-opcua.sh (make test runs it)")
	}
	return filepath.Join(strings.TrimSpace(string(out)), "node_modules")
}

// rsaCert makes an RSA 2048 certificate from tmpl, signed by parent (nil:
// self-signed).
func rsaCert(t testing.TB, tmpl, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// appCert is the template of an OPC UA application instance certificate.
func appCert(cn, uri string, serial int64) *x509.Certificate {
	u, _ := url.Parse(uri)
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"wapper tests"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		URIs: []*url.URL{u}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
}

func certPEM(c ...*x509.Certificate) []byte {
	var b []byte
	for _, x := range c {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.Raw})...)
	}
	return b
}

func keyPEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// writeSecrets lays secrets out as --secrets-dir wants them: DIR/NAME/KEY.
func writeSecrets(t testing.TB, dir string, secrets map[string]map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, keys := range secrets {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		for k, v := range keys {
			if err := os.WriteFile(filepath.Join(dir, name, k), v, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// startOPCUAServer starts hack/opcua/server.js on a free port with a
// CA-signed certificate and user "operator", and writes the client's
// secrets. The server sends its certificate chain (leaf and CA), or with
// leafOnly its certificate alone (gopcua's client takes no chain).
func startOPCUAServer(t testing.TB, leafOnly bool) *opcuaServer {
	t.Helper()
	node := testenv.Bin(t, "node")
	modules := nodeOPCUA(t)
	dir := t.TempDir()

	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wapper test OPC UA CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	ca, caKey := rsaCert(t, caTmpl, nil, nil)
	server, serverKey := rsaCert(t, appCert("wapper test server", "urn:wapper:test-server", 2), ca, caKey)
	client, clientKey := rsaCert(t, appCert("wapper opcua", "urn:wapper:opcua-client", 3), nil, nil)
	user, userKey := rsaCert(t, appCert("operator", "urn:wapper:user:operator", 4), nil, nil)
	pw := make([]byte, 12)
	rand.Read(pw)
	s := &opcuaServer{port: freePort(t), secrets: filepath.Join(dir, "secrets"), password: hex.EncodeToString(pw)}

	chain := certPEM(server, ca)
	if leafOnly {
		chain = certPEM(server)
	}
	files := map[string][]byte{
		"server.crt": chain,
		"server.key": keyPEM(serverKey),
		"password":   []byte(s.password + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeSecrets(t, s.secrets, map[string]map[string][]byte{
		"opcua-client": {"tls.crt": certPEM(client), "tls.key": keyPEM(clientKey)},
		"opcua-ca":     {"ca.crt": certPEM(ca)},
		"plant-ca":     {"ca.crt": certPEM(ca)},
		"opcua-server": {"tls.crt": certPEM(server)},
		"opcua-user":   {"tls.crt": certPEM(user), "tls.key": keyPEM(userKey)},
		"opcua-login":  {"password": []byte(s.password)},
		"opcua-wrong":  {"password": []byte("not-" + s.password)},
	})

	logPath := filepath.Join(dir, "server.log")
	var err error
	s.proc, err = testproc.Start("node-opcua", node, logPath, testproc.Options{Env: []string{"NODE_PATH=" + modules}},
		filepath.Join(testenv.Root(), "hack/opcua/server.js"),
		"--port", strconv.Itoa(s.port), "--pki", filepath.Join(dir, "pki"),
		"--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key"),
		"--user", opcuaUser, "--password-file", filepath.Join(dir, "password"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.proc.Stop()
		if t.Failed() {
			t.Logf("node-opcua log:\n%s", s.proc.Tail(40))
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "READY ") {
			break
		}
		if ok, err := s.proc.Exited(); ok {
			t.Fatalf("node-opcua server exited: %v\n%s", err, s.proc.Tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-opcua server not ready after 90 s:\n%s", s.proc.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.url = fmt.Sprintf("opc.tcp://127.0.0.1:%d", s.port)
	return s
}

// native connects gopcua's client (its full client, with its own
// goroutines: it runs natively) without security.
func (s *opcuaServer) native(t testing.TB) *opcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := opcua.NewClient(s.url, opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("gopcua client: connect %s: %v", s.url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// nativeRead reads a node's value with gopcua.
func nativeRead(c *opcua.Client, node string) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return nil, err
	}
	if len(resp.Results) != 1 || resp.Results[0].Status != ua.StatusOK {
		return nil, fmt.Errorf("read %s: %v", node, resp.Results)
	}
	return resp.Results[0].Value.Value(), nil
}

// nativeWrite writes a node's value with gopcua.
func nativeWrite(c *opcua.Client, node string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)},
	}}})
	if err != nil {
		return err
	}
	if len(resp.Results) != 1 || resp.Results[0] != ua.StatusOK {
		return errors.New("write " + node + ": " + fmt.Sprint(resp.Results))
	}
	return nil
}
