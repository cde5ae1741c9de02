package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// session is one MQTT client connection to a broker, through the host's
// socket (plain TCP, or TLS that the host makes), shared by the devices
// of the instance that reach the broker with the same settings. It
// connects when asked to (ensure), subscribes to the topics its devices
// read, reads what the broker sends only while a call runs (the Go
// runtime in wasm runs nothing between calls), and keeps the connection
// alive with PINGREQ from those calls.
type session struct {
	key      string
	cfg      *protocolConfig
	clientID string
	devs     map[uint32]*device

	conn      *wapper.Conn
	connected bool      // CONNACK accepted
	deadline  time.Time // of the operation in progress, for acks sent while reading
	in        []byte    // received bytes not yet parsed
	nextID    uint16
	lastSend  time.Time
	lastPump  time.Time // when a poll last read the connection
	pingSent  time.Time // zero when no PINGREQ is waiting for its PINGRESP

	subs    map[string]byte           // filters subscribed on this connection: granted QoS, or 0x80 refused
	pending map[uint16][]subscription // SUBSCRIBEs waiting for their SUBACK
	acked   map[uint16]bool           // QoS 1 commands in flight: whether their PUBACK came

	lastErr  error
	failures int
	retryAt  time.Time
}

// newSession returns a session for cfg, with the configured client id or
// one of its own: "wapper-" and 12 random hex digits, unique per instance
// so that two instances never take each other's connection over.
func newSession(key string, cfg *protocolConfig) *session {
	id := cfg.clientID
	if id == "" {
		var b [6]byte
		rand.Read(b[:])
		id = "wapper-" + hex.EncodeToString(b[:])
	}
	return &session{key: key, cfg: cfg, clientID: id, devs: map[uint32]*device{}}
}

// Timing.
const (
	// pollEvery is the time between polls while the broker sends
	// nothing, and so the most a reading waits for the host.
	pollEvery = 100 * time.Millisecond
	// pollDrain bounds the reading one poll does, so that it holds the
	// instance only briefly: the host moves a device waiting longer for
	// its instance to another one.
	pollDrain = 50 * time.Millisecond
	// minPingWait is the least time a PINGRESP is waited for.
	minPingWait = 5 * time.Second
	// retryMin and retryMax bound the wait between failed connects.
	retryMin = 250 * time.Millisecond
	retryMax = 10 * time.Second
)

// live reports whether the connection is up.
func (s *session) live() bool { return s.conn != nil && s.connected }

// ensure connects when there is no connection, unless a connect failed
// a short while ago (then it returns that failure).
func (s *session) ensure(deadline time.Time) error {
	if s.conn != nil {
		return nil
	}
	now := time.Now()
	if s.lastErr != nil && now.Before(s.retryAt) {
		return s.lastErr
	}
	if err := s.connect(deadline); err != nil {
		s.drop(err)
		s.failures++
		s.retryAt = now.Add(min(retryMin<<min(s.failures-1, 8), retryMax))
		return s.lastErr
	}
	s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
	wapper.Log.Info("connected to the MQTT broker", "broker", s.cfg.url, "clientID", s.clientID, "devices", len(s.devs))
	return nil
}

// connect dials the broker, sends CONNECT, waits for CONNACK and
// subscribes to the devices' topics, all before deadline (and within the
// connectionTTL).
func (s *session) connect(deadline time.Time) error {
	if d := time.Now().Add(s.cfg.connectTimeout); d.Before(deadline) {
		deadline = d
	}
	s.deadline = deadline
	conn, err := wapper.Dial(s.cfg.network, s.cfg.addr, time.Until(deadline))
	if err != nil {
		return err
	}
	s.conn, s.connected, s.in = conn, false, s.in[:0]
	s.subs, s.pending, s.acked = map[string]byte{}, map[uint16][]subscription{}, map[uint16]bool{}
	o := connectOptions{clientID: s.clientID, username: s.cfg.username, cleanSession: s.cfg.cleanSession,
		keepAlive: uint16(s.cfg.keepAlive / time.Second)}
	if s.cfg.passwordSecret != "" {
		pw, err := wapper.Secret(s.cfg.passwordSecret)
		if err != nil {
			hint := ""
			if wapper.CodeOf(err) == wapper.ErrNotFound {
				hint = " (a Secret is a file NAME/KEY under wapper-host's --secrets-dir, or a Kubernetes Secret in cloud mode)"
			}
			return wapper.Errorf(wapper.CodeOf(err), "passwordSecret: %v%s", err, hint)
		}
		// A file written with echo ends in a newline that is no part of
		// the password, as wapper-host's own password files.
		if n := len(pw); n > 0 && pw[n-1] == '\n' {
			pw = pw[:n-1]
			if n > 1 && pw[n-2] == '\r' {
				pw = pw[:n-2]
			}
		}
		o.password, o.hasPassword = pw, true
	}
	pkt := encodeConnect(o)
	clear(o.password)
	err = s.send(pkt)
	clear(pkt)
	if err != nil {
		return err
	}
	if err := s.await(deadline, func() bool { return s.connected }, "CONNACK"); err != nil {
		return err
	}
	if err := s.syncSubs(); err != nil {
		return err
	}
	return s.await(deadline, func() bool { return len(s.pending) == 0 }, "SUBACK")
}

// drop closes the connection after err, which becomes the session's
// last error (nil keeps the last one).
func (s *session) drop(err error) {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
		if err != nil && s.connected {
			wapper.Log.Warn("lost the MQTT broker connection", "broker", s.cfg.url, "err", s.wrap(err).Error())
		}
	}
	s.connected, s.in, s.pingSent = false, s.in[:0], time.Time{}
	s.subs, s.pending, s.acked = nil, nil, nil
	if cap(s.in) > 64<<10 {
		s.in = nil
	}
	if err != nil {
		s.lastErr = s.wrap(err)
	}
}

// close ends the session: DISCONNECT, then the socket.
func (s *session) close() {
	if s.live() {
		s.deadline = time.Now().Add(100 * time.Millisecond)
		s.send(disconnectPacket)
	}
	s.drop(nil)
}

// wrap gives an error the broker's address and a code: a closed
// connection is ErrClosed, a protocol violation ErrIO, a refused CONNECT
// ErrDeviceFailed. Errors of the host's I/O calls already name the
// address and carry their code.
func (s *session) wrap(err error) error {
	var ioe *wapper.IOError
	var ce connackError
	var ae *wapper.Error
	switch {
	case errors.As(err, &ioe), errors.As(err, &ae) && !errors.Is(err, errMalformed):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return wapper.Errorf(wapper.ErrClosed, "the MQTT broker %s closed the connection", s.cfg.url)
	case errors.As(err, &ce):
		return wapper.Errorf(wapper.ErrDeviceFailed, "MQTT broker %s: %v", s.cfg.url, err)
	case errors.Is(err, errMalformed):
		return wapper.Errorf(wapper.ErrIO, "MQTT broker %s: %v", s.cfg.url, err)
	}
	return wapper.Errorf(wapper.ErrIO, "MQTT broker %s: %v", s.cfg.url, err)
}

// send writes one packet before the operation's deadline (at least a
// moment from now); a failure drops the connection.
func (s *session) send(b []byte) error {
	if s.conn == nil {
		return s.lastErrOr()
	}
	d := s.deadline
	if soon := time.Now().Add(50 * time.Millisecond); d.Before(soon) {
		d = soon
	}
	s.conn.SetWriteDeadline(d)
	if _, err := s.conn.Write(b); err != nil {
		s.drop(err)
		return s.lastErr
	}
	s.lastSend = time.Now()
	return nil
}

func (s *session) lastErrOr() error {
	if s.lastErr != nil {
		return s.lastErr
	}
	return wapper.Errorf(wapper.ErrClosed, "not connected to the MQTT broker %s", s.cfg.url)
}

// readOnce reads what has arrived, waiting until until at most, and
// handles every whole packet. got is set when bytes came; a timeout is
// not an error. Any other failure drops the connection.
func (s *session) readOnce(until time.Time) (got bool, err error) {
	if s.conn == nil {
		return false, s.lastErrOr()
	}
	if cap(s.in)-len(s.in) < 4096 {
		s.in = append(s.in, make([]byte, 4096)...)[:len(s.in)]
	}
	s.conn.SetReadDeadline(until)
	n, err := s.conn.Read(s.in[len(s.in):cap(s.in)])
	s.in = s.in[:len(s.in)+n]
	if n > 0 {
		if perr := s.parse(); perr != nil {
			s.drop(perr)
			return true, s.lastErr
		}
	}
	if err != nil {
		var ioe *wapper.IOError
		if errors.As(err, &ioe) && ioe.Timeout() {
			return n > 0, nil
		}
		s.drop(err)
		return n > 0, s.lastErr
	}
	return n > 0, nil
}

// parse handles the whole packets in the input and keeps the rest.
func (s *session) parse() error {
	off := 0
	defer func() {
		if s.conn != nil {
			s.in = s.in[:copy(s.in, s.in[off:])]
		}
	}()
	for s.conn != nil {
		pk, n, err := parsePacket(s.in[off:])
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		off += n
		if err := s.handle(pk); err != nil {
			return err
		}
	}
	return nil
}

// await reads until done reports true, or fails at deadline.
func (s *session) await(deadline time.Time, done func() bool, what string) error {
	for !done() {
		if s.conn == nil {
			return s.lastErrOr()
		}
		if !time.Now().Before(deadline) {
			return wapper.Errorf(wapper.ErrTimeout, "the MQTT broker %s sent no %s in time", s.cfg.url, what)
		}
		if _, err := s.readOnce(deadline); err != nil {
			return err
		}
	}
	return nil
}

// pump reads whatever the broker sent, for as long as more keeps coming
// but never past until. busy is set when it stopped while bytes were
// still coming. It sends PINGREQ when the connection has been quiet for
// half the keepAlive, and (un)subscribes what the devices' topics
// changed.
func (s *session) pump(until time.Time) (busy bool, err error) {
	s.deadline, s.lastPump = until, time.Now()
	if err := s.syncSubs(); err != nil {
		return false, err
	}
	got := true
	for err == nil && got && time.Now().Before(until) {
		got, err = s.readOnce(earlier(until, time.Now().Add(time.Millisecond)))
	}
	if err != nil {
		return false, err
	}
	return got, s.keepalive()
}

// earlier returns the earlier of two times.
func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// keepalive sends PINGREQ when due, and drops a connection whose
// PINGRESP is overdue.
func (s *session) keepalive() error {
	ka := s.cfg.keepAlive
	if ka <= 0 || !s.live() {
		return nil
	}
	now := time.Now()
	if !s.pingSent.IsZero() {
		if now.Sub(s.pingSent) > max(ka, minPingWait) {
			s.drop(wapper.Errorf(wapper.ErrTimeout, "the MQTT broker %s sent no PINGRESP within %s", s.cfg.url, max(ka, minPingWait)))
			return s.lastErr
		}
		return nil
	}
	if now.Sub(s.lastSend) >= ka/2 {
		if err := s.send(pingreqPacket); err != nil {
			return err
		}
		s.pingSent = now
	}
	return nil
}

// newID returns the next packet id (never 0).
func (s *session) newID() uint16 {
	s.nextID++
	if s.nextID == 0 {
		s.nextID = 1
	}
	return s.nextID
}

// wanted returns the filters the session's devices read, with the
// highest QoS any of their properties asks for.
func (s *session) wanted() map[string]byte {
	w := map[string]byte{}
	for _, x := range s.devs {
		for _, pr := range x.props {
			if q, ok := w[pr.filter]; !ok || pr.qos > q {
				w[pr.filter] = pr.qos
			}
		}
	}
	return w
}

// syncSubs subscribes the filters the devices read that the connection
// has not subscribed (or asked for), and unsubscribes those no device
// reads any longer. SUBACKs are handled as they come.
func (s *session) syncSubs() error {
	if !s.live() {
		return nil
	}
	want := s.wanted()
	asked := map[string]bool{}
	for _, subs := range s.pending {
		for _, sub := range subs {
			asked[sub.filter] = true
		}
	}
	var add []subscription
	for f, q := range want {
		g, ok := s.subs[f]
		if !asked[f] && (!ok || g != 0x80 && g < q) {
			add = append(add, subscription{filter: f, qos: q})
		}
	}
	var gone []string
	for f := range s.subs {
		if _, ok := want[f]; !ok {
			gone = append(gone, f)
		}
	}
	if len(add) > 0 {
		id := s.newID()
		s.pending[id] = add
		if err := s.send(encodeSubscribe(id, add)); err != nil {
			return err
		}
	}
	if len(gone) > 0 {
		for _, f := range gone {
			delete(s.subs, f)
		}
		if err := s.send(encodeUnsubscribe(s.newID(), gone)); err != nil {
			return err
		}
	}
	return nil
}

// subError returns why the broker refused a filter, or nil.
func (s *session) subError(filter string) error {
	if g, ok := s.subs[filter]; ok && g == 0x80 {
		return wapper.Errorf(wapper.ErrDenied, "the MQTT broker %s refused the subscription to %q (check the broker's ACL for user %q)", s.cfg.url, filter, s.cfg.username)
	}
	return nil
}

// handle acts on one packet from the broker.
func (s *session) handle(pk packet) error {
	if pk.typ == pktConnack {
		if s.connected {
			return fmt.Errorf("%w: a second CONNACK", errMalformed)
		}
		if err := decodeConnack(pk); err != nil {
			return err
		}
		s.connected = true
		return nil
	}
	if !s.connected {
		return fmt.Errorf("%w: packet type %d before CONNACK", errMalformed, pk.typ)
	}
	switch pk.typ {
	case pktPublish:
		p, err := decodePublish(pk)
		if err != nil {
			return err
		}
		switch p.qos {
		case 1:
			if err := s.send(encodeAck(pktPuback, p.id)); err != nil {
				return err
			}
		case 2: // never asked for; answered all the same
			if err := s.send(encodeAck(pktPubrec, p.id)); err != nil {
				return err
			}
		}
		s.dispatch(p.topic, p.payload)
	case pktPubrel:
		id, err := decodeID(pk)
		if err != nil {
			return err
		}
		return s.send(encodeAck(pktPubcomp, id))
	case pktPuback:
		id, err := decodeID(pk)
		if err != nil {
			return err
		}
		if _, ok := s.acked[id]; ok {
			s.acked[id] = true
		}
	case pktSuback:
		id, err := decodeID(pk)
		if err != nil {
			return err
		}
		subs, ok := s.pending[id]
		if !ok {
			return nil
		}
		delete(s.pending, id)
		codes := pk.body[2:]
		if len(codes) != len(subs) {
			return fmt.Errorf("%w: SUBACK with %d return codes for %d filters", errMalformed, len(codes), len(subs))
		}
		for i, sub := range subs {
			s.subs[sub.filter] = codes[i]
			if codes[i] == 0x80 {
				wapper.Log.Warn("the MQTT broker refused a subscription", "broker", s.cfg.url, "topic", sub.filter)
			}
		}
	case pktUnsuback:
	case pktPingresp:
		s.pingSent = time.Time{}
	default:
		return fmt.Errorf("%w: unexpected packet type %d from a broker", errMalformed, pk.typ)
	}
	return nil
}

// publish sends a command and, at QoS 1, waits for the broker's PUBACK.
func (s *session) publish(topic string, payload []byte, qos byte, retain bool, deadline time.Time) error {
	s.deadline = deadline
	if qos == 0 {
		return s.send(encodePublish(topic, payload, 0, retain, 0))
	}
	id := s.newID()
	s.acked[id] = false
	defer func() {
		if s.acked != nil {
			delete(s.acked, id)
		}
	}()
	if err := s.send(encodePublish(topic, payload, qos, retain, id)); err != nil {
		return err
	}
	return s.await(deadline, func() bool { return s.acked[id] }, "PUBACK for the command on "+topic)
}

// dispatch hands a message to every property whose topic it matches.
func (s *session) dispatch(topic string, payload []byte) {
	var doc any
	var derr error
	decoded := false
	for _, x := range s.devs {
		for _, pr := range x.props {
			if !topicMatch(pr.filter, topic) {
				continue
			}
			if !decoded {
				doc, derr = decodeJSON(payload)
				decoded = true
			}
			x.received(pr, topic, doc, derr, payload)
		}
	}
}
