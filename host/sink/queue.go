package sink

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/store"
)

// The queue keeps the readings not yet stored by their target, in the
// host's state database under the top-level bucket "sinks":
//
//	sinks/targets          target key → "" (every target that has a queue)
//	sinks/q/<target key>   8-byte big-endian sequence → Record JSON
//
// so that a host restarted, or killed, resumes each target's writes
// where they stopped.
var (
	topSinks      = []byte(store.TopSinks)
	targetsBucket = []byte("targets")
	queuesBucket  = []byte("q")
)

// queue is the on-disk queue of every target, each bounded to limit
// readings: past it the oldest are dropped.
type queue struct {
	db    *bolt.DB
	path  string // of db, for errors
	limit int

	mu sync.Mutex     // held across each change, so that n matches the file
	n  map[string]int // queue length by target key
}

// length returns the number of readings queued for a target.
func (q *queue) length(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n[key]
}

// update and view run fn in a transaction on the sinks bucket, turning a
// bbolt panic on a damaged page into an error.
func (q *queue) update(fn func(top *bolt.Bucket) error) (err error) {
	defer store.Guard(q.path, &err)()
	return q.db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(topSinks)
		if err != nil {
			return err
		}
		return fn(top)
	})
}

func (q *queue) view(fn func(top *bolt.Bucket) error) (err error) {
	defer store.Guard(q.path, &err)()
	return q.db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(topSinks)
		if top == nil {
			return nil
		}
		return fn(top)
	})
}

// load reads the targets that have a queue, and their lengths, and
// returns their keys.
func (q *queue) load() ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n = map[string]int{}
	var keys []string
	err := q.view(func(top *bolt.Bucket) error {
		ts, qs := top.Bucket(targetsBucket), top.Bucket(queuesBucket)
		if ts == nil || qs == nil {
			return nil
		}
		return ts.ForEach(func(k, _ []byte) error {
			n := 0
			if b := qs.Bucket(k); b != nil {
				n = b.Stats().KeyN
			}
			q.n[string(k)] = n
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("sink queue in %s: %w", q.path, err)
	}
	return keys, nil
}

// appended is what one append did to one target's queue.
type appended struct {
	queued  int      // its length after
	dropped []Record // the oldest readings dropped to keep within the limit
}

// append adds recs to the queues of their targets (by target key), in one
// transaction, and drops each queue's oldest readings past the limit.
func (q *queue) append(recs map[string][]Record) (map[string]appended, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]appended, len(recs))
	err := q.update(func(top *bolt.Bucket) error {
		ts, err := top.CreateBucketIfNotExists(targetsBucket)
		if err != nil {
			return err
		}
		qs, err := top.CreateBucketIfNotExists(queuesBucket)
		if err != nil {
			return err
		}
		for key, rs := range recs {
			if err := ts.Put([]byte(key), nil); err != nil {
				return err
			}
			b, err := qs.CreateBucketIfNotExists([]byte(key))
			if err != nil {
				return err
			}
			for i := range rs {
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				v, err := json.Marshal(&rs[i])
				if err != nil {
					return err
				}
				if err := b.Put(seqKey(seq), v); err != nil {
					return err
				}
			}
			n := q.n[key] + len(rs)
			var a appended
			c := b.Cursor()
			for k, v := c.First(); k != nil && n > q.limit; k, v = c.Next() {
				var r Record
				if json.Unmarshal(v, &r) == nil {
					a.dropped = append(a.dropped, r)
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n--
			}
			a.queued = n
			out[key] = a
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sink queue in %s: %w", q.path, err)
	}
	for key, a := range out {
		q.n[key] = a.queued
	}
	return out, nil
}

// peek returns up to n of the oldest readings of a target and the
// sequence of the last one.
func (q *queue) peek(key string, n int) (recs []Record, last uint64, err error) {
	err = q.view(func(top *bolt.Bucket) error {
		qs := top.Bucket(queuesBucket)
		if qs == nil {
			return nil
		}
		b := qs.Bucket([]byte(key))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(recs) < n; k, v = c.Next() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("queued reading %x: %w", k, err)
			}
			recs = append(recs, r)
			last = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("sink queue in %s: %w", q.path, err)
	}
	return recs, last, err
}

// remove deletes a target's readings up to sequence last (a peek's) and
// returns how many it deleted.
func (q *queue) remove(key string, last uint64) (removed int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer func() { q.n[key] -= removed }()
	err = q.update(func(top *bolt.Bucket) error {
		qs := top.Bucket(queuesBucket)
		if qs == nil {
			return nil
		}
		b := qs.Bucket([]byte(key))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= last; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sink queue in %s: %w", q.path, err) // rolled back
	}
	return removed, nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}
