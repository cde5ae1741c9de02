package kv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/store"
)

// TestDamagedPage: a page of a plugin's bucket damaged on disk while the
// database is open makes Get and Set fail with store.ErrCorrupt instead of
// panicking in bbolt (inside a host function, on a plugin's call).
func TestDamagedPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	defer db.Close()
	s, err := Open(db, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 { // enough for a page of its own
		if err := s.Set(fmt.Appendf(nil, "key%03d", i), bytes.Repeat([]byte{'v'}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	var root int
	if err := db.View(func(tx *bolt.Tx) error { root = int(s.b(tx).Root()); return nil }); err != nil || root == 0 {
		t.Fatalf("bucket root page %d: %v", root, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ps := db.Info().PageSize
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, ps), int64(root*ps)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := s.Get([]byte("key000")); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Get on a damaged page: %v, want ErrCorrupt", err)
	}
	if err := s.Set([]byte("key000"), []byte("x")); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Set on a damaged page: %v, want ErrCorrupt", err)
	}
}
