package wapper_test

import (
	"encoding/json"
	"fmt"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// lamp is a driver whose devices are offline until they are switched on.
type lamp struct{ wapper.Base }

func (lamp) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	on, _ := d.Data.(bool)
	return wapper.Bool(on), nil
}

func (lamp) Write(d *wapper.Device, p *wapper.Property, v wapper.Value) error {
	d.Data = v.Bool()
	return nil
}

func (lamp) State(d *wapper.Device) (wapper.State, error) {
	if on, _ := d.Data.(bool); !on {
		return wapper.StateOffline, wapper.Reason("switched off at the wall")
	}
	return wapper.StateOK, nil
}

// A State that reports offline with a reason, tested with package sdktest.
func ExampleReason() {
	p, err := sdktest.New(lamp{}, nil)
	if err != nil {
		panic(err)
	}
	defer p.Close()
	dev, err := p.Add(sdktest.Description{
		Name:       "lamp-1",
		Properties: []sdktest.Property{{Name: "power", Type: "BOOLEAN", AccessMode: "ReadWrite"}},
	})
	if err != nil {
		panic(err)
	}
	state, reason, _ := dev.State()
	fmt.Printf("%s: %s\n", state, reason)

	dev.Write("power", wapper.String("on")) // twin text, converted as the host does
	state, reason, _ = dev.State()
	fmt.Printf("%s%s\n", state, reason)
	// Output:
	// offline: switched off at the wall
	// ok
}

// configData numbers arrive as JSON numbers (narrowed to float32 by
// edgecore) or as strings; Int and Float take both and refuse what does
// not fit.
func ExampleConfig_Int() {
	var cfg wapper.Config
	json.Unmarshal([]byte(`{"port": "502", "slaveID": 1, "offset": 1.5}`), &cfg)

	port, err := cfg.Int("port", 502)
	fmt.Println(port, err)
	timeout, err := cfg.Int("timeout", 1000) // absent: the default
	fmt.Println(timeout, err)
	_, err = cfg.Int("offset", 0)
	fmt.Println(err)
	fmt.Println(wapper.CodeOf(err))
	// Output:
	// 502 <nil>
	// 1000 <nil>
	// field "offset": 1.5 is not a whole number
	// invalid argument
}

// thermo is the doc's minimal plugin: a thermometer whose reading a
// visitor field sets, on a device whose protocol config names a unit.
type thermo struct{ wapper.Base }

func (thermo) AddDevice(d *wapper.Device) error {
	var pc struct {
		Unit string `json:"unit"`
	}
	if err := d.ProtocolConfig(&pc); err != nil {
		return err
	}
	if pc.Unit != "" && pc.Unit != "C" {
		return wapper.Errorf(wapper.ErrInvalid, "unit %q: only C is supported", pc.Unit)
	}
	return nil
}

func (thermo) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	var v struct {
		Celsius float64 `json:"celsius"`
	}
	if err := p.Visit(&v); err != nil {
		return wapper.Value{}, err
	}
	return wapper.Double(v.Celsius), nil
}

// A plugin registers its Driver from an init function and is built with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared; main never runs.
func ExampleRegister() {
	// In the plugin's package main:
	//
	//	func init() { wapper.Register(thermo{}) }
	//
	//	func main() {}
	wapper.Register(thermo{})
}

// A read handler decodes the property's visitor configData with
// Property.Visit and returns a typed value; package sdktest calls it
// natively through the same dispatch as the wasm export, converting the
// value to the property's declared type as the host does.
func ExampleDriver_read() {
	p, err := sdktest.New(thermo{}, nil)
	if err != nil {
		panic(err)
	}
	defer p.Close()
	dev, err := p.Add(sdktest.Description{
		Name:           "boiler",
		ProtocolConfig: map[string]any{"unit": "C"},
		Properties: []sdktest.Property{
			{Name: "temperature", Type: "DOUBLE", Visitor: `{"celsius": 21.5}`},
			{Name: "rounded", Type: "INT", Visitor: `{"celsius": 21}`},
		},
	})
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"temperature", "rounded"} {
		v, err := dev.Read(name)
		fmt.Printf("%s %#v %v\n", name, v, err)
	}
	// Output:
	// temperature DOUBLE(21.5) <nil>
	// rounded INT(21) <nil>
}

// An error returned with Errorf carries the status code the host sees;
// CodeOf finds it through wrapping, and any other error is "internal".
func ExampleErrorf() {
	p, err := sdktest.New(thermo{}, nil)
	if err != nil {
		panic(err)
	}
	defer p.Close()
	_, err = p.Add(sdktest.Description{Name: "boiler", ProtocolConfig: `{"unit": "F"}`})
	fmt.Println(wapper.CodeOf(err))

	wrapped := fmt.Errorf("reading boiler: %w", wapper.Errorf(wapper.ErrTimeout, "no answer in 2s"))
	fmt.Println(wapper.CodeOf(wrapped))
	fmt.Println(wapper.CodeOf(fmt.Errorf("something else")))
	fmt.Println(wapper.CodeOf(nil))
	// Output:
	// invalid argument
	// timeout
	// internal
	// ok
}

// Float reads a configData number as float64; like Int it takes a JSON
// number or a string, and falls back to the default when the field is
// absent.
func ExampleConfig_Float() {
	var cfg wapper.Config
	json.Unmarshal([]byte(`{"scale": 0.1, "offset": "-40"}`), &cfg)

	scale, err := cfg.Float("scale", 1)
	fmt.Println(scale, err)
	offset, err := cfg.Float("offset", 0)
	fmt.Println(offset, err)
	gain, err := cfg.Float("gain", 1)
	fmt.Println(gain, err)
	// Output:
	// 0.1 <nil>
	// -40 <nil>
	// 1 <nil>
}
