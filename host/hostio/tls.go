package hostio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"wapper.dev/wapper/abi"
)

// tlsConfig builds the client configuration of a TLS connection to addr
// ("host:port", as the plugin wrote it) from the first grants.tls entry
// whose endpoint covers it: its CA, its client certificate and its server
// name. With no entry, the server is checked against the system's CAs
// under the name the plugin dialled.
func (t *Table) tlsConfig(addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	var tg *tlsGrant
	if t.grants != nil {
		for i := range t.grants.tls {
			if t.grants.tls[i].endpoint.AllowsAddr("tls", addr) {
				tg = &t.grants.tls[i]
				break
			}
		}
	}
	if tg == nil {
		return cfg, nil
	}
	if tg.ServerName != "" {
		cfg.ServerName = tg.ServerName
	}
	if tg.CASecret != "" {
		pem, err := t.hostSecret(tg.CASecret, "ca.crt", "caSecret")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, abi.Errorf(abi.ErrInvalid, "grants.tls caSecret %q: key ca.crt holds no PEM certificate", tg.CASecret)
		}
	}
	if tg.ClientSecret != "" {
		crt, err := t.hostSecret(tg.ClientSecret, "tls.crt", "clientSecret")
		if err != nil {
			return nil, err
		}
		key, err := t.hostSecret(tg.ClientSecret, "tls.key", "clientSecret")
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(crt, key)
		if err != nil {
			return nil, abi.Errorf(abi.ErrInvalid, "grants.tls clientSecret %q: %v", tg.ClientSecret, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// hostSecret reads a secret the host itself uses; the grants need not
// give it to the plugin.
func (t *Table) hostSecret(name, key, field string) ([]byte, error) {
	if t.secrets == nil {
		return nil, abi.Errorf(abi.ErrUnavailable, "grants.tls %s %q: the host keeps no secrets (start wapper-host with --secrets-dir)", field, name)
	}
	v, err := t.secrets.Key(name, key)
	if err != nil {
		return nil, abi.Errorf(abi.ErrUnavailable, "grants.tls %s: %s", field, abi.MessageOf(err))
	}
	return v, nil
}

// handshake runs the TLS client handshake over c, which is closed on
// failure.
func handshake(ctx context.Context, c net.Conn, cfg *tls.Config, op string) (net.Conn, error) {
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, ioError(op, err)
	}
	return tc, nil
}

// classifyTLS says why a TLS handshake failed, when it did: an untrusted
// or mismatched server certificate, or the server's refusal (an alert,
// such as for a client certificate it does not accept; under TLS 1.3 it
// comes with the first read), are abi.ErrUnavailable with the cause in
// words.
func classifyTLS(err error) (abi.Code, string, bool) {
	var verr *tls.CertificateVerificationError
	var herr x509.HostnameError
	var operr *net.OpError
	switch {
	case errors.As(err, &herr):
		return abi.ErrUnavailable, "TLS: the server's certificate is not for this name: " + herr.Error(), true
	case errors.As(err, &verr):
		return abi.ErrUnavailable, "TLS: the server's certificate is not trusted: " + verr.Err.Error(), true
	case errors.As(err, &operr) && operr.Op == "remote error":
		// crypto/tls reports an alert from the server so.
		return abi.ErrUnavailable, "TLS: the server refused the connection (" + operr.Err.Error() + ")", true
	case errors.As(err, new(tls.RecordHeaderError)):
		return abi.ErrUnavailable, "TLS: the server does not speak TLS (" + err.Error() + ")", true
	}
	return 0, "", false
}
