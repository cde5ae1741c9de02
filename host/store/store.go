// Package store is wapper-host's state in bbolt: the resources each source
// last applied (devices, models, plugins), the device twins (desired and
// reported values with timestamps) and the journal of applied desired
// writes, so that after a crash the host resumes from its own state and
// applies every desired value exactly once more at most.
//
// Desired values are written durably (one fsync per change). Reported
// values change at every collect cycle, so they are kept in memory by the
// caller and saved in batches with [Store.SaveReported].
//
// The same *bolt.DB also holds the data of package host/cloudlink and the
// plugins' kv buckets (package host/kv), each under one top-level bucket
// named after its component ([TopStore], [TopCloudlink], [TopKV]); [Open]
// moves the buckets of a database written before that layout into place,
// in one transaction. [Store.DB] returns the database.
//
// [Open] checks the file before using it (its page structure, bbolt's own
// consistency check, and that every stored object and twin decodes) and
// refuses a damaged one with an error wrapping [ErrCorrupt]; it never
// repairs or empties it. A page damaged later makes the accessors return
// such an error instead of panicking (see [Guard]).
package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketObjects = []byte("objects")
	bucketTwins   = []byte("twins")
	// bucketReported holds the reported values (8-byte big-endian Unix
	// nanoseconds, then the value), apart from the JSON twins, so that
	// saving thousands of readings does not decode and encode each twin.
	bucketReported = []byte("reported")
	bucketMeta     = []byte("meta")
	keySeq         = []byte("desired-seq")
)

// Store is the host's bbolt state. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (or creates) state.db in dir. It checks the database first
// and refuses a damaged one with an error wrapping [ErrCorrupt] that names
// the file and says what to do; it never repairs or empties it. A database
// written before the layout of one top-level bucket per component is
// moved into it, in one transaction; opening one already laid out writes
// nothing.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "state.db")
	if err := checkFile(path, openTimeout); err != nil {
		return nil, err
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	if err := check(db, path); err != nil {
		return nil, errors.Join(err, closeErr(db, path))
	}
	s := &Store{db: db, path: path}
	if err := s.prepare(); err != nil {
		return nil, errors.Join(fmt.Errorf("prepare state database %s: %w", path, err), closeErr(db, path))
	}
	return s, nil
}

// closeErr closes db after a failed Open, wrapping the error, if any.
func closeErr(db *bolt.DB, path string) error {
	if err := db.Close(); err != nil {
		return fmt.Errorf("close state database %s: %w", path, err)
	}
	return nil
}

// openTimeout bounds the wait for the file lock.
const openTimeout = 5 * time.Second

// openDB opens the bbolt file, taking its lock. checkFile has checked the
// pages bbolt reads here (the meta pages and the freelist).
func openDB(path string) (db *bolt.DB, err error) {
	defer Guard(path, &err)()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open state database %s: %w (is another wapper-host using this --state-dir?)", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, corruptError(path, err)
	case err != nil:
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return db, nil
}

// view and update run fn in a bbolt transaction, turning a panic of bbolt
// on a page damaged since Open checked the file into an ErrCorrupt error
// (bbolt rolls the transaction back as the panic passes).
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer Guard(s.path, &err)()
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer Guard(s.path, &err)()
	return s.db.Update(fn)
}

// Path returns the database's file.
func (s *Store) Path() string { return s.path }

// DB returns the underlying database, shared with host/kv.
func (s *Store) DB() *bolt.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Object is one stored resource: its source, kind, key (namespace/name, or
// name for cluster-scoped kinds) and JSON body.
type Object struct {
	Source string
	Kind   string
	Key    string
	JSON   []byte
}

func objectKey(source, kind, key string) []byte {
	return []byte(source + "\x00" + kind + "\x00" + key)
}

// ReplaceObjects stores objs as the complete set of source, removing what
// the source no longer has, in one transaction.
func (s *Store) ReplaceObjects(source string, objs []Object) error {
	// In key order, bbolt appends to its pages instead of splitting them
	// all over the tree: at 50,000 devices that is minutes against
	// seconds.
	slices.SortFunc(objs, func(a, b Object) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key))
	})
	return s.update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketObjects)
		prefix := []byte(source + "\x00")
		c := b.Cursor()
		var stale [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			stale = append(stale, append([]byte(nil), k...))
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for _, o := range objs {
			if err := b.Put(objectKey(source, o.Kind, o.Key), o.JSON); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpdateObjects stores put and removes the objects del names (by Source,
// Kind and Key), in one transaction: one disk sync for a whole change.
func (s *Store) UpdateObjects(put, del []Object) error {
	return s.update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketObjects)
		for _, o := range del {
			if err := b.Delete(objectKey(o.Source, o.Kind, o.Key)); err != nil {
				return fmt.Errorf("remove %s %s of source %s: %w", o.Kind, o.Key, o.Source, err)
			}
		}
		for _, o := range put {
			if err := b.Put(objectKey(o.Source, o.Kind, o.Key), o.JSON); err != nil {
				return fmt.Errorf("save %s %s of source %s: %w", o.Kind, o.Key, o.Source, err)
			}
		}
		return nil
	})
}

// Objects returns every stored object, ordered by source, kind and key.
func (s *Store) Objects() ([]Object, error) {
	var out []Object
	err := s.view(func(tx *bolt.Tx) error {
		return bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			parts := bytes.SplitN(k, []byte{0}, 3)
			if len(parts) != 3 {
				return nil
			}
			out = append(out, Object{Source: string(parts[0]), Kind: string(parts[1]), Key: string(parts[2]), JSON: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}

// Twin is the stored twin of one device property.
type Twin struct {
	// Desired is the desired value as KubeEdge twin text; DesiredSeq
	// numbers it (host-wide, increasing) and DesiredTime is when it was set.
	Desired     string    `json:"desired,omitempty"`
	DesiredSeq  uint64    `json:"desiredSeq,omitempty"`
	DesiredTime time.Time `json:"desiredTime,omitzero"`
	// DesiredBy names who set it (a source, "rest", "mqtt").
	DesiredBy string `json:"desiredBy,omitempty"`
	// SpecDesired is the last desired value seen in the Device spec, so a
	// re-read manifest does not overwrite a value set later over REST/MQTT.
	SpecDesired string `json:"specDesired,omitempty"`
	// AppliedSeq is the DesiredSeq last written to the device successfully.
	AppliedSeq  uint64    `json:"appliedSeq,omitempty"`
	AppliedTime time.Time `json:"appliedTime,omitzero"`
	// Reported is the last value read from the device.
	Reported     string    `json:"reported,omitempty"`
	ReportedTime time.Time `json:"reportedTime,omitzero"`
}

// Pending reports whether a desired value waits to be written.
func (t Twin) Pending() bool { return t.DesiredSeq > t.AppliedSeq }

func twinKey(device, prop string) []byte { return []byte(device + "\x00" + prop) }

// Twins returns the stored twins of a device ("namespace/name"), by property.
func (s *Store) Twins(device string) (map[string]Twin, error) {
	out := map[string]Twin{}
	prefix := []byte(device + "\x00")
	err := s.view(func(tx *bolt.Tx) error {
		c := bucket(tx, bucketTwins).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var t Twin
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("twin %q: %w", k, err)
			}
			out[string(k[len(prefix):])] = t
		}
		c = bucket(tx, bucketReported).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) < 8 {
				continue
			}
			name := string(k[len(prefix):])
			t := out[name]
			t.Reported, t.ReportedTime = string(v[8:]), time.Unix(0, int64(beUint64(v[:8])))
			out[name] = t
		}
		return nil
	})
	return out, err
}

func getTwin(b *bolt.Bucket, k []byte) (Twin, error) {
	var t Twin
	if v := b.Get(k); v != nil {
		if err := json.Unmarshal(v, &t); err != nil {
			return t, fmt.Errorf("twin %q: %w", k, err)
		}
	}
	return t, nil
}

func putTwin(b *bolt.Bucket, k []byte, t Twin) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// SetDesired durably records a new desired value and returns the twin with
// its new sequence number. With spec set, the value came from the Device
// spec and is recorded as SpecDesired too.
func (s *Store) SetDesired(device, prop, value, by string, spec bool, now time.Time) (Twin, error) {
	var t Twin
	err := s.update(func(tx *bolt.Tx) error {
		meta := bucket(tx, bucketMeta)
		var seq uint64
		if v := meta.Get(keySeq); len(v) == 8 {
			seq = beUint64(v)
		}
		seq++
		if err := meta.Put(keySeq, bePut(seq)); err != nil {
			return err
		}
		b := bucket(tx, bucketTwins)
		k := twinKey(device, prop)
		var err error
		if t, err = getTwin(b, k); err != nil {
			return err
		}
		t.Desired, t.DesiredSeq, t.DesiredTime, t.DesiredBy = value, seq, now, by
		if spec {
			t.SpecDesired = value
		}
		return putTwin(b, k, t)
	})
	return t, err
}

// MarkApplied durably records that desired value seq was written to the
// device. A seq older than the one recorded is ignored.
func (s *Store) MarkApplied(device, prop string, seq uint64, now time.Time) error {
	return s.update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketTwins)
		k := twinKey(device, prop)
		t, err := getTwin(b, k)
		if err != nil {
			return err
		}
		if seq <= t.AppliedSeq {
			return nil
		}
		t.AppliedSeq, t.AppliedTime = seq, now
		return putTwin(b, k, t)
	})
}

// Reported is one reported value to save.
type Reported struct {
	Device, Property string
	Value            string
	Time             time.Time
}

// SaveReported saves a batch of reported values in one transaction.
func (s *Store) SaveReported(batch []Reported) error {
	if len(batch) == 0 {
		return nil
	}
	type kv struct{ k, v []byte }
	puts := make([]kv, len(batch))
	// Every key and value in one allocation (bbolt keeps them until the
	// commit): a flush saves tens of thousands.
	size := 0
	for _, r := range batch {
		size += len(r.Device) + 1 + len(r.Property) + 8 + len(r.Value)
	}
	arena := make([]byte, 0, size)
	for i, r := range batch {
		k := len(arena)
		arena = append(append(append(arena, r.Device...), 0), r.Property...)
		v := len(arena)
		arena = binary.BigEndian.AppendUint64(arena, uint64(r.Time.UnixNano()))
		arena = append(arena, r.Value...)
		puts[i] = kv{arena[k:v:v], arena[v:len(arena):len(arena)]}
	}
	// bbolt inserts in key order fastest.
	slices.SortFunc(puts, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	return s.update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketReported)
		for _, p := range puts {
			if err := b.Put(p.k, p.v); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteTwins removes every twin of a device.
func (s *Store) DeleteTwins(device string) error {
	prefix := []byte(device + "\x00")
	return s.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketTwins, bucketReported} {
			c := bucket(tx, name).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func bePut(v uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}
