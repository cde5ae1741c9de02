package hostio

import (
	"context"
	"sync"
	"time"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	_ "periph.io/x/host/v3/gpioioctl" // registers the GPIO character-device driver

	"wapper.dev/wapper/abi"
)

var gpioInit = sync.OnceValue(func() error {
	// Finds the GPIO chips (/dev/gpiochip*) and registers their lines in
	// gpioreg. A machine without chips is no error: lines registered by
	// other means (tests register gpiotest pins) still work.
	_, err := driverreg.Init()
	return err
})

// OpenGPIO opens a GPIO line by name after checking the grants. mode is
// abi.GPIOInput, abi.GPIOOutput, abi.GPIOInputPullUp or
// abi.GPIOInputPullDown. An input line is set up to detect both edges when
// the line supports it, so no edge is lost between two waits.
//
// Closing a GPIO handle forgets it; the line keeps its direction and level,
// since another instance of the plugin may use it too.
func (t *Table) OpenGPIO(ctx context.Context, name string, mode uint32, timeout time.Duration) (int32, error) {
	var pull gpio.Pull
	switch mode {
	case abi.GPIOInput, abi.GPIOOutput:
		pull = gpio.Float
	case abi.GPIOInputPullUp:
		pull = gpio.PullUp
	case abi.GPIOInputPullDown:
		pull = gpio.PullDown
	default:
		return 0, abi.Errorf(abi.ErrInvalid, "GPIO mode %d (want 0 input, 1 output, 2 input with pull-up, 3 input with pull-down)", mode)
	}
	if err := t.reserve(); err != nil {
		return 0, err
	}
	if err := t.grants.CheckGPIO(name); err != nil {
		return 0, err
	}
	// A driver that fails leaves gpioreg usable for the lines that did
	// register, so its error only matters as "line does not exist".
	_ = gpioInit()
	p := gpioreg.ByName(name)
	if p == nil {
		return 0, abi.Errorf(abi.ErrUnavailable, "GPIO line %q does not exist on this host", name)
	}
	l := &line{p: p, out: mode == abi.GPIOOutput}
	if l.out {
		// Keep the current level when switching to output.
		if err := p.Out(p.Read()); err != nil {
			return 0, abi.Errorf(abi.ErrIO, "set GPIO line %s to output: %v", name, err)
		}
	} else {
		if err := p.In(pull, gpio.BothEdges); err == nil {
			l.edges = true
		} else if err := p.In(pull, gpio.NoEdge); err != nil {
			return 0, abi.Errorf(abi.ErrIO, "set GPIO line %s to input: %v", name, err)
		}
	}
	return t.add(l), nil
}

// line is an open GPIO line.
type line struct {
	p     gpio.PinIO
	out   bool
	edges bool // edge detection is on
}

func (l *line) kind() string { return "GPIO line" }

func (l *line) close() error { return nil }

func (t *Table) line(h int32) (*line, error) {
	x, err := t.get(h)
	if err != nil {
		return nil, err
	}
	l, ok := x.(*line)
	if !ok {
		return nil, abi.Errorf(abi.ErrInvalid, "handle %d is a %s, not a GPIO line", h, x.kind())
	}
	return l, nil
}

func level(l gpio.Level) int32 {
	if l == gpio.High {
		return 1
	}
	return 0
}

// GPIORead returns a line's level, 0 or 1.
func (t *Table) GPIORead(h int32) (int32, error) {
	l, err := t.line(h)
	if err != nil {
		return 0, err
	}
	return level(l.p.Read()), nil
}

// GPIOWrite drives an output line low (0) or high (anything else).
func (t *Table) GPIOWrite(h int32, v uint32) error {
	l, err := t.line(h)
	if err != nil {
		return err
	}
	if !l.out {
		return abi.Errorf(abi.ErrInvalid, "GPIO line %s was opened as an input; open it with mode 1 (output) to write", l.p.Name())
	}
	if err := l.p.Out(gpio.Level(v != 0)); err != nil {
		return abi.Errorf(abi.ErrIO, "write GPIO line %s: %v", l.p.Name(), err)
	}
	return nil
}

// GPIOWaitEdge waits at most timeout for an edge of the given kind
// (abi.EdgeRising, abi.EdgeFalling or abi.EdgeBoth) and returns the level
// after it. Edges of the other kind are consumed while waiting.
func (t *Table) GPIOWaitEdge(h int32, edge uint32, timeout time.Duration) (int32, error) {
	l, err := t.line(h)
	if err != nil {
		return 0, err
	}
	if edge < abi.EdgeRising || edge > abi.EdgeBoth {
		return 0, abi.Errorf(abi.ErrInvalid, "GPIO edge %d (want 1 rising, 2 falling, 3 both)", edge)
	}
	if !l.edges {
		return 0, abi.Errorf(abi.ErrUnsupported, "GPIO line %s does not support edge detection (or is an output)", l.p.Name())
	}
	end := time.Now().Add(timeout)
	for {
		left := time.Until(end)
		if left <= 0 || !l.p.WaitForEdge(left) {
			return 0, abi.Errorf(abi.ErrTimeout, "no edge on GPIO line %s in time", l.p.Name())
		}
		v := level(l.p.Read())
		if edge == abi.EdgeBoth || (edge == abi.EdgeRising) == (v == 1) {
			return v, nil
		}
	}
}
