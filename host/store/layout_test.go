package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// oldLayout is a database as hosts wrote it before the nested layout:
// top-level bucket → key → value, with the buckets' sequences.
var oldLayout = map[string]map[string]string{
	"objects":  {"file\x00Device\x00default/a": `{"kind":"Device"}`},
	"twins":    {"default/a\x00sp": `{"desired":"21.5","desiredSeq":7}`},
	"reported": {"default/a\x00sp": "\x00\x00\x00\x00\x00\x00\x00\x0120"},
	"meta":     {"desired-seq": "\x00\x00\x00\x00\x00\x00\x00\x07"},

	"cloudlink.objects":  {"Device/default/a": `{"version":"v1","object":{}}`},
	"cloudlink.reported": {"d/default/a": `{"device":{}}`},
	"cloudlink.outbox":   {"d/default/a": "\x00\x00\x00\x00\x00\x00\x00\x03"},
	"cloudlink.meta":     {"seq": "\x00\x00\x00\x00\x00\x00\x00\x03"},

	"kv/modbus":  {"k1": "v1", "k2": "v2"},
	"kv/virtual": {"state": "on"},

	"dmi/devices":  {"default/a": "device"},
	"dmi/models":   {"default/m": "model"},
	"dmi/outbox":   {"t/default/a": "report"},
	"dmi/accepted": {"default/a": "{}"},
}

// newPlace is where each bucket of oldLayout lives now.
var newPlace = map[string][2]string{
	"objects": {"store", "objects"}, "twins": {"store", "twins"}, "reported": {"store", "reported"}, "meta": {"store", "meta"},
	"cloudlink.objects": {"cloudlink", "objects"}, "cloudlink.reported": {"cloudlink", "reported"},
	"cloudlink.outbox": {"cloudlink", "outbox"}, "cloudlink.meta": {"cloudlink", "meta"},
	"kv/modbus": {"kv", "modbus"}, "kv/virtual": {"kv", "virtual"},
	"dmi/devices": {"dmi", "devices"}, "dmi/models": {"dmi", "models"},
	"dmi/outbox": {"dmi", "outbox"}, "dmi/accepted": {"dmi", "accepted"},
}

// writeOldLayout writes oldLayout with raw bbolt, plus a nested bucket and
// a sequence in kv/modbus and a bucket of another component that the
// migration must leave alone.
func writeOldLayout(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for name, kvs := range oldLayout {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range kvs {
				if err := b.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
		}
		mb := tx.Bucket([]byte("kv/modbus"))
		if err := mb.SetSequence(42); err != nil {
			return err
		}
		nested, err := mb.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		if err := nested.Put([]byte("deep"), []byte("value")); err != nil {
			return err
		}
		other, err := tx.CreateBucket([]byte("someone-else"))
		if err != nil {
			return err
		}
		return other.Put([]byte("x"), []byte("y"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// contents returns the keys and values of b, and "bucket" for a nested
// bucket's key.
func contents(b *bolt.Bucket) map[string]string {
	out := map[string]string{}
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil {
			v = []byte("bucket")
		}
		out[string(k)] = string(v)
		return nil
	})
	return out
}

// TestMigrateOldLayout: an old-layout database opens with every bucket
// moved under its component, nothing lost, nothing left at the top level
// but the new components' buckets and buckets the migration does not
// know; the store's API reads the moved data.
func TestMigrateOldLayout(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	writeOldLayout(t, path)

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := s.Objects()
	if err != nil || len(objs) != 1 || objs[0].Source != "file" || objs[0].Key != "default/a" || string(objs[0].JSON) != `{"kind":"Device"}` {
		t.Fatalf("objects %+v, %v", objs, err)
	}
	tw, err := s.Twins("default/a")
	if err != nil || tw["sp"].Desired != "21.5" || tw["sp"].DesiredSeq != 7 || tw["sp"].Reported != "20" || tw["sp"].ReportedTime.UnixNano() != 1 {
		t.Fatalf("twins %+v, %v", tw, err)
	}
	// The desired sequence continues from the moved meta bucket.
	if got, err := s.SetDesired("default/a", "sp", "22", "test", false, time.Unix(1, 0)); err != nil || got.DesiredSeq != 8 {
		t.Fatalf("SetDesired after migration: %+v, %v", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var tops []string
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error { tops = append(tops, string(name)); return nil }); err != nil {
			return err
		}
		if fmt.Sprint(tops) != "[cloudlink dmi kv someone-else store]" {
			return fmt.Errorf("top-level buckets %v", tops)
		}
		for old, want := range oldLayout {
			place := newPlace[old]
			b := tx.Bucket([]byte(place[0])).Bucket([]byte(place[1]))
			if b == nil {
				return fmt.Errorf("bucket %q not moved to %s/%s", old, place[0], place[1])
			}
			got := contents(b)
			if old == "kv/modbus" {
				want = maps.Clone(want)
				want["nested"] = "bucket"
			}
			if old == "meta" {
				want = map[string]string{"desired-seq": "\x00\x00\x00\x00\x00\x00\x00\x08"}
			}
			if old == "twins" {
				var t Twin
				if err := json.Unmarshal([]byte(got["default/a\x00sp"]), &t); err != nil || t.Desired != "22" {
					return fmt.Errorf("twin after SetDesired: %s", got["default/a\x00sp"])
				}
				continue
			}
			if !maps.Equal(got, want) {
				return fmt.Errorf("%s/%s holds %q, want %q", place[0], place[1], got, want)
			}
		}
		mb := tx.Bucket([]byte("kv")).Bucket([]byte("modbus"))
		if mb.Sequence() != 42 || string(mb.Bucket([]byte("nested")).Get([]byte("deep"))) != "value" {
			return fmt.Errorf("kv/modbus sequence %d, nested %q", mb.Sequence(), contents(mb.Bucket([]byte("nested"))))
		}
		if got := contents(tx.Bucket([]byte("someone-else"))); got["x"] != "y" {
			return fmt.Errorf("unknown bucket changed: %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// txID returns the id of the last transaction committed to the database
// at path.
func txID(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	return tx.ID()
}

// TestOpenTwiceWritesNothing: once a database is in the current layout,
// opening it again commits no transaction at all.
func TestOpenTwiceWritesNothing(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("old layout %v", old), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			if old {
				writeOldLayout(t, path)
			}
			for range 2 {
				s, err := Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			before := txID(t, path)
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if after := txID(t, path); after != before {
				t.Fatalf("open committed transactions %d..%d", before, after)
			}
		})
	}
}

// TestMigrateConflict: a bucket in both layouts (an older host wrote the
// file after a newer one moved it) is refused, and the file is unchanged.
func TestMigrateConflict(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("twins"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("{}"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	before := txID(t, path)
	if _, err := Open(dir); !errors.Is(err, ErrLayoutConflict) {
		t.Fatalf("Open = %v, want ErrLayoutConflict", err)
	}
	if after := txID(t, path); after != before {
		t.Fatalf("failed open committed transactions %d..%d", before, after)
	}
}
