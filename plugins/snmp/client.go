package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
)

// session is a device's SNMP session: gosnmp's state (request ids, the
// SNMPv3 engine it discovered and the keys localized to it) and the
// host's connected UDP socket to the agent.
//
// gosnmp sends and receives through GoSNMP.Conn, any net.Conn, so the
// session gives it the host's socket (wapper.Dial "udp", a net.Conn with
// deadlines). gosnmp allocates its receive buffer and request ids only in
// Connect, which also dials: the session calls Connect once on a
// placeholder address (a loopback UDP "connection" that sends nothing:
// inside wasm, Go's net package answers it in memory without any host
// call, and natively it is a socket that is closed at once), then swaps
// in the host's socket. Nothing in the request path starts a goroutine.
type session struct {
	cfg *protocolConfig
	// g is nil until the first request, and again after an
	// authentication failure or a timeout, so that rotated secrets are
	// read again.
	g    *gosnmp.GoSNMP
	conn *wapper.Conn
	// ok is set while the agent answers; lastErr is the last failure, for
	// the device state.
	ok      bool
	lastErr error
}

// placeholder is the address gosnmp's Connect "dials" before the
// session swaps in the host's socket (the discard port: nothing is sent).
const (
	placeholderHost = "127.0.0.1"
	placeholderPort = 9
)

// readSecret reads a secret granted by grants.secrets, without the
// trailing newline an editor leaves in a file.
func readSecret(what, ref string) (string, error) {
	b, err := wapper.Secret(ref)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", wapper.Errorf(wapper.ErrInvalid, "%s: secret %s is empty", what, ref)
	}
	return s, nil
}

// newGoSNMP makes gosnmp's state for the device, reading its secrets.
func newGoSNMP(c *protocolConfig) (*gosnmp.GoSNMP, error) {
	g := &gosnmp.GoSNMP{
		Target: placeholderHost, Port: placeholderPort, Transport: "udp",
		Version: c.version, Timeout: c.timeout, Retries: c.retries,
		MaxOids: c.maxOids, MaxRepetitions: c.maxRepetitions,
	}
	if c.version != gosnmp.Version3 {
		g.Community = c.community
		if c.communitySecret != "" {
			s, err := readSecret("communitySecret", c.communitySecret)
			if err != nil {
				return nil, err
			}
			g.Community = s
		}
		return g, nil
	}
	usm := &gosnmp.UsmSecurityParameters{
		UserName: c.user, AuthenticationProtocol: c.authProto, PrivacyProtocol: c.privProto,
	}
	if c.authSecret != "" {
		s, err := readSecret("authPasswordSecret", c.authSecret)
		if err != nil {
			return nil, err
		}
		usm.AuthenticationPassphrase = s
	}
	if c.privSecret != "" {
		s, err := readSecret("privPasswordSecret", c.privSecret)
		if err != nil {
			return nil, err
		}
		usm.PrivacyPassphrase = s
	}
	g.SecurityModel, g.MsgFlags, g.SecurityParameters, g.ContextName = gosnmp.UserSecurityModel, c.level, usm, c.context
	return g, nil
}

// connect makes gosnmp ready to send (see session): Connect on the
// placeholder, whose socket is closed at once.
func connect(g *gosnmp.GoSNMP) error {
	if err := g.Connect(); err != nil {
		return err
	}
	g.Conn.Close()
	g.Conn = nil
	return nil
}

// do runs op (a get, set or walk) on the session, opening it first. A
// request on a socket that was already open is retried once on a fresh
// one when the old one turns out to be gone (its instance was replaced).
func (s *session) do(op func(g *gosnmp.GoSNMP) (*gosnmp.SnmpPacket, error)) (*gosnmp.SnmpPacket, error) {
	if s.g == nil {
		g, err := newGoSNMP(s.cfg)
		if err == nil {
			if err = connect(g); err != nil {
				err = wapper.Errorf(wapper.ErrInvalid, "SNMP session for %s: %v", s.cfg.target(), err)
			}
		}
		if err != nil {
			return nil, s.fail(err)
		}
		s.g = g
	}
	fresh := false
	if s.conn == nil {
		conn, err := wapper.Dial("udp", s.cfg.target(), s.cfg.timeout)
		if err != nil {
			return nil, s.fail(err)
		}
		s.conn, fresh = conn, true
	}
	s.g.Conn = s.conn
	pkt, err := op(s.g)
	if err != nil && !fresh && gone(err) {
		s.dropConn()
		conn, derr := wapper.Dial("udp", s.cfg.target(), s.cfg.timeout)
		if derr != nil {
			return nil, s.fail(derr)
		}
		s.conn = conn
		s.g.Conn = conn
		pkt, err = op(s.g)
	}
	if err != nil {
		return nil, s.fail(s.explain(err))
	}
	s.ok, s.lastErr = true, nil
	return pkt, nil
}

// gone reports whether err means the host socket is gone: closed, or an
// unknown handle after the instance that opened it was replaced.
func gone(err error) bool {
	var ioe *wapper.IOError
	return errors.As(err, &ioe) && (ioe.Code == wapper.ErrClosed || ioe.Code == wapper.ErrNotFound)
}

func (s *session) fail(err error) error {
	s.ok, s.lastErr = false, err
	return err
}

func (s *session) dropConn() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.g != nil {
		s.g.Conn = nil
	}
}

// close ends the session.
func (s *session) close() {
	s.dropConn()
	s.g = nil
}

// explain turns a failed request into an error with a code and a
// message that says what to check. Transport failures drop the socket;
// SNMPv3 failures and timeouts the whole session, so that its secrets
// are read again (a rotated password or community applies).
func (s *session) explain(err error) error {
	c := s.cfg
	target := "udp://" + c.target()
	var ioe *wapper.IOError
	if errors.As(err, &ioe) && ioe.Code != wapper.ErrTimeout {
		s.dropConn()
		return fmt.Errorf("%s: %w", target, ioe)
	}
	var ae *wapper.Error
	if ioe == nil && errors.As(err, &ae) {
		return err // the plugin's own, such as a walk that grew too large
	}
	who := "community"
	if c.version == gosnmp.Version3 {
		who = fmt.Sprintf("SNMPv3 user %q", c.user)
	}
	v3 := func(format string, args ...any) error {
		s.close()
		return wapper.Errorf(wapper.ErrDeviceFailed, "%s: %s: "+format, append([]any{target, who}, args...)...)
	}
	switch {
	case errors.Is(err, gosnmp.ErrWrongDigest), strings.Contains(err.Error(), "not authentic"):
		return v3("authentication failed (wrong digest): the password in secret %s or authProtocol %s does not match the agent's", c.authSecret, c.authProto)
	case errors.Is(err, gosnmp.ErrDecryption):
		return v3("the agent could not decrypt the request: the password in secret %s or privProtocol %s does not match the agent's", c.privSecret, c.privProto)
	case errors.Is(err, gosnmp.ErrUnknownUsername):
		return v3("the agent does not know this user")
	case errors.Is(err, gosnmp.ErrUnknownSecurityLevel):
		return v3("the agent does not allow securityLevel %s for this user", levelNames[c.level])
	case errors.Is(err, gosnmp.ErrNotInTimeWindow), errors.Is(err, gosnmp.ErrUnknownEngineID),
		errors.Is(err, gosnmp.ErrUnknownReportPDU), errors.Is(err, gosnmp.ErrUnknownSecurityModels),
		errors.Is(err, gosnmp.ErrInvalidMsgs), errors.Is(err, gosnmp.ErrUnknownPDUHandlers):
		return v3("the agent refused the request: %v", err)
	case ioe != nil, errors.Is(err, gosnmp.ErrMaxRetriesExceeded), strings.Contains(err.Error(), "timeout"):
		s.close() // a wrong community gets no answer: read the secret again
		hint := "check address, port and version"
		if c.version != gosnmp.Version3 {
			hint += ", and the community: agents do not answer a wrong one"
		} else {
			hint += ", and the user's securityLevel and passwords"
		}
		return wapper.Errorf(wapper.ErrTimeout, "%s: no answer within %v (%d tries): %s", target, c.timeout, c.retries+1, hint)
	}
	return wapper.Errorf(wapper.ErrIO, "%s: %v", target, err)
}

// status checks the error status of a response.
func status(pkt *gosnmp.SnmpPacket, op string) error {
	if pkt.Error == gosnmp.NoError {
		return nil
	}
	what := ""
	if i := int(pkt.ErrorIndex); i >= 1 && i <= len(pkt.Variables) {
		what = " (" + objectName(pkt.Variables[i-1].Name) + ")"
	}
	return wapper.Errorf(wapper.ErrDeviceFailed, "the agent refused the %s: %s%s", op, errorName(pkt.Error), what)
}

// errorName spells an error status as RFC 3416 does.
func errorName(e gosnmp.SNMPError) string {
	s := e.String()
	if s == "" {
		return fmt.Sprintf("error %d", e)
	}
	return strings.ToLower(s[:1]) + s[1:]
}
