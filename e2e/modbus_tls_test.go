package e2e

// Modbus/TCP Security (Modbus TCP inside TLS, with client certificates)
// through the host's TLS sockets: the Modbus plugin with "tls": true
// against simonvetter/modbus's TLS server, which requires a client
// certificate signed by its CA, as the specification does.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testcert"
)

// modbusTLS is a Modbus/TCP Security server and the secrets a client
// needs: "modbus-ca" (ca.crt) and "modbus-client" (tls.crt, tls.key)
// under dir.
type modbusTLS struct {
	port   int
	dir    string
	ca     *testcert.CA
	client testcert.Pair
}

func startModbusTLS(t testing.TB, regs *regMap) *modbusTLS {
	t.Helper()
	ca := testcert.NewCA(t, "modbus CA")
	m := &modbusTLS{port: freePort(t), dir: t.TempDir(), ca: ca, client: ca.Client(t, "wapper")}
	server := ca.Server(t, "127.0.0.1").TLS(t)
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{
		URL: fmt.Sprintf("tcp+tls://127.0.0.1:%d", m.port), Timeout: time.Minute, MaxClients: 16,
		TLSServerCert: &server, TLSClientCAs: ca.Pool(),
	}, regs)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start Modbus TLS server: %v", err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { srv.Stop() }) })
	for name, keys := range map[string]map[string][]byte{
		"modbus-ca":     {"ca.crt": ca.CertPEM},
		"modbus-client": {"tls.crt": m.client.CertPEM, "tls.key": m.client.KeyPEM},
	} {
		if err := os.MkdirAll(filepath.Join(m.dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		for k, v := range keys {
			if err := os.WriteFile(filepath.Join(m.dir, name, k), v, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func (m *modbusTLS) endpoint() string { return fmt.Sprintf("tls://127.0.0.1:%d", m.port) }

// grants are those of a plugin that speaks to the server, with the CA
// secret named caSecret.
func (m *modbusTLS) grants(caSecret string) v1alpha1.Grants {
	return v1alpha1.Grants{
		Network: []string{m.endpoint()},
		TLS:     []v1alpha1.TLSGrant{{Endpoint: m.endpoint(), CASecret: caSecret, ClientSecret: "modbus-client"}},
	}
}

func (m *modbusTLS) load(t testing.TB, g v1alpha1.Grants) *ioPlugin {
	return loadIOPlugin(t, "modbus", g, func(c *runtime.Config) { runtime.SetSecrets(c, hostio.SecretDir(m.dir)) })
}

func (m *modbusTLS) device(props ...abi.Property) abi.Device {
	d := tcpDevice(1, m.port, 2000, props...)
	d.ProtocolConfig = []byte(fmt.Sprintf(`{"ip":"127.0.0.1","port":%d,"slaveID":1,"timeout":2000,"tls":true}`, m.port))
	return d
}

// nativeClient is simonvetter/modbus's TLS client with the same identity.
func (m *modbusTLS) nativeClient(t testing.TB) *modbus.ModbusClient {
	t.Helper()
	cert := m.client.TLS(t)
	c, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL: fmt.Sprintf("tcp+tls://127.0.0.1:%d", m.port), Timeout: 2 * time.Second,
		TLSClientCert: &cert, TLSRootCAs: m.ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestModbusTLS(t *testing.T) {
	regs := &regMap{}
	regs.holding[10] = 1234
	m := startModbusTLS(t, regs)
	ctx := context.Background()
	holding := prop(0, "holding", "INT", "ReadWrite", `{"register":"HoldingRegister","offset":10,"limit":1}`)

	p := m.load(t, m.grants("modbus-ca"))
	if err := p.AddDevice(ctx, m.device(holding)); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Read(ctx, 1, 0); err != nil || v.Int() != 1234 {
		t.Fatalf("read over TLS: %v, %v", v, err)
	}
	if err := p.Write(ctx, 1, 0, abi.Int(4321)); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}
	// The server's own client, with the same identity, sees the write.
	if got, err := m.nativeClient(t).ReadRegister(10, modbus.HOLDING_REGISTER); err != nil || got != 4321 {
		t.Fatalf("native client reads %d, %v", got, err)
	}

	// A CA that did not sign the server: refused, and the device says why.
	other := testcert.NewCA(t, "another CA")
	if err := os.MkdirAll(filepath.Join(m.dir, "other-ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "other-ca", "ca.crt"), other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	q := m.load(t, m.grants("other-ca"))
	if err := q.AddDevice(ctx, m.device(holding)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Read(ctx, 1, 0); abi.CodeOf(err) != abi.ErrUnavailable || !strings.Contains(err.Error(), "certificate is not trusted") {
		t.Fatalf("read with the wrong CA: %v", err)
	}

	// A tcp grant does not let the plugin speak TLS.
	r := m.load(t, v1alpha1.Grants{Network: []string{fmt.Sprintf("tcp://127.0.0.1:%d", m.port)}})
	if err := r.AddDevice(ctx, m.device(holding)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(ctx, 1, 0); abi.CodeOf(err) != abi.ErrDenied || r.denials(hostio.KindNetwork) != 1 {
		t.Fatalf("read with a tcp grant: %v (%v denials)", err, r.denials(hostio.KindNetwork))
	}
}

// benchModbusTLSWasm and benchModbusTLSNative read the benchmark block
// over Modbus/TCP Security, through the host and natively.
func benchModbusTLSWasm(b *testing.B, m *modbusTLS) {
	p := m.load(b, m.grants("modbus-ca"))
	benchRead(b, p, m.device(prop(0, "block", "BYTES", "ReadOnly", fmt.Sprintf(`{"register":"HoldingRegister","offset":0,"limit":%d}`, benchBlock))))
}

func benchModbusTLSNative(b *testing.B, m *modbusTLS) {
	c := m.nativeClient(b)
	b.ResetTimer()
	for b.Loop() {
		regs, err := c.ReadRegisters(0, benchBlock, modbus.HOLDING_REGISTER)
		if err != nil {
			b.Fatal(err)
		}
		sink = regs
	}
}

func BenchmarkModbusTLSReadWasm(b *testing.B) {
	benchModbusTLSWasm(b, startModbusTLS(b, benchRegs()))
}

func BenchmarkModbusTLSReadNative(b *testing.B) {
	benchModbusTLSNative(b, startModbusTLS(b, benchRegs()))
}
