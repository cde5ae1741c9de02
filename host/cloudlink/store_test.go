package cloudlink

import (
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/linkproto"
)

// TestStoreAfterMigration: a state database written by a host from before
// the one-bucket-per-component layout ("cloudlink.*" top-level buckets)
// keeps the link's objects, outbox and report sequence once host/store has
// moved them under "cloudlink".
func TestStoreAfterMigration(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	report, err := json.Marshal(linkproto.Report{Plugin: &linkproto.PluginReport{Name: "virtual"}})
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]map[string][]byte{
		"cloudlink.objects":  {"Device/default/a": []byte(`{"version":"v7","object":{}}`)},
		"cloudlink.reported": {"p/virtual": report},
		"cloudlink.outbox":   {"p/virtual": binary.BigEndian.AppendUint64(nil, 5)},
		"cloudlink.meta":     {"seq": binary.BigEndian.AppendUint64(nil, 5)},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for name, kvs := range old {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range kvs {
				if err := b.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := initBuckets(st.DB()); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory(st.DB())
	if err != nil || len(inv) != 1 || inv["Device/default/a"] != "v7" {
		t.Fatalf("inventory %v, %v", inv, err)
	}
	pending, err := pendingReports(st.DB(), nil, 10)
	if err != nil || len(pending) != 1 || pending[0].Seq != 5 || pending[0].Plugin == nil || pending[0].Plugin.Name != "virtual" {
		t.Fatalf("outbox %+v, %v", pending, err)
	}
	// The sequence continues from the moved meta bucket.
	err = st.DB().Update(func(tx *bolt.Tx) error {
		return putReport(tx, linkproto.Report{Plugin: &linkproto.PluginReport{Name: "modbus"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	pending, err = pendingReports(st.DB(), map[uint64]bool{5: true}, 10)
	if err != nil || len(pending) != 1 || pending[0].Seq != 6 || pending[0].Plugin.Name != "modbus" {
		t.Fatalf("new report %+v, %v", pending, err)
	}
	if n := outboxLen(st.DB()); n != 2 {
		t.Fatalf("outbox holds %d reports, want 2", n)
	}
}
