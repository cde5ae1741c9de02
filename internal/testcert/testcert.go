// Package testcert makes certificate authorities and the server and client
// certificates they sign, for tests of TLS peers and for the TLS cases of
// the conformance harness. The New and Issue functions return errors; the
// NewCA, Server and Client helpers fail a test instead.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority valid for a day.
type CA struct {
	// CertPEM is the CA's certificate.
	CertPEM []byte
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

var serial atomic.Int64

// New makes a self-signed CA named name.
func New(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := template(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{CertPEM: pemBlock("CERTIFICATE", der), cert: cert, key: key}, nil
}

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Pair is a certificate and its key, in PEM.
type Pair struct {
	CertPEM, KeyPEM []byte
}

// KeyPair returns the pair as a tls.Certificate.
func (p Pair) KeyPair() (tls.Certificate, error) { return tls.X509KeyPair(p.CertPEM, p.KeyPEM) }

// Issue signs a certificate: a server's for hosts (names and IP
// addresses, the first also its common name), or with server false a
// client's with common name hosts[0].
func (ca *CA) Issue(server bool, hosts ...string) (Pair, error) {
	tmpl := template(hosts[0])
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Pair{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: pemBlock("PRIVATE KEY", kder)}, nil
}

// NewCA is New for tests.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Server is Issue of a server certificate, for tests.
func (ca *CA) Server(t testing.TB, hosts ...string) Pair { return ca.must(t, true, hosts) }

// Client is Issue of a client certificate, for tests.
func (ca *CA) Client(t testing.TB, cn string) Pair { return ca.must(t, false, []string{cn}) }

func (ca *CA) must(t testing.TB, server bool, hosts []string) Pair {
	t.Helper()
	p, err := ca.Issue(server, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TLS is KeyPair for tests.
func (p Pair) TLS(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := p.KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func template(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
