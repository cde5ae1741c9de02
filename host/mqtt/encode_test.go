package mqtt

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/host/devices"
)

// TestEncodeMatchesEncodingJSON: the hand-written report encoders give
// exactly what encoding/json gives for the messages msgTwin makes, escapes
// and empty fields included, with the previous report's twins as "last"
// (null for a twin that was not in it).
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	at := time.UnixMilli(1700000000123)
	prev := []devices.TwinStatus{
		{Property: "a<é>", Type: "DOUBLE", Reported: "1", ReportedTime: at},
		{Property: "c", Type: "string", Desired: "x", DesiredTime: at, Reported: "y", ReportedTime: at},
	}
	cur := []devices.TwinStatus{
		{Property: "a<é>", Type: "DOUBLE", Reported: "21.5", ReportedTime: at},
		{Property: "b", Type: "weird", Desired: `a "quoted" <b> & \ back`, Reported: "héllo\n\x01", ReportedTime: at},
		{Property: "c", Type: "STRING", Desired: "z", Reported: "", ReportedTime: at.Add(time.Second)},
	}
	texts := func(ts []devices.TwinStatus) []twinText {
		var out []twinText
		for i := range ts {
			out = append(out, newTwinText(&ts[i]))
		}
		return out
	}
	base := BaseMessage{EventID: "e\"1", Timestamp: -5}
	upd := DeviceTwinUpdate{BaseMessage: base, Twin: map[string]*MsgTwin{}}
	doc := DeviceTwinDocument{BaseMessage: base, Twin: map[string]*TwinDoc{}}
	for _, tw := range cur {
		m := msgTwin(tw)
		upd.Twin[tw.Property] = &MsgTwin{Actual: m.Actual, Metadata: m.Metadata}
		d := &TwinDoc{CurrentState: m}
		for _, p := range prev {
			if p.Property == tw.Property {
				d.LastState = msgTwin(p)
			}
		}
		doc.Twin[tw.Property] = d
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"update", string(encodeTwinUpdate(base, texts(cur))), upd},
		{"document", string(encodeTwinDocument(base, texts(cur), texts(prev))), doc},
		{"empty update", string(encodeTwinUpdate(base, nil)), DeviceTwinUpdate{BaseMessage: base, Twin: map[string]*MsgTwin{}}},
	} {
		want, err := json.Marshal(c.want)
		if err != nil {
			t.Fatal(err)
		}
		if c.got != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", c.what, c.got, want)
		}
	}
}

// TestMergeTwins: the last twins of a device take a report's twins in
// place when it has them all, else as a new union; both stay sorted.
func TestMergeTwins(t *testing.T) {
	tw := func(names ...string) []twinText {
		var out []twinText
		for _, n := range names {
			out = append(out, twinText{name: n, actual: "new"})
		}
		return out
	}
	last := tw("a", "b", "c")
	for i := range last {
		last[i].actual = "old"
	}
	got := mergeTwins(last, tw("a", "c"))
	if &got[0] != &last[0] || got[0].actual != "new" || got[1].actual != "old" || got[2].actual != "new" {
		t.Fatalf("in place: %+v", got)
	}
	got = mergeTwins(tw("b", "d"), tw("a", "c", "e"))
	var names []string
	for _, g := range got {
		names = append(names, g.name)
	}
	if strings.Join(names, ",") != "a,b,c,d,e" {
		t.Fatalf("union: %v", names)
	}
	if got := mergeTwins(nil, tw("a")); len(got) != 1 || got[0].name != "a" {
		t.Fatalf("into nothing: %+v", got)
	}
}

func TestEventIDIsUUIDv4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := eventID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("event id %q: not a fresh version-4 UUID", id)
		}
		seen[id] = true
	}
}

// TestEncodeSizes: the report encoders allocate what they write, not more
// and not in steps (a value of 13-digit timestamps and no escapes).
func TestEncodeSizes(t *testing.T) {
	at := time.UnixMilli(1700000000123)
	ts := []devices.TwinStatus{
		{Property: "temperature", Type: "FLOAT", Reported: "21.53", ReportedTime: at},
		{Property: "setpoint", Type: "INT", Desired: "20", DesiredTime: at, Reported: "19", ReportedTime: at},
	}
	var tw []twinText
	for i := range ts {
		tw = append(tw, newTwinText(&ts[i]))
	}
	slices.SortFunc(tw, byName)
	base := BaseMessage{EventID: eventID(), Timestamp: at.UnixMilli()}
	for what, b := range map[string][]byte{"update": encodeTwinUpdate(base, tw), "document": encodeTwinDocument(base, tw, tw)} {
		if len(b) > cap(b) || cap(b)-len(b) > 16 {
			t.Errorf("%s: %d bytes in a buffer of %d", what, len(b), cap(b))
		}
	}
}
