// Package kv is the per-plugin persistent key-value store behind the ABI's
// kv_get, kv_set and kv_delete: one bbolt bucket per plugin, named after
// it, inside the state database's top-level bucket store.TopKV, with the
// size limits of the ABI enforced.
package kv

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/store"
)

// ErrTooLarge is returned when a key, a value or the whole store would
// exceed its limit.
var ErrTooLarge = errors.New("kv: limit exceeded")

// topKV is the top-level bucket holding every plugin's bucket.
var topKV = []byte(store.TopKV)

// Store is one plugin's store.
type Store struct {
	db     *bolt.DB
	bucket []byte // inside topKV
	max    int64

	mu   sync.Mutex // serialises Set and Delete, keeping size in step with the bucket
	size int64      // bytes of keys and values held
}

// Open returns the store of the named plugin inside db, creating its
// bucket. maxBytes bounds keys plus values (0: abi.MaxKVBytes).
func Open(db *bolt.DB, plugin string, maxBytes int64) (*Store, error) {
	if maxBytes <= 0 {
		maxBytes = abi.MaxKVBytes
	}
	if plugin == "" {
		return nil, errors.New("open kv store: empty plugin name")
	}
	s := &Store{db: db, bucket: []byte(plugin), max: maxBytes}
	err := s.update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(topKV)
		if err != nil {
			return err
		}
		b, err := top.CreateBucketIfNotExists(s.bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			s.size += int64(len(k) + len(v))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open kv store of plugin %q: %w", plugin, err)
	}
	return s, nil
}

// b returns the plugin's bucket; Open created it.
func (s *Store) b(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket(topKV).Bucket(s.bucket)
}

// view and update run fn in a bbolt transaction, turning a panic of bbolt
// on a damaged page into an error (see store.Guard).
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer store.Guard(s.db.Path(), &err)()
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer store.Guard(s.db.Path(), &err)()
	return s.db.Update(fn)
}

// Get returns a copy of the value, and whether the key exists.
func (s *Store) Get(key []byte) (val []byte, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		if v := s.b(tx).Get(key); v != nil {
			val, ok = append([]byte(nil), v...), true
		}
		return nil
	})
	return val, ok, err
}

// Set stores a value.
func (s *Store) Set(key, val []byte) error {
	if len(key) == 0 || len(key) > abi.MaxKVKey || len(val) > abi.MaxKVValue {
		return fmt.Errorf("%w: key %d bytes (1–%d), value %d bytes (≤ %d)", ErrTooLarge, len(key), abi.MaxKVKey, len(val), abi.MaxKVValue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(func(tx *bolt.Tx) error {
		b := s.b(tx)
		delta := int64(len(key) + len(val))
		if old := b.Get(key); old != nil {
			delta -= int64(len(key) + len(old))
		}
		if s.size+delta > s.max {
			return fmt.Errorf("%w: store would hold %d bytes, limit %d", ErrTooLarge, s.size+delta, s.max)
		}
		if err := b.Put(key, val); err != nil {
			return err
		}
		s.size += delta
		return nil
	})
}

// Delete removes a key; a missing key is not an error.
func (s *Store) Delete(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(func(tx *bolt.Tx) error {
		b := s.b(tx)
		old := b.Get(key)
		if old == nil {
			return nil
		}
		n := int64(len(key) + len(old))
		if err := b.Delete(key); err != nil {
			return err
		}
		s.size -= n
		return nil
	})
}

// Size returns the bytes of keys and values held.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}
