package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// The state database keeps each component's data under one top-level
// bucket named after the component:
//
//	store      objects, twins, reported, meta (this package)
//	cloudlink  objects, reported, outbox, meta (package host/cloudlink)
//	kv         one bucket per plugin, named after it (package host/kv)
//	sinks      targets, q (package host/sink)
//
// Databases written before this layout held these buckets at the top
// level, under three naming conventions ("objects", "cloudlink.objects",
// "kv/<plugin>", "dmi/devices"); [Open] moves them into place once (see migrate).
const (
	// TopStore is the top-level bucket of this package.
	TopStore = "store"
	// TopCloudlink is the top-level bucket of package host/cloudlink.
	TopCloudlink = "cloudlink"
	// TopKV is the top-level bucket of package host/kv.
	TopKV = "kv"
	// TopDMI is the top-level bucket of package host/dmi.
	TopDMI = "dmi"
	// TopSinks is the top-level bucket of package host/sink.
	TopSinks = "sinks"
)

// topStore is TopStore as a bucket name.
var topStore = []byte(TopStore)

// ErrLayoutConflict is wrapped by the error of Open when a database holds
// a bucket both at its old top-level place and at its nested one, which
// happens only when an older wapper-host wrote to the file after a newer
// one had moved its buckets.
var ErrLayoutConflict = errors.New("state database holds a bucket in both the old and the new layout")

// legacyPlace returns where a top-level bucket of the old layout lives
// now (its component's top-level bucket and its name inside it), or
// ok false when name is not one.
func legacyPlace(name []byte) (top, sub []byte, ok bool) {
	switch string(name) {
	case "objects", "twins", "reported", "meta":
		return topStore, name, true
	case "cloudlink.objects", "cloudlink.reported", "cloudlink.outbox", "cloudlink.meta":
		return []byte(TopCloudlink), name[len("cloudlink."):], true
	}
	if rest, found := bytes.CutPrefix(name, []byte("kv/")); found && len(rest) > 0 {
		return []byte(TopKV), rest, true
	}
	switch string(name) {
	case "dmi/devices", "dmi/models", "dmi/outbox", "dmi/accepted":
		return []byte(TopDMI), name[len("dmi/"):], true
	}
	return nil, nil, false
}

// legacyBuckets lists the top-level buckets of tx in the old layout.
func legacyBuckets(tx *bolt.Tx) [][]byte {
	var out [][]byte
	c := tx.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil { // a key at the top level, not a bucket
			continue
		}
		if _, _, ok := legacyPlace(k); ok {
			out = append(out, bytes.Clone(k))
		}
	}
	return out
}

// migrate moves the old layout's top-level buckets into their
// components' buckets, in the caller's transaction, so that a database is
// either wholly moved or left as it was. It returns how many buckets it
// moved: none on a database already in the new layout.
func migrate(tx *bolt.Tx) (int, error) {
	names := legacyBuckets(tx)
	for _, name := range names {
		top, sub, _ := legacyPlace(name)
		parent, err := tx.CreateBucketIfNotExists(top)
		if err != nil {
			return 0, fmt.Errorf("create bucket %s: %w", top, err)
		}
		if parent.Bucket(sub) != nil {
			return 0, fmt.Errorf("%w: %q and %s/%s; move the file aside or remove one of them with bbolt's tools", ErrLayoutConflict, name, top, sub)
		}
		dst, err := parent.CreateBucket(sub)
		if err != nil {
			return 0, fmt.Errorf("create bucket %s/%s: %w", top, sub, err)
		}
		if err := copyBucket(dst, tx.Bucket(name)); err != nil {
			return 0, fmt.Errorf("move bucket %q to %s/%s: %w", name, top, sub, err)
		}
		if err := tx.DeleteBucket(name); err != nil {
			return 0, fmt.Errorf("remove bucket %q after moving it: %w", name, err)
		}
	}
	return len(names), nil
}

// copyBucket copies src's keys, nested buckets and sequence into dst.
func copyBucket(dst, src *bolt.Bucket) error {
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(bytes.Clone(k), bytes.Clone(v))
		}
		child, err := dst.CreateBucket(bytes.Clone(k))
		if err != nil {
			return err
		}
		return copyBucket(child, src.Bucket(k))
	})
}

// storeBuckets are this package's buckets inside TopStore.
var storeBuckets = [][]byte{bucketObjects, bucketTwins, bucketReported, bucketMeta}

// layoutCurrent reports whether tx needs no migration and holds all of
// this package's buckets.
func layoutCurrent(tx *bolt.Tx) bool {
	if len(legacyBuckets(tx)) > 0 {
		return false
	}
	top := tx.Bucket(topStore)
	if top == nil {
		return false
	}
	for _, name := range storeBuckets {
		if top.Bucket(name) == nil {
			return false
		}
	}
	return true
}

// prepare brings the database at path into the current layout: it moves
// the old layout's buckets and creates this package's, in one
// transaction, and writes nothing when there is nothing to do.
func (s *Store) prepare() error {
	var current bool
	if err := s.view(func(tx *bolt.Tx) error { current = layoutCurrent(tx); return nil }); err != nil {
		return err
	}
	if current {
		return nil
	}
	var moved int
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if moved, err = migrate(tx); err != nil {
			return err
		}
		top, err := tx.CreateBucketIfNotExists(topStore)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", topStore, err)
		}
		for _, name := range storeBuckets {
			if _, err := top.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s/%s: %w", topStore, name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if moved > 0 {
		slog.Info("state database moved to one bucket per component", "path", s.path, "buckets", moved)
	}
	return nil
}

// bucket returns this package's bucket name inside TopStore; Open
// created it.
func bucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	return tx.Bucket(topStore).Bucket(name)
}
