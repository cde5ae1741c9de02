package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/host/store"
)

// eventID decodes a message's event_id and checks it is a version-4 UUID.
func eventID(t *testing.T, payload []byte) mqtt.BaseMessage {
	t.Helper()
	var b mqtt.BaseMessage
	if err := json.Unmarshal(payload, &b); err != nil {
		t.Fatalf("%s: %v", payload, err)
	}
	if u, err := uuid.Parse(b.EventID); err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
		t.Fatalf("event_id %q is not a version-4 UUID (%v)", b.EventID, err)
	}
	return b
}

func strp(s string) *string { return &s }

// actual is the twin host/mqtt publishes for a reading.
func actual(value string, ms int64) *mqtt.MsgTwin {
	return &mqtt.MsgTwin{Actual: &mqtt.TwinValue{Value: strp(value), Metadata: &mqtt.ValueMetadata{Timestamp: ms}},
		Metadata: &mqtt.TypeMetadata{Type: "float"}}
}

// The baseline's messages are byte for byte what host/mqtt's types give
// for the same readings (host/mqtt's own encoder matches encoding/json).
func TestNativeMessagesMatchTheHost(t *testing.T) {
	d := newNativeDevice("default/dev-1")
	if d.update != mqtt.TwinUpdateTopic(d.id) || d.doc != mqtt.TwinDocumentTopic(d.id) || d.state != mqtt.StateUpdateTopic(d.id) {
		t.Fatalf("topics %q %q %q differ from host/mqtt's", d.update, d.doc, d.state)
	}
	now := time.UnixMilli(1_700_000_000_123)
	if got := d.read(now); got != 2 {
		t.Fatalf("read took %d readings, want 2", got)
	}
	if d.value[0] == d.value[1] || d.at[0] != now.UnixMilli() {
		t.Fatalf("readings %q at %v", d.value, d.at)
	}

	update := appendTwinUpdate(nil, d, now)
	want, err := json.Marshal(mqtt.DeviceTwinUpdate{BaseMessage: eventID(t, update), Twin: map[string]*mqtt.MsgTwin{
		"a": actual(d.value[0], d.at[0]), "b": actual(d.value[1], d.at[1])}})
	if err != nil {
		t.Fatal(err)
	}
	if string(update) != string(want) {
		t.Fatalf("twin update\n got %s\nwant %s", update, want)
	}

	// The first document has no last state; the next one has the previous
	// report's.
	doc := appendTwinDocument(nil, d, now)
	want, err = json.Marshal(mqtt.DeviceTwinDocument{BaseMessage: eventID(t, doc), Twin: map[string]*mqtt.TwinDoc{
		"a": {CurrentState: actual(d.value[0], d.at[0])}, "b": {CurrentState: actual(d.value[1], d.at[1])}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != string(want) {
		t.Fatalf("first twin document\n got %s\nwant %s", doc, want)
	}
	d.last, d.lastAt, d.seen = d.value, d.at, true
	prev, prevAt := d.value, d.at
	later := now.Add(time.Second)
	d.read(later)
	doc = appendTwinDocument(nil, d, later)
	want, err = json.Marshal(mqtt.DeviceTwinDocument{BaseMessage: eventID(t, doc), Twin: map[string]*mqtt.TwinDoc{
		"a": {LastState: actual(prev[0], prevAt[0]), CurrentState: actual(d.value[0], d.at[0])},
		"b": {LastState: actual(prev[1], prevAt[1]), CurrentState: actual(d.value[1], d.at[1])}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != string(want) {
		t.Fatalf("second twin document\n got %s\nwant %s", doc, want)
	}

	state := appendState(nil, now)
	want, err = json.Marshal(mqtt.DeviceStateUpdate{BaseMessage: eventID(t, state), State: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if string(state) != string(want) {
		t.Fatalf("state update\n got %s\nwant %s", state, want)
	}
}

// The baseline saves what host/store reads back as the reported values,
// and only the values read since the last save.
func TestNativeSavesWhatTheHostStoreReads(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(dir+"/state.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("reported")); return err }); err != nil {
		t.Fatal(err)
	}
	devs := []*nativeDevice{newNativeDevice("default/dev-1"), newNativeDevice("default/dev-0")}
	now := time.UnixMilli(1_700_000_000_123)
	devs[0].read(now)
	if err := flushNative(db, devs); err != nil {
		t.Fatal(err)
	}
	if devs[0].dirty[0] || devs[0].dirty[1] {
		t.Fatal("values still dirty after the save")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	twins, err := st.Twins("default/dev-1")
	if err != nil {
		t.Fatal(err)
	}
	for p, pr := range nativeProps {
		tw := twins[pr.name]
		if tw.Reported != devs[0].value[p] || !tw.ReportedTime.Equal(now) {
			t.Errorf("property %s: store has %q at %v, want %q at %v", pr.name, tw.Reported, tw.ReportedTime, devs[0].value[p], now)
		}
	}
	if twins, err := st.Twins("default/dev-0"); err != nil || len(twins) != 0 {
		t.Errorf("device without readings: %v, %v", twins, err)
	}
}
