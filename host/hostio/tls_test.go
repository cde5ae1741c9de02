package hostio_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/internal/testcert"
)

// tlsEcho serves TLS on a loopback port with cfg and echoes each
// connection; it returns the port's address.
func tlsEcho(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// writeSecret writes the keys of secret name under dir.
func writeSecret(t *testing.T, dir, name string, keys map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(dir, name, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTLSDial(t *testing.T) {
	ca := testcert.NewCA(t, "plant CA")
	other := testcert.NewCA(t, "another CA")
	srv := ca.Server(t, "broker.plant", "127.0.0.1")
	addr := tlsEcho(t, &tls.Config{
		Certificates: []tls.Certificate{srv.TLS(t)},
		ClientCAs:    ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	writeSecret(t, dir, "plant-ca", map[string][]byte{"ca.crt": ca.CertPEM})
	writeSecret(t, dir, "other-ca", map[string][]byte{"ca.crt": other.CertPEM})
	client := ca.Client(t, "wapper")
	writeSecret(t, dir, "plant-client", map[string][]byte{"tls.crt": client.CertPEM, "tls.key": client.KeyPEM})
	writeSecret(t, dir, "bad-ca", map[string][]byte{"ca.crt": []byte("not PEM")})
	alien := other.Client(t, "intruder")
	writeSecret(t, dir, "alien-client", map[string][]byte{"tls.crt": alien.CertPEM, "tls.key": alien.KeyPEM})

	ep := "tls://127.0.0.1:" + port
	for _, tc := range []struct {
		name    string
		network []string
		tls     []grant.TLS
		kind    uint32
		want    abi.Code
		cause   string // in the error
	}{
		{"granted CA and client certificate", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "plant-ca", ClientSecret: "plant-client"}}, abi.SockTLS, abi.OK, ""},
		{"server name from the grant", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "plant-ca", ClientSecret: "plant-client", ServerName: "broker.plant"}}, abi.SockTLS, abi.OK, ""},
		{"certificate for another name", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "plant-ca", ClientSecret: "plant-client", ServerName: "other.plant"}}, abi.SockTLS, abi.ErrUnavailable, "not for this name"},
		{"system CAs do not trust the plant CA", []string{ep}, nil, abi.SockTLS, abi.ErrUnavailable, "not trusted"},
		{"another CA", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "other-ca", ClientSecret: "plant-client"}}, abi.SockTLS, abi.ErrUnavailable, "not trusted"},
		{"no client certificate", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "plant-ca"}}, abi.SockTLS, abi.ErrUnavailable, "the server refused"},
		{"a client certificate the server does not trust", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "plant-ca", ClientSecret: "alien-client"}}, abi.SockTLS, abi.ErrUnavailable, "the server refused"},
		{"missing CA secret", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "nope", ClientSecret: "plant-client"}}, abi.SockTLS, abi.ErrUnavailable, `secret "nope" does not exist`},
		{"malformed CA secret", []string{ep}, []grant.TLS{{Endpoint: ep, CASecret: "bad-ca"}}, abi.SockTLS, abi.ErrInvalid, "no PEM certificate"},
		{"tcp grant does not grant TLS", []string{"tcp://127.0.0.1:" + port}, []grant.TLS{{Endpoint: ep, CASecret: "plant-ca", ClientSecret: "plant-client"}}, abi.SockTLS, abi.ErrDenied, "grants.network"},
		{"tls grant does not grant TCP", []string{ep}, nil, abi.SockTCP, abi.ErrDenied, "grants.network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := hostio.MustGrants(grant.Set{Network: tc.network, TLS: tc.tls})
			tab := hostio.NewTable(g, hostio.WithSecrets(hostio.SecretDir(dir)))
			defer tab.CloseAll()
			h, err := tab.Dial(context.Background(), tc.kind, "127.0.0.1:"+port, 5*time.Second)
			if err == nil {
				// Under TLS 1.3 the server judges the client's
				// certificate after the handshake: its refusal comes
				// with the first read.
				err = echo(tab, h)
			}
			if got := code(err); got != tc.want || !strings.Contains(errText(err), tc.cause) {
				t.Fatalf("got %v (code %v), want code %v with %q", err, got, tc.want, tc.cause)
			}
		})
	}
}

// echo writes a line and reads it back.
func echo(tab *hostio.Table, h int32) error {
	msg := []byte("hello over TLS\n")
	if _, err := tab.Write(h, msg, 5*time.Second); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n := 0
	for n < len(msg) {
		m, err := tab.Read(h, buf[n:], 5*time.Second)
		if err != nil {
			return err
		}
		n += m
	}
	if string(buf[:n]) != string(msg) {
		return errors.New("echo: got " + string(buf[:n]))
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestTLSPlainServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	tab := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"tls://127.0.0.1:" + port}}))
	defer tab.CloseAll()
	_, err = tab.Dial(context.Background(), abi.SockTLS, ln.Addr().String(), 5*time.Second)
	if code(err) != abi.ErrUnavailable || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Fatalf("got %v, want a clear refusal of a server that does not speak TLS", err)
	}
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", abi.MaxSecret+1)
	writeSecret(t, dir, "plc-login", map[string][]byte{"password": []byte("s3cret"), "huge": []byte(big)})
	writeSecret(t, dir, "cam-1", map[string][]byte{"password": []byte("cam")})
	writeSecret(t, dir, "other", map[string][]byte{"password": []byte("no")})
	g := hostio.MustGrants(grant.Set{Secrets: []string{"plc-login", "cam-*"}})
	tab := hostio.NewTable(g, hostio.WithSecrets(hostio.SecretDir(dir)))
	for _, tc := range []struct {
		ref  string
		want abi.Code
		val  string
	}{
		{"plc-login/password", abi.OK, "s3cret"},
		{"cam-1/password", abi.OK, "cam"},
		{"other/password", abi.ErrDenied, ""},
		{"plc-login/user", abi.ErrNotFound, ""},
		{"cam-2/password", abi.ErrNotFound, ""},
		{"plc-login/huge", abi.ErrTooLarge, ""},
		{"plc-login", abi.ErrInvalid, ""},
		{"../plc-login/password", abi.ErrInvalid, ""},
		{"plc-login/../other/password", abi.ErrInvalid, ""},
		{"plc-login/..", abi.ErrInvalid, ""},
		{"Plc-Login/password", abi.ErrInvalid, ""},
	} {
		v, err := tab.Secret(tc.ref)
		if code(err) != tc.want || string(v) != tc.val {
			t.Errorf("Secret(%q) = %q, %v; want %q, code %v", tc.ref, v, err, tc.val, tc.want)
		}
	}
	_, err := tab.Secret("other/password")
	var de *hostio.DeniedError
	if !errors.As(err, &de) || de.Kind != hostio.KindSecret || !strings.Contains(err.Error(), "grants.secrets [plc-login, cam-*]") {
		t.Errorf("refusal %v does not name the grants", err)
	}
	// A secret rotated on disk applies at once.
	writeSecret(t, dir, "plc-login", map[string][]byte{"password": []byte("rotated")})
	if v, err := tab.Secret("plc-login/password"); err != nil || string(v) != "rotated" {
		t.Errorf("after rotation: %q, %v", v, err)
	}
	// No secrets folder: not found, saying why.
	bare := hostio.NewTable(g)
	if _, err := bare.Secret("plc-login/password"); code(err) != abi.ErrNotFound || !strings.Contains(err.Error(), "--secrets-dir") {
		t.Errorf("without secrets: %v", err)
	}
}

// bigSecrets holds one value above abi.MaxSecret, as a Kubernetes Secret
// delivered by the cloud may (up to 1 MiB).
type bigSecrets struct{}

func (bigSecrets) Key(string, string) ([]byte, error) { return make([]byte, abi.MaxSecret+1), nil }

func TestSecretSizeFromAnyStore(t *testing.T) {
	tab := hostio.NewTable(hostio.MustGrants(grant.Set{Secrets: []string{"*"}}), hostio.WithSecrets(bigSecrets{}))
	if _, err := tab.Secret("big/value"); code(err) != abi.ErrTooLarge {
		t.Fatalf("a value above MaxSecret: %v", err)
	}
}

// TestCloseAfterPeerHangsUp: closing a TLS socket whose server is gone
// succeeds (the handle is released), though its close_notify cannot be
// sent.
func TestCloseAfterPeerHangsUp(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").TLS(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.(*tls.Conn).NetConn().Close() // hang up without a close_notify
		}
	}()
	dir := t.TempDir()
	writeSecret(t, dir, "ca", map[string][]byte{"ca.crt": ca.CertPEM})
	ep := "tls://" + ln.Addr().String()
	tab := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{ep}, TLS: []grant.TLS{{Endpoint: ep, CASecret: "ca"}}}), hostio.WithSecrets(hostio.SecretDir(dir)))
	h, err := tab.Dial(context.Background(), abi.SockTLS, ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Read(h, make([]byte, 8), 5*time.Second); code(err) != abi.ErrClosed {
		t.Fatalf("read after the hang-up: %v", err)
	}
	// Write until the connection's reset shows: then crypto/tls keeps the
	// error and its close fails too.
	for i := 0; ; i++ {
		if _, err := tab.Write(h, []byte("x"), time.Second); err != nil {
			break
		}
		if i == 1000 {
			t.Fatal("writes to a closed peer keep succeeding")
		}
		time.Sleep(time.Millisecond)
	}
	if err := tab.Close(h); err != nil || tab.Len() != 0 {
		t.Fatalf("close: %v, %d handles left", err, tab.Len())
	}
}
