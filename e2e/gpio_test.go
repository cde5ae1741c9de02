package e2e

// The GPIO plugin (plugins/gpio) in the host runtime: KubeEdge's traffic
// light on gpiotest pins registered in periph's gpioreg (no GPIO chips exist
// on test machines; the host's real backend is periph's gpioioctl).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

var gpioPins struct {
	sync.Once
	red, yellow, green, button *gpiotest.Pin
}

// testPins registers the traffic light's lines once per test binary.
func testPins(t *testing.T) (red, yellow, green, button *gpiotest.Pin) {
	gpioPins.Do(func() {
		gpioPins.red = &gpiotest.Pin{N: "GPIO17", Num: 17}
		gpioPins.yellow = &gpiotest.Pin{N: "GPIO27", Num: 27}
		gpioPins.green = &gpiotest.Pin{N: "GPIO22", Num: 22}
		gpioPins.button = &gpiotest.Pin{N: "GPIO5", Num: 5, EdgesChan: make(chan gpio.Level, 16)}
		for _, p := range []*gpiotest.Pin{gpioPins.red, gpioPins.yellow, gpioPins.green, gpioPins.button} {
			if err := gpioreg.Register(p); err != nil {
				panic(err)
			}
		}
	})
	return gpioPins.red, gpioPins.yellow, gpioPins.green, gpioPins.button
}

func level(p *gpiotest.Pin) string {
	if p.Read() == gpio.High {
		return "ON"
	}
	return "OFF"
}

func TestGPIOTrafficLight(t *testing.T) {
	red, yellow, green, button := testPins(t)
	p := loadIOPlugin(t, "gpio", v1alpha1.Grants{GPIO: []string{"GPIO17", "GPIO2?", "GPIO5"}}, nil)
	ctx := context.Background()
	dev := abi.Device{ID: 1, Namespace: "default", Name: "traffic-light", Model: "traffic-light", Protocol: "gpio",
		Properties: []abi.Property{
			prop(0, "red", "STRING", "ReadWrite", `{"pin":"GPIO17"}`),
			prop(1, "yellow", "STRING", "ReadWrite", `{"pin":27}`),
			prop(2, "green", "STRING", "ReadWrite", `{"pin":"22"}`),
			prop(3, "button", "STRING", "ReadOnly", `{"pin":"GPIO5","mode":"input","pull":"down","edge":"both"}`),
			prop(4, "blue", "STRING", "ReadWrite", `{"pin":"GPIO4"}`),
		}}
	if err := p.AddDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	pins := []*gpiotest.Pin{red, yellow, green}
	// Red, then green, then yellow: exactly one lamp on at a time.
	for step, on := range []int{0, 2, 1} {
		for i := range pins {
			want := "OFF"
			if i == on {
				want = "ON"
			}
			if err := p.Write(ctx, 1, uint32(i), abi.String(want)); err != nil {
				t.Fatalf("step %d: write %s=%s: %v", step, dev.Properties[i].Name, want, err)
			}
		}
		for i, pin := range pins {
			want := "OFF"
			if i == on {
				want = "ON"
			}
			if got := level(pin); got != want {
				t.Errorf("step %d: line %s is %s, want %s", step, pin.N, got, want)
			}
			v, err := p.Read(ctx, 1, uint32(i))
			if err != nil || v.Str() != want {
				t.Errorf("step %d: read %s: %v %v, want %s", step, dev.Properties[i].Name, v.Text(), err, want)
			}
		}
	}
	if err := p.Write(ctx, 1, 0, abi.String("blink")); abi.CodeOf(err) != abi.ErrInvalid {
		t.Errorf("write \"blink\": %v, want invalid argument", err)
	}

	// A line that is not granted is refused, visibly.
	_, err := p.Read(ctx, 1, 4)
	if abi.CodeOf(err) != abi.ErrDenied || !strings.Contains(err.Error(), "GPIO4") {
		t.Fatalf("read of a line not granted: %v, want denied naming GPIO4", err)
	}
	if logs := p.logs.String(); !strings.Contains(logs, "resource=GPIO4") || !strings.Contains(logs, "device=default/traffic-light") {
		t.Errorf("the refusal of GPIO4 is not in the host log")
	}
	if n := p.denials("gpio"); n < 1 {
		t.Errorf("gpio denials counted: %v", n)
	}

	// The button is pushed through poll and report: the level once, then
	// every edge, without reads.
	if !p.HasPoll() {
		t.Fatal("the gpio plugin exports no poll")
	}
	stop := make(chan struct{})
	polled := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				polled <- nil
				return
			default:
			}
			if _, err := p.Poll(ctx, 1, 200*time.Millisecond); err != nil {
				polled <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-polled; err != nil {
			t.Errorf("poll: %v", err)
		}
	}()
	buttonReports := func() []string {
		var out []string
		for _, r := range p.reads.list() {
			if r.Device == 1 && r.Property == 3 {
				out = append(out, r.Value.Str())
			}
		}
		return out
	}
	eventually(t, "initial button level reported", func() error {
		if got := buttonReports(); len(got) == 0 || got[0] != "OFF" {
			return fmt.Errorf("reports %v, want [OFF]", got)
		}
		return nil
	})
	button.EdgesChan <- gpio.High
	eventually(t, "press reported", func() error {
		if got := buttonReports(); len(got) < 2 || got[1] != "ON" {
			return fmt.Errorf("reports %v, want [OFF ON]", got)
		}
		return nil
	})
	button.EdgesChan <- gpio.Low
	eventually(t, "release reported", func() error {
		if got := buttonReports(); len(got) != 3 || got[2] != "OFF" {
			return fmt.Errorf("reports %v, want [OFF ON OFF]", got)
		}
		return nil
	})
}
