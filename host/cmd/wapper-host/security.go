package main

// Securing actuation (issue 11, item 9): user name and password and a TLS
// listener on the embedded MQTT broker, a bearer token (and HTTPS, mutual
// TLS) on the REST API, and a warning at start for either listening beyond
// loopback without authentication. Secrets are read from files, never
// taken on the command line.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/spf13/pflag"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/host/hostio"
)

// securityOptions are the flags that protect the embedded broker and the
// REST API.
type securityOptions struct {
	mqttUser, mqttPasswordFile             string
	mqttTLSListen, mqttTLSCert, mqttTLSKey string
	httpTokenFile                          string
	httpAuthReads                          bool
	httpTLSCert, httpTLSKey, httpClientCA  string
}

func addSecurityFlags(f *pflag.FlagSet, o *securityOptions) {
	f.StringVar(&o.mqttUser, "mqtt-listen-username", "", "user name clients of the embedded MQTT broker must give; once set, anonymous clients are refused (with --mqtt-listen-password-file)")
	f.StringVar(&o.mqttPasswordFile, "mqtt-listen-password-file", "", "file holding the password of --mqtt-listen-username (one line)")
	f.StringVar(&o.mqttTLSListen, "mqtt-tls-listen", "", "address of the embedded MQTT broker's TLS listener (e.g. 0.0.0.0:8883); empty for none")
	f.StringVar(&o.mqttTLSCert, "mqtt-tls-cert", "", "PEM certificate (chain) of --mqtt-tls-listen")
	f.StringVar(&o.mqttTLSKey, "mqtt-tls-key", "", "PEM private key of --mqtt-tls-cert")
	f.StringVar(&o.httpTokenFile, "http-token-file", "", "file holding the bearer token every REST write (PUT, POST, DELETE, PATCH, and method writes) must carry")
	f.BoolVar(&o.httpAuthReads, "http-auth-reads", false, "ask for the --http-token-file token on REST reads, /metrics and /debug/pprof too (/api/v1/ping stays open)")
	f.StringVar(&o.httpTLSCert, "http-tls-cert", "", "PEM certificate (chain) to serve the REST API over HTTPS with")
	f.StringVar(&o.httpTLSKey, "http-tls-key", "", "PEM private key of --http-tls-cert")
	f.StringVar(&o.httpClientCA, "http-client-ca", "", "PEM CA certificates; REST clients must present a certificate they signed (mutual TLS, needs --http-tls-cert)")
}

// security is what securityOptions resolve to: secrets read and
// certificates loaded.
type security struct {
	mqttUser, mqttPassword string
	mqttTLS                *tls.Config
	httpToken              string
	httpAuthReads          bool
	httpTLS                *tls.Config
	httpClientCerts        bool
}

// loadSecurity checks the security flags against the rest of o and reads
// the files they name.
func loadSecurity(o options) (*security, error) {
	so := o.sec
	sec := &security{httpAuthReads: so.httpAuthReads}
	var err error

	// Embedded broker.
	embedded := o.mqttBroker == "" && (o.mqttListen != "" || so.mqttTLSListen != "")
	if so.mqttUser != "" || so.mqttPasswordFile != "" || so.mqttTLSListen != "" || so.mqttTLSCert != "" || so.mqttTLSKey != "" {
		switch {
		case o.mqttBroker != "":
			return nil, errors.New("--mqtt-listen-username, --mqtt-listen-password-file and --mqtt-tls-* protect the embedded broker, which --mqtt-broker replaces; give the external broker's credentials with --mqtt-username and --mqtt-password instead")
		case !embedded:
			return nil, errors.New("--mqtt-listen-username, --mqtt-listen-password-file, --mqtt-tls-cert and --mqtt-tls-key need the embedded broker: set --mqtt-listen or --mqtt-tls-listen")
		}
	}
	if (so.mqttUser == "") != (so.mqttPasswordFile == "") {
		return nil, errors.New("--mqtt-listen-username and --mqtt-listen-password-file go together: set both, or neither for an open broker")
	}
	if so.mqttUser != "" {
		sec.mqttUser = so.mqttUser
		if sec.mqttPassword, err = readSecret(so.mqttPasswordFile, "--mqtt-listen-password-file"); err != nil {
			return nil, err
		}
	}
	if so.mqttTLSListen != "" || so.mqttTLSCert != "" || so.mqttTLSKey != "" {
		if so.mqttTLSListen == "" || so.mqttTLSCert == "" || so.mqttTLSKey == "" {
			return nil, errors.New("--mqtt-tls-listen, --mqtt-tls-cert and --mqtt-tls-key go together: set all three for a TLS listener")
		}
		if sec.mqttTLS, err = serverTLS(so.mqttTLSCert, so.mqttTLSKey, "--mqtt-tls-cert", "--mqtt-tls-key"); err != nil {
			return nil, err
		}
	}

	// REST API.
	if o.httpListen == "" && (so.httpTokenFile != "" || so.httpAuthReads || so.httpTLSCert != "" || so.httpTLSKey != "" || so.httpClientCA != "") {
		return nil, errors.New("--http-token-file, --http-auth-reads and --http-tls-* protect the REST API, which is off: set --http-listen")
	}
	if so.httpTokenFile != "" {
		if sec.httpToken, err = readSecret(so.httpTokenFile, "--http-token-file"); err != nil {
			return nil, err
		}
	} else if so.httpAuthReads {
		return nil, errors.New("--http-auth-reads needs the token of --http-token-file")
	}
	if (so.httpTLSCert == "") != (so.httpTLSKey == "") {
		return nil, errors.New("--http-tls-cert and --http-tls-key go together: set both to serve HTTPS")
	}
	if so.httpTLSCert != "" {
		if sec.httpTLS, err = serverTLS(so.httpTLSCert, so.httpTLSKey, "--http-tls-cert", "--http-tls-key"); err != nil {
			return nil, err
		}
	}
	if so.httpClientCA != "" {
		if sec.httpTLS == nil {
			return nil, errors.New("--http-client-ca needs HTTPS: set --http-tls-cert and --http-tls-key too")
		}
		pem, err := os.ReadFile(so.httpClientCA)
		if err != nil {
			return nil, fmt.Errorf("read --http-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--http-client-ca %s holds no PEM certificate", so.httpClientCA)
		}
		sec.httpTLS.ClientCAs = pool
		sec.httpTLS.ClientAuth = tls.RequireAndVerifyClientCert
		sec.httpClientCerts = true
	}
	return sec, nil
}

// readSecret reads a password or token from a file; a trailing newline is
// not part of it.
func readSecret(path, flag string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", flag, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("%s %s is empty; write the secret on its first line", flag, path)
	}
	return s, nil
}

// serverTLS loads a certificate and its key for a listener.
func serverTLS(certFile, keyFile, certFlag, keyFlag string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load %s %s and %s %s: %w", certFlag, certFile, keyFlag, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// warnBroker warns about embedded broker listeners (bound addresses, ""
// for none) that reach beyond loopback without a password, or that take
// the password in clear text there.
func (s *security) warnBroker(log *slog.Logger, plain, tlsAddr string) {
	for _, l := range []struct{ addr, flag string }{{plain, "--mqtt-listen"}, {tlsAddr, "--mqtt-tls-listen"}} {
		if l.addr == "" || isLoopback(l.addr) {
			continue
		}
		if s.mqttUser == "" {
			log.Warn(fmt.Sprintf("embedded MQTT broker takes anonymous clients on a non-loopback address: anyone who reaches it can set desired values; set --mqtt-listen-username and --mqtt-listen-password-file, or bind %s to 127.0.0.1", l.flag), "addr", l.addr)
		} else if l.addr == plain {
			log.Warn("embedded MQTT broker takes passwords in clear text on a non-loopback address; have clients use --mqtt-tls-listen, and bind --mqtt-listen to 127.0.0.1 (or set it empty)", "addr", l.addr)
		}
	}
}

// warnREST warns about a REST API (bound address) that reaches beyond
// loopback without authentication, or that takes its token in clear text
// there.
func (s *security) warnREST(log *slog.Logger, addr string) {
	if isLoopback(addr) {
		return
	}
	switch {
	case s.httpToken == "" && !s.httpClientCerts:
		log.Warn("REST API takes writes without authentication on a non-loopback address: anyone who reaches it can set desired values; set --http-token-file (with --http-tls-cert and --http-tls-key), or bind --http-listen to 127.0.0.1", "addr", addr)
	case s.httpToken != "" && s.httpTLS == nil:
		log.Warn("REST API takes its bearer token in clear text on a non-loopback address; set --http-tls-cert and --http-tls-key", "addr", addr)
	}
}

// isLoopback reports whether a listen address (host:port) is reachable
// from this machine only. An empty host, 0.0.0.0 and [::] listen on every
// interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	host, _, _ = strings.Cut(host, "%")
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostSecrets are the secrets plugins are granted: those the cloud sent
// (kept in memory by the link), then the files of --secrets-dir.
type hostSecrets struct {
	dir  hostio.SecretDir
	link *atomic.Pointer[cloudlink.Link] // nil, or nil inside, without --cloud
}

// Key implements hostio.Secrets.
func (s hostSecrets) Key(name, key string) ([]byte, error) {
	if s.link != nil {
		if l := s.link.Load(); l != nil {
			if v, held := l.Secret(name, key); held {
				if v == nil {
					return nil, abi.Errorf(abi.ErrNotFound, "secret %q (from the cloud) has no key %q", name, key)
				}
				return v, nil
			}
		}
	}
	return s.dir.Key(name, key)
}

// newSecrets returns the host's secrets: the cloud's, through link, and
// the folder of --secrets-dir (default STATE-DIR/secrets), warning when
// others than the host's user may read it. The folder need not exist.
func newSecrets(o *options, link *atomic.Pointer[cloudlink.Link], log *slog.Logger) hostSecrets {
	dir := o.secretsDir
	if dir == "" {
		dir = filepath.Join(o.stateDir, "secrets")
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the secrets folder may be read by other users; make it 0700", "dir", dir, "mode", fi.Mode().Perm().String())
	}
	return hostSecrets{dir: hostio.SecretDir(dir), link: link}
}
