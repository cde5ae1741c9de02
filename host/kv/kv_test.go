package kv

import (
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestStorePersistsAndEnforcesLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	s, err := Open(db, "p", 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("a"), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get([]byte("a")); err != nil || !ok || string(v) != "hello" {
		t.Fatalf("get = %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.Get([]byte("missing")); ok {
		t.Fatal("missing key found")
	}
	if err := s.Set([]byte("big"), make([]byte, 200)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over quota: err = %v", err)
	}
	if err := s.Set(nil, []byte("x")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("empty key: err = %v", err)
	}
	// Overwriting counts the difference only.
	if err := s.Set([]byte("a"), make([]byte, 90)); err != nil {
		t.Fatal(err)
	}
	if s.Size() != 91 {
		t.Fatalf("size = %d, want 91", s.Size())
	}
	other, err := Open(db, "q", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := other.Get([]byte("a")); ok {
		t.Fatal("plugins share keys")
	}
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	s, err = Open(db, "p", 100)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 91 {
		t.Fatalf("size after reopen = %d, want 91", s.Size())
	}
	if err := s.Delete([]byte("a")); err != nil || s.Size() != 0 {
		t.Fatalf("delete: %v, size %d", err, s.Size())
	}
	if err := s.Delete([]byte("a")); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
}
