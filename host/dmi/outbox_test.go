package dmi

import (
	"path/filepath"
	"testing"

	"wapper.dev/wapper/host/dmi/dmitest"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	bolt "go.etcd.io/bbolt"
)

func twinReq(name string, kv ...string) *pb.ReportDeviceStatusRequest {
	r := &pb.ReportDeviceStatusRequest{DeviceName: name, DeviceNamespace: "default", ReportedDevice: &pb.DeviceStatus{}}
	for i := 0; i < len(kv); i += 2 {
		r.ReportedDevice.Twins = append(r.ReportedDevice.Twins, &pb.Twin{PropertyName: kv[i], Reported: &pb.TwinProperty{Value: kv[i+1]}})
	}
	return r
}

// TestOutboxCoalescesAndPersists checks the outbox merges twin reports
// per device, replaces states, puts failed reports back first, and
// restores exactly what was pending after a reopen.
func TestOutboxCoalescesAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := openOutbox(db)
	if err != nil {
		t.Fatal(err)
	}
	o.putTwins(twinReq("a", "t", "1", "h", "10"))
	o.putState(&pb.ReportDeviceStatesRequest{DeviceName: "a", DeviceNamespace: "default", State: "ok"})
	o.putTwins(twinReq("b", "t", "5"))
	o.putTwins(twinReq("a", "t", "2")) // merges into a's pending twins, keeps its place
	o.putState(&pb.ReportDeviceStatesRequest{DeviceName: "a", DeviceNamespace: "default", State: "offline"})
	o.putTwins(twinReq("gone", "t", "9"))
	o.drop("default", "gone")
	if n := o.len(); n != 3 {
		t.Fatalf("pending = %d, want 3", n)
	}
	// Reports that failed go back in front, under a newer one if any.
	st, tw := o.pop(), o.pop()
	if st.state == nil || tw.twins == nil || tw.twins.DeviceName != "a" {
		t.Fatalf("popped %v and %v, want a's state change, then a's twins", st, tw)
	}
	o.putTwins(twinReq("a", "h", "11"))
	o.putTwins(twinReq("c", "t", "7"))
	o.requeue(tw)
	o.requeue(st)
	if r := o.pop(); r.state == nil {
		t.Fatalf("after requeue popped %v first, want a's state", r)
	}
	if r := o.pop(); r.twins == nil || r.twins.DeviceName != "a" || len(r.twins.ReportedDevice.Twins) != 2 {
		t.Fatalf("after requeue popped %v second, want a's merged twins", r)
	} else {
		o.requeue(r)
	}
	o.requeue(st)
	if err := o.sync(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o, err = openOutbox(db)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for r := o.pop(); r != nil; r = o.pop() {
		switch {
		case r.twins != nil:
			s := r.twins.DeviceName + ":"
			for _, p := range []string{"t", "h"} {
				v, _, _ := dmitest.TwinValue(r.twins, p)
				s += p + "=" + v + ","
			}
			got = append(got, s)
		default:
			got = append(got, r.state.DeviceName+":"+r.state.State)
		}
	}
	// Never accepted, all are changes: the state first, then the twins by
	// age of their change.
	want := []string{"a:offline", "a:t=2,h=11,", "b:t=5,h=,", "c:t=7,h=,"}
	if len(got) != len(want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("restored %v, want %v", got, want)
		}
	}

	// Sent reports leave the database; one sent before it was ever saved
	// costs no write.
	o.putTwins(twinReq("quick", "t", "1"))
	o.pop()
	if err := o.sync(); err != nil {
		t.Fatal(err)
	}
	if o, err = openOutbox(db); err != nil {
		t.Fatal(err)
	}
	if n := o.len(); n != 0 {
		t.Fatalf("%d reports left in the database after all were sent", n)
	}
	if tx, err := db.Begin(false); err == nil {
		n := tx.Bucket(topBucket).Bucket(outboxBucket).Stats().KeyN
		tx.Rollback()
		if n != 0 {
			t.Fatalf("%d keys left in bucket %s", n, outboxBucket)
		}
	}
}
