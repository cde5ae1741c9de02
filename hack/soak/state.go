package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// windowWrite is a desired write that a killed host had already written
// through the plugin but not yet recorded as applied: the next run writes
// it again. This is the documented at-most-one-repeat window of
// host/store ("applies every desired value exactly once more at most"):
// devices.applyOne calls the plugin's Write, then Store.MarkApplied, and
// logs "desired value applied" only after MarkApplied. A kill between the
// plugin write and MarkApplied therefore leaves no log line in the killed
// run, and the next run logs the seq once: the log-based doubled check
// cannot see this repeat. The soak finds it instead in the state database
// between runs: the twin's desired seq is pending while the virtual
// plugin's kv store (same bbolt file) already holds that very value, and
// soak values are unique, so the plugin wrote exactly that write.
type windowWrite struct {
	afterRun int // the run that was killed
	device   string
	seq      uint64
	value    string
}

// storedTwin is the part of host/store.Twin the soak reads.
type storedTwin struct {
	Desired    string `json:"desired"`
	DesiredSeq uint64 `json:"desiredSeq"`
	AppliedSeq uint64 `json:"appliedSeq"`
}

// inspectState opens the dead host's state.db read-only and returns the
// pending desired writes the plugin has already performed.
func inspectState(stateDir string, devs []*device, afterRun int) ([]windowWrite, error) {
	path := filepath.Join(stateDir, "state.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	defer db.Close()
	var out []windowWrite
	err = db.View(func(tx *bolt.Tx) error {
		// One top-level bucket per component (see host/store).
		st, kvTop := tx.Bucket([]byte("store")), tx.Bucket([]byte("kv"))
		if st == nil || st.Bucket([]byte("twins")) == nil {
			return nil
		}
		twins := st.Bucket([]byte("twins"))
		var kvs []*bolt.Bucket
		if kvTop != nil {
			if err := kvTop.ForEachBucket(func(name []byte) error {
				kvs = append(kvs, kvTop.Bucket(name))
				return nil
			}); err != nil {
				return err
			}
		}
		for _, d := range devs {
			if !d.virtual {
				continue
			}
			v := twins.Get([]byte(d.key() + "\x00setpoint"))
			if v == nil {
				continue
			}
			var t storedTwin
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("twin of %s: %w", d.key(), err)
			}
			if t.DesiredSeq <= t.AppliedSeq {
				continue
			}
			for _, kb := range kvs {
				if kv := kb.Get([]byte(d.key() + "/setpoint")); kv != nil && string(kv) == t.Desired {
					out = append(out, windowWrite{afterRun: afterRun, device: d.key(), seq: t.DesiredSeq, value: t.Desired})
				}
			}
		}
		return nil
	})
	return out, err
}
