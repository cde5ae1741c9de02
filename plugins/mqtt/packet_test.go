package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The encoders against bytes worked out from the MQTT 3.1.1 standard.
func TestEncode(t *testing.T) {
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"CONNECT clean, no credentials", encodeConnect(connectOptions{clientID: "ab", keepAlive: 60, cleanSession: true}),
			"10 0e 0004 4d515454 04 02 003c 0002 6162"},
		{"CONNECT user and password", encodeConnect(connectOptions{clientID: "c", username: "u", password: []byte("pw"), hasPassword: true, keepAlive: 0}),
			"10 14 0004 4d515454 04 c0 0000 0001 63 0001 75 0002 7077"},
		{"PUBLISH QoS 0", encodePublish("a/b", []byte("hi"), 0, false, 0), "30 07 0003 612f62 6869"},
		{"PUBLISH QoS 1 retained", encodePublish("a", []byte("x"), 1, true, 0x0102), "33 06 0001 61 0102 78"},
		{"PUBACK", encodeAck(pktPuback, 7), "40 02 0007"},
		{"SUBSCRIBE", encodeSubscribe(10, []subscription{{"a/+", 1}, {"b/#", 0}}), "82 0e 000a 0003 612f2b 01 0003 622f23 00"},
		{"UNSUBSCRIBE", encodeUnsubscribe(11, []string{"a"}), "a2 05 000b 0001 61"},
		{"PINGREQ", pingreqPacket, "c0 00"},
		{"DISCONNECT", disconnectPacket, "e0 00"},
	} {
		if want := unhex(t, c.want); !bytes.Equal(c.got, want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, want)
		}
	}
}

func TestVarint(t *testing.T) {
	for n, want := range map[int]string{0: "00", 127: "7f", 128: "8001", 16383: "ff7f", 16384: "808001", 2097152: "80808001", maxRemaining: "ffffff7f"} {
		if got := appendVarint(nil, n); !bytes.Equal(got, unhex(t, want)) {
			t.Errorf("varint %d = % x, want %s", n, got, want)
		}
	}
	// A large PUBLISH survives the trip.
	payload := bytes.Repeat([]byte("z"), 20000)
	b := encodePublish("t", payload, 0, false, 0)
	pk, n, err := parsePacket(b)
	if err != nil || n != len(b) {
		t.Fatalf("parse: %d %v", n, err)
	}
	p, err := decodePublish(pk)
	if err != nil || p.topic != "t" || !bytes.Equal(p.payload, payload) {
		t.Fatalf("decode: %v %q", err, p.topic)
	}
}

// A packet split at every byte parses only once whole, and two packets in
// one read come out one after the other.
func TestParsePartial(t *testing.T) {
	b := append(encodePublish("dev/state", []byte(`{"t":1}`), 1, false, 5), unhex(t, "d0 00 90 03 0001 01")...)
	first := len(encodePublish("dev/state", []byte(`{"t":1}`), 1, false, 5))
	for i := 0; i < first; i++ {
		if _, n, err := parsePacket(b[:i]); n != 0 || err != nil {
			t.Fatalf("%d bytes: n=%d err=%v", i, n, err)
		}
	}
	pk, n, err := parsePacket(b)
	if err != nil || n != first || pk.typ != pktPublish {
		t.Fatalf("first: %+v %d %v", pk, n, err)
	}
	p, err := decodePublish(pk)
	if err != nil || p.topic != "dev/state" || p.qos != 1 || p.id != 5 || string(p.payload) != `{"t":1}` {
		t.Fatalf("publish %+v %v", p, err)
	}
	pk, n2, err := parsePacket(b[n:])
	if err != nil || n2 != 2 || pk.typ != pktPingresp {
		t.Fatalf("second: %+v %d %v", pk, n2, err)
	}
	pk, n3, err := parsePacket(b[n+n2:])
	if err != nil || n3 != 5 || pk.typ != pktSuback {
		t.Fatalf("third: %+v %d %v", pk, n3, err)
	}
	if id, err := decodeID(pk); err != nil || id != 1 || pk.body[2] != 1 {
		t.Fatalf("suback %d %v % x", id, err, pk.body)
	}
}

func TestParseMalformed(t *testing.T) {
	for name, b := range map[string]string{
		"remaining length of 5 bytes": "30 ff ff ff ff 01",
		"over the plugin's limit":     "30 80 80 80 01",
		"reserved type 0":             "00 00",
		"reserved type 15":            "f0 00",
	} {
		if _, _, err := parsePacket(unhex(t, b)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	for name, b := range map[string]string{
		"topic cut short":        "30 03 0005 61",
		"QoS 1 without id":       "32 03 0001 61",
		"QoS 3":                  "36 03 0001 61",
		"wildcard in topic name": "30 03 0001 23",
		"empty topic":            "30 02 0000",
	} {
		pk, _, err := parsePacket(unhex(t, b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := decodePublish(pk); !errors.Is(err, errMalformed) {
			t.Errorf("%s: decode err %v", name, err)
		}
	}
}

func TestConnack(t *testing.T) {
	pk, _, _ := parsePacket(unhex(t, "20 02 00 00"))
	if err := decodeConnack(pk); err != nil {
		t.Fatal(err)
	}
	pk, _, _ = parsePacket(unhex(t, "20 02 00 04"))
	var ce connackError
	if err := decodeConnack(pk); !errors.As(err, &ce) || !strings.Contains(err.Error(), "bad user name or password") {
		t.Fatalf("refusal: %v", err)
	}
	pk, _, _ = parsePacket(unhex(t, "20 01 00"))
	if err := decodeConnack(pk); !errors.Is(err, errMalformed) {
		t.Fatalf("short CONNACK: %v", err)
	}
}

func TestTopicMatch(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+/+", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
	} {
		if got := topicMatch(c.filter, c.topic); got != c.want {
			t.Errorf("topicMatch(%q, %q) = %v", c.filter, c.topic, got)
		}
	}
}

func TestTopicChecks(t *testing.T) {
	for _, f := range []string{"a/#", "+", "#", "a/+/b", "room1/deviceinfo/json"} {
		if err := checkTopicFilter(f); err != nil {
			t.Errorf("filter %q: %v", f, err)
		}
	}
	for _, f := range []string{"", "a/#/b", "a+", "a/b#", "a\x00b"} {
		if err := checkTopicFilter(f); err == nil {
			t.Errorf("filter %q accepted", f)
		}
	}
	if err := checkTopicName("a/+"); err == nil {
		t.Errorf("a topic name with a wildcard was accepted")
	}
}
