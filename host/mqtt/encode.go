package mqtt

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"unicode/utf8"

	"wapper.dev/wapper/abi"
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

func appendTwinValue(b []byte, v *TwinValue) []byte {
	b = append(b, '{')
	comma := false
	if v.Value != nil {
		b = append(b, `"value":`...)
		b = appendString(b, *v.Value)
		comma = true
	}
	if v.Metadata != nil {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `"metadata":{`...)
		if v.Metadata.Timestamp != 0 {
			b = append(b, `"timestamp":`...)
			b = strconv.AppendInt(b, v.Metadata.Timestamp, 10)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendVersion(b []byte, v *TwinVersion) []byte {
	b = append(b, `{"cloud":`...)
	b = strconv.AppendInt(b, v.CloudVersion, 10)
	b = append(b, `,"edge":`...)
	b = strconv.AppendInt(b, v.EdgeVersion, 10)
	return append(b, '}')
}

// appendMsgTwin appends t as JSON; nil is null.
func appendMsgTwin(b []byte, t *MsgTwin) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	n := len(b)
	field := func(name string) {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if t.Expected != nil {
		field("expected")
		b = appendTwinValue(b, t.Expected)
	}
	if t.Actual != nil {
		field("actual")
		b = appendTwinValue(b, t.Actual)
	}
	if t.Optional != nil {
		field("optional")
		b = strconv.AppendBool(b, *t.Optional)
	}
	if t.Metadata != nil {
		field("metadata")
		b = append(b, '{')
		if t.Metadata.Type != "" {
			b = append(b, `"type":`...)
			b = appendString(b, t.Metadata.Type)
		}
		b = append(b, '}')
	}
	if t.ExpectedVersion != nil {
		field("expected_version")
		b = appendVersion(b, t.ExpectedVersion)
	}
	if t.ActualVersion != nil {
		field("actual_version")
		b = appendVersion(b, t.ActualVersion)
	}
	return append(b, '}')
}

// namedTwin is one entry of a twin map, in the key order encoding/json
// uses (sorted).
type namedTwin struct {
	name string
	twin *MsgTwin
	last *MsgTwin // documents only
}

// encodeTwinUpdate encodes a DeviceTwinUpdate whose twins are sorted by
// name.
func encodeTwinUpdate(base BaseMessage, twins []namedTwin) []byte {
	return encodeTwins(base, twins, 128, func(b []byte, t namedTwin) []byte { return appendMsgTwin(b, t.twin) })
}

// encodeTwinDocument encodes a DeviceTwinDocument whose twins are sorted
// by name (twin is the current state, last the previous one).
func encodeTwinDocument(base BaseMessage, twins []namedTwin) []byte {
	return encodeTwins(base, twins, 256, func(b []byte, t namedTwin) []byte {
		b = append(b, `{"last":`...)
		b = appendMsgTwin(b, t.last)
		b = append(b, `,"current":`...)
		b = appendMsgTwin(b, t.twin)
		return append(b, '}')
	})
}

// encodeTwins encodes a message with a "twin" map, each value written by
// value.
func encodeTwins(base BaseMessage, twins []namedTwin, size int, value func([]byte, namedTwin) []byte) []byte {
	b := make([]byte, 0, 64+len(twins)*size)
	b = appendBase(b, base)
	b = append(b, `,"twin":{`...)
	for i, t := range twins {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t.name)
		b = append(b, ':')
		b = value(b, t)
	}
	return append(b, "}}"...)
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
