// Command bench-native is the native baseline of hack/bench-host: it does,
// in plain Go with no sandbox, the work wapper-host does for the
// benchmark's devices with its default settings (host/devices, host/mqtt,
// host/store; --flush-interval 2s, --state-cycle 10s):
//
//   - each device's two sine properties are read on the device's 1 s
//     cycle, with the virtual plugin's formula, and formatted as twin text
//     (strconv 'f', -1, as abi.Value.Text);
//   - on the same 1 s cycle each device publishes a KubeEdge twin update
//     (actual values with their times, metadata.type) on
//     $hw/events/device/<ns>/<name>/twin/update and a twin document (last
//     and current state of each twin) on .../twin/update/document, to the
//     host's embedded mochi-mqtt broker (host/mqtt.Serve) in the process,
//     with a TCP listener;
//   - it subscribes to .../+/+/twin/update and .../+/+/twin/get like the
//     host's bridge (its own publishes do not come back to it);
//   - every 10 s each device publishes its state on .../state/update;
//   - every 2 s the values read since the last save are written to a bbolt
//     file in one sorted transaction, in host/store's "reported" layout
//     (key "<ns>/<name>\x00<property>", value 8-byte time then text).
//
// It prints the total number of readings on stdout every 200 ms until it
// is killed. It is its own small program, so that its memory holds only
// what this work needs (hack/bench-host builds and runs it).
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/mqtt"
)

// nativeFlushInterval and nativeStateCycle are wapper-host's defaults
// (--flush-interval, --state-cycle).
const (
	nativeFlushInterval = 2 * time.Second
	nativeStateCycle    = 10 * time.Second
	topicPrefix         = "$hw/events/device/"
)

// nativeDevice is one device of the baseline: its latest readings, and
// the previous twins for the document's "last" state.
type nativeDevice struct {
	id     string // namespace/name
	update string // twin/update topic
	doc    string // twin/update/document topic
	state  string // state/update topic
	key    [2][]byte

	mu    sync.Mutex // guards the fields below
	value [2]string
	at    [2]int64 // reading times, ms
	dirty [2]bool
	// last and lastAt are the values of the previous report, the
	// document's "last" state; seen is false before the first report.
	last   [2]string
	lastAt [2]int64
	seen   bool
}

// newNativeDevice returns device id ("namespace/name") with its topics
// and store keys.
func newNativeDevice(id string) *nativeDevice {
	d := &nativeDevice{id: id, update: topicPrefix + id + "/twin/update", doc: topicPrefix + id + "/twin/update/document",
		state: topicPrefix + id + "/state/update"}
	for p := range nativeProps {
		d.key[p] = []byte(id + "\x00" + nativeProps[p].name)
	}
	return d
}

// nativeProps are the benchmark's two properties (see writeManifests):
// name, period ms, offset.
var nativeProps = [2]struct {
	name   string
	period float64
	offset float64
}{{"a", 10000, 0}, {"b", 20000, 5}}

func main() {
	n := flag.Int("devices", 1000, "devices")
	dir := flag.String("dir", "", "folder for the bbolt file")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "bench-native: -dir is required")
		os.Exit(2)
	}
	if err := runNative(*n, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench-native:", err)
		os.Exit(1)
	}
}

// runNative runs the baseline with n devices in dir until killed.
func runNative(n int, dir string) error {
	// The host's embedded broker (mochi-mqtt with its subscriptions as a
	// hook, so that its own publishes do not come back to it).
	srv, err := mqtt.Serve(mqtt.BrokerOptions{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	// Requests from applications: desired values and twin queries. The
	// benchmark sends none.
	var requests atomic.Int64
	onRequest := func(topic string, payload []byte) {
		if bytes.Contains(payload, []byte(`"expected"`)) || strings.HasSuffix(topic, "/twin/get") {
			requests.Add(1)
		}
	}
	if err := srv.Subscribe(topicPrefix+"+/+/twin/update", 1, onRequest); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := srv.Subscribe(topicPrefix+"+/+/twin/get", 2, onRequest); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("open bbolt: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("reported"))
		return err
	}); err != nil {
		return fmt.Errorf("prepare bbolt: %w", err)
	}

	devs := make([]*nativeDevice, n)
	var total atomic.Int64
	for i := range n {
		d := newNativeDevice(fmt.Sprintf("default/dev-%d", i))
		devs[i] = d
		go func() {
			// Spread the devices over the cycle, as the host's start does.
			time.Sleep(time.Duration(i%1000) * time.Millisecond)
			tick := time.NewTicker(time.Second)
			nextState := time.Now()
			for now := range tick.C {
				total.Add(int64(d.read(now)))
				if err := d.report(srv, now); err != nil {
					fmt.Fprintln(os.Stderr, "native: publish:", err)
				}
				if !now.Before(nextState) {
					nextState = now.Add(nativeStateCycle)
					if err := srv.Publish(d.state, 0, false, appendState(nil, now)); err != nil {
						fmt.Fprintln(os.Stderr, "native: publish:", err)
					}
				}
			}
		}()
	}
	go func() {
		for range time.Tick(nativeFlushInterval) {
			if err := flushNative(db, devs); err != nil {
				fmt.Fprintln(os.Stderr, "native: save:", err)
			}
		}
	}()
	for range time.Tick(200 * time.Millisecond) {
		fmt.Println(total.Load())
	}
	return nil
}

// read takes both properties' readings at now, as the virtual plugin
// computes them, and returns how many it took.
func (d *nativeDevice) read(now time.Time) int {
	ms := now.UnixMilli()
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, pr := range nativeProps {
		f := math.Sin(2*math.Pi*float64(ms)/pr.period) + pr.offset
		d.value[p], d.at[p], d.dirty[p] = strconv.FormatFloat(f, 'f', -1, 64), ms, true
	}
	return len(nativeProps)
}

// report publishes the device's twin update and twin document.
func (d *nativeDevice) report(srv *mqtt.Broker, now time.Time) error {
	d.mu.Lock()
	update := appendTwinUpdate(make([]byte, 0, 320), d, now)
	doc := appendTwinDocument(make([]byte, 0, 640), d, now)
	d.last, d.lastAt, d.seen = d.value, d.at, true
	d.mu.Unlock()
	if err := srv.Publish(d.update, 0, false, update); err != nil {
		return err
	}
	return srv.Publish(d.doc, 0, false, doc)
}

// flushNative saves the readings taken since the last save, sorted by key,
// in one transaction.
func flushNative(db *bolt.DB, devs []*nativeDevice) error {
	type kv struct{ k, v []byte }
	var puts []kv
	for _, d := range devs {
		d.mu.Lock()
		for p := range nativeProps {
			if !d.dirty[p] {
				continue
			}
			v := make([]byte, 8, 8+len(d.value[p]))
			binary.BigEndian.PutUint64(v, uint64(time.UnixMilli(d.at[p]).UnixNano()))
			puts = append(puts, kv{d.key[p], append(v, d.value[p]...)})
			d.dirty[p] = false
		}
		d.mu.Unlock()
	}
	if len(puts) == 0 {
		return nil
	}
	slices.SortFunc(puts, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("reported"))
		for _, p := range puts {
			if err := b.Put(p.k, p.v); err != nil {
				return err
			}
		}
		return nil
	})
}

// The encoders below write the same JSON as host/mqtt (KubeEdge's
// dttype shapes, keys in encoding/json order); native_test.go checks them
// against host/mqtt's types.

// appendBase appends {"event_id":"<uuid>","timestamp":<ms>.
func appendBase(b []byte, now time.Time) []byte {
	b = append(b, `{"event_id":"`...)
	b = appendUUID(b)
	b = append(b, `","timestamp":`...)
	return strconv.AppendInt(b, now.UnixMilli(), 10)
}

// appendActual appends a twin holding an actual value read at ms.
func appendActual(b []byte, value string, ms int64) []byte {
	b = append(b, `{"actual":{"value":"`...)
	b = append(b, value...)
	b = append(b, `","metadata":{"timestamp":`...)
	b = strconv.AppendInt(b, ms, 10)
	return append(b, `}},"metadata":{"type":"float"}}`...)
}

// appendTwinUpdate appends the twin update of d's current values.
func appendTwinUpdate(b []byte, d *nativeDevice, now time.Time) []byte {
	b = appendBase(b, now)
	b = append(b, `,"twin":{`...)
	for p, pr := range nativeProps {
		if p > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, pr.name...)
		b = append(b, `":`...)
		b = appendActual(b, d.value[p], d.at[p])
	}
	return append(b, "}}"...)
}

// appendTwinDocument appends the twin document: the last state of each
// twin (null before the first report) and the current one.
func appendTwinDocument(b []byte, d *nativeDevice, now time.Time) []byte {
	b = appendBase(b, now)
	b = append(b, `,"twin":{`...)
	for p, pr := range nativeProps {
		if p > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, pr.name...)
		b = append(b, `":{"last":`...)
		if d.seen {
			b = appendActual(b, d.last[p], d.lastAt[p])
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"current":`...)
		b = appendActual(b, d.value[p], d.at[p])
		b = append(b, '}')
	}
	return append(b, "}}"...)
}

// appendState appends a state update saying the device is ok.
func appendState(b []byte, now time.Time) []byte {
	b = appendBase(b, now)
	return append(b, `,"state":"ok"}`...)
}

// appendUUID appends a random version-4 UUID.
func appendUUID(b []byte) []byte {
	const hex = "0123456789abcdef"
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		var c byte
		if i < 8 {
			c = byte(hi >> (56 - 8*i))
		} else {
			c = byte(lo >> (56 - 8*(i-8)))
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return b
}
