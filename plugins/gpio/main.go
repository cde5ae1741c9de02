// Command gpio is wapper's GPIO mapper plugin, modelled on the Raspberry Pi
// traffic light of KubeEdge's demos: each property maps to one GPIO line.
//
// Property visitor configData:
//
//   - "pin": the line name ("GPIO17"), or a number n meaning "GPIOn"
//   - "mode": "output" (the default) or "input"
//   - "pull": for inputs, "up", "down" or "none" (the default)
//   - "edge": for inputs, which edges are pushed: "rising", "falling" or
//     "both" (the default)
//   - "activeLow": true when the line is low for "ON"
//
// A STRING property reads and writes "ON"/"OFF" (as the traffic light's
// red, yellow and green do); a BOOLEAN property reads and writes
// true/false; an INT property 1/0. Outputs are writable. Inputs are pushed:
// the plugin's poll waits for edges on them and reports each change (and
// the level when polling starts), so the host need not read them every
// cycle.
//
// The plugin needs a gpio grant for every line it uses.
package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

type rawVisitor struct {
	Pin       json.RawMessage `json:"pin"`
	Mode      string          `json:"mode"`
	Pull      string          `json:"pull"`
	Edge      string          `json:"edge"`
	ActiveLow bool            `json:"activeLow"`
}

// line is a property's GPIO mapping and, once opened, its pin.
type line struct {
	name      string
	input     bool
	mode      wapper.GPIOMode
	edge      wapper.Edge
	activeLow bool
	pin       *wapper.Pin
	reported  bool // the level was reported since the pin was opened
}

type dev struct{ lines map[uint32]*line }

func parseLine(p *wapper.Property) (*line, error) {
	var raw rawVisitor
	if err := p.Visit(&raw); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "property %q visitor: "+format, append([]any{p.Name}, args...)...)
	}
	l := &line{mode: wapper.GPIOOutput, edge: wapper.BothEdges, activeLow: raw.ActiveLow}
	var s string
	var n int
	switch {
	case len(raw.Pin) == 0:
		return nil, bad("set \"pin\" to a GPIO line name such as \"GPIO17\"")
	case json.Unmarshal(raw.Pin, &s) == nil:
		if _, err := strconv.Atoi(s); err == nil {
			s = "GPIO" + s
		}
		l.name = s
	case json.Unmarshal(raw.Pin, &n) == nil && n >= 0:
		l.name = "GPIO" + strconv.Itoa(n)
	default:
		return nil, bad("pin %s: want a line name or number", raw.Pin)
	}
	if l.name == "" {
		return nil, bad("empty pin")
	}
	switch strings.ToLower(raw.Mode) {
	case "", "output", "out":
	case "input", "in":
		l.input = true
		switch strings.ToLower(raw.Pull) {
		case "", "none", "float":
			l.mode = wapper.GPIOInput
		case "up":
			l.mode = wapper.GPIOInputPullUp
		case "down":
			l.mode = wapper.GPIOInputPullDown
		default:
			return nil, bad("pull %q: want up, down or none", raw.Pull)
		}
		switch strings.ToLower(raw.Edge) {
		case "", "both":
		case "rising":
			l.edge = wapper.RisingEdge
		case "falling":
			l.edge = wapper.FallingEdge
		default:
			return nil, bad("edge %q: want rising, falling or both", raw.Edge)
		}
	default:
		return nil, bad("mode %q: want output or input", raw.Mode)
	}
	switch p.Type() {
	case wapper.TypeString, wapper.TypeBoolean, wapper.TypeInt:
	default:
		return nil, bad("property type %s: use STRING (\"ON\"/\"OFF\"), BOOLEAN or INT", p.Type)
	}
	return l, nil
}

type gpio struct{ wapper.Base }

func (gpio) AddDevice(d *wapper.Device) error { return setup(d) }

func (gpio) UpdateDevice(d *wapper.Device) error { return setup(d) }

func (gpio) RemoveDevice(d *wapper.Device) error {
	if x, ok := d.Data.(*dev); ok {
		x.closeAll()
	}
	return nil
}

func setup(d *wapper.Device) error {
	x := &dev{lines: map[uint32]*line{}}
	for _, p := range d.Properties() {
		l, err := parseLine(p)
		if err != nil {
			return err
		}
		x.lines[p.Handle] = l
	}
	if old, ok := d.Data.(*dev); ok {
		old.closeAll()
	}
	d.Data = x
	return nil
}

func (x *dev) closeAll() {
	for _, l := range x.lines {
		l.close()
	}
}

func (l *line) close() {
	if l.pin != nil {
		l.pin.Close()
		l.pin, l.reported = nil, false
	}
}

func (l *line) open() (*wapper.Pin, error) {
	if l.pin == nil {
		p, err := wapper.OpenGPIO(l.name, l.mode)
		if err != nil {
			return nil, err
		}
		l.pin = p
	}
	return l.pin, nil
}

// do runs fn on the line's pin, reopening it once if the handle is gone
// (the instance that opened it was replaced).
func (l *line) do(fn func(*wapper.Pin) error) error {
	p, err := l.open()
	if err != nil {
		return err
	}
	if err = fn(p); err != nil && wapper.IsClosed(err) {
		l.close()
		if p, err = l.open(); err != nil {
			return err
		}
		err = fn(p)
	}
	return err
}

// value turns a level into the property's type.
func (l *line) value(high bool, t wapper.Type) wapper.Value {
	on := high != l.activeLow
	switch t {
	case wapper.TypeString:
		if on {
			return wapper.String("ON")
		}
		return wapper.String("OFF")
	case wapper.TypeInt:
		if on {
			return wapper.Int(1)
		}
		return wapper.Int(0)
	}
	return wapper.Bool(on)
}

func lineOf(d *wapper.Device, p *wapper.Property) *line { return d.Data.(*dev).lines[p.Handle] }

func (gpio) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	l := lineOf(d, p)
	var high bool
	err := l.do(func(pin *wapper.Pin) (err error) {
		high, err = pin.Read()
		return err
	})
	if err != nil {
		return wapper.Value{}, err
	}
	return l.value(high, p.Type()), nil
}

// parseOn reads "ON"/"OFF", true/false or 1/0.
func parseOn(v wapper.Value) (bool, error) {
	if v.Type() == wapper.TypeString {
		switch strings.ToUpper(strings.TrimSpace(v.Str())) {
		case "ON", "TRUE", "1", "HIGH":
			return true, nil
		case "OFF", "FALSE", "0", "LOW":
			return false, nil
		}
		return false, wapper.Errorf(wapper.ErrInvalid, "value %q: want ON or OFF", v.Str())
	}
	b, err := wapper.Convert(v, wapper.TypeBoolean)
	if err != nil {
		return false, wapper.Errorf(wapper.ErrInvalid, "%v", err)
	}
	return b.Bool(), nil
}

func (gpio) Write(d *wapper.Device, p *wapper.Property, v wapper.Value) error {
	l := lineOf(d, p)
	if l.input {
		return wapper.Errorf(wapper.ErrReadOnly, "property %q is the input line %s", p.Name, l.name)
	}
	on, err := parseOn(v)
	if err != nil {
		return err
	}
	return l.do(func(pin *wapper.Pin) error { return pin.Write(on != l.activeLow) })
}

// Poll waits for edges on the device's input lines for at most budget,
// reports every change, and asks to be polled again at once.
func (gpio) Poll(d *wapper.Device, budget time.Duration) (time.Duration, error) {
	var inputs []*wapper.Property
	for _, p := range d.Properties() {
		if lineOf(d, p).input {
			inputs = append(inputs, p)
		}
	}
	if len(inputs) == 0 {
		return 0, nil // nothing to push
	}
	// Report each input's level once after opening it, so the twin starts
	// with a value.
	for _, p := range inputs {
		l := lineOf(d, p)
		if l.reported && l.pin != nil {
			continue
		}
		var high bool
		if err := l.do(func(pin *wapper.Pin) (err error) { high, err = pin.Read(); return err }); err != nil {
			return time.Second, err
		}
		if err := wapper.Report(p, l.value(high, p.Type())); err != nil {
			return time.Second, err
		}
		l.reported = true
	}
	// Share the budget between the inputs; stop early after an edge so
	// that it reaches the host at once.
	share := budget / time.Duration(len(inputs))
	if share < 10*time.Millisecond {
		share = 10 * time.Millisecond
	}
	for _, p := range inputs {
		l := lineOf(d, p)
		var high, ok bool
		err := l.do(func(pin *wapper.Pin) (err error) {
			high, ok, err = pin.WaitForEdge(l.edge, share)
			return err
		})
		if err != nil {
			return time.Second, err
		}
		if ok {
			if err := wapper.Report(p, l.value(high, p.Type())); err != nil {
				return time.Second, err
			}
			return time.Millisecond, nil
		}
	}
	return time.Millisecond, nil
}

func init() { wapper.Register(gpio{}) }

func main() {}
