// Command virtual is wapper's simulated-device mapper plugin, used by the
// demo, the tests and the benchmark. Each property picks a behaviour
// through its visitor configData field "kind":
//
//   - counter: increases by "step" (default 1) on every read
//   - sine: "amplitude" * sin(2π t / "periodMs") + "offset"
//   - random: a random walk of at most "step" per read, kept in
//     ["min", "max"]
//   - switch: a writable boolean
//   - setpoint: a writable number (or any type), with "initial"
//
// Any kind also takes "delayMs": every read of the property then takes
// that long, like a slow device (tests use it to keep instances busy).
//
// # State
//
// Written values (switch, setpoint) are saved in the plugin's kv store on
// every write, and read from it, so they survive restarts and every
// instance of the plugin sees the same value.
//
// Counters and random walks change on every read, so they live in the
// memory of the instance serving the device, keyed by device and property:
// a read costs no store write. An instance seeds them from the kv store on
// its first read of the device, and writes them back at most every
// [saveEvery] (on a read that comes later than that). So after an instance
// restart or a host restart a counter resumes from its last saved value (it
// can repeat up to saveEvery worth of reads), and with several instances
// each instance that serves a device continues from what was saved last:
// use limits.instances: 1 when a counter must never repeat a value.
// Removing the device deletes its saved state.
package main

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

type visitor struct {
	Kind      string   `json:"kind"`
	Step      *float64 `json:"step"`
	Amplitude *float64 `json:"amplitude"`
	Offset    float64  `json:"offset"`
	PeriodMs  float64  `json:"periodMs"`
	Min       *float64 `json:"min"`
	Max       *float64 `json:"max"`
	Initial   any      `json:"initial"`
	DelayMs   float64  `json:"delayMs"`
}

type property struct {
	visitor
	key  string
	cell *cell // counter and random: the value in memory
}

// cell is a counter or random-walk value held in instance memory.
type cell struct {
	v       float64
	seeded  bool
	savedAt time.Time
}

// saveEvery is how often a counter or walk is written back to kv at most.
const saveEvery = 5 * time.Second

// cells holds this instance's counters and walks by kv key, so that an
// update of the device keeps them.
var cells = map[string]*cell{}

type virtual struct{ wapper.Base }

func (virtual) AddDevice(d *wapper.Device) error { return setup(d) }

func (virtual) UpdateDevice(d *wapper.Device) error { return setup(d) }

// props holds a device's parsed properties by handle: in a slice for the
// small handles the host gives, so that a read finds its property without
// a map lookup (costly in wasm), and in a map past that.
type props struct {
	dense  []*property
	sparse map[uint32]*property
}

// maxDenseHandle bounds props.dense.
const maxDenseHandle = 256

func (ps *props) get(h uint32) *property {
	if int(h) < len(ps.dense) {
		return ps.dense[h]
	}
	return ps.sparse[h]
}

func (ps *props) set(h uint32, pr *property) {
	if h >= maxDenseHandle {
		if ps.sparse == nil {
			ps.sparse = map[uint32]*property{}
		}
		ps.sparse[h] = pr
		return
	}
	if int(h) >= len(ps.dense) {
		ps.dense = append(ps.dense, make([]*property, int(h)+1-len(ps.dense))...)
	}
	ps.dense[h] = pr
}

// all calls f for every property.
func (ps *props) all(f func(*property) error) error {
	for _, pr := range ps.dense {
		if pr != nil {
			if err := f(pr); err != nil {
				return err
			}
		}
	}
	for _, pr := range ps.sparse {
		if err := f(pr); err != nil {
			return err
		}
	}
	return nil
}

// setup parses every visitor once, so a bad config fails at add time.
func setup(d *wapper.Device) error {
	props := &props{}
	for _, p := range d.Properties() {
		var pr property
		if err := p.Visit(&pr.visitor); err != nil {
			return err
		}
		switch pr.Kind {
		case "counter", "sine", "random", "switch", "setpoint":
		case "":
			return wapper.Errorf(wapper.ErrInvalid, "property %q: visitor configData needs \"kind\" (counter, sine, random, switch or setpoint)", p.Name)
		default:
			return wapper.Errorf(wapper.ErrInvalid, "property %q: unknown kind %q (want counter, sine, random, switch or setpoint)", p.Name, pr.Kind)
		}
		if (pr.Kind == "switch" || pr.Kind == "setpoint") && !p.Writable() {
			wapper.Log.Warn("writable kind on a ReadOnly property", "property", p.Name, "kind", pr.Kind)
		}
		pr.key = d.Namespace + "/" + d.Name + "/" + p.Name
		if pr.Kind == "counter" || pr.Kind == "random" {
			c := cells[pr.key]
			if c == nil {
				c = &cell{}
				cells[pr.key] = c
			}
			pr.cell = c
		}
		props.set(p.Handle, &pr)
	}
	d.Data = props
	return nil
}

func prop(d *wapper.Device, p *wapper.Property) *property {
	return d.Data.(*props).get(p.Handle)
}

func loadFloat(key string, def float64) (float64, error) {
	b, ok, err := wapper.KVGet(key)
	if err != nil || !ok || len(b) != 8 {
		return def, err
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
}

func storeFloat(key string, f float64) error {
	return wapper.KVSet(key, binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)))
}

// advance moves a counter or walk by next, seeding it from kv first (with
// def when nothing is saved) and writing it back when the last write is
// older than saveEvery.
func advance(pr *property, def float64, next func(float64) float64) (float64, error) {
	c := pr.cell
	if !c.seeded {
		v, err := loadFloat(pr.key, def)
		if err != nil {
			return 0, err
		}
		c.v, c.seeded, c.savedAt = v, true, time.Now()
	}
	c.v = next(c.v)
	if now := time.Now(); now.Sub(c.savedAt) >= saveEvery {
		if err := storeFloat(pr.key, c.v); err != nil {
			return 0, err
		}
		c.savedAt = now
	}
	return c.v, nil
}

func or(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

func (virtual) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	pr := prop(d, p)
	if pr.DelayMs > 0 {
		time.Sleep(time.Duration(pr.DelayMs * float64(time.Millisecond)))
	}
	var f float64
	switch pr.Kind {
	case "counter":
		step := or(pr.Step, 1)
		n, err := advance(pr, 0, func(n float64) float64 { return n + step })
		if err != nil {
			return wapper.Value{}, err
		}
		f = n
	case "sine":
		period := pr.PeriodMs
		if period <= 0 {
			period = 60000
		}
		// The phase within the period, in integers when the period is
		// whole milliseconds: sin of a huge argument loses precision and
		// costs a long argument reduction.
		now := time.Now().UnixMilli()
		var phase float64
		if p := int64(period); float64(p) == period {
			phase = float64(now%p) / period
		} else {
			phase = math.Mod(float64(now), period) / period
		}
		f = or(pr.Amplitude, 1)*math.Sin(2*math.Pi*phase) + pr.Offset
	case "random":
		lo, hi := or(pr.Min, 0), or(pr.Max, 100)
		step := or(pr.Step, (hi-lo)/20)
		cur, err := advance(pr, (lo+hi)/2, func(cur float64) float64 {
			return math.Max(lo, math.Min(hi, cur+(rand.Float64()*2-1)*step))
		})
		if err != nil {
			return wapper.Value{}, err
		}
		f = cur
	case "switch", "setpoint":
		b, ok, err := wapper.KVGet(pr.key)
		if err != nil {
			return wapper.Value{}, err
		}
		if ok {
			return wapper.ParseText(p.Type(), string(b))
		}
		return initial(p, pr)
	}
	return wapper.Convert(wapper.Double(f), p.Type())
}

func initial(p *wapper.Property, pr *property) (wapper.Value, error) {
	switch v := pr.Initial.(type) {
	case nil:
		if p.Type() == wapper.TypeString {
			return wapper.String(""), nil
		}
		return wapper.Convert(wapper.Int(0), p.Type())
	case string:
		return wapper.ParseText(p.Type(), v)
	case bool:
		return wapper.Convert(wapper.Bool(v), p.Type())
	case float64:
		return wapper.Convert(wapper.Double(v), p.Type())
	}
	return wapper.Value{}, wapper.Errorf(wapper.ErrInvalid, "property %q: initial must be a string, number or bool", p.Name)
}

func (virtual) Write(d *wapper.Device, p *wapper.Property, v wapper.Value) error {
	pr := prop(d, p)
	if pr.Kind != "switch" && pr.Kind != "setpoint" {
		return wapper.Errorf(wapper.ErrReadOnly, "property %q is a simulated %s and cannot be written", p.Name, pr.Kind)
	}
	if pr.Kind == "switch" && p.Type() != wapper.TypeBoolean {
		var err error
		if v, err = wapper.Convert(v, wapper.TypeBoolean); err != nil {
			return wapper.Errorf(wapper.ErrInvalid, "switch %q: %v", p.Name, err)
		}
	}
	return wapper.KVSet(pr.key, []byte(v.Text()))
}

// RemoveDevice saves the device's counters and walks and forgets them on
// this instance only: the device may have moved to another instance,
// which goes on from what the shared kv store holds (ABI SPEC §2).
func (virtual) RemoveDevice(d *wapper.Device) error {
	return d.Data.(*props).all(func(pr *property) error {
		c := cells[pr.key]
		delete(cells, pr.key)
		if c != nil && c.seeded {
			return storeFloat(pr.key, c.v)
		}
		return nil
	})
}

func (virtual) State(*wapper.Device) (wapper.State, error) { return wapper.StateOK, nil }

func init() { wapper.Register(virtual{}) }

func main() {}
