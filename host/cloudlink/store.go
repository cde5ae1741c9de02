package cloudlink

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/linkproto"
)

// Buckets in the host's bbolt database, inside the top-level bucket
// store.TopCloudlink.
var (
	bucketObjects  = []byte("objects")  // linkproto key → stored
	bucketReported = []byte("reported") // report key → latest linkproto.Report (Seq unset)
	bucketOutbox   = []byte("outbox")   // report key → seq (8 bytes) not yet acknowledged
	bucketMeta     = []byte("meta")     // "seq" → last report seq
	keySeq         = []byte("seq")
	topCloudlink   = []byte(store.TopCloudlink)
)

// bucket returns the link's bucket called name; initBuckets created it.
func bucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	return tx.Bucket(topCloudlink).Bucket(name)
}

// stored is one object received from the cloud.
type stored struct {
	Version string          `json:"version"`
	Object  json.RawMessage `json:"object"`
}

func initBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(topCloudlink)
		if err != nil {
			return fmt.Errorf("cloudlink: create bucket %s: %w", topCloudlink, err)
		}
		for _, b := range [][]byte{bucketObjects, bucketReported, bucketOutbox, bucketMeta} {
			if _, err := top.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("cloudlink: create bucket %s/%s: %w", topCloudlink, b, err)
			}
		}
		return nil
	})
}

// inventory returns key → version of every stored object.
func inventory(db *bolt.DB) (map[string]string, error) {
	inv := map[string]string{}
	err := db.View(func(tx *bolt.Tx) error {
		return bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			var s stored
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("cloudlink: stored object %s: %w", k, err)
			}
			inv[string(k)] = s.Version
			return nil
		})
	})
	return inv, err
}

// applyItems stores a batch and reports how many objects changed. An item
// whose version is already stored is skipped: nothing is applied twice.
func applyItems(db *bolt.DB, items []linkproto.Item) (changed int, err error) {
	err = db.Update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketObjects)
		for _, it := range items {
			k := []byte(it.Key)
			cur := b.Get(k)
			if it.Deleted() {
				if cur != nil {
					if err := b.Delete(k); err != nil {
						return err
					}
					changed++
				}
				continue
			}
			if cur != nil {
				var s stored
				if json.Unmarshal(cur, &s) == nil && s.Version == it.Version {
					continue
				}
			}
			v, err := json.Marshal(stored{Version: it.Version, Object: it.Object})
			if err != nil {
				return err
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
			changed++
		}
		return nil
	})
	return changed, err
}

// loadObjects decodes every stored object.
func loadObjects(db *bolt.DB) (Set, error) {
	var set Set
	err := db.View(func(tx *bolt.Tx) error {
		return bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			var s stored
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("cloudlink: stored object %s: %w", k, err)
			}
			return set.add(string(k), s.Object)
		})
	})
	return set, err
}

func reportKey(r linkproto.Report) string {
	switch {
	case r.Device != nil:
		return "d/" + r.Device.Namespace + "/" + r.Device.Name
	case r.Plugin != nil:
		return "p/" + r.Plugin.Name
	}
	return ""
}

// putReport merges r into the latest report of its object and marks it for
// sending with a new sequence number.
func putReport(tx *bolt.Tx, r linkproto.Report) error {
	k := []byte(reportKey(r))
	rep := bucket(tx, bucketReported)
	if r.Device != nil {
		if old := rep.Get(k); old != nil {
			var prev linkproto.Report
			if json.Unmarshal(old, &prev) == nil && prev.Device != nil {
				merged := prev.Device.Merge(*r.Device)
				r.Device = &merged
			}
		}
	}
	r.Seq = 0
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := rep.Put(k, v); err != nil {
		return err
	}
	meta := bucket(tx, bucketMeta)
	var seq uint64
	if b := meta.Get(keySeq); len(b) == 8 {
		seq = binary.BigEndian.Uint64(b)
	}
	seq++
	sb := binary.BigEndian.AppendUint64(nil, seq)
	if err := meta.Put(keySeq, sb); err != nil {
		return err
	}
	return bucket(tx, bucketOutbox).Put(k, sb)
}

// pendingReports returns up to max outbox reports not in skip (seqs
// already in flight), each with its outbox seq.
func pendingReports(db *bolt.DB, skip map[uint64]bool, max int) ([]linkproto.Report, error) {
	var out []linkproto.Report
	err := db.View(func(tx *bolt.Tx) error {
		rep := bucket(tx, bucketReported)
		c := bucket(tx, bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(v)
			if skip[seq] {
				continue
			}
			var r linkproto.Report
			if err := json.Unmarshal(rep.Get(k), &r); err != nil {
				return fmt.Errorf("cloudlink: outbox entry %s: %w", k, err)
			}
			r.Seq = seq
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// ackReports removes acknowledged reports from the outbox, unless a newer
// report of the same object replaced them meanwhile.
func ackReports(db *bolt.DB, keys map[uint64]string, seqs []uint64) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketOutbox)
		for _, s := range seqs {
			k, ok := keys[s]
			if !ok {
				continue
			}
			if v := b.Get([]byte(k)); len(v) == 8 && binary.BigEndian.Uint64(v) == s {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func outboxLen(db *bolt.DB) int {
	n := 0
	_ = db.View(func(tx *bolt.Tx) error {
		n = bucket(tx, bucketOutbox).Stats().KeyN
		return nil
	})
	return n
}
