package conformance

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/internal/testcert"
)

// MemSecrets is an in-memory hostio.Secrets: secret name, then key, then
// value. It must not change while a plugin uses it.
type MemSecrets map[string]map[string][]byte

var _ hostio.Secrets = MemSecrets(nil)

// Key implements hostio.Secrets.
func (s MemSecrets) Key(name, key string) ([]byte, error) {
	sec, ok := s[name]
	if !ok {
		return nil, abi.Errorf(abi.ErrNotFound, "secret %q does not exist", name)
	}
	v, ok := sec[key]
	if !ok {
		return nil, abi.Errorf(abi.ErrNotFound, "secret %q has no key %q", name, key)
	}
	return bytes.Clone(v), nil // the host clears what it gets
}

// loadGranted loads the module under test with grants g and secrets sec.
func (t *caseRun) loadGranted(g grant.Set, sec hostio.Secrets) *loaded {
	return t.load(nil, func(c *runtime.Config) {
		if err := runtime.WithGrants(c, g); err != nil {
			t.Fatalf("suite bug: grants %+v: %v", g, err)
		}
		if sec != nil {
			runtime.SetSecrets(c, sec)
		}
	})
}

// secret calls the method secret, which returns the value in hex.
func (t *caseRun) secret(p *loaded, ref string) ([]byte, error) {
	args, _ := json.Marshal(map[string]string{"ref": ref})
	res, err := p.CallMethod(t.ctx, 1, "secret", args)
	if err != nil {
		return nil, err
	}
	var h string
	if err := json.Unmarshal(res, &h); err != nil {
		return nil, fmt.Errorf("method secret returned %.80q, want a JSON string", res)
	}
	v, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("method secret returned %.80q, want lower-case hex: %v", h, err)
	}
	return v, nil
}

// caseSecrets checks secret_get (SPEC §6.6) through the runtime's host
// function: granted values byte for byte (some past the SDKs' first
// buffer), and the codes of a secret the grants do not name, of an absent
// secret or key, and of a malformed reference.
func caseSecrets(t *caseRun) {
	long := make([]byte, 5000)
	for i := range long {
		long[i] = byte(i * 7)
	}
	sec := MemSecrets{
		"plc-login": {
			"password": []byte("hunter2"),
			"empty":    {},
			"binary":   {0, 1, 0xff, '"', '\\', '\n', 0},
			"cap":      long[:256], // exactly the SDKs' first buffer
			"past-cap": long[:257],
			"long":     long,
			"tls.key":  []byte("Key_With.Dots-and_underscores"),
		},
		"cam-1":  {"token": []byte("cam one")},
		"others": {"password": []byte("not yours")},
	}
	p := t.loadGranted(grant.Set{Secrets: []string{"plc-login", "cam-*"}}, sec)
	t.add(p, FullDevice(1, ""))
	for _, ref := range []string{"plc-login/password", "plc-login/empty", "plc-login/binary", "plc-login/cap", "plc-login/past-cap", "plc-login/long", "plc-login/tls.key", "cam-1/token"} {
		name, key, _ := strings.Cut(ref, "/")
		want := sec[name][key]
		got, err := t.secret(p, ref)
		switch {
		case err != nil:
			t.Errorf("secret %s: %v", ref, err)
		case !bytes.Equal(got, want):
			t.Errorf("secret %s = %d bytes %.40q, want %d bytes %.40q", ref, len(got), got, len(want), want)
		}
	}
	_, err := t.secret(p, "others/password")
	if t.wantErr("secret others/password, not in grants.secrets", err, abi.ErrDenied, "*") && strings.Contains(err.Error(), "not yours") {
		t.Errorf("the refusal of others/password carries its value: %v", err)
	}
	for _, ref := range []string{"plc-login/absent", "cam-2/token"} {
		_, err := t.secret(p, ref)
		t.wantErr("secret "+ref+", absent", err, abi.ErrNotFound, "*")
	}
	for _, ref := range []string{"", "plc-login", "plc-login/", "/password", "plc-login/a/b", "../plc-login/password", "PLC-Login/password", "plc-login/pass word"} {
		_, err := t.secret(p, ref)
		t.wantErr(fmt.Sprintf("secret %q, malformed", ref), err, abi.ErrInvalid, "*")
	}
	// The instance survives refusals, and a plugin without grants.secrets
	// reads nothing.
	if n := p.Restarts(); n != 0 {
		t.Errorf("%d instance restarts after refused secrets, want 0", n)
	}
	q := t.loadGranted(grant.Set{}, sec)
	t.add(q, FullDevice(1, ""))
	_, err = t.secret(q, "plc-login/password")
	t.wantErr("secret plc-login/password without grants.secrets", err, abi.ErrDenied, "*")
}

// caseTLS checks TLS sockets (sock_open kind 2, SPEC §6.4, §6.5): the host
// makes the handshake with the CA and the client certificate that a
// grants.tls entry names, the plugin reads and writes the plaintext; an
// untrusted server, a certificate for another name, a refused client and
// a missing CA secret fail with code 6;
// a tcp:// grant does not allow TLS, nor the reverse (code 7); the TLS
// secrets are the host's, not the plugin's.
func caseTLS(t *caseRun) {
	ca, err := testcert.New("wapper conformance CA")
	if err != nil {
		t.Fatalf("suite bug: %v", err)
	}
	rogue, err := testcert.New("rogue CA")
	if err != nil {
		t.Fatalf("suite bug: %v", err)
	}
	good := t.tlsEcho(ca, ca)    // trusted, wants a client certificate from ca
	bad := t.tlsEcho(rogue, ca)  // signed by a CA the grants do not name
	plain := t.tlsEcho(nil, nil) // plain TCP
	client, err := ca.Issue(false, "conformance-client")
	if err != nil {
		t.Fatalf("suite bug: %v", err)
	}
	sec := MemSecrets{
		"device-ca":     {"ca.crt": ca.CertPEM},
		"device-client": {"tls.crt": client.CertPEM, "tls.key": client.KeyPEM},
	}
	tlsGrant := grant.TLS{Endpoint: "tls://127.0.0.1:*", CASecret: "device-ca", ClientSecret: "device-client"}
	p := t.loadGranted(grant.Set{
		Network: []string{"tls://" + good, "tls://" + bad, "tcp://" + plain},
		TLS:     []grant.TLS{tlsGrant},
	}, sec)
	t.add(p, FullDevice(1, ""))

	msg := "hello over TLS \x00 ✓ " + strings.Repeat("x", 3000)
	if got, err := t.dialEcho(p, "tls", good, msg); err != nil || got != msg {
		t.Errorf("dialEcho tls %s: %d bytes, %v; want the %d bytes sent back", good, len(got), err, len(msg))
	}
	if got, err := t.dialEcho(p, "tcp", plain, "plain"); err != nil || got != "plain" {
		t.Errorf("dialEcho tcp %s: %q, %v; want %q", plain, got, err, "plain")
	}
	_, err = t.dialEcho(p, "tls", bad, "x")
	if t.wantErr("dialEcho tls to a server whose certificate the granted CA did not sign", err, abi.ErrUnavailable, "*") && !strings.Contains(err.Error(), "certificate") {
		t.Errorf("the error of an untrusted server does not say why (the host's cause): %v", err)
	}
	_, err = t.dialEcho(p, "tcp", good, "x")
	t.wantErr("dialEcho tcp to an address granted as tls:// only", err, abi.ErrDenied, "*")
	_, err = t.secret(p, "device-client/tls.key")
	t.wantErr("secret device-client/tls.key, named by grants.tls only", err, abi.ErrDenied, "*")

	// The same server under a tcp:// grant only: no TLS.
	q := t.loadGranted(grant.Set{Network: []string{"tcp://" + good}, TLS: []grant.TLS{tlsGrant}}, sec)
	t.add(q, FullDevice(1, ""))
	_, err = t.dialEcho(q, "tls", good, "x")
	t.wantErr("dialEcho tls to an address granted as tcp:// only", err, abi.ErrDenied, "*")

	// Entries that cannot make the connection: a serverName the
	// certificate does not carry; no client certificate for a server that
	// requires one (under TLS 1.3 the refusal comes with the first read);
	// a CA secret that does not exist.
	other := tlsGrant
	other.ServerName = "other.example"
	noClient := tlsGrant
	noClient.ClientSecret = ""
	noCA := tlsGrant
	noCA.CASecret = "no-such-ca"
	for _, c := range []struct {
		what string
		g    grant.TLS
	}{
		{"a serverName the certificate does not carry", other},
		{"no client certificate for a server that requires one", noClient},
		{"a caSecret that does not exist", noCA},
	} {
		r := t.loadGranted(grant.Set{Network: []string{"tls://" + good}, TLS: []grant.TLS{c.g}}, sec)
		t.add(r, FullDevice(1, ""))
		_, err = t.dialEcho(r, "tls", good, "x")
		t.wantErr("dialEcho tls with "+c.what, err, abi.ErrUnavailable, "*")
	}
}

// dialEcho calls the method dialEcho.
func (t *caseRun) dialEcho(p *loaded, kind, addr, send string) (string, error) {
	args, _ := json.Marshal(map[string]string{"kind": kind, "addr": addr, "send": send})
	res, err := p.CallMethod(t.ctx, 1, "dialEcho", args)
	if err != nil {
		return "", err
	}
	var got string
	if err := json.Unmarshal(res, &got); err != nil {
		return "", fmt.Errorf("method dialEcho returned %.80q, want a JSON string", res)
	}
	return got, nil
}

// tlsEcho starts an echo server on 127.0.0.1 until the case ends and
// returns its address. With a nil server CA it speaks plain TCP;
// otherwise its certificate, for 127.0.0.1, is signed by server, and it
// requires a client certificate signed by clients.
func (t *caseRun) tlsEcho(server, clients *testcert.CA) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if server != nil {
		leaf, err := server.Issue(true, "127.0.0.1")
		var pair tls.Certificate
		if err == nil {
			pair, err = leaf.KeyPair()
		}
		if err != nil {
			l.Close()
			t.Fatalf("suite bug: %v", err)
		}
		l = tls.NewListener(l, &tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clients.Pool(),
			MinVersion:   tls.VersionTLS12,
		})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetDeadline(time.Now().Add(time.Minute))
				io.Copy(c, c) // a failed handshake ends it at once
				c.Close()
			}()
		}
	}()
	t.cleanup = append(t.cleanup, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}
