package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MQTT 3.1.1 framing (OASIS standard, 2014), the packets a client needs:
// CONNECT/CONNACK, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PUBLISH at QoS
// 0 and 1 with PUBACK, PINGREQ/PINGRESP and DISCONNECT. Packets are
// encoded into byte slices and decoded from a buffer that may hold a
// partial packet, so that a read cut short by its timeout loses nothing.

// Packet types (the high nibble of the first byte).
const (
	pktConnect     = 1
	pktConnack     = 2
	pktPublish     = 3
	pktPuback      = 4
	pktPubrec      = 5
	pktPubrel      = 6
	pktPubcomp     = 7
	pktSubscribe   = 8
	pktSuback      = 9
	pktUnsubscribe = 10
	pktUnsuback    = 11
	pktPingreq     = 12
	pktPingresp    = 13
	pktDisconnect  = 14
)

// maxPacket bounds the remaining length of a packet the plugin accepts
// from a broker: device payloads are small JSON documents, and the
// instance's memory is limited.
const maxPacket = 1 << 20

// maxRemaining is the largest remaining length MQTT can encode.
const maxRemaining = 268435455

// errMalformed marks a packet that breaks the protocol; the connection is
// then dropped.
var errMalformed = errors.New("malformed MQTT packet")

// packet is one decoded fixed header and its body (variable header and
// payload).
type packet struct {
	typ   byte
	flags byte
	body  []byte
}

// appendVarint appends MQTT's remaining-length encoding of n.
func appendVarint(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// appendString appends a length-prefixed UTF-8 string (or binary data).
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// frame returns the packet with its fixed header.
func frame(typ, flags byte, body []byte) []byte {
	b := make([]byte, 0, 5+len(body))
	b = append(b, typ<<4|flags&0x0f)
	b = appendVarint(b, len(body))
	return append(b, body...)
}

// connectOptions are the fields of a CONNECT packet.
type connectOptions struct {
	clientID     string
	username     string
	password     []byte
	hasPassword  bool
	keepAlive    uint16 // seconds; 0 turns keepalive off
	cleanSession bool
}

// encodeConnect returns a CONNECT packet for protocol level 4 (3.1.1).
func encodeConnect(o connectOptions) []byte {
	var flags byte
	if o.cleanSession {
		flags |= 0x02
	}
	if o.username != "" {
		flags |= 0x80
	}
	if o.hasPassword {
		flags |= 0x40
	}
	b := appendString(nil, "MQTT")
	b = append(b, 4, flags)
	b = binary.BigEndian.AppendUint16(b, o.keepAlive)
	b = appendString(b, o.clientID)
	if o.username != "" {
		b = appendString(b, o.username)
	}
	if o.hasPassword {
		b = appendString(b, string(o.password))
	}
	return frame(pktConnect, 0, b)
}

// encodePublish returns a PUBLISH packet; id is used for QoS 1 only.
func encodePublish(topic string, payload []byte, qos byte, retain bool, id uint16) []byte {
	flags := qos << 1
	if retain {
		flags |= 1
	}
	b := appendString(make([]byte, 0, 4+len(topic)+len(payload)), topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return frame(pktPublish, flags, append(b, payload...))
}

// encodeAck returns a PUBACK (or another packet that carries only a
// packet id).
func encodeAck(typ byte, id uint16) []byte {
	return frame(typ, 0, binary.BigEndian.AppendUint16(nil, id))
}

// subscription is one topic filter with its requested QoS.
type subscription struct {
	filter string
	qos    byte
}

// encodeSubscribe returns a SUBSCRIBE packet.
func encodeSubscribe(id uint16, subs []subscription) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	for _, s := range subs {
		b = appendString(b, s.filter)
		b = append(b, s.qos)
	}
	return frame(pktSubscribe, 0x02, b)
}

// encodeUnsubscribe returns an UNSUBSCRIBE packet.
func encodeUnsubscribe(id uint16, filters []string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	for _, f := range filters {
		b = appendString(b, f)
	}
	return frame(pktUnsubscribe, 0x02, b)
}

// Packets without a body.
var (
	pingreqPacket    = []byte{pktPingreq << 4, 0}
	disconnectPacket = []byte{pktDisconnect << 4, 0}
)

// parsePacket decodes the first packet in b. It returns n = 0 and no
// error when b holds only part of a packet, and an error wrapping
// errMalformed when b cannot start a valid one. The packet's body aliases
// b.
func parsePacket(b []byte) (pk packet, n int, err error) {
	if len(b) < 2 {
		return packet{}, 0, nil
	}
	size, mult := 0, 1
	i := 1
	for {
		if i >= len(b) {
			return packet{}, 0, nil
		}
		if i > 4 {
			return packet{}, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
		}
		c := b[i]
		size += int(c&0x7f) * mult
		mult *= 128
		i++
		if c&0x80 == 0 {
			break
		}
	}
	if size > maxPacket {
		return packet{}, 0, fmt.Errorf("%w: a packet of %d bytes exceeds the plugin's limit of %d", errMalformed, size, maxPacket)
	}
	if len(b) < i+size {
		return packet{}, 0, nil
	}
	pk = packet{typ: b[0] >> 4, flags: b[0] & 0x0f, body: b[i : i+size]}
	if pk.typ == 0 || pk.typ == 15 {
		return packet{}, 0, fmt.Errorf("%w: reserved packet type %d", errMalformed, pk.typ)
	}
	return pk, i + size, nil
}

// readString reads a length-prefixed string from b.
func readString(b []byte) (s string, rest []byte, err error) {
	if len(b) < 2 {
		return "", nil, fmt.Errorf("%w: string length cut short", errMalformed)
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, fmt.Errorf("%w: string of %d bytes cut short", errMalformed, n)
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// publish is a decoded PUBLISH packet.
type publish struct {
	topic   string
	qos     byte
	retain  bool
	dup     bool
	id      uint16
	payload []byte
}

// decodePublish decodes a PUBLISH packet's flags and body. The payload
// aliases the body.
func decodePublish(pk packet) (publish, error) {
	p := publish{qos: pk.flags >> 1 & 3, retain: pk.flags&1 != 0, dup: pk.flags&8 != 0}
	if p.qos == 3 {
		return p, fmt.Errorf("%w: PUBLISH with QoS 3", errMalformed)
	}
	topic, rest, err := readString(pk.body)
	if err != nil {
		return p, err
	}
	if err := checkTopicName(topic); err != nil {
		return p, fmt.Errorf("%w: PUBLISH topic: %v", errMalformed, err)
	}
	p.topic = topic
	if p.qos > 0 {
		if len(rest) < 2 {
			return p, fmt.Errorf("%w: PUBLISH without a packet id", errMalformed)
		}
		p.id = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	p.payload = rest
	return p, nil
}

// decodeID decodes a packet whose body starts with a packet id (PUBACK,
// SUBACK, UNSUBACK).
func decodeID(pk packet) (uint16, error) {
	if len(pk.body) < 2 {
		return 0, fmt.Errorf("%w: packet type %d without a packet id", errMalformed, pk.typ)
	}
	return binary.BigEndian.Uint16(pk.body), nil
}

// connackError is a broker's refusal of CONNECT.
type connackError byte

func (e connackError) Error() string {
	switch e {
	case 1:
		return "refused the connection: unacceptable protocol version (it does not speak MQTT 3.1.1)"
	case 2:
		return "refused the connection: client identifier rejected (set another clientID)"
	case 3:
		return "refused the connection: server unavailable"
	case 4:
		return "refused the connection: bad user name or password (check username and the passwordSecret)"
	case 5:
		return "refused the connection: not authorized (check username and the passwordSecret)"
	}
	return fmt.Sprintf("refused the connection: return code %d", byte(e))
}

// decodeConnack returns nil for an accepted connection, a connackError
// for a refusal, or a protocol error.
func decodeConnack(pk packet) error {
	if len(pk.body) != 2 {
		return fmt.Errorf("%w: CONNACK of %d bytes", errMalformed, len(pk.body))
	}
	if rc := pk.body[1]; rc != 0 {
		return connackError(rc)
	}
	return nil
}

// checkTopicName checks a topic a message is published to: not empty,
// valid UTF-8 without NUL, and no wildcards.
func checkTopicName(t string) error {
	if err := checkTopic(t); err != nil {
		return err
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("topic %q has a wildcard (+ or #); a message is published to one topic", t)
	}
	return nil
}

// checkTopicFilter checks a topic filter a client subscribes to: '#'
// only as the whole last level, '+' only as a whole level.
func checkTopicFilter(f string) error {
	if err := checkTopic(f); err != nil {
		return err
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: # must be the last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("topic filter %q: + and # must each be a whole level", f)
		}
	}
	return nil
}

func checkTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty topic")
	case len(t) > 65535:
		return errors.New("topic longer than 65535 bytes")
	case !utf8.ValidString(t):
		return fmt.Errorf("topic %q is not valid UTF-8", t)
	case strings.ContainsRune(t, 0):
		return fmt.Errorf("topic %q contains NUL", t)
	}
	return nil
}

// topicMatch reports whether topic matches filter (MQTT 3.1.1 §4.7):
// '+' matches one level, '#' the rest (and the parent level), and a
// filter starting with a wildcard does not match a topic starting with
// '$'.
func topicMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a".
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}
