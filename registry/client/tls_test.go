package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wapper.dev/wapper/internal/regtest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wapper test registry"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestTLS serves over TLS with a private CA: the client trusts it with
// CAFile, refuses it without, and connects with Insecure.
func TestTLS(t *testing.T) {
	cert, key := selfSigned(t)
	p := regtest.Serve(t, t.TempDir(), "", "--tls-cert", cert, "--tls-key", key)
	ctx := context.Background()
	o := regtest.ClientOptions()
	o.PlainHTTP = false
	plain := newClient(t, o)
	if _, err := plain.Push(ctx, p.Addr+"/p/v:1", virtual(t)); err == nil {
		t.Fatal("push trusted an unknown CA")
	}
	o.CAFile = cert
	if _, err := newClient(t, o).Push(ctx, p.Addr+"/p/v:1", virtual(t)); err != nil {
		t.Fatal(err)
	}
	o.CAFile, o.Insecure = "", true
	if _, err := newClient(t, o).Pull(ctx, p.Addr+"/p/v:1"); err != nil {
		t.Fatal(err)
	}
	o.Insecure, o.PlainHTTP = false, true
	if _, err := newClient(t, o).Pull(ctx, p.Addr+"/p/v:1"); err == nil {
		t.Fatal("plain HTTP against a TLS registry succeeded")
	}
}
