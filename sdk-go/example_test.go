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
