package e2e

// Throughput of the wasm OPC UA plugin through the host runtime against
// gopcua's native client, reading the same Double variable from the same
// node-opcua server, without security and over Basic256Sha256
// SignAndEncrypt. `make bench` runs TestOPCUAThroughput with
// WAPPER_BENCH=1 (mk/opcua.mk) and prints reads/s and the ratio.

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testenv"
)

// opcuaBenchMode is one way of connecting, for both clients.
type opcuaBenchMode struct {
	name string
	// config is the plugin's protocol configData beyond the url.
	config string
	policy string
	mode   ua.MessageSecurityMode
}

var opcuaBenchModes = []opcuaBenchMode{
	{"security None", ``, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
	{"Basic256Sha256 SignAndEncrypt", `,"securityPolicy":"Basic256Sha256","securityMode":"SignAndEncrypt","certificateSecret":"opcua-client","caSecret":"opcua-ca"`,
		ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
}

func benchOPCUAWasm(b *testing.B, s *opcuaServer, m opcuaBenchMode) {
	p := loadIOPlugin(b, "opcua", v1alpha1.Grants{
		Network: []string{fmt.Sprintf("tcp://127.0.0.1:%d", s.port)},
		Secrets: []string{"opcua-client", "opcua-ca"},
	}, func(c *runtime.Config) { runtime.SetSecrets(c, hostio.SecretDir(s.secrets)) })
	ctx := context.Background()
	dev := abi.Device{
		ID: 1, Namespace: "default", Name: "boiler", Protocol: "opcua",
		ProtocolConfig: []byte(fmt.Sprintf(`{"url":%q,"timeout":"3s"%s}`, s.url, m.config)),
		Properties:     []abi.Property{prop(0, "temperature", "DOUBLE", "ReadOnly", `{"nodeID":"ns=2;s=Temperature"}`)},
	}
	if err := p.AddDevice(ctx, dev); err != nil {
		b.Fatal(err)
	}
	if v, err := p.Read(ctx, 1, 0); err != nil || v.Double() != 21.5 {
		b.Fatalf("warm-up read: %v, %v", v, err)
	}
	b.ResetTimer()
	for b.Loop() {
		v, err := p.Read(ctx, 1, 0)
		if err != nil {
			b.Fatal(err)
		}
		sink = v
	}
}

// opcuaNative connects gopcua's client with the mode's security, the
// client identity of the plugin's secrets.
func opcuaNative(b testing.TB, s *opcuaServer, m opcuaBenchMode) *opcua.Client {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := []opcua.Option{opcua.AutoReconnect(false), opcua.RequestTimeout(3 * time.Second)}
	if m.mode == ua.MessageSecurityModeNone {
		opts = append(opts, opcua.SecurityMode(ua.MessageSecurityModeNone))
	} else {
		pair, err := tls.LoadX509KeyPair(filepath.Join(s.secrets, "opcua-client/tls.crt"), filepath.Join(s.secrets, "opcua-client/tls.key"))
		if err != nil {
			b.Fatal(err)
		}
		eps, err := opcua.GetEndpoints(ctx, s.url)
		if err != nil {
			b.Fatal(err)
		}
		ep, err := opcua.SelectEndpoint(eps, m.policy, m.mode)
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, opcua.Certificate(pair.Certificate[0]), opcua.PrivateKey(pair.PrivateKey.(*rsa.PrivateKey)),
			opcua.ApplicationURI("urn:wapper:opcua-client"), opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous))
	}
	c, err := opcua.NewClient(s.url, opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		b.Fatalf("gopcua client (%s): %v", m.name, err)
	}
	return c
}

func benchOPCUANative(b *testing.B, s *opcuaServer, m opcuaBenchMode) {
	c := opcuaNative(b, s, m)
	defer c.Close(context.Background())
	ctx := context.Background()
	req := &ua.ReadRequest{
		TimestampsToReturn: ua.TimestampsToReturnNeither,
		NodesToRead:        []*ua.ReadValueID{{NodeID: ua.MustParseNodeID("ns=2;s=Temperature"), AttributeID: ua.AttributeIDValue}},
	}
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Read(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.Results) != 1 || resp.Results[0].Value.Value() != 21.5 {
			b.Fatalf("read %v", resp.Results)
		}
		sink = resp
	}
}

// TestOPCUAThroughput prints the side-by-side numbers for make bench.
func TestOPCUAThroughput(t *testing.T) {
	testenv.Opt(t, "WAPPER_BENCH", "a benchmark that prints wasm and native OPC UA reads/s for make bench (mk/opcua.mk)")
	// gopcua's client does not take a certificate chain from the server.
	s := startOPCUAServer(t, true)
	for _, m := range opcuaBenchModes {
		var wasm, native float64
		// Interleaved three times, each side's best kept, so that a busy
		// moment on the machine does not decide the ratio.
		for range 3 {
			w := testing.Benchmark(func(b *testing.B) { benchOPCUAWasm(b, s, m) })
			n := testing.Benchmark(func(b *testing.B) { benchOPCUANative(b, s, m) })
			wasm = max(wasm, float64(w.N)/w.T.Seconds())
			native = max(native, float64(n.N)/n.T.Seconds())
		}
		if wasm == 0 || native == 0 || wasm != wasm || native != native {
			t.Fatalf("%s: a benchmark failed", m.name)
		}
		fmt.Printf("\nOPC UA, %s: read one Double (Read service) from the same node-opcua server\n", m.name)
		fmt.Printf("%-52s %12.0f reads/s\n", "wasm plugin through the host runtime", wasm)
		fmt.Printf("%-52s %12.0f reads/s\n", "native Go client (gopcua)", native)
		fmt.Printf("%-52s %12.0f%%\n", "wasm / native", 100*wasm/native)
	}
}
