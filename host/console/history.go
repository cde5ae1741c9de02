package console

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/devices"
)

// HistoryOptions bound what a [History] keeps. Zero fields take the
// defaults; at the defaults the points take at most about 4 MiB (16 bytes
// each, their buffers at most twice that while they shrink).
type HistoryOptions struct {
	// Points is the most points kept per property (default 300).
	Points int
	// Age is how long a point is kept (default 10 minutes).
	Age time.Duration
	// Devices is the most devices with a history (default 1000); the
	// readings of others are not kept until devices with a history are
	// removed or stop reading for Age.
	Devices int
	// Properties is the most properties with a history per device
	// (default 64).
	Properties int
	// Budget is the most points kept over every property (default
	// 262144): with many properties each keeps Budget divided by their
	// number, at least one, at most Points.
	Budget int
}

func (o *HistoryOptions) defaults() {
	if o.Points <= 0 {
		o.Points = 300
	}
	if o.Age <= 0 {
		o.Age = 10 * time.Minute
	}
	if o.Devices <= 0 {
		o.Devices = 1000
	}
	if o.Properties <= 0 {
		o.Properties = 64
	}
	if o.Budget <= 0 {
		o.Budget = 1 << 18
	}
}

// Point is one numeric reading: when it was read, in Unix milliseconds,
// and its value. It is a JSON array [t, v].
type Point struct {
	T int64
	V float64
}

// MarshalJSON writes [t, v].
func (p Point) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 32)
	b = append(b, '[')
	b = strconv.AppendInt(b, p.T, 10)
	b = append(b, ',')
	b = strconv.AppendFloat(b, p.V, 'g', -1, 64)
	return append(b, ']'), nil
}

// UnmarshalJSON reads [t, v].
func (p *Point) UnmarshalJSON(b []byte) error {
	var a [2]json.Number
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	t, err := a[0].Int64()
	if err != nil {
		return err
	}
	v, err := a[1].Float64()
	if err != nil {
		return err
	}
	*p = Point{T: t, V: v}
	return nil
}

// History keeps the recent numeric readings (INT, FLOAT and DOUBLE
// properties) of every device, within [HistoryOptions]. Its methods are
// safe for concurrent use.
type History struct {
	opts   HistoryOptions
	mu     sync.Mutex
	devs   map[string]map[string]*ring // device "namespace/name" → property → points
	series int                         // number of rings
}

// NewHistory returns an empty history.
func NewHistory(o HistoryOptions) *History {
	o.defaults()
	return &History{opts: o, devs: map[string]map[string]*ring{}}
}

// Options returns the bounds in force, defaults filled in.
func (h *History) Options() HistoryOptions { return h.opts }

// numeric reports whether a twin type is plotted.
func numeric(typ string) bool {
	t, _ := abi.ParseType(typ)
	return t == abi.TypeInt || t == abi.TypeFloat || t == abi.TypeDouble
}

// Record adds the numeric readings of a reading event (a value read no
// later than the property's last point is skipped: a failed read repeats
// the last value and time), and forgets a removed device. Other events
// are ignored.
func (h *History) Record(ev *devices.Event) {
	switch ev.Type {
	case devices.EventDeviceRemoved:
		h.Forget(ev.Device)
		return
	case devices.EventReading:
	default:
		return
	}
	cutoff := time.Now().Add(-h.opts.Age).UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range ev.Twins {
		tw := &ev.Twins[i]
		if tw.ReportedTime.IsZero() || !numeric(tw.Type) {
			continue
		}
		v, err := strconv.ParseFloat(tw.Reported, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue // JSON has no NaN or infinity, and a plot no place for them
		}
		p := Point{T: tw.ReportedTime.UnixMilli(), V: v}
		if p.T < cutoff {
			continue
		}
		r := h.ringLocked(ev.Device, tw.Property)
		if r == nil {
			continue
		}
		if last, ok := r.last(); ok && p.T <= last.T {
			continue
		}
		r.push(p, h.limitLocked())
	}
}

// ringLocked returns the ring of a property, made if there is room, or
// nil.
func (h *History) ringLocked(device, prop string) *ring {
	props := h.devs[device]
	if props == nil {
		if len(h.devs) >= h.opts.Devices {
			return nil
		}
		props = map[string]*ring{}
		h.devs[device] = props
	}
	r := props[prop]
	if r == nil {
		if len(props) >= h.opts.Properties {
			return nil
		}
		r = &ring{}
		props[prop] = r
		h.series++
	}
	return r
}

// limitLocked is the most points one property keeps now.
func (h *History) limitLocked() int {
	return min(h.opts.Points, max(1, h.opts.Budget/max(1, h.series)))
}

// Forget drops the history of a device, "namespace/name".
func (h *History) Forget(device string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.series -= len(h.devs[device])
	delete(h.devs, device)
}

// Prune drops the points older than Age before now and those past the
// per-property limit, and the properties and devices left without points.
// Record keeps a property within bounds as it adds to it; Prune is for
// the properties no longer read (wapper-host's console calls it every
// few seconds).
func (h *History) Prune(now time.Time) {
	cutoff := now.Add(-h.opts.Age).UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	limit := h.limitLocked()
	for dev, props := range h.devs {
		for name, r := range props {
			r.trim(cutoff, limit)
			if r.n == 0 {
				delete(props, name)
				h.series--
			}
		}
		if len(props) == 0 {
			delete(h.devs, dev)
		}
	}
}

// Device returns the points of every numeric property of a device,
// oldest first, and whether the device has a history at all.
func (h *History) Device(device string) (map[string][]Point, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	props, ok := h.devs[device]
	out := make(map[string][]Point, len(props))
	for name, r := range props {
		out[name] = r.points()
	}
	return out, ok
}

// Len returns the number of devices, properties and points kept.
func (h *History) Len() (devices, properties, points int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, props := range h.devs {
		for _, r := range props {
			points += r.n
		}
	}
	return len(h.devs), h.series, points
}

// ring is the points of one property: n points from buf[start], wrapping.
// Its buffer grows as points come, up to the limit, and shrinks when the
// limit falls well below it.
type ring struct {
	buf      []Point
	start, n int
}

func (r *ring) at(i int) Point { return r.buf[(r.start+i)%len(r.buf)] }

func (r *ring) last() (Point, bool) {
	if r.n == 0 {
		return Point{}, false
	}
	return r.at(r.n - 1), true
}

func (r *ring) drop() {
	r.start = (r.start + 1) % len(r.buf)
	r.n--
}

// push adds p as the newest point, dropping the oldest ones to stay
// within limit.
func (r *ring) push(p Point, limit int) {
	for r.n >= limit {
		r.drop()
	}
	if r.n == len(r.buf) {
		r.resize(min(limit, max(8, 2*len(r.buf))))
	}
	r.buf[(r.start+r.n)%len(r.buf)] = p
	r.n++
}

// trim drops the points older than cutoff and the oldest past limit.
func (r *ring) trim(cutoff int64, limit int) {
	for r.n > 0 && (r.n > limit || r.at(0).T < cutoff) {
		r.drop()
	}
	if len(r.buf) > 8 && len(r.buf) > 2*limit {
		r.resize(max(limit, 8))
	}
}

// resize moves the points into a buffer of size (at least r.n).
func (r *ring) resize(size int) {
	nb := make([]Point, size)
	for i := range r.n {
		nb[i] = r.at(i)
	}
	r.buf, r.start = nb, 0
}

func (r *ring) points() []Point {
	out := make([]Point, r.n)
	for i := range out {
		out[i] = r.at(i)
	}
	return out
}
