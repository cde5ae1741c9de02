package mqtt

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"unicode/utf8"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/devices"
)

// The twin reports are the bridge's hot path (every device, every report
// cycle), so they are encoded by hand here instead of through reflection.
// The output is byte for byte what encoding/json gives for the same
// message (the tests compare both).

// appendString appends s as a JSON string, escaped as encoding/json does.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s) // rare: let encoding/json escape it
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendBase(b []byte, m BaseMessage) []byte {
	b = append(b, `{"event_id":`...)
	b = appendString(b, m.EventID)
	b = append(b, `,"timestamp":`...)
	return strconv.AppendInt(b, m.Timestamp, 10)
}

// twinText is a twin as the report messages carry it, without pointers:
// what [msgTwin] makes of a [devices.TwinStatus], which the bridge keeps
// per device for the "last" state of the next document.
type twinText struct {
	name        string
	typ         string // metadata.type
	expected    string
	expectedAt  int64 // ms
	hasExpected bool
	actual      string
	actualAt    int64 // ms
	hasActual   bool
}

// newTwinText is the twin msgTwin(t) encodes.
func newTwinText(t *devices.TwinStatus) twinText {
	x := twinText{name: t.Property, typ: twinType(t.Type)}
	if t.Desired != "" {
		x.expected, x.expectedAt, x.hasExpected = t.Desired, t.DesiredTime.UnixMilli(), true
	}
	if !t.ReportedTime.IsZero() {
		x.actual, x.actualAt, x.hasActual = t.Reported, t.ReportedTime.UnixMilli(), true
	}
	return x
}

// appendTwinText appends t as encoding/json does msgTwin's MsgTwin;
// without expected, only the actual value and the type (as twin/update
// carries).
func appendTwinText(b []byte, t *twinText, expected bool) []byte {
	b = append(b, '{')
	if expected && t.hasExpected {
		b = append(b, `"expected":`...)
		b = appendTimedValue(b, t.expected, t.expectedAt)
		b = append(b, ',')
	}
	if t.hasActual {
		b = append(b, `"actual":`...)
		b = appendTimedValue(b, t.actual, t.actualAt)
		b = append(b, ',')
	}
	b = append(b, `"metadata":{`...)
	if t.typ != "" {
		b = append(b, `"type":`...)
		b = appendString(b, t.typ)
	}
	return append(b, "}}"...)
}

// twinTextLen is about the length appendTwinText gives t: exact for
// timestamps of 13 digits and values that need no escape.
func twinTextLen(t *twinText, expected bool) int {
	n := 24 + len(t.typ)
	if expected && t.hasExpected {
		n += 63 + len(t.expected)
	}
	if t.hasActual {
		n += 61 + len(t.actual)
	}
	return n
}

// baseLen is about what appendBase and the twin map's braces take.
const baseLen = 88

// appendTimedValue appends a TwinValue with a value and its time.
func appendTimedValue(b []byte, v string, ms int64) []byte {
	b = append(b, `{"value":`...)
	b = appendString(b, v)
	b = append(b, `,"metadata":{`...)
	if ms != 0 {
		b = append(b, `"timestamp":`...)
		b = strconv.AppendInt(b, ms, 10)
	}
	return append(b, "}}"...)
}

// encodeTwinUpdate encodes a DeviceTwinUpdate of the actual values of
// twins, which are sorted by name.
func encodeTwinUpdate(base BaseMessage, twins []twinText) []byte {
	n := baseLen
	for i := range twins {
		n += len(twins[i].name) + 4 + twinTextLen(&twins[i], false)
	}
	b := make([]byte, 0, n)
	b = appendBase(b, base)
	b = append(b, `,"twin":{`...)
	for i := range twins {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, twins[i].name)
		b = append(b, ':')
		b = appendTwinText(b, &twins[i], false)
	}
	return append(b, "}}"...)
}

// encodeTwinDocument encodes a DeviceTwinDocument of twins, sorted by
// name, each with its previous state from last (also sorted by name; a
// twin not in it has none: null).
func encodeTwinDocument(base BaseMessage, twins, last []twinText) []byte {
	n, j := baseLen, 0
	for i := range twins {
		t := &twins[i]
		n += len(t.name) + 24 + twinTextLen(t, true)
		for j < len(last) && last[j].name < t.name {
			j++
		}
		if j < len(last) && last[j].name == t.name {
			n += twinTextLen(&last[j], true)
		}
	}
	b := make([]byte, 0, n)
	b = appendBase(b, base)
	b = append(b, `,"twin":{`...)
	j = 0
	for i := range twins {
		t := &twins[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t.name)
		b = append(b, `:{"last":`...)
		for j < len(last) && last[j].name < t.name {
			j++
		}
		if j < len(last) && last[j].name == t.name {
			b = appendTwinText(b, &last[j], true)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"current":`...)
		b = appendTwinText(b, t, true)
		b = append(b, '}')
	}
	return append(b, "}}"...)
}

// mergeTwins returns last updated with twins (both sorted by name): in
// place when last has every twin's name, else a new union.
func mergeTwins(last, twins []twinText) []twinText {
	j := 0
	for i := range twins {
		for j < len(last) && last[j].name < twins[i].name {
			j++
		}
		if j == len(last) || last[j].name != twins[i].name {
			return mergeNew(last, twins)
		}
		last[j] = twins[i]
	}
	return last
}

func mergeNew(last, twins []twinText) []twinText {
	out := make([]twinText, 0, len(last)+len(twins))
	i, j := 0, 0
	for i < len(twins) || j < len(last) {
		switch {
		case j == len(last) || (i < len(twins) && twins[i].name < last[j].name):
			out = append(out, twins[i])
			i++
		case i == len(twins) || last[j].name < twins[i].name:
			out = append(out, last[j])
			j++
		default:
			out = append(out, twins[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// twinType is a property type (INT, FLOAT, ..., in any case) as
// metadata.type of a twin: the lower-case spelling edgecore accepts
// ("int", "float", "boolean" or "string"; see [abi.Type.TwinType]).
// Edgecore refuses a twin update whose type it does not know, such as
// "DOUBLE".
func twinType(t string) string {
	ty, _ := abi.ParseType(t)
	return ty.TwinType()
}

// eventID returns a random version-4 UUID for event_id. Event ids only
// need to be unique, not secret, so they come from the fast generator.
func eventID() string {
	var u [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		u[i], u[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}
