package mqtt

import (
	"encoding/json"
	"regexp"
	"testing"
)

// TestEncodeMatchesEncodingJSON: the hand-written report encoders give
// exactly what encoding/json gives, escapes and empty fields included.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	yes := true
	twins := []*MsgTwin{
		nil,
		{},
		{Metadata: &TypeMetadata{}},
		{Actual: &TwinValue{Value: strp("21.5"), Metadata: &ValueMetadata{Timestamp: 1700000000123}}, Metadata: &TypeMetadata{Type: "DOUBLE"}},
		{Expected: &TwinValue{Value: strp(`a "quoted" <b> & \ back`)}, Actual: &TwinValue{Metadata: &ValueMetadata{}}},
		{Expected: &TwinValue{Value: strp("héllo\n\x01")}, Optional: &yes, ExpectedVersion: &TwinVersion{1, 2}, ActualVersion: &TwinVersion{3, 4}},
	}
	base := BaseMessage{EventID: "e\"1", Timestamp: -5}
	var named []namedTwin
	upd := DeviceTwinUpdate{BaseMessage: base, Twin: map[string]*MsgTwin{}}
	doc := DeviceTwinDocument{BaseMessage: base, Twin: map[string]*TwinDoc{}}
	for i, tw := range twins {
		name := string(rune('a'+i)) + "<é>"
		var last *MsgTwin
		if i > 0 {
			last = twins[i-1]
		}
		named = append(named, namedTwin{name: name, twin: tw, last: last})
		upd.Twin[name] = tw
		doc.Twin[name] = &TwinDoc{LastState: last, CurrentState: tw}
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"update", string(encodeTwinUpdate(base, named)), upd},
		{"document", string(encodeTwinDocument(base, named)), doc},
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
