package dmi

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

var (
	// outboxBucket holds the reports not yet accepted by edgecore.
	outboxBucket = []byte("outbox")
	// acceptedBucket holds what edgecore last accepted per device and
	// kind (JSON [accepted]), from which the outbox ranks new reports.
	acceptedBucket = []byte("accepted")
)

// report kinds, also the first byte of an outbox key.
const (
	kindTwins = 't' // ReportDeviceStatus
	kindState = 's' // ReportDeviceStates
)

// Report classes, in the order the outbox spends edgecore's budget on
// them.
const (
	classState  = iota // a state that differs from the last one edgecore accepted
	classChange        // twins with a reported value that differs from the last accepted one
	classSteady        // a re-report of what edgecore already has
	numClasses
)

// classNames label the classes in metrics.
var classNames = [numClasses]string{"state_change", "value_change", "steady"}

// stalestEvery: one pop in stalestEvery takes the report of the stalest
// device whatever its class, so that a stream of changes cannot starve
// the other reports.
const stalestEvery = 10

// report is one pending request to edgecore.
type report struct {
	key   string
	seq   uint64 // arrival order, the last tie-break
	twins *pb.ReportDeviceStatusRequest
	state *pb.ReportDeviceStatesRequest
	// class is set by the outbox; changedAt is when the oldest change
	// the report carries was queued, zero for a steady report.
	class     int
	changedAt time.Time
	front     bool // requeued after a failed send: goes next
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

// accepted is what edgecore last accepted for a device and kind.
type accepted struct {
	At     time.Time         `json:"at"`
	State  string            `json:"state,omitempty"`
	Values map[string]string `json:"values,omitempty"` // property → reported value
}

// outbox holds the reports waiting for edgecore and decides which goes
// next. It keeps only the newest report per device and kind: a twin
// report merges into the pending one property by property, a state
// replaces it. Edgecore keeps only the last value of a twin, so older
// values would only cost rate-limited calls.
//
// Edgecore accepts about one call a second for the whole node, so the
// outbox spends them by need (see [outbox.pop]): a requeued report first,
// then state changes, then twins whose value differs from the last one
// edgecore accepted, each oldest change first, then steady re-reports,
// stalest device first; one pop in stalestEvery takes the stalest device
// whatever its class, so everything eventually goes. What edgecore
// accepted is kept per device and kind, and sync saves it and the
// pending reports (with their change times) to bbolt in one transaction,
// so the ranking survives a restart.
type outbox struct {
	db  *bolt.DB
	now func() time.Time // the clock; tests replace it

	mu       sync.Mutex // guards the fields below
	seq      uint64
	pops     uint64               // pops that were not retries
	pending  map[string]*report   // key → waiting report
	accepted map[string]*accepted // key → what edgecore last accepted
	dirty    map[string]bool      // pending keys changed since the last sync
	dirtyAcc map[string]bool      // accepted keys changed since the last sync
	stored   map[string]bool      // pending keys saved in the bucket
	notify   chan struct{}        // has a token when the queue may be non-empty
}

// openOutbox loads the reports and accepted values saved in db.
func openOutbox(db *bolt.DB) (*outbox, error) {
	o := &outbox{db: db, now: time.Now, pending: map[string]*report{}, accepted: map[string]*accepted{},
		dirty: map[string]bool{}, dirtyAcc: map[string]bool{}, stored: map[string]bool{}, notify: make(chan struct{}, 1)}
	err := db.Update(func(tx *bolt.Tx) error {
		ab, err := bucket(tx, acceptedBucket)
		if err != nil {
			return err
		}
		err = ab.ForEach(func(k, v []byte) error {
			a := &accepted{}
			if json.Unmarshal(v, a) == nil { // a damaged entry only ranks the next report as a change
				o.accepted[string(k)] = a
			}
			return nil
		})
		if err != nil {
			return err
		}
		b, err := bucket(tx, outboxBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			r, err := decodeReport(string(k), v)
			if err != nil {
				return fmt.Errorf("outbox entry %q: %w", k, err)
			}
			o.pending[r.key] = r
			o.stored[r.key] = true
			o.seq = max(o.seq, r.seq)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open DMI report outbox: %w (remove buckets %s/%s and %s/%s from the state database to start afresh)", err, topBucket, outboxBucket, topBucket, acceptedBucket)
	}
	for _, r := range o.pending {
		o.classify(r)
	}
	o.wake()
	return o, nil
}

// A saved report is its seq (8 bytes), its kind, and for a kind in upper
// case the unix-nano time of its oldest change (8 bytes, 0 when steady),
// then the protobuf request. Lower-case kinds were saved without the time.
func decodeReport(key string, v []byte) (*report, error) {
	if len(v) < 9 || len(key) == 0 {
		return nil, fmt.Errorf("truncated")
	}
	r := &report{key: key, seq: binary.BigEndian.Uint64(v)}
	kind, rest := v[8], v[9:]
	if kind == timed(kindTwins) || kind == timed(kindState) {
		if len(rest) < 8 {
			return nil, fmt.Errorf("truncated")
		}
		if ns := int64(binary.BigEndian.Uint64(rest)); ns != 0 {
			r.changedAt = time.Unix(0, ns)
		}
		kind, rest = kind+'a'-'A', rest[8:]
	}
	var m proto.Message
	switch kind {
	case kindTwins:
		r.twins = &pb.ReportDeviceStatusRequest{}
		m = r.twins
	case kindState:
		r.state = &pb.ReportDeviceStatesRequest{}
		m = r.state
	default:
		return nil, fmt.Errorf("unknown kind %q", v[8])
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return nil, err
	}
	return r, nil
}

// timed is the saved kind of a report with its change time.
func timed(kind byte) byte { return kind - 'a' + 'A' }

func encodeReport(r *report) ([]byte, error) {
	var m proto.Message = r.state
	if r.twins != nil {
		m = r.twins
	}
	b := binary.BigEndian.AppendUint64(nil, r.seq)
	b = append(b, timed(r.kind()))
	var ns int64
	if !r.changedAt.IsZero() {
		ns = r.changedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
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

// requeue puts back a report that could not be sent, to go next, under a
// newer report for the same device if one arrived meanwhile.
func (o *outbox) requeue(r *report) { o.put(r, true) }

func (o *outbox) put(r *report, front bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dirty[r.key] = true
	cur, ok := o.pending[r.key]
	if !ok {
		if !front {
			o.seq++
			r.seq = o.seq
		}
		r.front = front
		o.classify(r)
		o.pending[r.key] = r
		o.wake()
		return
	}
	older, newer := cur, r
	if front {
		// cur is newer: fold the older twins under it, and take the
		// older report's place.
		older, newer = r, cur
		cur.seq = min(cur.seq, r.seq)
		cur.front = true
	}
	if cur.twins != nil {
		cur.twins = mergeTwins(older.twins, newer.twins)
	} else {
		cur.state = newer.state
	}
	if !r.changedAt.IsZero() && (cur.changedAt.IsZero() || r.changedAt.Before(cur.changedAt)) {
		cur.changedAt = r.changedAt
	}
	o.classify(cur)
}

// classify sets r's class from what edgecore last accepted, keeping the
// time of its oldest change while it still carries one. Call with mu.
func (o *outbox) classify(r *report) {
	a := o.accepted[r.key]
	r.class = classSteady
	if r.state != nil {
		if a == nil || a.State != r.state.State {
			r.class = classState
		}
	} else {
		for _, t := range r.twins.GetReportedDevice().GetTwins() {
			if v, ok := a.value(t.PropertyName); !ok || v != t.GetReported().GetValue() {
				r.class = classChange
				break
			}
		}
	}
	switch {
	case r.class == classSteady:
		r.changedAt = time.Time{}
	case r.changedAt.IsZero():
		r.changedAt = o.now()
	}
}

// value is the accepted reported value of a property.
func (a *accepted) value(prop string) (string, bool) {
	if a == nil {
		return "", false
	}
	v, ok := a.Values[prop]
	return v, ok
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

// pop takes the report to send next, or nil: a requeued one, else the
// first by class and, within a class, by oldest change (state and value
// changes) or stalest device (steady reports: oldest accepted report,
// never accepted first); every stalestEvery-th pop takes the stalest
// device whatever its class. Arrival order breaks ties.
func (o *outbox) pop() *report {
	o.mu.Lock()
	defer o.mu.Unlock()
	var best *report
	for _, r := range o.pending {
		if r.front && (best == nil || o.before(r, best, false)) {
			best = r
		}
	}
	if best == nil {
		stalest := (o.pops+1)%stalestEvery == 0
		for _, r := range o.pending {
			if best == nil || o.before(r, best, stalest) {
				best = r
			}
		}
		if best == nil {
			return nil
		}
		o.pops++
	}
	delete(o.pending, best.key)
	o.dirty[best.key] = true
	best.front = false
	return best
}

// before reports whether a goes before b (neither requeued); stalest
// ranks by staleness alone. Call with mu.
func (o *outbox) before(a, b *report, stalest bool) bool {
	if !stalest && a.class != b.class {
		return a.class < b.class
	}
	ta, tb := a.changedAt, b.changedAt
	if stalest || a.class == classSteady {
		ta, tb = o.acceptedAt(a.key), o.acceptedAt(b.key)
	}
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.key < b.key
}

// acceptedAt is when edgecore last accepted a report for key, zero if
// never. Call with mu.
func (o *outbox) acceptedAt(key string) time.Time {
	if a := o.accepted[key]; a != nil {
		return a.At
	}
	return time.Time{}
}

// sent records that edgecore accepted r: its values are what later
// reports are compared with, and its device becomes the freshest.
func (o *outbox) sent(r *report) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a := o.accepted[r.key]
	if a == nil {
		a = &accepted{}
		o.accepted[r.key] = a
	}
	a.At = o.now()
	if r.state != nil {
		a.State = r.state.State
	} else {
		if a.Values == nil {
			a.Values = map[string]string{}
		}
		for _, t := range r.twins.GetReportedDevice().GetTwins() {
			a.Values[t.PropertyName] = t.GetReported().GetValue()
		}
	}
	o.dirtyAcc[r.key] = true
	if cur := o.pending[r.key]; cur != nil {
		o.dirty[r.key] = true
		o.classify(cur) // queued while r was in flight
	}
}

// drop forgets the pending reports of a device and what edgecore
// accepted of it.
func (o *outbox) drop(namespace, name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range []byte{kindTwins, kindState} {
		key := reportKey(k, namespace, name)
		if _, ok := o.pending[key]; ok {
			delete(o.pending, key)
			o.dirty[key] = true
		}
		if _, ok := o.accepted[key]; ok {
			delete(o.accepted, key)
			o.dirtyAcc[key] = true
		}
	}
}

// len is the number of pending reports.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// outboxStats is what the metrics show of the outbox.
type outboxStats struct {
	waiting      [numClasses]int // pending reports by class
	oldestChange time.Duration   // age of the oldest unreported change, 0 if none
}

func (o *outbox) stats() outboxStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	var s outboxStats
	var oldest time.Time
	for _, r := range o.pending {
		s.waiting[r.class]++
		if !r.changedAt.IsZero() && (oldest.IsZero() || r.changedAt.Before(oldest)) {
			oldest = r.changedAt
		}
	}
	if !oldest.IsZero() {
		s.oldestChange = max(o.now().Sub(oldest), 0)
	}
	return s
}

// sync saves the changes since the last sync in one transaction.
func (o *outbox) sync() error {
	type write struct {
		bucket []byte
		key    string
		val    []byte // nil deletes
	}
	o.mu.Lock()
	if len(o.dirty) == 0 && len(o.dirtyAcc) == 0 {
		o.mu.Unlock()
		return nil
	}
	var ws []write
	for k := range o.dirty {
		if r, ok := o.pending[k]; ok {
			v, err := encodeReport(r)
			if err != nil {
				o.mu.Unlock()
				return err
			}
			ws = append(ws, write{outboxBucket, k, v})
		} else if o.stored[k] {
			ws = append(ws, write{bucket: outboxBucket, key: k})
		}
	}
	for k := range o.dirtyAcc {
		w := write{bucket: acceptedBucket, key: k}
		if a, ok := o.accepted[k]; ok {
			w.val, _ = json.Marshal(a)
		}
		ws = append(ws, w)
	}
	o.dirty, o.dirtyAcc = map[string]bool{}, map[string]bool{}
	o.mu.Unlock()
	if len(ws) == 0 {
		return nil // sent before it was ever saved
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		for _, w := range ws {
			b, err := bucket(tx, w.bucket)
			if err != nil {
				return err
			}
			if w.val == nil {
				err = b.Delete([]byte(w.key))
			} else {
				err = b.Put([]byte(w.key), w.val)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range ws {
		switch {
		case err != nil && string(w.bucket) == string(outboxBucket):
			o.dirty[w.key] = true // retried at the next sync
		case err != nil:
			o.dirtyAcc[w.key] = true
		case string(w.bucket) != string(outboxBucket):
		case w.val != nil:
			o.stored[w.key] = true
		default:
			delete(o.stored, w.key)
		}
	}
	if err != nil {
		return fmt.Errorf("save DMI report outbox: %w", err)
	}
	return nil
}

// snapshot returns copies of the pending reports in the order pop would
// take them if nothing changed (leaving out the stalest pick).
func (o *outbox) snapshot() []*report {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*report
	for _, p := range o.pending {
		r := *p
		if r.twins != nil {
			r.twins = proto.Clone(r.twins).(*pb.ReportDeviceStatusRequest)
		}
		if r.state != nil {
			r.state = proto.Clone(r.state).(*pb.ReportDeviceStatesRequest)
		}
		out = append(out, &r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].front != out[j].front {
			return out[i].front
		}
		return o.before(out[i], out[j], false)
	})
	return out
}
