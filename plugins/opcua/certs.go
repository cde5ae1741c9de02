package main

// Credentials from Secrets: the client's application instance certificate
// and key, the server certificate to pin or the CA to check it against,
// and the user's password or certificate. They are read on every connect
// and kept in memory only.

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
)

// Secret keys, those of Kubernetes Secrets of type kubernetes.io/tls.
const (
	keyCert = "tls.crt"
	keyKey  = "tls.key"
	keyCA   = "ca.crt"
)

const (
	defaultAppURI = "urn:wapper:opcua-client"
	productURI    = "urn:wapper:opcua"
)

// credentials are what the secrets of a device hold.
type credentials struct {
	cert *x509.Certificate // the client application's, for a secure channel
	key  *rsa.PrivateKey
	// pinned is the server's certificate as configured; cas the CAs
	// that may vouch for it instead.
	pinned *x509.Certificate
	cas    *x509.CertPool

	userName string
	password []byte
	userCert *x509.Certificate
	userKey  *rsa.PrivateKey
}

// wrap adds context to an error and keeps its code.
func wrap(err error, format string, args ...any) error {
	msg := err.Error()
	var ae *abi.Error
	if errors.As(err, &ae) && ae == err {
		msg = ae.Message
	}
	return &wapper.Error{Code: codeOf(err), Message: fmt.Sprintf(format, args...) + ": " + msg}
}

// codeOf is the error's ABI code, with the end of a stream as "closed".
func codeOf(err error) wapper.Code {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return wapper.ErrClosed
	}
	return wapper.CodeOf(err)
}

func secret(what, name, key string) ([]byte, error) {
	v, err := wapper.Secret(name + "/" + key)
	if err != nil {
		return nil, wrap(err, "%s %q", what, name)
	}
	return v, nil
}

// loadCredentials reads the secrets the configuration names.
func loadCredentials(cfg *protocolConfig) (*credentials, error) {
	cr := &credentials{userName: cfg.userName}
	var err error
	if cfg.certSecret != "" {
		if cr.cert, cr.key, err = keyPair("certificateSecret", cfg.certSecret); err != nil {
			return nil, err
		}
	}
	if cfg.serverCertSecret != "" {
		b, err := secret("serverCertificateSecret", cfg.serverCertSecret, keyCert)
		if err != nil {
			return nil, err
		}
		certs, err := parseCerts(b)
		if err != nil {
			return nil, wapper.Errorf(wapper.ErrInvalid, "serverCertificateSecret %q key %s: %v", cfg.serverCertSecret, keyCert, err)
		}
		cr.pinned = certs[0]
		if _, ok := cr.pinned.PublicKey.(*rsa.PublicKey); !ok {
			return nil, wapper.Errorf(wapper.ErrInvalid, "serverCertificateSecret %q: the certificate's key is not RSA", cfg.serverCertSecret)
		}
	}
	if cfg.caSecret != "" {
		b, err := secret("caSecret", cfg.caSecret, keyCA)
		if err != nil {
			return nil, err
		}
		certs, err := parseCerts(b)
		if err != nil {
			return nil, wapper.Errorf(wapper.ErrInvalid, "caSecret %q key %s: %v", cfg.caSecret, keyCA, err)
		}
		cr.cas = x509.NewCertPool()
		for _, c := range certs {
			cr.cas.AddCert(c)
		}
	}
	if cfg.passwordSecret != "" {
		name, key, _ := cutRef(cfg.passwordSecret)
		if cr.password, err = secret("passwordSecret", name, key); err != nil {
			return nil, err
		}
	}
	if cfg.userCertSecret != "" {
		if cr.userCert, cr.userKey, err = keyPair("userCertificateSecret", cfg.userCertSecret); err != nil {
			return nil, err
		}
	}
	return cr, nil
}

// keyPair reads a certificate and its RSA key from a tls Secret.
func keyPair(what, name string) (*x509.Certificate, *rsa.PrivateKey, error) {
	cb, err := secret(what, name, keyCert)
	if err != nil {
		return nil, nil, err
	}
	kb, err := secret(what, name, keyKey)
	if err != nil {
		return nil, nil, err
	}
	certs, err := parseCerts(cb)
	if err != nil {
		return nil, nil, wapper.Errorf(wapper.ErrInvalid, "%s %q key %s: %v", what, name, keyCert, err)
	}
	key, err := parseKey(kb)
	clear(kb)
	if err != nil {
		return nil, nil, wapper.Errorf(wapper.ErrInvalid, "%s %q key %s: %v", what, name, keyKey, err)
	}
	pub, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, wapper.Errorf(wapper.ErrInvalid, "%s %q: %s is not the certificate of the RSA key in %s", what, name, keyCert, keyKey)
	}
	return certs[0], key, nil
}

// parseCerts reads PEM certificates, or one DER certificate (or a DER
// chain, as OPC UA sends them).
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	certs, err := x509.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("neither PEM certificates nor DER: %v", err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return certs, nil
}

// parseKey reads an RSA private key: PEM (PKCS #1 or #8) or DER.
func parseKey(b []byte) (*rsa.PrivateKey, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("not an RSA private key in PEM or DER (PKCS #1 or #8)")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %T; OPC UA security policies need RSA", k)
	}
	return rk, nil
}

// trust checks the certificate (chain, DER) a server presents against the
// pinned certificate or the CAs, and returns its leaf.
func (cr *credentials) trust(der []byte) (*x509.Certificate, error) {
	certs, err := x509.ParseCertificates(der)
	if err != nil || len(certs) == 0 {
		return nil, wapper.Errorf(wapper.ErrUnavailable, "the server's certificate does not parse: %v", err)
	}
	leaf := certs[0]
	if _, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
		return nil, wapper.Errorf(wapper.ErrUnavailable, "the server's certificate has a %T key; OPC UA security policies need RSA", leaf.PublicKey)
	}
	switch {
	case cr.pinned != nil:
		if !leaf.Equal(cr.pinned) {
			return nil, wapper.Errorf(wapper.ErrUnavailable, "the server's certificate (%s) is not the one in serverCertificateSecret (%s)",
				leaf.Subject, cr.pinned.Subject)
		}
	case cr.cas != nil:
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots: cr.cas, Intermediates: inter, CurrentTime: time.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return nil, wapper.Errorf(wapper.ErrUnavailable, "the server's certificate (%s) is not trusted by caSecret: %v", leaf.Subject, err)
		}
	default:
		return nil, wapper.Errorf(wapper.ErrInvalid, "no serverCertificateSecret or caSecret to check the server's certificate with")
	}
	return leaf, nil
}

// certKey returns the public key of the certificate a server sent in
// CreateSession, to secure a user token with. On a secure channel it was
// checked already; on a channel without security it is checked when the
// configuration names a trust, and taken as it is otherwise.
func certKey(der []byte, cr *credentials) (*rsa.PublicKey, error) {
	if cr.pinned != nil || cr.cas != nil {
		leaf, err := cr.trust(der)
		if err != nil {
			return nil, err
		}
		return leaf.PublicKey.(*rsa.PublicKey), nil
	}
	certs, err := x509.ParseCertificates(der)
	if err != nil || len(certs) == 0 {
		return nil, wapper.Errorf(wapper.ErrUnavailable, "the server sent no usable certificate to secure the user token with: %v", err)
	}
	k, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, wapper.Errorf(wapper.ErrUnavailable, "the server's certificate has a %T key; OPC UA needs RSA", certs[0].PublicKey)
	}
	return k, nil
}

// asymmetricFor returns a policy's asymmetric algorithms for a user token.
func asymmetricFor(policy string, local *rsa.PrivateKey, remote *rsa.PublicKey) (*uapolicy.EncryptionAlgorithm, error) {
	a, err := uapolicy.Asymmetric(policy, local, remote)
	if err != nil {
		return nil, wapper.Errorf(wapper.ErrUnsupported, "user token security policy %s: %v", policyName(policy), err)
	}
	return a, nil
}

// identityName names the kind of user the credentials log in as.
func (cr *credentials) identityName() string {
	switch {
	case cr.userName != "":
		return fmt.Sprintf("user name %q and password", cr.userName)
	case cr.userCert != nil:
		return "X.509 user certificate"
	}
	return "anonymous user"
}

// policyName is the short name of a security policy URI.
func policyName(uri string) string {
	if len(uri) > len(ua.SecurityPolicyURIPrefix) && uri[:len(ua.SecurityPolicyURIPrefix)] == ua.SecurityPolicyURIPrefix {
		return uri[len(ua.SecurityPolicyURIPrefix):]
	}
	return uri
}

func modeName(m ua.MessageSecurityMode) string {
	switch m {
	case ua.MessageSecurityModeNone:
		return "None"
	case ua.MessageSecurityModeSign:
		return "Sign"
	case ua.MessageSecurityModeSignAndEncrypt:
		return "SignAndEncrypt"
	}
	return fmt.Sprintf("mode %d", m)
}
