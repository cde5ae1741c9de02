package dmi

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// outboxBucket holds the reports not yet accepted by edgecore.
var outboxBucket = []byte("dmi/outbox")

// report kinds, also the first byte of an outbox key.
const (
	kindTwins = 't' // ReportDeviceStatus
	kindState = 's' // ReportDeviceStates
)

// report is one pending request to edgecore.
type report struct {
	key   string
	seq   uint64
	twins *pb.ReportDeviceStatusRequest
	state *pb.ReportDeviceStatesRequest
}

func (r *report) kind() byte {
	if r.twins != nil {
		return kindTwins
	}
	return kindState
}

func reportKey(kind byte, namespace, name string) string {
	return string(kind) + "/" + namespace + "/" + name
}

// outbox queues reports in arrival order and keeps only the newest per
// device and kind: a twin report merges into the pending one property by
// property, a state replaces it. Edgecore keeps only the last value of a
// twin, so older values would only cost rate-limited calls. sync saves
// the changes since the last sync to bbolt in one transaction.
type outbox struct {
	db *bolt.DB

	mu     sync.Mutex // guards the fields below
	seq    uint64
	order  *list.List               // of *report, oldest first
	byKey  map[string]*list.Element // key → element of order
	dirty  map[string]bool          // keys changed since the last sync
	stored map[string]bool          // keys saved in the bucket
	notify chan struct{}            // has a token when the queue may be non-empty
}

// openOutbox loads the reports saved in db.
func openOutbox(db *bolt.DB) (*outbox, error) {
	o := &outbox{db: db, order: list.New(), byKey: map[string]*list.Element{}, dirty: map[string]bool{}, stored: map[string]bool{}, notify: make(chan struct{}, 1)}
	var loaded []*report
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(outboxBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			r, err := decodeReport(string(k), v)
			if err != nil {
				return fmt.Errorf("outbox entry %q: %w", k, err)
			}
			loaded = append(loaded, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open DMI report outbox: %w (remove bucket %s from the state database to start afresh)", err, outboxBucket)
	}
	sort.Slice(loaded, func(i, j int) bool { return loaded[i].seq < loaded[j].seq })
	for _, r := range loaded {
		o.stored[r.key] = true
		o.byKey[r.key] = o.order.PushBack(r)
		o.seq = max(o.seq, r.seq)
	}
	o.wake()
	return o, nil
}

func decodeReport(key string, v []byte) (*report, error) {
	if len(v) < 9 || len(key) == 0 {
		return nil, fmt.Errorf("truncated")
	}
	r := &report{key: key, seq: binary.BigEndian.Uint64(v)}
	var m proto.Message
	switch v[8] {
	case kindTwins:
		r.twins = &pb.ReportDeviceStatusRequest{}
		m = r.twins
	case kindState:
		r.state = &pb.ReportDeviceStatesRequest{}
		m = r.state
	default:
		return nil, fmt.Errorf("unknown kind %q", v[8])
	}
	if err := proto.Unmarshal(v[9:], m); err != nil {
		return nil, err
	}
	return r, nil
}

func encodeReport(r *report) ([]byte, error) {
	var m proto.Message = r.state
	if r.twins != nil {
		m = r.twins
	}
	b := binary.BigEndian.AppendUint64(nil, r.seq)
	b = append(b, r.kind())
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

func (o *outbox) wake() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// putTwins queues a twin report, merging it into a pending one.
func (o *outbox) putTwins(req *pb.ReportDeviceStatusRequest) {
	o.put(&report{key: reportKey(kindTwins, req.DeviceNamespace, req.DeviceName), twins: req}, false)
}

// putState queues a state report, replacing a pending one.
func (o *outbox) putState(req *pb.ReportDeviceStatesRequest) {
	o.put(&report{key: reportKey(kindState, req.DeviceNamespace, req.DeviceName), state: req}, false)
}

// requeue puts back a report that could not be sent, ahead of the others
// unless a newer report for the same device arrived meanwhile.
func (o *outbox) requeue(r *report) { o.put(r, true) }

func (o *outbox) put(r *report, front bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dirty[r.key] = true
	if el, ok := o.byKey[r.key]; ok {
		cur := el.Value.(*report)
		if front {
			// cur is newer: fold the older twins under it, and take the
			// older report's place at the front.
			if cur.twins != nil && r.twins != nil {
				cur.twins = mergeTwins(r.twins, cur.twins)
			}
			cur.seq = min(cur.seq, r.seq)
			o.order.MoveToFront(el)
			return
		}
		if cur.twins != nil && r.twins != nil {
			cur.twins = mergeTwins(cur.twins, r.twins)
		} else {
			cur.state = r.state
		}
		return
	}
	if front {
		o.byKey[r.key] = o.order.PushFront(r)
	} else {
		o.seq++
		r.seq = o.seq
		o.byKey[r.key] = o.order.PushBack(r)
	}
	o.wake()
}

// mergeTwins returns newer with the twins of older that newer lacks.
func mergeTwins(older, newer *pb.ReportDeviceStatusRequest) *pb.ReportDeviceStatusRequest {
	have := map[string]bool{}
	for _, t := range newer.GetReportedDevice().GetTwins() {
		have[t.PropertyName] = true
	}
	out := proto.Clone(newer).(*pb.ReportDeviceStatusRequest)
	if out.ReportedDevice == nil {
		out.ReportedDevice = &pb.DeviceStatus{}
	}
	for _, t := range older.GetReportedDevice().GetTwins() {
		if !have[t.PropertyName] {
			out.ReportedDevice.Twins = append(out.ReportedDevice.Twins, t)
		}
	}
	return out
}

// pop takes the oldest report, or nil.
func (o *outbox) pop() *report {
	o.mu.Lock()
	defer o.mu.Unlock()
	el := o.order.Front()
	if el == nil {
		return nil
	}
	r := o.order.Remove(el).(*report)
	delete(o.byKey, r.key)
	o.dirty[r.key] = true
	return r
}

// drop forgets the pending reports of a device.
func (o *outbox) drop(namespace, name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range []byte{kindTwins, kindState} {
		key := reportKey(k, namespace, name)
		if el, ok := o.byKey[key]; ok {
			o.order.Remove(el)
			delete(o.byKey, key)
			o.dirty[key] = true
		}
	}
}

// len is the number of pending reports.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.order.Len()
}

// sync saves the changes since the last sync in one transaction.
func (o *outbox) sync() error {
	o.mu.Lock()
	if len(o.dirty) == 0 {
		o.mu.Unlock()
		return nil
	}
	puts := map[string][]byte{}
	var dels []string
	for k := range o.dirty {
		if el, ok := o.byKey[k]; ok {
			v, err := encodeReport(el.Value.(*report))
			if err != nil {
				o.mu.Unlock()
				return err
			}
			puts[k] = v
		} else if o.stored[k] {
			dels = append(dels, k)
		}
	}
	o.dirty = map[string]bool{}
	o.mu.Unlock()
	if len(puts) == 0 && len(dels) == 0 {
		return nil // sent before it was ever saved
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(outboxBucket)
		for _, k := range dels {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, v := range puts {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Mark everything dirty again so that the next sync retries.
		o.mu.Lock()
		for k := range puts {
			o.dirty[k] = true
		}
		for _, k := range dels {
			o.dirty[k] = true
		}
		o.mu.Unlock()
		return fmt.Errorf("save DMI report outbox: %w", err)
	}
	o.mu.Lock()
	for k := range puts {
		o.stored[k] = true
	}
	for _, k := range dels {
		delete(o.stored, k)
	}
	o.mu.Unlock()
	return nil
}

// snapshot returns copies of the pending reports, oldest first.
func (o *outbox) snapshot() []*report {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*report
	for el := o.order.Front(); el != nil; el = el.Next() {
		r := *el.Value.(*report)
		if r.twins != nil {
			r.twins = proto.Clone(r.twins).(*pb.ReportDeviceStatusRequest)
		}
		if r.state != nil {
			r.state = proto.Clone(r.state).(*pb.ReportDeviceStatesRequest)
		}
		out = append(out, &r)
	}
	return out
}
