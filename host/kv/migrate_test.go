package kv

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/store"
)

// TestStoreAfterMigration: a plugin's "kv/<plugin>" bucket from before the
// one-bucket-per-component layout keeps its keys, and its size counts,
// once host/store has moved it under "kv".
func TestStoreAfterMigration(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "state.db"))
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("kv/p"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("stored"))
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
	s, err := Open(st.DB(), "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get([]byte("k")); err != nil || !ok || string(v) != "stored" {
		t.Fatalf("Get = %q, %v, %v", v, ok, err)
	}
	if n := s.Size(); n != int64(len("k")+len("stored")) {
		t.Fatalf("Size = %d", n)
	}
	other, err := Open(st.DB(), "q", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := other.Get([]byte("k")); err != nil || ok {
		t.Fatalf("another plugin sees the key: %v, %v", ok, err)
	}
}
